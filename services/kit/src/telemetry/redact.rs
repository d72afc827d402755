//! Secrets never reach a log line.
//!
//! Code is careful not to log secrets, but a secret can hide in text it does not control: a
//! driver's connection error quoting the URL it dialled, an HTTP client's error quoting a
//! request, a dependency's debug output. So every line is scrubbed on its way out, whatever
//! produced it: [`Redacting`] wraps the log writer and passes each line through [`scrub`],
//! which masks
//! - the values the configuration holds as secrets ([`register_secret`]: the LLM API key,
//!   database and Redis passwords, webhook keys and webhook URLs), wherever they appear;
//! - passwords in URLs (`postgres://app:***@db/phantom`);
//! - `Bearer` and `Basic` credentials;
//! - OpenAI-style keys (`sk-…`);
//! - credentials in query strings and fragments (`?api_key=`, `&token=`, `#access_token=`,
//!   `X-Amz-Signature=`, ...: any parameter whose name ends in `key`, `token`, `secret`,
//!   `password`, `signature`, `credential`).

use std::{
    borrow::Cow,
    io,
    sync::{PoisonError, RwLock},
};

use tracing_subscriber::fmt::MakeWriter;

/// What a secret is replaced with.
const MASK: &str = "***";

/// Shorter values are not registered: masking them would garble ordinary words.
const MIN_SECRET_LEN: usize = 6;

/// Query parameters whose value is a credential, by name (lowercase, without `-`, `_` and
/// `.`): these exactly ...
const SECRET_PARAMS: &[&str] = &["sig", "auth", "pass", "pwd", "jwt", "session", "sessionid"];

/// ... and any name ending with one of these: `api_key`, `access_token`, `client_secret`,
/// `X-Amz-Signature`, `X-Amz-Credential`, `x-goog-signature`, `private_token`, ...
const SECRET_PARAM_ENDINGS: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "credential",
    "credentials",
];

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Masks `secret` in every log line from now on.
pub fn register_secret(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
        // Longest first: a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every secret it holds masked (see the [module docs](self)).
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    {
        let secrets = SECRETS.read().unwrap_or_else(PoisonError::into_inner);
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
    }
    for pass in [url_passwords, auth_schemes, openai_keys, query_params] {
        if let Some(masked) = pass(&out) {
            out = Cow::Owned(masked);
        }
    }
    out
}

/// Where a token that started at `from` ends: at the first character that cannot be part
/// of a URL component or credential as logs quote them.
fn token_end(text: &str, from: usize) -> usize {
    text[from..]
        .find(|c: char| c.is_whitespace() || "\"'<>\\,;)]}`".contains(c))
        .map_or(text.len(), |n| from + n)
}

/// Replaces the byte ranges `spans` (sorted, disjoint) of `text` with the mask.
fn mask(text: &str, spans: &[(usize, usize)]) -> Option<String> {
    if spans.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for &(start, end) in spans {
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
fn url_passwords(text: &str) -> Option<String> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(n) = text[from..].find("://") {
        let start = from + n + 3;
        let end = token_end(text, start);
        let authority_end = text[start..end]
            .find(['/', '?', '#'])
            .map_or(end, |n| start + n);
        if let Some(at) = text[start..authority_end].rfind('@')
            && let Some(colon) = text[start..start + at].find(':')
            && colon + 1 < at
        {
            spans.push((start + colon + 1, start + at));
        }
        from = end.max(start);
    }
    mask(text, &spans)
}

/// `Bearer <token>`, `Basic <credentials>` → `Bearer ***`.
fn auth_schemes(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let mut spans = Vec::new();
    for scheme in ["bearer ", "basic "] {
        let mut from = 0;
        while let Some(n) = lower[from..].find(scheme) {
            let start = from + n + scheme.len();
            let end = token_end(text, start);
            if end > start {
                spans.push((start, end));
            }
            from = end.max(start);
        }
    }
    spans.sort_unstable();
    spans.dedup();
    mask(text, &spans)
}

/// `sk-…` (OpenAI-style keys, 16 characters or more after the prefix) → `sk-***`.
fn openai_keys(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(n) = text[from..].find("sk-") {
        let prefix = from + n;
        let start = prefix + 3;
        let standalone = prefix == 0 || !bytes[prefix - 1].is_ascii_alphanumeric();
        let len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_')
            .count();
        if standalone && len >= 16 {
            spans.push((start, start + len));
        }
        from = start + len;
    }
    mask(text, &spans)
}

/// Whether a query parameter named `name` carries a credential.
fn secret_param(name: &str) -> bool {
    let compact: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_PARAMS.contains(&compact.as_str())
        || SECRET_PARAM_ENDINGS.iter().any(|e| compact.ends_with(e))
}

/// `?api_key=…`, `&token=…`, `#access_token=…`, `?X-Amz-Signature=…` → `?api_key=***`.
fn query_params(text: &str) -> Option<String> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(n) = text[from..].find(['?', '&', '#', ';']) {
        let name_start = from + n + 1;
        let name_len = text[name_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(text.len() - name_start);
        let name_end = name_start + name_len;
        from = name_end;
        if name_len == 0 || !text[name_end..].starts_with('=') {
            continue;
        }
        let start = name_end + 1;
        let end = text[start..]
            .find(['&', '#', ';'])
            .map_or(text.len(), |n| start + n)
            .min(token_end(text, start));
        if end > start && secret_param(&text[name_start..name_end]) {
            spans.push((start, end));
        }
        from = end.max(start);
    }
    mask(text, &spans)
}

/// A log writer whose every line goes through [`scrub`].
#[derive(Debug)]
pub struct Redacting<M> {
    inner: M,
}

impl<M> Redacting<M> {
    /// Scrubs what `inner` writes.
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.inner.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter(self.inner.make_writer_for(meta))
    }
}

