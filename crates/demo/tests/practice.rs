//! The generated practice through the crate's public interface: the same
//! seed gives the same bytes, NHS numbers are valid test-range numbers,
//! problems come out at about their English prevalence, every SNOMED CT
//! code is in the shipped subset, every repeat medicine is a VMP of the
//! shipped dm+d sample, and every resource is valid against the
//! base R4 definitions (validation.html).

use std::collections::{BTreeMap, BTreeSet};

use gp_demo::{Demo, Options};
use serde_json::Value;
use time::macros::date;

fn demo(seed: u64, patients: u32) -> Demo {
    let mut o = Options::new(seed, date!(2025 - 06 - 02), "Y90001", "OpenGP Demo Surgery");
    o.patients = patients;
    Demo::new(o)
}

fn everything(d: &Demo) -> Vec<Value> {
    let mut out = d.practice();
    for i in 0..d.options().patients {
        out.extend(d.patient(i));
    }
    out
}

fn bytes(resources: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in resources {
        out.extend(serde_json::to_vec(r).unwrap_or_else(|e| panic!("{e}")));
        out.push(b'\n');
    }
    out
}

#[test]
fn the_same_seed_gives_byte_identical_resources() {
    let a = bytes(&everything(&demo(7, 60)));
    let b = bytes(&everything(&demo(7, 60)));
    assert!(a == b, "two runs with seed 7 differ");
    let c = bytes(&everything(&demo(8, 60)));
    assert!(a != c, "seeds 7 and 8 gave the same practice");
    // Patients are independent streams: generating one alone gives the
    // same record as generating it among the others.
    let d = demo(7, 60);
    assert_eq!(d.patient(42), demo(7, 60).patient(42));
}

/// NHS numbers (DOMAIN.md): 10 digits, the test range 999, a Modulus 11
/// check digit, and one per patient.
#[test]
fn every_nhs_number_is_a_valid_distinct_test_number() {
    let d = demo(1, 2_000);
    let mut seen = BTreeSet::new();
    for i in 0..2_000 {
        let p = &d.patient(i)[0];
        let ids = p["identifier"].as_array().cloned().unwrap_or_default();
        let nhs: Vec<&str> = ids
            .iter()
            .filter(|id| id["system"] == "https://fhir.nhs.uk/Id/nhs-number")
            .filter_map(|id| id["value"].as_str())
            .collect();
        assert_eq!(nhs.len(), 1, "{p}");
        let n = nhs[0];
        assert!(n.starts_with("999"), "{n}");
        assert!(gp_demo::people::valid_nhs_number(n), "{n}");
        assert!(seen.insert(n.to_owned()), "{n} given twice");
    }
    // Distinct over the whole range the generator promises.
    let all: BTreeSet<String> = (0..gp_demo::people::MAX_PATIENTS)
        .map(gp_demo::people::nhs_number)
        .collect();
    assert_eq!(all.len(), gp_demo::people::MAX_PATIENTS as usize);
    assert!(all.iter().all(|n| gp_demo::people::valid_nhs_number(n)));
    // The checker itself, on known numbers.
    assert!(gp_demo::people::valid_nhs_number("9000000009"));
    assert!(!gp_demo::people::valid_nhs_number("9000000008"));
    assert!(!gp_demo::people::valid_nhs_number("900000000"));
}

/// Register prevalence of the chronic problems on a default-sized practice
/// against the published English figures (QOF), within sampling error.
#[test]
fn problems_come_at_about_their_english_prevalence() {
    let d = demo(3, 2_000);
    let mut with: BTreeMap<String, u32> = BTreeMap::new();
    let mut ages = [0u32; 3];
    for i in 0..2_000 {
        let record = d.patient(i);
        let birth = record[0]["birthDate"].as_str().unwrap_or("2000").to_owned();
        let year: i32 = birth[..4].parse().unwrap_or(2000);
        ages[match 2025 - year {
            ..=17 => 0,
            18..=64 => 1,
            _ => 2,
        }] += 1;
        let codes: BTreeSet<String> = record
            .iter()
            .filter(|r| {
                r["resourceType"] == "Condition"
                    && r["clinicalStatus"]["coding"][0]["code"] == "active"
            })
            .filter_map(|r| r["code"]["coding"][0]["code"].as_str().map(str::to_owned))
            .collect();
        for c in codes {
            *with.entry(c).or_default() += 1;
        }
    }
    let share = |code: &str| f64::from(with.get(code).copied().unwrap_or(0)) / 2_000.0;
    for (code, name, want, tolerance) in [
        ("38341003", "hypertension", 0.14, 0.025),
        ("44054006", "type 2 diabetes", 0.065, 0.02),
        ("195967001", "asthma", 0.065, 0.02),
        ("13645005", "COPD", 0.02, 0.01),
        ("35489007", "depression", 0.11, 0.025),
        ("709044004", "CKD", 0.04, 0.015),
        ("40930008", "hypothyroidism", 0.035, 0.015),
        ("414545008", "CHD", 0.03, 0.012),
        ("49436004", "AF", 0.022, 0.01),
    ] {
        let got = share(code);
        assert!(
            (got - want).abs() <= tolerance,
            "{name}: {got:.3} of patients, expected {want} ± {tolerance}"
        );
    }
    // England: about a fifth under 18, a fifth 65 and over.
    let children = f64::from(ages[0]) / 2_000.0;
    let old = f64::from(ages[2]) / 2_000.0;
    assert!((0.17..0.25).contains(&children), "{children}");
    assert!((0.15..0.23).contains(&old), "{old}");
}

