//! Crash safety: "No data is ever lost: acknowledged writes survive a crash."
//!
//! The server runs as a child process (`opengp serve`) over one data
//! directory. Each cycle, four clients write at once (creates of Patients
//! and Observations, updates with `If-Match`, and transaction Bundles that
//! create and update together) for a random 50–400 ms; then the server gets
//! SIGKILL while writes are in flight, and is started again on the same
//! directory. It must come up cleanly, and every write it answered 2xx must
//! read back: each acknowledged version by `vread`, byte for byte as the
//! acknowledgement carried it, and each resource's current version at least
//! the newest one acknowledged. Writes whose answer never arrived may or may
//! not have happened; both are fine. About one restart in three is itself
//! killed within 60 ms, while the store is being opened (and its WAL
//! recovered), before the restart that is checked.
//!
//! Each cycle checks the writes acknowledged in it and a sample of earlier
//! ones. While the server is up, every request must get a complete answer
//! and every answer must be the expected success (a 4xx or 5xx under this
//! workload is a bug too). At the end the server is stopped gracefully
//! (SIGTERM, which must exit 0 and leave the WAL checkpointed), started once
//! more, every acknowledged version is checked again, and the server's log
//! must hold no errors or panics.
//!
//! The normal run does 20 kill cycles. For a soak, set `OPENGP_CRASH_SOAK`
//! to the number of cycles:
//!
//! ```text
//! OPENGP_CRASH_SOAK=500 cargo test --release -p opengp --test it crash -- --nocapture
//! ```
//!
//! `OPENGP_CRASH_SEED` fixes the random choices (the timing still varies);
//! the seed of each run is printed.
//!
//! SIGKILL loses what the process holds, not what the operating system has
//! yet to put on disk, so this checks that a write is acknowledged only once
//! its transaction has committed; it does not simulate power loss.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::child::{Server, add_account, log_tail};
use crate::support;

/// Kill cycles in the normal test run.
const DEFAULT_CYCLES: usize = 20;
/// Clients writing at once.
const CLIENTS: usize = 4;
/// How long the clients write before the kill, in milliseconds.
const KILL_AFTER_MS: (u64, u64) = (50, 400);
/// How often a restart is itself killed, and how soon after it begins.
const STARTUP_KILL_CHANCE: f64 = 0.3;
const STARTUP_KILL_MS: u64 = 60;
/// Concurrent readers when checking.
const CHECKERS: usize = 8;
/// Earlier acknowledged versions checked again in each cycle.
const RECHECK_SAMPLE: usize = 200;
const FHIR_JSON: &str = "application/fhir+json";

/// A resource: its type and id.
type Key = (String, String);

/// One version the server acknowledged.
#[derive(Clone, Debug)]
struct Ack {
    ty: String,
    id: String,
    version: u64,
    /// The resource exactly as the acknowledgement carried it.
    body: Vec<u8>,
    /// Which interaction, for messages.
    how: &'static str,
    cycle: usize,
}

impl Ack {
    fn key(&self) -> Key {
        (self.ty.clone(), self.id.clone())
    }

    fn name(&self) -> String {
        format!(
            "{}/{} version {} ({} in cycle {})",
            self.ty, self.id, self.version, self.how, self.cycle
        )
    }
}

/// Every acknowledged write so far.
#[derive(Default)]
struct Ledger {
    acks: Vec<Ack>,
    /// (type, id, version) to its place in `acks`.
    seen: HashMap<(String, String, u64), usize>,
    /// The newest acknowledged version of each resource.
    newest: HashMap<Key, u64>,
    creates: usize,
    updates: usize,
    in_transactions: usize,
}

impl Ledger {
    fn add(&mut self, ack: Ack, problems: &mut Vec<String>) {
        let at = (ack.ty.clone(), ack.id.clone(), ack.version);
        if let Some(&i) = self.seen.get(&at) {
            // Two writes acknowledged as the same version: one of them was lost.
            problems.push(format!(
                "{} was acknowledged twice: first by {}",
                ack.name(),
                self.acks[i].name()
            ));
            return;
        }
        match ack.how {
            "create" => self.creates += 1,
            "update" => self.updates += 1,
            _ => self.in_transactions += 1,
        }
        let newest = self.newest.entry(ack.key()).or_insert(0);
        *newest = (*newest).max(ack.version);
        self.seen.insert(at, self.acks.len());
        self.acks.push(ack);
    }
}

