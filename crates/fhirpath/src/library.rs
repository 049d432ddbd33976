//! Functions over single System values: conversions
//! (http://hl7.org/fhirpath/N1/#conversion), strings
//! (http://hl7.org/fhirpath/N1/#string-manipulation), math
//! (http://hl7.org/fhirpath/N1/#math), and the FHIRPath 2.0 additions the
//! R4 suite uses (boundaries, `precision()`, `comparable()`, `encode()`...).

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::EvalError;
use crate::eval::{Items, Res};
use crate::ops::singleton;
use crate::quantity::Quantity;
use crate::temporal::{Temporal, TemporalKind};
use crate::value::Item;

fn err(msg: impl Into<String>) -> EvalError {
    EvalError::new(msg)
}

fn one<'a>(item: Option<Item<'static>>) -> Res<'a> {
    Ok(item.into_iter().collect())
}

fn string_arg(args: &[Items<'_>], i: usize) -> Result<Option<String>, EvalError> {
    match args.get(i).map(|a| singleton(a)).transpose()?.flatten() {
        None => Ok(None),
        Some(Item::String(s)) => Ok(Some(s)),
        Some(_) => Err(err("expected a string argument")),
    }
}

fn int_arg(args: &[Items<'_>], i: usize) -> Result<Option<i64>, EvalError> {
    match args.get(i).map(|a| singleton(a)).transpose()?.flatten() {
        None => Ok(None),
        Some(Item::Integer(n)) => Ok(Some(n)),
        Some(_) => Err(err("expected an integer argument")),
    }
}

pub(crate) fn call<'a>(name: &str, input: Items<'a>, args: Vec<Items<'a>>) -> Res<'a> {
    if input.len() > 1 {
        return Err(err(format!("{name}() on a collection of several items")));
    }
    let Some(item) = input.first() else {
        return if is_known(name) {
            Ok(Vec::new())
        } else {
            Err(err(format!("unknown function {name}()")))
        };
    };
    // Conversions that apply to any value, before requiring a type.
    if let Some(r) = conversion(name, item)? {
        return Ok(r);
    }
    let value = item
        .to_system()
        .ok_or_else(|| err(format!("{name}() needs a primitive value")))?;
    if let Item::String(s) = &value
        && let Some(r) = string_function(name, s, &args)?
    {
        return Ok(r);
    }
    math_function(name, value, &args)
}

fn is_known(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "toBoolean",
        "convertsToBoolean",
        "toInteger",
        "convertsToInteger",
        "toDecimal",
        "convertsToDecimal",
        "toString",
        "convertsToString",
        "toDate",
        "convertsToDate",
        "toDateTime",
        "convertsToDateTime",
        "toTime",
        "convertsToTime",
        "toQuantity",
        "convertsToQuantity",
        "indexOf",
        "lastIndexOf",
        "substring",
        "startsWith",
        "endsWith",
        "contains",
        "upper",
        "lower",
        "replace",
        "matches",
        "matchesFull",
        "replaceMatches",
        "length",
        "toChars",
        "split",
        "join",
        "trim",
        "encode",
        "decode",
        "escape",
        "unescape",
        "abs",
        "ceiling",
        "exp",
        "floor",
        "ln",
        "log",
        "power",
        "round",
        "sqrt",
        "truncate",
        "lowBoundary",
        "highBoundary",
        "precision",
        "comparable",
    ];
    NAMES.contains(&name)
}

/// `toX()` and `convertsToX()`; `None` when `name` is neither.
fn conversion<'a>(name: &str, item: &Item<'_>) -> Result<Option<Items<'a>>, EvalError> {
    let (target, test) = match name.strip_prefix("convertsTo") {
        Some(t) => (t, true),
        None => match name.strip_prefix("to") {
            Some(t) if t != "Chars" => (t, false),
            _ => return Ok(None),
        },
    };
    let Some(value) = item.to_system() else {
        return Ok(Some(if test {
            vec![Item::Boolean(false)]
        } else {
            Vec::new()
        }));
    };
    let converted: Option<Item<'static>> = match target {
        "Boolean" => match &value {
            Item::Boolean(b) => Some(Item::Boolean(*b)),
            Item::Integer(0) => Some(Item::Boolean(false)),
            Item::Integer(1) => Some(Item::Boolean(true)),
            Item::Decimal(d) if *d == Decimal::ZERO => Some(Item::Boolean(false)),
            Item::Decimal(d) if *d == Decimal::ONE => Some(Item::Boolean(true)),
            Item::String(s) => match s.to_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(Item::Boolean(true)),
                "false" | "f" | "no" | "n" | "0" | "0.0" => Some(Item::Boolean(false)),
                _ => None,
            },
            _ => None,
        },
        "Integer" => match &value {
            Item::Integer(i) => Some(Item::Integer(*i)),
            Item::Boolean(b) => Some(Item::Integer(i64::from(*b))),
            Item::String(s) => {
                let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
                (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| s.parse().ok().map(Item::Integer))
                    .flatten()
            }
            _ => None,
        },
        "Decimal" => match &value {
            Item::Integer(i) => Some(Item::Decimal(Decimal::from(*i))),
            Item::Decimal(d) => Some(Item::Decimal(*d)),
            Item::Boolean(b) => Some(Item::Decimal(Decimal::from(i64::from(*b)))),
            Item::String(s) => parse_decimal(s).map(Item::Decimal),
            _ => None,
        },
        "String" => Some(Item::String(to_text(&value))),
        "Date" | "DateTime" | "Time" => {
            let kind = match target {
                "Date" => TemporalKind::Date,
                "DateTime" => TemporalKind::DateTime,
                _ => TemporalKind::Time,
            };
            match &value {
                Item::Temporal(t) if t.kind == kind => Some(value.clone()),
                Item::Temporal(t)
                    if kind == TemporalKind::DateTime && t.kind == TemporalKind::Date =>
                {
                    let mut t = t.clone();
                    t.kind = kind;
                    Some(Item::Temporal(t))
                }
                Item::String(s) => Temporal::parse_fhir(s, kind).map(Item::Temporal),
                _ => None,
            }
        }
        "Quantity" => match &value {
            Item::Integer(i) => Some(Item::Quantity(Quantity::new(Decimal::from(*i), "1"))),
            Item::Decimal(d) => Some(Item::Quantity(Quantity::new(*d, "1"))),
            Item::Boolean(b) => Some(Item::Quantity(Quantity::new(
                Decimal::from(i64::from(*b)),
                "1",
            ))),
            Item::Quantity(q) => Some(Item::Quantity(q.clone())),
            Item::String(s) => Quantity::parse(s).map(Item::Quantity),
            _ => None,
        },
        _ => return Ok(None),
    };
    Ok(Some(if test {
        vec![Item::Boolean(converted.is_some())]
    } else {
        converted.into_iter().collect()
    }))
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
    let ok = !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| s.parse().ok()).flatten()
}

