//! Validation of FHIR R4 resources (http://hl7.org/fhir/R4/validation.html)
//! against the base StructureDefinitions the specification publishes, as
//! every write and `$validate` (resource-operation-validate.html) need it.
//!
//! What is checked, walking the JSON with the element tree gp-fhir embeds:
//! - structure: unknown elements, arrays where an element repeats and
//!   single values where it does not (json.html), choice elements
//!   (`value[x]` spelled `valueQuantity`, at most one), primitive
//!   extensions (`_birthDate`), contained and Bundle entry resources;
//! - cardinality: `min` and `max` of every element (`required` issues);
//! - primitive formats: the regular expressions and JSON types of the R4
//!   primitive types (datatypes.html#primitive) ([`primitive`]);
//! - required bindings to value sets the specification enumerates
//!   (terminologies.html#required) ([`binding`]);
//! - the FHIRPath invariants of severity `error`
//!   (conformance-rules.html#constraints) ([`invariant`]), `ele-1` natively;
//! - profiles in `meta.profile` the server knows ([`Profiles`]); an
//!   unknown profile is a warning.
//!
//! Issues carry the FHIRPath location of the problem (`Patient.name[0].given[1]`,
//! `Observation.value.ofType(Quantity)`), ready for an OperationOutcome.
//!
//! This crate is pure: no IO, no async. It never panics, whatever the input.

pub mod binding;
pub mod invariant;
pub mod primitive;
mod profile;
mod walk;

use gp_fhir::outcome::Issue;
use gp_fhir::{IssueType, OperationOutcome, Severity};
use serde_json::Value;

pub use profile::{Profile, Profiles};

/// Validates `resource` (a FHIR resource as JSON) against its type's base
/// definition and the profiles in `meta.profile` that [`Profiles::base`]
/// knows. Issues of severity `error` make the resource invalid.
pub fn validate(resource: &Value) -> Vec<Issue> {
    profile::BASE.validate(resource)
}

/// Whether any issue is an error (or fatal).
pub fn has_errors(issues: &[Issue]) -> bool {
    issues
        .iter()
        .any(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
}

/// The issues as an OperationOutcome; one `information` issue saying so
/// when there are none (as `$validate` answers a valid resource).
pub fn outcome(issues: Vec<Issue>) -> OperationOutcome {
    if issues.is_empty() {
        return OperationOutcome::information("no problems: the resource is valid");
    }
    OperationOutcome { issues }
}

/// The errors alone, as the OperationOutcome a rejected write answers, or
/// `None` when the resource may be written (warnings do not block).
pub fn rejection(issues: Vec<Issue>) -> Option<OperationOutcome> {
    let errors: Vec<Issue> = issues
        .into_iter()
        .filter(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
        .collect();
    (!errors.is_empty()).then_some(OperationOutcome { issues: errors })
}

pub(crate) fn issue(
    severity: Severity,
    code: IssueType,
    location: &str,
    diagnostics: String,
) -> Issue {
    Issue {
        severity,
        code,
        diagnostics,
        expression: vec![location.to_owned()],
    }
}

pub(crate) fn error(code: IssueType, location: &str, diagnostics: String) -> Issue {
    issue(Severity::Error, code, location, diagnostics)
}
