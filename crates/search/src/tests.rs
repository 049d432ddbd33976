//! Extraction tests, citing search.html#ptypes.

use gp_fhir::search::index::IndexValue;
use gp_fhir::{Resource, ResourceType};
use serde_json::json;

use super::{describe, extract};

fn entries(v: serde_json::Value) -> Vec<(String, IndexValue)> {
    let r = Resource::from_value(v).unwrap_or_else(|e| panic!("{e}"));
    describe(&extract(&r))
}

fn has(entries: &[(String, IndexValue)], code: &str, want: &IndexValue) -> bool {
    entries.iter().any(|(c, v)| c == code && v == want)
}

#[test]
fn patient_parameters() {
    let e = entries(json!({
        "resourceType": "Patient",
        "identifier": [{ "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009",
                         "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NH" }] } }],
        "name": [{ "family": "Ó'Brien", "given": ["Zoë", "Ann"] }],
        "gender": "female",
        "birthDate": "1970-03",
        "address": [{ "postalCode": "LS1 4AP", "city": "Leeds" }],
        "generalPractitioner": [{ "reference": "Practitioner/gp1" }],
        "telecom": [{ "system": "phone", "value": "0113 496 0000" }]
    }));
    let tok = |s: Option<&str>, c: &str| IndexValue::Token {
        system: s.map(str::to_owned),
        code: Some(c.to_owned()),
        text: None,
    };
    assert!(
        has(
            &e,
            "identifier",
            &tok(Some("https://fhir.nhs.uk/Id/nhs-number"), "9000000009")
        ),
        "{e:#?}"
    );
    assert!(has(
        &e,
        "identifier:type",
        &tok(Some("http://terminology.hl7.org/CodeSystem/v2-0203"), "NH")
    ));
    assert!(has(
        &e,
        "family",
        &IndexValue::String {
            norm: "o'brien".into(),
            exact: "Ó'Brien".into()
        }
    ));
    assert!(has(
        &e,
        "given",
        &IndexValue::String {
            norm: "zoe".into(),
            exact: "Zoë".into()
        }
    ));
    assert!(has(
        &e,
        "name",
        &IndexValue::String {
            norm: "ann".into(),
            exact: "Ann".into()
        }
    ));
    assert!(has(&e, "gender", &tok(None, "female")));
    assert!(
        e.iter()
            .any(|(c, v)| c == "birthdate" && matches!(v, IndexValue::Date { .. }))
    );
    assert!(has(
        &e,
        "address-postalcode",
        &IndexValue::String {
            norm: "ls1 4ap".into(),
            exact: "LS1 4AP".into()
        }
    ));
    assert!(has(
        &e,
        "general-practitioner",
        &IndexValue::Reference {
            target_type: Some("Practitioner".into()),
            target_id: Some("gp1".into()),
            url: None
        }
    ));
    assert!(has(&e, "phone", &tok(None, "0113 496 0000")), "{e:#?}");
}

#[test]
fn observation_parameters_and_composites() {
    let e = entries(json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "75367002", "display": "Blood pressure" }] },
        "subject": { "reference": "Patient/p1" },
        "effectiveDateTime": "2024-05-01T09:30:00Z",
        "component": [
            { "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "72313002" }] },
              "valueQuantity": { "value": 142, "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } }
        ]
    }));
    assert!(
        has(
            &e,
            "patient",
            &IndexValue::Reference {
                target_type: Some("Patient".into()),
                target_id: Some("p1".into()),
                url: None
            }
        ),
        "{e:#?}"
    );
    assert!(has(
        &e,
        "code",
        &IndexValue::Token {
            system: Some("http://snomed.info/sct".into()),
            code: Some("75367002".into()),
            text: Some("blood pressure".into())
        }
    ));
    assert!(has(
        &e,
        "component-value-quantity",
        &IndexValue::Quantity {
            value: 142.0,
            system: Some("http://unitsofmeasure.org".into()),
            code: Some("mm[Hg]".into())
        }
    ));
    assert!(
        e.iter()
            .any(|(c, _)| c == "component-code-value-quantity$0"),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|(c, _)| c == "component-code-value-quantity$1")
    );
    assert!(
        e.iter()
            .any(|(c, v)| c == "date" && matches!(v, IndexValue::Date { .. }))
    );
}

#[test]
fn every_type_extracts_without_failing() {
    // Extraction never fails; an empty resource gives nothing but the
    // answers of boolean expressions (Patient's `deceased`, say).
    for ty in ResourceType::all() {
        let r = Resource::from_value(json!({ "resourceType": ty.as_str() }))
            .unwrap_or_else(|e| panic!("{e}"));
        for e in extract(&r) {
            let boolean = matches!(&e.value, IndexValue::Token { code: Some(c), .. } if c == "true" || c == "false");
            assert!(boolean, "{ty}: {e:?}");
        }
    }
}
