//! Parsing tests, citing search.html.

use super::*;
use crate::{DateRange, Instant};

fn t(name: &str) -> ResourceType {
    ResourceType::parse(name).unwrap_or_else(|| panic!("{name}"))
}

fn p(ty: &str, q: &str) -> Result<SearchQuery, OperationOutcome> {
    parse(Some(t(ty)), &parse_query_string(q), false)
}

fn one(ty: &str, q: &str) -> Criterion {
    let query = p(ty, q).unwrap_or_else(|e| panic!("{q}: {e:?}"));
    assert!(query.ignored.is_empty(), "{q}: ignored {:?}", query.ignored);
    query
        .criteria
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{q}: no criterion"))
}

#[test]
fn prefixes_on_last_updated() {
    // search.html#prefix, on a point in time.
    let t0 = Instant::from_millis(
        DateRange::parse("2020-06-15T12:00:00Z")
            .map(|r| r.low.millis())
            .unwrap_or(0),
    );
    let cases = [
        ("2020-06", true),
        ("eq2020-06-15", true),
        ("ne2020-06-15", false),
        ("gt2020-06-14", true),
        ("gt2020-06", false),
        ("lt2020-07", true),
        ("le2020-06", true),
        ("ge2020-06-16", false),
        ("sa2020-05", true),
        ("eb2020", false),
    ];
    for (value, want) in cases {
        let Criterion::LastUpdated(c) = one("Patient", &format!("_lastUpdated={value}")) else {
            panic!("{value}")
        };
        assert_eq!(c[0].matches(t0), want, "{value}");
    }
}

#[test]
fn unknown_parameters_are_ignored_or_refused() {
    // search.html#errors
    let q = p("Patient", "_id=a,b&nonsense=smith&_count=5000").unwrap_or_default();
    assert_eq!(q.ignored, vec!["nonsense".to_owned()]);
    assert_eq!(q.count, MAX_COUNT);
    assert!(parse(Some(t("Patient")), &[("nonsense".into(), "x".into())], true).is_err());
    assert!(p("Patient", "_id=a%20b").is_err());
    assert!(p("Patient", "_count=x").is_err());
    assert!(p("Patient", "_lastUpdated=2020-13").is_err());
    assert!(
        p("Patient", "birthdate=yesterday").is_err(),
        "a bad value is an error even when lenient"
    );
    // Without a type, only common parameters apply.
    assert!(parse(None, &parse_query_string("name=x"), true).is_err());
    assert!(
        parse(
            None,
            &parse_query_string("_type=Patient,Observation&_id=1"),
            true
        )
        .is_ok()
    );
}

