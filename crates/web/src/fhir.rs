//! Reading the FHIR JSON the store returns, for display: names, codes,
//! dates, NHS numbers. Pure functions over `serde_json::Value`.

use gp_store::StoredVersion;
use serde_json::Value;
use time::{Date, Month};

pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const SCT: &str = "http://snomed.info/sct";

/// Parses a stored version's body; a body that is not JSON (never written
/// by this server) reads as null.
pub fn body(v: &StoredVersion) -> Value {
    serde_json::from_slice(&v.body).unwrap_or(Value::Null)
}

pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = match cur {
            Value::Array(a) => a.first()?.get(p)?,
            _ => cur.get(p)?,
        };
    }
    match cur {
        Value::Array(a) => a.first()?.as_str(),
        _ => cur.as_str(),
    }
}

/// What a CodeableConcept says: its text, else its first coding's display,
/// else its code.
pub fn concept(cc: Option<&Value>) -> String {
    let Some(cc) = cc else {
        return String::new();
    };
    let cc = match cc {
        Value::Array(a) => match a.first() {
            Some(c) => c,
            None => return String::new(),
        },
        c => c,
    };
    if let Some(t) = cc.get("text").and_then(Value::as_str) {
        return t.to_owned();
    }
    let coding = cc.get("coding").and_then(Value::as_array);
    coding
        .and_then(|c| c.first())
        .and_then(|c| {
            c.get("display")
                .or_else(|| c.get("code"))
                .and_then(Value::as_str)
        })
        .unwrap_or_default()
        .to_owned()
}

/// The code of a CodeableConcept in `system`.
pub fn code_in<'a>(cc: Option<&'a Value>, system: &str) -> Option<&'a str> {
    cc?.get("coding")?
        .as_array()?
        .iter()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(system))?
        .get("code")?
        .as_str()
}

/// "Title Given FAMILY", as GP systems show a patient.
pub fn patient_name(p: &Value) -> String {
    let names = p.get("name").and_then(Value::as_array);
    let name = names.and_then(|n| {
        n.iter()
            .find(|x| x.get("use").and_then(Value::as_str) == Some("official"))
            .or_else(|| n.first())
    });
    let Some(name) = name else {
        return "(no name recorded)".into();
    };
    let list = |k: &str| -> Vec<String> {
        name.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let family = name
        .get("family")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_uppercase();
    let mut parts = list("given");
    parts.push(family);
    let prefix = list("prefix");
    let mut all = prefix;
    all.extend(parts);
    all.retain(|s| !s.is_empty());
    if all.is_empty() {
        name.get("text")
            .and_then(Value::as_str)
            .unwrap_or("(no name recorded)")
            .to_owned()
    } else {
        all.join(" ")
    }
}

pub fn nhs_number(p: &Value) -> Option<&str> {
    p.get("identifier")?
        .as_array()?
        .iter()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(NHS_NUMBER))?
        .get("value")?
        .as_str()
}

/// An NHS number as people read it: `943 476 5919`.
pub fn format_nhs_number(n: &str) -> String {
    if n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()) {
        format!("{} {} {}", &n[..3], &n[3..6], &n[6..])
    } else {
        n.to_owned()
    }
}

/// Whether ten digits form a valid NHS number (the Modulus 11 check
/// digit of the NHS Data Dictionary).
pub fn nhs_number_valid(n: &str) -> bool {
    let digits: Vec<u32> = n.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != 10 || n.chars().count() != 10 {
        return false;
    }
    let sum: u32 = digits[..9]
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| d * w)
        .sum();
    let check = 11 - sum % 11;
    let check = if check == 11 { 0 } else { check };
    check != 10 && check == digits[9]
}

/// A FHIR date or dateTime's calendar date.
pub fn date(s: &str) -> Option<Date> {
    let y: i32 = s.get(0..4)?.parse().ok()?;
    let m: u8 = s.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let d: u8 = s.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
}

/// `12 March 2024` (the NHS style), keeping the precision given.
pub fn show_date(s: &str) -> String {
    match s.len() {
        4 => s.to_owned(),
        7 => date(s).map_or_else(|| s.to_owned(), |d| format!("{} {}", d.month(), d.year())),
        _ => date(s).map_or_else(
            || s.to_owned(),
            |d| format!("{} {} {}", d.day(), d.month(), d.year()),
        ),
    }
}

/// The clock time of `at` in the UK, `14:05`: UTC, or British Summer Time
/// (UTC+1) from 01:00 UTC on the last Sunday of March to 01:00 UTC on the
/// last Sunday of October.
pub fn uk_time(at: gp_fhir::Instant) -> String {
    let utc = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(at.millis());
    let last_sunday = |month: Month| {
        let next = if month == Month::December {
            Date::from_calendar_date(utc.year() + 1, Month::January, 1)
        } else {
            Date::from_calendar_date(utc.year(), month.next(), 1)
        };
        next.ok().map(|d| {
            let back = d.weekday().number_days_from_sunday();
            let back = if back == 0 { 7 } else { back };
            (d - time::Duration::days(i64::from(back)))
                .with_hms(1, 0, 0)
                .map(|t| t.assume_utc())
        })
    };
    let summer = matches!(
        (last_sunday(Month::March), last_sunday(Month::October)),
        (Some(Ok(start)), Some(Ok(end))) if utc >= start && utc < end
    );
    let local = if summer {
        utc + time::Duration::hours(1)
    } else {
        utc
    };
    format!("{:02}:{:02}", local.hour(), local.minute())
}

/// Whole years from `birth` to `today`.
pub fn age(birth: Date, today: Date) -> i32 {
    let mut years = today.year() - birth.year();
    if (today.month() as u8, today.day()) < (birth.month() as u8, birth.day()) {
        years -= 1;
    }
    years
}

