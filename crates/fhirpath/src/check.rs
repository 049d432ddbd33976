//! Static checking against a resource type, FHIRPath's "strict" mode
//! (http://hl7.org/fhirpath/N1/#type-safety-and-strict-evaluation): path
//! names that the type does not define, a leading type name that is not
//! the context's, an `iif()` criterion that cannot be Boolean, and ordered
//! functions (`skip()`, `first()`...) applied to unordered `children()`.

use crate::EvalError;
use crate::model::{self, TypeRef};
use crate::parser::{Ast, TypeSpec};
use crate::value::Item;

/// What the checker knows about a collection's items.
#[derive(Clone)]
struct Ty {
    /// The FHIR types the items may have; `None` when not known.
    fhir: Option<Vec<TypeRef>>,
    /// A System type (`String` for a string literal), when known.
    system: Option<&'static str>,
    /// False after `children()`/`descendants()`.
    ordered: bool,
}

impl Ty {
    fn unknown() -> Ty {
        Ty {
            fhir: None,
            system: None,
            ordered: true,
        }
    }

    fn fhir(types: Vec<TypeRef>) -> Ty {
        Ty {
            fhir: Some(types),
            system: None,
            ordered: true,
        }
    }
}

const ORDERED_FUNCTIONS: [&str; 6] = ["first", "last", "tail", "skip", "take", "single"];

pub(crate) fn check(ast: &Ast, resource_type: &str) -> Result<(), EvalError> {
    let root = TypeRef::named(resource_type)
        .ok_or_else(|| EvalError::new(format!("unknown resource type {resource_type}")))?;
    let ty = Ty::fhir(vec![root]);
    infer(ast, &ty, &ty).map(|_| ())
}

fn infer(ast: &Ast, input: &Ty, this: &Ty) -> Result<Ty, EvalError> {
    match ast {
        Ast::Literal(item) => Ok(Ty {
            system: Some(match item {
                Item::String(_) => "String",
                Item::Boolean(_) => "Boolean",
                _ => "Other",
            }),
            ..Ty::unknown()
        }),
        Ast::Ident(name) => {
            let is_type_name = name.starts_with(|c: char| c.is_ascii_uppercase())
                && model::is_fhir_type(name)
                && !model::derives_from(name, "Element");
            if is_type_name {
                if let Some(types) = &input.fhir
                    && !types.iter().any(|t| model::derives_from(t.code, name))
                {
                    return Err(EvalError::new(format!(
                        "{name} is not the type of the context"
                    )));
                }
                return Ok(input.clone());
            }
            member(input, name)
        }
        Ast::Member(base, name) => member(&infer(base, input, this)?, name),
        Ast::Index(base, index) => {
            infer(index, this, this)?;
            let t = infer(base, input, this)?;
            ordered(&t, "[]")?;
            Ok(t)
        }
        Ast::As(operand, spec) => {
            infer(operand, input, this)?;
            Ok(named(spec))
        }
        Ast::Is(operand, _) => {
            infer(operand, input, this)?;
            Ok(Ty::unknown())
        }
        Ast::Negate(operand) => infer(operand, input, this),
        Ast::Binary(_, l, r) => {
            infer(l, input, this)?;
            infer(r, input, this)?;
            Ok(Ty::unknown())
        }
        Ast::Call(target, name, args) => {
            let focus = match target {
                Some(t) => infer(t, input, this)?,
                None => input.clone(),
            };
            call(&focus, name, args, this)
        }
        Ast::This => Ok(this.clone()),
        _ => Ok(Ty::unknown()),
    }
}

fn ordered(t: &Ty, name: &str) -> Result<(), EvalError> {
    if t.ordered {
        Ok(())
    } else {
        Err(EvalError::new(format!(
            "{name} needs an ordered collection; children() and descendants() are unordered"
        )))
    }
}

fn named(spec: &TypeSpec) -> Ty {
    match TypeRef::named(&spec.name).filter(|_| spec.namespace.as_deref() != Some("System")) {
        Some(t) => Ty::fhir(vec![t]),
        None => Ty::unknown(),
    }
}

fn call(focus: &Ty, name: &str, args: &[Ast], this: &Ty) -> Result<Ty, EvalError> {
    let element = Ty {
        ordered: true,
        ..focus.clone()
    };
    match name {
        "where" | "select" | "all" | "exists" | "repeat" | "aggregate" | "sort" => {
            let mut last = Ty::unknown();
            for a in args {
                last = infer(a, &element, &element)?;
            }
            Ok(match name {
                "where" | "sort" => focus.clone(),
                "select" | "repeat" => last,
                _ => Ty::unknown(),
            })
        }
        "iif" => {
            let mut out = Ty::unknown();
            for (i, a) in args.iter().enumerate() {
                let t = infer(a, this, this)?;
                if i == 0 && t.system.is_some_and(|s| s != "Boolean") {
                    return Err(EvalError::new("the iif() criterion must be Boolean"));
                }
                if i == 1 {
                    out = t;
                }
            }
            Ok(out)
        }
        "as" | "ofType" => Ok(args
            .first()
            .and_then(Ast::as_type_spec)
            .map_or_else(Ty::unknown, |s| named(&s))),
        "is" => Ok(Ty::unknown()),
        "children" | "descendants" => Ok(Ty {
            ordered: false,
            ..Ty::unknown()
        }),
        "distinct" | "trace" | "intersect" | "exclude" => {
            check_args(args, this)?;
            Ok(focus.clone())
        }
        _ if ORDERED_FUNCTIONS.contains(&name) => {
            ordered(focus, &format!("{name}()"))?;
            check_args(args, this)?;
            Ok(focus.clone())
        }
        _ => {
            check_args(args, this)?;
            Ok(Ty::unknown())
        }
    }
}

fn check_args(args: &[Ast], this: &Ty) -> Result<(), EvalError> {
    for a in args {
        infer(a, this, this)?;
    }
    Ok(())
}

fn member(input: &Ty, name: &str) -> Result<Ty, EvalError> {
    let Some(types) = &input.fhir else {
        return Ok(Ty::unknown());
    };
    let mut out = Vec::new();
    let mut untyped = false;
    for t in types {
        let Some(info) = model::element(t, name) else {
            continue;
        };
        for code in &info.types {
            if *code == "Resource" {
                untyped = true;
            } else {
                out.push(model::child_type(info, code));
            }
        }
        if info.types.is_empty() {
            out.push(model::child_type(info, ""));
        }
    }
    if out.is_empty() && !untyped {
        let names: Vec<_> = types.iter().map(|t| t.code).collect();
        return Err(EvalError::new(format!(
            "no element '{name}' in {}",
            names.join(" | ")
        )));
    }
    Ok(if untyped {
        Ty::unknown()
    } else {
        Ty::fhir(out)
    })
}