#[test]
fn parameters_by_type_with_modifiers() {
    // search.html#ptypes and search.html#modifiers
    assert!(
        matches!(one("Patient", "family=Sm%C3%AFth"), Criterion::Param { kind: ParamKind::String, values, .. } if values == vec![ParamValue::String("smith".into())])
    );
    assert!(
        matches!(one("Patient", "family:exact=Smïth"), Criterion::Param { modifier: Modifier::Exact, values, .. } if values == vec![ParamValue::String("Smïth".into())])
    );
    assert!(matches!(
        one("Patient", "family:contains=mit"),
        Criterion::Param {
            modifier: Modifier::Contains,
            ..
        }
    ));
    assert!(matches!(
        one("Patient", "gender:not=male"),
        Criterion::Param {
            modifier: Modifier::Not,
            kind: ParamKind::Token,
            ..
        }
    ));
    assert!(matches!(
        one("Observation", "code:text=blood"),
        Criterion::Param {
            modifier: Modifier::Text,
            ..
        }
    ));
    assert!(matches!(
        one(
            "Patient",
            "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|123"
        ),
        Criterion::Param {
            modifier: Modifier::OfType,
            ..
        }
    ));
    assert!(matches!(
        one(
            "Observation",
            "value-quantity=gt5.4|http://unitsofmeasure.org|mg"
        ),
        Criterion::Param {
            kind: ParamKind::Quantity,
            ..
        }
    ));
    assert!(matches!(
        one("Observation", "subject:Patient=123"),
        Criterion::Param {
            modifier: Modifier::Type(_),
            ..
        }
    ));
    assert!(matches!(
        one(
            "Observation",
            "subject:identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"
        ),
        Criterion::Param {
            modifier: Modifier::Identifier,
            ..
        }
    ));
    assert!(matches!(
        one("Patient", "birthdate:missing=true"),
        Criterion::Missing { missing: true, .. }
    ));
    assert!(matches!(
        one("RiskAssessment", "probability=gt0.8"),
        Criterion::Param {
            kind: ParamKind::Number,
            ..
        }
    ));
    assert!(matches!(
        one("ValueSet", "url:below=http://acme.org/fhir/"),
        Criterion::Param {
            kind: ParamKind::Uri,
            modifier: Modifier::Below,
            ..
        }
    ));
    let Criterion::Param { values, .. } = one(
        "Observation",
        "code-value-quantity=http://loinc.org|8480-6$gt150",
    ) else {
        panic!("composite")
    };
    assert!(matches!(&values[0], ParamValue::Composite(parts) if parts.len() == 2));
    // Modifiers a type does not have, and terminology modifiers, are unsupported.
    assert!(
        parse(
            Some(t("Patient")),
            &parse_query_string("birthdate:exact=2000"),
            true
        )
        .is_err()
    );
    // search.html#modifiers: subsumption and value sets on tokens are for
    // SNOMED CT (the engine expands them into codes); elsewhere they are
    // unsupported.
    for ok in [
        "code:below=http://snomed.info/sct|404684003",
        "code:above=http://snomed.info/sct|44054006",
        "code:in=http://snomed.info/sct?fhir_vs=isa/73211009",
        "code:not-in=http://snomed.info/sct?fhir_vs=ecl/%3C%3C73211009",
    ] {
        assert!(
            parse(Some(t("Condition")), &parse_query_string(ok), true).is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "code:below=404684003",
        "code:below=http://loinc.org|1234-5",
        "code:below=http://snomed.info/sct|",
        "code:in=http://example.org/ValueSet/x",
        "clinical-status:in=http://snomed.info/sct",
    ] {
        assert!(
            parse(Some(t("Condition")), &parse_query_string(bad), true).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn chains_and_reverse_chains() {
    // search.html#chaining and search.html#has
    let Criterion::Chain {
        code,
        targets,
        inner,
    } = one("Observation", "subject:Patient.name=peter")
    else {
        panic!("chain")
    };
    assert_eq!((code, targets), ("subject", vec![t("Patient")]));
    assert!(matches!(*inner, Criterion::Param { code: "name", .. }));
    let Criterion::Chain { targets, inner, .. } =
        one("Observation", "subject.organization.name=acme")
    else {
        panic!("chain")
    };
    assert!(targets.contains(&t("Patient")) && !targets.contains(&t("Group")));
    assert!(matches!(*inner, Criterion::Chain { .. }));
    let Criterion::Has {
        source,
        code,
        inner,
    } = one("Patient", "_has:Observation:patient:code=1234-5")
    else {
        panic!("has")
    };
    assert_eq!((source, code), (t("Observation"), "patient"));
    assert!(matches!(*inner, Criterion::Param { code: "code", .. }));
    assert!(p("Patient", "_has:Observation:patient").is_err());
    assert!(
        p("Patient", "gender.name=x").is_err(),
        "only references chain"
    );
}

#[test]
fn includes_and_sorting() {
    // search.html#include and search.html#sort
    let q = p(
        "Observation",
        "_include=Observation:subject&_revinclude:iterate=Provenance:target&_sort=-date,_id",
    )
    .unwrap_or_default();
    assert_eq!(
        q.include,
        vec![Include {
            source: t("Observation"),
            code: "subject",
            target: None,
            iterate: false
        }]
    );
    assert_eq!(
        q.revinclude,
        vec![Include {
            source: t("Provenance"),
            code: "target",
            target: None,
            iterate: true
        }]
    );
    assert_eq!(
        q.sort[0],
        SortKey {
            field: SortField::Param {
                code: "date",
                kind: ParamKind::Date
            },
            desc: true
        }
    );
    assert_eq!(
        q.sort[1],
        SortKey {
            field: SortField::Id,
            desc: false
        }
    );
    assert!(p("Observation", "_include=Observation").is_err());
}
