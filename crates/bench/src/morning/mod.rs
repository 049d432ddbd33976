//! The load test: a simulated practice morning over loopback HTTP.
//!
//! Many staff work at once, each signed in with their own account:
//! receptionists find patients (by name, NHS number, date of birth) and
//! book and cancel appointments through the FHIR API (a free Slot found,
//! then the Appointment created and the Slot marked busy in one transaction
//! Bundle, guarded by the Slot's version); GPs and nurses open the clinician
//! app's patient pages, make the FHIR reads a GP's system makes, and record
//! consultations through the app's form (its CSRF token taken from the
//! page). Each user picks actions from a weighted mix and thinks between
//! them. The run is bounded by a duration and a cap on requests.
//!
//! Why not goose, oha or wrk: oha and wrk replay fixed requests and cannot
//! carry a per-user sign-in, a CSRF token read from a page, or a booking
//! that depends on the free slot a search just found; goose can, but it
//! times requests in whole milliseconds, and most of these take less than
//! one on loopback. So the users are tokio tasks with their own reqwest
//! clients, and every request is timed in microseconds.
//!
//! The server runs in the same process, so the resident memory reported
//! (`VmRSS`) is the server's plus the load generator's (a few MB).

mod user;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::percentile;

/// What a member of staff does in the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Reception,
    Gp,
    Nurse,
}

/// A staff account a simulated user signs in with.
#[derive(Clone, Debug)]
pub struct Account {
    pub username: String,
    pub password: String,
    pub role: Role,
    /// The user's Practitioner id, for their day's appointment list.
    pub practitioner: Option<String>,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct MorningPlan {
    /// The server's root URL (`http://127.0.0.1:PORT`).
    pub site: String,
    /// The practice's ODS code.
    pub practice: String,
    /// One simulated user per account.
    pub accounts: Vec<Account>,
    /// How long the morning lasts once everyone has started.
    pub duration: Duration,
    /// The most requests sent in all; the run stops early when it is reached.
    pub max_requests: u64,
    /// Mean pause between one user's actions (each pause is drawn between
    /// half and one and a half times this).
    pub think: Duration,
    /// Seeds each user's choices, so a run can be repeated.
    pub seed: u64,
}

/// The kinds of request, each timed and counted on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    ApiSignIn,
    AppSignIn,
    FindByName,
    FindByNhs,
    FindByBirthDate,
    FreeSlots,
    Book,
    Cancel,
    DayList,
    ReadPatient,
    ActiveProblems,
    BloodPressures,
    Medication,
    Summary,
    Journal,
    ConsultForm,
    Typeahead,
    ConsultSave,
    AppSearch,
}

