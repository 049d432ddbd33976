//! `opengp export`, `import` and `verify`: the console around gp-migrate
//! (opening stores, progress bars, what is printed, exit codes).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use gp_fhir::OdsCode;
use gp_migrate::{Progress, Side};
use gp_store::{Actor, Ctx, Store};
use opengp::config::ServerConfig;

/// The user on whose behalf a migration runs: the operator at the console.
pub(crate) fn operator() -> Actor {
    Actor::new("cli")
}

fn bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} versions {{per_sec}} {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn report_progress(bar: &indicatif::ProgressBar) -> impl Fn(Progress) + Sync + '_ {
    move |p: Progress| {
        bar.set_length(p.total);
        bar.set_position(p.done);
    }
}

async fn open(cfg: &ServerConfig) -> Result<Store> {
    Ok(Store::new(opengp::server::open_backend(cfg).await?))
}

/// A store that must already exist (to read from), not one to create.
pub(crate) async fn open_existing(cfg: &ServerConfig) -> Result<Store> {
    if cfg.database.is_none() && !cfg.data.join("opengp.db").exists() {
        bail!(
            "there is no OpenGP data in {} (give --data or --database)",
            cfg.data.display()
        );
    }
    open(cfg).await
}

pub(crate) async fn close(store: Store) -> Result<()> {
    tokio::task::spawn_blocking(move || store.close()).await?;
    Ok(())
}

/// The practice named by `ods`, which must exist.
pub(crate) async fn practice(store: &Store, ods: &str) -> Result<Ctx> {
    if ods.is_empty() {
        bail!("say which practice with --practice ODS");
    }
    let code = OdsCode::parse(ods).ok_or_else(|| anyhow!("'{ods}' is not an ODS code"))?;
    let p = store
        .practice(&code, &operator())
        .await?
        .ok_or_else(|| anyhow!("this store has no practice {ods}"))?;
    Ok(Ctx::new(p, operator()))
}

pub async fn export(cfg: ServerConfig, out: PathBuf) -> Result<()> {
    let store = open_existing(&cfg).await?;
    let ctx = practice(&store, &cfg.practice).await?;
    let started = std::time::Instant::now();
    let bar = bar("exporting");
    // The export is in the practice's audit trail before it starts, so that
    // the package carries the record of its own making (and the trail of
    // the store it came from is the package's, link for link); a failure is
    // recorded after it.
    store.audit(
        &ctx,
        gp_store::audit::Event::new(gp_store::audit::Kind::Export),
    );
    let m = gp_migrate::export(&store, &ctx, &out, &report_progress(&bar)).await;
    bar.finish_and_clear();
    if let Err(e) = &m {
        let mut event = gp_store::audit::Event::new(gp_store::audit::Kind::Export);
        event.outcome = gp_store::audit::Outcome::Serious(format!("{e:#}"));
        store.audit(&ctx, event);
    }
    close(store).await?;
    let m = m?;
    let secs = started.elapsed().as_secs_f64();
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "exported {} ({}): {} versions of {} resources in {:.1} s ({:.0} versions/s) to {}",
        m.practice.name,
        m.practice.ods,
        m.totals.versions,
        m.totals.resources,
        secs,
        m.totals.versions as f64 / secs.max(1e-9),
        out.display()
    )?;
    for (ty, t) in &m.types {
        writeln!(
            o,
            "  {ty:<28} {:>9} resources {:>9} versions",
            t.resources, t.versions
        )?;
    }
    Ok(())
}

