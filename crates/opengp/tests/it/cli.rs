//! The command line as a user types it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::opengp_bin;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(opengp_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running opengp: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_commands() {
    let (ok, out, _) = run(&["--help"]);
    assert!(ok);
    for cmd in ["serve", "demo", "bench"] {
        assert!(out.contains(cmd), "{out}");
    }
    let (ok, out, _) = run(&["serve", "--help"]);
    assert!(
        ok && out.contains("--data") && out.contains("--listen"),
        "{out}"
    );
}

#[test]
fn mistakes_get_clear_messages() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (ok, _, err) = run(&[
        "serve",
        "--data",
        &dir.path().to_string_lossy(),
        "--practice",
        "not-an-ods!",
    ]);
    assert!(!ok);
    assert!(err.contains("is not an ODS code"), "{err}");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "listen = 12\n").unwrap_or_else(|e| panic!("{e}"));
    let (ok, _, err) = run(&["--config", &cfg.to_string_lossy(), "serve"]);
    assert!(!ok && err.contains("is not valid"), "{err}");
}

/// `opengp serve` creates the data directory and the practice on first
/// start, prints where it serves, and stops cleanly on SIGTERM.
#[test]
fn serve_starts_prints_urls_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("fresh");
    let cfg = dir.path().join("opengp.toml");
    std::fs::write(
        &cfg,
        "practice = \"B82005\"\npractice_name = \"Config Surgery\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(opengp_bin())
        .args([
            "--config",
            &cfg.to_string_lossy(),
            "serve",
            "--data",
            &data.to_string_lossy(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut base = String::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        printed.push_str(&line);
        printed.push('\n');
        if let Some(url) = line.split("FHIR API:").nth(1) {
            base = url.trim().to_owned();
            break;
        }
    }
    assert!(printed.contains("Config Surgery (B82005)"), "{printed}");
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/practices/B82005/fhir"),
        "{printed}"
    );
    assert!(data.join("opengp.db").exists());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let status = rt.block_on(async {
        reqwest::get(format!("{base}/metadata"))
            .await
            .map(|r| r.status().as_u16())
    });
    assert_eq!(status.ok(), Some(200));
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    let exit = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "a graceful shutdown exits 0, got {exit}");
}

/// Starts `opengp demo` with `args` and reads its standard output up to the
/// line with the FHIR base URL: (the child, what it printed, the URL).
fn start_demo(args: &[&str]) -> (std::process::Child, String, String) {
    let mut child = Command::new(opengp_bin())
        .arg("demo")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    let mut base = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        printed.push_str(&line);
        printed.push('\n');
        if let Some(url) = line.split("FHIR API:").nth(1) {
            base = url.trim().to_owned();
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    (child, printed, base)
}

fn stop(mut child: std::process::Child) {
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    let exit = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "a graceful shutdown exits 0, got {exit}");
}

/// The password printed beside `user` in the demo's staff list.
fn password_of(printed: &str, user: &str) -> String {
    printed
        .lines()
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == user)?;
            words.get(at + 1).map(|w| (*w).to_owned())
        })
        .unwrap_or_else(|| panic!("no account {user} in: {printed}"))
}

/// `opengp demo --patients N` generates the practice on first run, prints
/// the staff and where to look, and reuses the data directory afterwards.
#[test]
fn demo_seeds_once_and_prints_where_to_go() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("demo");
    let data = data.to_string_lossy();
    let args = [
        "--data",
        &data,
        "--listen",
        "127.0.0.1:0",
        "--patients",
        "40",
        "--date",
        "2025-06-02",
    ];
    let (child, printed, base) = start_demo(&args);
    assert!(
        printed.contains("Generating the demo practice: 40 patients"),
        "{printed}"
    );
    assert!(printed.contains("resources (40 patients)"), "{printed}");
    assert!(
        printed.contains("OpenGP Demo Surgery (Y90001)"),
        "{printed}"
    );
    // Each member of staff has an account, printed with its password.
    let gp = password_of(&printed, "gp-patel");
    let receptionist = password_of(&printed, "rec-morris");
    assert!(printed.contains("R8008,R8015,R0001"), "{printed}");
    assert!(printed.contains("/auth/login"), "{printed}");
    assert!(printed.contains("/$everything"), "{printed}");
    assert!(base.ends_with("/practices/Y90001/fhir"), "{printed}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // The sign-in endpoint of the server whose FHIR base is `base`.
    let sign_in = |base: &str, user: &str, password: &str| -> Option<String> {
        let root = base.split("/practices/").next().unwrap_or_default();
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{root}/auth/login"))
                .json(&serde_json::json!({
                    "practice": "Y90001", "username": user, "password": password
                }))
                .send()
                .await
                .ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            v["access_token"].as_str().map(str::to_owned)
        })
    };
    let get = |base: &str, token: &str, path: &str| -> (u16, serde_json::Value) {
        rt.block_on(async {
            let r = reqwest::Client::new()
                .get(format!("{base}/{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or_default())
        })
    };
    let token = sign_in(&base, "gp-patel", &gp).unwrap_or_else(|| panic!("the GP signs in"));
    let count = |token: &str| get(&base, token, "Patient?_summary=count").1["total"].as_u64();
    assert_eq!(count(&token), Some(40));
    // The receptionist sees the register but not the clinical record.
    let rec = sign_in(&base, "rec-morris", &receptionist).unwrap_or_else(|| panic!("signs in"));
    assert_eq!(count(&rec), Some(40));
    let (status, outcome) = get(&base, &rec, "Observation?_count=1");
    assert_eq!(status, 403, "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "forbidden", "{outcome}");
    assert_eq!(sign_in(&base, "gp-patel", "not the password"), None);
    stop(child);

    let (child, printed, base) = start_demo(&args);
    assert!(
        printed.contains("Using the demo practice already"),
        "{printed}"
    );
    assert!(!printed.contains("Generating"), "{printed}");
    // The same accounts and passwords, printed again.
    assert_eq!(password_of(&printed, "gp-patel"), gp);
    let token = sign_in(&base, "gp-patel", &gp).unwrap_or_else(|| panic!("signs in again"));
    assert!(base.ends_with("/practices/Y90001/fhir"));
    assert_eq!(
        get(&base, &token, "Patient?_summary=count").1["total"].as_u64(),
        Some(40)
    );
    stop(child);

    let (ok, _, err) = run(&["demo", "--data", &data, "--date", "2025-13-40"]);
    assert!(!ok && err.contains("is not a date"), "{err}");
}
