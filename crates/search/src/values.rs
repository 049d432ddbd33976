//! Turning FHIRPath results into index values, by parameter type and by the
//! FHIR type of each node (search.html#ptypes lists which data types each
//! parameter type indexes).

use gp_fhir::search::index::{IndexEntry, IndexValue};
use gp_fhir::search::registry::ParamKind;
use gp_fhir::search::value::normalize;
use gp_fhir::{DateRange, ResourceType};
use gp_fhirpath::Item;
use serde_json::Value;

fn s(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(s)
}

fn each<'v>(v: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    match v.get(key) {
        Some(Value::Array(a)) => a.iter().collect::<Vec<_>>().into_iter(),
        Some(other) => vec![other].into_iter(),
        None => Vec::new().into_iter(),
    }
}

fn entry(code: &str, group: u32, value: IndexValue) -> IndexEntry {
    IndexEntry {
        code: code.to_owned(),
        group,
        value,
    }
}

/// The JSON and FHIR type of an item, or a System value as JSON.
fn node(item: &Item<'_>) -> Option<(Value, &'static str)> {
    match item {
        Item::Node(n) => Some((n.json().clone(), n.fhir_type().unwrap_or(""))),
        Item::String(v) => Some((Value::String(v.clone()), "string")),
        Item::Boolean(b) => Some((Value::Bool(*b), "boolean")),
        Item::Integer(i) => Some((Value::from(*i), "integer")),
        Item::Decimal(d) => Some((Value::String(d.to_string()), "decimal")),
        Item::Temporal(t) => Some((Value::String(t.to_string()), "dateTime")),
        _ => None,
    }
}

/// Appends the entries `item` gives parameter `code` of type `kind`.
pub(crate) fn push(
    code: &str,
    kind: ParamKind,
    item: &Item<'_>,
    group: &mut u32,
    out: &mut Vec<IndexEntry>,
) {
    let Some((v, ty)) = node(item) else { return };
    if v.is_null() {
        return;
    }
    match kind {
        ParamKind::String => strings(code, &v, ty, out),
        ParamKind::Token => tokens(code, &v, ty, group, out),
        ParamKind::Date => dates(code, &v, ty, out),
        ParamKind::Number => {
            if let Some(n) = number(&v) {
                out.push(entry(code, 0, IndexValue::Number { value: n }));
            }
        }
        ParamKind::Quantity => quantity(code, &v, ty, out),
        ParamKind::Reference => references(code, &v, ty, group, out),
        ParamKind::Uri => {
            if let Some(u) = s(&v) {
                out.push(entry(code, 0, IndexValue::Uri(u)));
            }
        }
        ParamKind::Composite | ParamKind::Special => {}
    }
}

fn string_entry(code: &str, text: &str, out: &mut Vec<IndexEntry>) {
    let norm = normalize(text);
    if !norm.is_empty() {
        out.push(entry(
            code,
            0,
            IndexValue::String {
                norm,
                exact: text.to_owned(),
            },
        ));
    }
}

/// search.html#string: every string part of a HumanName or Address.
fn strings(code: &str, v: &Value, ty: &str, out: &mut Vec<IndexEntry>) {
    let parts: &[&str] = match ty {
        "HumanName" => &["text", "family", "given", "prefix", "suffix"],
        "Address" => &[
            "text",
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
        ],
        _ => {
            if let Some(t) = s(v) {
                string_entry(code, &t, out);
            }
            return;
        }
    };
    for part in parts {
        for p in each(v, part).filter_map(s) {
            string_entry(code, &p, out);
        }
    }
}

fn token(
    code: &str,
    group: u32,
    system: Option<String>,
    value: Option<String>,
    text: Option<&str>,
) -> IndexEntry {
    entry(
        code,
        group,
        IndexValue::Token {
            system,
            code: value,
            text: text.map(normalize).filter(|t| !t.is_empty()),
        },
    )
}

/// search.html#token: codes of Coding, CodeableConcept, Identifier,
/// ContactPoint and the primitive code-like types.
fn tokens(code: &str, v: &Value, ty: &str, group: &mut u32, out: &mut Vec<IndexEntry>) {
    match ty {
        "Coding" => out.push(token(
            code,
            0,
            field(v, "system"),
            field(v, "code"),
            field(v, "display").as_deref(),
        )),
        "CodeableConcept" => {
            let text = field(v, "text");
            let mut any = false;
            for c in each(v, "coding") {
                any = true;
                let shown = text.clone().or_else(|| field(c, "display"));
                out.push(token(
                    code,
                    0,
                    field(c, "system"),
                    field(c, "code"),
                    shown.as_deref(),
                ));
            }
            if !any && text.is_some() {
                out.push(token(code, 0, None, None, text.as_deref()));
            }
        }
        "Identifier" => {
            // The identifier and its type share a group, for `:of-type`.
            *group += 1;
            let g = *group;
            let type_text = v.get("type").and_then(|t| field(t, "text"));
            out.push(token(
                code,
                g,
                field(v, "system"),
                field(v, "value"),
                type_text.as_deref(),
            ));
            for c in v
                .get("type")
                .map(|t| each(t, "coding").collect::<Vec<_>>())
                .unwrap_or_default()
            {
                out.push(token(
                    &format!("{code}:type"),
                    g,
                    field(c, "system"),
                    field(c, "code"),
                    None,
                ));
            }
        }
        "ContactPoint" => out.push(token(code, 0, None, field(v, "value"), None)),
        "Reference" => {
            // A token parameter over a Reference indexes its identifier.
            if let Some(i) = v.get("identifier") {
                out.push(token(code, 0, field(i, "system"), field(i, "value"), None));
            }
        }
        _ => {
            if let Some(val) = s(v) {
                out.push(token(code, 0, None, Some(val), None));
            }
        }
    }
}

