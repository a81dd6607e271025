//! `varta user …` (accounts from the command line) and `varta audit …`.

use anyhow::{Context, Result};
use clap::Subcommand;
use varta_api::auth::{self, Role};
use varta_store::accounts::AuditEntry;
use varta_store::Store;

/// `varta user …`.
#[derive(Subcommand)]
pub enum UserCmd {
    /// Create an account. The password is read from VARTA_PASSWORD, else from the
    /// first line of standard input; `--generate` makes one and prints it.
    Add {
        /// Login name (a-z, 0-9, '.', '-', '_').
        name: String,
        /// `operator`, `contractor` or `admin`.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Make a random password and print it.
        #[arg(long)]
        generate: bool,
        /// If the account exists, set its role and password (and enable it).
        #[arg(long)]
        replace: bool,
    },
    /// Print a new machine token for an account (for scripts and integrations).
    Token {
        /// Account name.
        name: String,
        /// A label for the token.
        #[arg(long)]
        label: Option<String>,
        /// Expire after this many days (1 to 3650).
        #[arg(long, default_value_t = MACHINE_TOKEN_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
    },
    /// List an account's tokens (id, kind, label, made, expires, revoked, last used).
    Tokens {
        /// Account name.
        name: String,
    },
    /// Revoke one token by its id (from `varta user tokens`).
    Revoke {
        /// Token id.
        id: i64,
    },
    /// Disable an account and revoke its tokens.
    Disable {
        /// Account name.
        name: String,
    },
    /// List accounts.
    List,
}

/// Days a machine token lives unless `--days` says otherwise: long enough for an
/// integration to run a quarter between rotations, short enough that a forgotten
/// token dies on its own.
pub const MACHINE_TOKEN_DAYS: u32 = 90;

/// `varta audit …`.
#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the audit log's hash chain; names the first row that was changed or
    /// follows a removed one (exit status 1), else prints the row count and the
    /// newest row's hash (write it down: a later verify must still contain it).
    Verify,
}

/// Runs a `varta audit` command against DATABASE_URL.
pub async fn audit(cmd: AuditCmd, database_url: &str) -> Result<std::process::ExitCode> {
    let store = Store::connect(database_url).await?;
    match cmd {
        AuditCmd::Verify => {
            let r = store.verify_audit().await?;
            match r.broken {
                Some((id, why)) => {
                    println!("audit log BROKEN at row {id}: {why} ({} rows checked)", r.rows);
                    Ok(std::process::ExitCode::FAILURE)
                }
                None => {
                    println!("audit log intact: {} rows, head {}", r.rows, r.head.as_deref().unwrap_or("(empty)"));
                    Ok(std::process::ExitCode::SUCCESS)
                }
            }
        }
    }
}

/// The audit actor of a command-line change: `cli:` and the operating system's
/// name of the real user id (not `$USER`, which the caller sets at will).
fn cli_actor() -> String {
    // SAFETY: getuid(2) has no preconditions; getpwuid(3) returns a pointer into
    // static storage or null, read at once (this runs before any other thread
    // calls it).
    let uid = unsafe { libc::getuid() };
    let name = unsafe {
        let pw = libc::getpwuid(uid);
        (!pw.is_null() && !(*pw).pw_name.is_null())
            .then(|| std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
    };
    match name {
        Some(n) => format!("cli:{n}"),
        None => format!("cli:uid{uid}"),
    }
}

fn generated_password() -> String {
    let (t, _) = auth::new_token();
    t.trim_start_matches("vt_")[..20].to_owned()
}

/// Runs a `varta user` command against DATABASE_URL. Changes are audited with the
/// actor `cli:<name of the operating system user id>` (not `$USER`), in the
/// transaction of the change.
pub async fn user(cmd: UserCmd, database_url: &str) -> Result<()> {
    let store = Store::connect(database_url).await?;
    store.ensure_schema(varta_node::owner_url_from_env().as_deref()).await?;
    let actor = cli_actor();
    match cmd {
        UserCmd::Add { name, role, generate, replace } => {
            let password = if generate {
                generated_password()
            } else if let Ok(p) = std::env::var("VARTA_PASSWORD") {
                p
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            };
            varta_api::session::check_new_user(&name, &password)?;
            let to_hash = password.clone();
            let hash = tokio::task::spawn_blocking(move || auth::hash_password(&to_hash)).await??;
            let audit = AuditEntry::by(
                &actor,
                "user_add",
                &*name,
                serde_json::json!({"role": role.as_str(), "replace": replace}),
            );
            store.upsert_user(&name, role, &hash, replace, &audit).await?;
            if generate {
                println!("user {name} ({}) created; password: {password}", role.as_str());
            } else {
                println!("user {name} ({}) created", role.as_str());
            }
        }
        UserCmd::Token { name, label, days } => {
            let users = store.list_users().await?;
            let u = users
                .iter()
                .find(|u| u.name == name && u.disabled_at.is_none())
                .ok_or_else(|| anyhow::anyhow!("no enabled user `{name}`"))?;
            let (token, hash) = auth::new_token();
            let expires = chrono::Utc::now() + chrono::Duration::days(days as i64);
            let audit = AuditEntry::by(&actor, "token_add", name, serde_json::json!({"label": label, "days": days}));
            store.add_token(u.id, "machine", &hash, label.as_deref(), Some(expires), &audit).await?;
            println!("{token}");
        }
        UserCmd::Disable { name } => {
            let audit = AuditEntry::by(&actor, "user_disable", &*name, serde_json::json!({}));
            if !store.disable_user(&name, &audit).await? {
                anyhow::bail!("no enabled user `{name}`");
            }
            println!("user {name} disabled");
        }
        UserCmd::Tokens { name } => {
            let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| "-".into())
            };
            println!("id\tkind\tlabel\tcreated\texpires\trevoked\tlast_used");
            for t in store.list_tokens(&name).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.kind,
                    t.label.as_deref().unwrap_or("-"),
                    fmt(Some(t.created_at)),
                    fmt(t.expires_at),
                    fmt(t.revoked_at),
                    fmt(t.last_used_at)
                );
            }
        }
        UserCmd::Revoke { id } => {
            let audit = AuditEntry::by(&actor, "token_revoke", id.to_string(), serde_json::json!({}));
            if !store.revoke_token(id, &audit).await? {
                anyhow::bail!("no live token {id}");
            }
            println!("token {id} revoked");
        }
        UserCmd::List => {
            for u in store.list_users().await? {
                let state = if u.disabled_at.is_some() { "disabled" } else { "enabled" };
                println!("{}\t{}\t{state}", u.name, u.role.as_str());
            }
        }
    }
    Ok(())
}

/// Parses `--role`.
pub fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}
