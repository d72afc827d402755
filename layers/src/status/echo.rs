//! Quoting caller input back in error messages without echoing it whole.
//!
//! An error that repeats a 4 MB target as its `grpc-message` is an amplifier, and one whose
//! headers exceed a client's limit reaches the caller as `RESOURCE_EXHAUSTED` instead of the
//! error. Every value a message or a `BadRequest` quotes goes through [`echo`].

/// How many characters of a caller's value an error quotes.
pub const ECHO_MAX_CHARS: usize = 64;

/// `value` quoted for an error message: whole (as `{:?}` would) when short, otherwise its first
/// [`ECHO_MAX_CHARS`] characters and how long it was (`"1-65535,1-6…" (4000000 bytes)`).
pub fn echo(value: &str) -> String {
    match value.char_indices().nth(ECHO_MAX_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => {
            let head = format!("{:?}", &value[..cut]);
            format!("{}…\" ({} bytes)", &head[..head.len() - 1], value.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(echo("10.0.0.1"), "\"10.0.0.1\"");
        assert_eq!(echo("a\u{1b}b"), "\"a\\u{1b}b\"");
    }

    #[test]
    fn long_values_are_cut_and_their_length_given() {
        let long = "1-65535,".repeat(500_000);
        let quoted = echo(&long);
        assert!(quoted.len() < 100, "{quoted}");
        assert!(quoted.ends_with("…\" (4000000 bytes)"), "{quoted}");
        // Never cuts inside a character.
        let wide = "é".repeat(100);
        assert!(echo(&wide).starts_with("\"éé"));
    }
}
