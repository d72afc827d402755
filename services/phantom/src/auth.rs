//! Identity in the binary: the authenticator the services of one process share, what
//! `phantom up` sets up by itself (so `make run` needs no step), and `phantom auth key …`.

use std::{
    future::Future,
    io::Write as _,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::Context as _;
use phantom_identity::{
    AuthConfig, Authenticator, Secret, ServiceToken, service_token::SERVICE_TOKEN_PREFIX,
};
use phantom_kit::{CancellationToken, config::ServerAuth};
use phantom_layers::{
    Tenant,
    auth::{Authenticate, Principal, Refusal, Scopes},
};
use phantom_storage::{Database, StorageConfig};

/// Where `phantom up` keeps the local admin key, under its data directory: what the client
/// commands send to a loopback address when given no token.
pub fn admin_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("auth").join("admin.key")
}

/// Where `phantom up` keeps the server key API keys are hashed under, when the
/// configuration sets none: under the data directory, so keys survive restarts.
pub fn key_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("auth").join("key-secret")
}

/// Writes `text` to `path`, readable by this user only, creating its directory (also private).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    Ok(())
}

/// Completes `auth` for a `phantom up` on `data_dir`: the key secret from the data directory
/// (created on first start) unless configured, and, without TLS, a service token new to this
/// process unless configured (only its own services use it). With TLS the services' client
/// certificates say who they are.
pub fn prepare_local(auth: &mut AuthConfig, data_dir: &Path, tls: bool) -> anyhow::Result<()> {
    if !auth.enabled {
        return Ok(());
    }
    if auth.key_secret.is_empty() {
        let path = key_secret_path(data_dir);
        let stored = std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let secret = if stored.is_empty() {
            // A fresh random secret of the right strength; the token type is the crate's
            // source of one.
            let fresh = ServiceToken::generate()?.secret().expose().to_owned();
            write_private(&path, &fresh)?;
            fresh
        } else {
            stored
        };
        auth.key_secret = Secret::new(secret);
    }
    if auth.service_token.is_none() && !tls {
        auth.service_token = Some(ServiceToken::generate()?.secret().clone());
    }
    Ok(())
}

/// Makes sure `data_dir` holds a working local admin key for `tenant` (all scopes): keeps the
/// one there if it still authenticates, creates one otherwise. Returns its path and whether
/// it was created now.
pub async fn ensure_local_admin(
    authenticator: &Authenticator,
    tenant: &Tenant,
    data_dir: &Path,
) -> anyhow::Result<(PathBuf, bool)> {
    let path = admin_key_path(data_dir);
    if let Ok(text) = std::fs::read_to_string(&path)
        && authenticator
            .keys()
            .authenticate(text.trim())
            .await
            .is_ok_and(|p| p.tenant.as_ref() == Some(tenant))
    {
        return Ok((path, false));
    }
    let (info, text) = authenticator
        .keys()
        .store()
        .create(
            tenant.clone(),
            Scopes::all(),
            "local admin (phantom up)",
            None,
        )
        .await
        .context("cannot create the local admin key")?;
    write_private(&path, &text)?;
    tracing::info!(key_id = %info.id, path = %path.display(), "Local admin key created");
    Ok((path, true))
}

/// An authenticator whose database may not be reachable yet: the services' token is checked
/// at once (services must reach each other while the database starts), everything else is
/// UNAVAILABLE until the database has opened, which is retried in the background.
#[derive(Debug, Clone)]
pub struct Deferred {
    ready: Arc<OnceLock<Authenticator>>,
    service: Option<ServiceToken>,
}

impl Deferred {
    /// Opens `storage` in the background (every 2 s until it answers or `shutdown`), then
    /// authenticates with `config`.
    pub fn open(
        config: AuthConfig,
        storage: StorageConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let service = config
            .service_token
            .clone()
            .map(ServiceToken::new)
            .transpose()?;
        let ready = Arc::new(OnceLock::new());
        let slot = ready.clone();
        tokio::spawn(async move {
            loop {
                let opened = match Database::open(&storage).await {
                    Ok(db) => Authenticator::from_config(&config, db)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match opened {
                    Ok(authenticator) => {
                        let _ = slot.set(authenticator);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Credentials cannot be checked yet: retrying");
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        });
        Ok(Self { ready, service })
    }

    /// Already open, over `authenticator`.
    pub fn ready(authenticator: Authenticator) -> Self {
        let service = authenticator.service_token().cloned();
        let ready = Arc::new(OnceLock::new());
        let _ = ready.set(authenticator);
        Self { ready, service }
    }
}

impl Authenticate for Deferred {
    fn authenticate(
        &self,
        bearer: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'static>> {
        match (self.ready.get(), &self.service) {
            (Some(authenticator), _) => authenticator.authenticate(bearer),
            (None, Some(service)) if bearer.starts_with(SERVICE_TOKEN_PREFIX) => {
                Box::pin(std::future::ready(service.verify(bearer)))
            }
            (None, _) => Box::pin(std::future::ready(Err(Refusal::Unavailable(
                "the key store is not open yet".into(),
            )))),
        }
    }

    fn is_cheap(&self, bearer: &str) -> bool {
        match self.ready.get() {
            Some(authenticator) => authenticator.is_cheap(bearer),
            None => bearer.starts_with(SERVICE_TOKEN_PREFIX),
        }
    }
}

/// What the servers of a process authenticate with, from `config`; `None` when
/// authentication is off.
pub fn server_auth(
    config: &AuthConfig,
    authenticator: Arc<dyn Authenticate>,
) -> Option<ServerAuth> {
    config.enabled.then(|| ServerAuth {
        authenticator,
        reflection_requires_auth: config.reflection_requires_auth,
        unauthenticated: config.unauthenticated,
    })
}
