//! Benchmark scenarios over real HTTP, as a client would see them:
//!
//! - ingest: the Synthea transaction Bundles posted by several clients at
//!   once, in resources per second;
//! - read: read-by-id latency on one keep-alive connection (p50, p99), and
//!   read throughput with 32 concurrent clients.
//!
//! The server under test is whatever `Plan::base` points at; `opengp bench`
//! starts a fresh one on loopback. [`search`] is the search scenario,
//! [`terminology`] typeahead over a loaded release, [`web`] the clinician
//! app's page budgets, [`morning`] the load test (a simulated practice
//! morning).

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod morning;
pub mod search;
pub mod terminology;
pub mod web;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The practice's FHIR base URL.
    pub base: String,
    /// A session token with the rights to write and read everything.
    pub token: String,
    /// A folder of gzip'd Synthea transaction Bundles.
    pub synthea: PathBuf,
    /// Concurrent clients posting bundles.
    pub clients: usize,
    /// Number of single-client reads to time.
    pub reads: usize,
}

/// The figures.
#[derive(Clone, Debug)]
pub struct Report {
    pub bundles: usize,
    pub resources: usize,
    pub ingest_secs: f64,
    pub clients: usize,
    pub reads: usize,
    pub read_p50_ms: f64,
    pub read_p90_ms: f64,
    pub read_p99_ms: f64,
    pub read_mean_ms: f64,
    pub concurrent_reads: usize,
    pub concurrent_rps: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| scenario | figure |")?;
        writeln!(f, "|---|---|")?;
        writeln!(
            f,
            "| ingest: {} transaction Bundles, {} resources, {} clients | {:.0} resources/s ({:.2} s) |",
            self.bundles,
            self.resources,
            self.clients,
            self.resources as f64 / self.ingest_secs,
            self.ingest_secs
        )?;
        writeln!(
            f,
            "| read by id, 1 client, keep-alive, {} reads | p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, mean {:.3} ms |",
            self.reads, self.read_p50_ms, self.read_p90_ms, self.read_p99_ms, self.read_mean_ms
        )?;
        write!(
            f,
            "| read by id, 32 clients, {} reads | {:.0} requests/s |",
            self.concurrent_reads, self.concurrent_rps
        )
    }
}

pub(crate) fn load_bundles(dir: &PathBuf) -> Result<Vec<(usize, Vec<u8>)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the Synthea folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no *.json.gz bundles in {}", dir.display());
    }
    files
        .iter()
        .map(|p| {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(p)?).read_to_end(&mut text)?;
            let v: Value = serde_json::from_slice(&text)?;
            let n = v["entry"].as_array().map_or(0, Vec::len);
            Ok((n, text))
        })
        .collect()
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Posts transaction Bundles from `clients` concurrent clients taking them
/// from one queue, and answers the `Type/id` of every resource created.
pub(crate) async fn ingest(
    client: &reqwest::Client,
    base: &str,
    bodies: Vec<Vec<u8>>,
    clients: usize,
) -> Result<Vec<String>> {
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (queue, client, base) = (queue.clone(), client.clone(), base.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut locations = Vec::new();
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(body) = next else { break };
                let res = client
                    .post(&base)
                    .header("content-type", "application/fhir+json")
                    // A bulk loader wants the locations, not its resources back.
                    .header("prefer", "return=minimal")
                    .body(body)
                    .send()
                    .await?;
                let status = res.status();
                let v: Value = res.json().await?;
                if !status.is_success() {
                    bail!("a transaction failed with {status}: {v}");
                }
                for e in v["entry"].as_array().into_iter().flatten() {
                    if let Some(l) = e["response"]["location"].as_str() {
                        // `Type/id/_history/n` -> `Type/id`
                        locations.push(l.split("/_history").next().unwrap_or(l).to_owned());
                    }
                }
            }
            Ok::<_, anyhow::Error>(locations)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await??);
    }
    Ok(ids)
}

/// An HTTP client that signs every request with the session `token`.
pub fn client(token: &str) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(64)
        .build()?)
}

/// Runs every scenario in turn.
pub async fn run(plan: &Plan) -> Result<Report> {
    let bundles = load_bundles(&plan.synthea)?;
    let client = client(&plan.token)?;

    let resources: usize = bundles.iter().map(|(n, _)| n).sum();
    let started = Instant::now();
    let ids = ingest(
        &client,
        &plan.base,
        bundles.iter().map(|(_, b)| b.clone()).collect(),
        plan.clients,
    )
    .await?;
    let ingest_secs = started.elapsed().as_secs_f64();
    if ids.len() != resources {
        bail!(
            "ingest created {} resources, expected {resources}",
            ids.len()
        );
    }

    // Read latency, one keep-alive connection.
    let mut lat = Vec::with_capacity(plan.reads);
    let mut pick = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..plan.reads {
        pick ^= pick << 13;
        pick ^= pick >> 7;
        pick ^= pick << 17;
        let id = &ids[(pick % ids.len() as u64) as usize];
        let t = Instant::now();
        let res = client.get(format!("{}/{id}", plan.base)).send().await?;
        let status = res.status();
        let _ = res.bytes().await?;
        lat.push(t.elapsed());
        if !status.is_success() {
            bail!("reading {id} answered {status}");
        }
    }
    let mean =
        lat.iter().map(Duration::as_secs_f64).sum::<f64>() / lat.len().max(1) as f64 * 1000.0;
    lat.sort();

    // Read throughput, 32 clients.
    let ids = Arc::new(ids);
    let per_client = plan.reads / 32 + 1;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..32 {
        let (client, base, ids) = (client.clone(), plan.base.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_client {
                let id = &ids[(c * 7919 + i * 104_729) % ids.len()];
                let res = client.get(format!("{base}/{id}")).send().await?;
                if !res.status().is_success() {
                    bail!("reading {id} answered {}", res.status());
                }
                let _ = res.bytes().await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let concurrent_secs = started.elapsed().as_secs_f64();

    Ok(Report {
        bundles: bundles.len(),
        resources,
        ingest_secs,
        clients: plan.clients,
        reads: plan.reads,
        read_p50_ms: percentile(&lat, 0.50),
        read_p90_ms: percentile(&lat, 0.90),
        read_p99_ms: percentile(&lat, 0.99),
        read_mean_ms: mean,
        concurrent_reads: per_client * 32,
        concurrent_rps: (per_client * 32) as f64 / concurrent_secs,
    })
}