fn assert_no_problems(problems: &[String], when: &str, log: &Path) {
    if problems.is_empty() {
        return;
    }
    let shown: Vec<&str> = problems.iter().take(30).map(String::as_str).collect();
    panic!(
        "{when}: {} problem(s):\n  {}\n{}",
        problems.len(),
        shown.join("\n  "),
        log_tail(log)
    );
}

// ---- the writing clients ----

/// Why a write produced no acknowledgement.
enum Failure {
    /// No complete answer: expected once the server is killed.
    Transport(String),
    /// An answer, but not the one a healthy server gives.
    Wrong(String),
}

type Written = Result<Vec<Ack>, Failure>;

/// A client that writes resources of its own, so that its `If-Match`
/// versions are never raced by the others.
struct Client {
    n: usize,
    rng: StdRng,
    seq: u64,
    /// Resources this client created, with the version it last saw.
    owned: Vec<(String, String, u64)>,
}

/// What a client did in one cycle.
#[derive(Default)]
struct Outcome {
    acks: Vec<Ack>,
    /// Resources written or attempted this cycle.
    touched: HashSet<Key>,
    problems: Vec<String>,
    /// The kill cut one of this client's requests short.
    interrupted: bool,
}

/// The status, ETag and body of an answer that arrived in full.
async fn send(req: reqwest::RequestBuilder) -> Result<(u16, Option<String>, Vec<u8>), Failure> {
    let res = req
        .send()
        .await
        .map_err(|e| Failure::Transport(e.to_string()))?;
    let status = res.status().as_u16();
    let etag = res
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res
        .bytes()
        .await
        .map_err(|e| Failure::Transport(e.to_string()))?;
    Ok((status, etag, body.to_vec()))
}

fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 600 {
        format!("{}…", &s[..s.floor_char_boundary(600)])
    } else {
        s.into_owned()
    }
}

fn parse(bytes: &[u8], what: &str) -> Result<Value, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        Failure::Wrong(format!(
            "{what}: the answer is not JSON ({e}): {}",
            text(bytes)
        ))
    })
}

/// Checks a stored resource the server answered with: type, id (when
/// known), version and the client's marker. Returns its id and version.
fn check_stored(
    v: &Value,
    bytes: &[u8],
    ty: &str,
    id: Option<&str>,
    version: u64,
    marker: &str,
    what: &str,
) -> Result<(String, u64), Failure> {
    let wrong = |m: String| Failure::Wrong(format!("{what}: {m}: {}", text(bytes)));
    if v["resourceType"] != ty {
        return Err(wrong(format!("expected a {ty}")));
    }
    let got_id = v["id"]
        .as_str()
        .ok_or_else(|| wrong("no id".into()))?
        .to_owned();
    if id.is_some_and(|id| id != got_id) {
        return Err(wrong(format!("expected id {id:?}")));
    }
    let got_version: u64 = v["meta"]["versionId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| wrong("no meta.versionId".into()))?;
    if got_version != version {
        return Err(wrong(format!(
            "expected version {version}, got {got_version}"
        )));
    }
    if !String::from_utf8_lossy(bytes).contains(marker) {
        return Err(wrong(format!("the marker {marker} is missing")));
    }
    Ok((got_id, got_version))
}

fn filler(rng: &mut StdRng) -> String {
    // Mostly small, sometimes tens of kilobytes: commits of one page and of many.
    let len = if rng.random_bool(0.1) {
        rng.random_range(4_000..60_000)
    } else {
        rng.random_range(0..2_000)
    };
    rng.sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn uuid(rng: &mut StdRng) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        rng.random::<u32>(),
        rng.random::<u16>(),
        rng.random::<u16>() & 0x0fff,
        (rng.random::<u16>() & 0x3fff) | 0x8000,
        rng.random::<u64>() & 0xffff_ffff_ffff
    )
}

impl Client {
    fn new(n: usize, seed: u64) -> Self {
        Client {
            n,
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
            owned: Vec::new(),
        }
    }

