//! Derives the compact definitions `gp-fhir` embeds from the official R4
//! package: the element tree of every resource and complex data type, the
//! FHIRPath invariants and the codes of required value sets (for
//! validation), the search parameters, and the compartment definitions.
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

    // Constraining profiles (SimpleQuantity, MoneyQuantity...) are not
    // base types; the base tree is what the server needs.
    let base: Vec<&Value> = resources
        .iter()
        .chain(types.iter())
        .filter(|sd| {
            sd["resourceType"] == "StructureDefinition" && sd["derivation"] != "constraint"
        })
        .collect();
    let mut structures = BTreeMap::new();
    for sd in &base {
        structures.insert(str_of(sd, "type").to_owned(), structure(sd));
    }
    write(&out.join("constraints.json"), &constraints(&base))?;
    write(&out.join("valuesets.json"), &value_sets(package, &base)?)?;
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

/// Writes `constraints.json`: the FHIRPath invariants of severity `error`,
/// as `{"constraints": {id: [expression, human]}, "paths": {path: [id]}}`.
/// An id is the constraint's key, or `key@path` when two definitions share
/// a key (`inv-1`). `ele-1` (every element) is left out: the validator
/// checks it natively. An element of a complex type does not repeat the
/// constraints its type's root carries (`ext-1` on every `extension`): the
/// validator applies the type's own constraints to every value of it.
fn constraints(structures: &[&Value]) -> Value {
    let root_keys: BTreeMap<&str, Vec<&str>> = structures
        .iter()
        .map(|sd| {
            let root = &sd["snapshot"]["element"][0];
            let keys = error_constraints(root).map(|c| str_of(c, "key")).collect();
            (str_of(sd, "type"), keys)
        })
        .collect();
    let mut defs: BTreeMap<String, Value> = BTreeMap::new();
    let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sd in structures {
        for e in sd["snapshot"]["element"].as_array().into_iter().flatten() {
            if e.get("sliceName").is_some() {
                continue;
            }
            let path = str_of(e, "path");
            let inherited: Vec<&str> = e["type"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|_| path.contains('.'))
                .flat_map(|t| root_keys.get(str_of(t, "code")).into_iter().flatten())
                .copied()
                .collect();
            for c in error_constraints(e) {
                let key = str_of(c, "key");
                if key == "ele-1" || inherited.contains(&key) {
                    continue;
                }
                let def = json!([c["expression"], c["human"]]);
                let id = match defs.get(key) {
                    Some(existing) if *existing != def => format!("{key}@{path}"),
                    _ => key.to_owned(),
                };
                defs.insert(id.clone(), def);
                let ids = paths.entry(path.to_owned()).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    json!({ "constraints": defs, "paths": paths })
}

fn error_constraints(e: &Value) -> impl Iterator<Item = &Value> {
    e["constraint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["severity"] == "error" && c.get("expression").is_some())
}

/// Code systems defined by grammars rather than lists (UCUM units, MIME
/// types, language tags): a value set drawing on them cannot be enumerated.
const GRAMMARS: [&str; 3] = [
    "http://unitsofmeasure.org",
    "urn:ietf:bcp:13",
    "urn:ietf:bcp:47",
];

/// Writes `valuesets.json`: for every value set a required binding names,
/// its codes by system (`{url: {system: [code]}}`), or `null` when it
/// cannot be enumerated from the package (a grammar-based or external code
/// system): the validator does not check those.
fn value_sets(package: &Path, structures: &[&Value]) -> Result<Value> {
    let mut vs: BTreeMap<String, Value> = BTreeMap::new();
    let mut cs: BTreeMap<String, Value> = BTreeMap::new();
    for name in [
        "Bundle-valuesets.json",
        "Bundle-v3-valuesets.json",
        "Bundle-v2-valuesets.json",
    ] {
        for r in load_bundle(&package.join(name))? {
            let url = str_of(&r, "url").to_owned();
            match r["resourceType"].as_str() {
                Some("ValueSet") => vs.insert(url, r),
                Some("CodeSystem") => cs.insert(url, r),
                _ => None,
            };
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(package)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("CodeSystem-") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    for f in files {
        let r: Value = serde_json::from_slice(&std::fs::read(&f)?)?;
        cs.entry(str_of(&r, "url").to_owned()).or_insert(r);
    }
    let expansions: BTreeMap<String, Value> =
        load_bundle(&package.join("Bundle-valueset-expansions.json"))?
            .into_iter()
            .map(|r| (str_of(&r, "url").to_owned(), r))
            .collect();
    let sets = Sets { vs, cs, expansions };
    let mut out = BTreeMap::new();
    for sd in structures {
        for e in sd["snapshot"]["element"].as_array().into_iter().flatten() {
            if e["binding"]["strength"] != "required" {
                continue;
            }
            let Some(url) = e["binding"]["valueSet"].as_str() else {
                continue;
            };
            let url = url.split('|').next().unwrap_or(url);
            if out.contains_key(url) {
                continue;
            }
            let codes = sets.enumerate(url, 0).map(|c| {
                Value::Object(
                    c.into_iter()
                        .map(|(s, codes)| (s, json!(codes.into_iter().collect::<Vec<_>>())))
                        .collect(),
                )
            });
            if codes.is_none() {
                eprintln!("codegen: value set {url} cannot be enumerated; not checked");
            }
            out.insert(url.to_owned(), codes.unwrap_or(Value::Null));
        }
    }
    Ok(Value::Object(out.into_iter().collect()))
}

type Codes = BTreeMap<String, std::collections::BTreeSet<String>>;

struct Sets {
    vs: BTreeMap<String, Value>,
    cs: BTreeMap<String, Value>,
    expansions: BTreeMap<String, Value>,
}

impl Sets {
    /// The codes of a value set from its compose (includes of listed
    /// concepts, whole code systems and other value sets, less excludes),
    /// falling back on the package's expansion.
    fn enumerate(&self, url: &str, depth: u32) -> Option<Codes> {
        let url = url.split('|').next().unwrap_or(url);
        let vs = self.vs.get(url)?;
        let compose = |part: &str| -> Option<Codes> {
            let mut codes = Codes::new();
            for inc in vs["compose"][part].as_array().into_iter().flatten() {
                let mut add = self.include(inc, depth)?;
                for (s, c) in std::mem::take(&mut add) {
                    codes.entry(s).or_default().extend(c);
                }
            }
            Some(codes)
        };
        let from_compose = (|| {
            let mut codes = compose("include")?;
            for (s, c) in compose("exclude")? {
                if let Some(set) = codes.get_mut(&s) {
                    set.retain(|x| !c.contains(x));
                }
            }
            Some(codes)
        })();
        from_compose.or_else(|| self.expansion(url))
    }

    fn include(&self, inc: &Value, depth: u32) -> Option<Codes> {
        if depth > 8 || inc.get("filter").is_some() {
            return None;
        }
        let system = str_of(inc, "system");
        let mut codes = Codes::new();
        if let Some(concepts) = inc["concept"].as_array() {
            let set = codes.entry(system.to_owned()).or_default();
            set.extend(concepts.iter().map(|c| str_of(c, "code").to_owned()));
        } else if !system.is_empty() {
            if GRAMMARS.contains(&system) {
                return None;
            }
            let cs = self.cs.get(system)?;
            if cs["content"] != "complete" {
                return None;
            }
            let set = codes.entry(system.to_owned()).or_default();
            flatten(&cs["concept"], set);
        }
        for other in inc["valueSet"].as_array().into_iter().flatten() {
            let mut sub = self.enumerate(other.as_str()?, depth + 1)?;
            if !system.is_empty() {
                // Both a system and value sets: their intersection.
                let mine = codes.remove(system).unwrap_or_default();
                let theirs = sub.remove(system).unwrap_or_default();
                sub = Codes::from([(system.to_owned(), &mine & &theirs)]);
            }
            for (s, c) in sub {
                codes.entry(s).or_default().extend(c);
            }
        }
        Some(codes)
    }

    fn expansion(&self, url: &str) -> Option<Codes> {
        let contains = self.expansions.get(url)?["expansion"]["contains"].as_array()?;
        let mut codes = Codes::new();
        for c in contains {
            let system = str_of(c, "system");
            if system.is_empty() || GRAMMARS.contains(&system) {
                return None;
            }
            codes
                .entry(system.to_owned())
                .or_default()
                .insert(str_of(c, "code").to_owned());
        }
        (!codes.is_empty()).then_some(codes)
    }
}

/// Every code of a (possibly hierarchical) concept list.
fn flatten(concepts: &Value, out: &mut std::collections::BTreeSet<String>) {
    for c in concepts.as_array().into_iter().flatten() {
        out.insert(str_of(c, "code").to_owned());
        flatten(&c["concept"], out);
    }
}
