//! The function library (http://hl7.org/fhirpath/N1/#functions) and the
//! FHIR additions (http://hl7.org/fhir/R4/fhirpath.html#functions):
//! existence, filtering and projection, subsetting, combining, types,
//! tree navigation, utilities. String, math and conversion functions are
//! in `library`.

use serde_json::Value;

use crate::EvalError;
use crate::eval::{Evaluator, Frame, Items, Res, children};
use crate::library;
use crate::model;
use crate::ops::{self, contains_item, to_bool, union};
use crate::parser::{Ast, TypeSpec};
use crate::value::{Item, Node, TypeInfo};

fn arity(name: &str, args: &[Ast], min: usize, max: usize) -> Result<(), EvalError> {
    if args.len() < min || args.len() > max {
        return Err(EvalError::new(format!(
            "wrong number of arguments to {name}()"
        )));
    }
    Ok(())
}

pub(crate) fn call<'a>(
    ev: &Evaluator<'a, '_>,
    name: &str,
    input: Items<'a>,
    args: &[Ast],
    frame: &Frame<'a>,
) -> Res<'a> {
    // Arguments that are not iterated are evaluated against the enclosing `$this`.
    let arg = |i: usize| -> Res<'a> {
        match args.get(i) {
            Some(a) => ev.eval(a, &frame.this_items(), frame),
            None => Ok(Vec::new()),
        }
    };
    let boolean = |b: bool| Ok(vec![Item::Boolean(b)]);
    match name {
        "empty" => boolean(input.is_empty()),
        "exists" => {
            arity(name, args, 0, 1)?;
            if args.is_empty() {
                return boolean(!input.is_empty());
            }
            let kept = filter(ev, &input, &args[0], frame)?;
            boolean(!kept.is_empty())
        }
        "all" => {
            arity(name, args, 1, 1)?;
            for (i, item) in input.iter().enumerate() {
                let r = ev.eval(
                    &args[0],
                    std::slice::from_ref(item),
                    &iteration(frame, item, i),
                )?;
                if to_bool(&r)? != Some(true) {
                    return boolean(false);
                }
            }
            boolean(true)
        }
        "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
            let mut values = Vec::new();
            for item in &input {
                match item.to_system() {
                    Some(Item::Boolean(b)) => values.push(b),
                    _ => return Err(EvalError::new(format!("{name}() needs Booleans"))),
                }
            }
            boolean(match name {
                "allTrue" => values.iter().all(|b| *b),
                "anyTrue" => values.iter().any(|b| *b),
                "allFalse" => values.iter().all(|b| !*b),
                _ => values.iter().any(|b| !*b),
            })
        }
        "subsetOf" => {
            let other = arg(0)?;
            boolean(input.iter().all(|x| contains_item(&other, x)))
        }
        "supersetOf" => {
            let other = arg(0)?;
            boolean(other.iter().all(|x| contains_item(&input, x)))
        }
        "count" => Ok(vec![Item::Integer(input.len() as i64)]),
        "distinct" => Ok(union(input, Vec::new())),
        "isDistinct" => {
            let n = input.len();
            boolean(union(input, Vec::new()).len() == n)
        }
        "where" => {
            arity(name, args, 1, 1)?;
            filter(ev, &input, &args[0], frame)
        }
        "select" => {
            arity(name, args, 1, 1)?;
            let mut out = Vec::new();
            for (i, item) in input.iter().enumerate() {
                out.extend(ev.eval(
                    &args[0],
                    std::slice::from_ref(item),
                    &iteration(frame, item, i),
                )?);
            }
            Ok(out)
        }
        "repeat" => {
            arity(name, args, 1, 1)?;
            let mut out: Items<'a> = Vec::new();
            let mut queue = input;
            while !queue.is_empty() {
                let mut next = Vec::new();
                for (i, item) in queue.iter().enumerate() {
                    for r in ev.eval(
                        &args[0],
                        std::slice::from_ref(item),
                        &iteration(frame, item, i),
                    )? {
                        if !contains_item(&out, &r) {
                            out.push(r.clone());
                            next.push(r);
                        }
                    }
                }
                queue = next;
            }
            Ok(out)
        }
        "ofType" => as_type(input, &type_arg(args)?, false),
        "as" => as_type(input, &type_arg(args)?, true),
        "is" => is_type(input, &type_arg(args)?),
        "single" => match input.len() {
            0 | 1 => Ok(input),
            _ => Err(EvalError::new("single() on a collection of several items")),
        },
        "first" => Ok(input.into_iter().take(1).collect()),
        "last" => Ok(input.into_iter().last().into_iter().collect()),
        "tail" => Ok(input.into_iter().skip(1).collect()),
        "skip" | "take" => {
            let n = match ops::singleton(&arg(0)?)? {
                Some(Item::Integer(n)) => n,
                _ => return Err(EvalError::new(format!("{name}() needs an integer"))),
            };
            let n = usize::try_from(n.max(0)).unwrap_or(0);
            Ok(if name == "skip" {
                input.into_iter().skip(n).collect()
            } else {
                input.into_iter().take(n).collect()
            })
        }
        "intersect" => {
            let other = arg(0)?;
            let kept = input
                .into_iter()
                .filter(|x| contains_item(&other, x))
                .collect();
            Ok(union(kept, Vec::new()))
        }
        "exclude" => {
            let other = arg(0)?;
            Ok(input
                .into_iter()
                .filter(|x| !contains_item(&other, x))
                .collect())
        }
        "union" => Ok(union(input, arg(0)?)),
        "combine" => {
            let mut out = input;
            out.extend(arg(0)?);
            Ok(out)
        }
        "iif" => iif(ev, input, args, frame),
        "not" => match to_bool(&input)? {
            Some(b) => boolean(!b),
            None => Ok(Vec::new()),
        },
        "children" => {
            let mut out = Vec::new();
            for item in &input {
                all_children(item, &mut out)?;
            }
            Ok(out)
        }
        "descendants" => {
            let mut out = Vec::new();
            let mut queue = input;
            while !queue.is_empty() {
                let mut next = Vec::new();
                for item in &queue {
                    all_children(item, &mut next)?;
                }
                out.extend(next.iter().cloned());
                queue = next;
            }
            Ok(out)
        }
        "trace" => Ok(input),
        "join" => {
            let sep = match ops::singleton(&arg(0)?)? {
                Some(Item::String(s)) => s,
                None => String::new(),
                Some(_) => return Err(EvalError::new("join() needs a string separator")),
            };
            let mut parts = Vec::with_capacity(input.len());
            for item in &input {
                match item.to_system() {
                    Some(Item::String(s)) => parts.push(s),
                    _ => return Err(EvalError::new("join() needs strings")),
                }
            }
            Ok(vec![Item::String(parts.join(&sep))])
        }
        "aggregate" => {
            arity(name, args, 1, 2)?;
            let mut total = arg(1)?;
            for (i, item) in input.iter().enumerate() {
                let mut f = iteration(frame, item, i);
                f.total = Some(total);
                total = ev.eval(&args[0], std::slice::from_ref(item), &f)?;
            }
            Ok(total)
        }
        "sort" => sort(ev, input, args, frame),
        "hasValue" => boolean(
            matches!(&input[..], [Item::Node(n)] if !n.json().is_null() && !n.json().is_object()),
        ),
        "getValue" => Ok(input
            .iter()
            .filter(|i| matches!(i, Item::Node(n) if !n.json().is_object()))
            .filter_map(Item::to_system)
            .collect()),
        "extension" => {
            let url = match ops::singleton(&arg(0)?)? {
                Some(Item::String(u)) => u,
                _ => return Err(EvalError::new("extension() needs a url")),
            };
            let mut out = Vec::new();
            for item in &input {
                let mut exts = Vec::new();
                children(item, "extension", &mut exts)?;
                for e in exts {
                    if matches!(&e, Item::Node(n) if n.json().get("url").and_then(Value::as_str) == Some(url.as_str()))
                    {
                        out.push(e);
                    }
                }
            }
            Ok(out)
        }
        "resolve" => Ok(input.iter().filter_map(|i| resolve(ev, i)).collect()),
        "memberOf" => {
            let vs = match ops::singleton(&arg(0)?)? {
                Some(Item::String(u)) => u,
                _ => return Err(EvalError::new("memberOf() needs a value set url")),
            };
            let Some(term) = ev.ctx.terminology else {
                return Ok(Vec::new());
            };
            Ok(input
                .iter()
                .filter_map(|i| member_of(term, i, &vs))
                .map(Item::Boolean)
                .collect())
        }
        "conformsTo" => {
            let url = match ops::singleton(&arg(0)?)? {
                Some(Item::String(u)) => u,
                _ => return Err(EvalError::new("conformsTo() needs a url")),
            };
            let Some(ty) = url
                .strip_prefix("http://hl7.org/fhir/StructureDefinition/")
                .filter(|t| model::is_fhir_type(t))
            else {
                return Err(EvalError::new(format!("unknown profile {url}")));
            };
            Ok(input
                .iter()
                .map(|i| Item::Boolean(matches!(i, Item::Node(n) if n.fhir_type().is_some_and(|t| model::derives_from(t, ty)))))
                .collect())
        }
        "type" => Ok(input.iter().map(type_of).collect()),
        "htmlChecks" => boolean(true),
        "now" => Ok(vec![Item::Temporal(ev.now.clone())]),
        "today" => {
            let mut t = ev.now.clone();
            t.kind = crate::temporal::TemporalKind::Date;
            t.precision = crate::temporal::Precision::Day;
            t.offset = None;
            Ok(vec![Item::Temporal(t)])
        }
        "timeOfDay" => {
            let mut t = ev.now.clone();
            t.kind = crate::temporal::TemporalKind::Time;
            t.offset = None;
            Ok(vec![Item::Temporal(t)])
        }
        _ => {
            let mut values = Vec::with_capacity(args.len());
            for i in 0..args.len() {
                values.push(arg(i)?);
            }
            library::call(name, input, values)
        }
    }
}

