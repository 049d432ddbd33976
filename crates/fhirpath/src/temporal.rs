//! Dates, date-times and times with partial precision
//! (http://hl7.org/fhirpath/N1/#datetime): parsing from literals and FHIR
//! strings, comparison that answers "unknown" when precisions differ,
//! calendar arithmetic, and the boundary functions.

use std::cmp::Ordering;
use std::fmt;

/// Which of the three temporal types a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalKind {
    Date,
    DateTime,
    Time,
}

/// How far a value is specified, from the year (or hour, for times) down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

/// A FHIRPath Date, DateTime or Time. Components below `precision` are zero
/// (or one, for month and day) and carry no meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct Temporal {
    pub kind: TemporalKind,
    pub precision: Precision,
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millisecond: u32,
    /// Offset from UTC in minutes, when the value has one.
    pub offset: Option<i32>,
}

/// A calendar unit for date arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CalendarUnit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

impl Temporal {
    fn blank(kind: TemporalKind) -> Temporal {
        Temporal {
            kind,
            precision: Precision::Year,
            year: 0,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millisecond: 0,
            offset: None,
        }
    }

    /// A literal as written after `@`: `2015-02`, `2015-02-04T14:34Z`,
    /// `T14:34:28.123`. A time with a timezone is not a valid literal.
    pub(crate) fn parse_literal(s: &str) -> Option<Temporal> {
        if let Some(time) = s.strip_prefix('T') {
            return Temporal::parse_time(time);
        }
        let (mut t, rest) = Temporal::parse_date_part(s)?;
        let Some(rest) = rest.strip_prefix('T') else {
            return rest.is_empty().then_some(t);
        };
        t.kind = TemporalKind::DateTime;
        if rest.is_empty() {
            return Some(t);
        }
        let rest = t.parse_time_part(rest)?;
        t.parse_offset(rest)?;
        Some(t)
    }

    /// A FHIR `date`, `dateTime` or `instant` string (`kind` says which
    /// FHIRPath type it becomes), or a string given to `toDate()`.
    pub(crate) fn parse_fhir(s: &str, kind: TemporalKind) -> Option<Temporal> {
        if kind == TemporalKind::Time {
            return Temporal::parse_time(s);
        }
        let (mut t, rest) = Temporal::parse_date_part(s)?;
        t.kind = kind;
        if rest.is_empty() {
            return Some(t);
        }
        if kind == TemporalKind::Date {
            return None;
        }
        let rest = rest.strip_prefix('T')?;
        let rest = t.parse_time_part(rest)?;
        t.parse_offset(rest)?;
        Some(t)
    }

    pub(crate) fn parse_time(s: &str) -> Option<Temporal> {
        let mut t = Temporal::blank(TemporalKind::Time);
        let rest = t.parse_time_part(s)?;
        rest.is_empty().then_some(t)
    }

    fn parse_date_part(s: &str) -> Option<(Temporal, &str)> {
        let mut t = Temporal::blank(TemporalKind::Date);
        let (year, mut rest) = digits(s, 4)?;
        t.year = year as i32;
        if let Some(r) = rest.strip_prefix('-') {
            let (month, r) = digits(r, 2)?;
            t.month = month;
            t.precision = Precision::Month;
            rest = r;
            if let Some(r) = rest.strip_prefix('-') {
                let (day, r) = digits(r, 2)?;
                t.day = day;
                t.precision = Precision::Day;
                rest = r;
            }
        }
        let valid = (1..=12).contains(&t.month) && t.day >= 1 && t.day <= days_in(t.year, t.month);
        valid.then_some((t, rest))
    }

