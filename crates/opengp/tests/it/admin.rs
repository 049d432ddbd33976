//! Account administration (gp-api admin.rs) on each backend: a user
//! administrator (R8015, administer-users) lists accounts, changes a
//! user's role profiles (the sessions in a role taken away end), disables
//! an account (it cannot sign in, its sessions end) and enables it again,
//! and creates a patient's online account from their record; nobody else
//! may; every change, done or refused, is an AuditEvent in the trail
//! (DICOM Security Alert with the admin-action subtype) naming who did
//! what to which account, found by the account's id
//! (`AuditEvent?entity:identifier=`), and the chain still verifies.

use serde_json::{Value, json};

use crate::auth::{PASSWORD, add_user, login, signed_in};
use crate::support::{App, assert_outcome, json};

crate::on_both_backends!(an_administrator_manages_accounts_and_every_change_is_audited);

fn admin_url(app: &App, path: &str) -> String {
    format!(
        "http://{}/practices/{}/admin/{path}",
        app.server.addr,
        opengp::config::DEFAULT_PRACTICE
    )
}

async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    req.send().await.unwrap_or_else(|e| panic!("{e}"))
}

async fn an_administrator_manages_accounts_and_every_change_is_audited(app: App) {
    add_user(&app, "admin", &["R8015"]).await;
    add_user(&app, "nurse", &["R8001", "R8000"]).await;
    add_user(&app, "privacy", &["R0001"]).await;
    let admin = signed_in(&app, "admin", None).await;
    let as_gp = signed_in(&app, "nurse", Some("R8000")).await;
    let as_nurse = signed_in(&app, "nurse", Some("R8001")).await;
    let reads = |c: &reqwest::Client| {
        let (c, url) = (c.clone(), app.url("Patient"));
        async move { send(c.get(&url)).await.status().as_u16() }
    };
    assert_eq!(reads(&as_gp).await, 200);

    // The list: every account, never a password hash.
    let res = send(admin.get(admin_url(&app, "users"))).await;
    assert_eq!(res.status(), 200);
    let users = json(res).await;
    let nurse = users
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["username"] == "nurse")
        .cloned()
        .unwrap_or_else(|| panic!("{users}"));
    assert_eq!(nurse["roles"], json!(["R8001", "R8000"]));
    assert_eq!(nurse["disabled"], false);
    assert!(!users.to_string().contains("argon2"), "{users}");

    // Nobody without administer-users: not even a GP.
    for (method, path) in [
        (reqwest::Method::GET, "users"),
        (reqwest::Method::POST, "users/admin/disable"),
    ] {
        let res = send(as_gp.request(method, admin_url(&app, path))).await;
        assert_outcome(res, 403, "forbidden").await;
    }
    let res = send(reqwest::Client::new().get(admin_url(&app, "users"))).await;
    assert_outcome(res, 401, "login").await;

    // Roles: R8000 taken away ends the session in it, not the other.
    let res = send(
        admin
            .put(admin_url(&app, "users/nurse/roles"))
            .json(&json!({ "roles": ["R8001"] })),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["roles"], json!(["R8001"]));
    assert_eq!(reads(&as_gp).await, 401);
    assert_eq!(reads(&as_nurse).await, 200);
    assert_eq!(
        login(&app, "nurse", PASSWORD, Some("R8000")).await.status(),
        403
    );
    for (roles, code) in [(json!([]), "invalid"), (json!(["GP"]), "invalid")] {
        let res = send(
            admin
                .put(admin_url(&app, "users/nurse/roles"))
                .json(&json!({ "roles": roles })),
        )
        .await;
        assert_outcome(res, 400, code).await;
    }

    // Disabled: the session ends at once and sign-in is refused, with the
    // same answer as a wrong password; enabled again, sign-in works.
    let res = send(admin.post(admin_url(&app, "users/nurse/disable"))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["disabled"], true);
    assert_eq!(reads(&as_nurse).await, 401);
    let refused = login(&app, "nurse", PASSWORD, None).await;
    assert_eq!(refused.status(), 401);
    let wrong = login(&app, "nurse", "not the password at all", None).await;
    assert_eq!(
        json(refused).await["issue"][0]["diagnostics"],
        json(wrong).await["issue"][0]["diagnostics"]
    );
    let res = send(admin.post(admin_url(&app, "users/nurse/enable"))).await;
    assert_eq!(res.status(), 200);
    let again = signed_in(&app, "nurse", None).await;
    assert_eq!(reads(&again).await, 200);
    let res = send(admin.post(admin_url(&app, "users/admin/disable"))).await;
    assert_outcome(res, 400, "business-rule").await;
    let res = send(admin.post(admin_url(&app, "users/nobody/disable"))).await;
    assert_outcome(res, 404, "not-found").await;

    // A patient's online account from their record.
    let patient = crate::online::patient(&app, "Online", "9434765919").await;
    let res = send(
        admin
            .post(admin_url(&app, "patient-accounts"))
            .json(&json!({ "patient": patient })),
    )
    .await;
    assert_eq!(res.status(), 201);
    let account = json(res).await;
    assert_eq!(account["username"], "9434765919");
    assert_eq!(account["patient"], json!(patient));
    assert_eq!(account["name"], "Test Online");
    let password = account["password"].as_str().unwrap_or_default();
    let res = login(&app, "9434765919", password, None).await;
    assert_eq!(res.status(), 200, "the patient signs in");
    let token = json(res).await["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let res = send(
        crate::support::authorised_client(&token)
            .get(format!("http://{}/auth/act-for", app.server.addr)),
    )
    .await;
    assert_eq!(res.status(), 200);
    let whom = json(res).await;
    assert_eq!(
        whom["actFor"],
        json!([{ "patient": patient, "name": { "family": "Online", "given": ["Test"] },
                 "relationship": null, "current": true }])
    );
    let res = send(
        admin
            .post(admin_url(&app, "patient-accounts"))
            .json(&json!({ "patient": patient })),
    )
    .await;
    assert_outcome(res, 409, "conflict").await;
    let res = send(
        again
            .post(admin_url(&app, "patient-accounts"))
            .json(&json!({ "patient": patient })),
    )
    .await;
    assert_outcome(res, 403, "forbidden").await;

    // The trail: who did what to which account, and what was refused.
    let privacy = signed_in(&app, "privacy", None).await;
    let url =
        app.url("AuditEvent?type=http://dicom.nema.org/resources/ontology/DCM|110113&_count=100");
    let trail = json(send(privacy.get(&url)).await).await;
    let events: Vec<&Value> = trail["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .collect();
    let find = |code: &str, who: &str, account: &str, outcome: &str| {
        events.iter().any(|e| {
            e["subtype"][0]["code"] == code
                && e["agent"][0]["altId"] == who
                && e["outcome"] == outcome
                && e["entity"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["name"] == account)
        })
    };
    for (code, who, account, outcome) in [
        ("user-add", "system", "nurse", "0"),
        ("user-roles", "admin", "nurse", "0"),
        ("user-roles", "admin", "nurse", "4"),
        ("user-disable", "admin", "nurse", "0"),
        ("user-enable", "admin", "nurse", "0"),
        ("user-disable", "admin", "admin", "4"),
        ("user-disable", "nurse", "admin", "4"),
        ("patient-account-add", "admin", "9434765919", "0"),
        ("patient-account-add", "admin", "9434765919", "4"),
    ] {
        assert!(
            find(code, who, account, outcome),
            "{code} by {who} of {account} ({outcome}): {trail}"
        );
    }
    let roles_changed = events
        .iter()
        .find(|e| e["subtype"][0]["code"] == "user-roles" && e["outcome"] == "0")
        .unwrap_or_else(|| panic!("{trail}"));
    assert_eq!(
        roles_changed["entity"][0]["description"],
        "role profiles R8001 R8000 changed to R8001"
    );
    assert_eq!(roles_changed["action"], "U");
    // Everything done to one account, by its id: AuditEvent's `entity`
    // searched with `:identifier` (search.html#reference), the account
    // being the entity's `what.identifier`; with or without its system.
    let id = nurse["id"].as_str().unwrap_or_default().to_owned();
    let about = |e: &Value| {
        e["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["what"]["identifier"]["value"] == id.as_str())
    };
    let expected = events.iter().filter(|e| about(e)).count();
    assert!(expected >= 4, "add, roles, disable, enable: {trail}");
    for value in [format!("urn:opengp:user|{id}"), id.clone()] {
        let url = app.url(&format!(
            "AuditEvent?entity:identifier={value}&_count=100&_total=accurate"
        ));
        let res = send(privacy.get(&url)).await;
        assert_eq!(res.status(), 200, "{url}");
        let found = json(res).await;
        let entries: Vec<&Value> = found["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .collect();
        assert!(entries.iter().all(|e| about(e)), "{found}");
        assert!(entries.len() >= expected, "{found}");
        assert_eq!(found["total"], entries.len(), "{found}");
    }
    let none = json(
        send(privacy.get(app.url("AuditEvent?entity:identifier=urn:opengp:user|no-such-account")))
            .await,
    )
    .await;
    assert_eq!(none["total"], 0, "{none}");
    // The patient sees the creation of their account in their record's trail.
    let theirs = json(
        send(privacy.get(app.url(&format!(
            "AuditEvent?patient={patient}&subtype=https://opengp.dev/fhir/CodeSystem/admin-action|patient-account-add"
        ))))
        .await,
    )
    .await;
    assert!(
        theirs["entry"].as_array().is_some_and(|e| !e.is_empty()),
        "{theirs}"
    );
    let verified = app
        .server
        .store
        .verify_audit(&gp_store::Ctx::new(
            crate::auth::practice(&app).await,
            gp_store::Actor::system(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(verified.broken.is_none(), "{verified:?}");
    app.stop().await;
}

/// `opengp` at the console, on a data directory.
fn opengp(data: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(crate::support::opengp_bin())
        .args(args)
        .args(["--practice", opengp::config::DEFAULT_PRACTICE, "--data"])
        .arg(data)
        .output()
        .unwrap_or_else(|e| panic!("opengp {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "opengp {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The console's administrative commands are in the trail too, by the
/// operator (`cli`): adding, changing the roles of, disabling and enabling
/// a user, and replacing the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_administration_is_audited() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path();
    opengp(
        data,
        &[
            "user",
            "add",
            "--username",
            "nurse",
            "--name",
            "A Nurse",
            "--role",
            "R8001",
            "--role",
            "R8000",
        ],
    );
    let said = opengp(data, &["user", "roles", "nurse", "--role", "R8001"]);
    assert!(said.contains("R8001"), "{said}");
    opengp(data, &["user", "disable", "nurse"]);
    let listed = opengp(data, &["user", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("nurse ") && l.contains("disabled")),
        "{listed}"
    );
    opengp(data, &["user", "enable", "nurse"]);
    let policy = data.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"roles": {"R8000": ["view-demographics", "view-record"], "R8015": ["view-demographics", "administer-users"]}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    opengp(
        data,
        &["policy", "set", policy.to_str().unwrap_or_default()],
    );

    let server = opengp::server::spawn_for_test(data, crate::support::TEST_MAX_BODY)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let client = crate::support::authorised_client(&server.token);
    let url = format!(
        "{}/AuditEvent?type=http://dicom.nema.org/resources/ontology/DCM|110113&_count=100",
        server.base
    );
    let trail = json(send(client.get(&url)).await).await;
    let done: Vec<(String, String)> = trail["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|e| e["agent"][0]["altId"] == "cli" && e["outcome"] == "0")
        .map(|e| {
            (
                e["subtype"][0]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e["entity"][0]["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    for (code, description) in [
        ("user-add", "created with role profiles R8001 R8000"),
        ("user-roles", "role profiles R8001 R8000 changed to R8001"),
        ("user-disable", "disabled; its sessions ended"),
        ("user-enable", "enabled"),
    ] {
        assert!(
            done.iter().any(|(c, d)| c == code && d == description),
            "{code}: {done:?}"
        );
    }
    let policy_set = done
        .iter()
        .find(|(c, _)| c == "policy-set")
        .unwrap_or_else(|| panic!("{done:?}"));
    assert!(
        policy_set
            .1
            .contains("R8000: view-demographics view-record"),
        "{policy_set:?}"
    );
    server.stop().await.unwrap_or_else(|e| panic!("{e:#}"));
    let verified = opengp(data, &["audit", "verify"]);
    assert!(!verified.is_empty());
}