    /// A value unique to one write; the closing dot keeps one marker from
    /// being a prefix of another.
    fn marker(&mut self, cycle: usize) -> String {
        self.seq += 1;
        format!("crash.{}.{}.{}.", self.n, cycle, self.seq)
    }

    /// A new body for a resource of type `ty`, carrying `marker`.
    fn body(&mut self, ty: &str, marker: &str, subject: Option<&str>) -> Value {
        let fill = filler(&mut self.rng);
        if ty == "Patient" {
            let gender = ["male", "female", "other", "unknown"][self.rng.random_range(0..4)];
            let family = format!("Crash{}", self.rng.random_range(0..10_000));
            let birth_date = format!(
                "19{:02}-0{}-1{}",
                self.rng.random_range(0..100),
                self.rng.random_range(1..10),
                self.rng.random_range(0..10)
            );
            let div = format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{fill}</div>");
            json!({
                "resourceType": "Patient",
                "identifier": [{ "system": "https://opengp.example/crash-test", "value": marker }],
                "name": [{ "family": family, "given": [marker] }],
                "gender": gender,
                "birthDate": birth_date,
                "text": { "status": "generated", "div": div }
            })
        } else {
            let mut o = json!({
                "resourceType": "Observation",
                "status": "final",
                "code": { "coding": [{
                    "system": "http://snomed.info/sct",
                    "code": "27113001",
                    "display": "Body weight"
                }] },
                "valueString": format!("{marker} {fill}")
            });
            let subject = subject.map(str::to_owned).or_else(|| {
                let patients: Vec<&(String, String, u64)> = self
                    .owned
                    .iter()
                    .filter(|(t, _, _)| t == "Patient")
                    .collect();
                if patients.is_empty() {
                    None
                } else {
                    let (_, id, _) = patients[self.rng.random_range(0..patients.len())];
                    Some(format!("Patient/{id}"))
                }
            });
            if let Some(s) = subject {
                o["subject"] = json!({ "reference": s });
            }
            o
        }
    }

