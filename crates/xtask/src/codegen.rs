//! Derives the compact definitions `gp-fhir` embeds from the official R4
//! package: the element tree of every resource and complex data type, the
//! search parameters, and the compartment definitions.
//!
//! The output is deliberately small, sorted and stable so that a re-run on the
//! same package produces byte-identical files (reviewable diffs).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

pub fn run(package: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let resources = load_bundle(&package.join("Bundle-resources.json"))?;
    let types = load_bundle(&package.join("Bundle-types.json"))?;
    let search = load_bundle(&package.join("Bundle-searchParams.json"))?;

    let mut structures = BTreeMap::new();
    for sd in resources.iter().chain(types.iter()) {
        if sd["resourceType"] != "StructureDefinition" {
            continue;
        }
        // Constraining profiles (SimpleQuantity, MoneyQuantity...) are not
        // base types; the base tree is what the server needs.
        if sd["derivation"] == "constraint" {
            continue;
        }
        let name = str_of(sd, "type");
        structures.insert(name.to_owned(), structure(sd));
    }
    write(
        &out.join("structures.json"),
        &Value::Object(structures.into_iter().collect()),
    )?;

    let mut params: Vec<Value> = search
        .iter()
        .filter(|r| r["resourceType"] == "SearchParameter")
        .map(search_parameter)
        .collect();
    params.sort_by(|a, b| a["url"].as_str().cmp(&b["url"].as_str()));
    write(&out.join("search-parameters.json"), &Value::Array(params))?;

    let compartments: Vec<Value> = resources
        .iter()
        .filter(|r| r["resourceType"] == "CompartmentDefinition")
        .map(|c| {
            let members: Map<String, Value> = c["resource"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    let params = r.get("param")?.clone();
                    Some((str_of(r, "code").to_owned(), params))
                })
                .collect();
            json!({ "code": c["code"], "resource": members })
        })
        .collect();
    write(&out.join("compartments.json"), &Value::Array(compartments))?;
    eprintln!("wrote definitions to {}", out.display());
    Ok(())
}

fn load_bundle(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bundle: Value = serde_json::from_slice(&text)?;
    Ok(bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect())
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// One structure: its kind, whether abstract, its base, and its elements as
/// `[path, min, max, types, flags]` where `flags` holds `summary`,
/// `modifier` and, for elements defined elsewhere, `ref`.
fn structure(sd: &Value) -> Value {
    let elements: Vec<Value> = sd["snapshot"]["element"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e.get("sliceName").is_none())
        .map(|e| {
            let types: Vec<Value> = e["type"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let code = str_of(t, "code");
                    // FHIRPath system types stand for the primitive `id` etc.
                    let code = code.rsplit('.').next().unwrap_or(code);
                    let targets: Vec<&str> = t["targetProfile"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|p| p.rsplit('/').next().unwrap_or(p))
                        .collect();
                    if targets.is_empty() {
                        json!(code)
                    } else {
                        json!([code, targets])
                    }
                })
                .collect();
            let mut flags = Map::new();
            if e["isSummary"] == true {
                flags.insert("summary".into(), json!(true));
            }
            if e["isModifier"] == true {
                flags.insert("modifier".into(), json!(true));
            }
            if let Some(r) = e.get("contentReference").and_then(Value::as_str) {
                flags.insert("ref".into(), json!(r.trim_start_matches('#')));
            }
            if let Some(b) = e.get("binding")
                && b["strength"] == "required"
                && let Some(vs) = b.get("valueSet").and_then(Value::as_str)
            {
                flags.insert("required".into(), json!(vs));
            }
            json!([e["path"], e["min"], e["max"], types, flags])
        })
        .collect();
    json!({
        "kind": sd["kind"],
        "abstract": sd["abstract"],
        "base": sd.get("baseDefinition").and_then(Value::as_str).map(|b| b.rsplit('/').next().unwrap_or(b)),
        "elements": elements,
    })
}

fn search_parameter(sp: &Value) -> Value {
    let mut out = Map::new();
    for key in [
        "url",
        "code",
        "base",
        "type",
        "expression",
        "target",
        "multipleOr",
        "multipleAnd",
        "comparator",
        "modifier",
        "chain",
        "component",
    ] {
        if let Some(v) = sp.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

fn write(path: &Path, value: &Value) -> Result<()> {
    // One line per top-level entry keeps diffs readable without pretty
    // printing megabytes of indentation.
    let mut text = String::new();
    match value {
        Value::Object(map) => {
            text.push_str("{\n");
            let n = map.len();
            for (i, (k, v)) in map.iter().enumerate() {
                text.push_str(&format!(
                    "{}:{}{}\n",
                    json!(k),
                    v,
                    if i + 1 < n { "," } else { "" }
                ));
            }
            text.push('}');
        }
        Value::Array(items) => {
            text.push_str("[\n");
            let n = items.len();
            for (i, v) in items.iter().enumerate() {
                text.push_str(&format!("{}{}\n", v, if i + 1 < n { "," } else { "" }));
            }
            text.push(']');
        }
        other => text.push_str(&other.to_string()),
    }
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
