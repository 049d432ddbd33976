//! The official FHIRPath R4 test suite (fhir-test-cases
//! `r4/fhirpath/tests-fhir-r4.xml`, see `shared/data/fhirpath/README.md`):
//! every case runs; the ones left out are listed in `SKIPPED` with why.

use std::collections::HashMap;
use std::path::PathBuf;

use gp_fhirpath::{EvalContext, Item, TemporalKind, evaluate, parse};
use serde_json::Value;

/// Cases not expected to pass, each with the reason.
const SKIPPED: &[(&str, &str)] = &[];

fn data_dir() -> PathBuf {
    let shared = std::env::var_os("OPENGP_SHARED_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    shared.join("fhirpath")
}

struct Case {
    name: String,
    expression: String,
    input: Option<String>,
    invalid: bool,
    predicate: bool,
    strict: bool,
    ordered: bool,
    outputs: Vec<(Option<String>, String)>,
}

fn cases(xml: &str) -> Vec<Case> {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("suite XML: {e}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("test"))
        .map(|t| {
            let expr = t
                .children()
                .find(|c| c.has_tag_name("expression"))
                .unwrap_or_else(|| panic!("no expression in a test"));
            Case {
                name: t.attribute("name").unwrap_or_default().to_owned(),
                expression: expr.text().unwrap_or_default().to_owned(),
                input: t.attribute("inputfile").map(str::to_owned),
                invalid: expr.attribute("invalid").is_some(),
                predicate: t.attribute("predicate") == Some("true"),
                strict: t.attribute("mode") == Some("strict")
                    || expr.attribute("mode") == Some("strict"),
                ordered: t.attribute("ordered") != Some("false"),
                outputs: t
                    .children()
                    .filter(|c| c.has_tag_name("output"))
                    .map(|o| {
                        (
                            o.attribute("type").map(str::to_owned),
                            o.text().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The suite's type name and text for one result item.
fn describe(item: &Item<'_>) -> (String, String) {
    let system = item.to_system();
    let ty = match item {
        Item::Node(n) => n.fhir_type().unwrap_or("").to_owned(),
        other => match other.type_name().as_str() {
            "Quantity" => "Quantity".to_owned(),
            "DateTime" => "dateTime".to_owned(),
            name => name.to_lowercase(),
        },
    };
    let text = match system {
        Some(Item::Temporal(t)) if t.kind == TemporalKind::Time => format!("@T{t}"),
        Some(Item::Temporal(t)) => format!("@{t}"),
        Some(Item::String(s)) => s,
        Some(Item::Boolean(b)) => b.to_string(),
        Some(Item::Integer(i)) => i.to_string(),
        Some(Item::Decimal(d)) => d.to_string(),
        Some(Item::Quantity(q)) => q.to_string(),
        _ => String::new(),
    };
    (ty, text)
}

fn matches(expected: &(Option<String>, String), item: &Item<'_>) -> bool {
    let (ty, text) = describe(item);
    match &expected.0 {
        None => text == expected.1,
        Some(t) if t == "decimal" => {
            let (a, b) = (text.parse::<f64>(), expected.1.parse::<f64>());
            matches!((a, b), (Ok(a), Ok(b)) if a == b)
        }
        Some(t) => {
            let same_type = *t == ty || (t == "string" && ty == "string");
            same_type && text == expected.1
        }
    }
}

fn run(case: &Case, inputs: &mut HashMap<String, Value>) -> Result<(), String> {
    let resource = match &case.input {
        None => Value::Null,
        Some(file) => {
            let json = file.replace(".xml", ".json");
            inputs
                .entry(json.clone())
                .or_insert_with(|| {
                    let text = std::fs::read_to_string(data_dir().join(&json))
                        .unwrap_or_else(|e| panic!("{json}: {e}"));
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{json}: {e}"))
                })
                .clone()
        }
    };
    let root_type = resource["resourceType"].as_str().unwrap_or("Resource");
    let result = parse(&case.expression)
        .map_err(|e| e.to_string())
        .and_then(|expr| {
            if case.strict {
                expr.check(root_type).map_err(|e| e.to_string())?;
            }
            evaluate(&expr, &resource, &EvalContext::default()).map_err(|e| e.to_string())
        });
    let items = match (result, case.invalid) {
        (Err(_), true) => return Ok(()),
        (Err(e), false) => return Err(e),
        (Ok(items), true) => return Err(format!("expected an error, got {} items", items.len())),
        (Ok(items), false) => items,
    };
    let items = if case.predicate {
        vec![Item::Boolean(!items.is_empty())]
    } else {
        items
    };
    let got: Vec<_> = items.iter().map(describe).collect();
    let ok = items.len() == case.outputs.len()
        && if case.ordered {
            items.iter().zip(&case.outputs).all(|(i, o)| matches(o, i))
        } else {
            case.outputs
                .iter()
                .all(|o| items.iter().any(|i| matches(o, i)))
        };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {:?}, got {got:?}", case.outputs))
    }
}

#[test]
fn official_r4_suite() {
    let path = data_dir().join("tests-fhir-r4.xml");
    let xml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases = cases(&xml);
    let mut inputs = HashMap::new();
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(case, &mut inputs)))
                .unwrap_or_else(|_| Err("panicked".to_owned()));
        match outcome {
            Ok(()) => passed += 1,
            Err(why) if !SKIPPED.iter().any(|(n, _)| *n == case.name) => {
                failures.push(format!("{} `{}`: {why}", case.name, case.expression));
            }
            Err(_) => {}
        }
    }
    eprintln!("FHIRPath suite: {passed}/{}", cases.len());
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} cases failed", failures.len());
}