/// An age as GP systems show it: years, or months and weeks for babies.
pub fn show_age(birth: Date, today: Date) -> String {
    let years = age(birth, today);
    if years >= 2 {
        return format!("{years}y");
    }
    let days = (today - birth).whole_days();
    if days < 28 {
        format!("{}w", days / 7)
    } else {
        format!("{}m", days * 12 / 365)
    }
}

/// Today in the UK (UTC is close enough for a date).
pub fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}

/// When a clinical entry happened: its effective, onset, recorded or
/// authored date, whichever the type has.
pub fn when(r: &Value) -> String {
    for k in [
        "effectiveDateTime",
        "onsetDateTime",
        "performedDateTime",
        "occurrenceDateTime",
        "authoredOn",
        "recordedDate",
        "date",
        "issued",
    ] {
        if let Some(s) = r.get(k).and_then(Value::as_str) {
            return s.to_owned();
        }
    }
    for k in ["effectivePeriod", "performedPeriod", "period"] {
        if let Some(s) = r
            .get(k)
            .and_then(|p| p.get("start"))
            .and_then(Value::as_str)
        {
            return s.to_owned();
        }
    }
    String::new()
}

/// The id in a local reference `Type/id`, if it is of `ty`.
pub fn ref_id<'a>(r: Option<&'a Value>, ty: &str) -> Option<&'a str> {
    let s = r?.get("reference")?.as_str()?;
    let (t, id) = s.split_once('/')?;
    (t == ty).then_some(id)
}

/// A Quantity as text: `82.5 kg`.
pub fn quantity(q: Option<&Value>) -> String {
    let Some(q) = q else {
        return String::new();
    };
    let value = q.get("value").map(|v| v.to_string()).unwrap_or_default();
    let unit = q
        .get("unit")
        .or_else(|| q.get("code"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{value} {unit}").trim().to_owned()
}

/// An Observation's value as text, with a blood pressure as `140/90 mmHg`.
pub fn observation_value(o: &Value) -> String {
    if let Some(q) = o.get("valueQuantity") {
        return quantity(Some(q));
    }
    if let Some(c) = o.get("valueCodeableConcept") {
        return concept(Some(c));
    }
    if let Some(s) = o.get("valueString").and_then(Value::as_str) {
        return s.to_owned();
    }
    let comps = o.get("component").and_then(Value::as_array);
    if let Some(comps) = comps {
        let v = |code: &str| {
            comps
                .iter()
                .find(|c| code_in(c.get("code"), SCT) == Some(code))
                .and_then(|c| c.get("valueQuantity")?.get("value"))
                .map(|v| v.to_string())
        };
        if let (Some(s), Some(d)) = (v(SYSTOLIC), v(DIASTOLIC)) {
            return format!("{s}/{d} mmHg");
        }
    }
    String::new()
}

pub const BLOOD_PRESSURE: &str = "75367002";
pub const SYSTOLIC: &str = "271649006";
pub const DIASTOLIC: &str = "271650006";
pub const HBA1C: &str = "43396009";
pub const WEIGHT: &str = "27113001";
pub const BMI: &str = "60621009";

/// The numeric value of an Observation, or of one of its components.
pub fn number(o: &Value, component: Option<&str>) -> Option<f64> {
    match component {
        None => o.get("valueQuantity")?.get("value")?.as_f64(),
        Some(code) => o
            .get("component")?
            .as_array()?
            .iter()
            .find(|c| code_in(c.get("code"), SCT) == Some(code))?
            .get("valueQuantity")?
            .get("value")?
            .as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uk_time_follows_british_summer_time() {
        let at = |s: &str| {
            uk_time(
                gp_fhir::DateRange::parse(s)
                    .unwrap_or_else(|e| panic!("{e:?}"))
                    .low,
            )
        };
        // 2026: BST from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(at("2026-01-15T14:05:00Z"), "14:05");
        assert_eq!(at("2026-03-29T00:59:00Z"), "00:59");
        assert_eq!(at("2026-03-29T01:00:00Z"), "02:00");
        assert_eq!(at("2026-07-01T23:30:00Z"), "00:30");
        assert_eq!(at("2026-10-25T00:59:00Z"), "01:59");
        assert_eq!(at("2026-10-25T01:00:00Z"), "01:00");
        assert_eq!(at("2026-12-31T23:59:00Z"), "23:59");
    }

    #[test]
    fn modulus_11_accepts_valid_numbers_and_refuses_others() {
        // Data Dictionary examples and the check digit rules: a remainder
        // giving 11 means 0, giving 10 means the number is invalid.
        assert!(nhs_number_valid("9434765919"));
        assert!(nhs_number_valid("9000000009"));
        assert!(!nhs_number_valid("9434765918"));
        assert!(!nhs_number_valid("943476591"));
        assert!(!nhs_number_valid("94347659190"));
        assert!(!nhs_number_valid("943476591a"));
        assert!(!nhs_number_valid("1000000010"));
    }

    #[test]
    fn ages_count_birthdays() {
        let d = |s| date(s).unwrap_or(Date::MIN);
        assert_eq!(age(d("1980-06-15"), d("2026-06-14")), 45);
        assert_eq!(age(d("1980-06-15"), d("2026-06-15")), 46);
        assert_eq!(show_age(d("2026-05-01"), d("2026-05-20")), "2w");
        assert_eq!(show_age(d("2025-11-01"), d("2026-05-20")), "6m");
    }

    #[test]
    fn dates_keep_their_precision() {
        assert_eq!(show_date("2024-03-12"), "12 March 2024");
        assert_eq!(show_date("2024-03"), "March 2024");
        assert_eq!(show_date("2024"), "2024");
        assert_eq!(show_date("2024-03-12T10:00:00Z"), "12 March 2024");
    }
}
