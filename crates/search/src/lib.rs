//! Search index extraction (search.html#ptypes): for each search parameter
//! the specification defines on a resource's type, its FHIRPath expression
//! is evaluated on the resource and each resulting value becomes an
//! [`IndexEntry`] of the parameter's type. Stores write the entries in the
//! same transaction as the version, and search them with SQL.
//!
//! Expressions are parsed once per type, on first use. A parameter whose
//! expression fails on a resource contributes nothing for it; extraction
//! itself never fails, so indexing can never refuse a valid write.
//!
//! Architecture invariant: pure. No IO, no SQL, no HTTP.

mod values;

pub use values::{reference_parts, reference_value};

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use gp_fhir::search::index::{IndexEntry, IndexValue};
use gp_fhir::search::registry::{self, ParamKind, SearchParam};
use gp_fhir::{Resource, ResourceType};
use gp_fhirpath::{EvalContext, Expr, Item};
use serde_json::Value;

/// The version of what extraction produces. Stores record, per practice,
/// the version their index rows were written with, and a store whose rows
/// are of another version is reindexed when the server opens it (gp-store
/// `reindex.rs`): so **bump this whenever the entries extraction gives a
/// stored resource change** (a parameter newly indexed, a value normalised
/// differently, gp-store's direct AuditEvent entries included).
/// `tests::extraction_version_follows_what_extraction_gives` fails until
/// the version and the fingerprint it records are updated together.
pub const EXTRACTION_VERSION: u32 = 3;

/// The most elements of one composite parameter indexed per resource
/// (an Observation's components, say); their expressions are parsed ahead.
const MAX_COMPOSITE_ELEMENTS: usize = 8;

/// One part of a parameter's expression that applies to the type.
struct Part {
    expr: Expr,
    /// From a trailing `.where(resolve() is T)`: keep references to `T`
    /// only. References are not resolved while indexing (the target may
    /// not exist yet), so the type comes from the reference itself.
    resolve_is: Option<ResourceType>,
}

/// A parameter with its parsed expression.
struct Compiled {
    param: &'static SearchParam,
    parts: Vec<Part>,
    /// For composites: per element index, each component's kind and
    /// expression (`(base)[i].select(component)`).
    components: Vec<Vec<(ParamKind, Expr)>>,
}

