//! The structural walk: a resource's JSON against the element tree of its
//! StructureDefinition (http://hl7.org/fhir/R4/json.html for how elements
//! are written, elementdefinition.html for what min, max, type and
//! contentReference mean), into the data types' own definitions, and into
//! contained and Bundle entry resources.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use gp_fhir::IssueType;
use gp_fhir::definitions::{self, Element};
use gp_fhir::outcome::Issue;
use gp_fhirpath::TypeRef;
use serde_json::{Map, Value};

use crate::{binding, error, invariant, primitive};

/// The children of every element, by the parent's definition path
/// (`Patient`, `Patient.contact`, `HumanName`), with their JSON stems.
static CHILDREN: LazyLock<HashMap<&'static str, Vec<(&'static str, &'static Element)>>> =
    LazyLock::new(|| {
        let mut out: HashMap<&'static str, Vec<_>> = HashMap::new();
        let mut pending: Vec<&str> = definitions::resource_types().to_vec();
        let mut seen = HashSet::new();
        while let Some(name) = pending.pop() {
            if !seen.insert(name) {
                continue;
            }
            let Some(s) = definitions::structure(name) else {
                continue;
            };
            for e in &s.elements {
                for (code, _) in &e.types {
                    if !seen.contains(code.as_str()) {
                        pending.push(code.as_str());
                    }
                }
                if let Some((parent, name)) = e.path.rsplit_once('.') {
                    let stem = name.strip_suffix("[x]").unwrap_or(name);
                    out.entry(parent).or_default().push((stem, e));
                }
            }
        }
        out
    });

/// Validates a resource against its base definition.
pub(crate) fn validate(resource: &Value) -> Vec<Issue> {
    let mut issues = Vec::new();
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    Walker {
        issues: &mut issues,
    }
    .resource(resource, None, ty);
    issues
}

struct Walker<'i> {
    issues: &'i mut Vec<Issue>,
}

/// What a JSON property is: which element, and for a choice element the
/// type its name selects (`valueQuantity`).
struct Found {
    element: &'static Element,
    stem: &'static str,
    choice: Option<&'static str>,
}

fn find(children: &[(&'static str, &'static Element)], name: &str) -> Option<Found> {
    for (stem, element) in children {
        if element.path.ends_with("[x]") {
            let Some(suffix) = name.strip_prefix(stem) else {
                continue;
            };
            for (code, _) in &element.types {
                if capitalised_eq(code, suffix) {
                    return Some(Found {
                        element,
                        stem,
                        choice: Some(code.as_str()),
                    });
                }
            }
        } else if *stem == name {
            return Some(Found {
                element,
                stem,
                choice: None,
            });
        }
    }
    None
}

/// `code` with its first letter in upper case equals `suffix`.
fn capitalised_eq(code: &str, suffix: &str) -> bool {
    let mut c = code.chars();
    let mut s = suffix.chars();
    match (c.next(), s.next()) {
        (Some(a), Some(b)) => a.to_ascii_uppercase() == b && c.as_str() == s.as_str(),
        _ => false,
    }
}

/// The FHIR type a System type in the snapshot stands for (`Resource.id`
/// is an `id`, `Extension.url` a `uri`, other `id`s `string`s).
fn fhir_type<'a>(element: &Element, code: &'a str) -> &'a str {
    match code {
        "String" => {
            let is_resource_id = element
                .path
                .strip_suffix(".id")
                .is_some_and(|p| definitions::resource_type(p).is_some());
            if is_resource_id {
                "id"
            } else if element.path == "Extension.url" {
                "uri"
            } else {
                "string"
            }
        }
        "Boolean" => "boolean",
        "Integer" => "integer",
        "Decimal" => "decimal",
        "Date" => "date",
        "DateTime" => "dateTime",
        "Time" => "time",
        other => other,
    }
}

