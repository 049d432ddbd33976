//! Quantities (http://hl7.org/fhirpath/N1/#quantity), compared and
//! multiplied through gp-fhir's UCUM reduction (`gp_fhir::ucum`, which
//! search indexing shares). Calendar duration keywords (`week`, `day`...)
//! equal their UCUM units, except `year` and `month`, which are not
//! comparable with `a` and `mo`.

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

/// Base dimensions, as gp-fhir's UCUM reduction gives them.
type Dims = gp_fhir::ucum::Dims;

/// A unit reduced to a factor over base units, or a calendar `year`/`month`,
/// which only compare with each other.
#[derive(Debug, PartialEq)]
enum Canonical {
    Ucum(Decimal, Dims),
    CalendarMonths(Decimal),
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
            Some(k) => gp_fhir::ucum::reduce(keyword_ucum(k)).map(|(f, d)| Canonical::Ucum(f, d)),
            None => gp_fhir::ucum::reduce(&self.unit).map(|(f, d)| Canonical::Ucum(f, d)),
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
