//! Small builders for the FHIR R4 data types the generator writes, and the
//! arithmetic on dates and random values it needs, done with integers and
//! plain sums so that every platform produces the same bytes.

use rand::Rng;
use serde_json::{Value, json};
use time::{Date, Duration};

use crate::codes::{Concept, SCT};

/// A CodeableConcept with one SNOMED CT coding.
pub fn sct(c: Concept) -> Value {
    json!({ "coding": [{ "system": SCT, "code": c.0, "display": c.1 }], "text": c.1 })
}

/// A CodeableConcept with one coding in `system`.
pub fn coded(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code, "display": display }] })
}

/// A literal reference.
pub fn reference(ty: &str, id: &str) -> Value {
    json!({ "reference": format!("{ty}/{id}") })
}

/// A UCUM quantity.
pub fn quantity(value: Value, unit: &str, code: &str) -> Value {
    json!({ "value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": code })
}

/// `YYYY-MM-DD`.
pub fn date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// A dateTime at `minutes` past midnight, UK time written as UTC.
pub fn datetime(d: Date, minutes: u32) -> String {
    format!("{}T{:02}:{:02}:00Z", date(d), minutes / 60, minutes % 60)
}

/// `d` moved by `days`.
pub fn add_days(d: Date, days: i64) -> Date {
    d.checked_add(Duration::days(days)).unwrap_or(d)
}

/// Whole days from `a` to `b`.
pub fn days_between(a: Date, b: Date) -> i64 {
    (b - a).whole_days()
}

/// A day drawn evenly from `from` to `to` inclusive (`from` when empty).
pub fn day_in(rng: &mut impl Rng, from: Date, to: Date) -> Date {
    let span = days_between(from, to);
    if span <= 0 {
        return from;
    }
    add_days(from, rng.random_range(0..=span))
}

/// An approximately normal value (the sum of four uniforms): close enough
/// for clinical measurements, and free of floating-point library functions
/// whose last digits could differ between platforms.
pub fn normal(rng: &mut impl Rng, mean: f64, sd: f64) -> f64 {
    let s: f64 = (0..4).map(|_| rng.random::<f64>()).sum();
    // Four uniforms: mean 2, variance 1/3.
    mean + (s - 2.0) * sd * 1.732_050_807_568_877_2
}

/// `x` to one decimal place, as a JSON number.
pub fn one_dp(x: f64) -> Value {
    json!(((x * 10.0).round() / 10.0))
}

/// Base64 (RFC 4648, padded) of `bytes`, for attachments.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }
}
