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
            code: Some("mm[Hg]".into()),
            canonical: gp_fhir::ucum::canonical(142.0, "mm[Hg]"),
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

/// What extraction gives a corpus touching every kind of index value (and
/// the List `item:deleted` and full-text entries), fingerprinted: when it
/// changes, stored index rows are stale, so [`super::EXTRACTION_VERSION`]
/// must be bumped (and the fingerprint recorded beside it), or the stores
/// would never reindex.
#[test]
fn extraction_version_follows_what_extraction_gives() {
    let corpus = [
        json!({"resourceType": "Patient", "id": "p1",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Zoë Ó'Brien</div>"},
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
            "name": [{"family": "Ó'Brien", "given": ["Zoë"]}], "gender": "female", "birthDate": "1970-03",
            "address": [{"postalCode": "LS1 4AP"}], "generalPractitioner": [{"reference": "Practitioner/gp1"}]}),
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "75367002", "display": "Blood pressure"}]},
            "subject": {"reference": "Patient/p1"}, "effectivePeriod": {"start": "2024-05-01T09:30:00Z", "end": "2024-05-01"},
            "valueQuantity": {"value": 5.4, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
            "component": [{"code": {"coding": [{"system": "http://snomed.info/sct", "code": "72313002"}]},
                "valueQuantity": {"value": 142, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "386725007"}]},
                "valueQuantity": {"value": 98.6, "system": "http://unitsofmeasure.org", "code": "[degF]"}}]}),
        json!({"resourceType": "List", "status": "current", "mode": "changes",
            "subject": {"reference": "Patient/p1"},
            "entry": [{"item": {"reference": "Condition/c1"}}, {"deleted": true, "item": {"reference": "Condition/c2"}}]}),
        json!({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/p1"},
            "prediction": [{"probabilityDecimal": 0.02}]}),
        json!({"resourceType": "ValueSet", "status": "active", "url": "https://example.org/vs", "version": "1"}),
    ];
    // FNV-1a, written out so that the fingerprint never depends on a
    // library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for v in corpus {
        for b in format!("{:?}", entries(v)).bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    assert_eq!(
        (super::EXTRACTION_VERSION, format!("{hash:016x}")),
        (3, "0652b495cdfcbba7".to_owned()),
        "what extraction gives has changed: bump EXTRACTION_VERSION and record the new fingerprint with it"
    );
}