pub async fn import(
    cfg: ServerConfig,
    package: PathBuf,
    report_to: PathBuf,
    accept_rejections: bool,
) -> Result<()> {
    // A path that names nothing opens no store (nor makes one).
    if !package.exists() {
        bail!("{} does not exist", package.display());
    }
    let store = open(&cfg).await?;
    let (ctx, checked) = match checked_import(&store, &cfg, &package).await {
        Ok(target) => target,
        Err(e) => {
            refused(&store, &cfg, &package, &e).await;
            close(store).await?;
            return Err(e);
        }
    };
    let started = std::time::Instant::now();
    let bar = bar("importing");
    // A folder with a manifest is an OpenGP practice package; anything else
    // is FHIR data from another system (Bundles, NDJSON).
    let (report, what) = match &checked {
        Some(c) => (
            gp_migrate::import(&store, &ctx, c, &report_progress(&bar)).await,
            "an OpenGP practice package",
        ),
        None => (
            gp_migrate::import_foreign(&store, &ctx, &package, &report_progress(&bar)).await,
            "FHIR data from another system",
        ),
    };
    bar.finish_and_clear();
    if let Ok(r) = &report {
        store.audit(&ctx, import_event(&package, what, r));
    }
    close(store).await?;
    let report = report?;
    let secs = started.elapsed().as_secs_f64();
    let json = report_to.with_extension("json");
    let md = report_to.with_extension("md");
    std::fs::write(&json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(&md, report.to_markdown())
        .with_context(|| format!("writing {}", md.display()))?;
    let t = &report.totals;
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "imported {} into {}: {} records in the source: {} imported, {} transformed, {} already present, {} rejected ({:.1} s, {:.0} records/s)",
        package.display(),
        report.practice,
        t.source,
        t.imported,
        t.transformed,
        t.already_present,
        t.rejected,
        secs,
        t.source as f64 / secs.max(1e-9)
    )?;
    writeln!(o, "report: {} and {}", md.display(), json.display())?;
    drop(o);
    if t.rejected > 0 && !accept_rejections {
        bail!(
            "{} records were rejected (see {}); run again with --accept-rejections to accept that",
            t.rejected,
            md.display()
        );
    }
    Ok(())
}

/// Where an import goes and, for a practice package, the package checked
/// (manifest, format, seals) and naming that practice: all before anything
/// is written, the target practice included.
async fn checked_import(
    store: &Store,
    cfg: &ServerConfig,
    package: &Path,
) -> Result<(Ctx, Option<gp_migrate::Checked>)> {
    let checked = match package.join(gp_migrate::MANIFEST_FILE).exists() {
        true => Some(gp_migrate::check_package(package)?),
        false => None,
    };
    let manifest = checked.as_ref().map(|c| &c.manifest);
    if let Some(m) = manifest
        && !cfg.practice.is_empty()
        && m.practice.ods != cfg.practice
    {
        bail!(
            "{} is the package of {} ({}), not of {}: its records, accounts and audit trail are that practice's",
            package.display(),
            m.practice.name,
            m.practice.ods,
            cfg.practice
        );
    }
    let ctx = import_target(store, cfg, manifest).await?;
    Ok((ctx, checked))
}

/// An import refused before it ran, in the target practice's trail (DICOM
/// 110107 Import by the operator, serious failure, the package and the
/// reason) where the practice exists and recording it cannot stand in the
/// way of a package's trail: a practice with no trail yet, or whose trail
/// the package's would continue (an intact copy, a resumed import), must
/// keep it free for the package's next link, so it records nothing there.
/// Nothing is created to record a refusal.
async fn refused(store: &Store, cfg: &ServerConfig, package: &Path, why: &anyhow::Error) {
    let ods = match cfg.practice.as_str() {
        "" => match store.practices(&operator()).await.as_deref() {
            Ok([only]) => only.ods.to_string(),
            _ => return,
        },
        ods => ods.to_owned(),
    };
    let Ok(ctx) = practice(store, &ods).await else {
        return;
    };
    if gp_migrate::would_continue(store, &ctx, package)
        .await
        .unwrap_or(true)
    {
        return;
    }
    use gp_store::audit::{Admin, Event, Kind, Outcome};
    let mut event = Event::new(Kind::Admin(Admin::Import)).about(
        &package.display().to_string(),
        "refused before anything was written".to_owned(),
    );
    event.outcome = Outcome::Serious(format!("{why:#}"));
    store.audit(&ctx, event);
}

/// The import as a whole in the target's audit trail, after everything it
/// wrote (so that it continues a package's trail rather than interrupting
/// it): the operator at the console as agent, the source and the counts,
/// a minor failure when records were rejected. One refused before it ran
/// is recorded apart ([`refused`]).
fn import_event(package: &Path, what: &str, r: &gp_migrate::Report) -> gp_store::audit::Event {
    use gp_store::audit::{Admin, Event, Kind, Outcome};
    let t = &r.totals;
    let mut event = Event::new(Kind::Admin(Admin::Import)).about(
        &package.display().to_string(),
        format!(
            "{what}: {} records in the source: {} imported, {} transformed, {} already present, {} rejected",
            t.source, t.imported, t.transformed, t.already_present, t.rejected
        ),
    );
    if t.rejected > 0 {
        event.outcome = Outcome::Minor(format!(
            "{} of the {} records were rejected",
            t.rejected, t.source
        ));
    }
    event
}