impl Walker<'_> {
    fn push(&mut self, code: IssueType, location: &str, diagnostics: String) {
        self.issues.push(error(code, location, diagnostics));
    }

    /// A resource at `location` (`Patient`, `Bundle.entry[0].resource`).
    /// A contained resource has its container as `container`: invariants
    /// inside it see the container as `%rootResource` (`ref-1` looks up
    /// `#id` references there).
    fn resource(&mut self, json: &Value, container: Option<&Value>, location: &str) {
        let Value::Object(obj) = json else {
            return self.push(
                IssueType::Structure,
                location,
                "a resource must be a JSON object".into(),
            );
        };
        let Some(ty) = obj.get("resourceType").and_then(Value::as_str) else {
            return self.push(
                IssueType::Structure,
                location,
                "the resource has no resourceType".into(),
            );
        };
        if definitions::resource_type(ty).is_none() {
            return self.push(
                IssueType::Structure,
                location,
                format!("'{ty}' is not a FHIR R4 resource type"),
            );
        }
        let root = container.unwrap_or(json);
        self.object(root, obj, ty, location, true);
        invariant::check(ty, root, json, TypeRef::named(ty), location, self.issues);
    }

    /// The properties of a JSON object against the children of `def`.
    fn object(
        &mut self,
        root: &Value,
        obj: &Map<String, Value>,
        def: &str,
        location: &str,
        is_resource: bool,
    ) {
        let children = CHILDREN.get(def).map_or(&[][..], Vec::as_slice);
        let mut chosen: HashMap<&str, &str> = HashMap::new();
        for (key, value) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (name, is_extra) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            let Some(found) = find(children, name) else {
                self.push(
                    IssueType::Structure,
                    &format!("{location}.{key}"),
                    format!("unknown element '{key}' in {def}"),
                );
                continue;
            };
            if found.choice.is_some()
                && let Some(other) = chosen.insert(found.stem, name)
                && other != name
            {
                self.push(
                    IssueType::Structure,
                    &format!("{location}.{}", found.stem),
                    format!(
                        "only one of {other} and {name} may be given ({}[x])",
                        found.stem
                    ),
                );
            }
            if is_extra && obj.contains_key(name) {
                // Checked alongside the value.
                continue;
            }
            let (value, extra) = if is_extra {
                (None, Some(value))
            } else {
                (Some(value), obj.get(&format!("_{name}")))
            };
            self.element(root, &found, value, extra, location);
        }
        for (stem, e) in children {
            if e.min == 0 {
                continue;
            }
            let present = obj.keys().any(|k| {
                let k = k.strip_prefix('_').unwrap_or(k);
                if e.path.ends_with("[x]") {
                    k.strip_prefix(stem)
                        .is_some_and(|s| e.types.iter().any(|(c, _)| capitalised_eq(c, s)))
                } else {
                    k == *stem
                }
            });
            if !present {
                self.push(
                    IssueType::Required,
                    &format!("{location}.{stem}"),
                    format!("{} is required (min {}) but missing", e.path, e.min),
                );
            }
        }
    }

    /// One property: cardinality, then each of its values.
    fn element(
        &mut self,
        root: &Value,
        found: &Found,
        value: Option<&Value>,
        extra: Option<&Value>,
        location: &str,
    ) {
        let e = found.element;
        let stem = found.stem;
        let name = match found.choice {
            Some(code) => format!("{stem}.ofType({code})"),
            None => stem.to_owned(),
        };
        let here = format!("{location}.{name}");
        let repeats = e.max != Some(1);
        if e.max == Some(0) {
            return self.push(
                IssueType::Structure,
                &here,
                format!("{} is not allowed (max 0)", e.path),
            );
        }
        let values: Vec<&Value> = match value {
            Some(Value::Array(items)) if repeats => {
                if items.is_empty() {
                    self.push(
                        IssueType::Structure,
                        &here,
                        "an array must not be empty".into(),
                    );
                }
                if let Some(max) = e.max
                    && items.len() > max as usize
                {
                    self.push(
                        IssueType::Structure,
                        &here,
                        format!(
                            "{} allows at most {max} values, not {}",
                            e.path,
                            items.len()
                        ),
                    );
                }
                items.iter().collect()
            }
            Some(Value::Array(_)) => {
                return self.push(
                    IssueType::Structure,
                    &here,
                    format!("{} takes a single value, not an array", e.path),
                );
            }
            Some(_) if repeats => {
                return self.push(
                    IssueType::Structure,
                    &here,
                    format!("{} repeats: its value must be an array", e.path),
                );
            }
            Some(other) => vec![other],
            None => Vec::new(),
        };
        let extras: Vec<Option<&Value>> = match (extra, repeats) {
            (Some(Value::Array(x)), true) => {
                if value.is_some() && x.len() != values.len() {
                    self.push(
                        IssueType::Structure,
                        &format!("{location}._{stem}"),
                        "the primitive extensions must line up with the values".into(),
                    );
                }
                x.iter().map(Some).collect()
            }
            (Some(x), false) => vec![Some(x)],
            (Some(_), true) => {
                self.push(
                    IssueType::Structure,
                    &format!("{location}._{stem}"),
                    "a repeating element's primitive extensions must be an array".into(),
                );
                Vec::new()
            }
            (None, _) => Vec::new(),
        };
        let count = values.len().max(extras.len());
        for i in 0..count {
            let at = if repeats {
                format!("{here}[{i}]")
            } else {
                here.clone()
            };
            let v = values.get(i).copied();
            let x = extras.get(i).copied().flatten();
            self.value(root, found, v.unwrap_or(&Value::Null), x, &at);
        }
    }

    /// One value of an element, by its type.
    fn value(&mut self, root: &Value, found: &Found, v: &Value, extra: Option<&Value>, at: &str) {
        let e = found.element;
        let code = match (found.choice, e.types.as_slice()) {
            (Some(c), _) => c,
            (None, [(c, _)]) => c.as_str(),
            (None, _) => "",
        };
        let code = fhir_type(e, code);
        if primitive::is_primitive(code) {
            match (v, extra) {
                (Value::Null, Some(x)) if !x.is_null() => {}
                (Value::Null, _) => {
                    return self.push(
                        IssueType::Invariant,
                        at,
                        "ele-1: a primitive must have a value or extensions".into(),
                    );
                }
                (v, _) => {
                    if let Some(why) = primitive::check(code, v) {
                        self.push(IssueType::Value, at, why);
                    }
                }
            }
            match extra {
                Some(Value::Object(x)) => self.object(root, x, code, at, false),
                Some(Value::Null) | None => {}
                Some(_) => self.push(
                    IssueType::Structure,
                    at,
                    "a primitive's extensions must be an object".into(),
                ),
            }
        } else {
            if let Some(x) = extra
                && !x.is_null()
            {
                self.push(
                    IssueType::Structure,
                    at,
                    format!("{} is not a primitive: no '_' form", e.path),
                );
            }
            let Value::Object(obj) = v else {
                return self.push(
                    IssueType::Structure,
                    at,
                    format!(
                        "a {} must be a JSON object",
                        if code.is_empty() {
                            "BackboneElement"
                        } else {
                            code
                        }
                    ),
                );
            };
            if code == "Resource" || definitions::resource_type(code).is_some() {
                let contained = e.path.ends_with(".contained");
                return self.resource(v, contained.then_some(root), at);
            }
            if !obj.keys().any(|k| k != "id") {
                self.push(
                    IssueType::Invariant,
                    at,
                    "ele-1: an element must have a value or children".into(),
                );
            }
            let ty;
            match (&e.content_ref, code) {
                (Some(r), _) => {
                    self.object(root, obj, r, at, false);
                    invariant::check(r, root, v, TypeRef::of_element(&e.path), at, self.issues);
                    ty = TypeRef::of_element(&e.path);
                }
                (None, "BackboneElement" | "Element" | "") => {
                    self.object(root, obj, &e.path, at, false);
                    ty = TypeRef::of_element(&e.path);
                }
                (None, t) => {
                    self.object(root, obj, t, at, false);
                    ty = if found.choice.is_some() {
                        TypeRef::named(t)
                    } else {
                        TypeRef::of_element(&e.path)
                    };
                    invariant::check(t, root, v, ty, at, self.issues);
                }
            }
            invariant::check(&e.path, root, v, ty, at, self.issues);
        }
        if let Some(vs) = &e.required_binding
            && let Some(why) = binding::check(vs, code, v)
        {
            self.push(IssueType::CodeInvalid, at, why);
        }
    }
}
