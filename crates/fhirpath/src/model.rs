//! The FHIR R4 type model FHIRPath navigates with: which type each element
//! has, taken from the element definitions gp-fhir embeds, indexed once.

use std::collections::HashMap;
use std::sync::LazyLock;

use gp_fhir::definitions::{self, Structure};

/// Where a FHIR node's type comes from: its type code (`HumanName`,
/// `string`, `BackboneElement`) and the definition path its children are
/// found under (`HumanName`, or `Patient.contact` for a backbone element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeRef {
    pub code: &'static str,
    pub(crate) path: &'static str,
}

impl TypeRef {
    /// The type named `code` (a resource or data type), if FHIR defines it.
    pub fn named(code: &str) -> Option<TypeRef> {
        let s = definitions::structure(code)?;
        Some(TypeRef {
            code: s.name,
            path: s.name,
        })
    }

    /// The type of the values of the element at definition path `path`
    /// (`Patient.contact` gives a BackboneElement whose children are under
    /// `Patient.contact`; `Patient.name` gives `HumanName`). `None` for an
    /// unknown path or a choice element (name its type with [`named`]).
    ///
    /// [`named`]: TypeRef::named
    pub fn of_element(path: &str) -> Option<TypeRef> {
        let info = INDEX.get(path)?;
        match info.types.as_slice() {
            _ if info.inline_path.is_some() => {
                Some(child_type(info, info.types.first().copied().unwrap_or("")))
            }
            [code] => Some(child_type(info, code)),
            _ => None,
        }
    }

    /// Whether this is a primitive type (`string`, `dateTime`...).
    pub fn is_primitive(&self) -> bool {
        definitions::structure(self.code).is_some_and(|s| s.kind == "primitive-type")
    }
}

/// One element of a structure, as navigation needs it.
#[derive(Debug)]
pub(crate) struct ElementInfo {
    /// The element's type codes; several for a choice element (`value[x]`).
    pub types: Vec<&'static str>,
    pub choice: bool,
    /// The path children are found under when the type is defined inline
    /// (`BackboneElement`) or by reference (`Questionnaire.item.item`).
    pub inline_path: Option<&'static str>,
}

/// Elements by their path without `[x]` (`Observation.value`).
static INDEX: LazyLock<HashMap<&'static str, ElementInfo>> = LazyLock::new(build);

fn build() -> HashMap<&'static str, ElementInfo> {
    let mut index = HashMap::new();
    let mut pending: Vec<&str> = definitions::resource_types().to_vec();
    pending.extend(["Resource", "DomainResource", "Element", "BackboneElement"]);
    let mut seen = std::collections::HashSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.to_owned()) {
            continue;
        }
        let Some(s) = definitions::structure(name) else {
            continue;
        };
        for e in &s.elements {
            for (code, _) in &e.types {
                if definitions::structure(code).is_some() && !seen.contains(code.as_str()) {
                    pending.push(code.as_str());
                }
            }
            add(&mut index, s, e);
        }
    }
    index
}

fn add(
    index: &mut HashMap<&'static str, ElementInfo>,
    s: &'static Structure,
    e: &'static definitions::Element,
) {
    let path = e.path.as_str();
    let (key, choice) = match path.strip_suffix("[x]") {
        Some(stem) => (stem, true),
        None => (path, false),
    };
    let own = key.strip_prefix(s.name).unwrap_or(key);
    let types = e
        .types
        .iter()
        .map(|(code, _)| system_to_fhir(s, own, code.as_str()))
        .collect::<Vec<_>>();
    let inline = types
        .iter()
        .any(|t| *t == "BackboneElement" || *t == "Element");
    let inline_path = match &e.content_ref {
        Some(r) => Some(r.trim_start_matches('#')),
        None if inline || types.is_empty() => Some(key),
        None => None,
    };
    index.insert(
        key,
        ElementInfo {
            types,
            choice,
            inline_path,
        },
    );
}

/// The snapshot gives a few elements System types (`Resource.id` is
/// `System.String`); FHIRPath sees them as the FHIR types they stand for.
fn system_to_fhir(s: &Structure, own_path: &str, code: &'static str) -> &'static str {
    match code {
        "String" if own_path == ".id" && s.kind == "resource" => "id",
        "String" if s.name == "Extension" && own_path == ".url" => "uri",
        "String" => "string",
        "Boolean" => "boolean",
        "Integer" => "integer",
        "Decimal" => "decimal",
        "Date" => "date",
        "DateTime" => "dateTime",
        "Time" => "time",
        other => other,
    }
}

/// The element `name` of a node of type `parent`, if defined.
pub(crate) fn element(parent: &TypeRef, name: &str) -> Option<&'static ElementInfo> {
    let key = format!("{}.{name}", parent.path);
    INDEX.get(key.as_str())
}

/// The type of a child of `parent` that has type code `code`, as defined
/// by `info`.
pub(crate) fn child_type(info: &'static ElementInfo, code: &'static str) -> TypeRef {
    match info.inline_path {
        Some(path) => TypeRef {
            code: if code.is_empty() {
                "BackboneElement"
            } else {
                code
            },
            path,
        },
        None => TypeRef { code, path: code },
    }
}

/// Whether type `code` is `ancestor` or derives from it (`Age` from
/// `Quantity`, `code` from `string`, every resource from `Resource`).
pub(crate) fn derives_from(code: &str, ancestor: &str) -> bool {
    let mut current = Some(code.to_owned());
    while let Some(c) = current {
        if c == ancestor {
            return true;
        }
        current = definitions::structure(&c).and_then(|s| s.base.clone());
    }
    false
}

/// Whether FHIR defines a type of this name.
pub(crate) fn is_fhir_type(name: &str) -> bool {
    definitions::structure(name).is_some()
}
