//! Project tasks, run as `cargo xtask <task>`.
//!
//! - `test`: everything the test suite needs on a fresh machine (the FHIR
//!   package; PostgreSQL's `initdb` and `pg_ctl`, from the Debian package
//!   `postgresql` if missing), then the whole suite (formatting, lints,
//!   tests). This is the README's test command. The browser tests get
//!   Debian's `chromium` and `chromium-driver` and npm's `axe-core`; the
//!   FHIRPath differential test npm's `fhirpath` (with its dependencies);
//!   the SMART on FHIR test a Python virtual environment under `target/`
//!   with PyPI's `fhirclient` (`OPENGP_SMART_PYTHON`); the OpenID Connect sign-in test npm's
//!   `oidc-provider` (run by node).
//! - `fhir-package`: fetch the official FHIR R4 examples package (npm
//!   `hl7.fhir.r4.examples@4.0.1`) into `target/fhir-packages/`.
//! - `codegen`: derive `crates/fhir/data/*.json` from that package. The derived
//!   files are committed, so the build itself never downloads anything.

mod codegen;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = project_root();
    match task.as_str() {
        "fhir-package" => {
            let dir = fhir_package(&root)?;
            eprintln!("FHIR R4 package at {}", dir.display());
        }
        "codegen" => {
            let dir = fhir_package(&root)?;
            codegen::run(&dir, &root.join("crates/fhir/data"))?;
        }
        "test" => test(&root)?,
        _ => bail!("usage: cargo xtask <test|fhir-package|codegen>"),
    }
    Ok(())
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs the whole suite as CI does: formatting, lints, then every test.
fn test(root: &Path) -> Result<()> {
    let package = fhir_package(root)?;
    let axe = npm_package(root, AXE.0, AXE.1)?.join("axe.min.js");
    let fhirpath_js = npm_install(root, "fhirpath", &[FHIRPATH_JS])?;
    let smart_python = smart_python(root)?;
    let oidc_provider = npm_install(root, "oidc-provider", &[OIDC_PROVIDER])?;
    chromium()?;
    run(Command::new("cargo")
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(root))?;
    run(Command::new("cargo")
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(root))?;
    let mut tests = Command::new("cargo");
    tests.args(["test", "--workspace", "--release"]);
    // Tests start their own PostgreSQL cluster unless DATABASE_URL names one.
    if std::env::var_os("DATABASE_URL").is_none() {
        tests.env("OPENGP_PG_BIN", postgres_bin()?);
    }
    run(tests
        .env("OPENGP_R4_EXAMPLES", &package)
        .env("OPENGP_AXE", &axe)
        .env("OPENGP_FHIRPATH_JS", &fhirpath_js)
        .env("OPENGP_SMART_PYTHON", &smart_python)
        .env("OPENGP_OIDC_PROVIDER", &oidc_provider)
        .env("OPENGP_SHARED_DATA", root.join("../shared/data"))
        .current_dir(root))?;
    Ok(())
}

/// The newest `/usr/lib/postgresql/N/bin` holding `initdb` and `pg_ctl`.
fn find_postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// PostgreSQL's server programs, installing the Debian package `postgresql`
/// when they are missing (as root, or through sudo).
fn postgres_bin() -> Result<PathBuf> {
    if let Some(bin) = find_postgres_bin() {
        return Ok(bin);
    }
    apt_install("postgresql")?;
    find_postgres_bin()
        .context("the postgresql package installed no /usr/lib/postgresql/*/bin/initdb")
}

/// Installs a Debian package for the tests (as root, or through sudo).
fn apt_install(package: &str) -> Result<()> {
    eprintln!("xtask: installing the Debian package {package} for the tests");
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    };
    let apt = |args: &[&str]| {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update"]))?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(package.split_whitespace());
    run(&mut apt(&args)).with_context(|| format!("installing the Debian package {package}"))
}

/// Whether a program runs on this machine.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fetches and unpacks the R4 package once; later calls reuse it.
fn fhir_package(root: &Path) -> Result<PathBuf> {
    npm_package(root, "hl7.fhir.r4.examples", "4.0.1")
}