/// The string form `toString()` gives.
pub(crate) fn to_text(item: &Item<'_>) -> String {
    match item {
        Item::Boolean(b) => b.to_string(),
        Item::String(s) => s.clone(),
        Item::Integer(i) => i.to_string(),
        Item::Decimal(d) => d.to_string(),
        Item::Temporal(t) => t.to_string(),
        Item::Quantity(q) => q.to_string(),
        Item::Type(t) => format!("{}.{}", t.namespace, t.name),
        Item::Node(_) => item.to_system().map(|s| to_text(&s)).unwrap_or_default(),
    }
}

std::thread_local! {
    /// Compiled patterns: invariants run the same `matches()` on every
    /// element, and compiling a pattern costs far more than matching it.
    /// Bounded by clearing when full.
    static REGEXES: std::cell::RefCell<std::collections::HashMap<(String, bool), regex::Regex>> =
        std::cell::RefCell::default();
}

fn regex(pattern: &str, full: bool) -> Result<regex::Regex, EvalError> {
    let key = (pattern.to_owned(), full);
    if let Some(re) = REGEXES.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(re);
    }
    let p = if full {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_owned()
    };
    let re = regex::RegexBuilder::new(&p)
        .dot_matches_new_line(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| err(format!("invalid regular expression: {e}")))?;
    REGEXES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 256 {
            c.clear();
        }
        c.insert(key, re.clone());
    });
    Ok(re)
}