    fn parse_time_part<'s>(&mut self, s: &'s str) -> Option<&'s str> {
        let (hour, mut rest) = digits(s, 2)?;
        self.hour = hour;
        self.precision = Precision::Hour;
        if let Some(r) = rest.strip_prefix(':') {
            let (minute, r) = digits(r, 2)?;
            self.minute = minute;
            self.precision = Precision::Minute;
            rest = r;
            if let Some(r) = rest.strip_prefix(':') {
                let (second, r) = digits(r, 2)?;
                self.second = second;
                self.precision = Precision::Second;
                rest = r;
                if let Some(r) = rest.strip_prefix('.') {
                    let n = r.bytes().take_while(u8::is_ascii_digit).count();
                    if n == 0 {
                        return None;
                    }
                    let frac = format!("{:0<3}", &r[..n.min(3)]);
                    self.millisecond = frac.parse().ok()?;
                    self.precision = Precision::Millisecond;
                    rest = &r[n..];
                }
            }
        }
        (self.hour < 24 && self.minute < 60 && self.second < 60).then_some(rest)
    }

    fn parse_offset(&mut self, s: &str) -> Option<()> {
        if s.is_empty() {
            return Some(());
        }
        if s == "Z" {
            self.offset = Some(0);
            return Some(());
        }
        let sign = match s.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, r) = digits(&s[1..], 2)?;
        let r = r.strip_prefix(':')?;
        let (m, r) = digits(r, 2)?;
        if !r.is_empty() || h > 14 || m > 59 {
            return None;
        }
        self.offset = Some(sign * (h as i32 * 60 + m as i32));
        Some(())
    }

    /// Compares two values (http://hl7.org/fhirpath/N1/#comparison):
    /// `None` when the answer is unknown because one is more precise than
    /// the other where they agree, or only one has a timezone.
    pub(crate) fn compare(&self, other: &Temporal) -> Option<Ordering> {
        let is_time = |t: &Temporal| t.kind == TemporalKind::Time;
        if is_time(self) != is_time(other) {
            return None;
        }
        let (a, b) = (self.clone(), other.clone());
        let timed = a.precision >= Precision::Hour && b.precision >= Precision::Hour;
        let (a, b) = match (a.offset, b.offset) {
            (Some(_), Some(_)) if timed => (a.to_utc(), b.to_utc()),
            (Some(_), None) | (None, Some(_)) if timed => return None,
            _ => (a, b),
        };
        let fields = |t: &Temporal| {
            [
                t.year as i64,
                t.month as i64,
                t.day as i64,
                t.hour as i64,
                t.minute as i64,
                (t.second * 1000 + t.millisecond) as i64,
            ]
        };
        // Seconds and milliseconds are one precision for comparison.
        let level = |p: Precision| match p {
            Precision::Millisecond => Precision::Second as usize,
            p => p as usize,
        };
        let (fa, fb) = (fields(&a), fields(&b));
        let start = if a.kind == TemporalKind::Time {
            Precision::Hour as usize
        } else {
            0
        };
        let common = level(a.precision).min(level(b.precision));
        for i in start..=common {
            match fa[i].cmp(&fb[i]) {
                Ordering::Equal => {}
                o => return Some(o),
            }
        }
        (level(a.precision) == level(b.precision)).then_some(Ordering::Equal)
    }

    /// The same instant in UTC (offset zero), components shifted.
    fn to_utc(&self) -> Temporal {
        let Some(offset) = self.offset else {
            return self.clone();
        };
        let mut t = self.clone();
        t.add_millis(-(offset as i64) * 60_000);
        t.offset = Some(0);
        t
    }

    fn add_millis(&mut self, delta: i64) {
        let day_ms = 86_400_000i64;
        let ms_of_day = ((self.hour * 60 + self.minute) as i64 * 60 + self.second as i64) * 1000
            + self.millisecond as i64;
        let total = ms_of_day + delta;
        let days = total.div_euclid(day_ms);
        let rem = total.rem_euclid(day_ms);
        self.hour = (rem / 3_600_000) as u32;
        self.minute = (rem / 60_000 % 60) as u32;
        self.second = (rem / 1000 % 60) as u32;
        self.millisecond = (rem % 1000) as u32;
        if self.kind != TemporalKind::Time {
            self.add_days(days);
        }
    }

    fn add_days(&mut self, days: i64) {
        let (y, m, d) = civil_from_days(days_from_civil(self.year, self.month, self.day) + days);
        self.year = y;
        self.month = m;
        self.day = d;
    }

    fn add_months(&mut self, months: i64) -> Option<()> {
        let total = self.year as i64 * 12 + self.month as i64 - 1 + months;
        self.year = i32::try_from(total.div_euclid(12)).ok()?;
        self.month = total.rem_euclid(12) as u32 + 1;
        self.day = self.day.min(days_in(self.year, self.month));
        Some(())
    }

    /// Adds `amount` of `unit` (http://hl7.org/fhirpath/N1/#date-time-arithmetic).
    /// A date takes time units as whole days; a time takes no calendar units.
    pub(crate) fn add(&self, amount: i64, unit: CalendarUnit) -> Option<Temporal> {
        let mut t = self.clone();
        let ms = |n: i64, per: i64| n.checked_mul(per);
        match (self.kind, unit) {
            (TemporalKind::Time, CalendarUnit::Year | CalendarUnit::Month) => return None,
            (TemporalKind::Time, CalendarUnit::Week | CalendarUnit::Day) => return None,
            (_, CalendarUnit::Year) => t.add_months(amount.checked_mul(12)?)?,
            (_, CalendarUnit::Month) => t.add_months(amount)?,
            (_, CalendarUnit::Week) => t.add_days(amount.checked_mul(7)?),
            (_, CalendarUnit::Day) => t.add_days(amount),
            (kind, unit) => {
                let per = match unit {
                    CalendarUnit::Hour => 3_600_000,
                    CalendarUnit::Minute => 60_000,
                    CalendarUnit::Second => 1000,
                    _ => 1,
                };
                let delta = ms(amount, per)?;
                if kind == TemporalKind::Date {
                    t.add_days(delta / 86_400_000);
                } else {
                    t.add_millis(delta);
                }
            }
        }
        (t.year > 0 && t.year < 10000).then_some(t)
    }

    /// The number of digits of precision (`precision()`): 4 for a year, 17
    /// for a date-time to the millisecond, 9 for a time to the millisecond.
    pub(crate) fn precision_digits(&self) -> i64 {
        let date = [4, 6, 8, 10, 12, 14, 17];
        match self.kind {
            TemporalKind::Time => [2, 2, 2, 2, 4, 6, 9][self.precision as usize],
            _ => date[self.precision as usize],
        }
    }

    /// `lowBoundary()` / `highBoundary()` (FHIRPath 2.0): the earliest or
    /// latest value this one could stand for, to `digits` of precision.
    pub(crate) fn boundary(&self, digits: Option<i64>, high: bool) -> Option<Temporal> {
        let mut t = self.clone();
        // The suite (and the reference implementation) reads an hour-only
        // date-time as a minute-precision one.
        if t.kind == TemporalKind::DateTime && t.precision == Precision::Hour {
            t.precision = Precision::Minute;
        }
        let target = match (t.kind, digits) {
            (TemporalKind::Date, None) => Precision::Day,
            (TemporalKind::DateTime | TemporalKind::Time, None) => Precision::Millisecond,
            (TemporalKind::Time, Some(d)) => match d {
                2 => Precision::Hour,
                4 => Precision::Minute,
                6 => Precision::Second,
                9 => Precision::Millisecond,
                _ => return None,
            },
            (kind, Some(d)) => match d {
                4 => Precision::Year,
                6 => Precision::Month,
                8 => Precision::Day,
                10 | 12 | 14 | 17 if kind == TemporalKind::Date => return None,
                10 => Precision::Hour,
                12 => Precision::Minute,
                14 => Precision::Second,
                17 => Precision::Millisecond,
                _ => return None,
            },
        };
        if target > t.precision {
            if t.precision < Precision::Month {
                t.month = if high { 12 } else { 1 };
            }
            if t.precision < Precision::Day {
                t.day = if high { days_in(t.year, t.month) } else { 1 };
            }
            if t.precision < Precision::Hour {
                t.hour = if high { 23 } else { 0 };
            }
            if t.precision < Precision::Minute {
                t.minute = if high { 59 } else { 0 };
            }
            if t.precision < Precision::Second {
                t.second = if high { 59 } else { 0 };
            }
            if t.precision < Precision::Millisecond {
                t.millisecond = if high { 999 } else { 0 };
            }
        }
        if t.kind == TemporalKind::DateTime && target >= Precision::Hour && t.offset.is_none() {
            t.offset = Some(if high { -12 * 60 } else { 14 * 60 });
        }
        t.precision = target;
        Some(t)
    }
}

