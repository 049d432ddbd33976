//! A small demo record so that `opengp demo` shows something at once. The
//! full synthetic practice (thousands of patients, years of history) is the
//! work of the terminology-and-demo issue; this seeds a handful of entries
//! through the same store interface everything else uses.

use anyhow::Result;
use gp_fhir::Resource;
use gp_store::{Ctx, Store};
use serde_json::{Value, json};

/// Seeds the demo record unless the practice already has data.
pub async fn seed(store: &Store, ctx: &Ctx) -> Result<usize> {
    let existing = store
        .search(
            ctx,
            None,
            gp_fhir::search::SearchQuery {
                count: 1,
                ..Default::default()
            },
        )
        .await?;
    if existing.page.total.unwrap_or(0) > 0 {
        return Ok(0);
    }
    let bundle = demo_bundle(ctx);
    let (_, results) = store.bundle(ctx, &bundle, "").await?;
    Ok(results.len())
}

fn demo_bundle(ctx: &Ctx) -> Value {
    let ods = ctx.practice.ods.as_str();
    let entries = [
        (
            "urn:uuid:org",
            json!({
                "resourceType": "Organization",
                "identifier": [{ "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods }],
                "name": ctx.practice.name,
                "type": [{ "coding": [{ "system": "https://fhir.nhs.uk/CodeSystem/organisation-role", "code": "76", "display": "GP PRACTICE" }] }]
            }),
        ),
        (
            "urn:uuid:gp",
            json!({
                "resourceType": "Practitioner",
                "identifier": [{ "system": "https://fhir.hl7.org.uk/Id/gmc-number", "value": "C1234567" }],
                "name": [{ "family": "Patel", "given": ["Anita"], "prefix": ["Dr"] }]
            }),
        ),
        (
            "urn:uuid:p1",
            json!({
                "resourceType": "Patient",
                "identifier": [{ "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009" }],
                "name": [{ "use": "official", "family": "Jones", "given": ["Megan"] }],
                "gender": "female",
                "birthDate": "1968-04-12",
                "address": [{ "line": ["12 Station Road"], "city": "Leeds", "postalCode": "LS1 4AP" }],
                "generalPractitioner": [{ "reference": "urn:uuid:gp" }],
                "managingOrganization": { "reference": "urn:uuid:org" }
            }),
        ),
        (
            "urn:uuid:p2",
            json!({
                "resourceType": "Patient",
                "identifier": [{ "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000017" }],
                "name": [{ "use": "official", "family": "Okafor", "given": ["Daniel"] }],
                "gender": "male",
                "birthDate": "1952-11-03",
                "generalPractitioner": [{ "reference": "urn:uuid:gp" }],
                "managingOrganization": { "reference": "urn:uuid:org" }
            }),
        ),
        (
            "urn:uuid:c1",
            json!({
                "resourceType": "Condition",
                "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
                "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder" }] },
                "subject": { "reference": "urn:uuid:p2" },
                "onsetDateTime": "2015-06-01"
            }),
        ),
        (
            "urn:uuid:o1",
            json!({
                "resourceType": "Observation",
                "status": "final",
                "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "75367002", "display": "Blood pressure" }] },
                "subject": { "reference": "urn:uuid:p2" },
                "effectiveDateTime": "2026-10-14T09:20:00Z",
                "component": [
                    { "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "72313002", "display": "Systolic arterial pressure" }] },
                      "valueQuantity": { "value": 142, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } },
                    { "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "1091811000000102", "display": "Diastolic arterial pressure" }] },
                      "valueQuantity": { "value": 88, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } }
                ]
            }),
        ),
    ];
    let entry: Vec<Value> = entries
        .into_iter()
        .filter(|(_, r)| Resource::from_value(r.clone()).is_ok())
        .map(|(full, r)| {
            let ty = r["resourceType"].as_str().unwrap_or_default().to_owned();
            json!({ "fullUrl": full, "resource": r, "request": { "method": "POST", "url": ty } })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entry })
}
