//! A corpus of deliberately broken resources, each rejected with the right
//! location and issue code (http://hl7.org/fhir/R4/validation.html: the
//! base rules of json.html, datatypes.html, elementdefinition.html and
//! conformance-rules.html), and the UK Core examples accepted.

use gp_fhir::Severity;
use serde_json::{Value, json};

fn pat(extra: Value) -> Value {
    let mut p = json!({ "resourceType": "Patient", "id": "p1" });
    if let (Value::Object(p), Value::Object(e)) = (&mut p, extra) {
        p.extend(e);
    }
    p
}

fn obs(extra: Value) -> Value {
    let mut o =
        json!({ "resourceType": "Observation", "status": "final", "code": { "text": "x" } });
    if let (Value::Object(o), Value::Object(e)) = (&mut o, extra) {
        o.extend(e);
    }
    o
}

/// Asserts that `resource` has an error of `code` at `location`.
#[track_caller]
fn check(name: &str, resource: Value, code: &str, location: &str) {
    let issues = gp_validate::validate(&resource);
    let found = issues.iter().any(|i| {
        i.severity == Severity::Error
            && i.code.code() == code
            && i.expression.iter().any(|e| e == location)
    });
    assert!(
        found,
        "{name}: expected {code} at {location}, got {issues:#?}"
    );
}

#[test]
fn broken_resources_are_rejected_where_they_break() {
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("unknown element", pat(json!({"colour": "red"})), "structure", "Patient.colour"),
        ("unknown nested", pat(json!({"name": [{"nick": "A"}]})), "structure", "Patient.name[0].nick"),
        ("missing required", json!({"resourceType": "Observation", "code": {"text": "x"}}), "required", "Observation.status"),
        ("missing nested required", pat(json!({"link": [{"type": "seealso"}]})), "required", "Patient.link[0].other"),
        ("array for single", pat(json!({"gender": ["male"]})), "structure", "Patient.gender"),
        ("single for array", pat(json!({"name": {"family": "X"}})), "structure", "Patient.name"),
        ("too many", obs(json!({"referenceRange": [{"low": {"value": 1}, "appliesTo": [{"text": "a"}]}], "subject": {"reference": "Patient/1"}, "focus": [{"reference": "Patient/1"}]})).pipe_max(), "structure", "Observation.issued"),
        ("bad id", pat(json!({"id": "a_b"})), "value", "Patient.id"),
        ("bad date", pat(json!({"birthDate": "1970-02-30T00"})), "value", "Patient.birthDate"),
        ("bad dateTime", obs(json!({"effectiveDateTime": "2020-01-01T10:00"})), "value", "Observation.effective.ofType(dateTime)"),
        ("bad instant", obs(json!({"issued": "2020-01-01"})), "value", "Observation.issued"),
        ("bad time", obs(json!({"valueTime": "25:00:00"})), "value", "Observation.value.ofType(time)"),
        ("bad boolean", pat(json!({"active": "true"})), "value", "Patient.active"),
        ("bad integer", obs(json!({"valueInteger": 1.5})), "value", "Observation.value.ofType(integer)"),
        ("bad positiveInt", json!({"resourceType": "ImmunizationRecommendation", "patient": {"reference": "Patient/1"}, "date": "2020", "recommendation": [{"targetDisease": {"text": "x"}, "forecastStatus": {"text": "d"}, "doseNumberPositiveInt": 0}]}), "value", "ImmunizationRecommendation.recommendation[0].doseNumber.ofType(positiveInt)"),
        ("bad decimal", obs(json!({"valueQuantity": {"value": "1.0"}})), "value", "Observation.value.ofType(Quantity).value"),
        ("bad uri", pat(json!({"identifier": [{"system": "http://a b", "value": "1"}]})), "value", "Patient.identifier[0].system"),
        ("bad code", pat(json!({"telecom": [{"system": "phone ", "value": "1"}]})), "value", "Patient.telecom[0].system"),
        ("empty string", pat(json!({"name": [{"family": ""}]})), "value", "Patient.name[0].family"),
        ("bad required binding", pat(json!({"gender": "F"})), "code-invalid", "Patient.gender"),
        ("two choice values", obs(json!({"valueString": "a", "valueBoolean": true})), "structure", "Observation.value"),
        ("unknown choice type", obs(json!({"valueFoo": "a"})), "structure", "Observation.valueFoo"),
        ("pat-1", pat(json!({"contact": [{"gender": "male"}]})), "invariant", "Patient.contact[0]"),
        ("obs-6", obs(json!({"valueString": "a", "dataAbsentReason": {"text": "x"}})), "invariant", "Observation"),
        ("ele-1 empty object", pat(json!({"maritalStatus": {}})), "invariant", "Patient.maritalStatus"),
        ("ext-1", pat(json!({"extension": [{"url": "http://x"}]})), "invariant", "Patient.extension[0]"),
        ("primitive extension mismatch", pat(json!({"_birthDate": [{"id": "a"}], "birthDate": "1970"})), "structure", "Patient.birthDate"),
        ("bad contained", pat(json!({"contained": [{"resourceType": "Organization", "id": "o", "active": "yes"}], "managingOrganization": {"reference": "#o"}})), "value", "Patient.contained[0].active"),
        ("contained not a resource", pat(json!({"contained": [{"id": "o"}]})), "structure", "Patient.contained[0]"),
        ("dom-3 unreferenced contained", pat(json!({"contained": [{"resourceType": "Organization", "id": "o", "name": "x"}]})), "invariant", "Patient"),
        ("bad Bundle entry", json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient", "gender": "x"}}]}), "code-invalid", "Bundle.entry[0].resource.gender"),
        ("ref-1", pat(json!({"managingOrganization": {"reference": "#nothere"}})), "invariant", "Patient.managingOrganization"),
    ];
    for (name, resource, code, location) in cases {
        check(name, resource, code, location);
    }
}

trait PipeMax {
    fn pipe_max(self) -> Value;
}

impl PipeMax for Value {
    /// Gives `issued` (0..1) as an array: too many values.
    fn pipe_max(mut self) -> Value {
        self["issued"] = json!(["2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"]);
        self
    }
}

/// Valid resources draw no error; an unknown profile is a warning.
#[test]
fn valid_resources_pass() {
    let ok = pat(json!({
        "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"] },
        "birthDate": "1970-01-01", "_birthDate": { "extension": [{ "url": "http://x", "valueString": "y" }] },
        "name": [{ "given": ["A", "B"], "_given": [null, { "id": "g" }] }],
        "gender": "female"
    }));
    let issues = gp_validate::validate(&ok);
    assert!(!gp_validate::has_errors(&issues), "{issues:#?}");
    assert!(
        issues.iter().any(
            |i| i.severity == Severity::Warning && i.expression[0] == "Patient.meta.profile[0]"
        )
    );
}

/// The UK Core examples in `../shared/data/ukcore` validate against base R4.
#[test]
fn uk_core_examples_pass() {
    let dir = std::env::var_os("OPENGP_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
        })
        .join("ukcore");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && !p.ends_with("manifest.json"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for f in &files {
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for i in gp_validate::validate(&v)
            .iter()
            .filter(|i| i.severity == Severity::Error)
        {
            failures.push(format!(
                "{}: {} {}",
                f.display(),
                i.expression.join(","),
                i.diagnostics
            ));
        }
    }
    eprintln!(
        "UK Core examples: {} files, {} errors",
        files.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
