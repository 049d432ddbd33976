//! The search scenario: a store grown to a given size from the Synthea
//! bundles (each round posts every bundle again, with the patients'
//! record numbers made unique per round), then typical GP searches timed
//! one at a time, and the cost of index extraction per resource.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use gp_fhir::{Resource, ResourceType};
use serde_json::Value;

use crate::{load_bundles, percentile};

/// What to run.
#[derive(Clone, Debug)]
pub struct SearchPlan {
    pub base: String,
    /// A session token with the rights to write and read everything.
    pub token: String,
    pub synthea: std::path::PathBuf,
    /// Rounds of the Synthea data to load (27k resources each).
    pub rounds: usize,
    pub clients: usize,
    /// Queries timed per kind.
    pub queries: usize,
    /// Query the store as it is when it already holds resources (grown by
    /// an earlier run with the same `rounds`), instead of growing it.
    pub reuse: bool,
}

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct SearchReport {
    pub resources: usize,
    pub ingest_secs: f64,
    pub extract_us: f64,
    pub extract_entries: f64,
    /// Per query kind: (label, p50 ms, p99 ms, mean matches).
    pub queries: Vec<(String, f64, f64, f64)>,
}

impl fmt::Display for SearchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| scenario | figure |")?;
        writeln!(f, "|---|---|")?;
        writeln!(
            f,
            "| index extraction, one core | {:.1} µs/resource, {:.1} index entries/resource |",
            self.extract_us, self.extract_entries
        )?;
        if self.ingest_secs > 0.0 {
            writeln!(
                f,
                "| ingest to {} resources (transaction Bundles) | {:.0} resources/s |",
                self.resources,
                self.resources as f64 / self.ingest_secs
            )?;
        } else {
            writeln!(
                f,
                "| store reused as it was | {} resources |",
                self.resources
            )?;
        }
        for (label, p50, p99, n) in &self.queries {
            writeln!(
                f,
                "| {label} | p50 {p50:.2} ms, p99 {p99:.2} ms ({n:.1} matches) |"
            )?;
        }
        Ok(())
    }
}