impl fmt::Display for Temporal {
    /// The ISO 8601 form `toString()` gives (no `@`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.precision;
        if self.kind != TemporalKind::Time {
            write!(f, "{:04}", self.year)?;
            if p >= Precision::Month {
                write!(f, "-{:02}", self.month)?;
            }
            if p >= Precision::Day {
                write!(f, "-{:02}", self.day)?;
            }
            if p < Precision::Hour || self.kind == TemporalKind::Date {
                return Ok(());
            }
            f.write_str("T")?;
        }
        write!(f, "{:02}", self.hour)?;
        if p >= Precision::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if p >= Precision::Second {
            write!(f, ":{:02}", self.second)?;
        }
        if p >= Precision::Millisecond {
            write!(f, ".{:03}", self.millisecond)?;
        }
        if let Some(o) = self.offset {
            if o == 0 {
                f.write_str("Z")?;
            } else {
                let sign = if o < 0 { '-' } else { '+' };
                write!(f, "{sign}{:02}:{:02}", o.abs() / 60, o.abs() % 60)?;
            }
        }
        Ok(())
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y as i64 - 1 } else { y as i64 };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// The current instant in UTC, for `now()`, `today()` and `timeOfDay()`.
pub(crate) fn now_utc() -> Temporal {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut t = Temporal::blank(TemporalKind::DateTime);
    t.year = 1970;
    t.precision = Precision::Millisecond;
    t.offset = Some(0);
    t.add_millis(ms);
    t
}