/// The writer of [`Redacting`]. The formatter hands it a whole line in one write.
#[derive(Debug)]
pub struct RedactingWriter<W>(W);

impl<W: io::Write> io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(scrub(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_wherever_they_are_quoted() {
        assert_eq!(
            scrub("error connecting to postgres://app:s3cret@db:5432/phantom: refused"),
            "error connecting to postgres://app:***@db:5432/phantom: refused"
        );
        assert_eq!(
            scrub(r#"{"error":"redis://:hunter2@cache:6379 down"}"#),
            r#"{"error":"redis://:***@cache:6379 down"}"#
        );
        assert_eq!(scrub("http://host:8080/path@x"), "http://host:8080/path@x");
        assert_eq!(
            scrub("postgres://app@db/phantom"),
            "postgres://app@db/phantom"
        );
    }

    #[test]
    fn keys_tokens_and_credential_parameters_are_masked() {
        assert_eq!(
            scrub("Authorization: Bearer eyJhbGciOi.x.y sent"),
            "Authorization: Bearer *** sent"
        );
        assert_eq!(
            scrub("invalid key sk-proj-abcdefghijklmnop1234 given"),
            "invalid key sk-*** given"
        );
        assert_eq!(
            scrub("task-queue-runner-sk-short"),
            "task-queue-runner-sk-short"
        );
        assert_eq!(
            scrub("GET https://h/v1?model=x&api_key=abc123&b=2 failed"),
            "GET https://h/v1?model=x&api_key=***&b=2 failed"
        );
        assert_eq!(scrub("https://h/?token=t0k"), "https://h/?token=***");
    }

    #[test]
    fn credentials_in_query_strings_and_fragments_are_masked_by_the_shape_of_their_name() {
        assert_eq!(
            scrub("http://llm:8000/v1?key=abc&model=x"),
            "http://llm:8000/v1?key=***&model=x"
        );
        assert_eq!(
            scrub(
                "https://b.s3.amazonaws.com/o?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=f00d&X-Amz-Expires=60"
            ),
            "https://b.s3.amazonaws.com/o?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60"
        );
        assert_eq!(
            scrub("https://gitlab/api?private_token=glpat-1&page=2"),
            "https://gitlab/api?private_token=***&page=2"
        );
        assert_eq!(
            scrub("https://app/cb#access_token=xyz&state=1"),
            "https://app/cb#access_token=***&state=1"
        );
        assert_eq!(
            scrub("https://x/?apiKey=K1;sig=S2 sent"),
            "https://x/?apiKey=***;sig=*** sent"
        );
        assert_eq!(
            scrub("GET /search?q=token&page=2 took 3ms"),
            "GET /search?q=token&page=2 took 3ms",
            "a value that is a word, under a harmless name"
        );
    }

    #[test]
    fn registered_secrets_are_masked_anywhere_and_short_values_are_not_registered() {
        register_secret("correct-horse-battery");
        register_secret("abc");
        assert_eq!(
            scrub("the key correct-horse-battery was refused; abc"),
            "the key *** was refused; abc"
        );
    }

    #[test]
    fn text_without_secrets_is_not_copied() {
        assert!(matches!(scrub("Scan started targets=3"), Cow::Borrowed(_)));
    }
}
