//! dm+d on the shipped sample: reading the XML, name search for
//! prescribing, navigation between products, lookups.

use gp_terminology::dmd::{DmdIndex, DmdQuery, Kind, lookup_table, shipped};

fn index() -> DmdIndex {
    DmdIndex::build(shipped().unwrap_or_else(|e| panic!("the shipped sample reads: {e}")))
}

fn names(index: &DmdIndex, text: &str, kinds: &[Kind], limit: usize) -> Vec<String> {
    index
        .search(&DmdQuery {
            text,
            kinds,
            limit,
            offset: 0,
            include_invalid: false,
        })
        .iter()
        .map(|p| p.name.clone())
        .collect()
}

#[test]
fn the_shipped_sample_has_every_kind_and_about_two_hundred_medicines() {
    let index = index();
    let count = |k: Kind| index.all(&[k]).count();
    assert!(
        (150..=250).contains(&count(Kind::Vmp)),
        "{}",
        count(Kind::Vmp)
    );
    assert!(count(Kind::Vtm) > 50);
    assert!(count(Kind::Amp) >= count(Kind::Vmp));
    assert_eq!(count(Kind::Vmpp), count(Kind::Vmp));
    assert_eq!(count(Kind::Ampp), count(Kind::Amp));
}

#[test]
fn prescribing_search_finds_the_generic_product_first() {
    let index = index();
    let cases: &[(&str, &str)] = &[
        ("amlo 5", "Amlodipine 5mg tablets"),
        ("5 amlo", "Amlodipine 5mg tablets"),
        ("atorva 20", "Atorvastatin 20mg tablets"),
        ("metf 500", "Metformin 500mg tablets"),
        ("omep 20", "Omeprazole 20mg gastro-resistant capsules"),
        ("salbu", "Salbutamol 100micrograms/dose inhaler"),
    ];
    for (typed, first) in cases {
        let got = names(&index, typed, &[Kind::Vmp, Kind::Amp], 10);
        assert_eq!(
            got.first().map(String::as_str),
            Some(*first),
            "{typed}: {got:?}"
        );
    }
    // Generic products (VMPs) come before branded ones (AMPs), even of the
    // same name; a brand is found by its own name; packs only when asked for.
    let got = index.search(&DmdQuery {
        text: "amlo 5",
        kinds: &[Kind::Vmp, Kind::Amp],
        limit: 10,
        offset: 0,
        include_invalid: false,
    });
    let kinds: Vec<(Kind, &str)> = got.iter().map(|p| (p.kind, p.name.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (Kind::Vmp, "Amlodipine 5mg tablets"),
            (Kind::Vmp, "Amlodipine 2.5mg tablets"),
            (Kind::Amp, "Amlodipine 5mg tablets"),
            (Kind::Amp, "Amlodipine 2.5mg tablets"),
        ]
    );
    assert_eq!(
        names(&index, "isti", &[], 10),
        vec![
            "Istin 5mg tablets",
            "Istin 5mg tablets (OpenGP sample brand supplier) 28 tablets"
        ]
    );
    let got = names(&index, "amlo 5", &[Kind::Vmp, Kind::Amp], 10);
    assert!(got.iter().all(|n| !n.contains("28 tablets")), "{got:?}");
    let packs = names(&index, "amlo 5", &[Kind::Vmpp], 10);
    assert_eq!(
        packs,
        vec![
            "Amlodipine 5mg tablets 28 tablets",
            "Amlodipine 2.5mg tablets 28 tablets"
        ]
    );
    assert!(names(&index, "zzzz", &[], 10).is_empty());
}

