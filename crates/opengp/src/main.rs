//! `opengp`: the command line. Parses arguments, sets up logging, and hands
//! over to the library crates.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use opengp::config::{self, FileConfig, ServerConfig};
use opengp::server::{Server, shutdown_signal};

mod audit;
mod migrate;
mod reindex;
mod users;

/// mimalloc instead of the system allocator: the server allocates many small
/// JSON values on several threads, where glibc's malloc spent a fifth of
/// ingest's CPU (perf, `opengp bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "opengp",
    version,
    about = "OpenGP: an open clinical system for UK general practice, with a FHIR R4 API."
)]
struct Cli {
    /// A TOML configuration file; flags and OPENGP_* variables override it.
    #[arg(long, global = true, env = "OPENGP_CONFIG")]
    config: Option<PathBuf>,
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, global = true, env = "OPENGP_LOG_FORMAT")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the FHIR API, creating the data directory and practice on first start.
    Serve(ServeArgs),
    /// Serve a synthetic demo practice (in ./opengp-demo unless --data says otherwise),
    /// generating it on first run.
    Demo(DemoArgs),
    /// Run the benchmarks against a fresh server and print the figures.
    Bench(BenchArgs),
    /// SNOMED CT and dm+d releases: load one into the store, or generate a synthetic SNOMED CT one.
    #[command(subcommand)]
    Terminology(TerminologyCommand),
    /// Staff accounts: add or list them.
    #[command(subcommand)]
    User(UserCommand),
    /// Patients' online accounts (they read their own record, and those
    /// they are a proxy for).
    #[command(subcommand)]
    PatientAccount(PatientAccountCommand),
    /// The practice's access policy: which activities each role may carry out.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// SMART on FHIR apps the practice has registered: add or list them.
    #[command(subcommand)]
    App(AppCommand),
    /// Write everything a practice owns (every version of every resource,
    /// with authors and instants) into a practice package folder.
    Export {
        /// The folder to write (new or empty).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Load a practice package (keeping ids, versions and instants) or FHIR
    /// data from another system (Bundles, NDJSON: a file or a folder) into
    /// this store, and write a reconciliation report. Safe to run again.
    Import {
        /// The package folder `opengp export` wrote, or FHIR files.
        package: PathBuf,
        /// Where to write the report (`.json` and `.md` are added).
        #[arg(long, default_value = "import-report")]
        report: PathBuf,
        /// Exit successfully even if records were rejected.
        #[arg(long)]
        accept_rejections: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Freeze a practice read-only for a migration's final export, or thaw it.
    #[command(subcommand)]
    Practice(PracticeCommand),
    /// The practice's audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Compute every current resource's search index rows again, for one
    /// practice (--practice) or all of them. The server does it by itself
    /// when it starts on rows written by another OpenGP's extraction; this
    /// redoes them whatever their version. Safe to stop and run again.
    Reindex {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Compare a practice in this store with a package or another store,
    /// version by version, and print the differences.
    Verify {
        /// A package folder to compare with.
        #[arg(long, conflicts_with_all = ["other_data", "other_database"])]
        package: Option<PathBuf>,
        /// Another embedded store's data directory to compare with.
        #[arg(long, conflicts_with = "other_database")]
        other_data: Option<PathBuf>,
        /// Another PostgreSQL database to compare with.
        #[arg(long)]
        other_database: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit trail's hash chain from the first record to the last;
    /// exits non-zero at the first broken link.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum PracticeCommand {
    /// Refuse every write to the practice (reads go on), saying why.
    Freeze {
        /// What writers are told, e.g. "moving to another system on 1 March".
        #[arg(long, default_value = "frozen for migration")]
        reason: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Accept writes again.
    Unfreeze {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a staff account. Prints a generated password unless
    /// --password-stdin gives one.
    Add {
        /// What the user types to sign in.
        #[arg(long)]
        username: String,
        /// The user's full name.
        #[arg(long)]
        name: String,
        /// A role profile (national RBAC R-code, e.g. R8000); repeat for more.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The id of the user's Practitioner resource.
        #[arg(long)]
        practitioner: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the practice's staff accounts.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable an account (staff or patient): it cannot sign in, and its
    /// sessions end.
    Disable {
        /// The account's user name.
        username: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled account again.
    Enable {
        /// The account's user name.
        username: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give a staff account exactly these role profiles; sessions using a
    /// role taken away end.
    Roles {
        /// The account's user name.
        username: String,
        /// A role profile (R-code); repeat for more.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum PatientAccountCommand {
    /// Create the online account of the practice's patient with an NHS
    /// number (the user name) and print a generated password.
    Add {
        /// The patient's NHS number.
        #[arg(long)]
        nhs_number: String,
        /// The account holder's name.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum AppCommand {
    /// Register an app and print its credentials (`client_id=...` lines,
    /// for scripts). A backend service (the default) gets its keys from
    /// --jwks, or a new ES384 key pair whose private key goes to --key-out.
    Add {
        /// The app's name, shown to users approving it.
        #[arg(long)]
        name: String,
        /// backend (client credentials with private_key_jwt), public or
        /// confidential (user-facing, authorization code with PKCE).
        #[arg(long, default_value = "backend")]
        kind: String,
        /// The scopes it may be granted, space-separated
        /// (e.g. 'system/*.rs', 'launch/patient patient/*.read offline_access').
        #[arg(long)]
        scope: String,
        /// A redirect URI of a user-facing app; repeat for more.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A JWK Set file with the backend service's public keys.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Where to write a generated private key (PKCS#8 PEM), created new.
        #[arg(long)]
        key_out: Option<PathBuf>,
        /// Where a user-facing app is opened from a patient's record (SMART
        /// EHR launch): an https URL (http only for localhost).
        #[arg(long)]
        launch_url: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the practice's registered apps.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a registered app: its name, scopes, redirect URIs (replaced
    /// by those given) or launch URL, or disable it (its tokens stop working)
    /// or enable it again.
    Update {
        /// The app's client id.
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        /// The scopes it may be granted from now on, space-separated.
        #[arg(long)]
        scope: Option<String>,
        /// A redirect URI; repeat for more. Replaces the registered ones.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Where it is opened from a patient's record; '' removes it.
        #[arg(long)]
        launch_url: Option<String>,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print the practice's policy (roles to activities) as JSON.
    Show {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replace the practice's policy with a JSON file's.
    Set {
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which store and practice a migration command works on.
#[derive(Args, Clone)]
struct StoreArgs {
    /// The practice's ODS code (for import: the package's unless given).
    #[arg(long, env = "OPENGP_PRACTICE")]
    practice: Option<String>,
    /// The embedded store's data directory.
    #[arg(long, env = "OPENGP_DATA")]
    data: Option<PathBuf>,
    /// A PostgreSQL database instead of the embedded store.
    #[arg(long, env = "OPENGP_DATABASE")]
    database: Option<String>,
}

// Parsed once per run: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum TerminologyCommand {
    /// Load a release into the store, replacing the one there: SNOMED CT as
    /// an RF2 snapshot (a folder or the release zip), or dm+d as the folder
    /// of its XML files (f_vmp2_*.xml ...). Servers pick it up when they restart.
    Load {
        /// The release folder or zip.
        path: PathBuf,
        #[command(flatten)]
        store: ServeArgs,
    },
    /// Write a synthetic RF2 release (deterministic) for tests and benchmarks.
    Generate {
        /// The folder to write it to.
        dir: PathBuf,
        /// Concepts to generate (the UK clinical edition has about 370,000).
        #[arg(long, default_value_t = gp_terminology::synth::UK_CONCEPTS)]
        concepts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Where the data lives (the SQLite file and its write-ahead log).
    #[arg(long, env = "OPENGP_DATA")]
    data: Option<PathBuf>,
    /// A PostgreSQL database to use instead of the embedded SQLite store
    /// (`postgres://user:password@host:5432/opengp`).
    #[arg(long, env = "OPENGP_DATABASE")]
    database: Option<String>,
    /// The address to listen on.
    #[arg(long, env = "OPENGP_LISTEN")]
    listen: Option<SocketAddr>,
    /// The URL clients reach this server at, when behind a proxy.
    #[arg(long, env = "OPENGP_PUBLIC_URL")]
    public_url: Option<String>,
    /// The ODS code of the practice to create on first start.
    #[arg(long, env = "OPENGP_PRACTICE")]
    practice: Option<String>,
    /// The name of that practice.
    #[arg(long, env = "OPENGP_PRACTICE_NAME")]
    practice_name: Option<String>,
    /// The largest request body accepted, in bytes.
    #[arg(long, env = "OPENGP_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs
    /// --tls-key. Without it the server speaks plain HTTP, for a proxy in
    /// front or for loopback.
    #[arg(long, env = "OPENGP_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "OPENGP_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Sign-in attempts allowed per client address and minute (0: no limit).
    #[arg(long, env = "OPENGP_SIGN_IN_LIMIT")]
    sign_in_limit: Option<u32>,
    /// Seconds a finished Bulk Data export's files are kept before they are
    /// deleted (default a day).
    #[arg(long, env = "OPENGP_EXPORT_RETENTION")]
    export_retention: Option<u64>,
    /// A reverse proxy (address or network, such as 10.0.0.0/8) whose
    /// X-Forwarded-For header names the client, for the audit trail and
    /// the rate limits; repeat for several, or separate with commas.
    #[arg(
        long = "trusted-proxy",
        env = "OPENGP_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<String>,
    #[command(flatten)]
    oidc: OidcArgs,
}

/// Staff sign-in through an external OpenID Connect provider (NHS CIS2,
/// say), besides the built-in accounts.
#[derive(Args, Clone, Default)]
struct OidcArgs {
    /// The provider's issuer URL (its metadata is read from
    /// {issuer}/.well-known/openid-configuration at start).
    #[arg(long, env = "OPENGP_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// The client id OpenGP is registered with at the provider.
    #[arg(long, env = "OPENGP_OIDC_CLIENT_ID")]
    oidc_client_id: Option<String>,
    /// The client secret (none for a public client using PKCE only).
    /// Better given by the environment than on the command line.
    #[arg(long, env = "OPENGP_OIDC_CLIENT_SECRET", hide_env_values = true)]
    oidc_client_secret: Option<String>,
    /// The scopes to ask for, space-separated (default `openid profile`).
    #[arg(long, env = "OPENGP_OIDC_SCOPES")]
    oidc_scopes: Option<String>,
    /// The claim naming the OpenGP account (default `preferred_username`,
    /// then `sub`).
    #[arg(long, env = "OPENGP_OIDC_USERNAME_CLAIM")]
    oidc_username_claim: Option<String>,
    /// The claim carrying the role profiles the provider grants
    /// (`nhsid_nrbac_roles` for CIS2, or an array of R-codes); when given,
    /// a sign-in may use only those of the account's roles.
    #[arg(long, env = "OPENGP_OIDC_ROLES_CLAIM")]
    oidc_roles_claim: Option<String>,
    /// What the sign-in page calls the provider ("Sign in with NAME").
    #[arg(long, env = "OPENGP_OIDC_NAME")]
    oidc_name: Option<String>,
}

#[derive(Args)]
struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Registered patients to generate on first run.
    #[arg(long, default_value_t = 2_000)]
    patients: u32,
    /// The seed: the same seed, size and date give the same practice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The reference date (YYYY-MM-DD) history runs up to and appointments
    /// start from; today by default.
    #[arg(long)]
    date: Option<String>,
}

#[derive(Args)]
struct BenchArgs {
    /// The folder of Synthea transaction bundles (*.json.gz) to ingest.
    #[arg(long, default_value = "../shared/data/synthea")]
    synthea: PathBuf,
    /// Concurrent clients for the ingest scenario.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Reads in the read-latency scenario.
    #[arg(long, default_value_t = 20_000)]
    reads: usize,
    /// Where the benchmark's store lives (a fresh temporary folder by default).
    #[arg(long)]
    data: Option<PathBuf>,
    /// `crud` (ingest and reads), `search` (a grown store and the GP search
    /// mix), `terminology` (a UK-sized SNOMED CT release loaded, then
    /// typeahead over HTTP), `web` (the clinician app's pages over a demo
    /// practice: bytes transferred and times) or `morning` (the load test: a
    /// simulated practice morning over a demo practice; exits non-zero on
    /// any error).
    #[arg(long, default_value = "crud")]
    scenario: String,
    /// For `search`: rounds of the Synthea data to load (26,963 resources each; 37 is a million).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// For `search` with `--data`: when the store there already holds
    /// resources (grown by an earlier run with the same `--rounds`), time the
    /// queries on it as it is instead of growing it again.
    #[arg(long)]
    reuse: bool,
    /// Queries timed per kind (default 200 for `search`, 2,000 for `terminology`).
    #[arg(long)]
    queries: Option<usize>,
    /// For `terminology`: the RF2 release to load (by default a synthetic
    /// one the size of the UK clinical edition, generated first).
    #[arg(long)]
    release: Option<PathBuf>,
    /// Benchmark a PostgreSQL database instead (it should be empty).
    #[arg(long, env = "OPENGP_DATABASE")]
    database: Option<String>,
    /// For `web` and `morning`: patients in the demo practice generated first.
    #[arg(long, default_value_t = 2000)]
    patients: u32,
    /// For `morning`: how long the morning lasts (`600`, `90s`, `10m`).
    #[arg(long, default_value = "10m")]
    duration: String,
    /// For `morning`: simulated staff, each signed in with their own account
    /// (a third receptionists, half GPs, the rest nurses; the demo's staff
    /// first, then more accounts made in the same roles).
    #[arg(long, default_value_t = 40)]
    users: usize,
    /// For `morning`: each user's mean pause between actions, in ms.
    #[arg(long, default_value_t = 1000)]
    think_ms: u64,
    /// For `morning`: the most requests to send; the run stops there if the
    /// clock has not stopped it first.
    #[arg(long, default_value_t = 200_000)]
    max_requests: u64,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // The whole chain of causes, for a person to read.
        let _ = writeln!(std::io::stderr(), "error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let file = FileConfig::load(cli.config.as_deref())?;
    init_logging(cli.log_format.as_deref().or(file.log_format.as_deref()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => {
            runtime.block_on(serve(resolve(args, &file, "./opengp-data")?, None))
        }
        Command::Demo(args) => {
            let mut cfg = resolve(args.serve.clone(), &file, "./opengp-demo")?;
            if args.serve.practice.is_none() && file.practice.is_none() {
                cfg.practice = "Y90001".into();
                cfg.practice_name = "OpenGP Demo Surgery".into();
            }
            let today = match &args.date {
                Some(d) => {
                    time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                        .with_context(|| format!("'{d}' is not a date (YYYY-MM-DD)"))?
                }
                None => time::OffsetDateTime::now_utc().date(),
            };
            let mut opts =
                gp_demo::Options::new(args.seed, today, &cfg.practice, &cfg.practice_name);
            opts.patients = args.patients;
            runtime.block_on(serve(cfg, Some(opts)))
        }
        Command::Bench(args) => runtime.block_on(bench(args)),
        Command::User(UserCommand::Add {
            username,
            name,
            roles,
            practitioner,
            password_stdin,
            store,
        }) => runtime.block_on(users::add(
            store_config(store, &file)?,
            users::AddUser {
                username,
                name,
                roles,
                practitioner,
                password_stdin,
            },
        )),
        Command::PatientAccount(PatientAccountCommand::Add {
            nhs_number,
            name,
            store,
        }) => runtime.block_on(users::add_patient(
            store_config(store, &file)?,
            nhs_number,
            name,
        )),
        Command::User(UserCommand::List { store }) => {
            runtime.block_on(users::list(store_config(store, &file)?))
        }
        Command::User(UserCommand::Disable { username, store }) => runtime.block_on(
            users::set_enabled(store_config(store, &file)?, username, false),
        ),
        Command::User(UserCommand::Enable { username, store }) => runtime.block_on(
            users::set_enabled(store_config(store, &file)?, username, true),
        ),
        Command::User(UserCommand::Roles {
            username,
            roles,
            store,
        }) => runtime.block_on(users::set_roles(
            store_config(store, &file)?,
            username,
            roles,
        )),
        Command::App(AppCommand::Add {
            name,
            kind,
            scope,
            redirect_uris,
            jwks,
            key_out,
            launch_url,
            store,
        }) => runtime.block_on(users::add_app(
            store_config(store, &file)?,
            users::AddApp {
                name,
                kind,
                scope,
                redirect_uris,
                jwks,
                key_out,
                launch_url,
            },
        )),
        Command::App(AppCommand::List { store }) => {
            runtime.block_on(users::list_apps(store_config(store, &file)?))
        }
        Command::App(AppCommand::Update {
            client_id,
            name,
            scope,
            redirect_uris,
            launch_url,
            disable,
            enable,
            store,
        }) => runtime.block_on(users::update_app(
            store_config(store, &file)?,
            client_id,
            gp_store::smart::AppChange {
                name,
                scope,
                redirect_uris: (!redirect_uris.is_empty()).then_some(redirect_uris),
                disabled: (disable || enable).then_some(disable),
                launch_url,
            },
        )),
        Command::Policy(PolicyCommand::Show { store }) => {
            runtime.block_on(users::show_policy(store_config(store, &file)?))
        }
        Command::Policy(PolicyCommand::Set { file: path, store }) => {
            runtime.block_on(users::set_policy(store_config(store, &file)?, path))
        }
        Command::Export { out, store } => {
            runtime.block_on(migrate::export(store_config(store, &file)?, out))
        }
        Command::Import {
            package,
            report,
            accept_rejections,
            store,
        } => runtime.block_on(migrate::import(
            store_config(store, &file)?,
            package,
            report,
            accept_rejections,
        )),
        Command::Practice(PracticeCommand::Freeze { reason, store }) => {
            runtime.block_on(migrate::freeze(store_config(store, &file)?, Some(reason)))
        }
        Command::Reindex { store } => runtime.block_on(reindex::run(store_config(store, &file)?)),
        Command::Audit(AuditCommand::Verify { store }) => {
            runtime.block_on(audit::verify(store_config(store, &file)?))
        }
        Command::Practice(PracticeCommand::Unfreeze { store }) => {
            runtime.block_on(migrate::freeze(store_config(store, &file)?, None))
        }
        Command::Verify {
            package,
            other_data,
            other_database,
            store,
        } => {
            let cfg = store_config(store, &file)?;
            let other = match (package, other_data, other_database) {
                (Some(p), _, _) => migrate::Other::Package(p),
                (_, Some(d), _) => migrate::Other::Data(d),
                (_, _, Some(u)) => migrate::Other::Database(u),
                _ => anyhow::bail!(
                    "say what to compare with: --package, --other-data or --other-database"
                ),
            };
            runtime.block_on(migrate::verify(cfg, other))
        }
        Command::Terminology(TerminologyCommand::Load { path, store }) => runtime.block_on(
            load_terminology(resolve(store, &file, "./opengp-data")?, path),
        ),
        Command::Terminology(TerminologyCommand::Generate {
            dir,
            concepts,
            seed,
        }) => {
            let started = std::time::Instant::now();
            let sum = gp_terminology::synth::generate(&dir, concepts, seed)?;
            writeln!(
                std::io::stdout().lock(),
                "wrote {} concepts, {} descriptions, {} relationships, {} refset members to {} in {:.1} s",
                sum.concepts,
                sum.descriptions,
                sum.relationships,
                sum.members,
                dir.display(),
                started.elapsed().as_secs_f64()
            )?;
            Ok(())
        }
    }
}

/// The configuration of a command that opens a store without serving.
fn store_config(args: StoreArgs, file: &FileConfig) -> Result<ServerConfig> {
    let explicit_practice = args.practice.is_some() || file.practice.is_some();
    let mut cfg = resolve(
        ServeArgs {
            data: args.data,
            database: args.database,
            listen: None,
            public_url: None,
            practice: args.practice,
            practice_name: None,
            max_body_bytes: None,
            tls_cert: None,
            tls_key: None,
            sign_in_limit: None,
            export_retention: None,
            trusted_proxies: Vec::new(),
            oidc: OidcArgs::default(),
        },
        file,
        "./opengp-data",
    )?;
    if !explicit_practice {
        cfg.practice.clear();
    }
    Ok(cfg)
}

fn resolve(args: ServeArgs, file: &FileConfig, default_data: &str) -> Result<ServerConfig> {
    let tls = match (
        args.tls_cert.or_else(|| file.tls_cert.clone()),
        args.tls_key.or_else(|| file.tls_key.clone()),
    ) {
        (Some(cert), Some(key)) => Some(gp_api::tls::TlsFiles { cert, key }),
        (None, None) => None,
        _ => anyhow::bail!("HTTPS needs both a certificate (--tls-cert) and its key (--tls-key)"),
    };
    let mut limits = gp_api::limit::LimitConfig::default();
    if let Some(n) = args.sign_in_limit.or(file.sign_in_limit) {
        limits.sign_ins_per_minute = n;
    }
    let oidc = resolve_oidc(args.oidc, file.oidc.as_ref())?;
    let proxies = if args.trusted_proxies.is_empty() {
        file.trusted_proxies.clone().unwrap_or_default()
    } else {
        args.trusted_proxies
    };
    let trusted_proxies = proxies
        .iter()
        .map(|p| {
            gp_api::proxy::parse_trusted(p).map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ServerConfig {
        data: args
            .data
            .or_else(|| file.data.clone())
            .unwrap_or_else(|| PathBuf::from(default_data)),
        database: args.database.or_else(|| file.database.clone()),
        listen: args.listen.or(file.listen).unwrap_or_else(|| {
            config::DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
        }),
        public_url: args.public_url.or_else(|| file.public_url.clone()),
        max_body_bytes: args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(config::DEFAULT_MAX_BODY),
        practice: args
            .practice
            .or_else(|| file.practice.clone())
            .unwrap_or_else(|| config::DEFAULT_PRACTICE.into()),
        practice_name: args
            .practice_name
            .or_else(|| file.practice_name.clone())
            .unwrap_or_else(|| config::DEFAULT_PRACTICE_NAME.into()),
        tls,
        limits,
        oidc,
        trusted_proxies,
        export_retention: args.export_retention.or(file.export_retention).map_or(
            gp_migrate::bulk::DEFAULT_RETENTION,
            std::time::Duration::from_secs,
        ),
    })
}

/// The OpenID Connect provider, when an issuer is configured.
fn resolve_oidc(
    args: OidcArgs,
    file: Option<&config::OidcFile>,
) -> Result<Option<gp_api::oidc::OidcConfig>> {
    let file = file.cloned().unwrap_or_default();
    let Some(issuer) = args.oidc_issuer.or(file.issuer) else {
        return Ok(None);
    };
    let client_id = args.oidc_client_id.or(file.client_id).context(
        "signing in with an OpenID Connect provider needs the client id (--oidc-client-id)",
    )?;
    let scopes = match args.oidc_scopes {
        Some(s) => s.split_whitespace().map(str::to_owned).collect(),
        None => file
            .scopes
            .unwrap_or_else(|| vec!["openid".into(), "profile".into()]),
    };
    let name = args.oidc_name.or(file.name).unwrap_or_else(|| {
        let host = issuer.split("://").nth(1).unwrap_or(&issuer);
        host.split('/').next().unwrap_or(host).to_owned()
    });
    Ok(Some(gp_api::oidc::OidcConfig {
        issuer,
        client_id,
        client_secret: args.oidc_client_secret.or(file.client_secret),
        scopes,
        username_claim: args
            .oidc_username_claim
            .or(file.username_claim)
            .unwrap_or_else(|| "preferred_username".into()),
        roles_claim: args.oidc_roles_claim.or(file.roles_claim),
        name,
    }))
}

fn init_logging(format: Option<&str>) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENGP_LOG")
        .unwrap_or_else(|_| "info,tower_http=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.unwrap_or("text") {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("log format '{other}' is not known; use text or json"),
    }
    Ok(())
}

async fn serve(cfg: ServerConfig, demo: Option<gp_demo::Options>) -> Result<()> {
    let server = Server::bind(&cfg).await?;
    let accounts = match &demo {
        Some(opts) => {
            seed_demo(&server, opts).await?;
            let ctx = gp_store::Ctx::new(server.practice.clone(), gp_store::Actor::system());
            opengp::demo::ensure_accounts(&server.store, &ctx, opts.seed).await?
        }
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    let place = match cfg.database {
        // The URL may carry a password: name the kind of store only.
        Some(_) => "a PostgreSQL database".to_owned(),
        None => cfg.data.display().to_string(),
    };
    writeln!(
        out,
        "OpenGP is serving {} ({}), data in {place}",
        server.practice.name, server.practice.ods,
    )?;
    writeln!(out, "  Clinician app:       http://{}/app", server.addr)?;
    writeln!(out, "  FHIR API:            {}", server.base_url())?;
    writeln!(out, "  CapabilityStatement: {}/metadata", server.base_url())?;
    writeln!(
        out,
        "  Try:                 curl {}/Patient",
        server.base_url()
    )?;
    if let Some(opts) = &demo {
        print_demo_guide(&mut out, &server.base_url(), opts, &accounts)?;
    }
    writeln!(out, "Press Ctrl-C to stop.")?;
    drop(out);
    server.run(shutdown_signal()).await
}

/// Generates and writes the demo practice unless the data directory has it
/// already, printing what it did and how fast.
async fn seed_demo(server: &Server, opts: &gp_demo::Options) -> Result<()> {
    let ctx = gp_store::Ctx::new(server.practice.clone(), gp_store::Actor::system());
    let mut out = std::io::stdout().lock();
    match opengp::demo::seeding(&server.store, &ctx, opts.seed).await? {
        opengp::demo::Seeding::Complete => {
            writeln!(
                out,
                "Using the demo practice already in the data directory."
            )?;
            return Ok(());
        }
        opengp::demo::Seeding::Interrupted => writeln!(
            out,
            "An earlier run stopped before the demo practice was complete; writing it again \
             (the same records, put at the same ids): {} patients, seed {}, up to {}...",
            opts.patients, opts.seed, opts.today
        )?,
        opengp::demo::Seeding::Empty => writeln!(
            out,
            "Generating the demo practice: {} patients, seed {}, up to {}...",
            opts.patients, opts.seed, opts.today
        )?,
    }
    drop(out);
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} resources written {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let progress = |n: usize| bar.set_position(n as u64);
    let seeded = opengp::demo::seed(&server.store, &ctx, opts.clone(), &progress)
        .await
        .context("seeding the demo practice")?;
    bar.finish_and_clear();
    writeln!(
        std::io::stdout().lock(),
        "Wrote {} resources ({} patients) in {:.1} s: generated at {:.0} resources/s per core ({:.1} s), written at {:.0} resources/s.",
        seeded.resources,
        seeded.patients,
        seeded.total_secs,
        seeded.resources as f64 / seeded.generate_secs.max(1e-9),
        seeded.generate_secs,
        seeded.resources as f64 / seeded.total_secs.max(1e-9),
    )?;
    Ok(())
}

/// Where to go in the demo: the staff, and a patient worth looking at.
fn print_demo_guide(
    out: &mut impl Write,
    base: &str,
    opts: &gp_demo::Options,
    accounts: &[opengp::demo::DemoAccount],
) -> Result<()> {
    writeln!(
        out,
        "  Staff accounts (user name, password, role profiles; synthetic data only):"
    )?;
    for a in accounts {
        writeln!(
            out,
            "    {:<24} {:<14} {:<22} {:<15} {}/Practitioner/{}",
            a.name,
            a.username,
            a.password,
            a.roles.join(","),
            base,
            a.practitioner
        )?;
    }
    let root = base.split("/practices/").next().unwrap_or(base);
    if let Some(a) = accounts.first() {
        writeln!(
            out,
            "  Sign in:             curl -d '{{\"practice\":\"{}\",\"username\":\"{}\",\"password\":\"{}\"}}' -H 'content-type: application/json' {root}/auth/login",
            opts.ods, a.username, a.password
        )?;
        writeln!(
            out,
            "                       then send the access_token it returns as 'Authorization: Bearer TOKEN'"
        )?;
    }
    let demo = gp_demo::Demo::new(opts.clone());
    let diabetic = (0..opts.patients.min(500)).find(|i| {
        demo.patient(*i).iter().any(|r| {
            r["resourceType"] == "Condition" && r["code"]["coding"][0]["code"] == "44054006"
        })
    });
    writeln!(out, "  Patients:            {base}/Patient?_count=20")?;
    if let Some(i) = diabetic {
        let id = gp_demo::Demo::patient_id(i);
        writeln!(
            out,
            "  A diabetic's record: {base}/Patient/{id}/$everything"
        )?;
        writeln!(
            out,
            "  Their HbA1c results: {base}/Observation?patient={id}&code=http://snomed.info/sct|43396009"
        )?;
    }
    writeln!(
        out,
        "  Today's appointments: {base}/Appointment?date={}",
        opts.today
    )?;
    Ok(())
}

async fn load_terminology(cfg: ServerConfig, path: PathBuf) -> Result<()> {
    let backend = opengp::server::open_backend(&cfg).await?;
    let store = gp_store::Store::new(backend);
    let started = std::time::Instant::now();
    let s = store.clone();
    let info = tokio::task::spawn_blocking(move || {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        // The user on whose behalf the load runs: the operator at the console.
        let actor = gp_store::Actor::new("cli");
        let out = opengp::terminology::load_any(&s, &actor, &path, &mut |p| {
            bar.set_length(p.total);
            bar.set_position(p.done);
        });
        bar.finish_and_clear();
        out
    })
    .await??;
    tokio::task::spawn_blocking(move || store.close()).await?;
    let mut out = std::io::stdout().lock();
    let secs = started.elapsed().as_secs_f64();
    match info {
        opengp::terminology::Loaded::Snomed(info) => writeln!(
            out,
            "loaded {}: {} concepts, {} descriptions, {} relationships, {} refset members in {secs:.1} s",
            info.name, info.concepts, info.descriptions, info.relationships, info.members,
        )?,
        opengp::terminology::Loaded::Dmd(info) => writeln!(
            out,
            "loaded dm+d {}: {} products, {} lookup rows in {secs:.1} s",
            info.name, info.products, info.lookups,
        )?,
    }
    Ok(())
}

async fn bench(args: BenchArgs) -> Result<()> {
    let temp;
    let data = match args.data {
        Some(d) => d,
        None => {
            temp = TempDir::new("store")?;
            temp.path.clone()
        }
    };
    let cfg = ServerConfig {
        data,
        database: args.database,
        listen: "127.0.0.1:0".parse()?,
        public_url: None,
        max_body_bytes: config::DEFAULT_MAX_BODY,
        practice: config::DEFAULT_PRACTICE.into(),
        practice_name: "Benchmark Practice".into(),
        tls: None,
        // The simulated staff all sign in from one loopback address.
        limits: gp_api::limit::LimitConfig::none(),
        oidc: None,
        trusted_proxies: Vec::new(),
        export_retention: gp_migrate::bulk::DEFAULT_RETENTION,
    };
    if args.scenario == "terminology" {
        let release = args.release.clone();
        let queries = args.queries.unwrap_or(2_000);
        return bench_terminology(cfg, release, queries).await;
    }
    let server = Server::bind(&cfg).await?;
    let base = server.base_url();
    let site = format!("http://{}", server.addr);
    let (store, practice) = (server.store.clone(), server.practice.clone());
    let token =
        opengp::server::full_access_session(&server.store, &server.practice, "bench").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let morning = MorningArgs {
        patients: args.patients,
        duration: parse_duration(&args.duration)?,
        users: args.users,
        think: std::time::Duration::from_millis(args.think_ms),
        max_requests: args.max_requests,
    };
    // The figures, and whether the run passed (the load test fails on any
    // error, after printing its table).
    let report = match args.scenario.as_str() {
        "morning" => bench_morning(&store, &practice, &site, &morning).await,
        "crud" => gp_bench::run(&gp_bench::Plan {
            base,
            token,
            synthea: args.synthea,
            clients: args.clients,
            reads: args.reads,
        })
        .await
        .map(|r| (r.to_string(), true)),
        "web" => bench_web(&store, &practice, &site, args.patients, args.queries)
            .await
            .map(|r| (r, true)),
        "search" => match gp_bench::search::run(&gp_bench::search::SearchPlan {
            base,
            token,
            synthea: args.synthea,
            rounds: args.rounds,
            clients: args.clients,
            queries: args.queries.unwrap_or(200),
            reuse: args.reuse,
        })
        .await
        {
            Ok(r) => {
                let disk = store.disk_bytes().await? as f64;
                Ok((
                    format!(
                        "{r}| store on disk (all indexes, audit trail) | {:.0} MB, {:.0} bytes per resource |\n| resident memory after the queries (server and client in one process) | {} MB |",
                        disk / 1e6,
                        disk / r.resources.max(1) as f64,
                        resident_kb() / 1024
                    ),
                    true,
                ))
            }
            Err(e) => Err(e),
        },
        other => Err(anyhow::anyhow!(
            "there is no '{other}' scenario; use crud, search, terminology, web or morning"
        )),
    };
    let _ = stop.send(());
    running.await??;
    let (report, passed) = report?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}")?;
    if !passed {
        anyhow::bail!("the {} scenario had errors (see above)", args.scenario);
    }
    Ok(())
}

/// This process's resident memory in KiB (`VmRSS`), 0 where unknown.
fn resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `--duration`: whole seconds, or a number with `ms`, `s`, `m` or `h`.
fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .with_context(|| format!("'{s}' is not a duration (600, 90s, 10m)"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n * 1_000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => anyhow::bail!("'{s}' is not a duration (600, 90s, 10m)"),
    };
    Ok(std::time::Duration::from_millis(ms))
}

/// The load test's settings from the command line.
struct MorningArgs {
    patients: u32,
    duration: std::time::Duration,
    users: usize,
    think: std::time::Duration,
    max_requests: u64,
}

/// The morning scenario: a demo practice generated into the fresh store,
/// an account for every simulated user (the demo's staff first, then more
/// in the same roles), then the load test. Answers the table and whether
/// it had no errors.
async fn bench_morning(
    store: &gp_store::Store,
    practice: &gp_store::Practice,
    site: &str,
    args: &MorningArgs,
) -> Result<(String, bool)> {
    use gp_bench::morning::{Account, Role};
    let ctx = gp_store::Ctx::new(practice.clone(), gp_store::Actor::system());
    let today = time::OffsetDateTime::now_utc().date();
    let mut opts = gp_demo::Options::new(1, today, practice.ods.as_str(), &practice.name);
    opts.patients = args.patients;
    let seeded = opengp::demo::seed(store, &ctx, opts, &|_| {}).await?;
    let staff = opengp::demo::ensure_accounts(store, &ctx, 1).await?;
    let receptionists = (args.users / 3).max(1);
    let gps = (args.users / 2).max(1);
    let nurses = args.users.saturating_sub(receptionists + gps).max(1);
    let mut accounts = Vec::new();
    for (role, codes, want) in [
        (Role::Reception, &["R8009"][..], receptionists),
        (Role::Gp, &["R8000"][..], gps),
        (Role::Nurse, &["R8001", "R8003"][..], nurses),
    ] {
        let demo: Vec<&opengp::demo::DemoAccount> = staff
            .iter()
            .filter(|a| a.roles.iter().any(|r| codes.contains(&r.as_str())))
            .collect();
        for k in 0..want {
            let Some(like) = demo.get(k % demo.len().max(1)) else {
                anyhow::bail!("the demo has no staff in role {}", codes[0]);
            };
            if let Some(a) = demo.get(k) {
                accounts.push(Account {
                    username: a.username.clone(),
                    password: a.password.clone(),
                    role,
                    practitioner: Some(a.practitioner.clone()),
                });
                continue;
            }
            // More staff than the demo has: another account in the same
            // role, working from the same Practitioner's book.
            let username = format!("{}-{k}", like.username);
            let password = gp_store::accounts::generate_password();
            store
                .add_user(
                    &ctx,
                    gp_store::accounts::NewUser {
                        username: username.clone(),
                        name: format!("{} ({k})", like.name),
                        password: password.clone(),
                        roles: vec![codes[0].to_owned()],
                        practitioner: Some(like.practitioner.clone()),
                    },
                )
                .await
                .with_context(|| format!("creating the account {username}"))?;
            accounts.push(Account {
                username,
                password,
                role,
                practitioner: Some(like.practitioner.clone()),
            });
        }
    }
    let plan = gp_bench::morning::MorningPlan {
        site: site.to_owned(),
        practice: practice.ods.as_str().to_owned(),
        accounts,
        duration: args.duration,
        max_requests: args.max_requests,
        think: args.think,
        seed: 1,
    };
    let report = gp_bench::morning::run(&plan).await?;
    Ok((
        format!(
            "Demo practice: {} patients, {} resources\n\n{report}",
            args.patients, seeded.resources
        ),
        report.errors == 0,
    ))
}

/// The web scenario: a demo practice generated into the fresh store, then
/// the clinician app's pages as a GP's browser fetches them.
async fn bench_web(
    store: &gp_store::Store,
    practice: &gp_store::Practice,
    site: &str,
    patients: u32,
    pages: Option<usize>,
) -> Result<String> {
    let ctx = gp_store::Ctx::new(practice.clone(), gp_store::Actor::system());
    let today = time::OffsetDateTime::now_utc().date();
    let mut opts = gp_demo::Options::new(1, today, practice.ods.as_str(), &practice.name);
    opts.patients = patients;
    let seeded = opengp::demo::seed(store, &ctx, opts, &|_| {}).await?;
    let accounts = opengp::demo::ensure_accounts(store, &ctx, 1).await?;
    let gp = accounts
        .iter()
        .find(|a| a.roles.iter().any(|r| r == "R8000"))
        .context("the demo has no GP account")?;
    let plan = gp_bench::web::WebPlan {
        site: site.to_owned(),
        practice: practice.ods.as_str().to_owned(),
        username: gp.username.clone(),
        password: gp.password.clone(),
        patients: (0..patients).map(gp_demo::Demo::patient_id).collect(),
        pages: pages.unwrap_or(500),
    };
    let report = gp_bench::web::run(&plan).await?;
    Ok(format!(
        "Demo practice: {patients} patients, {} resources\n\n{report}",
        seeded.resources
    ))
}

/// The terminology scenario: a release (generated UK-sized unless given)
/// loaded into the fresh store and timed, the server started (which builds
/// the index from the store, timed too), then typeahead over HTTP.
async fn bench_terminology(
    cfg: ServerConfig,
    release: Option<PathBuf>,
    queries: usize,
) -> Result<()> {
    let mut setup = Vec::new();
    let temp;
    let release = match release {
        Some(r) => r,
        None => {
            temp = TempDir::new("release")?;
            let dir = temp.path.clone();
            let started = std::time::Instant::now();
            let sum = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || gp_terminology::synth::generate(&dir, gp_terminology::synth::UK_CONCEPTS, 1)
            })
            .await??;
            setup.push((
                format!(
                    "generate a synthetic release ({} concepts, {} descriptions, {} relationships)",
                    sum.concepts, sum.descriptions, sum.relationships
                ),
                started.elapsed().as_secs_f64(),
            ));
            dir
        }
    };
    let store = gp_store::Store::new(opengp::server::open_backend(&cfg).await?);
    let started = std::time::Instant::now();
    let (s, path) = (store.clone(), release.clone());
    tokio::task::spawn_blocking(move || {
        opengp::terminology::load(&s, &gp_store::Actor::new("bench"), &path, &mut |_| {})
    })
    .await??;
    setup.push((
        "load the release into the store (`opengp terminology load`)".to_owned(),
        started.elapsed().as_secs_f64(),
    ));
    tokio::task::spawn_blocking(move || store.close()).await?;
    let started = std::time::Instant::now();
    let server = Server::bind(&cfg).await?;
    setup.push((
        "start the server: read the release back and build the index".to_owned(),
        started.elapsed().as_secs_f64(),
    ));
    let base = server.base_url();
    let token =
        opengp::server::full_access_session(&server.store, &server.practice, "bench").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let mix = gp_bench::terminology::queries(&release, queries);
    let report = match mix {
        Ok(mix) => gp_bench::terminology::run(&base, &token, &mix).await,
        Err(e) => Err(e),
    };
    let _ = stop.send(());
    running.await??;
    let mut report = report?;
    report.setup = setup;
    writeln!(std::io::stdout().lock(), "{report}")?;
    Ok(())
}

/// A temporary directory removed on drop (the benchmark's store).
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(what: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("opengp-bench-{}-{what}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
