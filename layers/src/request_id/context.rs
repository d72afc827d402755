//! The call context: what a server learned about a call at its edge and what its outgoing
//! calls must carry on. It lives in a tokio task-local for the duration of the handler.

use std::future::Future;

use tokio::task::futures::TaskLocalFuture;

use super::RequestId;
use crate::Tenant;

/// Request id and tenant of the call being served.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The request id of the call.
    pub request_id: RequestId,
    /// The tenant the call acts for, once [`crate::TenantLayer`] resolved it.
    pub tenant: Option<Tenant>,
    /// When the caller stops waiting (from its `grpc-timeout`), if it said.
    pub deadline: Option<tokio::time::Instant>,
}

impl CallContext {
    /// A context for background work done on behalf of `request_id` and `tenant`, with no
    /// deadline (a scan outlives the call that created it).
    pub fn background(request_id: RequestId, tenant: Option<Tenant>) -> Self {
        Self {
            request_id,
            tenant,
            deadline: None,
        }
    }
}

tokio::task_local! {
    static CONTEXT: CallContext;
}

/// The context of the call this task is serving, if any.
pub fn current() -> Option<CallContext> {
    CONTEXT.try_with(Clone::clone).ok()
}

/// Runs `fut` with `ctx` as its call context. Background work started on behalf of a call
/// (a scan runner) uses this to keep the caller's request id and tenant on its own calls.
pub fn scope<F: Future>(ctx: CallContext, fut: F) -> TaskLocalFuture<CallContext, F> {
    CONTEXT.scope(ctx, fut)
}

/// Runs `f` with `ctx` as its call context: a layer's `call`, so that the layers below it
/// see the context in their own `call` too, not only in their futures.
pub(crate) fn sync_scope<R>(ctx: CallContext, f: impl FnOnce() -> R) -> R {
    CONTEXT.sync_scope(ctx, f)
}