/// axe-core, which the browser tests run in every page (MPL-2.0; fetched,
/// never committed).
const AXE: (&str, &str) = ("axe-core", "4.10.3");

/// The reference JavaScript FHIRPath engine, which gp-fhirpath's
/// differential test compares against.
const FHIRPATH_JS: &str = "fhirpath@5.2.0";

/// npm packages with their dependencies, for tests that run them with
/// Node.js: installed once (scripts not run) into `target/npm/NAME`, whose
/// `node_modules` folder is returned.
fn npm_install(root: &Path, name: &str, packages: &[&str]) -> Result<PathBuf> {
    let dir = root.join("target/npm").join(name);
    let modules = dir.join("node_modules");
    let stamp = dir.join("installed");
    let wanted = packages.join(" ");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(modules);
    }
    std::fs::create_dir_all(&dir)?;
    if !have("npm") {
        apt_install("npm")?;
    }
    std::fs::write(dir.join("package.json"), "{\"private\": true}\n")?;
    run(Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--silent",
        ])
        .args(packages)
        .current_dir(&dir))
    .with_context(|| format!("installing the npm packages {wanted}"))?;
    std::fs::write(&stamp, &wanted)?;
    Ok(modules)
}

/// An npm package unpacked under `target/fhir-packages/NAME-VERSION/package`,
/// fetched once with `npm pack` (installing Debian's npm if missing).
fn npm_package(root: &Path, name: &str, version: &str) -> Result<PathBuf> {
    let base = root.join("target/fhir-packages");
    let unpacked = base.join(format!("{name}-{version}"));
    let package = unpacked.join("package");
    if package.join("package.json").exists() {
        return Ok(package);
    }
    std::fs::create_dir_all(&base)?;
    if !have("npm") {
        apt_install("npm")?;
    }
    run(Command::new("npm")
        .args(["pack", "--silent", &format!("{name}@{version}")])
        .current_dir(&base))
    .with_context(|| format!("fetching the npm package {name}@{version}"))?;
    let tgz = base.join(format!("{name}-{version}.tgz"));
    let file = std::fs::File::open(&tgz).with_context(|| format!("opening {}", tgz.display()))?;
    let partial = base.join("unpacking");
    let _ = std::fs::remove_dir_all(&partial);
    tar::Archive::new(flate2::read::GzDecoder::new(file)).unpack(&partial)?;
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::rename(&partial, &unpacked)?;
    Ok(package)
}

/// The SMART on FHIR client the SMART test drives: PyPI's `fhirclient`
/// (Apache-2.0), a real client from another project.
const FHIRCLIENT: &str = "fhirclient==4.4.0";

/// A Python virtual environment under `target/` with [`FHIRCLIENT`]
/// installed (made once, with Debian's `python3-venv` if `venv` is
/// missing): its `python`.
fn smart_python(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/smart-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(format!("{FHIRCLIENT}.installed"));
    if ready.exists() && python.exists() {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let make = || {
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !make() {
        let _ = std::fs::remove_dir_all(&venv);
        apt_install("python3-venv")?;
        if !make() {
            bail!(
                "could not make a Python virtual environment at {}",
                venv.display()
            );
        }
    }
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        FHIRCLIENT,
    ]))
    .with_context(|| format!("installing {FHIRCLIENT} from PyPI"))?;
    std::fs::write(&ready, "")?;
    Ok(python)
}

/// The OpenID Connect provider the sign-in test runs (MIT; an independent
/// implementation, certified by the OpenID Foundation).
const OIDC_PROVIDER: &str = "oidc-provider@8.8.1";

/// Headless Chromium and its WebDriver for the web app's browser tests,
/// from Debian's packages when missing.
fn chromium() -> Result<()> {
    if !Path::new("/usr/bin/chromium").exists() || !Path::new("/usr/bin/chromedriver").exists() {
        apt_install("chromium chromium-driver")?;
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
