//! Validation on every write (http://hl7.org/fhir/R4/validation.html) and
//! `$validate` (resource-operation-validate.html) through the API, on both
//! storage backends.

use serde_json::json;

use crate::support::{App, assert_outcome, json};

crate::on_both_backends!(
    invalid_create_is_422_with_location,
    invalid_transaction_entry_is_rejected,
    validate_on_type_and_instance,
);

/// A create that breaks the base rules answers 422, one issue per problem,
/// each with its FHIRPath location; nothing is written.
async fn invalid_create_is_422_with_location(app: App) {
    let bad = json!({
        "resourceType": "Patient",
        "birthDate": "1970-13-01",
        "gender": "femme",
        "name": [{ "given": ["Ann"], "nickname": "A" }]
    });
    let res = app.post("Patient", &bad).await;
    let oo = assert_outcome(res, 422, "value").await;
    let locations: Vec<&str> = oo["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["expression"][0].as_str())
        .collect();
    for want in [
        "Patient.birthDate",
        "Patient.gender",
        "Patient.name[0].nickname",
    ] {
        assert!(locations.contains(&want), "{want} in {locations:?}");
    }
    let listed = json(app.get("Patient").await).await;
    assert_eq!(listed["total"], 0, "nothing written: {listed}");
    // Warnings (an unknown profile) do not block.
    let ok = json!({ "resourceType": "Patient", "meta": { "profile": ["http://example.org/p"] } });
    assert_eq!(app.post("Patient", &ok).await.status(), 201);
}

/// A transaction with one invalid entry is rejected as a whole.
async fn invalid_transaction_entry_is_rejected(app: App) {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            { "fullUrl": "urn:uuid:6b9d2c6e-0d9e-4f55-9b38-3f1f4a7b1c01",
              "resource": { "resourceType": "Patient", "active": true },
              "request": { "method": "POST", "url": "Patient" } },
            { "resource": { "resourceType": "Observation", "status": "final" },
              "request": { "method": "POST", "url": "Observation" } }
        ]
    });
    let res = app.post("", &bundle).await;
    let oo = assert_outcome(res, 422, "required").await;
    assert!(oo.to_string().contains("Observation.code"), "{oo}");
    let listed = json(app.get("Patient").await).await;
    assert_eq!(listed["total"], 0, "{listed}");
}

/// `$validate` answers 200 with the problems, on the type (a resource or a
/// Parameters body) and on an instance (a body, or the stored version).
async fn validate_on_type_and_instance(app: App) {
    let bad = json!({ "resourceType": "Observation", "status": "final" });
    let res = app.post("Observation/$validate", &bad).await;
    assert_eq!(res.status(), 200);
    let oo = json(res).await;
    assert_eq!(oo["issue"][0]["severity"], "error", "{oo}");
    assert_eq!(oo["issue"][0]["expression"][0], "Observation.code", "{oo}");

    let good = json!({ "resourceType": "Patient", "gender": "female" });
    let params = json!({ "resourceType": "Parameters", "parameter": [{ "name": "resource", "resource": good }] });
    let oo = json(app.post("Patient/$validate", &params).await).await;
    assert_eq!(oo["issue"][0]["severity"], "information", "{oo}");

    let id = app.create(&good).await;
    let res = app.get(&format!("Patient/{id}/$validate")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["issue"][0]["severity"], "information");
    let mut changed = good.clone();
    changed["id"] = json!(id);
    changed["gender"] = json!("F");
    let oo = json(app.post(&format!("Patient/{id}/$validate"), &changed).await).await;
    assert_eq!(oo["issue"][0]["code"], "code-invalid", "{oo}");
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.gender", "{oo}");

    let res = app
        .post(
            "Patient/$validate",
            &json!({ "resourceType": "Parameters" }),
        )
        .await;
    assert_outcome(res, 400, "invalid").await;
}