/// The practice an import goes to: `--practice`, else the package's, else
/// the store's only practice (a new store gets the configured default).
async fn import_target(
    store: &Store,
    cfg: &ServerConfig,
    manifest: Option<&gp_migrate::Manifest>,
) -> Result<Ctx> {
    let (ods, name) = match (cfg.practice.as_str(), manifest) {
        ("", Some(m)) => (m.practice.ods.clone(), m.practice.name.clone()),
        ("", None) => {
            let all = store.practices(&operator()).await?;
            match all.as_slice() {
                [only] => (only.ods.to_string(), only.name.clone()),
                [] => (
                    opengp::config::DEFAULT_PRACTICE.to_owned(),
                    opengp::config::DEFAULT_PRACTICE_NAME.to_owned(),
                ),
                _ => bail!("this store serves several practices: say which with --practice ODS"),
            }
        }
        (ods, m) => (
            ods.to_owned(),
            m.map_or_else(|| cfg.practice_name.clone(), |m| m.practice.name.clone()),
        ),
    };
    let code = OdsCode::parse(&ods).ok_or_else(|| anyhow!("'{ods}' is not an ODS code"))?;
    let p = store.ensure_practice(&code, &name, &operator()).await?;
    Ok(Ctx::new(p, operator()))
}

/// `opengp practice freeze|unfreeze`.
pub async fn freeze(cfg: ServerConfig, reason: Option<String>) -> Result<()> {
    let store = open_existing(&cfg).await?;
    let out = async {
        let ctx = practice(&store, &cfg.practice).await?;
        store.set_frozen(&ctx, reason.clone()).await?;
        Ok::<_, anyhow::Error>(ctx)
    }
    .await;
    close(store).await?;
    let ctx = out?;
    let mut o = std::io::stdout().lock();
    match reason {
        Some(r) => writeln!(
            o,
            "{} ({}) is read-only: writes are refused ({r}); reads and export go on",
            ctx.practice.name, ctx.practice.ods
        )?,
        None => writeln!(
            o,
            "{} ({}) accepts writes again",
            ctx.practice.name, ctx.practice.ods
        )?,
    }
    Ok(())
}

/// What `opengp verify` compares the store with.
pub enum Other {
    Package(PathBuf),
    Data(PathBuf),
    Database(String),
}

pub async fn verify(cfg: ServerConfig, other: Other) -> Result<()> {
    let store = open_existing(&cfg).await?;
    let ctx = practice(&store, &cfg.practice).await?;
    let (second, second_store) = match other {
        Other::Package(p) => (Side::Package(p), None),
        o => {
            let mut c = cfg.clone();
            match o {
                Other::Data(d) => {
                    c.data = d;
                    c.database = None;
                }
                Other::Database(u) => c.database = Some(u),
                Other::Package(_) => {}
            }
            let s = open_existing(&c).await?;
            let ctx2 = practice(&s, &cfg.practice).await?;
            (Side::Store(s.clone(), ctx2), Some(s))
        }
    };
    let compared = gp_migrate::verify(&Side::Store(store.clone(), ctx), &second).await;
    close(store).await?;
    if let Some(s) = second_store {
        close(s).await?;
    }
    let compared = compared?;
    let diffs = compared.differences;
    let mut o = std::io::stdout().lock();
    for d in diffs.iter().take(1000) {
        writeln!(o, "{d}")?;
    }
    if compared.trail_continues > 0 {
        writeln!(
            o,
            "the audit trail here continues past the other side's by {} records (its import's own record and what happened since)",
            compared.trail_continues
        )?;
    }
    writeln!(o, "{} differences", diffs.len())?;
    drop(o);
    if !diffs.is_empty() {
        bail!("the two sides differ in {} places", diffs.len());
    }
    Ok(())
}