const KINDS: [Kind; 19] = [
    Kind::ApiSignIn,
    Kind::AppSignIn,
    Kind::FindByName,
    Kind::FindByNhs,
    Kind::FindByBirthDate,
    Kind::FreeSlots,
    Kind::Book,
    Kind::Cancel,
    Kind::DayList,
    Kind::ReadPatient,
    Kind::ActiveProblems,
    Kind::BloodPressures,
    Kind::Medication,
    Kind::Summary,
    Kind::Journal,
    Kind::ConsultForm,
    Kind::Typeahead,
    Kind::ConsultSave,
    Kind::AppSearch,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ApiSignIn => "sign in, API (`POST /auth/login`)",
            Kind::AppSignIn => "sign in, app (`POST /app/login`)",
            Kind::FindByName => "find patient by name (`Patient?family&given`)",
            Kind::FindByNhs => "find patient by NHS number (`Patient?identifier`)",
            Kind::FindByBirthDate => "find patient by date of birth (`Patient?birthdate`)",
            Kind::FreeSlots => "free slots (`Slot?schedule&status=free&start=ge`)",
            Kind::Book => "book: transaction (Appointment + Slot busy)",
            Kind::Cancel => "cancel: transaction (Appointment cancelled + Slot free)",
            Kind::DayList => "day list (`Appointment?actor&date&_include`)",
            Kind::ReadPatient => "read `Patient/{id}`",
            Kind::ActiveProblems => "active problems (`Condition?patient&clinical-status`)",
            Kind::BloodPressures => "latest blood pressures (`Observation?patient&code&_sort`)",
            Kind::Medication => "active medication (`MedicationRequest?patient&status`)",
            Kind::Summary => "app: patient summary page",
            Kind::Journal => "app: journal page",
            Kind::ConsultForm => "app: consultation form",
            Kind::Typeahead => "app: SNOMED CT typeahead (htmx)",
            Kind::ConsultSave => "app: save consultation (`POST`, transaction)",
            Kind::AppSearch => "app: patient search (htmx)",
        }
    }

    fn index(self) -> usize {
        KINDS.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// A patient as the receptionists know them.
#[derive(Clone, Debug)]
pub(crate) struct Card {
    id: String,
    family: String,
    given: String,
    nhs: String,
    birth_date: String,
}

/// A clinician's appointment book.
#[derive(Clone, Debug)]
pub(crate) struct Book {
    schedule: String,
    practitioner: String,
}

/// What every user shares: the plan, what setup found, and the bounds.
pub(crate) struct Shared {
    plan: MorningPlan,
    /// The practice's FHIR base URL.
    base: String,
    patients: Vec<Card>,
    books: Vec<Book>,
    /// Today (`YYYY-MM-DD`, UTC), for the day lists.
    today: String,
    /// When users stop starting new requests.
    deadline: Instant,
    /// Requests sent so far, against `plan.max_requests`.
    sent: AtomicU64,
    /// Set when the request cap is reached.
    capped: AtomicBool,
}

impl Shared {
    /// Whether one more request may go out; counts it if so.
    fn take(&self) -> bool {
        if self.capped.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return false;
        }
        if self.sent.fetch_add(1, Ordering::Relaxed) >= self.plan.max_requests {
            self.capped.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn running(&self) -> bool {
        !self.capped.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }
}

/// One kind's samples.
#[derive(Default, Clone)]
pub(crate) struct Tally {
    /// Times of the requests that got their expected answer, in µs.
    times_us: Vec<u32>,
    errors: u64,
}

/// What one user saw.
#[derive(Clone)]
pub(crate) struct Recorder {
    tallies: Vec<Tally>,
    /// Bookings refused because another receptionist took the slot first
    /// (412 on the Slot's `If-Match`): the right answer to a race, retried
    /// with another slot, not an error.
    lost_races: u64,
    /// Bookings given up because no clinician had a free slot.
    no_free_slot: u64,
    /// The first few errors, for the report.
    samples: Vec<String>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            tallies: vec![Tally::default(); KINDS.len()],
            lost_races: 0,
            no_free_slot: 0,
            samples: Vec::new(),
        }
    }

    fn time(&mut self, kind: Kind, took: Duration) {
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        self.tallies[kind.index()].times_us.push(us);
    }

    fn error(&mut self, kind: Kind, what: String) {
        self.tallies[kind.index()].errors += 1;
        if self.samples.len() < 10 {
            self.samples.push(format!("{}: {what}", kind.name()));
        }
    }

    fn merge(&mut self, other: Recorder) {
        for (a, b) in self.tallies.iter_mut().zip(other.tallies) {
            a.times_us.extend(b.times_us);
            a.errors += b.errors;
        }
        self.lost_races += other.lost_races;
        self.no_free_slot += other.no_free_slot;
        for s in other.samples {
            if self.samples.len() < 10 {
                self.samples.push(s);
            }
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: &'static str,
    pub count: usize,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub per_sec: f64,
}

/// The figures.
#[derive(Clone, Debug)]
pub struct MorningReport {
    pub patients: usize,
    pub receptionists: usize,
    pub gps: usize,
    pub nurses: usize,
    pub think_ms: u64,
    /// Seconds from the first user starting to the last request answered.
    pub secs: f64,
    pub rows: Vec<Row>,
    pub total: usize,
    pub errors: u64,
    pub lost_races: u64,
    pub no_free_slot: u64,
    /// Whether the run stopped at the request cap rather than the deadline.
    pub capped: bool,
    pub max_requests: u64,
    pub rss_before_mb: f64,
    pub rss_peak_mb: f64,
    pub rss_after_mb: f64,
    /// Of the resident set, anonymous memory (heap) and file pages (SQLite's
    /// memory-mapped database), before and after.
    pub anon_mb: (f64, f64),
    pub file_mb: (f64, f64),
    /// Bytes the process caused to be written to storage during the morning
    /// (`write_bytes` in `/proc/self/io`).
    pub written_mb: f64,
    pub load_before: String,
    pub load_after: String,
    pub error_samples: Vec<String>,
}

impl fmt::Display for MorningReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "A practice morning: {} patients; {} users (receptionists {}, GPs {}, nurses {}), mean think time {} ms",
            self.patients,
            self.receptionists + self.gps + self.nurses,
            self.receptionists,
            self.gps,
            self.nurses,
            self.think_ms
        )?;
        writeln!(
            f,
            "{:.1} s, {} requests ({:.1}/s), {} errors; stopped by the {}",
            self.secs,
            self.total,
            self.total as f64 / self.secs.max(1e-9),
            self.errors,
            if self.capped {
                format!("request cap ({})", self.max_requests)
            } else {
                "clock".to_owned()
            }
        )?;
        writeln!(
            f,
            "bookings that lost a race for a slot (412, retried with another): {}; given up for want of a free slot: {}",
            self.lost_races, self.no_free_slot
        )?;
        writeln!(
            f,
            "resident memory (server and load generator, one process): {:.1} MB before, {:.1} MB peak, {:.1} MB after",
            self.rss_before_mb, self.rss_peak_mb, self.rss_after_mb
        )?;
        writeln!(
            f,
            "  of which heap (RssAnon) {:.1} MB before, {:.1} MB after; file pages (RssFile, the mapped database) {:.1} MB before, {:.1} MB after",
            self.anon_mb.0, self.anon_mb.1, self.file_mb.0, self.file_mb.1
        )?;
        writeln!(
            f,
            "written to storage during the morning: {:.1} MB ({:.2} MB/s)",
            self.written_mb,
            self.written_mb / self.secs.max(1e-9)
        )?;
        writeln!(
            f,
            "load average (1, 5, 15 min): {} before, {} after",
            self.load_before, self.load_after
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| request | count | errors | p50 | p95 | p99 | per second |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|")?;
        for r in &self.rows {
            writeln!(
                f,
                "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} |",
                r.name, r.count, r.errors, r.p50_ms, r.p95_ms, r.p99_ms, r.per_sec
            )?;
        }
        write!(
            f,
            "| all | {} | {} | | | | {:.1} |",
            self.total,
            self.errors,
            self.total as f64 / self.secs.max(1e-9)
        )?;
        for s in &self.error_samples {
            write!(f, "\nerror: {s}")?;
        }
        Ok(())
    }
}

