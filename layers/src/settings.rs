//! What a refused setting says, for every crate's `validate`.

/// A setting validation refused: its key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct Invalid {
    /// The key, relative to the section validated (empty: the section itself).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl Invalid {
    /// `key` is refused because of `message`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same refusal, its key under `section` (`lease` under `scan` is `scan.lease`).
    #[must_use]
    pub fn within(self, section: &str) -> Self {
        let key = match (section.is_empty(), self.key.is_empty()) {
            (true, _) => self.key,
            (false, true) => section.to_owned(),
            (false, false) => format!("{section}.{}", self.key),
        };
        Self { key, ..self }
    }
}
