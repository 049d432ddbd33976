//! What the R4 specification defines, embedded from `data/` (derived from the
//! official package by `cargo xtask codegen`) and parsed once on first use:
//! structures, search parameters, compartments, and for validation the
//! invariants (`constraints.json`) and the codes of the value sets required
//! bindings name (`valuesets.json`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

static STRUCTURES_JSON: &str = include_str!("../data/structures.json");
static SEARCH_PARAMETERS_JSON: &str = include_str!("../data/search-parameters.json");
static COMPARTMENTS_JSON: &str = include_str!("../data/compartments.json");
static CONSTRAINTS_JSON: &str = include_str!("../data/constraints.json");
static VALUESETS_JSON: &str = include_str!("../data/valuesets.json");

/// A resource or data type definition (a base StructureDefinition's snapshot).
#[derive(Debug)]
pub struct Structure {
    pub name: &'static str,
    /// `resource`, `complex-type` or `primitive-type`.
    pub kind: String,
    pub is_abstract: bool,
    pub base: Option<String>,
    pub elements: Vec<Element>,
}

/// One element of a structure's snapshot.
#[derive(Debug)]
pub struct Element {
    /// The full path, for example `Patient.name.given` or `Observation.value[x]`.
    pub path: String,
    pub min: u32,
    /// `None` for `*`.
    pub max: Option<u32>,
    /// Type codes; for references, the target resource types beside them.
    pub types: Vec<(String, Vec<String>)>,
    /// Part of the `_summary=true` view (search.html#summary).
    pub summary: bool,
    pub modifier: bool,
    /// For elements defined by reference to another (`Questionnaire.item.item`).
    pub content_ref: Option<String>,
    /// The value set of a required binding, if any.
    pub required_binding: Option<String>,
}

/// A search parameter as the specification defines it.
#[derive(Debug, Deserialize)]
pub struct SearchParamDef {
    pub url: String,
    pub code: String,
    pub base: Vec<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub expression: Option<String>,
    #[serde(default)]
    pub target: Vec<String>,
    #[serde(default)]
    pub component: Vec<Value>,
}

struct Definitions {
    structures: BTreeMap<&'static str, Structure>,
    resource_types: Vec<&'static str>,
    search_parameters: Vec<SearchParamDef>,
    compartments: Vec<Value>,
}

static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(load);

fn load() -> Definitions {
    // The embedded files are generated and checked by this crate's tests; a
    // malformed file is a build defect, so an empty set is the fallback.
    let raw: BTreeMap<String, Value> = serde_json::from_str(STRUCTURES_JSON).unwrap_or_default();
    let mut structures = BTreeMap::new();
    for (name, s) in raw {
        let name: &'static str = Box::leak(name.into_boxed_str());
        let elements = s["elements"]
            .as_array()
            .into_iter()
            .flatten()
            .map(element)
            .collect();
        structures.insert(
            name,
            Structure {
                name,
                kind: s["kind"].as_str().unwrap_or_default().to_owned(),
                is_abstract: s["abstract"].as_bool().unwrap_or(false),
                base: s["base"].as_str().map(str::to_owned),
                elements,
            },
        );
    }
    let resource_types = structures
        .values()
        .filter(|s| s.kind == "resource" && !s.is_abstract)
        .map(|s| s.name)
        .collect();
    Definitions {
        structures,
        resource_types,
        search_parameters: serde_json::from_str(SEARCH_PARAMETERS_JSON).unwrap_or_default(),
        compartments: serde_json::from_str(COMPARTMENTS_JSON).unwrap_or_default(),
    }
}

fn element(e: &Value) -> Element {
    let types = e[3]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| match t {
            Value::Array(pair) => (
                pair.first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                pair.get(1)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            other => (other.as_str().unwrap_or_default().to_owned(), Vec::new()),
        })
        .collect();
    let flags = &e[4];
    Element {
        path: e[0].as_str().unwrap_or_default().to_owned(),
        min: e[1].as_u64().map_or(0, |n| n as u32),
        max: e[2].as_str().and_then(|m| m.parse().ok()),
        types,
        summary: flags["summary"] == true,
        modifier: flags["modifier"] == true,
        content_ref: flags["ref"].as_str().map(str::to_owned),
        required_binding: flags["required"].as_str().map(str::to_owned),
    }
}

/// A FHIRPath invariant of severity `error` (ElementDefinition.constraint).
#[derive(Debug)]
pub struct Constraint {
    /// `pat-1`, `obs-6`...
    pub key: String,
    pub expression: String,
    pub human: String,
}

struct Validation {
    constraints: BTreeMap<String, Vec<Constraint>>,
    value_sets: BTreeMap<String, Option<BTreeMap<String, Vec<String>>>>,
}