#[test]
fn a_vmp_leads_to_its_amps_packs_and_substance() {
    let index = index();
    let vmp = index
        .search(&DmdQuery {
            text: "amlodipine 5mg tablets",
            kinds: &[Kind::Vmp],
            limit: 1,
            offset: 0,
            include_invalid: false,
        })
        .first()
        .map(|p| (*p).clone())
        .unwrap_or_else(|| panic!("no VMP"));
    let amps: Vec<&str> = index
        .below(vmp.id, Kind::Amp)
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(amps, vec!["Amlodipine 5mg tablets", "Istin 5mg tablets"]);
    for amp in index.below(vmp.id, Kind::Amp) {
        assert_eq!(amp.parent, Some(vmp.id));
        let ampps = index.below(amp.id, Kind::Ampp);
        assert_eq!(ampps.len(), 1, "{}", amp.name);
    }
    assert_eq!(index.below(vmp.id, Kind::Vmpp).len(), 1);
    let vtm = vmp
        .parent
        .and_then(|v| index.product(v))
        .map(|p| p.name.as_str());
    assert_eq!(vtm, Some("Amlodipine"));
    // The lookups prescribing needs.
    let form = vmp.attribute("DFORM/FORMCD").unwrap_or_default();
    assert_eq!(lookup_table("DFORM/FORMCD"), Some("FORM"));
    assert_eq!(index.describe("FORM", form), Some("Tablet"));
    let route = vmp.attribute("DROUTE/ROUTECD").unwrap_or_default();
    assert_eq!(index.describe("ROUTE", route), Some("Oral"));
    let cd = vmp.attribute("CONTROL_INFO/CATCD").unwrap_or_default();
    assert_eq!(
        index.describe("CONTROL_DRUG_CATEGORY", cd),
        Some("No Controlled Drug Status")
    );
    let uom = vmp.attribute("UDFS_UOMCD").unwrap_or_default();
    assert_eq!(lookup_table("UDFS_UOMCD"), Some("UNIT_OF_MEASURE"));
    assert_eq!(index.describe("UNIT_OF_MEASURE", uom), Some("tablet"));
}

#[test]
fn controlled_drugs_carry_their_schedule() {
    let index = index();
    let oxy = index
        .all(&[Kind::Vmp])
        .find(|p| p.name == "Oxycodone 5mg capsules")
        .unwrap_or_else(|| panic!("no oxycodone"));
    let cd = oxy.attribute("CONTROL_INFO/CATCD").unwrap_or_default();
    assert_eq!(
        index.describe("CONTROL_DRUG_CATEGORY", cd),
        Some("Schedule 2 (CD)")
    );
}

#[test]
fn every_shipped_id_is_a_valid_sctid_in_the_project_namespace() {
    let index = index();
    for p in index.all(&[]) {
        let id = gp_terminology::SctId::from_u64(p.id)
            .unwrap_or_else(|| panic!("{} has a bad check digit", p.id));
        assert!(
            p.id.to_string()
                .ends_with(&format!("{}10{}", 9999998, p.id % 10)),
            "{} is outside the project-assigned range",
            id.get()
        );
    }
}

#[test]
fn a_release_folder_reads_like_the_embedded_sample() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/dmd");
    assert!(gp_terminology::dmd::xml::is_release(&dir));
    let from_files = gp_terminology::dmd::xml::read(&dir).unwrap_or_else(|e| panic!("{e}"));
    let embedded = shipped().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        from_files == embedded,
        "the folder and the embedded sample differ"
    );
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    assert!(!gp_terminology::dmd::xml::is_release(empty.path()));
    assert!(gp_terminology::dmd::xml::read(empty.path()).is_err());
}

