//! FHIR Bulk Data export (Bulk Data Access IG, export.html) through the
//! API on both backends: kick-off, polling, the manifest, the NDJSON files,
//! the three levels, `_type`, `_since`, `_typeFilter`, cancelling, and
//! errors; jobs and their files surviving a restart, a job interrupted by
//! a stop or a crash run again to completion, and finished jobs expiring;
//! an export's files hold the resources as of its `transactionTime`, which
//! the writer agrees on, so that no write racing a kick-off is lost;
//! exports of apps and of ended sessions run again at the start, unless
//! their owner may no longer export.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{App, assert_outcome, authorised_client};

crate::on_both_backends!(
    bulk_export,
    bulk_export_survives_a_restart,
    an_export_holds_the_resources_as_of_its_transaction_time,
    writes_racing_a_kick_off_are_in_the_export_or_stamped_after_it,
    a_filtered_export_filters_the_resources_as_of_its_transaction_time
);

/// Kicks off an export; returns the status URL.
async fn kick_off(client: &reqwest::Client, url: &str) -> String {
    let res = client
        .get(url)
        .header("prefer", "respond-async")
        .header("accept", "application/fhir+json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 202, "{url}");
    res.headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Content-Location for {url}"))
        .to_owned()
}

/// Polls until the export completes; returns the manifest.
async fn finished(client: &reqwest::Client, status: &str) -> Value {
    for _ in 0..200 {
        let res = client
            .get(status)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match res.status().as_u16() {
            202 => tokio::time::sleep(Duration::from_millis(50)).await,
            200 => return res.json().await.unwrap_or_else(|e| panic!("{e}")),
            other => panic!("poll {status}: {other} {:?}", res.text().await),
        }
    }
    panic!("the export did not finish")
}

/// `type -> ids` of every file in a manifest, downloaded.
async fn contents(client: &reqwest::Client, manifest: &Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for o in manifest["output"].as_array().into_iter().flatten() {
        let url = o["url"].as_str().unwrap_or_default();
        let res = client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 200, "{url}");
        assert_eq!(
            res.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/fhir+ndjson")
        );
        let text = res.text().await.unwrap_or_default();
        let mut ids: Vec<String> = text
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                assert_eq!(v["resourceType"], o["type"]);
                v["id"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        assert_eq!(ids.len() as u64, o["count"].as_u64().unwrap_or_default());
        ids.sort();
        out.push((o["type"].as_str().unwrap_or_default().to_owned(), ids));
    }
    out.sort();
    out
}

fn v(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    list.iter()
        .map(|(t, ids)| (t.to_string(), ids.iter().map(|s| s.to_string()).collect()))
        .collect()
}

async fn bulk_export(app: App) {
    for (path, body) in [
        (
            "Patient/p1",
            json!({ "resourceType": "Patient", "id": "p1", "name": [{ "family": "One" }] }),
        ),
        (
            "Patient/p2",
            json!({ "resourceType": "Patient", "id": "p2", "name": [{ "family": "Two" }] }),
        ),
        (
            "Practitioner/dr",
            json!({ "resourceType": "Practitioner", "id": "dr" }),
        ),
        (
            "Observation/o1",
            json!({ "resourceType": "Observation", "id": "o1", "status": "final",
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "75367002" }] },
            "subject": { "reference": "Patient/p1" }, "performer": [{ "reference": "Practitioner/dr" }] }),
        ),
        (
            "Observation/o2",
            json!({ "resourceType": "Observation", "id": "o2", "status": "final",
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "27113001" }] },
            "subject": { "reference": "Patient/p2" } }),
        ),
        (
            "Group/g1",
            json!({ "resourceType": "Group", "id": "g1", "type": "person", "actual": true,
            "member": [{ "entity": { "reference": "Patient/p1" } }] }),
        ),
    ] {
        let res = app.put(path, &body).await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }

    // The whole practice, some types.
    let status = kick_off(
        &app.client,
        &app.url("$export?_type=Patient,Observation,Practitioner"),
    )
    .await;
    let m = finished(&app.client, &status).await;
    assert!(
        m["transactionTime"].is_string()
            && m["request"].as_str().is_some_and(|r| r.contains("$export")),
        "{m}"
    );
    assert_eq!(m["requiresAccessToken"], true);
    assert_eq!(
        contents(&app.client, &m).await,
        v(&[
            ("Observation", &["o1", "o2"]),
            ("Patient", &["p1", "p2"]),
            ("Practitioner", &["dr"])
        ])
    );
    // Every patient's compartment (compartmentdefinition-patient.html): no
    // Practitioner; the Group is in it through `member`.
    let m = finished(
        &app.client,
        &kick_off(&app.client, &app.url("Patient/$export")).await,
    )
    .await;
    assert_eq!(
        contents(&app.client, &m).await,
        v(&[
            ("Group", &["g1"]),
            ("Observation", &["o1", "o2"]),
            ("Patient", &["p1", "p2"])
        ])
    );
    // One group's patients.
    let m = finished(
        &app.client,
        &kick_off(&app.client, &app.url("Group/g1/$export")).await,
    )
    .await;
    assert_eq!(
        contents(&app.client, &m).await,
        v(&[
            ("Group", &["g1"]),
            ("Observation", &["o1"]),
            ("Patient", &["p1"])
        ])
    );
    // _typeFilter and _since.
    let m = finished(
        &app.client,
        &kick_off(
            &app.client,
            &app.url("$export?_type=Observation&_typeFilter=Observation%3Fcode%3D27113001"),
        )
        .await,
    )
    .await;
    assert_eq!(
        contents(&app.client, &m).await,
        v(&[("Observation", &["o2"])])
    );
    let m = finished(
        &app.client,
        &kick_off(&app.client, &app.url("$export?_since=2999-01-01T00:00:00Z")).await,
    )
    .await;
    assert_eq!(m["output"], json!([]), "{m}");

    // Cancelled (here: after finishing), the job and its files are gone.
    let status = kick_off(&app.client, &app.url("$export?_type=Patient")).await;
    let m = finished(&app.client, &status).await;
    let file = m["output"][0]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let res = app
        .client
        .delete(&status)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 202);
    let res = app
        .client
        .get(&status)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 404, "not-found").await;
    let res = app
        .client
        .get(&file)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 404, "not-found").await;

    // Mistakes are 400s; an unknown group 404.
    let res = app
        .client
        .get(app.url("$export"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 400, "invalid").await;
    for bad in [
        "$export?_type=Unicorn",
        "$export?_since=yesterday",
        "$export?_typeFilter=Observation%3Fnonsense%3D1",
        "$export?_outputFormat=text/csv",
    ] {
        let res = app
            .client
            .get(app.url(bad))
            .header("prefer", "respond-async")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 400, "{bad}");
    }
    let res = app
        .client
        .get(app.url("Group/nobody/$export"))
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 404, "not-found").await;
    app.stop().await;
}

