//! Typeahead latency on a release: `cargo run --release -p gp-terminology
//! --example typeahead -- DIR` (a release folder, e.g. one written by
//! `opengp terminology generate`). Prints the index build time and p50/p99
//! over a mix of one- to three-word prefixes taken from the release's terms;
//! `SLOWEST=N` also lists the N slowest queries.

use std::io::Write;
use std::time::Instant;

use gp_terminology::rf2::Release;
use gp_terminology::{IndexBuilder, TermQuery, words};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("give a release folder")?;
    let started = Instant::now();
    let release = Release::open(std::path::Path::new(&dir))?;
    let mut b = IndexBuilder::new();
    release
        .read::<()>(&mut |rows, _| {
            b.add(rows);
            Ok(())
        })
        .map_err(|e| format!("{e:?}"))?;
    let index = b.finish();
    let built = started.elapsed();
    // Queries: prefixes of the words of terms spread over the release.
    let all: Vec<u64> = index.ids_of(&index.all()).collect();
    let mut queries = Vec::new();
    for (i, id) in all.iter().step_by((all.len() / 2000).max(1)).enumerate() {
        let Some(term) = index.display(*id) else {
            continue;
        };
        let w = words(term);
        let n = 1 + i % 3;
        let q: Vec<String> = w
            .iter()
            .take(n)
            .map(|x| x.chars().take(2 + i % 4).collect())
            .collect();
        queries.push(q.join(" "));
    }
    let mut timed = Vec::with_capacity(queries.len());
    let mut hits = 0;
    for q in &queries {
        let t = Instant::now();
        hits += index.search(&TermQuery::new(q, 20)).len();
        timed.push((t.elapsed().as_secs_f64() * 1000.0, q));
    }
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let times: Vec<f64> = timed.iter().map(|t| t.0).collect();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    writeln!(
        std::io::stdout(),
        "index: {} concepts, {} descriptions, built in {:.1} s; {} queries, {} hits: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        index.concept_count(),
        index.description_count(),
        built.as_secs_f64(),
        queries.len(),
        hits,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    )?;
    // The slowest queries, to see where the tail comes from.
    let slowest = std::env::var("SLOWEST")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    for (ms, q) in timed.iter().rev().take(slowest) {
        writeln!(std::io::stdout(), "{ms:8.3} ms  {q}")?;
    }
    Ok(())
}