/// The release zip as NHSBSA publishes it reads like the folder: the files
/// in a folder inside it, beside others the reader leaves alone; a zip
/// without a VMP file, or a file that is not a zip, is an error.
#[test]
fn a_release_zip_reads_like_the_folder() {
    use std::io::Write;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/dmd");
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let write_zip = |name: &str, skip_vmp: bool| {
        let path = tmp.path().join(name);
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        for p in names {
            let base = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if skip_vmp && base.starts_with("f_vmp2_") {
                continue;
            }
            zip.start_file(format!("nhsbsa_dmd_3.0.0/{base}"), options)
                .unwrap_or_else(|e| panic!("{e}"));
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{e}"));
            zip.write_all(&bytes).unwrap_or_else(|e| panic!("{e}"));
        }
        zip.start_file("f_gtin2_0000000.xml", options)
            .unwrap_or_else(|e| panic!("{e}"));
        zip.write_all(b"<GTIN_DETAILS/>")
            .unwrap_or_else(|e| panic!("{e}"));
        zip.finish().unwrap_or_else(|e| panic!("{e}"));
        path
    };
    let whole = write_zip("nhsbsa_dmd_3.0.0_20250101000001.zip", false);
    assert!(gp_terminology::dmd::xml::is_release(&whole));
    let from_zip = gp_terminology::dmd::xml::read(&whole).unwrap_or_else(|e| panic!("{e}"));
    let from_folder = gp_terminology::dmd::xml::read(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(from_zip == from_folder, "the zip and the folder differ");
    let partial = write_zip("partial.zip", true);
    assert!(!gp_terminology::dmd::xml::is_release(&partial));
    let e = gp_terminology::dmd::xml::read(&partial).map(|_| ());
    assert!(e.is_err_and(|e| e.to_string().contains("no dm+d VMP file")));
    let not_zip = tmp.path().join("notes.zip");
    std::fs::write(&not_zip, "not a zip").unwrap_or_else(|e| panic!("{e}"));
    assert!(!gp_terminology::dmd::xml::is_release(&not_zip));
    assert!(gp_terminology::dmd::xml::read(&not_zip).is_err());
}

/// Each VMP's ingredients (`VPI`) in the release's order, with their
/// strengths and the names of the substances (`INGREDIENT`) and units.
#[test]
fn a_vmp_has_its_ingredients_with_their_strengths() {
    let index = index();
    let strengths = |name: &str| -> Vec<String> {
        let vmp = index
            .all(&[Kind::Vmp])
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no VMP {name}"));
        let mut out = Vec::new();
        let mut current = String::new();
        for (field, value) in &vmp.attributes {
            let describe = |table: &str| {
                index
                    .describe(table, value)
                    .unwrap_or_else(|| panic!("{field} {value} has no description"))
                    .to_owned()
            };
            match field.as_str() {
                "VPI/ISID" => {
                    if !current.is_empty() {
                        out.push(std::mem::take(&mut current));
                    }
                    current = describe("INGREDIENT");
                }
                "VPI/STRNT_NMRTR_VAL" | "VPI/STRNT_DNMTR_VAL" => {
                    current.push_str(if field.contains("DNMTR") {
                        " per "
                    } else {
                        " "
                    });
                    current.push_str(value);
                }
                "VPI/STRNT_NMRTR_UOMCD" | "VPI/STRNT_DNMTR_UOMCD" => {
                    current.push(' ');
                    current.push_str(&describe("UNIT_OF_MEASURE"));
                }
                _ => {}
            }
        }
        out.push(current);
        out
    };
    assert_eq!(strengths("Amlodipine 5mg tablets"), ["Amlodipine 5 mg"]);
    assert_eq!(
        strengths("Co-codamol 30mg/500mg tablets"),
        ["Codeine phosphate 30 mg", "Paracetamol 500 mg"]
    );
    assert_eq!(
        strengths("Salbutamol 100micrograms/dose inhaler"),
        ["Salbutamol 100 microgram per 1 dose"]
    );
    assert_eq!(
        strengths("Lactulose 3.35g/5ml oral solution"),
        ["Lactulose 3.35 gram per 5 ml"]
    );
    assert_eq!(
        strengths("Hydrocortisone 1% cream"),
        ["Hydrocortisone 10 mg per 1 gram"]
    );
    // Every VMP has at least one ingredient.
    for vmp in index.all(&[Kind::Vmp]) {
        assert!(
            vmp.attribute("VPI/ISID").is_some(),
            "{} has no ingredient",
            vmp.name
        );
    }
}
