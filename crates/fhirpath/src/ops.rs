//! Operators (http://hl7.org/fhirpath/N1/#operations): equality and
//! equivalence, comparison, arithmetic (including date arithmetic and
//! quantities), three-valued boolean logic, collections.

use std::cmp::Ordering;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use crate::EvalError;
use crate::eval::{Evaluator, Frame, Items, Res};
use crate::parser::{Ast, BinOp};
use crate::temporal::TemporalKind;
use crate::value::Item;

pub(crate) fn binary<'a>(
    ev: &Evaluator<'a, '_>,
    op: BinOp,
    lhs: &Ast,
    rhs: &Ast,
    input: &[Item<'a>],
    frame: &Frame<'a>,
) -> Res<'a> {
    let l = ev.eval(lhs, input, frame)?;
    let r = ev.eval(rhs, input, frame)?;
    let boolean = |b: Option<bool>| Ok(b.map(Item::Boolean).into_iter().collect());
    match op {
        BinOp::Eq => boolean(equal(&l, &r)),
        BinOp::Ne => boolean(equal(&l, &r).map(|b| !b)),
        BinOp::Equiv => boolean(Some(equivalent(&l, &r))),
        BinOp::NotEquiv => boolean(Some(!equivalent(&l, &r))),
        BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
            let (Some(a), Some(b)) = (singleton(&l)?, singleton(&r)?) else {
                return Ok(Vec::new());
            };
            let ord = compare(&a, &b)?;
            boolean(ord.map(|o| match op {
                BinOp::Lt => o == Ordering::Less,
                BinOp::Gt => o == Ordering::Greater,
                BinOp::Le => o != Ordering::Greater,
                _ => o != Ordering::Less,
            }))
        }
        BinOp::Union => Ok(union(l, r)),
        BinOp::In => membership(&l, &r),
        BinOp::Contains => membership(&r, &l),
        BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => {
            let (a, b) = (to_bool(&l)?, to_bool(&r)?);
            boolean(match op {
                BinOp::And => match (a, b) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                },
                BinOp::Or => match (a, b) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                },
                BinOp::Xor => a.zip(b).map(|(a, b)| a != b),
                _ => match (a, b) {
                    (Some(false), _) | (_, Some(true)) => Some(true),
                    (Some(true), Some(false)) => Some(false),
                    _ => None,
                },
            })
        }
        BinOp::Concat => {
            let text = |items: &Items<'a>| -> Result<String, EvalError> {
                match singleton(items)? {
                    None => Ok(String::new()),
                    Some(Item::String(s)) => Ok(s),
                    Some(_) => Err(EvalError::new("& needs strings")),
                }
            };
            Ok(vec![Item::String(text(&l)? + &text(&r)?)])
        }
        _ => {
            let (Some(a), Some(b)) = (singleton(&l)?, singleton(&r)?) else {
                return Ok(Vec::new());
            };
            Ok(arithmetic(op, a, b)?.into_iter().collect())
        }
    }
}

