//! Every example resource of the official R4 package validates
//! (http://hl7.org/fhir/R4/downloads.html, package hl7.fhir.r4.examples),
//! except those the specification itself gets wrong, listed in
//! in `invalid_in_spec.rs` with the reason.

use std::path::PathBuf;

use gp_fhir::Severity;

/// The package's `package/` directory: `OPENGP_R4_EXAMPLES`, or where
/// `cargo xtask fhir-package` puts it.
fn r4_examples() -> PathBuf {
    std::env::var_os("OPENGP_R4_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/fhir-packages/hl7.fhir.r4.examples-4.0.1/package")
        })
}

#[path = "invalid_in_spec.rs"]
mod invalid_in_spec;
use invalid_in_spec::INVALID_IN_SPEC;

#[test]
fn r4_examples_validate() {
    let dir = r4_examples();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask fhir-package`)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".json") && name != "package.json"
        })
        .collect();
    files.sort();
    let (mut valid, mut listed, mut failures) = (0, 0, Vec::new());
    let mut unevaluated = std::collections::BTreeMap::<String, usize>::new();
    for f in &files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f).unwrap_or_else(|e| panic!("{name}: {e}")))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let issues = gp_validate::validate(&json);
        for i in issues
            .iter()
            .filter(|i| i.severity == Severity::Information)
        {
            let key = i
                .diagnostics
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            *unevaluated.entry(key).or_default() += 1;
        }
        let errors: Vec<_> = issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .collect();
        let expected_invalid = INVALID_IN_SPEC.iter().any(|(n, _)| *n == name);
        match (errors.is_empty(), expected_invalid) {
            (true, false) => valid += 1,
            (false, true) => listed += 1,
            (true, true) => failures.push(format!("{name}: listed as invalid but validates")),
            (false, false) => {
                for e in errors {
                    failures.push(format!(
                        "{name}: {} {}",
                        e.expression.join(","),
                        e.diagnostics
                    ));
                }
            }
        }
    }
    eprintln!("R4 examples: {valid} valid, {listed} listed as invalid in the spec");
    for (k, n) in &unevaluated {
        eprintln!("not evaluated: {k} ({n} times)");
    }
    for (key, why) in gp_validate::invariant::unsupported() {
        eprintln!("invariant {key} not checked: {why}");
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
