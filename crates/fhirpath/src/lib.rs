//! FHIRPath over FHIR R4 JSON.
//!
//! Implements the FHIRPath normative release (http://hl7.org/fhirpath/N1)
//! and the FHIR R4 additions (http://hl7.org/fhir/R4/fhirpath.html):
//! `resolve()`, `extension()`, `ofType()`, `as`/`is` over FHIR types,
//! `memberOf()` when a [`Terminology`] is given, and quantities with the
//! UCUM units comparisons need. A few FHIRPath 2.0 functions the R4 test
//! suite uses (`lowBoundary()`, `precision()`, `encode()`...) are here too.
//!
//! Parse once, evaluate many times:
//!
//! ```
//! let expr = gp_fhirpath::parse("Patient.name.where(use = 'official').family").unwrap();
//! let patient = serde_json::json!({
//!     "resourceType": "Patient",
//!     "name": [{"use": "official", "family": "Chalmers"}]
//! });
//! let items = gp_fhirpath::evaluate(&expr, &patient, &Default::default()).unwrap();
//! assert_eq!(items[0].type_name(), "string");
//! ```
//!
//! Results are [`Item`]s: System values, or [`Node`]s pointing into the
//! JSON with their FHIR type (`HumanName`, `Reference`, `dateTime`...),
//! taken from the element definitions gp-fhir embeds.
//!
//! This crate is pure: no IO, no async, no SQL, no HTTP. A bad expression
//! is a [`ParseError`]; evaluation never panics, whatever the input.

mod check;
mod codec;
mod eval;
mod functions;
mod lexer;
mod library;
mod model;
mod ops;
mod parser;
mod quantity;
mod temporal;
mod value;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

pub use model::TypeRef;
pub use quantity::Quantity;
pub use temporal::{Precision, Temporal, TemporalKind};
pub use value::{Item, Node, TypeInfo};

/// An expression that is not valid FHIRPath syntax.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("FHIRPath syntax error: {0}")]
pub struct ParseError(String);

impl ParseError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        ParseError(msg.into())
    }
}

/// An expression that failed on its input: a collection where one item
/// was needed, operands of the wrong types, an unknown function or type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("FHIRPath evaluation error: {0}")]
pub struct EvalError(String);

impl EvalError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        EvalError(msg.into())
    }
}

/// A parsed expression, ready to evaluate any number of times.
#[derive(Clone)]
pub struct Expr {
    ast: parser::Ast,
    source: String,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Checks the expression against a resource type, as FHIRPath's strict
    /// mode does: every path name must be defined for the type it is taken
    /// from, a leading type name must be the context's, an `iif()`
    /// criterion must be able to be Boolean, and ordered functions must not
    /// follow `children()` or `descendants()`.
    pub fn check(&self, resource_type: &str) -> Result<(), EvalError> {
        check::check(&self.ast, resource_type)
    }
}

impl std::str::FromStr for Expr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses a FHIRPath expression.
pub fn parse(expr: &str) -> Result<Expr, ParseError> {
    Ok(Expr {
        ast: parser::parse_ast(expr)?,
        source: expr.to_owned(),
    })
}

/// Answers `memberOf()`: whether a code is in a value set. `None` when the
/// terminology cannot tell (unknown value set).
pub trait Terminology {
    fn member_of(&self, system: Option<&str>, code: &str, value_set: &str) -> Option<bool>;
}

/// What an evaluation may use beyond the resource: `%`-variables, a
/// terminology, a fixed clock.
#[derive(Default)]
pub struct EvalContext<'t> {
    variables: BTreeMap<String, Vec<Item<'static>>>,
    terminology: Option<&'t dyn Terminology>,
    now: Option<Temporal>,
}

impl<'t> EvalContext<'t> {
    /// Sets `%name` (without the `%`).
    pub fn with_variable(mut self, name: &str, value: Vec<Item<'static>>) -> Self {
        self.variables.insert(name.to_owned(), value);
        self
    }

    pub fn with_terminology(mut self, terminology: &'t dyn Terminology) -> Self {
        self.terminology = Some(terminology);
        self
    }

    /// Fixes what `now()`, `today()` and `timeOfDay()` return.
    pub fn with_now(mut self, now: Temporal) -> Self {
        self.now = Some(now);
        self
    }
}

/// Evaluates `expr` on `resource` (a FHIR resource as JSON; `null` for no
/// input). The focus, `%resource` and `%context` are the resource.
pub fn evaluate<'a>(
    expr: &Expr,
    resource: &'a Value,
    ctx: &EvalContext<'_>,
) -> Result<Vec<Item<'a>>, EvalError> {
    let root = (!resource.is_null()).then(|| Item::Node(Node::resource(resource)));
    let ev = eval::Evaluator {
        ctx,
        root: root.clone(),
        now: ctx.now.clone().unwrap_or_else(temporal::now_utc),
    };
    let frame = eval::Frame {
        this: root.clone(),
        index: None,
        total: None,
    };
    let input: Vec<Item<'a>> = root.into_iter().collect();
    ev.eval(&expr.ast, &input, &frame)
}

/// Evaluates `expr` with `focus`, a node inside `resource`, as its input
/// and `$this`: how an element's invariants are evaluated
/// (ElementDefinition.constraint, whose context is the element).
/// `%resource` is `resource`. `focus_type` is the node's type (see
/// [`TypeRef::of_element`]); without it, navigation below the focus
/// cannot tell choice elements or primitive types apart.
pub fn evaluate_at<'a>(
    expr: &Expr,
    resource: &'a Value,
    focus: &'a Value,
    focus_type: Option<TypeRef>,
    ctx: &EvalContext<'_>,
) -> Result<Vec<Item<'a>>, EvalError> {
    let root = (!resource.is_null()).then(|| Item::Node(Node::resource(resource)));
    let ev = eval::Evaluator {
        ctx,
        root,
        now: ctx.now.clone().unwrap_or_else(temporal::now_utc),
    };
    let this = Item::Node(Node::new(focus, None, focus_type));
    let frame = eval::Frame {
        this: Some(this.clone()),
        index: None,
        total: None,
    };
    ev.eval(&expr.ast, &[this], &frame)
}

#[cfg(test)]
mod tests;
