//! `opengp user`, `opengp patient-account`, `opengp app` and `opengp policy`:
//! staff and patient accounts, SMART
//! on FHIR apps and the practice's access policy, managed at the console
//! by the operator.

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

/// `opengp patient-account add`: the online account of a patient of the
/// practice (gp-store online.rs), with a generated password printed once.
pub async fn add_patient(cfg: ServerConfig, nhs_number: String, name: String) -> Result<()> {
    let password = generate_password();
    let (store, ctx) = open(&cfg).await?;
    let name = if name.is_empty() {
        format!("patient {nhs_number}")
    } else {
        name
    };
    let added = store
        .add_patient_account(&ctx, &nhs_number, &name, &password)
        .await;
    close(store).await?;
    let user = added?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Added the online account {} ({}) at {}; its id (for a proxy's RelatedPerson identifier {}) is {}.",
        user.username,
        user.name,
        ctx.practice.ods,
        gp_store::online::PROXY_ACCOUNT,
        user.id
    )?;
    writeln!(out, "Password: {password}")?;
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
            "{:<20} {:<28} {:<20} {:<9} {}",
            u.username,
            u.name,
            u.roles.join(","),
            if u.disabled { "disabled" } else { "" },
            u.practitioner
                .map(|p| format!("Practitioner/{p}"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `opengp user disable|enable`.
pub async fn set_enabled(cfg: ServerConfig, username: String, enabled: bool) -> Result<()> {
    let (store, ctx) = open(&cfg).await?;
    let done = store.set_enabled(&ctx, &username, enabled).await;
    close(store).await?;
    let user = done?;
    writeln!(
        std::io::stdout().lock(),
        "{} ({}) at {} is {}.",
        user.username,
        user.name,
        ctx.practice.ods,
        if enabled {
            "enabled"
        } else {
            "disabled; its sessions have ended"
        }
    )?;
    Ok(())
}

/// `opengp user roles`.
pub async fn set_roles(cfg: ServerConfig, username: String, roles: Vec<String>) -> Result<()> {
    let (store, ctx) = open(&cfg).await?;
    let done = store.set_roles(&ctx, &username, roles).await;
    close(store).await?;
    let user = done?;
    writeln!(
        std::io::stdout().lock(),
        "{} ({}) at {} now holds the role profiles {}.",
        user.username,
        user.name,
        ctx.practice.ods,
        user.roles.join(", ")
    )?;
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

/// What `opengp app add` was asked for.
pub struct AddApp {
    pub name: String,
    pub kind: String,
    pub scope: String,
    pub redirect_uris: Vec<String>,
    pub jwks: Option<PathBuf>,
    pub key_out: Option<PathBuf>,
    pub launch_url: Option<String>,
}

/// Writes a new file readable by its owner only; never replaces one.
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

pub async fn add_app(cfg: ServerConfig, args: AddApp) -> Result<()> {
    use gp_store::smart::{AppKind, NewApp};
    let kind = AppKind::parse(&args.kind).ok_or_else(|| {
        anyhow!(
            "--kind is backend, public or confidential, not '{}'",
            args.kind
        )
    })?;
    let mut key = None;
    let jwks = match (kind, &args.jwks, &args.key_out) {
        (AppKind::Backend, Some(file), _) => Some(
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
        ),
        (AppKind::Backend, None, Some(out)) => {
            let (pem, jwks) = gp_api::smart::generate_key().map_err(|e| anyhow!(e))?;
            key = Some((out.clone(), pem));
            Some(jwks)
        }
        (AppKind::Backend, None, None) => {
            bail!(
                "a backend service needs --jwks FILE (its public keys) or --key-out FILE (to generate a key pair)"
            )
        }
        _ => None,
    };
    let (store, ctx) = open(&cfg).await?;
    let added = store
        .register_app(
            &ctx,
            NewApp {
                name: args.name,
                kind,
                redirect_uris: args.redirect_uris,
                jwks,
                scope: args.scope,
                launch_url: args.launch_url.filter(|u| !u.is_empty()),
            },
        )
        .await;
    close(store).await?;
    let added = added?;
    if let Some((path, pem)) = &key {
        write_private(path, pem)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "client_id={}", added.app.client_id)?;
    writeln!(out, "kind={}", added.app.kind.code())?;
    writeln!(out, "scope={}", added.app.scope)?;
    if let Some(u) = &added.app.launch_url {
        writeln!(out, "launch_url={u}")?;
    }
    if let Some(secret) = &added.secret {
        writeln!(out, "client_secret={secret}")?;
    }
    if let Some((path, _)) = &key {
        writeln!(out, "private_key={}", path.display())?;
        writeln!(out, "algorithm=ES384")?;
    }
    writeln!(
        out,
        "token_endpoint=/practices/{}/smart/token",
        ctx.practice.ods
    )?;
    Ok(())
}

pub async fn list_apps(cfg: ServerConfig) -> Result<()> {
    let (store, ctx) = open(&cfg).await?;
    let apps = store.apps(&ctx).await;
    close(store).await?;
    let mut out = std::io::stdout().lock();
    for a in apps? {
        writeln!(
            out,
            "{:<38} {:<13} {:<28} {}{}",
            a.client_id,
            a.kind.code(),
            a.name,
            a.scope,
            if a.disabled { " (disabled)" } else { "" }
        )?;
    }
    Ok(())
}

/// Changes a registered app; a running server stops honouring a disabled
/// app's tokens within its token cache's 30 seconds.
pub async fn update_app(
    cfg: ServerConfig,
    client_id: String,
    change: gp_store::smart::AppChange,
) -> Result<()> {
    let (store, ctx) = open(&cfg).await?;
    let updated = store.update_app(&ctx, &client_id, change).await;
    close(store).await?;
    let a = updated?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "client_id={}", a.client_id)?;
    writeln!(out, "name={}", a.name)?;
    writeln!(out, "scope={}", a.scope)?;
    writeln!(out, "redirect_uris={}", a.redirect_uris.join(" "))?;
    writeln!(
        out,
        "launch_url={}",
        a.launch_url.as_deref().unwrap_or_default()
    )?;
    writeln!(out, "disabled={}", a.disabled)?;
    Ok(())
}