/// The process's resident set in MB (`VmRSS` from `/proc/self/status`).
pub fn resident_mb() -> f64 {
    status_mb("VmRSS:")
}

/// A memory figure of `/proc/self/status` (given in kB) in MB.
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Bytes this process has caused to be written to storage so far.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The machine's load averages (`/proc/loadavg`).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Signs in as `account` through the API, for setup reads.
async fn sign_in(client: &reqwest::Client, plan: &MorningPlan, a: &Account) -> Result<String> {
    let res = client
        .post(format!("{}/auth/login", plan.site))
        .json(&serde_json::json!({
            "practice": plan.practice, "username": a.username, "password": a.password
        }))
        .send()
        .await?;
    let status = res.status();
    let v: Value = res.json().await?;
    if !status.is_success() {
        bail!("signing in as {} answered {status}: {v}", a.username);
    }
    v["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("the sign-in answer has no access_token")
}

/// Every resource of a search, following `next` links.
pub(crate) async fn search_all(
    client: &reqwest::Client,
    token: &str,
    url: String,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut next = Some(url);
    while let Some(url) = next.take() {
        let res = client.get(&url).bearer_auth(token).send().await?;
        let status = res.status();
        let page: Value = res.json().await?;
        if !status.is_success() {
            bail!("{url} answered {status}: {page}");
        }
        for e in page["entry"].as_array().into_iter().flatten() {
            out.push(e["resource"].clone());
        }
        next = page["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
    }
    Ok(out)
}

/// The patients and appointment books the users work with, read over the
/// API by a receptionist before the morning starts (not timed).
async fn setup(plan: &MorningPlan, base: &str) -> Result<(Vec<Card>, Vec<Book>)> {
    let client = reqwest::Client::new();
    let a = plan
        .accounts
        .iter()
        .find(|a| a.role == Role::Reception)
        .context("the morning needs at least one receptionist")?;
    let token = sign_in(&client, plan, a).await?;
    let patients = search_all(
        &client,
        &token,
        format!("{base}/Patient?_count=1000&_elements=identifier,name,birthDate"),
    )
    .await?;
    let cards: Vec<Card> = patients
        .iter()
        .filter_map(|p| {
            let name = &p["name"][0];
            Some(Card {
                id: p["id"].as_str()?.to_owned(),
                family: name["family"].as_str()?.to_owned(),
                given: name["given"][0].as_str().unwrap_or_default().to_owned(),
                nhs: p["identifier"]
                    .as_array()?
                    .iter()
                    .find(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number")?["value"]
                    .as_str()?
                    .to_owned(),
                birth_date: p["birthDate"].as_str()?.to_owned(),
            })
        })
        .collect();
    if cards.is_empty() {
        bail!("the practice has no patients with a name, NHS number and date of birth");
    }
    let schedules = search_all(&client, &token, format!("{base}/Schedule?_count=100")).await?;
    let books: Vec<Book> = schedules
        .iter()
        .filter_map(|s| {
            let practitioner = s["actor"]
                .as_array()?
                .iter()
                .filter_map(|a| a["reference"].as_str())
                .find(|r| r.starts_with("Practitioner/"))?;
            Some(Book {
                schedule: format!("Schedule/{}", s["id"].as_str()?),
                practitioner: practitioner.to_owned(),
            })
        })
        .collect();
    if books.is_empty() {
        bail!("the practice has no clinicians' schedules to book into");
    }
    Ok((cards, books))
}

/// Runs the morning: setup, then every user at once (their starts spread
/// over the first few seconds), until the duration or the request cap.
pub async fn run(plan: &MorningPlan) -> Result<MorningReport> {
    let base = format!("{}/practices/{}/fhir", plan.site, plan.practice);
    let (patients, books) = setup(plan, &base).await?;
    let today = gp_fhir::Instant::now()
        .to_string()
        .chars()
        .take(10)
        .collect();
    let count = |r: Role| plan.accounts.iter().filter(|a| a.role == r).count();
    let rss_before_mb = resident_mb();
    let anon_before = status_mb("RssAnon:");
    let file_before = status_mb("RssFile:");
    let written_before = written_bytes();
    let load_before = load_average();
    let started = Instant::now();
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        base,
        patients,
        books,
        today,
        deadline: started + plan.duration,
        sent: AtomicU64::new(0),
        capped: AtomicBool::new(false),
    });
    // Resident memory sampled every second for its peak.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, shared) = (peak.clone(), shared.clone());
        tokio::spawn(async move {
            while shared.running() {
                let kb = (resident_mb() * 1024.0) as u64;
                peak.fetch_max(kb, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // Everyone signs in within the first tenth of the morning (at most 10 s).
    let ramp = (plan.duration / 10).min(Duration::from_secs(10));
    let n = plan.accounts.len().max(1) as u32;
    let mut tasks = Vec::new();
    for (i, account) in plan.accounts.iter().enumerate() {
        let shared = shared.clone();
        let account = account.clone();
        let delay = ramp * i as u32 / n;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            user::run(shared, account, i as u64).await
        }));
    }
    let mut all = Recorder::new();
    for t in tasks {
        all.merge(t.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    let rss_after_mb = resident_mb();
    let anon_mb = (anon_before, status_mb("RssAnon:"));
    let file_mb = (file_before, status_mb("RssFile:"));
    let written_mb = written_bytes().saturating_sub(written_before) as f64 / 1e6;
    let load_after = load_average();
    let _ = sampler.await;
    let rss_peak_mb = (peak.load(Ordering::Relaxed) as f64 / 1024.0).max(rss_after_mb);
    let mut rows = Vec::new();
    for (kind, tally) in KINDS.iter().zip(&all.tallies) {
        let mut times: Vec<Duration> = tally
            .times_us
            .iter()
            .map(|us| Duration::from_micros(u64::from(*us)))
            .collect();
        if times.is_empty() && tally.errors == 0 {
            continue;
        }
        times.sort();
        rows.push(Row {
            name: kind.name(),
            count: times.len() + tally.errors as usize,
            errors: tally.errors,
            p50_ms: percentile(&times, 0.50),
            p95_ms: percentile(&times, 0.95),
            p99_ms: percentile(&times, 0.99),
            per_sec: times.len() as f64 / secs.max(1e-9),
        });
    }
    Ok(MorningReport {
        patients: shared.patients.len(),
        receptionists: count(Role::Reception),
        gps: count(Role::Gp),
        nurses: count(Role::Nurse),
        think_ms: plan.think.as_millis() as u64,
        secs,
        total: rows.iter().map(|r| r.count).sum(),
        errors: rows.iter().map(|r| r.errors).sum(),
        rows,
        lost_races: all.lost_races,
        no_free_slot: all.no_free_slot,
        capped: shared.capped.load(Ordering::Relaxed),
        max_requests: plan.max_requests,
        rss_before_mb,
        rss_peak_mb,
        rss_after_mb,
        anon_mb,
        file_mb,
        written_mb,
        load_before,
        load_after,
        error_samples: all.samples,
    })
}