/// The frame for one item of an iterating function.
fn iteration<'a>(frame: &Frame<'a>, item: &Item<'a>, index: usize) -> Frame<'a> {
    Frame {
        this: Some(item.clone()),
        index: Some(index),
        total: frame.total.clone(),
    }
}

fn filter<'a>(
    ev: &Evaluator<'a, '_>,
    input: &[Item<'a>],
    criteria: &Ast,
    frame: &Frame<'a>,
) -> Res<'a> {
    let mut out = Vec::new();
    for (i, item) in input.iter().enumerate() {
        let r = ev.eval(
            criteria,
            std::slice::from_ref(item),
            &iteration(frame, item, i),
        )?;
        if to_bool(&r)? == Some(true) {
            out.push(item.clone());
        }
    }
    Ok(out)
}

fn iif<'a>(ev: &Evaluator<'a, '_>, input: Items<'a>, args: &[Ast], frame: &Frame<'a>) -> Res<'a> {
    arity("iif", args, 2, 3)?;
    if input.len() > 1 {
        return Err(EvalError::new("iif() on a collection of several items"));
    }
    let (focus, f) = match input.first() {
        Some(item) => (
            input.clone(),
            Frame {
                this: Some(item.clone()),
                ..frame.clone()
            },
        ),
        None => (frame.this_items(), frame.clone()),
    };
    let criterion = ev.eval(&args[0], &focus, &f)?;
    if criterion.len() > 1 {
        return Err(EvalError::new("iif() criterion is a collection"));
    }
    if to_bool(&criterion)? == Some(true) {
        ev.eval(&args[1], &focus, &f)
    } else {
        match args.get(2) {
            Some(a) => ev.eval(a, &focus, &f),
            None => Ok(Vec::new()),
        }
    }
}