    fn random_type(&mut self) -> &'static str {
        if self.rng.random_bool(0.5) {
            "Patient"
        } else {
            "Observation"
        }
    }

    /// One write, chosen at random.
    async fn step(
        &mut self,
        http: &reqwest::Client,
        base: &str,
        out: &mut Outcome,
        cycle: usize,
    ) -> Written {
        let roll = self.rng.random_range(0..100);
        if self.owned.is_empty() || roll < 35 {
            self.create(http, base, out, cycle).await
        } else if roll < 75 {
            self.update(http, base, out, cycle).await
        } else {
            self.transaction(http, base, out, cycle).await
        }
    }

    async fn create(
        &mut self,
        http: &reqwest::Client,
        base: &str,
        out: &mut Outcome,
        cycle: usize,
    ) -> Written {
        let ty = self.random_type();
        let marker = self.marker(cycle);
        let body = self.body(ty, &marker, None);
        let what = format!("POST {ty} ({marker})");
        let (status, etag, bytes) = send(
            http.post(format!("{base}/{ty}"))
                .header("content-type", FHIR_JSON)
                .header("prefer", "return=representation")
                .body(body.to_string()),
        )
        .await?;
        if status != 201 {
            return Err(Failure::Wrong(format!(
                "{what}: status {status}: {}",
                text(&bytes)
            )));
        }
        let v = parse(&bytes, &what)?;
        let (id, version) = check_stored(&v, &bytes, ty, None, 1, &marker, &what)?;
        if etag.as_deref() != Some("W/\"1\"") {
            return Err(Failure::Wrong(format!("{what}: ETag {etag:?}")));
        }
        self.owned.push((ty.to_owned(), id.clone(), version));
        out.touched.insert((ty.to_owned(), id.clone()));
        Ok(vec![Ack {
            ty: ty.to_owned(),
            id,
            version,
            body: bytes,
            how: "create",
            cycle,
        }])
    }

    async fn update(
        &mut self,
        http: &reqwest::Client,
        base: &str,
        out: &mut Outcome,
        cycle: usize,
    ) -> Written {
        let i = self.rng.random_range(0..self.owned.len());
        let (ty, id, known) = self.owned[i].clone();
        out.touched.insert((ty.clone(), id.clone()));
        let marker = self.marker(cycle);
        let mut body = self.body(&ty, &marker, None);
        body["id"] = json!(id);
        let what = format!("PUT {ty}/{id} If-Match {known} ({marker})");
        let (status, etag, bytes) = send(
            http.put(format!("{base}/{ty}/{id}"))
                .header("content-type", FHIR_JSON)
                .header("if-match", format!("W/\"{known}\""))
                .body(body.to_string()),
        )
        .await?;
        if status != 200 {
            return Err(Failure::Wrong(format!(
                "{what}: status {status}: {}",
                text(&bytes)
            )));
        }
        let v = parse(&bytes, &what)?;
        let (_, version) = check_stored(&v, &bytes, &ty, Some(&id), known + 1, &marker, &what)?;
        if etag != Some(format!("W/\"{version}\"")) {
            return Err(Failure::Wrong(format!("{what}: ETag {etag:?}")));
        }
        self.owned[i].2 = version;
        Ok(vec![Ack {
            ty,
            id,
            version,
            body: bytes,
            how: "update",
            cycle,
        }])
    }

    /// A transaction: a new Patient, a new Observation referring to it by
    /// its `urn:uuid`, and sometimes an update of a resource of ours.
    async fn transaction(
        &mut self,
        http: &reqwest::Client,
        base: &str,
        out: &mut Outcome,
        cycle: usize,
    ) -> Written {
        struct Expect {
            ty: String,
            id: Option<String>,
            version: u64,
            marker: String,
            owned: Option<usize>,
        }
        let urn = format!("urn:uuid:{}", uuid(&mut self.rng));
        let mut entries = Vec::new();
        let mut expect = Vec::new();

        let marker = self.marker(cycle);
        entries.push(json!({
            "fullUrl": urn,
            "resource": self.body("Patient", &marker, None),
            "request": { "method": "POST", "url": "Patient" }
        }));
        expect.push(Expect {
            ty: "Patient".into(),
            id: None,
            version: 1,
            marker,
            owned: None,
        });

        let marker = self.marker(cycle);
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", uuid(&mut self.rng)),
            "resource": self.body("Observation", &marker, Some(&urn)),
            "request": { "method": "POST", "url": "Observation" }
        }));
        expect.push(Expect {
            ty: "Observation".into(),
            id: None,
            version: 1,
            marker,
            owned: None,
        });

        if !self.owned.is_empty() && self.rng.random_bool(0.6) {
            let i = self.rng.random_range(0..self.owned.len());
            let (ty, id, known) = self.owned[i].clone();
            out.touched.insert((ty.clone(), id.clone()));
            let marker = self.marker(cycle);
            let mut body = self.body(&ty, &marker, None);
            body["id"] = json!(id);
            entries.push(json!({
                "fullUrl": format!("{base}/{ty}/{id}"),
                "resource": body,
                "request": {
                    "method": "PUT",
                    "url": format!("{ty}/{id}"),
                    "ifMatch": format!("W/\"{known}\"")
                }
            }));
            expect.push(Expect {
                ty,
                id: Some(id),
                version: known + 1,
                marker,
                owned: Some(i),
            });
        }

        let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
        let what = format!(
            "transaction ({}..{})",
            expect[0].marker,
            expect[expect.len() - 1].marker
        );
        let (status, _, bytes) = send(
            http.post(base)
                .header("content-type", FHIR_JSON)
                .body(bundle.to_string()),
        )
        .await?;
        if status != 200 {
            return Err(Failure::Wrong(format!(
                "{what}: status {status}: {}",
                text(&bytes)
            )));
        }
        let v = parse(&bytes, &what)?;
        if v["type"] != "transaction-response" {
            return Err(Failure::Wrong(format!(
                "{what}: not a transaction-response: {}",
                text(&bytes)
            )));
        }
        // The resources exactly as the response carries them.
        let raw: Vec<HashMap<String, &RawValue>> =
            serde_json::from_slice::<HashMap<String, &RawValue>>(&bytes)
                .ok()
                .and_then(|top| {
                    top.get("entry")
                        .and_then(|e| serde_json::from_str(e.get()).ok())
                })
                .ok_or_else(|| Failure::Wrong(format!("{what}: no entries: {}", text(&bytes))))?;
        let parsed = v["entry"].as_array().cloned().unwrap_or_default();
        if raw.len() != expect.len() || parsed.len() != expect.len() {
            return Err(Failure::Wrong(format!(
                "{what}: {} entries answered for {} sent: {}",
                parsed.len(),
                expect.len(),
                text(&bytes)
            )));
        }
        let mut acks = Vec::new();
        let mut patient = String::new();
        for ((want, entry), raw) in expect.iter().zip(&parsed).zip(&raw) {
            let body = raw
                .get("resource")
                .map(|r| r.get().as_bytes().to_vec())
                .ok_or_else(|| {
                    Failure::Wrong(format!(
                        "{what}: an entry has no resource: {}",
                        text(&bytes)
                    ))
                })?;
            let (id, version) = check_stored(
                &entry["resource"],
                &body,
                &want.ty,
                want.id.as_deref(),
                want.version,
                &want.marker,
                &what,
            )?;
            let location = format!("{}/{id}/_history/{version}", want.ty);
            if entry["response"]["location"] != location.as_str() {
                return Err(Failure::Wrong(format!(
                    "{what}: location {} where {location} was expected",
                    entry["response"]["location"]
                )));
            }
            if want.ty == "Patient" && want.id.is_none() {
                patient = format!("Patient/{id}");
            }
            if want.ty == "Observation"
                && want.id.is_none()
                && entry["resource"]["subject"]["reference"] != patient.as_str()
            {
                return Err(Failure::Wrong(format!(
                    "{what}: the Observation's subject was not rewritten to {patient}: {}",
                    text(&body)
                )));
            }
            acks.push(Ack {
                ty: want.ty.clone(),
                id,
                version,
                body,
                how: "transaction",
                cycle,
            });
        }
        for (want, ack) in expect.iter().zip(&acks) {
            match want.owned {
                Some(i) => self.owned[i].2 = ack.version,
                None => {
                    self.owned
                        .push((ack.ty.clone(), ack.id.clone(), ack.version));
                    out.touched.insert(ack.key());
                }
            }
        }
        Ok(acks)
    }
}

