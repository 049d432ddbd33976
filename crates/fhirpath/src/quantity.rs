//! Quantities (http://hl7.org/fhirpath/N1/#quantity) with the small part
//! of UCUM (https://ucum.org/ucum) that comparisons and arithmetic need:
//! metric prefixes on metre, gram, second, litre and mole, the customary
//! inch, foot, pound and ounce, and time units. Calendar duration keywords
//! (`week`, `day`...) equal their UCUM units, except `year` and `month`,
//! which are not comparable with `a` and `mo`.

use std::cmp::Ordering;
use std::fmt;

use rust_decimal::Decimal;

use crate::temporal::CalendarUnit;

#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    pub value: Decimal,
    /// A UCUM code, or a calendar keyword as written (`week`, `days`).
    pub unit: String,
}

/// The singular keyword for a calendar duration word (`days` -> `day`).
pub(crate) fn calendar_unit(word: &str) -> Option<&'static str> {
    let singular = word.strip_suffix('s').unwrap_or(word);
    [
        "year",
        "month",
        "week",
        "day",
        "hour",
        "minute",
        "second",
        "millisecond",
    ]
    .into_iter()
    .find(|k| *k == singular)
}

/// Base dimensions: length, mass, time, amount of substance, temperature.
type Dims = [i8; 5];

/// A unit reduced to a factor over base units, or a calendar `year`/`month`,
/// which only compare with each other.
#[derive(Debug, PartialEq)]
enum Canonical {
    Ucum(Decimal, Dims),
    CalendarMonths(Decimal),
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or(Decimal::ZERO)
}

/// Unprefixed atoms: code, factor to base units, dimensions, takes prefixes.
fn atom(code: &str) -> Option<(Decimal, Dims, bool)> {
    const L: Dims = [1, 0, 0, 0, 0];
    const M: Dims = [0, 1, 0, 0, 0];
    const T: Dims = [0, 0, 1, 0, 0];
    let a = match code {
        "m" => (Decimal::ONE, L, true),
        "g" => (Decimal::ONE, M, true),
        "s" => (Decimal::ONE, T, true),
        "mol" => (Decimal::ONE, [0, 0, 0, 1, 0], true),
        "K" => (Decimal::ONE, [0, 0, 0, 0, 1], true),
        "l" | "L" => (dec("0.001"), [3, 0, 0, 0, 0], true),
        "min" => (dec("60"), T, false),
        "h" => (dec("3600"), T, false),
        "d" => (dec("86400"), T, false),
        "wk" => (dec("604800"), T, false),
        "mo" => (dec("2629800"), T, false),
        "a" => (dec("31557600"), T, false),
        "[in_i]" => (dec("0.0254"), L, false),
        "[ft_i]" => (dec("0.3048"), L, false),
        "[lb_av]" => (dec("453.59237"), M, false),
        "[oz_av]" => (dec("28.349523125"), M, false),
        "mm[Hg]" => (dec("133322.387415"), [-1, 1, -2, 0, 0], false),
        "%" => (dec("0.01"), [0; 5], false),
        _ => return None,
    };
    Some(a)
}

fn prefix(p: &str) -> Option<Decimal> {
    let f = match p {
        "G" => "1000000000",
        "M" => "1000000",
        "k" => "1000",
        "h" => "100",
        "da" => "10",
        "d" => "0.1",
        "c" => "0.01",
        "m" => "0.001",
        "u" => "0.000001",
        "n" => "0.000000001",
        "p" => "0.000000000001",
        _ => return None,
    };
    Some(dec(f))
}