/// The job's folder under the server's data directory.
fn job_dir(data: &std::path::Path, status: &str) -> std::path::PathBuf {
    data.join("bulk-export")
        .join(status.rsplit('/').next().unwrap_or_default())
}

async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// A finished export's manifest and files are served after a restart, to
/// whoever asked and nobody else; an export the server stopped in the
/// middle of runs again, to completion; DELETE removes a job's files from
/// disk.
async fn bulk_export_survives_a_restart(app: App) {
    for (path, body) in [
        (
            "Patient/p1",
            json!({ "resourceType": "Patient", "id": "p1", "name": [{ "family": "One" }] }),
        ),
        (
            "Observation/o1",
            json!({ "resourceType": "Observation", "id": "o1", "status": "final",
            "code": { "text": "pulse" }, "subject": { "reference": "Patient/p1" } }),
        ),
    ] {
        let res = app.put(path, &body).await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }
    let done = kick_off(&app.client, &app.url("$export?_type=Patient,Observation")).await;
    let manifest = finished(&app.client, &done).await;
    let files = contents(&app.client, &manifest).await;
    assert_eq!(files, v(&[("Observation", &["o1"]), ("Patient", &["p1"])]));
    // Enough of a practice that a whole-practice export (every type, page
    // by page) is still running when the server is stopped just after.
    let entries: Vec<Value> = (0..1500)
        .map(|n| {
            json!({ "resource": { "resourceType": "Patient", "id": format!("many{n}"),
                    "name": [{ "family": format!("Many{n}") }] },
                    "request": { "method": "PUT", "url": format!("Patient/many{n}") } })
        })
        .collect();
    let res = app
        .post(
            "",
            &json!({ "resourceType": "Bundle", "type": "batch", "entry": entries }),
        )
        .await;
    assert_eq!(res.status(), 200);
    let running = kick_off(&app.client, &app.url("$export")).await;
    assert!(job_dir(app.data_dir(), &running).join("job.json").is_file());

    let before = app.server.addr.to_string();
    let app = app.restart().await;
    // The new server listens on another port: the same URLs there.
    let after = app.server.addr.to_string();
    let moved = |url: &str| url.replace(&before, &after);
    let (done, running) = (moved(&done), moved(&running));
    // (The kick-off request is echoed as it was made.)
    let mut manifest_there: Value =
        serde_json::from_str(&moved(&manifest.to_string())).unwrap_or_else(|e| panic!("{e}"));
    manifest_there["request"] = manifest["request"].clone();
    let manifest = manifest_there;

    // The finished job, as it was.
    let res = get(&app.client, &done).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("expires"), "{:?}", res.headers());
    let again: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, manifest);
    assert_eq!(contents(&app.client, &again).await, files);
    // The interrupted one (if the stop came before it ended) runs again:
    // every patient, once.
    let resumed = finished(&app.client, &running).await;
    let patients = contents(&app.client, &resumed)
        .await
        .into_iter()
        .find(|(ty, _)| ty == "Patient")
        .map(|(_, ids)| ids)
        .unwrap_or_default();
    assert_eq!(patients.len(), 1501, "{resumed}");
    // Another account of the same practice sees neither job nor file.
    let other = authorised_client(&app.server.token);
    let file = manifest["output"][0]["url"].as_str().unwrap_or_default();
    for url in [done.as_str(), running.as_str(), file] {
        assert_outcome(get(&other, url).await, 404, "not-found").await;
    }
    // DELETE: the jobs and their files are gone, from the API and the disk.
    for status in [&done, &running] {
        let dir = job_dir(app.data_dir(), status);
        assert!(dir.is_dir(), "{}", dir.display());
        let res = app
            .client
            .delete(status)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 202);
        assert!(!dir.exists(), "{} still exists", dir.display());
        assert_outcome(get(&app.client, status).await, 404, "not-found").await;
    }
    assert_outcome(get(&app.client, file).await, 404, "not-found").await;
    app.stop().await;
}

