//! `opengp user` and `opengp policy`: staff accounts and the practice's
//! access policy, managed at the console by the operator.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use gp_fhir::OdsCode;
use gp_store::accounts::{NewUser, generate_password};
use gp_store::{Actor, Ctx, Store};
use opengp::config::ServerConfig;

/// The console operator, recorded as the actor.
fn operator() -> Actor {
    Actor::new("cli")
}

/// Opens the store and the practice (created if this store has not served
/// it yet, so that accounts can exist before the first start).
async fn open(cfg: &ServerConfig) -> Result<(Store, Ctx)> {
    if cfg.practice.is_empty() {
        bail!("say which practice with --practice ODS");
    }
    let code = OdsCode::parse(&cfg.practice)
        .ok_or_else(|| anyhow!("'{}' is not an ODS code", cfg.practice))?;
    let store = Store::new(opengp::server::open_backend(cfg).await?);
    let practice = store
        .ensure_practice(&code, &cfg.practice_name, &operator())
        .await?;
    Ok((store, Ctx::new(practice, operator())))
}

async fn close(store: Store) -> Result<()> {
    tokio::task::spawn_blocking(move || store.close()).await?;
    Ok(())
}

/// What `opengp user add` was asked for.
pub struct AddUser {
    pub username: String,
    pub name: String,
    pub roles: Vec<String>,
    pub practitioner: Option<String>,
    /// Read the password from the first line of standard input instead of
    /// generating one.
    pub password_stdin: bool,
}

pub async fn add(cfg: ServerConfig, args: AddUser) -> Result<()> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        generate_password()
    };
    let (store, ctx) = open(&cfg).await?;
    let added = store
        .add_user(
            &ctx,
            NewUser {
                username: args.username,
                name: args.name,
                password: password.clone(),
                roles: args.roles,
                practitioner: args.practitioner,
            },
        )
        .await;
    close(store).await?;
    let user = added?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Added {} ({}) at {} with role profiles {}.",
        user.username,
        user.name,
        ctx.practice.ods,
        user.roles.join(", ")
    )?;
    if !args.password_stdin {
        writeln!(out, "Password: {password}")?;
    }
    Ok(())
}

pub async fn list(cfg: ServerConfig) -> Result<()> {
    let (store, ctx) = open(&cfg).await?;
    let users = store.users(&ctx).await;
    close(store).await?;
    let mut out = std::io::stdout().lock();
    for u in users? {
        writeln!(
            out,
            "{:<20} {:<28} {:<20} {}",
            u.username,
            u.name,
            u.roles.join(","),
            u.practitioner
                .map(|p| format!("Practitioner/{p}"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// Prints the practice's policy (its own or the baseline) as JSON.
pub async fn show_policy(cfg: ServerConfig) -> Result<()> {
    let (store, ctx) = open(&cfg).await?;
    let policy = store.policy(&ctx).await;
    close(store).await?;
    writeln!(std::io::stdout().lock(), "{}", policy?.to_json())?;
    Ok(())
}

/// Replaces the practice's policy with the file's.
pub async fn set_policy(cfg: ServerConfig, file: PathBuf) -> Result<()> {
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let policy = gp_store::access::Policy::from_json(&text)?;
    let (store, ctx) = open(&cfg).await?;
    let set = store.set_policy(&ctx, &policy).await;
    close(store).await?;
    set?;
    writeln!(
        std::io::stdout().lock(),
        "The policy of {} is now that of {} (servers apply it within a minute).",
        ctx.practice.ods,
        file.display()
    )?;
    Ok(())
}
