//! `phantom auth key create|list|revoke`: API keys, managed in the database itself.
//!
//! These commands open the configured database directly, not a running service: keys can be
//! made before the first start, and revoked while the services are down. They apply the key
//! table's migration (idempotent) before anything else, so they also work on a database no
//! service has opened yet.
//!
//! Only `create` needs the key secret (`auth.key_secret`, `PHANTOM_AUTH_KEY_SECRET`): keys are
//! stored as a keyed hash of their secret, and a key hashed under another secret than the
//! servers' would never authenticate. Without one configured, it takes the secret `phantom up`
//! keeps in its data directory ([`crate::auth::prepare_local`]), so a key made here works with
//! `make run`. Listing and revoking read and mark rows only: an operator revoking a leaked key
//! in a hurry needs database access, not the hashing secret.

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use phantom_identity::{KeyInfo, KeyStore, Secret, SqlKeyRepository, repository::KeyRepository};
use phantom_kit::config::redact;
use phantom_layers::{
    Tenant,
    auth::{Scope, Scopes},
};
use phantom_storage::Database;
use serde_json::json;

use super::{errln, outln, terminal::inert};
use crate::config::Config;

/// How long a key lives when `--expires` is not given.
pub const DEFAULT_EXPIRY: &str = "90d";

/// `phantom auth …`.
#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// API keys: `phk_<id>_<secret>`, each acting for one tenant with a set of scopes.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        phantom auth key create --tenant acme --scopes scans:read,scans:write --name ci\n  \
        phantom auth key list --tenant acme\n  \
        phantom auth key revoke 3f9a1c2b4d5e"
    )]
    Key(KeyCommand),
}

/// `phantom auth key …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Create an API key and print it: this is the only time it is shown (it is stored as a
    /// keyed hash and cannot be recovered).
    #[command(
        after_help = "Scopes: scans:read, scans:write, findings:read, findings:triage, \
        notify:publish, notify:subscribe, admin; or `all`.\n\n\
        Examples:\n  \
        phantom auth key create --tenant acme --scopes scans:read,findings:read --name dashboard\n  \
        phantom auth key create --tenant acme --scopes all --expires never --name ops\n  \
        phantom auth key create --tenant acme --scopes scans:write --expires 7d --output json | jq -r .key\n  \
        PHANTOM_AUTH_KEY_SECRET=… DATABASE_URL=postgres://phantom@db/phantom phantom auth key create …"
    )]
    Create {
        /// The tenant the key acts for (1-63 characters of [a-z0-9-]).
        #[arg(long, value_parser = parse_tenant)]
        tenant: Tenant,
        /// What the key may do, separated by commas: scans:read, scans:write, findings:read,
        /// findings:triage, notify:publish, notify:subscribe, admin; or `all` for every scope.
        #[arg(long, value_parser = parse_scopes)]
        scopes: Scopes,
        /// What to call the key (shown by `list`; at most 128 bytes).
        #[arg(long, default_value = "")]
        name: String,
        /// How long the key is accepted ("90d", "12h", "1y"), or "never".
        #[arg(long, default_value = DEFAULT_EXPIRY, value_parser = parse_expiry)]
        expires: Expiry,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = KeyOutput::Table)]
        output: KeyOutput,
    },
    /// List API keys (never their secret or hash), oldest first.
    #[command(after_help = "Examples:\n  \
        phantom auth key list\n  \
        phantom auth key list --tenant acme --output json | jq -r '.[] | select(.revoked_at == null) | .id'")]
    List {
        /// Only this tenant's keys.
        #[arg(long, value_parser = parse_tenant)]
        tenant: Option<Tenant>,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = KeyOutput::Table)]
        output: KeyOutput,
    },
    /// Revoke an API key by its id. Servers refuse it within `auth.cache_ttl` (30 s by
    /// default): that long, they trust a key they have verified from memory. Exit status 2
    /// when there is no such key.
    #[command(after_help = "Examples:\n  \
        phantom auth key revoke 3f9a1c2b4d5e\n  \
        DATABASE_URL=postgres://phantom@db/phantom phantom auth key revoke 3f9a1c2b4d5e")]
    Revoke {
        /// The key's id (the `<id>` of `phk_<id>_<secret>`, as `list` shows it).
        id: String,
    },
}