/// A finished export is deleted, files and all, once its retention has
/// passed (`Expires` says when); unreadable leftovers in the export folder
/// are cleared at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_exports_expire() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cfg = opengp::config::ServerConfig {
        export_retention: Duration::from_secs(2),
        ..crate::support::server_config(dir.path())
    };
    let junk = cfg.data.join("bulk-export").join("leftover");
    std::fs::create_dir_all(&junk).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(junk.join("job.json"), "{not json").unwrap_or_else(|e| panic!("{e}"));
    let server = opengp::server::Server::bind(&cfg)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!junk.exists(), "an unreadable job was left at start");
    let base = server.base_url();
    let token = opengp::server::full_access_session(&server.store, &server.practice, "test")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let client = authorised_client(&token);
    let status = kick_off(&client, &format!("{base}/$export?_type=Patient")).await;
    let res = loop {
        let res = get(&client, &status).await;
        if res.status() != 202 {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(res.status(), 200);
    let expires = res
        .headers()
        .get("expires")
        .and_then(|v| v.to_str().ok())
        .and_then(gp_fhir::Instant::parse_http_date)
        .unwrap_or_else(|| panic!("no Expires: {:?}", res.headers()));
    let now = gp_fhir::Instant::now().millis();
    assert!(
        (now..=now + 3_000).contains(&expires.millis()),
        "Expires {expires:?} is not within the retention"
    );
    let job = job_dir(&cfg.data, &status);
    assert!(job.is_dir());
    // Deleted by the server in the background, without a request.
    let mut waited = 0;
    while job.exists() && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert!(!job.exists(), "the expired export's files are still there");
    assert_outcome(get(&client, &status).await, 404, "not-found").await;
    let _ = stop.send(());
    running
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// A real server process killed (SIGKILL) in the middle of an export: the
/// next start runs the job again from its start, with the session that
/// started it (stored, so still valid), and it completes before its owner
/// polls; then the owner finds the same job and `transactionTime`, a
/// complete manifest and every patient exactly once
/// (export.html#bulk-data-status-request).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_interrupted_by_a_crash_completes_after_the_restart() {
    const PATIENTS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (data, log) = (dir.path().join("data"), dir.path().join("server.log"));
    crate::child::add_account(&data);
    let mut server = crate::child::Server::start(&data, &log).await;
    let client = authorised_client(&server.token);
    add_patients(&client, &server.base, PATIENTS).await;
    let status = kick_off(&client, &format!("{}/$export?_type=Patient", server.base)).await;
    // Killed once the job is writing its file.
    loop {
        let res = get(&client, &status).await;
        assert_eq!(
            res.status(),
            202,
            "the export ended before it could be interrupted"
        );
        let progress = res
            .headers()
            .get("x-progress")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !progress.starts_with("0 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().await;
    let job = job_dir(&data, &status);
    let recorded = recorded(&job);
    assert_eq!(recorded["state"], "running", "{recorded}");
    assert!(job.join("Patient.ndjson").is_file(), "no partial file");

    let server = crate::child::Server::start(&data, &log).await;
    // Done without a poll: watched on disk.
    let done = ended_without_a_poll(&job).await;
    assert_eq!(
        done["state"],
        "done",
        "{done}\n{}",
        crate::child::log_tail(&log)
    );
    assert_eq!(done["transactionTime"], recorded["transactionTime"]);
    let client = authorised_client(&server.token);
    let status = format!(
        "{}/$export-poll-status/{}",
        server.base,
        status.rsplit('/').next().unwrap_or_default()
    );
    let manifest = finished(&client, &status).await;
    assert_eq!(manifest["transactionTime"], recorded["transactionTime"]);
    assert_eq!(
        manifest["output"].as_array().map(Vec::len),
        Some(1),
        "{manifest}"
    );
    let files = contents(&client, &manifest).await;
    let mut expected: Vec<String> = (0..PATIENTS).map(|n| format!("p{n}")).collect();
    expected.sort();
    assert_eq!(files, vec![("Patient".to_owned(), expected)]);
    let exit = server.stop(&log).await;
    assert!(exit.success(), "{exit}\n{}", crate::child::log_tail(&log));
}

/// Patients `p0`.. `p{count-1}`, by batches of a thousand.
async fn add_patients(client: &reqwest::Client, base: &str, count: usize) {
    for chunk in 0..count.div_ceil(1000) {
        let entries: Vec<Value> = (chunk * 1000..((chunk + 1) * 1000).min(count))
            .map(|n| {
                json!({ "resource": { "resourceType": "Patient", "id": format!("p{n}"),
                        "name": [{ "family": format!("Family{n}") }] },
                        "request": { "method": "PUT", "url": format!("Patient/p{n}") } })
            })
            .collect();
        let res = client
            .post(base)
            .json(&json!({ "resourceType": "Bundle", "type": "batch", "entry": entries }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 200);
    }
}

/// The body of every line of a manifest's files, by type, downloaded.
async fn bodies(client: &reqwest::Client, manifest: &Value) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for o in manifest["output"].as_array().into_iter().flatten() {
        let text = get(client, o["url"].as_str().unwrap_or_default())
            .await
            .text()
            .await
            .unwrap_or_default();
        let mut lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        lines.sort_by_key(|v| v["id"].to_string());
        out.push((o["type"].as_str().unwrap_or_default().to_owned(), lines));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A job's `job.json`, as the server recorded it.
fn recorded(job: &std::path::Path) -> Value {
    let path = job.join("job.json");
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits, within bounds, for the server to record a job as no longer
/// running, without polling it over HTTP; what it then records.
async fn ended_without_a_poll(job: &std::path::Path) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let now = recorded(job);
        if now["state"] != "running" {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} was not run again after the restart",
            job.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records a finished job as the server leaves one it stopped in the
/// middle of: running, its files left as they were; without the session
/// that started it unless `session`, as for an app's token.
fn mark_running(job: &std::path::Path, session: bool) {
    let mut job_file = recorded(job);
    assert_eq!(job_file["state"], "done", "{job_file}");
    assert!(job_file["session"].is_string(), "{job_file}");
    job_file["state"] = json!("running");
    if let Some(o) = job_file.as_object_mut() {
        o.remove("outputs");
        o.remove("expires");
        if !session {
            o.remove("session");
        }
    }
    std::fs::write(job.join("job.json"), job_file.to_string()).unwrap_or_else(|e| panic!("{e}"));
}

/// export.html#response---complete-status: the files hold the resources as
/// of the `transactionTime`, however late the job reads them. Three exports
/// (the whole practice, one group, and the patients changed `_since` an
/// instant) finish; then patients and an observation are updated, an
/// observation deleted, one created, and the group gains a member, all
/// after their `transactionTime`; then each job
/// is run again from its start, as after a crash, with the same
/// `transactionTime` (which kick-off fixed), at the server's start or at
/// its owner's poll: its files are those of its first run, byte
/// for byte, holding the versions of the `transactionTime`.
async fn an_export_holds_the_resources_as_of_its_transaction_time(app: App) {
    for (path, body) in [
        (
            "Patient/p1",
            json!({ "resourceType": "Patient", "id": "p1", "name": [{ "family": "Before" }] }),
        ),
        (
            "Patient/p2",
            json!({ "resourceType": "Patient", "id": "p2", "name": [{ "family": "Two" }] }),
        ),
        (
            "Observation/changed",
            json!({ "resourceType": "Observation", "id": "changed", "status": "preliminary",
            "code": { "text": "pulse" }, "subject": { "reference": "Patient/p1" } }),
        ),
        (
            "Observation/deleted",
            json!({ "resourceType": "Observation", "id": "deleted", "status": "final",
            "code": { "text": "weight" }, "subject": { "reference": "Patient/p2" } }),
        ),
        (
            "Group/g1",
            json!({ "resourceType": "Group", "id": "g1", "type": "person", "actual": true,
            "member": [{ "entity": { "reference": "Patient/p1" } }] }),
        ),
    ] {
        let res = app.put(path, &body).await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }
    // p1 twice before the kick-off: the files hold its second version,
    // which is also the only patient changed since `since`.
    let written_at = |v: &Value| {
        v["meta"]["lastUpdated"]
            .as_str()
            .and_then(|t| gp_fhir::DateRange::parse(t).ok().map(|r| r.low))
            .unwrap_or_else(|| panic!("{v}"))
    };
    let p2 = written_at(&app.get_json(&app.url("Patient/p2")).await);
    while gp_fhir::Instant::now() <= p2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let res = app
        .put(
            "Patient/p1",
            &json!({ "resourceType": "Patient", "id": "p1", "name": [{ "family": "One" }] }),
        )
        .await;
    assert_eq!(res.status(), 200);
    let since = written_at(&res.json().await.unwrap_or_else(|e| panic!("{e}")));
    assert!(since > p2);
    let jobs = [
        kick_off(
            &app.client,
            &app.url("$export?_type=Patient,Observation,Group"),
        )
        .await,
        kick_off(&app.client, &app.url("Group/g1/$export")).await,
        kick_off(
            &app.client,
            &app.url(&format!("$export?_type=Patient&_since={since}")),
        )
        .await,
    ];
    let mut first = Vec::new();
    for status in &jobs {
        let m = finished(&app.client, status).await;
        first.push((m.clone(), bodies(&app.client, &m).await));
    }
    // `type -> id/versionId` of the files.
    let versions = |files: &[(String, Vec<Value>)]| {
        files
            .iter()
            .map(|(t, lines)| {
                let ids: Vec<String> = lines
                    .iter()
                    .map(|l| {
                        format!(
                            "{}/{}",
                            l["id"].as_str().unwrap_or_default(),
                            l["meta"]["versionId"].as_str().unwrap_or_default()
                        )
                    })
                    .collect();
                (t.clone(), ids)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        versions(&first[0].1),
        v(&[
            ("Group", &["g1/1"]),
            ("Observation", &["changed/1", "deleted/1"]),
            ("Patient", &["p1/2", "p2/1"])
        ])
    );
    assert_eq!(
        versions(&first[1].1),
        v(&[
            ("Group", &["g1/1"]),
            ("Observation", &["changed/1"]),
            ("Patient", &["p1/2"])
        ])
    );
    assert_eq!(versions(&first[2].1), v(&[("Patient", &["p1/2"])]));

    // Changes after both transactionTimes.
    let latest = first
        .iter()
        .filter_map(|(m, _)| m["transactionTime"].as_str())
        .filter_map(|t| gp_fhir::DateRange::parse(t).ok().map(|r| r.low))
        .max()
        .unwrap_or_else(|| panic!("no transactionTime"));
    for (path, body) in [
        (
            "Patient/p1",
            json!({ "resourceType": "Patient", "id": "p1", "name": [{ "family": "After" }] }),
        ),
        // Changed since `since` now, but not as of the transactionTime.
        (
            "Patient/p2",
            json!({ "resourceType": "Patient", "id": "p2", "name": [{ "family": "Later" }] }),
        ),
        (
            "Observation/changed",
            json!({ "resourceType": "Observation", "id": "changed", "status": "final",
            "code": { "text": "pulse" }, "subject": { "reference": "Patient/p1" } }),
        ),
        (
            "Observation/created",
            json!({ "resourceType": "Observation", "id": "created", "status": "final",
            "code": { "text": "height" }, "subject": { "reference": "Patient/p1" } }),
        ),
        (
            "Group/g1",
            json!({ "resourceType": "Group", "id": "g1", "type": "person", "actual": true,
            "member": [{ "entity": { "reference": "Patient/p1" } }, { "entity": { "reference": "Patient/p2" } }] }),
        ),
    ] {
        let res = app.put(path, &body).await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
        let written: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            written_at(&written) > latest,
            "{path} was written at the transactionTime"
        );
    }
    let res = app.delete("Observation/deleted").await;
    assert!(res.status().is_success(), "{}", res.status());

    // Every job runs again from its start, as after a crash: at the start,
    // with the session that started it; the second, whose session is not
    // recorded, when its owner polls.
    let app = app
        .restart_after(|data, _| {
            for (n, status) in jobs.iter().enumerate() {
                mark_running(&job_dir(data, status), n != 1);
            }
        })
        .await;
    for status in [&jobs[0], &jobs[2]] {
        let ended = ended_without_a_poll(&job_dir(app.data_dir(), status)).await;
        assert_eq!(ended["state"], "done", "{ended}");
    }
    assert_eq!(
        recorded(&job_dir(app.data_dir(), &jobs[1]))["state"],
        "running"
    );
    for (status, (manifest, files)) in jobs.iter().zip(&first) {
        let status = format!(
            "{}/$export-poll-status/{}",
            app.server.base,
            status.rsplit('/').next().unwrap_or_default()
        );
        let again = finished(&app.client, &status).await;
        assert_eq!(again["transactionTime"], manifest["transactionTime"]);
        assert_eq!(&bodies(&app.client, &again).await, files, "{again}");
    }
    app.stop().await;
}

/// export.html#response---complete-status ("transactionTime ... the
/// server's time when the query is run. The response SHOULD NOT include any
/// resources modified after this instant, and SHALL include any matching
/// resources modified up to and including this instant"): batches of
/// creates are written without pause while exports are kicked off; each
/// created patient is in an export whose `transactionTime` is at or after
/// its `lastUpdated`, and in none whose `transactionTime` is before it.
/// (A batch is stamped before it commits, so a `transactionTime` read from
/// the clock at kick-off could fall between a batch's stamps and its
/// commit, and the job read the practice without it.)
async fn writes_racing_a_kick_off_are_in_the_export_or_stamped_after_it(app: App) {
    const WRITERS: usize = 3;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (client, url, stop) = (app.client.clone(), app.url(""), stop.clone());
        writers.push(tokio::spawn(async move {
            // id -> lastUpdated of every patient created.
            let mut written: Vec<(String, gp_fhir::Instant)> = Vec::new();
            let mut batch = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let entries: Vec<Value> = (0..200)
                    .map(|n| {
                        let id = format!("w{w}b{batch}n{n}");
                        json!({ "resource": { "resourceType": "Patient", "id": id,
                                "name": [{ "family": format!("Racing{n}") }] },
                                "request": { "method": "PUT", "url": format!("Patient/{id}") } })
                    })
                    .collect();
                let res: Value = client
                    .post(&url)
                    .json(&json!({ "resourceType": "Bundle", "type": "batch", "entry": entries }))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .json()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                for (n, e) in res["entry"].as_array().into_iter().flatten().enumerate() {
                    assert!(
                        e["response"]["status"]
                            .as_str()
                            .is_some_and(|s| s.starts_with("201")),
                        "{e}"
                    );
                    let at = e["response"]["lastModified"]
                        .as_str()
                        .and_then(|t| gp_fhir::DateRange::parse(t).ok())
                        .map(|r| r.low)
                        .unwrap_or_else(|| panic!("no lastModified: {e}"));
                    written.push((format!("w{w}b{batch}n{n}"), at));
                }
                batch += 1;
            }
            written
        }));
    }
    let mut jobs = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        jobs.push(kick_off(&app.client, &app.url("$export?_type=Patient")).await);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap_or_else(|e| panic!("{e}")));
    }
    assert!(written.len() >= 8 * 200, "only {} writes", written.len());
    let mut cut = 0;
    for status in &jobs {
        let m = finished(&app.client, status).await;
        let at = m["transactionTime"]
            .as_str()
            .and_then(|t| gp_fhir::DateRange::parse(t).ok())
            .map(|r| r.low)
            .unwrap_or_else(|| panic!("no transactionTime: {m}"));
        let exported: std::collections::HashSet<String> = contents(&app.client, &m)
            .await
            .into_iter()
            .flat_map(|(_, ids)| ids)
            .collect();
        for (id, stamped) in &written {
            if *stamped <= at {
                assert!(
                    exported.contains(id),
                    "Patient/{id}, stamped {stamped} before transactionTime {at}, is not in the export"
                );
            } else {
                assert!(
                    !exported.contains(id),
                    "Patient/{id}, stamped {stamped} after transactionTime {at}, is in the export"
                );
            }
        }
        // Some exports fall in the middle of the writes.
        if written.iter().any(|(_, s)| *s <= at) && written.iter().any(|(_, s)| *s > at) {
            cut += 1;
        }
    }
    assert!(
        cut >= 4,
        "only {cut} exports were kicked off during the writes"
    );
    app.stop().await;
}

/// export.html#_typefilter with export.html#response---complete-status:
/// a filtered export holds the resources that matched the filter as they
/// were at the `transactionTime`. Observations coded A or B are exported
/// with `_typeFilter` code A; after the kick-off one changes from A to B,
/// one from B to A, one coded A is deleted and one coded A created; the
/// job, run again from its start (as after a crash, at the server's
/// start), exports those coded A at the `transactionTime`, as they were:
/// the same as its first run. A filter no resource's own index entries can
/// decide (a chain) is refused at kick-off.
async fn a_filtered_export_filters_the_resources_as_of_its_transaction_time(app: App) {
    let obs = |id: &str, code: &str| {
        json!({ "resourceType": "Observation", "id": id, "status": "final",
        "code": { "coding": [{ "system": "http://snomed.info/sct", "code": code }] },
        "subject": { "reference": "Patient/p1" } })
    };
    let res = app
        .put(
            "Patient/p1",
            &json!({ "resourceType": "Patient", "id": "p1", "name": [{ "family": "One" }] }),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    for (id, code) in [
        ("a-to-b", "75367002"),
        ("b-to-a", "27113001"),
        ("a-kept", "75367002"),
        ("b-kept", "27113001"),
        ("a-deleted", "75367002"),
    ] {
        let res = app.put(&format!("Observation/{id}"), &obs(id, code)).await;
        assert!(res.status().is_success(), "{id}: {}", res.status());
    }
    let status = kick_off(
        &app.client,
        &app.url("$export?_type=Observation&_typeFilter=Observation%3Fcode%3Dhttp%3A%2F%2Fsnomed.info%2Fsct%7C75367002"),
    )
    .await;
    let manifest = finished(&app.client, &status).await;
    let files = bodies(&app.client, &manifest).await;
    let versions = |files: &[(String, Vec<Value>)]| {
        files
            .iter()
            .flat_map(|(_, lines)| lines)
            .map(|l| {
                format!(
                    "{}/{}",
                    l["id"].as_str().unwrap_or_default(),
                    l["meta"]["versionId"].as_str().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(versions(&files), ["a-deleted/1", "a-kept/1", "a-to-b/1"]);
    for (id, code) in [
        ("a-to-b", "27113001"),
        ("b-to-a", "75367002"),
        ("a-new", "75367002"),
    ] {
        let res = app.put(&format!("Observation/{id}"), &obs(id, code)).await;
        assert!(res.status().is_success(), "{id}: {}", res.status());
    }
    let res = app.delete("Observation/a-deleted").await;
    assert!(res.status().is_success(), "{}", res.status());
    let app = app
        .restart_after(|data, _| mark_running(&job_dir(data, &status), true))
        .await;
    let ended = ended_without_a_poll(&job_dir(app.data_dir(), &status)).await;
    assert_eq!(ended["state"], "done", "{ended}");
    let status = format!(
        "{}/$export-poll-status/{}",
        app.server.base,
        status.rsplit('/').next().unwrap_or_default()
    );
    let again = finished(&app.client, &status).await;
    assert_eq!(again["transactionTime"], manifest["transactionTime"]);
    assert_eq!(bodies(&app.client, &again).await, files);

    let res = app
        .client
        .get(app.url(
            "$export?_type=Observation&_typeFilter=Observation%3Fsubject%3APatient.name%3DOne",
        ))
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_outcome(res, 400, "not-supported").await;
    app.stop().await;
}

/// `opengp app add` of a backend service reading everything; its client id
/// and private key.
fn add_backend_app(data: &std::path::Path, name: &str) -> (String, String) {
    let key = data.with_file_name(format!("{name}.pem"));
    let out = std::process::Command::new(crate::support::opengp_bin())
        .args(["app", "add", "--practice", crate::child::PRACTICE, "--data"])
        .arg(data)
        .args(["--name", name, "--scope", "system/*.rs", "--key-out"])
        .arg(&key)
        .output()
        .unwrap_or_else(|e| panic!("opengp app add: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let client_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_id="))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    let pem = std::fs::read_to_string(&key).unwrap_or_else(|e| panic!("{e}"));
    (client_id, pem)
}

/// A backend service's access token (SMART client credentials, RFC 7523
/// assertion) from the child server at `base`.
async fn app_token(base: &str, (client_id, pem): &(String, String), jti: &str) -> String {
    let token_url = base.replace("/fhir", "/smart/token");
    let jwt = crate::smart::assertion(pem, client_id, &token_url, 120, jti);
    let res = reqwest::Client::new()
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt.as_str()),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let t: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    t["access_token"].as_str().unwrap_or_default().to_owned()
}

/// Exports started by a SMART backend service's token, and by a staff
/// session that has since ended (signed out), are run again at the next
/// start after a SIGKILL, without waiting for a poll, with the authority
/// of whoever started them as it is now: a job of an app disabled while
/// the server was down is not run but fails, and its poll answers an
/// OperationOutcome saying why (export.html#bulk-data-status-request,
/// error status). The app then polls with a new token (the job's owner is
/// the app, not the token) and finds the same job, `transactionTime` and
/// every patient once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exports_of_apps_and_ended_sessions_run_again_at_the_start() {
    const PATIENTS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (data, log) = (dir.path().join("data"), dir.path().join("server.log"));
    crate::child::add_account(&data);
    let running_app = add_backend_app(&data, "Nightly extract");
    let disabled_app = add_backend_app(&data, "Retired extract");
    let mut server = crate::child::Server::start(&data, &log).await;
    let staff = authorised_client(&server.token);
    add_patients(&staff, &server.base, PATIENTS).await;
    let export = format!("{}/$export?_type=Patient", server.base);
    // Finished ones, marked as running once the server is down, as if the
    // crash had come in their middle.
    let by_staff = kick_off(&staff, &export).await;
    finished(&staff, &by_staff).await;
    let retired = authorised_client(&app_token(&server.base, &disabled_app, "retired-1").await);
    let by_retired = kick_off(&retired, &export).await;
    finished(&retired, &by_retired).await;
    let res = staff
        .post(server.base.replace(
            &format!("/practices/{}/fhir", crate::child::PRACTICE),
            "/auth/logout",
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(res.status().is_success(), "logout: {}", res.status());
    assert_eq!(
        get(&staff, &by_staff).await.status(),
        401,
        "the session did not end"
    );
    // Killed in the middle of the app's export.
    let nightly = authorised_client(&app_token(&server.base, &running_app, "nightly-1").await);
    let by_app = kick_off(&nightly, &export).await;
    loop {
        let res = get(&nightly, &by_app).await;
        assert_eq!(
            res.status(),
            202,
            "the export ended before it could be interrupted"
        );
        let progress = res
            .headers()
            .get("x-progress")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !progress.starts_with("0 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().await;
    let job = |status: &str| job_dir(&data, status);
    let recorded_app = recorded(&job(&by_app));
    assert_eq!(recorded_app["state"], "running", "{recorded_app}");
    mark_running(&job(&by_staff), true);
    mark_running(&job(&by_retired), true);
    let out = std::process::Command::new(crate::support::opengp_bin())
        .args([
            "app",
            "update",
            "--practice",
            crate::child::PRACTICE,
            "--data",
        ])
        .arg(&data)
        .args(["--client-id", &disabled_app.0, "--disable"])
        .output()
        .unwrap_or_else(|e| panic!("opengp app update: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = crate::child::Server::start(&data, &log).await;
    for status in [&by_app, &by_staff] {
        let done = ended_without_a_poll(&job(status)).await;
        assert_eq!(
            done["state"],
            "done",
            "{done}\n{}",
            crate::child::log_tail(&log)
        );
    }
    let refused = ended_without_a_poll(&job(&by_retired)).await;
    assert_eq!(refused["state"], "failed", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("may no longer export")),
        "{refused}"
    );
    assert!(
        !job(&by_retired).join("Patient.ndjson").exists(),
        "a refused job kept its files"
    );
    let moved = |status: &str| {
        format!(
            "{}/$export-poll-status/{}",
            server.base,
            status.rsplit('/').next().unwrap_or_default()
        )
    };
    let mut expected: Vec<String> = (0..PATIENTS).map(|n| format!("p{n}")).collect();
    expected.sort();
    let nightly = authorised_client(&app_token(&server.base, &running_app, "nightly-2").await);
    let staff = authorised_client(&server.token);
    for (client, status) in [(&nightly, &by_app), (&staff, &by_staff)] {
        let manifest = finished(client, &moved(status)).await;
        assert_eq!(
            manifest["transactionTime"],
            recorded(&job(status))["transactionTime"]
        );
        assert_eq!(
            contents(client, &manifest).await,
            vec![("Patient".to_owned(), expected.clone())]
        );
    }
    assert_eq!(
        recorded_app["transactionTime"],
        recorded(&job(&by_app))["transactionTime"]
    );
    // The disabled app can no longer ask. Enabled again (the server
    // stopped for it), it finds its job failed: an OperationOutcome saying
    // why.
    assert_outcome(get(&retired, &moved(&by_retired)).await, 401, "login").await;
    let exit = server.stop(&log).await;
    assert!(exit.success(), "{exit}\n{}", crate::child::log_tail(&log));
    let out = std::process::Command::new(crate::support::opengp_bin())
        .args([
            "app",
            "update",
            "--practice",
            crate::child::PRACTICE,
            "--data",
        ])
        .arg(&data)
        .args(["--client-id", &disabled_app.0, "--enable"])
        .output()
        .unwrap_or_else(|e| panic!("opengp app update: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = crate::child::Server::start(&data, &log).await;
    let retired = authorised_client(&app_token(&server.base, &disabled_app, "retired-2").await);
    let status = format!(
        "{}/$export-poll-status/{}",
        server.base,
        by_retired.rsplit('/').next().unwrap_or_default()
    );
    let outcome = assert_outcome(get(&retired, &status).await, 500, "exception").await;
    assert!(
        outcome.to_string().contains("may no longer export"),
        "{outcome}"
    );
    let exit = server.stop(&log).await;
    assert!(exit.success(), "{exit}\n{}", crate::child::log_tail(&log));
}
