//! Secrets never reach a log line.
//!
//! Code is careful not to log secrets, but a secret can hide in text it does not control: a
//! driver's connection error quoting the URL it dialled, an HTTP client's error quoting a
//! request, a dependency's debug output. So every line is scrubbed on its way out, whatever
//! produced it: [`Redacting`] wraps the log writer and passes each line through
//! [`Secrets::scrub`], which masks
//! - the values the configuration holds as secrets ([`Secrets::register`]: the LLM API key,
//!   database and Redis passwords, webhook keys and webhook URLs), wherever they appear;
//! - passwords in URLs (`postgres://app:***@db/phantom`);
//! - `Bearer` and `Basic` credentials;
//! - OpenAI-style keys (`sk-…`);
//! - credentials in query strings and fragments (`?api_key=`, `&token=`, `#access_token=`,
//!   `X-Amz-Signature=`, ...: any parameter whose name ends in `key`, `token`, `secret`,
//!   `password`, `signature`, `credential`).
//!
//! The last four need no registered secret: [`scrub_patterns`] applies them alone.
//!
//! No process-wide list: the binary creates a [`Secrets`], fills it from its configuration
//! and hands it to the log writer and, through [`crate::Context`], to the services. Two
//! `Secrets` (two embedded systems, two tests) never see each other's values.

use std::{
    borrow::Cow,
    io,
    sync::{Arc, PoisonError, RwLock},
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

/// The secrets to mask wherever they appear: created by whoever composes the process,
/// filled from its configuration, handed to the log writer and to every service. Cheap to
/// clone; clones share one list, so a secret registered through one is masked by all.
#[derive(Clone, Default)]
pub struct Secrets(Arc<RwLock<Vec<String>>>);

/// Never the values.
impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Secrets").field("registered", &n).finish()
    }
}

impl Secrets {
    /// An empty list: only what [`scrub_patterns`] recognizes is masked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Masks `secret` in whatever this list (or a clone of it) scrubs from now on. Values
    /// shorter than 6 characters are ignored: masking them would garble ordinary words.
    pub fn register(&self, secret: &str) {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        let mut secrets = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_owned());
            // Longest first: a secret that contains another is masked whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every secret it holds masked: the registered ones, then what
    /// [`scrub_patterns`] recognizes.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        {
            let secrets = self.0.read().unwrap_or_else(PoisonError::into_inner);
            for secret in secrets.iter() {
                if out.contains(secret.as_str()) {
                    out = Cow::Owned(out.replace(secret.as_str(), MASK));
                }
            }
        }
        let masked = match scrub_patterns(&out) {
            Cow::Owned(masked) => Some(masked),
            Cow::Borrowed(_) => None,
        };
        masked.map_or(out, Cow::Owned)
    }
}

/// `text` with the credentials recognizable by their shape masked, no registered secret
/// needed: passwords in URLs, `Bearer`/`Basic` credentials, `sk-` keys, credentials in query
/// strings and fragments. For code that has no [`Secrets`]; [`Secrets::scrub`] does this
/// too.
pub fn scrub_patterns(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
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

/// Writes `buf` (one whole line) to `inner` scrubbed of `secrets`; returns `buf`'s length.
pub(super) fn write_scrubbed(
    inner: &mut impl io::Write,
    secrets: &Secrets,
    buf: &[u8],
) -> io::Result<usize> {
    match std::str::from_utf8(buf) {
        Ok(text) => inner.write_all(secrets.scrub(text).as_bytes())?,
        Err(_) => inner.write_all(buf)?,
    }
    Ok(buf.len())
}

/// A log writer whose every line goes through [`Secrets::scrub`].
#[derive(Debug)]
pub struct Redacting<M> {
    inner: M,
    secrets: Secrets,
}

impl<M> Redacting<M> {
    /// Scrubs what `inner` writes of `secrets` (and of what [`scrub_patterns`] recognizes).
    pub fn new(inner: M, secrets: Secrets) -> Self {
        Self { inner, secrets }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<'a, M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            secrets: &self.secrets,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer_for(meta),
            secrets: &self.secrets,
        }
    }
}

/// The writer of [`Redacting`]. The formatter hands it a whole line in one write.
#[derive(Debug)]
pub struct RedactingWriter<'a, W> {
    inner: W,
    secrets: &'a Secrets,
}

impl<W: io::Write> io::Write for RedactingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_scrubbed(&mut self.inner, self.secrets, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a process with no registered secret masks.
    fn scrub(text: &str) -> Cow<'_, str> {
        Secrets::new().scrub(text)
    }

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
        let secrets = Secrets::new();
        secrets.register("correct-horse-battery");
        secrets.register("abc");
        assert_eq!(
            secrets.scrub("the key correct-horse-battery was refused; abc"),
            "the key *** was refused; abc"
        );
    }

    #[test]
    fn text_without_secrets_is_not_copied() {
        assert!(matches!(scrub("Scan started targets=3"), Cow::Borrowed(_)));
    }

    #[test]
    fn two_lists_of_secrets_are_independent_and_clones_share_theirs() {
        let a = Secrets::new();
        let b = Secrets::new();
        a.register("alpha-secret-value");
        b.register("bravo-secret-value");
        let text = "alpha-secret-value and bravo-secret-value";
        assert_eq!(a.scrub(text), "*** and bravo-secret-value");
        assert_eq!(b.scrub(text), "alpha-secret-value and ***");
        let shared = a.clone();
        shared.register("charlie-secret-value");
        assert_eq!(a.scrub("charlie-secret-value"), "***");
        assert_eq!(b.scrub("charlie-secret-value"), "charlie-secret-value");
        assert!(!format!("{a:?}").contains("alpha"), "{a:?}");
    }

    #[test]
    fn the_patterns_need_no_registered_secret() {
        assert_eq!(
            scrub_patterns("postgres://app:s3cret@db/phantom"),
            "postgres://app:***@db/phantom"
        );
        assert!(matches!(
            scrub_patterns("Scan started targets=3"),
            Cow::Borrowed(_)
        ));
    }
}
