//! A URL that is itself a credential.

use serde::{Deserialize, Serialize, Serializer};

/// A URL that is itself a credential: a Slack, Teams or Discord webhook carries its secret in
/// its path, so the whole of it is as secret as a password.
///
/// Only [`SecretUrl::expose`] gives the URL; everything that shows the value (`Debug`,
/// `Display`, serializing it, so `phantom config` and every log line of a configuration)
/// shows `scheme://host/…`: enough to tell destinations apart, nothing to replay them with.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, to send requests to. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]`, then `/…` if the URL has anything after the host (a path, a
    /// query, a fragment); user information is dropped. Not a URL at all: `…`.
    pub fn redacted(&self) -> String {
        let url = self.0.trim();
        if url.is_empty() {
            return String::new();
        }
        let Some(scheme_end) = url.find("://") else {
            return "…".to_owned();
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let tail = match &rest[authority_end..] {
            "" | "/" => "",
            _ => "/…",
        };
        format!("{}://{host}{tail}", &url[..scheme_end])
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SecretUrl").field(&self.redacted()).finish()
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    /// The redacted form: what is serialized is shown (`phantom config`), never dialled.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scheme_and_host_are_ever_shown() {
        let slack = SecretUrl::new("https://hooks.slack.com/services/T000/B000/XXXX");
        assert_eq!(slack.redacted(), "https://hooks.slack.com/…");
        assert_eq!(format!("{slack}"), "https://hooks.slack.com/…");
        assert_eq!(
            format!("{slack:?}"),
            "SecretUrl(\"https://hooks.slack.com/…\")"
        );
        assert_eq!(
            serde_json::to_string(&slack).unwrap(),
            "\"https://hooks.slack.com/…\""
        );
        assert_eq!(
            slack.expose(),
            "https://hooks.slack.com/services/T000/B000/XXXX"
        );
        assert_eq!(
            SecretUrl::from("http://user:pw@hook.local:8080?token=x").redacted(),
            "http://hook.local:8080/…"
        );
        assert_eq!(
            SecretUrl::from("https://hook.local/").redacted(),
            "https://hook.local"
        );
        assert_eq!(SecretUrl::from("not a url/secret").redacted(), "…");
        assert_eq!(SecretUrl::default().redacted(), "");
    }
}
