//! The closed set of methods a server answers, so that nothing a caller puts in a request
//! path becomes a metric label or a limiter key.
//!
//! A gRPC path is caller input: 20,000 calls to made-up methods once made 20,000 metric
//! series and as many limiter buckets, kept for the life of the process. Every layer that
//! keys state by method asks [`KnownMethods`] instead of using the path, and every path it
//! does not know becomes the one value [`UNKNOWN`].
//!
//! The set is built once, when a server's router is built, from the descriptors of the
//! services it serves.

use std::{collections::HashMap, sync::Arc};

/// The label and key of every method a server does not know.
pub const UNKNOWN: &str = "unknown";

/// How one method appears in metrics.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MethodLabels {
    /// The full path (`/phantom.v1.Notifier/Publish`), or [`UNKNOWN`].
    pub path: String,
    /// The service (`phantom.v1.Notifier`), or [`UNKNOWN`].
    pub service: String,
    /// The method (`Publish`), or [`UNKNOWN`].
    pub method: String,
}

/// The methods of one server, by path; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct KnownMethods {
    by_path: Arc<HashMap<Box<str>, Arc<MethodLabels>>>,
    unknown: Arc<MethodLabels>,
}

impl Default for KnownMethods {
    /// No method is known: every path is [`UNKNOWN`].
    fn default() -> Self {
        Self::new(std::iter::empty::<&str>())
    }
}

impl KnownMethods {
    /// The set of `paths` (`/package.Service/Method`); anything else in the iterator (a path
    /// without a service, an empty method) is left out.
    pub fn new<I, P>(paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let by_path = paths
            .into_iter()
            .filter_map(|p| {
                let path = p.as_ref();
                let (service, method) = path.strip_prefix('/')?.split_once('/')?;
                let valid = !service.is_empty() && !method.is_empty() && !method.contains('/');
                valid.then(|| {
                    let labels = MethodLabels {
                        path: path.to_owned(),
                        service: service.to_owned(),
                        method: method.to_owned(),
                    };
                    (Box::from(path), Arc::new(labels))
                })
            })
            .collect();
        Self {
            by_path: Arc::new(by_path),
            unknown: Arc::new(MethodLabels {
                path: UNKNOWN.to_owned(),
                service: UNKNOWN.to_owned(),
                method: UNKNOWN.to_owned(),
            }),
        }
    }

    /// Whether `path` is one of the set.
    pub fn contains(&self, path: &str) -> bool {
        self.by_path.contains_key(path)
    }

    /// The labels of `path`: its own when known, [`UNKNOWN`]'s otherwise.
    pub fn labels(&self, path: &str) -> Arc<MethodLabels> {
        self.by_path.get(path).unwrap_or(&self.unknown).clone()
    }

    /// `path` when known, [`UNKNOWN`] otherwise: what may key state.
    pub fn normalize<'a>(&self, path: &'a str) -> &'a str {
        if self.contains(path) { path } else { UNKNOWN }
    }

    /// How many methods are known.
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    /// Whether no method is known.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

/// Paths a layer lets through untouched, by prefix: what its caller says must never be
/// limited or shed (a server's health probes and reflection). Empty by default: a layer
/// knows no method by name.
#[derive(Debug, Clone, Default)]
pub struct Exempt(Arc<[Box<str>]>);

impl Exempt {
    /// Every path starting with one of `prefixes` (`/grpc.health.v1.Health/`).
    pub fn prefixes<I, P>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        Self(prefixes.into_iter().map(|p| p.as_ref().into()).collect())
    }

    /// Whether `path` is exempt.
    pub fn contains(&self, path: &str) -> bool {
        self.0.iter().any(|p| path.starts_with(&**p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_keep_their_names_and_every_other_path_is_unknown() {
        let known = KnownMethods::new(["/phantom.v1.Notifier/Publish", "no-slash", "/a/b/c"]);
        assert_eq!(known.len(), 1, "only well-formed paths are kept");
        let publish = known.labels("/phantom.v1.Notifier/Publish");
        assert_eq!(
            (publish.service.as_str(), publish.method.as_str()),
            ("phantom.v1.Notifier", "Publish")
        );
        for other in ["/phantom.v1.Notifier/Nope", "/x.Y/Publish", "", "/"] {
            assert_eq!(known.labels(other).method, UNKNOWN);
            assert_eq!(known.normalize(other), UNKNOWN);
        }
        assert_eq!(
            known.normalize("/phantom.v1.Notifier/Publish"),
            "/phantom.v1.Notifier/Publish"
        );
    }
}