fn string_function<'a>(
    name: &str,
    s: &str,
    args: &[Items<'a>],
) -> Result<Option<Items<'a>>, EvalError> {
    let text = |t: String| Ok(Some(vec![Item::String(t)]));
    let boolean = |b: bool| Ok(Some(vec![Item::Boolean(b)]));
    let none = || Ok(Some(Vec::new()));
    let chars: Vec<char> = s.chars().collect();
    match name {
        "indexOf" | "lastIndexOf" => {
            let Some(sub) = string_arg(args, 0)? else {
                return none();
            };
            let found = if name == "indexOf" {
                s.find(&sub)
            } else {
                s.rfind(&sub)
            };
            let idx = found.map_or(-1, |b| s[..b].chars().count() as i64);
            Ok(Some(vec![Item::Integer(idx)]))
        }
        "substring" => {
            let Some(start) = int_arg(args, 0)? else {
                return none();
            };
            let len = int_arg(args, 1)?;
            if start < 0 || start as usize >= chars.len() {
                return none();
            }
            let end = match len {
                Some(l) => (start.saturating_add(l.max(0)) as usize).min(chars.len()),
                None => chars.len(),
            };
            text(chars[start as usize..end].iter().collect())
        }
        "startsWith" => match string_arg(args, 0)? {
            Some(p) => boolean(s.starts_with(&p)),
            None => none(),
        },
        "endsWith" => match string_arg(args, 0)? {
            Some(p) => boolean(s.ends_with(&p)),
            None => none(),
        },
        "contains" => match string_arg(args, 0)? {
            Some(p) => boolean(s.contains(&p)),
            None => none(),
        },
        "upper" => text(s.to_uppercase()),
        "lower" => text(s.to_lowercase()),
        "replace" => match (string_arg(args, 0)?, string_arg(args, 1)?) {
            (Some(pat), Some(with)) => {
                if pat.is_empty() {
                    let mut out = with.clone();
                    for c in s.chars() {
                        out.push(c);
                        out.push_str(&with);
                    }
                    text(out)
                } else {
                    text(s.replace(&pat, &with))
                }
            }
            _ => none(),
        },
        "matches" | "matchesFull" => match string_arg(args, 0)? {
            Some(p) => boolean(regex(&p, name == "matchesFull")?.is_match(s)),
            None => none(),
        },
        "replaceMatches" => match (string_arg(args, 0)?, string_arg(args, 1)?) {
            (Some(p), Some(with)) if p.is_empty() => {
                let _ = with;
                text(s.to_owned())
            }
            (Some(p), Some(with)) => {
                text(regex(&p, false)?.replace_all(s, with.as_str()).into_owned())
            }
            _ => none(),
        },
        "length" => Ok(Some(vec![Item::Integer(chars.len() as i64)])),
        "toChars" => Ok(Some(
            chars.iter().map(|c| Item::String(c.to_string())).collect(),
        )),
        "split" => match string_arg(args, 0)? {
            Some(sep) if !sep.is_empty() => Ok(Some(
                s.split(sep.as_str())
                    .map(|p| Item::String(p.to_owned()))
                    .collect(),
            )),
            Some(_) => Ok(Some(
                chars.iter().map(|c| Item::String(c.to_string())).collect(),
            )),
            None => none(),
        },
        "trim" => text(s.trim().to_owned()),
        "encode" | "decode" => {
            let Some(format) = string_arg(args, 0)? else {
                return none();
            };
            let out = if name == "encode" {
                crate::codec::encode(s.as_bytes(), &format)
            } else {
                crate::codec::decode(s, &format).and_then(|b| String::from_utf8(b).ok())
            };
            Ok(Some(out.map(Item::String).into_iter().collect()))
        }
        "escape" | "unescape" => {
            let Some(format) = string_arg(args, 0)? else {
                return none();
            };
            let out = if name == "escape" {
                crate::codec::escape(s, &format)
            } else {
                crate::codec::unescape(s, &format)
            };
            Ok(Some(out.map(Item::String).into_iter().collect()))
        }
        _ => Ok(None),
    }
}

fn from_f64(x: f64) -> Option<Decimal> {
    if !x.is_finite() {
        return None;
    }
    let d = Decimal::from_f64_retain(x)?;
    Some(d.round_sf(15).unwrap_or(d).normalize())
}