/// One component such as `cm`, `m2`, `s-1`, `10*3`, `{beats}` or `1`.
fn component(c: &str) -> Option<(Decimal, Dims)> {
    if c.starts_with('{') && c.ends_with('}') {
        return Some((Decimal::ONE, [0; 5]));
    }
    if let Some((base, exp)) = c.split_once('*') {
        let (b, e) = (base.parse::<u32>().ok()?, exp.parse::<u32>().ok()?);
        return Some((Decimal::from(b.checked_pow(e)?), [0; 5]));
    }
    if c.bytes().all(|b| b.is_ascii_digit()) {
        return Some((c.parse().ok()?, [0; 5]));
    }
    let split = c
        .char_indices()
        .rfind(|(_, ch)| !(ch.is_ascii_digit() || *ch == '-' || *ch == '+'))
        .map_or(0, |(i, ch)| i + ch.len_utf8());
    let (code, exp) = c.split_at(split);
    let exp: i32 = if exp.is_empty() { 1 } else { exp.parse().ok()? };
    let (factor, dims) = match atom(code) {
        Some((f, d, _)) => (f, d),
        None => (1..code.len()).find_map(|i| {
            let (p, rest) = (code.get(..i)?, code.get(i..)?);
            let (f, d, prefixable) = atom(rest)?;
            prefixable.then_some(())?;
            Some((prefix(p)? * f, d))
        })?,
    };
    let mut out = Decimal::ONE;
    for _ in 0..exp.unsigned_abs() {
        out = out.checked_mul(factor)?;
    }
    if exp < 0 {
        out = Decimal::ONE.checked_div(out)?;
    }
    Some((out, dims.map(|d| d * exp as i8)))
}

/// A UCUM expression: components joined by `.` and `/`, with parentheses.
fn ucum(unit: &str) -> Option<(Decimal, Dims)> {
    let unit = unit.trim();
    let mut factor = Decimal::ONE;
    let mut dims = [0i8; 5];
    let mut divide = false;
    let mut rest = unit;
    if let Some(r) = rest.strip_prefix('/') {
        divide = true;
        rest = r;
    }
    while !rest.is_empty() {
        let (piece, (f, d)) = if rest.starts_with('(') {
            let close = rest.find(')')?;
            (&rest[..=close], ucum(&rest[1..close])?)
        } else {
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '[' | '{' => depth += 1,
                        ']' | '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0 && (*c == '.' || *c == '/')
                })
                .map_or(rest.len(), |(i, _)| i);
            (&rest[..end], component(&rest[..end])?)
        };
        if divide {
            factor = factor.checked_div(f)?;
            dims = std::array::from_fn(|i| dims[i] - d[i]);
        } else {
            factor = factor.checked_mul(f)?;
            dims = std::array::from_fn(|i| dims[i] + d[i]);
        }
        rest = &rest[piece.len()..];
        match rest.chars().next() {
            Some('.') => divide = false,
            Some('/') => divide = true,
            None => break,
            Some(_) => return None,
        }
        rest = &rest[1..];
    }
    Some((factor, dims))
}

/// The UCUM code a calendar keyword stands for in arithmetic.
fn keyword_ucum(k: &str) -> &'static str {
    match k {
        "year" => "a",
        "month" => "mo",
        "week" => "wk",
        "day" => "d",
        "hour" => "h",
        "minute" => "min",
        "second" => "s",
        _ => "ms",
    }
}

impl Quantity {
    pub fn new(value: Decimal, unit: &str) -> Quantity {
        Quantity {
            value,
            unit: unit.to_owned(),
        }
    }

    fn canonical(&self) -> Option<Canonical> {
        match calendar_unit(&self.unit) {
            Some("year") => Some(Canonical::CalendarMonths(Decimal::from(12))),
            Some("month") => Some(Canonical::CalendarMonths(Decimal::ONE)),
            Some(k) => ucum(keyword_ucum(k)).map(|(f, d)| Canonical::Ucum(f, d)),
            None => ucum(&self.unit).map(|(f, d)| Canonical::Ucum(f, d)),
        }
    }