fn sort<'a>(ev: &Evaluator<'a, '_>, input: Items<'a>, args: &[Ast], frame: &Frame<'a>) -> Res<'a> {
    let mut keyed = Vec::with_capacity(input.len());
    for (i, item) in input.into_iter().enumerate() {
        let mut keys = Vec::new();
        if args.is_empty() {
            keys.push((item.to_system(), false));
        }
        for a in args {
            // A leading minus on a sort key sorts descending.
            let (expr, desc) = match a {
                Ast::Negate(inner) => (&**inner, true),
                other => (other, false),
            };
            let r = ev.eval(
                expr,
                std::slice::from_ref(&item),
                &iteration(frame, &item, i),
            )?;
            keys.push((ops::singleton(&r)?, desc));
        }
        keyed.push((keys, item));
    }
    let mut error = None;
    keyed.sort_by(|(ka, _), (kb, _)| {
        for ((a, desc), (b, _)) in ka.iter().zip(kb) {
            // An empty key sorts first in either direction.
            let o = match (a, b) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => return std::cmp::Ordering::Less,
                (Some(_), None) => return std::cmp::Ordering::Greater,
                (Some(a), Some(b)) => match ops::compare(a, b) {
                    Ok(o) => o.unwrap_or(std::cmp::Ordering::Equal),
                    Err(e) => {
                        error = Some(e);
                        std::cmp::Ordering::Equal
                    }
                },
            };
            let o = if *desc { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    match error {
        Some(e) => Err(e),
        None => Ok(keyed.into_iter().map(|(_, item)| item).collect()),
    }
}

fn all_children<'a>(item: &Item<'a>, out: &mut Items<'a>) -> Result<(), EvalError> {
    let Item::Node(n) = item else {
        return Ok(());
    };
    let Value::Object(obj) = n.json() else {
        return Ok(());
    };
    let mut seen = std::collections::HashSet::new();
    for key in obj.keys() {
        let key = key.strip_prefix('_').unwrap_or(key);
        if key == "resourceType" {
            continue;
        }
        let name = match n.type_ref() {
            Some(t) => choice_stem(&t, key),
            None => key,
        };
        if seen.insert(name.to_owned()) {
            children(item, name, out)?;
        }
    }
    Ok(())
}

/// `value` for a JSON key `valueQuantity` when the type has `value[x]`.
fn choice_stem<'k>(parent: &model::TypeRef, key: &'k str) -> &'k str {
    if model::element(parent, key).is_some() {
        return key;
    }
    (1..key.len())
        .rev()
        .map(|i| &key[..i])
        .find(|stem| model::element(parent, stem).is_some_and(|e| e.choice))
        .unwrap_or(key)
}

