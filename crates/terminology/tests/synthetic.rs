//! A generated release read back: the loader, the index and its queries on
//! a release nobody wrote by hand.

use gp_terminology::rf2::{Release, Rows};
use gp_terminology::{IndexBuilder, Subsumption, TermQuery, synth};

fn load(dir: &std::path::Path) -> (gp_terminology::Index, [u64; 4]) {
    let release = Release::open(dir).unwrap_or_else(|e| panic!("a release: {e:?}"));
    let mut b = IndexBuilder::new();
    let mut counts = [0u64; 4];
    release
        .read::<()>(&mut |rows, _| {
            let i = match &rows {
                Rows::Concepts(_) => 0,
                Rows::Descriptions(_) => 1,
                Rows::Relationships(_) => 2,
                Rows::Members(_) => 3,
            };
            counts[i] += rows.len() as u64;
            b.add(rows);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("read: {e:?}"));
    (b.finish(), counts)
}

#[test]
fn a_generated_release_loads_with_every_row() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e:?}"));
    let sum = synth::generate(dir.path(), 5_000, 7).unwrap_or_else(|e| panic!("generate: {e:?}"));
    let (index, counts) = load(dir.path());
    assert_eq!(
        counts,
        [
            sum.concepts,
            sum.descriptions,
            sum.relationships,
            sum.members
        ]
    );
    assert_eq!(index.concept_count() as u64, sum.concepts);
    assert_eq!(index.description_count() as u64, sum.descriptions);
    // About the shape of the UK edition per concept.
    let per = |n: u64| n as f64 / sum.concepts as f64;
    assert!((3.5..5.5).contains(&per(sum.descriptions)), "{sum:?}");
    assert!((6.0..10.0).contains(&per(sum.relationships)), "{sum:?}");
}

#[test]
fn generation_is_deterministic() {
    let (a, b) = (
        tempfile::tempdir().unwrap_or_else(|e| panic!("t: {e:?}")),
        tempfile::tempdir().unwrap_or_else(|e| panic!("t: {e:?}")),
    );
    synth::generate(a.path(), 2_000, 42).unwrap_or_else(|e| panic!("generate: {e:?}"));
    synth::generate(b.path(), 2_000, 42).unwrap_or_else(|e| panic!("generate: {e:?}"));
    let read = |d: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(d)
            .unwrap_or_else(|e| panic!("dir: {e:?}"))
            .map(|e| e.unwrap_or_else(|e| panic!("entry: {e:?}")).path())
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("file: {e:?}")))
            .collect::<Vec<_>>()
    };
    assert_eq!(read(a.path()), read(b.path()));
}

#[test]
fn every_active_concept_is_under_the_root_and_search_agrees_with_the_words() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e:?}"));
    synth::generate(dir.path(), 3_000, 1).unwrap_or_else(|e| panic!("generate: {e:?}"));
    let (index, _) = load(dir.path());
    let all = index.descendants_or_self(gp_terminology::ROOT);
    let all_ids: Vec<u64> = index.ids_of(&all).collect();
    for id in index.ids_of(&index.all()) {
        if index.is_active(id) == Some(true) {
            assert!(
                all_ids.binary_search(&id).is_ok(),
                "{id} not under the root"
            );
            assert_eq!(
                index.subsumes(gp_terminology::ROOT, id),
                Some(if id == gp_terminology::ROOT {
                    Subsumption::Equivalent
                } else {
                    Subsumption::Subsumes
                })
            );
        }
    }
    // Whatever a two-word query finds has both words as prefixes.
    let hits = index.search(&TermQuery::new("car o", 20));
    assert!(!hits.is_empty());
    for h in &hits {
        let w = gp_terminology::words(h.term);
        assert!(
            w.iter().any(|x| x.starts_with("car")) && w.iter().any(|x| x.starts_with('o')),
            "{h:?}"
        );
        assert!(h.active);
    }
    // An ECL refinement only keeps concepts of its focus.
    let focus = index
        .ecl("<< 404684003")
        .unwrap_or_else(|e| panic!("ecl: {e:?}"));
    let refined = index
        .ecl("<< 404684003 : 363698007 = << 123037004")
        .unwrap_or_else(|e| panic!("ecl: {e:?}"));
    assert!(!refined.is_empty());
    assert_eq!(refined.clone().minus(&focus).len(), 0);
    assert!(refined.len() < focus.len());
}
