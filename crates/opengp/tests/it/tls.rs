//! HTTPS in the binary (issue 5, web security: "TLS available in the
//! binary (rustls) for deployments without a proxy"): a server given a
//! certificate and key speaks TLS 1.2/1.3 with HTTP/2 by ALPN, makes its
//! URLs `https://`, and refuses plain HTTP; a bad key or half the settings
//! stop it at start with a message that says what is wrong.

use std::path::Path;

use opengp::config::ServerConfig;
use opengp::server::{Server, full_access_session};
use serde_json::json;

use crate::support::opengp_bin;

/// A self-signed certificate for `localhost`, written as PEM files.
fn certificate(dir: &Path, name: &str) -> (gp_api::tls::TlsFiles, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .unwrap_or_else(|e| panic!("certificate: {e}"));
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let pem = made.cert.pem();
    std::fs::write(&cert, &pem).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
    (gp_api::tls::TlsFiles { cert, key }, pem)
}

fn config(dir: &Path, tls: gp_api::tls::TlsFiles) -> ServerConfig {
    ServerConfig {
        practice_name: "TLS Practice".into(),
        tls: Some(tls),
        ..crate::support::server_config(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_speaks_https_with_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (files, pem) = certificate(dir.path(), "server");
    let server = Server::bind(&config(dir.path(), files))
        .await
        .unwrap_or_else(|e| panic!("server: {e:#}"));
    let port = server.addr.port();
    let token = full_access_session(&server.store, &server.practice, "tls")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(server.base_url().starts_with("https://"));
    let system = gp_store::Ctx::new(server.practice.clone(), gp_store::Actor::system());
    server
        .store
        .add_user(
            &system,
            gp_store::accounts::NewUser {
                username: "reception".into(),
                name: "Reception (test)".into(),
                password: crate::auth::PASSWORD.into(),
                roles: vec!["R8009".into()],
                practitioner: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let root = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let base = format!(
        "https://localhost:{port}/practices/{}/fhir",
        opengp::config::DEFAULT_PRACTICE
    );
    let res = client
        .post(format!("{base}/Patient"))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "name": [{"family": "Secure"}]}).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("HTTPS request: {e}"));
    assert_eq!(res.status(), 201);
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        location.starts_with(&format!("{base}/Patient/")),
        "{location}"
    );

    // The web app's session cookie is Secure here.
    let page = client
        .post(format!("https://localhost:{port}/app/login"))
        .form(&[
            ("practice", opengp::config::DEFAULT_PRACTICE),
            ("username", "reception"),
            ("password", crate::auth::PASSWORD),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cookie = page
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        cookie.contains("HttpOnly") && cookie.ends_with("; Secure"),
        "{cookie}"
    );

    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));

    // A client that does not trust the certificate is refused at the handshake.
    let stranger = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        stranger
            .get(format!("https://localhost:{port}/health"))
            .send()
            .await
            .is_err()
    );

    let _ = stop.send(());
    running
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_stops_the_start() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (a, _) = certificate(dir.path(), "a");
    let (b, _) = certificate(dir.path(), "b");
    let mixed = gp_api::tls::TlsFiles {
        cert: a.cert.clone(),
        key: b.key,
    };
    let e = Server::bind(&config(dir.path(), mixed)).await.err();
    let e = format!(
        "{:#}",
        e.unwrap_or_else(|| panic!("a mismatched key is refused"))
    );
    assert!(e.contains("does not go with the certificate"), "{e}");
    let missing = gp_api::tls::TlsFiles {
        cert: dir.path().join("none.crt"),
        key: a.key,
    };
    let e = Server::bind(&config(dir.path(), missing)).await.err();
    let e = format!(
        "{:#}",
        e.unwrap_or_else(|| panic!("a missing certificate is refused"))
    );
    assert!(e.contains("reading the TLS certificate"), "{e}");
    // Nothing was opened: the data directory was not created.
    assert!(!dir.path().join("data").exists());
}

#[test]
fn a_certificate_without_its_key_is_refused_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(opengp_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "server.crt",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs both a certificate (--tls-cert) and its key (--tls-key)"),
        "{err}"
    );
}