/// Writes until the server is killed (or something goes wrong).
async fn run_client(
    mut c: Client,
    base: String,
    token: String,
    killed: Arc<AtomicBool>,
    cycle: usize,
) -> (Client, Outcome) {
    let mut out = Outcome::default();
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let http = reqwest::Client::builder()
        .default_headers(auth)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|e| panic!("HTTP client: {e}"));
    while !killed.load(Ordering::SeqCst) {
        match c.step(&http, &base, &mut out, cycle).await {
            Ok(acks) => out.acks.extend(acks),
            Err(Failure::Transport(e)) => {
                if killed.load(Ordering::SeqCst) {
                    out.interrupted = true;
                } else {
                    out.problems.push(format!(
                        "client {} in cycle {cycle}: a request failed while the server was up: {e}",
                        c.n
                    ));
                }
                break;
            }
            Err(Failure::Wrong(e)) => {
                out.problems
                    .push(format!("client {} in cycle {cycle}: {e}", c.n));
                break;
            }
        }
    }
    (c, out)
}

// ---- checking ----

/// Reads back each acknowledged version; returns the problems found.
async fn check_versions(base: &str, token: &str, acks: Vec<Ack>) -> Vec<String> {
    let http = support::authorised_client(token);
    let chunk = acks.len().div_ceil(CHECKERS).max(1);
    let mut tasks = Vec::new();
    for part in acks.chunks(chunk) {
        let (http, base, part) = (http.clone(), base.to_owned(), part.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut problems = Vec::new();
            for ack in part {
                let url = format!("{base}/{}/{}/_history/{}", ack.ty, ack.id, ack.version);
                match send(http.get(&url)).await {
                    Err(Failure::Transport(e) | Failure::Wrong(e)) => {
                        problems.push(format!("{}: GET failed: {e}", ack.name()))
                    }
                    Ok((200, _, body)) if body == ack.body => {}
                    Ok((200, _, body)) => problems.push(format!(
                        "{} reads back different content:\n  \
                         acknowledged {}\n  read back    {}",
                        ack.name(),
                        text(&ack.body),
                        text(&body)
                    )),
                    Ok((status, _, body)) => problems.push(format!(
                        "{} is lost: vread answers {status}: {}",
                        ack.name(),
                        text(&body)
                    )),
                }
            }
            problems
        }));
    }
    let mut problems = Vec::new();
    for t in tasks {
        problems.extend(t.await.unwrap_or_else(|e| panic!("check task: {e}")));
    }
    problems
}

