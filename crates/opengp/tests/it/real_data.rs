//! Real data through the API: every example resource of the official R4
//! package created and read back equal, and every Synthea bundle posted as
//! a transaction with every resource readable afterwards; on each storage
//! backend.

use std::io::Read;

use gp_fhir::resource::equal_ignoring_meta;
use serde_json::Value;

use crate::support::{App, json, r4_examples, shared_data};

#[path = "../../../validate/tests/invalid_in_spec.rs"]
mod invalid_in_spec;
use invalid_in_spec::INVALID_IN_SPEC;

crate::on_both_backends!(
    // The largest examples are definition Bundles of up to 35 MB.
    every_r4_example_round_trips: 64 * 1024 * 1024,
    every_synthea_bundle_posts_as_a_transaction,
);

/// Every example in `hl7.fhir.r4.examples` (http.html#create, #read): the
/// read-back equals what was sent, but for `id` and the server's meta.
async fn every_r4_example_round_trips(app: App) {
    let dir = r4_examples();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && !p.ends_with("package.json"))
        .collect();
    files.sort();
    let (mut created, mut invalid_ids, mut failures) = (0usize, 0usize, Vec::new());
    let (mut rejected, mut audit_refused) = (0usize, 0usize);
    for path in &files {
        let text = std::fs::read(path).unwrap_or_else(|e| panic!("{e}"));
        let sent: Value =
            serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Some(ty) = sent["resourceType"].as_str() else {
            continue;
        };
        // PUT with the example's own id keeps ids (update-as-create), so
        // examples that reference each other stay consistent. An id the
        // specification does not allow (one example has 67 characters) is
        // refused on update; such an example is created with POST instead,
        // which ignores client ids (http.html#create).
        let id = sent["id"].as_str().unwrap_or_default();
        let valid_id = gp_fhir::Id::parse(id).is_ok();
        let request = if valid_id {
            app.client.put(app.url(&format!("{ty}/{id}")))
        } else {
            app.client.post(app.url(ty))
        };
        let res = request
            .header("content-type", "application/fhir+json")
            .body(text.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        // An example whose only fault is its id is created by POST, which
        // drops the id, and so is not refused.
        if valid_id && INVALID_IN_SPEC.iter().any(|(n, _)| *n == name) {
            // validation.html: the server refuses what the specification
            // itself gets wrong (crates/validate/tests/invalid_in_spec.rs).
            if res.status() == 422 {
                rejected += 1;
            } else {
                failures.push(format!("{name}: {} instead of 422", res.status()));
            }
            continue;
        }
        // The audit trail is the server's own and append-only: no client
        // writes an AuditEvent (AuditEvent examples are refused, 403).
        if ty == "AuditEvent" {
            if res.status() == 403 {
                audit_refused += 1;
            } else {
                failures.push(format!("{name}: {} instead of 403", res.status()));
            }
            continue;
        }
        if !res.status().is_success() {
            failures.push(format!(
                "{}: {} {}",
                path.display(),
                res.status(),
                res.text().await.unwrap_or_default()
            ));
            continue;
        }
        let stored_id = json(res).await["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let back = json(app.get(&format!("{ty}/{stored_id}")).await).await;
        let mut expected = sent.clone();
        expected["id"] = Value::String(stored_id);
        if !valid_id {
            invalid_ids += 1;
        }
        if !equal_ignoring_meta(&expected, &back) {
            failures.push(format!("{}: read back differs", path.display()));
            continue;
        }
        created += 1;
    }
    eprintln!(
        "R4 examples: {} files, {created} created and read back equal ({invalid_ids} with an invalid id, created by POST), {rejected} rejected as invalid in the spec, {audit_refused} AuditEvents refused, {} failed",
        files.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(rejected, INVALID_IN_SPEC.len() - invalid_ids);
    assert!(audit_refused > 0, "the R4 examples include AuditEvents");
    assert_eq!(created + rejected + audit_refused, files.len());
    app.stop().await;
}

/// Every Synthea bundle in `../shared/data/synthea` as a transaction.
async fn every_synthea_bundle_posts_as_a_transaction(app: App) {
    let mut files: Vec<_> = std::fs::read_dir(shared_data().join("synthea"))
        .unwrap_or_else(|e| panic!("the Synthea data: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 12);
    let (mut resources, mut read_back) = (0usize, 0usize);
    for path in &files {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{e}")))
            .read_to_end(&mut text)
            .unwrap_or_else(|e| panic!("{e}"));
        let sent: Value = serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{e}"));
        let n = sent["entry"].as_array().map_or(0, Vec::len);
        let res = app
            .client
            .post(app.url(""))
            .header("content-type", "application/fhir+json")
            .body(text)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 200, "{}", path.display());
        let out = json(res).await;
        let entries = out["entry"].as_array().cloned().unwrap_or_default();
        assert_eq!(entries.len(), n);
        resources += n;
        // Every urn:uuid fullUrl now has a server id (http.html#trules).
        let ids: std::collections::HashMap<String, String> = sent["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(&entries)
            .map(|(s, g)| {
                let loc = g["response"]["location"].as_str().unwrap_or_default();
                (
                    s["fullUrl"].as_str().unwrap_or_default().to_owned(),
                    loc.split("/_history").next().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        for (sent_entry, got) in sent["entry"].as_array().into_iter().flatten().zip(&entries) {
            assert_eq!(got["response"]["status"], "201 Created");
            let current = &ids[sent_entry["fullUrl"].as_str().unwrap_or_default()];
            let back = json(app.get(current).await).await;
            // The content is exactly what was sent, but for the id and the
            // references to other entries, now rewritten to server ids.
            let mut expected = gp_fhir::Resource::from_value(sent_entry["resource"].clone())
                .unwrap_or_else(|e| panic!("{e}"));
            expected.rewrite_references(&|r| ids.get(r).cloned());
            let mut expected = expected.into_value();
            expected["id"] = back["id"].clone();
            assert!(
                equal_ignoring_meta(&expected, &back),
                "{current} differs from what was sent"
            );
            assert_eq!(back["meta"]["versionId"], "1");
            read_back += 1;
        }
    }
    eprintln!(
        "Synthea: {} bundles, {resources} resources posted, {read_back} read back",
        files.len()
    );
    assert_eq!(resources, 26_963);
    assert_eq!(read_back, resources);
    app.stop().await;
}
