//! The server as a child process (`opengp serve` over a data directory),
//! for tests that kill it or stop it as an operator would: started with a
//! staff account of its own, signed in after each start.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support;

/// The practice the server serves.
pub const PRACTICE: &str = "A81001";

pub struct Server {
    child: Child,
    pub base: String,
    /// A session of the test's account, opened after each start (sessions
    /// are stored, so it would survive the crash too).
    pub token: String,
}

/// The test's staff account (a clinical practitioner: patients and
/// observations), created with `opengp user add` before the first start.
pub const USER: &str = "staff";
pub const PASSWORD: &str = "staff-test-password";

pub fn add_account(data: &Path) {
    use std::io::Write;
    let mut child = std::process::Command::new(support::opengp_bin())
        .args(["user", "add", "--practice", PRACTICE, "--username", USER])
        .args([
            "--name",
            "Crash Test",
            "--role",
            "R8000",
            "--password-stdin",
            "--data",
        ])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("opengp user add: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{PASSWORD}").unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("opengp user add: {e}"));
    assert!(
        out.status.success(),
        "opengp user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    /// Spawns `opengp serve` on `data`, its stderr appended to `log`.
    fn spawn(data: &Path, log: &Path) -> Child {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let mut cmd = Command::new(support::opengp_bin());
        cmd.arg("serve")
            .arg("--data")
            .arg(data)
            // A port of the system's choosing, read back from the banner:
            // no race with other tests for a port picked in advance.
            .args(["--listen", "127.0.0.1:0", "--practice", PRACTICE])
            .env("OPENGP_LOG", "info,tower_http=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        for var in [
            "OPENGP_CONFIG",
            "OPENGP_LOG_FORMAT",
            "OPENGP_PUBLIC_URL",
            "OPENGP_PRACTICE_NAME",
            "OPENGP_MAX_BODY_BYTES",
        ] {
            cmd.env_remove(var);
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", support::opengp_bin().display()))
    }

    /// Starts the server and SIGKILLs it `ms` milliseconds later, whether
    /// or not it has finished opening the store (recovering the WAL).
    pub async fn kill_while_starting(data: &Path, log: &Path, ms: u64) {
        let mut child = Server::spawn(data, log);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
    }

    /// Starts `opengp serve` on `data` and waits until it is listening and
    /// answers `metadata`.
    pub async fn start(data: &Path, log: &Path) -> Server {
        let mut child = Server::spawn(data, log);
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("the server's stdout is not piped"));
        let (found, banner) = tokio::sync::oneshot::channel::<String>();
        // Reads the banner, then drains stdout until the process ends.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut found = Some(found);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.split("FHIR API:").nth(1)
                    && let Some(f) = found.take()
                {
                    let _ = f.send(url.trim().to_owned());
                }
            }
        });
        let base = match tokio::time::timeout(Duration::from_secs(30), banner).await {
            Ok(Ok(base)) => base,
            outcome => {
                let why = if outcome.is_err() {
                    "did not print its FHIR API line within 30 s"
                } else {
                    "closed stdout without printing its FHIR API line"
                };
                let status = child.try_wait();
                panic!(
                    "the server {why} (exit: {status:?}); \
                     it must open the store cleanly after a crash.\n{}",
                    log_tail(log)
                );
            }
        };
        assert!(
            base.starts_with("http://127.0.0.1:")
                && base.ends_with(&format!("/practices/{PRACTICE}/fhir")),
            "unexpected FHIR base {base}"
        );
        let res = reqwest::get(format!("{base}/metadata"))
            .await
            .unwrap_or_else(|e| panic!("GET metadata: {e}\n{}", log_tail(log)));
        assert_eq!(
            res.status(),
            200,
            "GET metadata after start\n{}",
            log_tail(log)
        );
        let login = reqwest::Client::new()
            .post(base.replace(&format!("/practices/{PRACTICE}/fhir"), "/auth/login"))
            .json(&json!({ "practice": PRACTICE, "username": USER, "password": PASSWORD }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("sign-in: {e}\n{}", log_tail(log)));
        assert_eq!(
            login.status(),
            200,
            "sign-in after start\n{}",
            log_tail(log)
        );
        let v: Value = login
            .json()
            .await
            .unwrap_or_else(|e| panic!("sign-in: {e}"));
        let token = v["access_token"].as_str().unwrap_or_default().to_owned();
        Server { child, base, token }
    }

    /// SIGKILL. Returns how the server had ended if it was already gone.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        let early = self.child.try_wait().ok().flatten();
        if early.is_none() {
            // On Unix this is SIGKILL.
            self.child
                .start_kill()
                .unwrap_or_else(|e| panic!("SIGKILL: {e}"));
        }
        let _ = self.child.wait().await;
        early
    }

    /// SIGTERM, then waits for the graceful shutdown.
    pub async fn stop(mut self, log: &Path) -> ExitStatus {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("the server ended before it was stopped\n{}", log_tail(log)));
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("running kill -TERM {pid}: {e}"));
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => panic!("waiting for the server: {e}"),
            Err(_) => panic!(
                "the server did not stop within 30 s of SIGTERM\n{}",
                log_tail(log)
            ),
        }
    }
}

/// The end of the server's log, for failure messages.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    format!(
        "--- server log ({}), last lines ---\n{}",
        log.display(),
        lines[from..].join("\n")
    )
}
