//! What the CLI prints reaches a terminal, and a terminal acts on control characters rather
//! than showing them: ESC starts sequences that retitle the window, clear the screen, move
//! the cursor, and in some terminals write files or answer back; C1 controls
//! (U+0080–U+009F) do the same in one character; bidi overrides and isolates reorder what is
//! shown (`exe.txt` displayed as `txt.exe`). Most of what the CLI prints is not its own:
//! notification types and payloads, banners of scanned services, servers' error messages.
//!
//! So everything printed goes through here: each field with [`inert`] where it must stay on
//! one line (a table cell, a CSV cell, a watch line), and every write to stdout and stderr
//! with [`inert_lines`] ([`outln!`](super::outln) and [`errln!`](super::errln)), whatever
//! built it. Controls are written as JSON escapes (`\n`, `\t`, `\r`, `\u001b`, `\u202e`):
//! visible to the reader, inert to the terminal, and, inside a JSON document, the very same
//! string once parsed.

use std::{borrow::Cow, fmt::Write as _};

/// Whether a terminal would act on `c` rather than show it: C0 controls, DEL, C1 controls,
/// and the bidi embeddings, overrides (U+202A–U+202E) and isolates (U+2066–U+2069).
pub(crate) fn is_control(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// `text` as one line of a terminal: every control character, line breaks included,
/// written as its escape.
pub(crate) fn inert(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// `text` as lines of a terminal: every control character but the line feed written as its
/// escape. JSON stays valid and means the same (its line feeds are whitespace; any other
/// control can only be inside a string, where the escape is JSON's own).
pub(crate) fn inert_lines(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_control(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !is_control(c) || keep(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible_escapes_and_plain_text_is_not_copied() {
        assert_eq!(
            inert("a\u{1b}]0;x\u{7}b\u{9b}2J\u{7f}\u{202e}c\u{2066}\td\r\ne"),
            "a\\u001b]0;x\\u0007b\\u009b2J\\u007f\\u202ec\\u2066\\td\\r\\ne"
        );
        assert_eq!(inert_lines("one\ntwo\u{1b}"), "one\ntwo\\u001b");
        assert!(matches!(inert("ümlaut 日本 ✓"), Cow::Borrowed(_)));
        assert!(matches!(inert_lines("a\nb"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_made_inert_is_the_same_json() {
        let value = serde_json::json!({
            "type": "\u{1b}[2J\u{9b}1;1H\u{7f}",
            "room": "scan/\u{202e}1",
            "nested": ["\u{2069}", "\u{85}ok"],
        });
        for text in [
            value.to_string(),
            serde_json::to_string_pretty(&value).unwrap(),
        ] {
            let shown = inert_lines(&text);
            assert!(
                !shown.chars().any(|c| is_control(c) && c != '\n'),
                "{shown}"
            );
            let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
            assert_eq!(back, value);
        }
    }
}