/// Output format of the key commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyOutput {
    /// Text for humans.
    Table,
    /// JSON for scripts.
    Json,
}

/// When a new key stops being accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Never (until revoked).
    Never,
    /// This long after its creation.
    After(Duration),
}

fn parse_tenant(s: &str) -> Result<Tenant, String> {
    Tenant::parse(s).ok_or_else(|| "a tenant is 1-63 characters of [a-z0-9-]".to_owned())
}

/// Scope names separated by commas (or spaces); `all` stands for every scope.
fn parse_scopes(s: &str) -> Result<Scopes, String> {
    let mut scopes = Vec::new();
    for name in s.split([',', ' ']).filter(|n| !n.is_empty()) {
        if name == "all" {
            scopes.extend(Scope::ALL);
        } else {
            scopes.push(Scope::parse(name).map_err(|e| e.to_string())?);
        }
    }
    if scopes.is_empty() {
        return Err("name at least one scope (or `all`)".to_owned());
    }
    Ok(scopes.into_iter().collect())
}

fn parse_expiry(s: &str) -> Result<Expiry, String> {
    if s == "never" {
        return Ok(Expiry::Never);
    }
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0, or \"never\"".to_owned()),
        Ok(d) => Ok(Expiry::After(d)),
        Err(e) => Err(format!(
            "{e} (a duration such as \"90d\" or \"12h\", or \"never\")"
        )),
    }
}