fn math_function<'a>(name: &str, value: Item<'static>, args: &[Items<'a>]) -> Res<'a> {
    let dec = match &value {
        Item::Integer(i) => Decimal::from(*i),
        Item::Decimal(d) => *d,
        Item::Quantity(q) => q.value,
        Item::Temporal(_) => Decimal::ZERO,
        _ => {
            return Err(err(format!(
                "{name}() cannot apply to {}",
                value.system_type()
            )));
        }
    };
    let int = matches!(value, Item::Integer(_));
    let f = dec.to_f64().unwrap_or(f64::NAN);
    let decimal = |d: Option<Decimal>| one(d.map(Item::Decimal));
    let integer = |d: Decimal| one(d.to_i64().map(Item::Integer));
    match (name, &value) {
        ("abs", Item::Quantity(q)) => {
            one(Some(Item::Quantity(Quantity::new(q.value.abs(), &q.unit))))
        }
        ("abs", Item::Integer(i)) => one(i.checked_abs().map(Item::Integer)),
        ("abs", _) => decimal(Some(dec.abs())),
        ("ceiling", _) => integer(dec.ceil()),
        ("floor", _) => integer(dec.floor()),
        ("truncate", _) => integer(dec.trunc()),
        ("round", _) => {
            let places = int_arg(args, 0)?.unwrap_or(0);
            let places =
                u32::try_from(places).map_err(|_| err("round() needs a non-negative precision"))?;
            decimal(Some(dec.round_dp_with_strategy(
                places,
                RoundingStrategy::MidpointAwayFromZero,
            )))
        }
        ("sqrt", _) => decimal(from_f64(f.sqrt())),
        ("exp", _) => decimal(from_f64(f.exp())),
        ("ln", _) => decimal(from_f64(f.ln())),
        ("log", _) => {
            let base = match args.first().map(|a| singleton(a)).transpose()?.flatten() {
                Some(Item::Integer(b)) => b as f64,
                Some(Item::Decimal(b)) => b.to_f64().unwrap_or(f64::NAN),
                _ => return Ok(Vec::new()),
            };
            decimal(from_f64(f.ln() / base.ln()))
        }
        ("power", _) => match args.first().map(|a| singleton(a)).transpose()?.flatten() {
            Some(Item::Integer(e)) if int => one(u32::try_from(e)
                .ok()
                .and_then(|e| dec.to_i64()?.checked_pow(e))
                .map(Item::Integer)),
            Some(Item::Integer(e)) if (0..=64).contains(&e) => {
                let mut acc = Decimal::ONE;
                for _ in 0..e {
                    let Some(next) = acc.checked_mul(dec) else {
                        return Ok(Vec::new());
                    };
                    acc = next;
                }
                decimal(Some(acc))
            }
            Some(Item::Integer(e)) => decimal(from_f64(f.powf(e as f64))),
            Some(Item::Decimal(e)) => decimal(from_f64(f.powf(e.to_f64().unwrap_or(f64::NAN)))),
            _ => Ok(Vec::new()),
        },
        ("lowBoundary" | "highBoundary", _) => {
            let high = name == "highBoundary";
            let digits = int_arg(args, 0)?;
            match value {
                Item::Temporal(t) => one(t.boundary(digits, high).map(Item::Temporal)),
                Item::Quantity(q) => one(decimal_boundary(q.value, q.value.scale(), digits, high)
                    .map(|v| Item::Quantity(Quantity::new(v, &q.unit)))),
                Item::Integer(_) => decimal(decimal_boundary(dec, 0, digits, high)),
                _ => decimal(decimal_boundary(dec, dec.scale(), digits, high)),
            }
        }
        ("precision", Item::Temporal(t)) => one(Some(Item::Integer(t.precision_digits()))),
        ("precision", Item::Decimal(d)) => one(Some(Item::Integer(i64::from(d.scale())))),
        ("comparable", Item::Quantity(q)) => {
            match args.first().map(|a| singleton(a)).transpose()?.flatten() {
                Some(Item::Quantity(other)) => one(Some(Item::Boolean(q.comparable(&other)))),
                _ => Err(err("comparable() needs a quantity")),
            }
        }
        _ => Err(err(format!(
            "{name}() cannot apply to {}",
            value.system_type()
        ))),
    }
}

/// The boundary of a decimal known to `scale` places: half a unit of the
/// last place below (low) or above (high), cut to `digits` places (8 by
/// default). Negative values mirror positive ones.
fn decimal_boundary(d: Decimal, scale: u32, digits: Option<i64>, high: bool) -> Option<Decimal> {
    let digits = u32::try_from(digits.unwrap_or(8))
        .ok()
        .filter(|p| *p <= 28)?;
    if d.is_sign_negative() {
        let mut b = decimal_boundary(-d, scale, Some(i64::from(digits)), !high)?;
        b.set_sign_negative(true);
        return Some(b);
    }
    let half = Decimal::try_new(5, scale + 1).unwrap_or(Decimal::ZERO);
    let edge = if high {
        d.checked_add(half)?
    } else {
        d.checked_sub(half)?
    };
    let mut out = if high {
        edge.round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero)
    } else {
        edge.round_dp_with_strategy(digits, RoundingStrategy::ToZero)
    };
    out.rescale(digits);
    Some(out)
}