fn type_arg(args: &[Ast]) -> Result<TypeSpec, EvalError> {
    match args {
        [a] => a
            .as_type_spec()
            .ok_or_else(|| EvalError::new("expected a type name")),
        _ => Err(EvalError::new("expected one type argument")),
    }
}

/// Whether `item` is of the type `spec` names, following inheritance when
/// `inherit` (`is`) and exactly for primitives otherwise (`as`, `ofType`).
fn has_type(item: &Item<'_>, spec: &TypeSpec, inherit: bool) -> Result<bool, EvalError> {
    let ns = spec.namespace.as_deref();
    let system_names = [
        "Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity",
    ];
    let is_system = system_names.contains(&spec.name.as_str());
    let is_fhir = model::is_fhir_type(&spec.name);
    let known = match ns {
        Some("System") => is_system,
        Some("FHIR") => is_fhir,
        None => is_system || is_fhir,
        Some(_) => false,
    };
    if !known {
        // An unqualified name that is no type at all is an error; a type
        // asked for in a namespace that lacks it is simply not matched.
        if ns.is_none() || ns.is_some_and(|n| n != "System" && n != "FHIR") {
            return Err(EvalError::new(format!("unknown type {}", spec.name)));
        }
        return Ok(false);
    }
    Ok(match item {
        Item::Node(n) => {
            let Some(code) = n.fhir_type() else {
                return Ok(false);
            };
            let primitive = n.type_ref().is_some_and(|t| t.is_primitive());
            // R4 search parameters write `Condition.onset.as(DateTime)` for
            // the FHIR `dateTime`, so `as`/`ofType` with an unqualified
            // System name take the FHIR primitive it corresponds to; `is`
            // keeps the two apart (`Patient.active.is(Boolean)` is false).
            if !inherit && ns.is_none() && is_system && primitive {
                let mut lower = spec.name.clone();
                lower[..1].make_ascii_lowercase();
                return Ok(code == lower);
            }
            if ns == Some("System") || (ns.is_none() && !is_fhir) {
                return Ok(false);
            }
            if inherit || !primitive {
                model::derives_from(code, &spec.name)
            } else {
                code == spec.name
            }
        }
        other => ns != Some("FHIR") && is_system && other.system_type() == spec.name,
    })
}

