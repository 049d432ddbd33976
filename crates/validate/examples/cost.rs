//! What validation costs per resource: `cargo run --release -p gp-validate
//! --example cost -- DIR...` validates every resource in the JSON files of
//! each directory (`.json` or `.json.gz`; transaction Bundle entries one by one, as a transaction's are) and
//! prints microseconds per resource.

use std::time::{Duration, Instant};

use serde_json::Value;

fn main() {
    for dir in std::env::args().skip(1) {
        let mut resources = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        for f in files {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name == "package.json" || name == "ig-r4.json" {
                continue;
            }
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            let json = if name.ends_with(".json.gz") {
                let mut text = Vec::new();
                let mut gz = flate2::read::GzDecoder::new(&bytes[..]);
                if std::io::Read::read_to_end(&mut gz, &mut text).is_err() {
                    continue;
                }
                serde_json::from_slice::<Value>(&text)
            } else if name.ends_with(".json") {
                serde_json::from_slice::<Value>(&bytes)
            } else {
                continue;
            };
            let Ok(json) = json else { continue };
            match json["entry"].as_array() {
                Some(entries) if json["type"] == "transaction" => {
                    resources.extend(entries.iter().filter_map(|e| e.get("resource")).cloned())
                }
                _ => resources.push(json),
            }
        }
        let mut total = Duration::ZERO;
        let mut slowest = (Duration::ZERO, String::new());
        let mut errors = 0;
        for r in &resources {
            let start = Instant::now();
            let issues = gp_validate::validate(r);
            let took = start.elapsed();
            total += took;
            if took > slowest.0 {
                slowest = (took, format!("{}/{}", r["resourceType"], r["id"]));
            }
            errors += usize::from(gp_validate::has_errors(&issues));
        }
        let n = resources.len().max(1);
        eprintln!(
            "{dir}: {} resources, {:.1} µs/resource, {errors} with errors; slowest {} ({:?})",
            resources.len(),
            total.as_secs_f64() * 1e6 / n as f64,
            slowest.1,
            slowest.0
        );
    }
}