/// A date-like value as the range it covers; `None` if it cannot be read.
fn range(v: &Value) -> Option<(i64, i64)> {
    let r = DateRange::parse(v.as_str()?).ok()?;
    Some((r.low.millis(), r.high.millis()))
}

/// search.html#date: date, dateTime, instant, Period and Timing events.
fn dates(code: &str, v: &Value, ty: &str, out: &mut Vec<IndexEntry>) {
    let mut push = |low: i64, high: i64| out.push(entry(code, 0, IndexValue::Date { low, high }));
    match ty {
        "Period" => {
            let low = v.get("start").and_then(range).map_or(i64::MIN, |r| r.0);
            let high = v.get("end").and_then(range).map_or(i64::MAX, |r| r.1);
            if v.get("start").is_some() || v.get("end").is_some() {
                push(low, high);
            }
        }
        "Timing" => {
            for e in each(v, "event") {
                if let Some((l, h)) = range(e) {
                    push(l, h);
                }
            }
        }
        _ => {
            if let Some((l, h)) = range(v) {
                push(l, h);
            }
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// search.html#quantity: the value with its system and code (the unit
/// when there is no code), for Quantity and its profiles, and Money; for
/// a UCUM unit, its canonical form too.
fn quantity(code: &str, v: &Value, ty: &str, out: &mut Vec<IndexEntry>) {
    let Some(value) = v.get("value").and_then(number) else {
        return;
    };
    let (system, unit) = if ty == "Money" {
        (
            Some("urn:iso:std:iso:4217".to_owned()),
            field(v, "currency"),
        )
    } else {
        (
            field(v, "system"),
            field(v, "code").or_else(|| field(v, "unit")),
        )
    };
    let canonical = match (system.as_deref(), unit.as_deref()) {
        (Some(gp_fhir::ucum::SYSTEM), Some(u)) => gp_fhir::ucum::canonical(value, u),
        _ => None,
    };
    out.push(entry(
        code,
        0,
        IndexValue::Quantity {
            value,
            system,
            code: unit,
            canonical,
        },
    ));
}

/// search.html#reference: local references as type and id, others by URL;
/// a Reference's identifier as a token for `:identifier`.
fn references(code: &str, v: &Value, ty: &str, group: &mut u32, out: &mut Vec<IndexEntry>) {
    match ty {
        "Reference" => {
            if let Some(r) = field(v, "reference") {
                reference_string(code, &r, out);
            }
            if let Some(i) = v.get("identifier") {
                *group += 1;
                out.push(token(
                    &format!("{code}:identifier"),
                    *group,
                    field(i, "system"),
                    field(i, "value"),
                    None,
                ));
            }
        }
        _ => {
            // canonical and uri elements point at definitions by URL; the
            // version after '|' is not part of the match.
            if let Some(u) = s(v) {
                let u = u.split('|').next().unwrap_or(&u).to_owned();
                out.push(entry(
                    code,
                    0,
                    IndexValue::Reference {
                        target_type: None,
                        target_id: None,
                        url: Some(u),
                    },
                ));
            }
        }
    }
}

fn reference_string(code: &str, r: &str, out: &mut Vec<IndexEntry>) {
    if let Some(value) = reference_value(r) {
        out.push(entry(code, 0, value));
    }
}

/// The index value of a reference string (`Type/id`, `Type/id/_history/n`,
/// or an absolute URL ending so); `None` for a contained one (`#id`). The
/// one reading of references every indexer shares.
pub fn reference_value(r: &str) -> Option<IndexValue> {
    if r.starts_with('#') {
        return None;
    }
    let (ty, id) = reference_parts(r);
    // An absolute URL names a resource on some server; only relative
    // references are local (a client searching by URL matches it whole).
    let local = !r.contains("://") && !r.starts_with("urn:");
    let parsed = ty
        .and_then(ResourceType::parse)
        .zip(id.filter(|i| !i.is_empty()));
    Some(match (local, parsed) {
        (true, Some((t, i))) => IndexValue::Reference {
            target_type: Some(t.to_string()),
            target_id: Some(i.to_owned()),
            url: None,
        },
        _ => IndexValue::Reference {
            target_type: None,
            target_id: None,
            url: Some(r.to_owned()),
        },
    })
}

/// Whether a Reference item points at a resource of type `t` (by its
/// `Type/id` form, or for a reference that does not say, such as a
/// `urn:uuid:`, by `type_of`), for `.where(resolve() is T)` in parameter
/// expressions.
pub(crate) fn refers_to(item: &Item<'_>, t: ResourceType, type_of: &crate::TypeOf<'_>) -> bool {
    let Item::Node(n) = item else { return false };
    let Some(r) = n.json().get("reference").and_then(Value::as_str) else {
        return false;
    };
    if r.starts_with("urn:") {
        return type_of(r) == Some(t);
    }
    reference_parts(r).0 == Some(t.as_str())
}

/// The type and id segments of a reference string (`Type/id`,
/// `Type/id/_history/n`, or a URL ending so).
pub fn reference_parts(r: &str) -> (Option<&str>, Option<&str>) {
    let segs: Vec<&str> = r.split('/').collect();
    let tail = |n: usize| segs.len().checked_sub(n).and_then(|i| segs.get(i)).copied();
    if segs.len() >= 4 && tail(2) == Some("_history") {
        (tail(4), tail(3))
    } else {
        (tail(2), tail(1))
    }
}
