use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use super::{config::LimitMode, limiter::RateLimiter};
use crate::Tenant;

/// Who a call is from, for its limits: set by the layer that authenticated it (a principal's
/// id, `key:…`, `jwt:…`, `service:…`). Calls without one are limited per tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerKey(pub String);

/// Applies a [`RateLimiter`] to a server; see the [module docs](super). Place it after
/// [`crate::TenantLayer`], which tells it who the caller is.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
}

impl RateLimitLayer {
    /// A layer over `limiter`.
    pub fn new(limiter: RateLimiter) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service built by [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: RateLimiter,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = RateLimitFuture<S::Future, RB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Per principal where calls are authenticated (so a tenant's keys do not share one
        // allowance, and no header can buy a fresh one), per tenant otherwise.
        let caller = req
            .extensions()
            .get::<CallerKey>()
            .map(|k| k.0.as_str())
            .or_else(|| req.extensions().get::<Tenant>().map(Tenant::as_str))
            .unwrap_or("anonymous");
        match self.limiter.check(req.uri().path(), caller) {
            Ok(()) if !self.limiter.is_distributed() => RateLimitFuture::Inner {
                fut: self.inner.call(req),
            },
            Ok(()) => {
                // Admitted here; now the limit shared with the other replicas.
                let limiter = self.limiter.clone();
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let caller = caller.to_owned();
                RateLimitFuture::Waiting {
                    fut: Box::pin(async move {
                        match limiter.check_shared(req.uri().path(), &caller).await {
                            Ok(()) => inner.oneshot(req).await,
                            Err(limited) => {
                                Ok(tonic::Status::from(crate::Error::from(limited)).into_http())
                            }
                        }
                    }),
                }
            }
            Err(limited) => match self.limiter.mode() {
                LimitMode::Wait { max_wait } if limited.retry_after <= max_wait => {
                    // The slow path may allocate: it is about to sleep anyway.
                    let limiter = self.limiter.clone();
                    let clone = self.inner.clone();
                    let inner = std::mem::replace(&mut self.inner, clone);
                    let caller = caller.to_owned();
                    RateLimitFuture::Waiting {
                        fut: Box::pin(async move {
                            let admitted = match limiter.acquire(req.uri().path(), &caller).await {
                                Ok(()) => limiter.check_shared(req.uri().path(), &caller).await,
                                Err(limited) => Err(limited),
                            };
                            match admitted {
                                Ok(()) => inner.oneshot(req).await,
                                Err(limited) => {
                                    Ok(tonic::Status::from(crate::Error::from(limited)).into_http())
                                }
                            }
                        }),
                    }
                }
                _ => {
                    self.limiter.acquire_rejected();
                    tracing::debug!(method = %req.uri().path(), caller, retry_after = ?limited.retry_after, "Rate limited");
                    RateLimitFuture::Rejected {
                        response: Some(
                            tonic::Status::from(crate::Error::from(limited)).into_http(),
                        ),
                    }
                }
            },
        }
    }
}

pin_project! {
    /// Response future of [`RateLimit`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum RateLimitFuture<F, RB, E> {
        /// Admitted.
        Inner { #[pin] fut: F },
        /// Waiting for its turn (wait mode).
        Waiting { fut: BoxFuture<Result<Response<RB>, E>> },
        /// Over the limit: `RESOURCE_EXHAUSTED` with `RetryInfo`.
        Rejected { response: Option<Response<RB>> },
    }
}

impl<F, RB, E> Future for RateLimitFuture<F, RB, E>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Inner { fut } => fut.poll(cx),
            Proj::Waiting { fut } => fut.as_mut().poll(cx),
            Proj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}
