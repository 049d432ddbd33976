//! The evaluator: walks the expression tree over collections of items
//! (http://hl7.org/fhirpath/N1/#path-selection), with `$this`, `$index`
//! and `$total` in a frame and `%`-variables from the context.

use serde_json::Value;

use crate::model::{self, TypeRef};
use crate::parser::Ast;
use crate::temporal::Temporal;
use crate::value::{Item, NULL, Node};
use crate::{EvalContext, EvalError, functions, ops};

pub(crate) type Items<'a> = Vec<Item<'a>>;
pub(crate) type Res<'a> = Result<Items<'a>, EvalError>;

pub(crate) struct Evaluator<'a, 'c> {
    pub ctx: &'c EvalContext<'c>,
    /// The resource the expression was evaluated on (`%resource`).
    pub root: Option<Item<'a>>,
    /// One clock reading per evaluation, so `now()` is stable within it.
    pub now: Temporal,
}

/// The iteration variables of the innermost `where`/`select`/... call.
#[derive(Clone)]
pub(crate) struct Frame<'a> {
    pub this: Option<Item<'a>>,
    pub index: Option<usize>,
    pub total: Option<Items<'a>>,
}

impl<'a> Frame<'a> {
    /// Input for an argument evaluated against the enclosing `$this`.
    pub fn this_items(&self) -> Items<'a> {
        self.this.iter().cloned().collect()
    }
}

impl<'a> Evaluator<'a, '_> {
    pub fn eval(&self, ast: &Ast, input: &[Item<'a>], frame: &Frame<'a>) -> Res<'a> {
        match ast {
            Ast::Empty => Ok(Vec::new()),
            Ast::Literal(item) => Ok(vec![item.clone()]),
            Ast::Ident(name) => {
                let mut out = Vec::new();
                for item in input {
                    if is_type_name_of(name, item) {
                        out.push(item.clone());
                    } else {
                        children(item, name, &mut out)?;
                    }
                }
                Ok(out)
            }
            Ast::Member(base, name) => {
                let items = self.eval(base, input, frame)?;
                let mut out = Vec::new();
                for item in &items {
                    children(item, name, &mut out)?;
                }
                Ok(out)
            }
            Ast::Index(base, index) => {
                let items = self.eval(base, input, frame)?;
                let index = self.eval(index, &frame.this_items(), frame)?;
                match index.as_slice() {
                    [] => Ok(Vec::new()),
                    [Item::Integer(i)] => Ok(usize::try_from(*i)
                        .ok()
                        .and_then(|i| items.get(i).cloned())
                        .into_iter()
                        .collect()),
                    _ => Err(EvalError::new("an index must be a single integer")),
                }
            }
            Ast::Call(target, name, args) => {
                let focus = match target {
                    Some(t) => self.eval(t, input, frame)?,
                    None => input.to_vec(),
                };
                functions::call(self, name, focus, args, frame)
            }
            Ast::This => Ok(frame.this_items()),
            Ast::IndexVar => Ok(frame
                .index
                .map(|i| Item::Integer(i as i64))
                .into_iter()
                .collect()),
            Ast::Total => Ok(frame.total.clone().unwrap_or_default()),
            Ast::Var(name) => self.variable(name),
            Ast::Negate(operand) => {
                let items = self.eval(operand, input, frame)?;
                ops::negate(items)
            }
            Ast::Binary(op, lhs, rhs) => ops::binary(self, *op, lhs, rhs, input, frame),
            Ast::Is(operand, spec) => {
                let items = self.eval(operand, input, frame)?;
                functions::is_type(items, spec)
            }
            Ast::As(operand, spec) => {
                let items = self.eval(operand, input, frame)?;
                functions::as_type(items, spec, true)
            }
        }
    }

    fn variable(&self, name: &str) -> Res<'a> {
        let text = |s: &str| Ok(vec![Item::String(s.to_owned())]);
        match name {
            "resource" | "context" | "rootResource" => Ok(self.root.iter().cloned().collect()),
            "ucum" => text("http://unitsofmeasure.org"),
            "sct" => text("http://snomed.info/sct"),
            "loinc" => text("http://loinc.org"),
            _ => {
                if let Some(items) = self.ctx.variables.get(name) {
                    return Ok(items.clone());
                }
                if let Some(vs) = name.strip_prefix("vs-") {
                    return text(&format!("http://hl7.org/fhir/ValueSet/{vs}"));
                }
                if let Some(ext) = name.strip_prefix("ext-") {
                    return text(&format!("http://hl7.org/fhir/StructureDefinition/{ext}"));
                }
                Err(EvalError::new(format!("unknown variable %{name}")))
            }
        }
    }
}