fn snomed_codings(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if m.get("system").and_then(Value::as_str) == Some("http://snomed.info/sct")
                && let Some(code) = m.get("code").and_then(Value::as_str)
            {
                out.insert(code.to_owned());
            }
            m.values().for_each(|x| snomed_codings(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| snomed_codings(x, out)),
        _ => {}
    }
}

/// Every SNOMED CT code the generator can write is a concept of the
/// shipped subset, and what a generated practice writes is among them.
#[test]
fn every_snomed_code_is_in_the_shipped_subset() {
    let subset = gp_terminology::subset::index().unwrap_or_else(|e| panic!("{e}"));
    let table: BTreeSet<String> = gp_demo::snomed_codes()
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    for code in &table {
        let id: u64 = code.parse().unwrap_or_else(|e| panic!("{code}: {e}"));
        assert!(subset.contains(id), "{code} is not in the shipped subset");
        assert_eq!(subset.is_active(id), Some(true), "{code} is inactive");
    }
    let mut written = BTreeSet::new();
    for r in everything(&demo(5, 300)) {
        snomed_codings(&r, &mut written);
    }
    let stray: Vec<&String> = written.difference(&table).collect();
    assert!(stray.is_empty(), "codes written but not listed: {stray:?}");
    assert!(written.len() > 30, "{written:?}");
}

/// Every repeat medicine a practice is prescribed names a VMP of the
/// shipped dm+d sample by its id and its name, and the registers get
/// their usual treatments (hypertension, diabetes, asthma ...).
#[test]
fn every_repeat_medicine_is_a_vmp_of_the_shipped_dmd_sample() {
    let release = gp_terminology::dmd::shipped().unwrap_or_else(|e| panic!("{e}"));
    let dmd = gp_terminology::dmd::DmdIndex::build(release);
    let mut names = BTreeSet::new();
    for r in everything(&demo(5, 300)) {
        if r["resourceType"] != "MedicationRequest" {
            continue;
        }
        let coding = &r["medicationCodeableConcept"]["coding"][0];
        assert_eq!(coding["system"], "https://dmd.nhs.uk");
        let code = coding["code"].as_str().unwrap_or_default();
        let id: u64 = code.parse().unwrap_or_else(|e| panic!("{code}: {e}"));
        let product = dmd
            .product(id)
            .unwrap_or_else(|| panic!("{code} is not in the shipped dm+d sample"));
        assert_eq!(product.kind, gp_terminology::dmd::Kind::Vmp, "{code}");
        assert!(!product.invalid, "{code}");
        assert_eq!(coding["display"], product.name.as_str(), "{code}");
        names.insert(product.name.clone());
    }
    for usual in [
        "Amlodipine 5mg tablets",
        "Metformin 500mg tablets",
        "Atorvastatin 20mg tablets",
        "Levothyroxine sodium 100microgram tablets",
        "Salbutamol 100micrograms/dose inhaler",
        "Apixaban 5mg tablets",
    ] {
        assert!(names.contains(usual), "nobody takes {usual}: {names:?}");
    }
}

/// Every resource of a small practice passes the server's own validation
/// (the base R4 definitions), and the practice has every kind of resource.
#[test]
fn every_resource_is_valid_r4() {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in everything(&demo(11, 120)) {
        let issues = gp_validate::validate(&r);
        let outcome = gp_validate::rejection(issues);
        assert!(outcome.is_none(), "{r}\n{outcome:?}");
        *kinds
            .entry(r["resourceType"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    for kind in [
        "Organization",
        "Location",
        "Practitioner",
        "PractitionerRole",
        "Schedule",
        "Slot",
        "Appointment",
        "Patient",
        "Condition",
        "Encounter",
        "Observation",
        "MedicationRequest",
        "AllergyIntolerance",
        "Immunization",
        "DocumentReference",
    ] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}: {kinds:?}"
        );
    }
}
