//! Redis clients as every PHANTOM component wants them (`fred`).
//!
//! The connection is made in the background and remade after any loss, also when the very
//! first attempt fails: a Redis that is down at start-up never stops a server, and each user
//! decides what its calls do meanwhile (the cache passes through, the distributed limiter
//! applies its `on_error`, the notifier answers UNAVAILABLE).

use std::time::Duration;

use fred::{
    interfaces::LuaInterface as _,
    prelude::{Builder, ClientLike as _, Config, ReconnectPolicy},
};

/// What a failed Redis call returns.
pub use fred::error::Error;
/// The client type, for components that keep state in Redis through this module's helpers
/// without depending on `fred` themselves.
pub use fred::prelude::Client;

/// A builder for `url` with those settings; `command_timeout` bounds each command (zero: no
/// bound, the caller times its calls itself).
pub fn builder(url: &str, command_timeout: Duration) -> Result<Builder, Error> {
    let mut config = Config::from_url(url)?;
    // Without this, a first connection that fails ends the connection task for good.
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| c.connection_timeout = Duration::from_secs(2))
        .with_performance_config(|p| p.default_command_timeout = command_timeout)
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    Ok(builder)
}

/// A client for `url`, connecting in the background (see the module).
pub fn connect(url: &str, command_timeout: Duration) -> Result<Client, Error> {
    let client = builder(url, command_timeout)?.build()?;
    // The connection task runs detached; dropping its handle does not stop it.
    drop(client.connect());
    Ok(client)
}

/// Runs the Lua `script` on `keys` and `args` and reads its answer as a list of integers (a
/// Lua table of numbers; a single number reads as a list of one). Scripts are sent whole (`EVAL`): they are short, and nothing has to
/// be loaded again after a Redis restart.
pub async fn eval_integers(
    client: &Client,
    script: &str,
    keys: Vec<String>,
    args: Vec<String>,
) -> Result<Vec<i64>, Error> {
    client.eval::<Vec<i64>, _, _, _>(script, keys, args).await
}