/// Splits an expression at its top-level `|` operators.
fn union_parts(expr: &str) -> Vec<&str> {
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    let mut parts = Vec::new();
    for (i, c) in expr.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            '|' if !quoted && depth == 0 => {
                parts.push(expr[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(expr[start..].trim());
    parts
}

/// Whether a union part can apply to `ty`: it starts with the type's name
/// (or `Resource`), possibly inside parentheses.
fn applies(part: &str, ty: ResourceType) -> bool {
    let head = part.trim_start_matches('(');
    let name: String = head
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    name == ty.as_str()
        || name == "Resource"
        || name == "DomainResource"
        || ResourceType::parse(&name).is_none()
}

fn compile_part(part: &str) -> Option<Part> {
    const FILTER: &str = ".where(resolve() is ";
    let (text, resolve_is) = match part.rfind(FILTER) {
        Some(at) if part.ends_with(')') => {
            let t = part[at + FILTER.len()..part.len() - 1].trim();
            (&part[..at], Some(ResourceType::parse(t)?))
        }
        _ => (part, None),
    };
    Some(Part {
        expr: gp_fhirpath::parse(text).ok()?,
        resolve_is,
    })
}

type Plans = HashMap<ResourceType, Arc<Vec<Compiled>>>;

/// A List's entries marked deleted (`entry.deleted`, in a list of changes):
/// indexed as `item:deleted` so that `_list` leaves them out
/// (search.html#list), while `item` keeps the specification's expression.
static DELETED_ITEMS: LazyLock<Option<Expr>> =
    LazyLock::new(|| gp_fhirpath::parse("entry.where(deleted = true).item").ok());

static PLANS: LazyLock<RwLock<Plans>> = LazyLock::new(|| RwLock::new(HashMap::new()));

/// Parameters stored as columns rather than index rows.
const COLUMNS: [&str; 2] = ["_id", "_lastUpdated"];

fn plan(ty: ResourceType) -> Arc<Vec<Compiled>> {
    if let Some(p) = PLANS.read().ok().and_then(|m| m.get(&ty).cloned()) {
        return p;
    }
    let compiled: Vec<Compiled> = registry::params(ty)
        .iter()
        .filter(|p| !COLUMNS.contains(&p.code) && p.kind != ParamKind::Special)
        .filter_map(|p| {
            let expression = p.expression?;
            let parts: Vec<Part> = union_parts(expression)
                .into_iter()
                .filter(|part| applies(part, ty))
                .filter_map(compile_part)
                .collect();
            if parts.is_empty() {
                return None;
            }
            let components = if p.kind == ParamKind::Composite {
                (0..MAX_COMPOSITE_ELEMENTS)
                    .map(|i| {
                        p.components
                            .iter()
                            .filter_map(|(url, rel)| {
                                let kind =
                                    registry::by_url(ty, url).map_or(ParamKind::Token, |c| c.kind);
                                Some((
                                    kind,
                                    gp_fhirpath::parse(&format!(
                                        "({expression})[{i}].select({rel})"
                                    ))
                                    .ok()?,
                                ))
                            })
                            .collect()
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Some(Compiled {
                param: p,
                parts,
                components,
            })
        })
        .collect();
    let compiled = Arc::new(compiled);
    if let Ok(mut m) = PLANS.write() {
        m.insert(ty, compiled.clone());
    }
    compiled
}

/// The index entries of a resource.
pub fn extract(resource: &Resource) -> Vec<IndexEntry> {
    extract_in(resource, &|_| None)
}

/// The type a reference that does not say it (a Bundle entry's
/// `urn:uuid:` fullUrl, say) points at, when the caller knows.
pub type TypeOf<'a> = dyn Fn(&str) -> Option<ResourceType> + 'a;

/// As [`extract`], for a resource among others whose types `type_of`
/// knows: a transaction's entries refer to each other by `urn:uuid:`
/// fullUrls, and parameters such as `Condition.subject.where(resolve() is
/// Patient)` (`patient`) must still find those references.
pub fn extract_in(resource: &Resource, type_of: &TypeOf<'_>) -> Vec<IndexEntry> {
    extract_json_in(resource.resource_type(), resource.as_json(), type_of)
}

/// The index entries of a resource given as JSON of type `ty`.
pub fn extract_json(ty: ResourceType, json: &Value) -> Vec<IndexEntry> {
    extract_json_in(ty, json, &|_| None)
}

fn extract_json_in(ty: ResourceType, json: &Value, type_of: &TypeOf<'_>) -> Vec<IndexEntry> {
    let ctx = EvalContext::default();
    let mut out = Vec::new();
    let mut group = 0u32;
    for c in plan(ty).iter() {
        for part in &c.parts {
            let Ok(items) = gp_fhirpath::evaluate(&part.expr, json, &ctx) else {
                continue;
            };
            if c.param.kind == ParamKind::Composite {
                composite(c, json, items.len(), &ctx, &mut group, &mut out);
                continue;
            }
            for item in &items {
                if let Some(t) = part.resolve_is
                    && !values::refers_to(item, t, type_of)
                {
                    continue;
                }
                values::push(c.param.code, c.param.kind, item, &mut group, &mut out);
            }
        }
    }
    if ty.as_str() == "List"
        && let Some(expr) = DELETED_ITEMS.as_ref()
        && let Ok(items) = gp_fhirpath::evaluate(expr, json, &ctx)
    {
        for item in &items {
            values::push(
                "item:deleted",
                ParamKind::Reference,
                item,
                &mut group,
                &mut out,
            );
        }
    }
    out.extend(gp_fhir::search::index::text_entries(ty, json));
    out
}

/// A composite: the components of each element of the base expression,
/// grouped so that they match together.
fn composite(
    c: &Compiled,
    json: &Value,
    n: usize,
    ctx: &EvalContext<'_>,
    group: &mut u32,
    out: &mut Vec<IndexEntry>,
) {
    for components in c.components.iter().take(n) {
        *group += 1;
        let g = *group;
        let mut parts = Vec::new();
        for (k, (kind, expr)) in components.iter().enumerate() {
            let Ok(items) = gp_fhirpath::evaluate(expr, json, ctx) else {
                continue;
            };
            let code = format!("{}${k}", c.param.code);
            for item in &items {
                let mut sink = Vec::new();
                let mut scratch = 0;
                values::push(&code, *kind, item, &mut scratch, &mut sink);
                parts.extend(sink.into_iter().map(|mut e| {
                    e.group = g;
                    e
                }));
            }
        }
        out.extend(parts);
    }
}

/// Converts a FHIRPath item into the entries of a parameter, for callers
/// that evaluate expressions themselves.
pub fn entries_of(code: &str, kind: ParamKind, item: &Item<'_>) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    let mut group = 0;
    values::push(code, kind, item, &mut group, &mut out);
    out
}

/// A value's entries, for tests and diagnostics: `(code, value)` pairs.
pub fn describe(entries: &[IndexEntry]) -> Vec<(String, IndexValue)> {
    entries
        .iter()
        .map(|e| (e.code.clone(), e.value.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