/// Reads each resource's current version, which must be at least the
/// newest acknowledged. Returns the problems and the current versions.
async fn check_current(
    base: &str,
    token: &str,
    resources: Vec<(Key, u64)>,
) -> (Vec<String>, HashMap<Key, u64>) {
    let http = support::authorised_client(token);
    let chunk = resources.len().div_ceil(CHECKERS).max(1);
    let mut tasks = Vec::new();
    for part in resources.chunks(chunk) {
        let (http, base, part) = (http.clone(), base.to_owned(), part.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut problems = Vec::new();
            let mut current = Vec::new();
            for ((ty, id), newest) in part {
                match send(http.get(format!("{base}/{ty}/{id}"))).await {
                    Ok((200, _, body)) => {
                        let version = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                            v["meta"]["versionId"]
                                .as_str()
                                .and_then(|s| s.parse::<u64>().ok())
                        });
                        match version {
                            Some(v) if v >= newest => current.push(((ty, id), v)),
                            Some(v) => problems.push(format!(
                                "{ty}/{id} is at version {v}, but version {newest} was acknowledged"
                            )),
                            None => problems
                                .push(format!("{ty}/{id}: no meta.versionId in {}", text(&body))),
                        }
                    }
                    Ok((status, _, body)) => problems.push(format!(
                        "{ty}/{id} (acknowledged up to version {newest}) reads {status}: {}",
                        text(&body)
                    )),
                    Err(Failure::Transport(e) | Failure::Wrong(e)) => {
                        problems.push(format!("{ty}/{id}: GET failed: {e}"))
                    }
                }
            }
            (problems, current)
        }));
    }
    let mut problems = Vec::new();
    let mut current = HashMap::new();
    for t in tasks {
        let (p, c) = t.await.unwrap_or_else(|e| panic!("check task: {e}"));
        problems.extend(p);
        current.extend(c);
    }
    (problems, current)
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not '{v}'"))
    })
}