static VALIDATION: LazyLock<Validation> = LazyLock::new(|| {
    let raw: Value = serde_json::from_str(CONSTRAINTS_JSON).unwrap_or_default();
    let defs = &raw["constraints"];
    let constraints = raw["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(path, ids)| {
            let list = ids
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|id| Constraint {
                    key: id.split('@').next().unwrap_or(id).to_owned(),
                    expression: defs[id][0].as_str().unwrap_or_default().to_owned(),
                    human: defs[id][1].as_str().unwrap_or_default().to_owned(),
                })
                .collect();
            (path.clone(), list)
        })
        .collect();
    Validation {
        constraints,
        value_sets: serde_json::from_str(VALUESETS_JSON).unwrap_or_default(),
    }
});

/// The invariants of severity `error` on the element at `path`
/// (`Patient`, `Observation.referenceRange`), less `ele-1` and those its
/// type's root carries.
pub fn constraints(path: &str) -> &'static [Constraint] {
    VALIDATION.constraints.get(path).map_or(&[], Vec::as_slice)
}

/// Every invariant with the path of the element that carries it.
pub fn all_constraints() -> impl Iterator<Item = (&'static str, &'static Constraint)> {
    VALIDATION
        .constraints
        .iter()
        .flat_map(|(path, list)| list.iter().map(move |c| (path.as_str(), c)))
}

/// The codes of a value set a required binding names (any `|version`
/// ignored), by system: `None` for a value set the specification does not
/// define, `Some(None)` for one that cannot be enumerated (UCUM units,
/// MIME types), which is therefore not checked.
pub fn value_set_codes(url: &str) -> Option<Option<&'static BTreeMap<String, Vec<String>>>> {
    let url = url.split('|').next().unwrap_or(url);
    VALIDATION.value_sets.get(url).map(Option::as_ref)
}

/// The interned name of a concrete resource type, if `name` is one.
pub fn resource_type(name: &str) -> Option<&'static str> {
    let defs = &*DEFINITIONS;
    defs.resource_types
        .binary_search(&name)
        .ok()
        .map(|i| defs.resource_types[i])
}

/// Every concrete resource type, sorted.
pub fn resource_types() -> &'static [&'static str] {
    &DEFINITIONS.resource_types
}

/// The definition of a resource or data type.
pub fn structure(name: &str) -> Option<&'static Structure> {
    DEFINITIONS.structures.get(name)
}

/// Every search parameter the specification defines.
pub fn search_parameters() -> &'static [SearchParamDef] {
    &DEFINITIONS.search_parameters
}

/// The compartment definitions (`Patient`, `Encounter`, ...) as JSON objects
/// with `code` and `resource` (type -> parameter names).
pub fn compartments() -> &'static [Value] {
    &DEFINITIONS.compartments
}

/// The top-level element names of `resource_type` in the summary view, with
/// choice elements given by their stem (`value` for `value[x]`).
pub fn summary_elements(resource_type: &str) -> Vec<&'static str> {
    let Some(s) = structure(resource_type) else {
        return Vec::new();
    };
    let prefix_len = resource_type.len() + 1;
    s.elements
        .iter()
        .filter(|e| e.summary && e.path.len() > prefix_len && !e.path[prefix_len..].contains('.'))
        .map(|e| e.path[prefix_len..].trim_end_matches("[x]"))
        .collect()
}

/// The mandatory top-level elements of `resource_type` (min >= 1), which
/// `_elements` keeps alongside the ones asked for (search.html#elements).
pub fn mandatory_elements(resource_type: &str) -> Vec<&'static str> {
    let Some(s) = structure(resource_type) else {
        return Vec::new();
    };
    let prefix_len = resource_type.len() + 1;
    s.elements
        .iter()
        .filter(|e| e.min > 0 && e.path.len() > prefix_len && !e.path[prefix_len..].contains('.'))
        .map(|e| e.path[prefix_len..].trim_end_matches("[x]"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_definitions_load() {
        assert!(structure("Patient").is_some_and(|s| s.elements.len() > 30));
        assert!(structure("HumanName").is_some_and(|s| s.kind == "complex-type"));
        assert!(search_parameters().len() > 1000);
        assert!(compartments().iter().any(|c| c["code"] == "Patient"));
        assert!(constraints("Observation").iter().any(|c| c.key == "obs-6"));
        assert!(constraints("Extension").iter().any(|c| c.key == "ext-1"));
        assert!(constraints("Patient.extension").is_empty());
        let gender = value_set_codes("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1");
        assert!(
            gender
                .flatten()
                .is_some_and(|c| c.values().flatten().any(|c| c == "female"))
        );
        assert!(
            value_set_codes("http://hl7.org/fhir/ValueSet/ucum-units").is_some_and(|c| c.is_none())
        );
    }

    #[test]
    fn summary_view_of_patient() {
        let s = summary_elements("Patient");
        for e in ["id", "meta", "identifier", "name", "birthDate", "deceased"] {
            assert!(s.contains(&e), "{e} in {s:?}");
        }
        assert!(!s.contains(&"text"));
        assert!(!s.contains(&"contact"));
    }
}