/// Runs `command` against the database of the configuration at `config` (and the
/// environment).
pub async fn run(config: Option<&std::path::Path>, command: AuthCommand) -> ExitCode {
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(err) => {
            errln!("phantom: {err}");
            return ExitCode::from(2);
        }
    };
    let AuthCommand::Key(command) = command;
    // Resolved before the database is touched: a missing secret is the caller's to fix, and
    // nothing should be created (not even the table) for a key that cannot be made.
    let secret = match &command {
        KeyCommand::Create { .. } => match key_secret(&config) {
            Ok(secret) => Some(secret),
            Err(why) => {
                errln!("phantom auth key create: {why}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let db = match open(&config).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let repository = Arc::new(SqlKeyRepository::new(db));
    match command {
        KeyCommand::Create {
            tenant,
            scopes,
            name,
            expires,
            output,
        } => {
            let store = KeyStore::new(repository, &secret.expect("resolved above"));
            let args = CreateArgs {
                tenant,
                scopes,
                name,
                expires,
                output,
            };
            create(&store, &config, args).await
        }
        KeyCommand::List { tenant, output } => list(repository.as_ref(), tenant, output).await,
        KeyCommand::Revoke { id } => revoke(repository.as_ref(), &config, &id).await,
    }
}

/// The secret keys are hashed under: the configured one, else the one `phantom up` keeps in
/// the data directory (created now on first use, as `phantom up` would create it).
fn key_secret(config: &Config) -> Result<Secret, String> {
    if !config.auth.key_secret.is_empty() {
        return Ok(config.auth.key_secret.clone());
    }
    let data_dir = &config.storage.data_dir;
    let kept = crate::auth::key_secret_path(data_dir);
    // A database of its own (PostgreSQL, `phantom serve`) is served with a configured secret;
    // making one up here would give keys that no server can verify.
    if !config.storage.database_url.is_empty() && !kept.exists() {
        return Err(format!(
            "auth.key_secret (PHANTOM_AUTH_KEY_SECRET) is not set, and {} keeps none: set the \
             secret the servers of {} use (keys are hashed under it)",
            data_dir.display(),
            redact(&config.storage.database_url)
        ));
    }
    let mut auth = config.auth.clone();
    // `phantom up` keeps a secret only when authentication is on; a key made while it is off
    // is hashed under the secret it will use once turned on.
    auth.enabled = true;
    crate::auth::prepare_local(&mut auth, data_dir, config.tls.enabled)
        .map_err(|e| format!("{e:#}"))?;
    Ok(auth.key_secret)
}

/// Opens the configured database and applies the key table's migration if it is missing.
async fn open(config: &Config) -> Result<Database, ExitCode> {
    let shown = if config.storage.database_url.is_empty() {
        config
            .storage
            .data_dir
            .join("phantom.db")
            .display()
            .to_string()
    } else {
        redact(&config.storage.database_url)
    };
    let db = Database::open(&config.storage).await.map_err(|err| {
        errln!("phantom auth: cannot open {shown}: {err}\n  is the database running, and DATABASE_URL right?");
        ExitCode::FAILURE
    })?;
    db.migrate(phantom_identity::migrator())
        .await
        .map_err(|err| {
            errln!("phantom auth: cannot create the key table in {shown}: {err}");
            ExitCode::FAILURE
        })?;
    Ok(db)
}

/// What `create` was asked for.
struct CreateArgs {
    tenant: Tenant,
    scopes: Scopes,
    name: String,
    expires: Expiry,
    output: KeyOutput,
}

async fn create(store: &KeyStore, config: &Config, args: CreateArgs) -> ExitCode {
    let expires_at = match args.expires {
        Expiry::Never => None,
        Expiry::After(d) => {
            let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
            Some(now_micros().saturating_add(micros))
        }
    };
    let (info, key) = match store
        .create(args.tenant, args.scopes, &args.name, expires_at)
        .await
    {
        Ok(created) => created,
        Err(phantom_identity::IdentityError::Invalid(why)) => {
            errln!("phantom auth key create: {why}");
            return ExitCode::from(2);
        }
        Err(err) => {
            errln!("phantom auth key create: {err}");
            return ExitCode::FAILURE;
        }
    };
    match args.output {
        KeyOutput::Json => outln!(
            "{}",
            json!({
                "id": info.id,
                "key": key,
                "tenant": info.tenant.as_str(),
                "scopes": scope_names(info.scopes),
                "expires_at": info.expires_at.map(rfc3339),
            })
        ),
        KeyOutput::Table => {
            let expires = info.expires_at.map_or_else(|| "never".to_owned(), rfc3339);
            outln!(
                "Created API key {id}. It is shown this once: it is stored hashed and cannot \
                 be recovered.\n\n  {key}\n\n  \
                 tenant   {tenant}\n  \
                 scopes   {scopes}\n  \
                 name     {name}\n  \
                 expires  {expires}\n\n\
                 Use it: export PHANTOM_TOKEN={key}   # `phantom scan|health|watch` send it; \
                 or grpcurl -H \"authorization: Bearer $PHANTOM_TOKEN\" …",
                id = info.id,
                tenant = info.tenant.as_str(),
                scopes = info.scopes,
                name = if info.name.is_empty() {
                    "-"
                } else {
                    &info.name
                },
            );
            if !config.auth.enabled {
                errln!(
                    "note: authentication is off (auth.enabled = false): no server checks this \
                     key until it is turned on"
                );
            }
        }
    }
    ExitCode::SUCCESS
}

async fn list(
    repository: &dyn KeyRepository,
    tenant: Option<Tenant>,
    output: KeyOutput,
) -> ExitCode {
    let keys = match repository.list_keys(tenant.as_ref()).await {
        Ok(keys) => keys,
        Err(err) => {
            errln!("phantom auth key list: {err}");
            return ExitCode::FAILURE;
        }
    };
    match output {
        KeyOutput::Json => {
            let rows: Vec<_> = keys.iter().map(key_json).collect();
            outln!("{}", serde_json::Value::Array(rows));
        }
        KeyOutput::Table if keys.is_empty() => outln!("No API keys."),
        KeyOutput::Table => outln!("{}", table(&keys)),
    }
    ExitCode::SUCCESS
}

async fn revoke(repository: &dyn KeyRepository, config: &Config, id: &str) -> ExitCode {
    let before = match repository.find_key(id).await {
        Ok(Some(record)) => record.info,
        Ok(None) => {
            errln!(
                "phantom auth key revoke: no API key has the id {:?} (`phantom auth key list` shows them)",
                inert(id)
            );
            return ExitCode::from(2);
        }
        Err(err) => {
            errln!("phantom auth key revoke: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(at) = before.revoked_at {
        outln!(
            "API key {} was already revoked at {}.",
            before.id,
            rfc3339(at)
        );
        return ExitCode::SUCCESS;
    }
    let at = now_micros();
    match repository.revoke_key(id, at).await {
        Ok(true) => {}
        Ok(false) => {
            errln!("phantom auth key revoke: the API key {id:?} is gone");
            return ExitCode::from(2);
        }
        Err(err) => {
            errln!("phantom auth key revoke: {err}");
            return ExitCode::FAILURE;
        }
    }
    outln!(
        "Revoked API key {} (tenant {}) at {}. Servers refuse it within auth.cache_ttl ({}): \
         that long, a server that verified it trusts it from memory.",
        before.id,
        before.tenant.as_str(),
        rfc3339(at),
        humantime::format_duration(config.auth.cache_ttl)
    );
    ExitCode::SUCCESS
}

/// The keys as a table, never a secret or hash (the store holds no secret; the hash is not in
/// a [`KeyInfo`]).
fn table(keys: &[KeyInfo]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "ID",
        "TENANT",
        "SCOPES",
        "NAME",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "REVOKED",
    ]);
    let or = |t: Option<i64>, none: &str| t.map_or_else(|| none.to_owned(), rfc3339);
    for k in keys {
        table.add_row([
            k.id.clone(),
            k.tenant.as_str().to_owned(),
            k.scopes.to_string(),
            if k.name.is_empty() {
                "-".to_owned()
            } else {
                inert(&k.name).into_owned()
            },
            rfc3339(k.created_at),
            or(k.expires_at, "never"),
            or(k.last_used_at, "-"),
            or(k.revoked_at, "-"),
        ]);
    }
    table.to_string()
}

fn key_json(k: &KeyInfo) -> serde_json::Value {
    json!({
        "id": k.id,
        "tenant": k.tenant.as_str(),
        "scopes": scope_names(k.scopes),
        "name": k.name,
        "created_at": rfc3339(k.created_at),
        "expires_at": k.expires_at.map(rfc3339),
        "last_used_at": k.last_used_at.map(rfc3339),
        "revoked_at": k.revoked_at.map(rfc3339),
    })
}

fn scope_names(scopes: Scopes) -> Vec<&'static str> {
    scopes.iter().map(Scope::as_str).collect()
}

/// Microseconds since the Unix epoch, as the key store counts time.
fn now_micros() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// RFC 3339 text (to the second) of microseconds since the Unix epoch.
fn rfc3339(micros: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_a_list_or_all_and_an_unknown_one_is_named() {
        assert_eq!(
            parse_scopes("scans:read,findings:read").unwrap(),
            [Scope::ScansRead, Scope::FindingsRead]
                .into_iter()
                .collect()
        );
        assert_eq!(parse_scopes("all").unwrap(), Scopes::all());
        let err = parse_scopes("scans:read,scans:reed").unwrap_err();
        assert!(err.contains("\"scans:reed\""), "{err}");
        assert!(parse_scopes(",").is_err());
    }

    #[test]
    fn expiry_is_a_positive_duration_or_never() {
        assert_eq!(parse_expiry("never").unwrap(), Expiry::Never);
        assert_eq!(
            parse_expiry("90d").unwrap(),
            Expiry::After(Duration::from_secs(90 * 86_400))
        );
        assert!(parse_expiry("0s").is_err());
        assert!(parse_expiry("soon").is_err());
    }

    #[test]
    fn key_tables_are_inert_on_a_terminal() {
        let key = KeyInfo {
            id: "3f9a1c2b4d5e".into(),
            tenant: Tenant::parse("acme").unwrap(),
            scopes: Scopes::all(),
            name: "ci \u{1b}]0;owned\u{7}\u{202e}".into(),
            created_at: 0,
            expires_at: None,
            last_used_at: None,
            revoked_at: Some(1),
        };
        let text = table(&[key]);
        assert_eq!(
            crate::commands::terminal_hazards(&text),
            Vec::<char>::new(),
            "{text}"
        );
    }
}