/// The single System value of a collection; an error for more than one.
pub(crate) fn singleton(items: &[Item<'_>]) -> Result<Option<Item<'static>>, EvalError> {
    match items {
        [] => Ok(None),
        [item] => Ok(item.to_system()),
        _ => Err(EvalError::new("expected a single item, found a collection")),
    }
}

/// A collection as a Boolean (http://hl7.org/fhirpath/N1/#singleton-evaluation-of-collections):
/// empty is unknown, a single non-Boolean item is true.
pub(crate) fn to_bool(items: &[Item<'_>]) -> Result<Option<bool>, EvalError> {
    match items {
        [] => Ok(None),
        [item] => match item.to_system() {
            Some(Item::Boolean(b)) => Ok(Some(b)),
            _ => Ok(Some(true)),
        },
        _ => Err(EvalError::new(
            "expected a single Boolean, found a collection",
        )),
    }
}

pub(crate) fn negate(items: Items<'_>) -> Res<'_> {
    let Some(item) = singleton(&items)? else {
        return Ok(Vec::new());
    };
    Ok(vec![match item {
        Item::Integer(i) => Item::Integer(-i),
        // Negating zero gives zero, not a signed zero.
        Item::Decimal(d) if d.is_zero() => Item::Decimal(d.abs()),
        Item::Decimal(d) => Item::Decimal(-d),
        Item::Quantity(mut q) => {
            q.value = -q.value;
            Item::Quantity(q)
        }
        _ => return Err(EvalError::new("unary minus needs a number or a quantity")),
    }])
}

fn as_decimal(item: &Item<'_>) -> Option<Decimal> {
    match item {
        Item::Integer(i) => Some(Decimal::from(*i)),
        Item::Decimal(d) => Some(*d),
        _ => None,
    }
}

fn arithmetic(
    op: BinOp,
    a: Item<'static>,
    b: Item<'static>,
) -> Result<Option<Item<'static>>, EvalError> {
    let bad = || {
        EvalError::new(format!(
            "{op:?} cannot combine {} and {}",
            a.system_type(),
            b.system_type()
        ))
    };
    let out = match (&a, &b) {
        (Item::Integer(x), Item::Integer(y)) => match op {
            BinOp::Add => x.checked_add(*y).map(Item::Integer),
            BinOp::Sub => x.checked_sub(*y).map(Item::Integer),
            BinOp::Mul => x.checked_mul(*y).map(Item::Integer),
            BinOp::Div => Decimal::from(*x)
                .checked_div(Decimal::from(*y))
                .map(Item::Decimal),
            BinOp::IntDiv => x.checked_div(*y).map(Item::Integer),
            BinOp::Mod => x.checked_rem(*y).map(Item::Integer),
            _ => return Err(bad()),
        },
        (Item::String(x), Item::String(y)) if op == BinOp::Add => {
            Some(Item::String(format!("{x}{y}")))
        }
        (Item::Temporal(t), Item::Quantity(q)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            let unit = q.calendar().ok_or_else(bad)?;
            let amount = i64::try_from(q.value.trunc()).map_err(|_| bad())?;
            let amount = if op == BinOp::Sub { -amount } else { amount };
            if t.kind == TemporalKind::Time && matches!(unit, crate::temporal::CalendarUnit::Year) {
                return Err(bad());
            }
            t.add(amount, unit).map(Item::Temporal)
        }
        (Item::Quantity(x), Item::Quantity(y)) => match op {
            // Sums need one unit; quantities in different units give empty.
            BinOp::Add | BinOp::Sub if x.unit == y.unit => {
                let v = if op == BinOp::Add {
                    x.value.checked_add(y.value)
                } else {
                    x.value.checked_sub(y.value)
                };
                v.map(|v| Item::Quantity(crate::quantity::Quantity::new(v, &x.unit)))
            }
            BinOp::Add | BinOp::Sub => None,
            BinOp::Mul => x.multiply(y).map(Item::Quantity),
            BinOp::Div => x.divide(y).map(Item::Quantity),
            _ => return Err(bad()),
        },
        (Item::Quantity(x), n) if matches!(op, BinOp::Mul | BinOp::Div) => {
            let n = as_decimal(n).ok_or_else(bad)?;
            let v = if op == BinOp::Mul {
                x.value.checked_mul(n)
            } else {
                x.value.checked_div(n)
            };
            v.map(|v| Item::Quantity(crate::quantity::Quantity::new(v, &x.unit)))
        }
        (n, Item::Quantity(y)) if op == BinOp::Mul => {
            let n = as_decimal(n).ok_or_else(bad)?;
            y.value
                .checked_mul(n)
                .map(|v| Item::Quantity(crate::quantity::Quantity::new(v, &y.unit)))
        }
        _ => {
            let (Some(x), Some(y)) = (as_decimal(&a), as_decimal(&b)) else {
                return Err(bad());
            };
            match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div => x.checked_div(y),
                BinOp::IntDiv => x.checked_div(y).map(|d| d.trunc()),
                BinOp::Mod => x.checked_rem(y),
                _ => return Err(bad()),
            }
            .map(|d| match op {
                BinOp::IntDiv => i64::try_from(d).map_or(Item::Decimal(d), Item::Integer),
                _ => Item::Decimal(d),
            })
        }
    };
    Ok(out)
}

/// Compares two System values for `<` and friends: `None` when unknown
/// (different precisions, incomparable units), an error for other types.
pub(crate) fn compare(a: &Item<'_>, b: &Item<'_>) -> Result<Option<Ordering>, EvalError> {
    match (a, b) {
        (Item::String(x), Item::String(y)) => Ok(Some(x.cmp(y))),
        (Item::Temporal(x), Item::Temporal(y)) => Ok(x.compare(y)),
        (Item::Quantity(x), Item::Quantity(y)) => Ok(x.compare(y)),
        _ => match (as_decimal(a), as_decimal(b)) {
            (Some(x), Some(y)) => Ok(Some(x.cmp(&y))),
            _ => Err(EvalError::new(format!(
                "cannot compare {} with {}",
                a.system_type(),
                b.system_type()
            ))),
        },
    }
}

/// Equality of two items: `None` when unknown.
pub(crate) fn item_equal(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    match (a.to_system(), b.to_system()) {
        (Some(x), Some(y)) => match (&x, &y) {
            (Item::Boolean(p), Item::Boolean(q)) => Some(p == q),
            (Item::String(p), Item::String(q)) => Some(p == q),
            (Item::Type(p), Item::Type(q)) => Some(p == q),
            (Item::Temporal(p), Item::Temporal(q)) => {
                let time = |t: &crate::temporal::Temporal| t.kind == TemporalKind::Time;
                if time(p) != time(q) {
                    return Some(false);
                }
                p.compare(q).map(|o| o == Ordering::Equal)
            }
            (Item::Quantity(p), Item::Quantity(q)) => p.compare(q).map(|o| o == Ordering::Equal),
            _ => match (as_decimal(&x), as_decimal(&y)) {
                (Some(p), Some(q)) => Some(p == q),
                _ => Some(false),
            },
        },
        (None, None) => match (a, b) {
            (Item::Node(p), Item::Node(q)) => Some(json_equal(p.json(), q.json())),
            _ => Some(false),
        },
        _ => Some(false),
    }
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        (Value::Number(x), Value::Number(y)) => {
            match (crate::value::number(a), crate::value::number(b)) {
                (Some(p), Some(q)) => p == q,
                // Beyond a decimal's 28 digits (1E-245): compare as binary
                // floating point rather than call two unknowns equal.
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_equal(v, w))
        }
        _ => a == b,
    }
}

/// `=` on collections: same length and pairwise equal, in order.
pub(crate) fn equal(l: &[Item<'_>], r: &[Item<'_>]) -> Option<bool> {
    if l.is_empty() || r.is_empty() {
        return None;
    }
    if l.len() != r.len() {
        return Some(false);
    }
    let mut unknown = false;
    for (a, b) in l.iter().zip(r) {
        match item_equal(a, b) {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    (!unknown).then_some(true)
}

fn normalise_text(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn round_to(d: Decimal, scale: u32) -> Decimal {
    d.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
}

fn decimals_equivalent(p: Decimal, q: Decimal) -> bool {
    let scale = p.normalize().scale().min(q.normalize().scale());
    round_to(p, scale) == round_to(q, scale)
}

/// `~` on two items (http://hl7.org/fhirpath/N1/#equivalent).
pub(crate) fn item_equivalent(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a.to_system(), b.to_system()) {
        (Some(x), Some(y)) => match (&x, &y) {
            (Item::String(p), Item::String(q)) => normalise_text(p) == normalise_text(q),
            (Item::Temporal(p), Item::Temporal(q)) => p.compare(q) == Some(Ordering::Equal),
            (Item::Quantity(p), Item::Quantity(q)) => {
                let scale = p.value.normalize().scale().min(q.value.normalize().scale());
                p.common(q)
                    .is_some_and(|(u, v)| round_to(u, scale) == round_to(v, scale))
            }
            _ => match (as_decimal(&x), as_decimal(&y)) {
                (Some(p), Some(q)) => decimals_equivalent(p, q),
                _ => item_equal(&x, &y) == Some(true),
            },
        },
        (None, None) => item_equal(a, b) == Some(true),
        _ => false,
    }
}

/// `~` on collections: same items in any order; two empties are equivalent.
pub(crate) fn equivalent(l: &[Item<'_>], r: &[Item<'_>]) -> bool {
    if l.len() != r.len() {
        return false;
    }
    let mut used = vec![false; r.len()];
    l.iter().all(|a| {
        let found = r
            .iter()
            .enumerate()
            .find(|(i, b)| !used[*i] && item_equivalent(a, b));
        found.map(|(i, _)| used[i] = true).is_some()
    })
}

pub(crate) fn contains_item(items: &[Item<'_>], item: &Item<'_>) -> bool {
    items.iter().any(|x| item_equal(x, item) == Some(true))
}

/// Items of `l` then `r`, without duplicates (`|`, `union()`).
pub(crate) fn union<'a>(l: Items<'a>, r: Items<'a>) -> Items<'a> {
    let mut out: Items<'a> = Vec::new();
    for item in l.into_iter().chain(r) {
        if !contains_item(&out, &item) {
            out.push(item);
        }
    }
    out
}

fn membership<'a>(item: &[Item<'a>], collection: &[Item<'a>]) -> Res<'a> {
    match item {
        [] => Ok(Vec::new()),
        [x] => Ok(vec![Item::Boolean(contains_item(collection, x))]),
        _ => Err(EvalError::new("in/contains needs a single item")),
    }
}
