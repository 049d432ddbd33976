//! Reindexing (gp-store `reindex.rs`): index rows that extraction has
//! learnt to write since a resource was stored are written when the server
//! starts on a store whose rows are of another extraction version, and by
//! `opengp reindex` whatever their version; searches then find what they
//! missed; each reindex is an administrative AuditEvent in the practice's
//! chain, which `opengp audit verify` still finds intact. On both backends.

use gp_store::{Actor, Ctx, INDEX_VERSION, IndexState, Reindexed};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::search::check;
use crate::support::{App, opengp_bin};

on_both_backends!(stale_index_rows_are_rewritten_at_start_and_by_the_command);

fn observation(id: &str) -> Value {
    json!({ "resourceType": "Observation", "id": id, "status": "final",
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "1107481000000106" }] },
            "subject": { "reference": "Patient/pat" } })
}

/// What the practice's search index looked like before this OpenGP: the
/// List's `item:deleted` rows missing (extracted since), the Condition
/// with no rows at all (its words included), and, when `state` says so,
/// another version recorded (or a reindex stopped half-way).
async fn make_stale(app: &App, state: Option<IndexState>) {
    let ctx = Ctx::new(crate::auth::practice(app).await, Actor::system());
    app.server
        .store
        .write_with(&ctx, move |tx| {
            let mut rows = Vec::new();
            for (ty, id) in [("List", "changes"), ("Condition", "asthma")] {
                let ty = gp_fhir::ResourceType::parse(ty).unwrap_or_else(|| panic!("{ty}"));
                let v = tx.latest(ty, id)?.unwrap_or_else(|| panic!("{ty}/{id}"));
                let json: Value = serde_json::from_slice(&v.body).unwrap_or_else(|e| panic!("{e}"));
                let mut index = gp_search::extract_json(ty, &json);
                index.retain(|e| ty.as_str() == "List" && e.code != "item:deleted");
                rows.push(Reindexed {
                    resource_type: ty,
                    id: id.to_owned(),
                    version: v.version,
                    index,
                });
            }
            assert_eq!(tx.reindex(&rows)?, 2);
            if let Some(state) = state {
                tx.set_index_state(&state)?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// search.html#list (a list of changes leaves out its deleted entries),
/// search.html#text and a reference parameter.
const RIGHT: &[(&str, &[&str])] = &[
    ("Observation?_list=changes", &["hb3"]),
    ("Condition?_text=asthma", &["asthma"]),
    ("Condition?patient=pat", &["asthma"]),
];
const STALE: &[(&str, &[&str])] = &[
    ("Observation?_list=changes", &["hb1", "hb3"]),
    ("Condition?_text=asthma", &[]),
    ("Condition?patient=pat", &[]),
];

async fn stale_index_rows_are_rewritten_at_start_and_by_the_command(app: App) {
    assert_eq!(
        app.put(
            "Patient/pat",
            &json!({ "resourceType": "Patient", "id": "pat" })
        )
        .await
        .status(),
        201
    );
    for id in ["hb1", "hb3"] {
        assert_eq!(
            app.put(&format!("Observation/{id}"), &observation(id))
                .await
                .status(),
            201
        );
    }
    let list = json!({ "resourceType": "List", "id": "changes", "status": "current", "mode": "changes",
        "entry": [{ "item": { "reference": "Observation/hb1" }, "deleted": true },
                  { "item": { "reference": "Observation/hb3" } }] });
    assert_eq!(app.put("List/changes", &list).await.status(), 201);
    let condition = json!({ "resourceType": "Condition", "id": "asthma",
        "text": { "status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Asthma</div>" },
        "code": { "text": "Asthma" }, "subject": { "reference": "Patient/pat" } });
    assert_eq!(app.put("Condition/asthma", &condition).await.status(), 201);
    check(&app, RIGHT).await;

    // Rows of an older extraction: the server reindexes when it starts.
    make_stale(
        &app,
        Some(IndexState {
            version: 0,
            resume: None,
        }),
    )
    .await;
    check(&app, STALE).await;
    let app = app.restart().await;
    check(&app, RIGHT).await;

    // A reindex stopped after the Condition (resources go in type and id
    // order) goes on from there: the List is redone, the Condition is not.
    make_stale(
        &app,
        Some(IndexState {
            version: 0,
            resume: Some((INDEX_VERSION, "Condition".into(), "asthma".into())),
        }),
    )
    .await;
    let app = app.restart().await;
    check(&app, &[RIGHT[0], STALE[1], STALE[2]]).await;

    // Wrong rows with the right version recorded: a start leaves them (it
    // reads the version only), the command redoes them.
    make_stale(&app, None).await;
    let app = app.restart().await;
    check(&app, STALE).await;
    let app = app
        .restart_after(|data, database| {
            let run = |command: &[&str]| {
                let mut cmd = std::process::Command::new(opengp_bin());
                cmd.args(command)
                    .args(["--practice", opengp::config::DEFAULT_PRACTICE, "--data"])
                    .arg(data);
                if let Some(url) = database {
                    cmd.args(["--database", url]);
                }
                let out = cmd
                    .output()
                    .unwrap_or_else(|e| panic!("opengp {command:?}: {e}"));
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(
                    out.status.success(),
                    "{command:?}: {stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                stdout
            };
            let stdout = run(&["reindex"]);
            assert!(
                stdout.contains(&format!("reindexed {}: ", opengp::config::DEFAULT_PRACTICE)),
                "{stdout}"
            );
            let stdout = run(&["audit", "verify"]);
            assert!(stdout.contains("is intact"), "{stdout}");
        })
        .await;
    check(&app, RIGHT).await;

    // Each reindex is in the trail: the two at start by the server, the
    // command's by the operator at the console (DICOM Application
    // Activity, admin-action `reindex`, action E).
    let b = crate::support::json(
        app.get(
            "AuditEvent?subtype=https://opengp.dev/fhir/CodeSystem/admin-action|reindex&_sort=date",
        )
        .await,
    )
    .await;
    let events: Vec<&Value> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .collect();
    let agents: Vec<&str> = events
        .iter()
        .map(|e| e["agent"][0]["altId"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(agents, ["system", "system", "cli"], "{b}");
    for (e, (from, resumed)) in events
        .iter()
        .zip([(0, false), (0, true), (INDEX_VERSION, false)])
    {
        assert_eq!(e["type"]["code"], "110100", "{e}");
        assert_eq!(e["action"], "E", "{e}");
        assert_eq!(e["outcome"], "0", "{e}");
        let what = e["entity"][0]["description"].as_str().unwrap_or_default();
        assert!(
            what.starts_with(&format!(
                "reindexed from extraction version {from} to {INDEX_VERSION}"
            )) && what.contains("resuming") == resumed,
            "{what}"
        );
    }
    let ctx = Ctx::new(crate::auth::practice(&app).await, Actor::system());
    let state = app
        .server
        .store
        .read_with(&ctx, |tx| tx.index_state())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        state,
        IndexState {
            version: INDEX_VERSION,
            resume: None
        }
    );
    app.stop().await;
}
