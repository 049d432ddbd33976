//! The expressions search indexing evaluates (R4 SearchParameter
//! expressions), the FHIR types of their results, and robustness on bad
//! input. The specification's own cases are in `tests/suite.rs`.

use serde_json::{Value, json};

use crate::{EvalContext, Item, TypeRef, evaluate, evaluate_at, parse};

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "valueQuantity": {"value": 185, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]"},
        "component": [{"code": {"text": "a"}}, {"code": {"text": "b"}}],
        "meta": {"lastUpdated": "2024-01-02T03:04:05Z"}
    })
}

/// Evaluates `expr` on `resource` and gives each result's type and JSON.
fn check(resource: &Value, expr: &str, expected: &[(&str, Value)]) {
    let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let items = evaluate(&parsed, resource, &EvalContext::default())
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    let got: Vec<(String, Value)> = items
        .iter()
        .map(|i| match i {
            Item::Node(n) => (i.type_name(), n.json().clone()),
            other => (other.type_name(), Value::Null),
        })
        .collect();
    let expected: Vec<(String, Value)> = expected
        .iter()
        .map(|(t, v)| ((*t).to_owned(), v.clone()))
        .collect();
    assert_eq!(got, expected, "{expr}");
}

#[test]
fn search_parameter_expressions_give_typed_nodes() {
    let obs = observation();
    let qty = obs["valueQuantity"].clone();
    check(
        &obs,
        "Observation.value as Quantity",
        &[("Quantity", qty.clone())],
    );
    check(
        &obs,
        "(Observation.value as Quantity) | (Observation.value as SampledData)",
        &[("Quantity", qty)],
    );
    check(
        &obs,
        "Observation.component.code",
        &[
            ("CodeableConcept", json!({"text": "a"})),
            ("CodeableConcept", json!({"text": "b"})),
        ],
    );
    check(
        &obs,
        "Resource.meta.lastUpdated",
        &[("instant", json!("2024-01-02T03:04:05Z"))],
    );
    let patient = json!({
        "resourceType": "Patient",
        "name": [{"family": "Smith"}],
        "telecom": [{"system": "email", "value": "a@b"}, {"system": "phone", "value": "1"}],
        "deceasedDateTime": "2020-01-01"
    });
    check(
        &patient,
        "Patient.name",
        &[("HumanName", json!({"family": "Smith"}))],
    );
    check(
        &patient,
        "Patient.telecom.where(system='phone')",
        &[("ContactPoint", json!({"system": "phone", "value": "1"}))],
    );
    check(
        &patient,
        "Patient.deceased.as(DateTime)",
        &[("dateTime", json!("2020-01-01"))],
    );
    check(
        &patient,
        "Patient.deceased.ofType(dateTime)",
        &[("dateTime", json!("2020-01-01"))],
    );
}

#[test]
fn bundle_entries_take_their_resource_type() {
    let bundle = json!({
        "resourceType": "Bundle",
        "entry": [{"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p"}}]
    });
    check(
        &bundle,
        "Bundle.entry[0].resource",
        &[("Patient", bundle["entry"][0]["resource"].clone())],
    );
    let qr = json!({
        "resourceType": "QuestionnaireResponse",
        "item": [{"linkId": "1", "answer": [{"valueReference": {"reference": "Patient/p"}}, {"valueString": "x"}]}]
    });
    check(
        &qr,
        "QuestionnaireResponse.item.answer.value.ofType(Reference)",
        &[("Reference", json!({"reference": "Patient/p"}))],
    );
}

#[test]
fn resolve_finds_contained_resources() {
    let obs = json!({
        "resourceType": "Observation",
        "contained": [{"resourceType": "Patient", "id": "p1"}],
        "subject": {"reference": "#p1"}
    });
    check(
        &obs,
        "Observation.subject.resolve()",
        &[("Patient", obs["contained"][0].clone())],
    );
}

#[test]
fn bad_input_is_an_error_never_a_panic() {
    for bad in [
        "",
        "(",
        ")",
        "a.",
        "1 +",
        "@",
        "@T25",
        "@2020-13",
        "'abc",
        "`x",
        "%",
        "a[",
        "f(,)",
        "1.2.3.4",
        "$nope",
        "{",
        "a is",
        "a as 1",
        "/* x",
        "!",
        "1 'a' 'b'",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} should not parse");
    }
    let obs = observation();
    for expr in [
        "1 / 0",
        "9223372036854775807 + 1",
        "(-9223372036854775807 - 1) div -1",
        "Observation.value.power(1000)",
        "'a'.substring(999999999999)",
        "1.lowBoundary(99)",
        "'x'.matches('(')",
        "Observation.value.unit.toQuantity() * 1 'zz'",
        "@2020 + 1000000000000 years",
        "(1|2).aggregate($total + $this, 0)",
        "79228162514264337593543950335.0 * 10",
        "'x'.decode('base64')",
        "Observation.code.children().descendants().count()",
    ] {
        let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let _ = evaluate(&parsed, &obs, &EvalContext::default());
    }
}

/// Element-level invariants run with the element as focus
/// (http://hl7.org/fhir/R4/conformance-rules.html#constraints).
#[test]
fn evaluate_at_an_element() {
    let patient = json!({
        "resourceType": "Patient",
        "contact": [{"name": {"family": "Doe"}, "organization": {"display": "X"}}],
        "name": [{"given": ["A"]}]
    });
    let contact = &patient["contact"][0];
    let ty = TypeRef::of_element("Patient.contact");
    assert_eq!(ty.map(|t| t.code), Some("BackboneElement"));
    let pat1 =
        parse("name.exists() or telecom.exists() or address.exists() or organization.exists()")
            .unwrap_or_else(|e| panic!("{e}"));
    let out = evaluate_at(&pat1, &patient, contact, ty, &EvalContext::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(out.as_slice(), [Item::Boolean(true)]));
    let family = parse("name.family").unwrap_or_else(|e| panic!("{e}"));
    let out = evaluate_at(&family, &patient, contact, ty, &EvalContext::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out[0].type_name(), "string");
    let name_ty = TypeRef::of_element("Patient.name");
    assert_eq!(name_ty.map(|t| t.code), Some("HumanName"));
    let given =
        parse("given.first() = 'A' and %resource.name.exists()").unwrap_or_else(|e| panic!("{e}"));
    let out = evaluate_at(
        &given,
        &patient,
        &patient["name"][0],
        name_ty,
        &EvalContext::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(out.as_slice(), [Item::Boolean(true)]));
}

/// Found by the differential test against fhirpath.js: numbers beyond a
/// decimal's range (Observation-decimal.json) were all equal to each other,
/// so a union dropped one of two different quantities.
#[test]
fn numbers_beyond_the_decimal_range_are_compared_by_value() {
    let obs = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "t"},
        "component": [
            {"code": {"text": "c"}, "valueQuantity": {"value": 1.0e-245, "unit": "g"}},
            {"code": {"text": "c"}, "valueQuantity": {"value": -1.0e245, "unit": "g"}},
            {"code": {"text": "c"}, "valueQuantity": {"value": 1.0e-245, "unit": "g"}}
        ]
    });
    let count = |expr: &str| {
        let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        evaluate(&parsed, &obs, &EvalContext::default())
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .len()
    };
    assert_eq!(count("Observation.component | Observation.component"), 2);
    assert_eq!(count("Observation.component.distinct()"), 2);
}