/// Whether a leading identifier names the type of the focus
/// (`Patient.name` on a Patient), rather than a child element.
fn is_type_name_of(name: &str, item: &Item<'_>) -> bool {
    let Item::Node(n) = item else {
        return false;
    };
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && n.fhir_type().is_some_and(|t| model::derives_from(t, name))
}

/// Appends the children of `item` called `name` to `out`
/// (http://hl7.org/fhirpath/N1/#path-selection, with FHIR's choice
/// elements and primitive extensions).
pub(crate) fn children<'a>(
    item: &Item<'a>,
    name: &str,
    out: &mut Items<'a>,
) -> Result<(), EvalError> {
    let node = match item {
        Item::Node(n) => n,
        Item::Type(t) => {
            match name {
                "name" => out.push(Item::String(t.name.clone())),
                "namespace" => out.push(Item::String(t.namespace.to_owned())),
                _ => {}
            }
            return Ok(());
        }
        _ => return Ok(()),
    };
    let Value::Object(obj) = node.value else {
        // A primitive's id and extensions live in its `_name` sibling.
        if let Some(Value::Object(extra)) = node.extra
            && let Some(v) = extra.get(name)
        {
            let ty = node
                .ty
                .and_then(|t| model::element(&t, name))
                .map(|info| model::child_type(info, info.types.first().copied().unwrap_or("")));
            push_values(v, None, ty, out);
        }
        return Ok(());
    };
    let Some(parent) = node.ty else {
        if let Some(v) = obj.get(name) {
            push_values(v, obj.get(&format!("_{name}")), None, out);
        }
        return Ok(());
    };
    let Some(info) = model::element(&parent, name) else {
        if is_choice_spelling(&parent, name) {
            return Err(EvalError::new(format!(
                "'{name}' is a JSON spelling of a choice element; use the element name with as() or ofType()"
            )));
        }
        if let Some(v) = obj.get(name) {
            push_values(v, obj.get(&format!("_{name}")), None, out);
        }
        return Ok(());
    };
    if info.choice {
        for code in &info.types {
            let key = format!("{name}{}", capitalise(code));
            if let Some(v) = obj.get(&key) {
                let ty = model::child_type(info, code);
                push_values(v, obj.get(&format!("_{key}")), Some(ty), out);
            } else if let Some(extra) = obj.get(&format!("_{key}")) {
                push_values(&NULL, Some(extra), Some(model::child_type(info, code)), out);
            }
        }
        return Ok(());
    }
    let code = info.types.first().copied().unwrap_or("");
    let extra = obj.get(&format!("_{name}"));
    let Some(v) = obj.get(name).or(extra.map(|_| &NULL)) else {
        return Ok(());
    };
    let ty = if code == "Resource" {
        None
    } else {
        Some(model::child_type(info, code))
    };
    push_values(v, extra, ty, out);
    Ok(())
}

/// Whether `name` is `stem` + a type of the choice element `stem[x]`.
fn is_choice_spelling(parent: &TypeRef, name: &str) -> bool {
    (1..name.len()).any(|i| {
        let (stem, suffix) = name.split_at(i);
        suffix.starts_with(|c: char| c.is_ascii_uppercase())
            && model::element(parent, stem).is_some_and(|info| {
                info.choice && info.types.iter().any(|t| capitalise(t) == suffix)
            })
    })
}

fn capitalise(code: &str) -> String {
    let mut c = code.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Pushes a JSON value (flattening arrays) with its `_name` sibling; a
/// node typed `None` that holds a resource takes the resource's type.
fn push_values<'a>(
    v: &'a Value,
    extra: Option<&'a Value>,
    ty: Option<TypeRef>,
    out: &mut Items<'a>,
) {
    let node = |value: &'a Value, extra: Option<&'a Value>| {
        let is_resource = value.get("resourceType").is_some();
        if ty.is_none() && is_resource {
            Node::resource(value)
        } else {
            Node::new(value, extra.filter(|e| !e.is_null()), ty)
        }
    };
    match v {
        Value::Array(values) => {
            let extras = extra.and_then(Value::as_array);
            let len = values.len().max(extras.map_or(0, Vec::len));
            for i in 0..len {
                let value = values.get(i).unwrap_or(&NULL);
                let extra = extras.and_then(|e| e.get(i)).filter(|e| !e.is_null());
                if value.is_null() && extra.is_none() {
                    continue;
                }
                out.push(Item::Node(node(value, extra)));
            }
        }
        v => out.push(Item::Node(node(v, extra))),
    }
}