pub(crate) fn is_type<'a>(input: Items<'a>, spec: &TypeSpec) -> Res<'a> {
    match input.as_slice() {
        [] => Ok(Vec::new()),
        [item] => Ok(vec![Item::Boolean(has_type(item, spec, true)?)]),
        _ => Err(EvalError::new("is() on a collection of several items")),
    }
}

/// `as` (single item, `single` set) and `ofType()` (any number).
pub(crate) fn as_type<'a>(input: Items<'a>, spec: &TypeSpec, single: bool) -> Res<'a> {
    if single && input.len() > 1 {
        return Err(EvalError::new("as() on a collection of several items"));
    }
    let mut out = Vec::new();
    for item in input {
        if has_type(&item, spec, false)? {
            out.push(item);
        }
    }
    if out.is_empty() {
        // An unknown type name is an error even on an empty input.
        has_type(&Item::Boolean(false), spec, false)?;
    }
    Ok(out)
}

fn type_of<'a>(item: &Item<'a>) -> Item<'a> {
    match item {
        Item::Node(n) if n.fhir_type().is_some() => Item::Type(TypeInfo {
            namespace: "FHIR",
            name: item.type_name(),
        }),
        other => Item::Type(TypeInfo {
            namespace: "System",
            name: other
                .to_system()
                .map_or_else(String::new, |s| s.system_type().to_owned()),
        }),
    }
}

/// `resolve()`: a contained resource (`#id`) or a Bundle entry of the
/// resource evaluated on, found by `fullUrl` or `type/id`.
fn resolve<'a>(ev: &Evaluator<'a, '_>, item: &Item<'a>) -> Option<Item<'a>> {
    let reference = match item {
        Item::Node(n) => match n.json() {
            Value::Object(o) => o.get("reference")?.as_str()?,
            Value::String(s) => s.as_str(),
            _ => return None,
        },
        Item::String(s) => s.as_str(),
        _ => return None,
    };
    let Some(Item::Node(root)) = &ev.root else {
        return None;
    };
    let root = root.json();
    if let Some(id) = reference.strip_prefix('#') {
        return root
            .get("contained")?
            .as_array()?
            .iter()
            .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
            .map(|c| Item::Node(Node::resource(c)));
    }
    root.get("entry")?.as_array()?.iter().find_map(|e| {
        let res = e.get("resource")?;
        let full = e.get("fullUrl").and_then(Value::as_str);
        let typed = format!(
            "{}/{}",
            res.get("resourceType")?.as_str()?,
            res.get("id").and_then(Value::as_str).unwrap_or("")
        );
        let hit = full == Some(reference)
            || reference == typed
            || reference.ends_with(&format!("/{typed}"));
        hit.then(|| Item::Node(Node::resource(res)))
    })
}

fn member_of(term: &dyn crate::Terminology, item: &Item<'_>, vs: &str) -> Option<bool> {
    match item {
        Item::Node(n) => match n.json() {
            Value::String(code) => term.member_of(None, code, vs),
            Value::Object(o) if o.contains_key("coding") => {
                let codings = o.get("coding")?.as_array()?;
                let mut any = false;
                for c in codings {
                    let code = c.get("code").and_then(Value::as_str)?;
                    any |= term.member_of(c.get("system").and_then(Value::as_str), code, vs)?;
                }
                Some(any)
            }
            Value::Object(o) => {
                let code = o.get("code").and_then(Value::as_str)?;
                term.member_of(o.get("system").and_then(Value::as_str), code, vs)
            }
            _ => None,
        },
        Item::String(code) => term.member_of(None, code, vs),
        _ => None,
    }
}