/// A Synthea patient's record number, per bundle.
fn record_numbers(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["resource"]["resourceType"] == "Patient")
        .flat_map(|e| {
            e["resource"]["identifier"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|i| i["system"] == "http://hospital.smarthealthit.org")
        .filter_map(|i| i["value"].as_str().map(str::to_owned))
        .collect()
}

/// Makes the URL of the i-th query of a kind.
type QueryFor = Box<dyn Fn(usize) -> String>;

/// Runs the scenario.
pub async fn run(plan: &SearchPlan) -> Result<SearchReport> {
    let raw = load_bundles(&plan.synthea)?;
    let bundles: Vec<Value> = raw
        .iter()
        .map(|(_, b)| serde_json::from_slice(b))
        .collect::<Result<_, _>>()?;
    let mut report = SearchReport::default();

    // Index extraction on one core, over every Synthea resource.
    let resources: Vec<Resource> = bundles
        .iter()
        .flat_map(|b| b["entry"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| Resource::from_value(e["resource"].clone()).ok())
        .collect();
    let started = Instant::now();
    let entries: usize = resources.iter().map(|r| gp_search::extract(r).len()).sum();
    report.extract_us = started.elapsed().as_secs_f64() * 1e6 / resources.len().max(1) as f64;
    report.extract_entries = entries as f64 / resources.len().max(1) as f64;

    let client = crate::client(&plan.token)?;
    let held = if plan.reuse {
        count(&client, &format!("{}?_summary=count", plan.base)).await?
    } else {
        0
    };
    let patients = if held > 0 {
        report.resources = held as usize;
        patient_references(&plan.base, &plan.token).await?
    } else {
        grow(plan, &client, &bundles, &raw, &mut report).await?
    };

    // The queries: for a random patient each time.
    let mrns: Vec<String> = bundles.iter().flat_map(record_numbers).collect();
    let common_code = most_common_observation_code(&bundles).context("no observation codes")?;
    let rounds = plan.rounds.max(1);
    if patients.is_empty() || mrns.is_empty() {
        bail!("the ingest created no patients");
    }
    let kinds: Vec<(&str, QueryFor)> = vec![
        (
            "patient by identifier",
            Box::new(move |i: usize| {
                let mrn = &mrns[i % mrns.len()];
                format!(
                    "Patient?identifier=http://hospital.smarthealthit.org|{mrn}-{}",
                    (i / 7) % rounds
                )
            }),
        ),
        (
            "a patient's observations by code and date range",
            Box::new({
                let p = patients.clone();
                let code = common_code.clone();
                move |i: usize| {
                    format!(
                        "Observation?subject={}&code=http://loinc.org|{code}&date=ge2015-01-01&date=lt2027",
                        p[i % p.len()]
                    )
                }
            }),
        ),
        (
            "a patient's active conditions",
            Box::new({
                let p = patients.clone();
                move |i: usize| {
                    format!(
                        "Condition?subject={}&clinical-status=active",
                        p[i % p.len()]
                    )
                }
            }),
        ),
        (
            "a patient's encounters in a month, newest first",
            Box::new({
                let p = patients.clone();
                move |i: usize| {
                    format!(
                        "Encounter?subject={}&date=2024-0{}&_sort=-date",
                        p[i % p.len()],
                        1 + i % 9
                    )
                }
            }),
        ),
        (
            "conditions with _include of the patient",
            Box::new({
                let p = patients.clone();
                move |i: usize| {
                    format!(
                        "Condition?subject={}&_include=Condition:subject",
                        p[i % p.len()]
                    )
                }
            }),
        ),
    ];
    for (label, make) in kinds {
        let mut lat = Vec::with_capacity(plan.queries);
        let mut matches = 0u64;
        for q in 0..plan.queries {
            let i = q.wrapping_mul(2_654_435_761) % 1_000_003;
            let url = format!("{}/{}", plan.base, make(i));
            let t = Instant::now();
            let res = client.get(&url).send().await?;
            let status = res.status();
            let v: Value = res.json().await?;
            lat.push(t.elapsed());
            if !status.is_success() {
                bail!("{url} answered {status}: {v}");
            }
            matches += v["total"].as_u64().unwrap_or(0);
        }
        lat.sort();
        report.queries.push((
            label.to_owned(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            matches as f64 / plan.queries.max(1) as f64,
        ));
    }
    Ok(report)
}

/// Grows the store: each round posts every bundle with record numbers
/// suffixed by the round, so that an identifier finds one patient. Returns
/// the patients made, as `Patient/id`.
async fn grow(
    plan: &SearchPlan,
    client: &reqwest::Client,
    bundles: &[Value],
    raw: &[(usize, Vec<u8>)],
    report: &mut SearchReport,
) -> Result<Vec<String>> {
    let mut jobs = Vec::new();
    for round in 0..plan.rounds {
        for (b, (n, text)) in bundles.iter().zip(raw) {
            let mut body = String::from_utf8_lossy(text).into_owned();
            for mrn in record_numbers(b) {
                body = body.replace(
                    &format!("\"value\": \"{mrn}\""),
                    &format!("\"value\": \"{mrn}-{round}\""),
                );
            }
            jobs.push((*n, body));
        }
    }
    let total: usize = jobs.iter().map(|(n, _)| n).sum();
    let started = Instant::now();
    let bodies = jobs.into_iter().map(|(_, b)| b.into_bytes()).collect();
    let patients = crate::ingest(client, &plan.base, bodies, plan.clients)
        .await?
        .into_iter()
        .filter(|l| l.starts_with("Patient/"))
        .collect();
    report.ingest_secs = started.elapsed().as_secs_f64();
    report.resources = total;
    Ok(patients)
}

/// The `total` a search answers.
async fn count(client: &reqwest::Client, url: &str) -> Result<u64> {
    let res = client.get(url).send().await?;
    let status = res.status();
    let v: Value = res.json().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {v}");
    }
    v["total"].as_u64().context("the count has no total")
}

/// Every patient in a reused store, as `Patient/id`.
async fn patient_references(base: &str, token: &str) -> Result<Vec<String>> {
    let url = format!("{base}/Patient?_elements=id&_count=1000&_total=none");
    let found = crate::morning::search_all(&reqwest::Client::new(), token, url).await?;
    Ok(found
        .iter()
        .filter_map(|r| r["id"].as_str())
        .map(|id| format!("Patient/{id}"))
        .collect())
}

fn most_common_observation_code(bundles: &[Value]) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let obs = ResourceType::parse("Observation")?;
    for b in bundles {
        for e in b["entry"].as_array().into_iter().flatten() {
            if e["resource"]["resourceType"] == obs.as_str()
                && let Some(c) = e["resource"]["code"]["coding"][0]["code"].as_str()
            {
                *counts.entry(c.to_owned()).or_default() += 1;
            }
        }
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(c, _)| c)
}
