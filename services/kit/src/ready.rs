//! A value that exists once a service's dependencies are ready.
//!
//! A server starts answering (health NOT_SERVING, reflection) before its database is
//! reachable, so that Kubernetes sees a live process that is not ready yet rather than a
//! port that does not answer. Handlers reach their state through [`Ready::get`], which
//! answers `UNAVAILABLE` until then.

use std::sync::{Arc, OnceLock};

/// State of type `T`, set once at start-up.
#[derive(Debug)]
pub struct Ready<T>(Arc<OnceLock<T>>);

impl<T> Clone for Ready<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Ready<T> {
    fn default() -> Self {
        Self(Arc::new(OnceLock::new()))
    }
}

impl<T> Ready<T> {
    /// Not ready yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the state available. Later calls are ignored.
    pub fn set(&self, value: T) {
        let _ = self.0.set(value);
    }

    /// The state, or `UNAVAILABLE` while the service is starting.
    pub fn get(&self) -> Result<&T, tonic::Status> {
        self.0.get().ok_or_else(|| {
            phantom_layers::Error::Unavailable {
                message: "service is starting: dependencies are not ready yet".into(),
                retry_after: Some(std::time::Duration::from_secs(1)),
            }
            .into()
        })
    }
}
