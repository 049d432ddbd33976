//! Points and ranges in time: `meta.lastUpdated` instants, FHIR date and
//! dateTime values as the ranges their precision implies (search.html#date),
//! and HTTP dates for `Last-Modified` and `If-Modified-Since`.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A server instant with millisecond precision, in UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Instant(i64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not a valid FHIR date, dateTime or instant")]
pub struct InstantError(pub String);

impl Instant {
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    pub fn from_millis(ms: i64) -> Self {
        Instant(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    fn from_datetime(dt: OffsetDateTime) -> Self {
        Instant((dt.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    fn datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// The FHIR `instant` form, e.g. `2024-05-01T09:30:00.125Z`.
    pub fn to_fhir(self) -> String {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        self.datetime().format(&fmt).unwrap_or_default()
    }

    /// The HTTP date form (RFC 9110 section 5.6.7), whole seconds.
    pub fn to_http_date(self) -> String {
        let fmt = format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        self.datetime().format(&fmt).unwrap_or_default()
    }

    pub fn parse_http_date(s: &str) -> Option<Self> {
        let fmt = format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        PrimitiveDateTime::parse(s.trim(), &fmt)
            .ok()
            .map(|p| Self::from_datetime(p.assume_utc()))
    }

    /// Whole seconds, the precision HTTP dates compare at.
    pub fn truncate_to_second(self) -> Self {
        Instant(self.0.div_euclid(1000) * 1000)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_fhir())
    }
}

/// The half-open range `[low, high)` of milliseconds a date value covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DateRange {
    pub low: Instant,
    pub high: Instant,
}

impl DateRange {
    /// Parses a FHIR date, dateTime or instant (also the partial forms
    /// search allows, such as `2013-01` or `2013-01-14T10:00`), giving the
    /// range its precision implies. Values without a zone are taken as UTC.
    pub fn parse(s: &str) -> Result<Self, InstantError> {
        let err = || InstantError(s.to_owned());
        if s.contains('T') {
            return parse_datetime(s).ok_or_else(err);
        }
        let parts: Vec<&str> = s.split('-').collect();
        let num = |p: &str, len: usize| -> Option<i32> {
            (p.len() == len && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
        };
        let year = parts.first().and_then(|p| num(p, 4)).ok_or_else(err)?;
        let (low, high) = match parts.len() {
            1 => (ymd(year, 1, 1), ymd(year + 1, 1, 1)),
            2 => {
                let m = parts.get(1).and_then(|p| num(p, 2)).ok_or_else(err)?;
                let next = if m == 12 {
                    ymd(year + 1, 1, 1)
                } else {
                    ymd(year, m + 1, 1)
                };
                (ymd(year, m, 1), next)
            }
            3 => {
                let m = parts.get(1).and_then(|p| num(p, 2)).ok_or_else(err)?;
                let d = parts.get(2).and_then(|p| num(p, 2)).ok_or_else(err)?;
                let low = ymd(year, m, d).ok_or_else(err)?;
                (Some(low), low.next_day())
            }
            _ => return Err(err()),
        };
        match (low, high) {
            (Some(l), Some(h)) => Ok(DateRange {
                low: midnight(l),
                high: midnight(h),
            }),
            _ => Err(err()),
        }
    }
}

fn ymd(y: i32, m: i32, d: i32) -> Option<Date> {
    let month = Month::try_from(u8::try_from(m).ok()?).ok()?;
    Date::from_calendar_date(y, month, u8::try_from(d).ok()?).ok()
}

fn midnight(d: Date) -> Instant {
    Instant::from_datetime(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc())
}

fn parse_datetime(s: &str) -> Option<DateRange> {
    if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
        // The precision is that of the written fraction of a second; beyond
        // milliseconds the range is the millisecond itself.
        let low = Instant::from_datetime(dt);
        let frac = s.split_once('.').map_or(0, |(_, rest)| {
            rest.bytes().take_while(u8::is_ascii_digit).count()
        });
        let width = match frac {
            0 => 1000,
            1 => 100,
            2 => 10,
            _ => 1,
        };
        return Some(DateRange {
            low,
            high: Instant(low.0 + width),
        });
    }
    // Forms without seconds or without a zone: `2013-01-14T10:00`,
    // `2013-01-14T10:00:00`, `2013-01-14T10:00+01:00`.
    let (body, offset) = split_zone(s)?;
    let (date, time) = body.split_once('T')?;
    let date = DateRange::parse(date).ok()?.low;
    let fields: Vec<&str> = time.split(':').collect();
    let hh: i64 = fields.first()?.parse().ok()?;
    let mm: i64 = fields.get(1)?.parse().ok()?;
    let (ss, width) = match fields.get(2) {
        Some(sec) => (sec.parse::<f64>().ok()?, 1000),
        None => (0.0, 60_000),
    };
    if hh > 23 || mm > 59 || !(0.0..61.0).contains(&ss) || fields.len() > 3 {
        return None;
    }
    let low = date.0 + (hh * 3600 + mm * 60) * 1000 + (ss * 1000.0) as i64 - offset * 1000;
    Some(DateRange {
        low: Instant(low),
        high: Instant(low + width),
    })
}

fn split_zone(s: &str) -> Option<(&str, i64)> {
    if let Some(body) = s.strip_suffix('Z') {
        return Some((body, 0));
    }
    let t = s.find('T')?;
    if let Some(pos) = s[t..].rfind(['+', '-']).map(|p| p + t) {
        let zone = &s[pos + 1..];
        let (h, m) = zone.split_once(':')?;
        let secs = UtcOffset::from_hms(h.parse().ok()?, m.parse().ok()?, 0)
            .ok()?
            .whole_seconds();
        let sign = if s.as_bytes()[pos] == b'-' { -1 } else { 1 };
        return Some((&s[..pos], sign * i64::from(secs)));
    }
    Some((s, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> (String, String) {
        let r = DateRange::parse(s).unwrap_or_else(|e| panic!("{e}"));
        (r.low.to_fhir(), r.high.to_fhir())
    }

    #[test]
    fn date_precision_gives_ranges() {
        // search.html#date: a value covers the whole range of its precision.
        let cases = [
            (
                "2013",
                "2013-01-01T00:00:00.000Z",
                "2014-01-01T00:00:00.000Z",
            ),
            (
                "2013-12",
                "2013-12-01T00:00:00.000Z",
                "2014-01-01T00:00:00.000Z",
            ),
            (
                "2013-02-28",
                "2013-02-28T00:00:00.000Z",
                "2013-03-01T00:00:00.000Z",
            ),
            (
                "2013-02-28T10:00",
                "2013-02-28T10:00:00.000Z",
                "2013-02-28T10:01:00.000Z",
            ),
            (
                "2013-02-28T10:00:05Z",
                "2013-02-28T10:00:05.000Z",
                "2013-02-28T10:00:06.000Z",
            ),
            (
                "2013-02-28T10:00:05.5+01:00",
                "2013-02-28T09:00:05.500Z",
                "2013-02-28T09:00:05.600Z",
            ),
        ];
        for (input, low, high) in cases {
            assert_eq!(range(input), (low.to_owned(), high.to_owned()), "{input}");
        }
        for bad in [
            "",
            "13",
            "2013-13",
            "2013-02-30",
            "2013-1-01",
            "x2013",
            "2013-01-01T25:00",
        ] {
            assert!(DateRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_dates_round_trip_at_second_precision() {
        let t = Instant::from_millis(784_111_777_123);
        assert_eq!(t.to_http_date(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            Instant::parse_http_date(&t.to_http_date()),
            Some(t.truncate_to_second())
        );
    }
}
