//! The terminology scenario: typeahead over HTTP as a clinician's screen
//! sends it, `ValueSet/$expand` over all of SNOMED CT with a `filter` and a
//! page of 20, one request at a time on a keep-alive connection. The
//! queries are one to three prefixes of two to five letters taken from the
//! words of terms spread over the release (the loading and the release's
//! size are the caller's: `opengp bench --scenario terminology` loads a
//! generated UK-sized release into a fresh store first).

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gp_terminology::rf2::{Release, Rows};
use gp_terminology::words;
use serde_json::Value;

use crate::percentile;

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct TerminologyReport {
    /// What the caller measured before the server started (label, seconds).
    pub setup: Vec<(String, f64)>,
    pub queries: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Concepts per answer, on average.
    pub mean_matches: f64,
}

impl fmt::Display for TerminologyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| scenario | figure |")?;
        writeln!(f, "|---|---|")?;
        for (label, secs) in &self.setup {
            writeln!(f, "| {label} | {secs:.1} s |")?;
        }
        write!(
            f,
            "| typeahead over HTTP (`ValueSet/$expand`, filter, count 20), {} queries, 1 client | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({:.1} matches) |",
            self.queries, self.p50_ms, self.p99_ms, self.max_ms, self.mean_matches
        )
    }
}

/// `n` typeahead queries from the active synonyms of the release at `dir`,
/// taken evenly over it: the i-th keeps `1 + i % 3` words of its term, each
/// cut to `2 + i % 4` letters ("diab typ 2" style).
pub fn queries(dir: &Path, n: usize) -> Result<Vec<String>> {
    let release =
        Release::open(dir).with_context(|| format!("reading the release {}", dir.display()))?;
    let mut terms: Vec<String> = Vec::new();
    release
        .read::<()>(&mut |rows, _| {
            if let Rows::Descriptions(v) = rows {
                terms.extend(
                    v.into_iter()
                        .filter(|d| d.active && d.type_id == gp_terminology::SYNONYM)
                        .map(|d| d.term),
                );
            }
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("reading the release: {e:?}"))?;
    let step = (terms.len() / n.max(1)).max(1);
    Ok(terms
        .iter()
        .step_by(step)
        .take(n)
        .enumerate()
        .map(|(i, term)| {
            words(term)
                .iter()
                .take(1 + i % 3)
                .map(|w| w.chars().take(2 + i % 4).collect::<String>())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|q| !q.is_empty())
        .collect())
}

/// Times each query against the practice base `base`, after a short
/// warm-up of the connection.
pub async fn run(base: &str, token: &str, queries: &[String]) -> Result<TerminologyReport> {
    let client = crate::client(token)?;
    let url = format!("{base}/ValueSet/$expand");
    let ask = |q: &str| {
        client
            .get(&url)
            .header("accept", "application/fhir+json")
            .query(&[
                ("url", "http://snomed.info/sct?fhir_vs"),
                ("filter", q),
                ("count", "20"),
            ])
            .send()
    };
    for q in queries.iter().take(20) {
        ask(q).await?.bytes().await?;
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(queries.len());
    let mut matches = 0usize;
    for q in queries {
        let started = Instant::now();
        let res = ask(q).await?;
        let status = res.status();
        let body = res.bytes().await?;
        lat.push(started.elapsed());
        if !status.is_success() {
            bail!(
                "$expand with filter '{q}' answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let v: Value = serde_json::from_slice(&body)?;
        matches += v["expansion"]["contains"].as_array().map_or(0, |a| a.len());
    }
    lat.sort();
    Ok(TerminologyReport {
        setup: Vec::new(),
        queries: lat.len(),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: percentile(&lat, 1.0),
        mean_matches: matches as f64 / lat.len().max(1) as f64,
    })
}
