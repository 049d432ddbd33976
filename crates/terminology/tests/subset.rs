//! The shipped GP subset (data/snomed, assembled by data/build_subset.py):
//! it loads, typeahead ranks as a clinician expects, and subsumption and
//! ECL follow its hierarchy.

use std::path::PathBuf;

use gp_terminology::rf2::Release;
use gp_terminology::{Index, IndexBuilder, Subsumption, TermQuery};

fn subset() -> Index {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/snomed");
    let release = Release::open(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut b = IndexBuilder::new();
    release
        .read::<()>(&mut |rows, _| {
            b.add(rows);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e:?}"));
    b.finish()
}

/// The first concept typeahead offers for what was typed.
fn first(index: &Index, typed: &str) -> Option<u64> {
    index
        .search(&TermQuery::new(typed, 10))
        .first()
        .map(|h| h.concept)
}

#[test]
fn the_subset_has_the_gp_concepts_with_their_terms() {
    let index = subset();
    assert!(
        (1_000..=3_000).contains(&index.concept_count()),
        "{}",
        index.concept_count()
    );
    for (id, display) in [
        (75367002, "Blood pressure"),
        (271649006, "Systolic blood pressure"),
        (271650006, "Diastolic blood pressure"),
        (60621009, "Body mass index"),
        (27113001, "Body weight"),
        (44054006, "Type 2 diabetes mellitus"),
        (886921000000105, "Allergies and adverse reactions"),
    ] {
        assert_eq!(index.display(id), Some(display), "{id}");
    }
}

#[test]
fn typeahead_finds_what_a_clinician_means_first() {
    let index = subset();
    let table: &[(&str, u64)] = &[
        ("diab typ 2", 44054006),
        ("typ 2 diab", 44054006),
        ("Diab Type 1", 46635009),
        ("niddm", 44054006),
        ("hypertens", 38341003),
        ("essential hyp", 59621000),
        ("blood press", 75367002),
        ("systolic", 271649006),
        ("bmi", 60621009),
        ("body weig", 27113001),
        ("hba1c", 43396009),
        ("copd", 13645005),
        ("asth", 195967001),
        ("never smo", 266919005),
        ("ex smok", 8517006),
        ("alzheimer", 26929004),
        ("gord", 235595009),
        ("pen allerg", 91936005),
    ];
    for (typed, want) in table {
        assert_eq!(first(&index, typed), Some(*want), "typing '{typed}'");
    }
    // Preferred terms come first: "hypert" offers hyperthyroidism (a
    // preferred term) before hypertension (a synonym), both on the first page.
    let page: Vec<u64> = index
        .search(&TermQuery::new("hypert", 5))
        .iter()
        .map(|h| h.concept)
        .collect();
    assert!(
        page.contains(&38341003) && page.contains(&34486009),
        "{page:?}"
    );
    // Nothing matches a word no term has.
    assert_eq!(first(&index, "diab zzzz"), None);
}

#[test]
fn synonyms_are_found_and_the_display_is_the_preferred_term() {
    let index = subset();
    let hits = index.search(&TermQuery::new("shortness breath", 5));
    let hit = hits.first().unwrap_or_else(|| panic!("no hit"));
    assert_eq!(hit.concept, 267036007);
    assert_eq!(hit.term, "Shortness of breath");
    assert_eq!(hit.preferred_term, "Dyspnoea");
}

#[test]
fn search_within_a_hierarchy_or_refset() {
    let index = subset();
    let findings = index.descendants_or_self(404684003);
    let q = TermQuery {
        within: Some(&findings),
        ..TermQuery::new("pressure", 20)
    };
    for h in index.search(&q) {
        assert!(index.is_a(h.concept, 404684003) == Some(true), "{h:?}");
    }
    // Blood pressure is an observable, not a finding.
    assert!(index.search(&q).iter().all(|h| h.concept != 75367002));
    let lists = index.ecl("^ 19999999103").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lists.len(), 10);
    let q = TermQuery {
        within: Some(&lists),
        ..TermQuery::new("aller", 5)
    };
    let found: Vec<u64> = index.search(&q).iter().map(|h| h.concept).collect();
    assert_eq!(found, vec![886921000000105, 1103671000000101]);
}

#[test]
fn subsumption_follows_is_a_transitively() {
    let index = subset();
    let table = [
        (73211009, 44054006, Subsumption::Subsumes),
        (44054006, 73211009, Subsumption::SubsumedBy),
        (404684003, 44054006, Subsumption::Subsumes),
        (138875005, 59621000, Subsumption::Subsumes),
        (44054006, 44054006, Subsumption::Equivalent),
        (44054006, 46635009, Subsumption::NotSubsumed),
        (71388002, 44054006, Subsumption::NotSubsumed),
    ];
    for (a, b, want) in table {
        assert_eq!(index.subsumes(a, b), Some(want), "{a} {b}");
    }
    assert_eq!(index.subsumes(44054006, 1), None);
}

#[test]
fn ecl_over_the_subset() {
    let index = subset();
    let ids = |e: &str| -> Vec<u64> {
        let set = index.ecl(e).unwrap_or_else(|err| panic!("{e}: {err}"));
        index.ids_of(&set).collect()
    };
    assert_eq!(ids("<< 73211009"), vec![44054006, 46635009, 73211009]);
    assert_eq!(ids("< 73211009"), vec![44054006, 46635009]);
    assert_eq!(ids("<! 73211009"), vec![44054006, 46635009]);
    assert_eq!(ids("<< 73211009 MINUS 46635009"), vec![44054006, 73211009]);
    assert_eq!(ids("(<< 73211009 OR << 38341003) AND < 64572001").len(), 5);
    assert_eq!(
        ids(">> 44054006"),
        vec![44054006, 64572001, 73211009, 138875005, 404684003]
    );
    assert_eq!(ids("> 59621000 AND < 404684003"), vec![38341003, 64572001]);
    let findings = ids("<< 404684003").len();
    assert!(findings > 800, "{findings}");
    assert_eq!(
        ids("<< 999999999999999 |no such concept|"),
        Vec::<u64>::new()
    );
    assert!(index.ecl("<< 73211009 AND").is_err());
}
