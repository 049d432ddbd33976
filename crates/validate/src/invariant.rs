//! FHIRPath invariants (http://hl7.org/fhir/R4/conformance-rules.html#constraints):
//! every `constraint` of severity `error` on an element is evaluated with
//! the element as focus and `%resource` the resource holding it; a result
//! of `false` is an error. `ele-1` ("All FHIR elements must have a @value
//! or children") is checked natively by the walk, on every element.
//!
//! Each expression is parsed once. One that does not parse, or whose
//! evaluation fails on some input, cannot be checked: it is skipped, and
//! [`unsupported`] lists the former (an evaluation failure is reported as
//! an `information` issue, which never blocks a write).

use std::collections::HashMap;
use std::sync::LazyLock;

use gp_fhir::definitions::{self, Constraint};
use gp_fhir::outcome::Issue;
use gp_fhir::{IssueType, Severity};
use gp_fhirpath::{EvalContext, Expr, Item, TypeRef};
use serde_json::Value;

/// Invariants R4 published with a defect, and the expression checked
/// instead. `que-7` asks `answer is Boolean`, the System type, which a FHIR
/// `boolean` is not (FHIRPath's own suite: `Patient.active.is(Boolean)` is
/// false), so it would reject every valid `exists` condition; R5 corrected
/// it to `answer is boolean`. `dom-3` applies `as()` to
/// `descendants()`, many items, which FHIRPath makes an error; R4B and R5
/// say `ofType()`, the filter it means.
const CORRECTED: &[(&str, &str)] = &[
    ("que-7", "operator = 'exists' implies (answer is boolean)"),
    (
        "dom-3",
        "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().ofType(canonical) | %resource.descendants().ofType(uri) | %resource.descendants().ofType(url))) or descendants().where(reference = '#').exists() or descendants().where(ofType(canonical) = '#').exists() or descendants().where(ofType(canonical) = '#').exists()).not()).trace('unmatched', id).empty()",
    ),
];

/// Parsed expressions by their source text.
static PARSED: LazyLock<HashMap<&'static str, Result<Expr, String>>> = LazyLock::new(|| {
    let mut out = HashMap::new();
    for c in all() {
        let source = CORRECTED
            .iter()
            .find(|(k, _)| *k == c.key)
            .map_or(c.expression.as_str(), |(_, e)| e);
        out.entry(c.expression.as_str())
            .or_insert_with(|| gp_fhirpath::parse(source).map_err(|e| e.to_string()));
    }
    out
});

fn all() -> impl Iterator<Item = &'static Constraint> {
    definitions::all_constraints().map(|(_, c)| c)
}

/// Constraints whose expression does not parse, with the parser's reason.
pub fn unsupported() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = all()
        .filter_map(|c| match PARSED.get(c.expression.as_str()) {
            Some(Err(e)) => Some((c.key.clone(), e.clone())),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Evaluates the invariants of definition path `path` on `focus`, a node
/// of type `ty` inside `resource`, reporting each that fails at `location`.
pub(crate) fn check(
    path: &str,
    resource: &Value,
    focus: &Value,
    ty: Option<TypeRef>,
    location: &str,
    issues: &mut Vec<Issue>,
) {
    for c in definitions::constraints(path) {
        let Some(Ok(expr)) = PARSED.get(c.expression.as_str()) else {
            continue;
        };
        match gp_fhirpath::evaluate_at(expr, resource, focus, ty, &EvalContext::default()) {
            Ok(items) => {
                if is_false(&items) {
                    issues.push(crate::error(
                        IssueType::Invariant,
                        location,
                        format!("{}: {} ({})", c.key, c.human, c.expression),
                    ));
                }
            }
            Err(e) => issues.push(crate::issue(
                Severity::Information,
                IssueType::Informational,
                location,
                format!("invariant {} could not be checked: {e}", c.key),
            )),
        }
    }
}

/// A constraint fails only when it evaluates to `false`; an empty result
/// says nothing (the element it tests is absent).
fn is_false(items: &[Item<'_>]) -> bool {
    match items {
        [item] => matches!(item.to_system(), Some(Item::Boolean(false))),
        _ => false,
    }
}