/// "No data is ever lost: acknowledged writes survive a crash." SIGKILLs
/// the server at random moments under concurrent writes and checks, after
/// each restart, that it opens cleanly and that every write answered 2xx
/// is there with exactly the content acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let cycles = env_number("OPENGP_CRASH_SOAK").map_or(DEFAULT_CYCLES, |n| n as usize);
    let seed = env_number("OPENGP_CRASH_SEED").unwrap_or_else(|| rand::rng().random());
    eprintln!(
        "crash test: {cycles} kill cycles, {CLIENTS} clients, seed {seed} (OPENGP_CRASH_SEED)"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let data: PathBuf = root.path().join("data");
    let log: PathBuf = root.path().join("server.log");
    let started = Instant::now();

    let mut ledger = Ledger::default();
    let mut clients: Vec<Client> = (0..CLIENTS).map(|n| Client::new(n, rng.random())).collect();
    let mut rechecked = 0usize;
    let mut startup_kills = 0usize;
    let mut unacknowledged_found = 0usize;
    add_account(&data);
    let mut server = Server::start(&data, &log).await;

    for cycle in 1..=cycles {
        let killed = Arc::new(AtomicBool::new(false));
        let running: Vec<_> = clients
            .drain(..)
            .map(|c| {
                tokio::spawn(run_client(
                    c,
                    server.base.clone(),
                    server.token.clone(),
                    killed.clone(),
                    cycle,
                ))
            })
            .collect();
        let delay = rng.random_range(KILL_AFTER_MS.0..=KILL_AFTER_MS.1);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        killed.store(true, Ordering::SeqCst);
        let mut problems = Vec::new();
        if let Some(status) = server.kill().await {
            problems.push(format!(
                "the server ended by itself ({status}) before the kill"
            ));
        }

        let before = ledger.acks.len();
        let mut touched = HashSet::new();
        let mut interrupted = 0;
        for task in running {
            let (c, out) = task.await.unwrap_or_else(|e| panic!("client task: {e}"));
            clients.push(c);
            interrupted += usize::from(out.interrupted);
            problems.extend(out.problems);
            touched.extend(out.touched);
            for ack in out.acks {
                ledger.add(ack, &mut problems);
            }
        }
        assert_no_problems(&problems, &format!("cycle {cycle}, writing"), &log);

        // Sometimes a second crash, while the store is being opened again.
        let startup_kill = rng
            .random_bool(STARTUP_KILL_CHANCE)
            .then(|| rng.random_range(0..=STARTUP_KILL_MS));
        if let Some(ms) = startup_kill {
            Server::kill_while_starting(&data, &log, ms).await;
            startup_kills += 1;
        }
        server = Server::start(&data, &log).await;
        let mut check: Vec<Ack> = ledger.acks[before..].to_vec();
        for _ in 0..RECHECK_SAMPLE.min(before) {
            check.push(ledger.acks[rng.random_range(0..before)].clone());
        }
        rechecked += check.len();
        problems.extend(check_versions(&server.base, &server.token, check).await);
        let resources: Vec<(Key, u64)> = touched
            .into_iter()
            .filter_map(|k| ledger.newest.get(&k).map(|&v| (k, v)))
            .collect();
        let (p, current) = check_current(&server.base, &server.token, resources).await;
        problems.extend(p);
        assert_no_problems(
            &problems,
            &format!("cycle {cycle}, after the restart"),
            &log,
        );
        // Writes whose answer was lost may have happened: go on from what is there.
        let ahead = current
            .iter()
            .filter(|(k, v)| ledger.newest.get(*k).is_some_and(|n| *v > n))
            .count();
        unacknowledged_found += ahead;
        for c in &mut clients {
            for (ty, id, version) in &mut c.owned {
                if let Some(&v) = current.get(&(ty.clone(), id.clone())) {
                    *version = v;
                }
            }
        }
        let also = startup_kill.map_or(String::new(), |ms| format!(", and {ms} ms into a restart"));
        eprintln!(
            "crash cycle {cycle}/{cycles}: killed after {delay} ms{also}; \
             {interrupted} of {CLIENTS} clients mid-request; \
             {} writes acknowledged, all present; {ahead} unacknowledged writes found committed",
            ledger.acks.len() - before
        );
    }

    // A graceful stop must succeed and checkpoint the WAL; then everything
    // acknowledged over all the cycles must still be there.
    let status = server.stop(&log).await;
    assert!(
        status.success(),
        "graceful stop after the crashes: {status}\n{}",
        log_tail(&log)
    );
    let wal = data.join("opengp.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        wal_len, 0,
        "the WAL is not checkpointed after a graceful stop"
    );

    let server = Server::start(&data, &log).await;
    let mut problems = check_versions(&server.base, &server.token, ledger.acks.clone()).await;
    let resources: Vec<(Key, u64)> = ledger.newest.iter().map(|(k, &v)| (k.clone(), v)).collect();
    let resource_count = resources.len();
    problems.extend(
        check_current(&server.base, &server.token, resources)
            .await
            .0,
    );
    assert_no_problems(&problems, "after all the cycles and a clean restart", &log);
    let status = server.stop(&log).await;
    assert!(
        status.success(),
        "final graceful stop: {status}\n{}",
        log_tail(&log)
    );

    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let errors: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("panicked"))
        .collect();
    assert!(
        errors.is_empty(),
        "the server logged errors:\n{}",
        errors.join("\n")
    );

    eprintln!(
        "crash test: {cycles} SIGKILL cycles ({startup_kills} more during restarts) in {:.1} s; \
         {} acknowledged writes verified exact ({} creates, {} updates, {} in transactions) \
         on {resource_count} resources; {rechecked} read back during the cycles; \
         {unacknowledged_found} unacknowledged writes found committed",
        started.elapsed().as_secs_f64(),
        ledger.acks.len(),
        ledger.creates,
        ledger.updates,
        ledger.in_transactions,
    );
}