    /// Both values in one unit, when the units are comparable.
    pub(crate) fn common(&self, other: &Quantity) -> Option<(Decimal, Decimal)> {
        let same = self.unit == other.unit
            || calendar_unit(&self.unit).is_some_and(|k| Some(k) == calendar_unit(&other.unit));
        if same {
            return Some((self.value, other.value));
        }
        match (self.canonical()?, other.canonical()?) {
            (Canonical::Ucum(fa, da), Canonical::Ucum(fb, db)) if da == db => Some((
                self.value.checked_mul(fa)?.normalize(),
                other.value.checked_mul(fb)?.normalize(),
            )),
            (Canonical::CalendarMonths(fa), Canonical::CalendarMonths(fb)) => {
                Some((self.value * fa, other.value * fb))
            }
            _ => None,
        }
    }

    pub(crate) fn compare(&self, other: &Quantity) -> Option<Ordering> {
        let (a, b) = self.common(other)?;
        Some(a.cmp(&b))
    }

    /// `comparable()`: whether the units measure the same thing.
    pub(crate) fn comparable(&self, other: &Quantity) -> bool {
        self.common(other).is_some()
    }

    fn ucum_unit(&self) -> String {
        match calendar_unit(&self.unit) {
            Some(k) => keyword_ucum(k).to_owned(),
            None => self.unit.clone(),
        }
    }

    pub(crate) fn multiply(&self, other: &Quantity) -> Option<Quantity> {
        let (a, b) = (self.ucum_unit(), other.ucum_unit());
        let unit = match (a.as_str(), b.as_str()) {
            ("1", u) | (u, "1") => u.to_owned(),
            (a, b) => format!("({a}).({b})"),
        };
        Some(Quantity::new(self.value.checked_mul(other.value)?, &unit))
    }

    pub(crate) fn divide(&self, other: &Quantity) -> Option<Quantity> {
        let (a, b) = (self.ucum_unit(), other.ucum_unit());
        let unit = if a == b {
            "1".to_owned()
        } else if b == "1" {
            a
        } else {
            format!("({a})/({b})")
        };
        Some(Quantity::new(self.value.checked_div(other.value)?, &unit))
    }

    /// The calendar unit of a duration added to a date, if it is one:
    /// UCUM `a` and `mo` are not calendar durations and are refused.
    pub(crate) fn calendar(&self) -> Option<CalendarUnit> {
        let unit = match calendar_unit(&self.unit) {
            Some(k) => k,
            None => match self.unit.as_str() {
                "wk" => "week",
                "d" => "day",
                "h" => "hour",
                "min" => "minute",
                "s" => "second",
                "ms" => "millisecond",
                _ => return None,
            },
        };
        Some(match unit {
            "year" => CalendarUnit::Year,
            "month" => CalendarUnit::Month,
            "week" => CalendarUnit::Week,
            "day" => CalendarUnit::Day,
            "hour" => CalendarUnit::Hour,
            "minute" => CalendarUnit::Minute,
            "second" => CalendarUnit::Second,
            _ => CalendarUnit::Millisecond,
        })
    }

    /// Parses `toQuantity()` input: a number, optionally followed by a
    /// quoted UCUM unit or a calendar keyword.
    pub(crate) fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (num, unit) = match s.split_once(char::is_whitespace) {
            Some((n, u)) => (n, u.trim()),
            None => (s, ""),
        };
        if num.is_empty()
            || !num
                .trim_start_matches(['+', '-'])
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.')
        {
            return None;
        }
        let value: Decimal = num.parse().ok()?;
        let unit = if unit.is_empty() {
            "1".to_owned()
        } else if let Some(q) = unit.strip_prefix('\'').and_then(|u| u.strip_suffix('\'')) {
            q.to_owned()
        } else {
            calendar_unit(unit)?;
            unit.to_owned()
        };
        Some(Quantity { value, unit })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if calendar_unit(&self.unit).is_some() {
            write!(f, "{} {}", self.value, self.unit)
        } else {
            write!(f, "{} '{}'", self.value, self.unit)
        }
    }
}
