//! Reading a dm+d XML release from a folder or the release zip (as NHSBSA
//! publishes it, the files anywhere in it): the files `f_vtm2_*.xml`,
//! `f_vmp2_*.xml`, `f_amp2_*.xml`, `f_vmpp2_*.xml`, `f_ampp2_*.xml`,
//! `f_lookup2_*.xml` and `f_ingredient2_*.xml` (other files, such as GTINs,
//! are left alone). Records are found by element name wherever they are
//! nested: `VTM`, `VMP`, `AMP`, `VMPP`, `AMPP`; the side tables that add to
//! a product (`DFORM`, `DROUTE`, `CONTROL_INFO`, `ONT` and `VPI`, its
//! ingredients with their strengths, for a VMP, `LIC_ROUTE` for an AMP,
//! `DTINFO` for a VMPP, `PRICE_INFO` for an AMPP), every lookup table's
//! `INFO` rows, and the ingredient substances (`ING`, read as the lookup
//! table `INGREDIENT`: `ISID` and `NM`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::events::Event;
use zip::ZipArchive;

use super::{DmdRelease, Kind, Lookup, Product};
use crate::TermError;

/// The kind of product a release file holds, by its name (`None` for the
/// lookup and ingredient files), or nothing for a file the reader leaves
/// alone.
fn kind_of(file_name: &str) -> Option<Option<Kind>> {
    let name = file_name.to_ascii_lowercase();
    if !name.ends_with(".xml") {
        return None;
    }
    [
        ("f_vtm2_", Some(Kind::Vtm)),
        ("f_vmp2_", Some(Kind::Vmp)),
        ("f_amp2_", Some(Kind::Amp)),
        ("f_vmpp2_", Some(Kind::Vmpp)),
        ("f_ampp2_", Some(Kind::Ampp)),
        ("f_lookup2_", None),
        ("f_ingredient2_", None),
    ]
    .into_iter()
    .find(|(prefix, _)| name.starts_with(prefix))
    .map(|(_, k)| k)
}

/// The files of a release, by kind (`None` for the lookup file).
fn files(dir: &Path) -> Result<Vec<(Option<Kind>, PathBuf)>, TermError> {
    let io = |e: std::io::Error| TermError::Io(dir.display().to_string(), e);
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let path = e.map_err(io)?.path();
        if let Some(kind) = path.file_name().and_then(|n| n.to_str()).and_then(kind_of) {
            out.push((kind, path));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// A release's files by kind (`None` for the lookup file), with where
/// each is (a path, or a name in a zip).
type Found<T> = Vec<(Option<Kind>, T)>;

/// The release files in a zip, by kind, with their names in it.
fn zip_files(path: &Path) -> Result<(ZipArchive<File>, Found<String>), TermError> {
    let bad = |e: zip::result::ZipError| TermError::Zip(path.display().to_string(), e.to_string());
    let file = File::open(path).map_err(|e| TermError::Io(path.display().to_string(), e))?;
    let zip = ZipArchive::new(file).map_err(bad)?;
    let mut out: Found<String> = zip
        .file_names()
        .filter_map(|name| {
            let base = name.rsplit('/').next().unwrap_or(name);
            kind_of(base).map(|kind| (kind, name.to_owned()))
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok((zip, out))
}

/// Whether `path` looks like a dm+d release: a folder or a zip with a VMP
/// file (`f_vmp2_*.xml`).
pub fn is_release(path: &Path) -> bool {
    if path.is_dir() {
        files(path).is_ok_and(|f| has_vmp(&f))
    } else {
        path.is_file() && zip_files(path).is_ok_and(|(_, f)| has_vmp(&f))
    }
}

fn has_vmp<T>(files: &[(Option<Kind>, T)]) -> bool {
    files.iter().any(|(k, _)| *k == Some(Kind::Vmp))
}

/// Reads the release at `path`, a folder or a zip.
pub fn read(path: &Path) -> Result<DmdRelease, TermError> {
    let no_vmp = || {
        TermError::Xml(
            path.display().to_string(),
            "no dm+d VMP file (f_vmp2_*.xml) here".into(),
        )
    };
    let mut release = DmdRelease::default();
    if path.is_dir() {
        let found = files(path)?;
        if !has_vmp(&found) {
            return Err(no_vmp());
        }
        for (kind, file) in found {
            let name = file.display().to_string();
            let f = File::open(&file).map_err(|e| TermError::Io(name.clone(), e))?;
            read_one(BufReader::new(f), kind, &name, &mut release)?;
        }
    } else {
        let (mut zip, found) = zip_files(path)?;
        if !has_vmp(&found) {
            return Err(no_vmp());
        }
        for (kind, entry) in found {
            let name = format!("{}:{entry}", path.display());
            let f = zip
                .by_name(&entry)
                .map_err(|e| TermError::Zip(name.clone(), e.to_string()))?;
            read_one(BufReader::new(f), kind, &name, &mut release)?;
        }
    }
    release.sort();
    Ok(release)
}

/// Reads a release given as (file name, contents) pairs (the shipped
/// sample, embedded in the binary).
pub fn read_texts(files: &[(&str, &str)]) -> Result<DmdRelease, TermError> {
    let mut release = DmdRelease::default();
    for (name, text) in files {
        if let Some(kind) = kind_of(name) {
            read_one(text.as_bytes(), kind, name, &mut release)?;
        }
    }
    release.sort();
    Ok(release)
}

fn read_one(
    input: impl BufRead,
    kind: Option<Kind>,
    name: &str,
    release: &mut DmdRelease,
) -> Result<(), TermError> {
    match kind {
        Some(kind) => read_products(input, kind, name, &mut release.products),
        None => read_lookups(input, name, &mut release.lookups),
    }
}

/// A flat record: its element name, its parent's, and its fields in order.
struct Record {
    name: String,
    parent: String,
    fields: Vec<(String, String)>,
}

/// Calls `f` with every element named in `records`, as a flat record of
/// its child elements' text.
fn records(
    input: impl BufRead,
    file: &str,
    wanted: &[&str],
    f: &mut dyn FnMut(Record) -> Result<(), TermError>,
) -> Result<(), TermError> {
    let mut reader = Reader::from_reader(input);
    let err = |e: &dyn std::fmt::Display, pos: u64| {
        TermError::Xml(file.to_owned(), format!("at byte {pos}: {e}"))
    };
    let mut buf = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut current: Option<Record> = None;
    let mut field: Option<(String, String)> = None;
    loop {
        let pos = reader.buffer_position();
        let event = reader.read_event_into(&mut buf).map_err(|e| err(&e, pos))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if current.is_some() {
                    field = Some((name.clone(), String::new()));
                } else if wanted.contains(&name.as_str()) {
                    current = Some(Record {
                        name: name.clone(),
                        parent: stack.last().cloned().unwrap_or_default(),
                        fields: Vec::new(),
                    });
                }
                stack.push(name);
            }
            Event::Empty(e) => {
                // `<INVALID/>` and the like: a field with no text.
                if let Some(r) = current.as_mut() {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    r.fields.push((name, String::new()));
                }
            }
            Event::Text(t) => {
                if let Some((_, v)) = field.as_mut() {
                    v.push_str(&t.decode().map_err(|e| err(&e, pos))?);
                }
            }
            Event::CData(t) => {
                if let Some((_, v)) = field.as_mut() {
                    v.push_str(&t.decode().map_err(|e| err(&e, pos))?);
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, v)) = field.as_mut() {
                    match r.resolve_char_ref().map_err(|e| err(&e, pos))? {
                        Some(c) => v.push(c),
                        None => {
                            let name = r.decode().map_err(|e| err(&e, pos))?;
                            let s = quick_xml::escape::resolve_predefined_entity(&name)
                                .ok_or_else(|| err(&format!("unknown entity &{name};"), pos))?;
                            v.push_str(s);
                        }
                    }
                }
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                if let Some((n, v)) = field.take_if(|(n, _)| *n == name) {
                    if let Some(r) = current.as_mut() {
                        r.fields.push((n, v.trim().to_owned()));
                    }
                } else if current.as_ref().is_some_and(|r| r.name == name)
                    && let Some(r) = current.take()
                {
                    f(r)?;
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(())
}

/// The main record of each kind, its id, name and parent fields, and the
/// side tables that add attributes to it (with the field naming the
/// product).
struct Shape {
    record: &'static str,
    id: &'static str,
    parent: Option<&'static str>,
    amp: Option<&'static str>,
    side: &'static [&'static str],
}

fn shape(kind: Kind) -> Shape {
    match kind {
        Kind::Vtm => Shape {
            record: "VTM",
            id: "VTMID",
            parent: None,
            amp: None,
            side: &[],
        },
        Kind::Vmp => Shape {
            record: "VMP",
            id: "VPID",
            parent: Some("VTMID"),
            amp: None,
            side: &["DFORM", "DROUTE", "CONTROL_INFO", "ONT", "VPI"],
        },
        Kind::Amp => Shape {
            record: "AMP",
            id: "APID",
            parent: Some("VPID"),
            amp: None,
            side: &["LIC_ROUTE"],
        },
        Kind::Vmpp => Shape {
            record: "VMPP",
            id: "VPPID",
            parent: Some("VPID"),
            amp: None,
            side: &["DTINFO"],
        },
        Kind::Ampp => Shape {
            record: "AMPP",
            id: "APPID",
            parent: Some("VPPID"),
            amp: Some("APID"),
            side: &["PRICE_INFO"],
        },
    }
}

fn id_of(v: &str, file: &str, what: &str) -> Result<u64, TermError> {
    v.trim()
        .parse()
        .map_err(|_| TermError::Xml(file.to_owned(), format!("{what} '{v}' is not a dm+d id")))
}

fn read_products(
    input: impl BufRead,
    kind: Kind,
    file: &str,
    out: &mut Vec<Product>,
) -> Result<(), TermError> {
    let s = shape(kind);
    let mut wanted = vec![s.record];
    wanted.extend_from_slice(s.side);
    let mut products: Vec<Product> = Vec::new();
    // Side table rows: (product, table, attributes).
    type Side = (u64, String, Vec<(String, String)>);
    let mut side: Vec<Side> = Vec::new();
    records(input, file, &wanted, &mut |r| {
        let get = |n: &str| {
            r.fields
                .iter()
                .find(|(f, _)| f == n)
                .map(|(_, v)| v.as_str())
        };
        if r.name == s.record {
            let id = id_of(
                get(s.id).ok_or_else(|| {
                    TermError::Xml(file.to_owned(), format!("a {} without {}", s.record, s.id))
                })?,
                file,
                s.id,
            )?;
            let link = |f: Option<&str>| -> Result<Option<u64>, TermError> {
                match f.and_then(get).filter(|v| !v.is_empty()) {
                    Some(v) => id_of(v, file, f.unwrap_or_default()).map(Some),
                    None => Ok(None),
                }
            };
            let mine = [Some(s.id), s.parent, s.amp, Some("NM"), Some("INVALID")];
            products.push(Product {
                id,
                kind,
                name: get("NM").unwrap_or_default().to_owned(),
                invalid: get("INVALID").is_some_and(|v| v == "1"),
                parent: link(s.parent)?,
                amp: link(s.amp)?,
                attributes: r
                    .fields
                    .iter()
                    .filter(|(f, _)| !mine.contains(&Some(f.as_str())))
                    .cloned()
                    .collect(),
            });
        } else {
            // A side table row names its product by the main record's id.
            let id = id_of(get(s.id).unwrap_or_default(), file, s.id)?;
            let fields = r
                .fields
                .iter()
                .filter(|(f, _)| f != s.id)
                .map(|(f, v)| (format!("{}/{f}", r.name), v.clone()))
                .collect();
            side.push((id, r.name.clone(), fields));
        }
        Ok(())
    })?;
    let at: HashMap<u64, usize> = products
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id, i))
        .collect();
    for (id, table, fields) in side {
        let p = at
            .get(&id)
            .and_then(|i| products.get_mut(*i))
            .ok_or_else(|| {
                TermError::Xml(
                    file.to_owned(),
                    format!("a {table} row for {id}, which has no {}", s.record),
                )
            })?;
        p.attributes.extend(fields);
    }
    out.extend(products);
    Ok(())
}

fn read_lookups(input: impl BufRead, file: &str, out: &mut Vec<Lookup>) -> Result<(), TermError> {
    records(input, file, &["INFO", "ING"], &mut |r| {
        let get = |n: &str| {
            r.fields
                .iter()
                .find(|(f, _)| f == n)
                .map(|(_, v)| v.clone())
        };
        let (table, code, description) = if r.name == "ING" {
            ("INGREDIENT".to_owned(), get("ISID"), get("NM"))
        } else {
            (r.parent.clone(), get("CD"), get("DESC"))
        };
        if let (Some(code), Some(description)) = (code, description) {
            out.push(Lookup {
                table,
                code,
                description,
            });
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_flat_field_lists_whatever_their_nesting() {
        let xml = r#"<?xml version="1.0"?>
            <VIRTUAL_MED_PRODUCTS><VMPS>
              <VMP><VPID>10</VPID><VTMID>1</VTMID><NM>Co-codamol 8mg/500mg tablets &amp; more</NM>
                <PRES_STATCD>0001</PRES_STATCD></VMP>
            </VMPS>
            <DRUG_FORM><DFORM><VPID>10</VPID><FORMCD>385055001</FORMCD></DFORM></DRUG_FORM>
            <DRUG_ROUTE><DROUTE><VPID>10</VPID><ROUTECD>26643006</ROUTECD></DROUTE></DRUG_ROUTE>
            </VIRTUAL_MED_PRODUCTS>"#;
        let mut out = Vec::new();
        read_products(xml.as_bytes(), Kind::Vmp, "f_vmp2_test.xml", &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            vec![Product {
                id: 10,
                kind: Kind::Vmp,
                name: "Co-codamol 8mg/500mg tablets & more".into(),
                invalid: false,
                parent: Some(1),
                amp: None,
                attributes: vec![
                    ("PRES_STATCD".into(), "0001".into()),
                    ("DFORM/FORMCD".into(), "385055001".into()),
                    ("DROUTE/ROUTECD".into(), "26643006".into()),
                ],
            }]
        );
    }

    #[test]
    fn lookups_take_their_table_from_the_parent_element() {
        let xml = "<LOOKUP><FORM><INFO><CD>385055001</CD><DESC>Tablet</DESC></INFO></FORM>
            <ROUTE><INFO><CD>26643006</CD><DESC>Oral</DESC></INFO></ROUTE></LOOKUP>";
        let mut out = Vec::new();
        read_lookups(xml.as_bytes(), "f_lookup2_test.xml", &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.len(), 2);
        assert_eq!(
            (
                out[1].table.as_str(),
                out[1].code.as_str(),
                out[1].description.as_str()
            ),
            ("ROUTE", "26643006", "Oral")
        );
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        for xml in [
            "<VMP><VPID>x</VPID></VMP>",
            "<VMP><NM>no id</NM></VMP>",
            "<VMPS><VMP><VPID>1</VPID></VMPS>",
            "<DFORM><VPID>5</VPID></DFORM>",
        ] {
            let mut out = Vec::new();
            assert!(
                read_products(xml.as_bytes(), Kind::Vmp, "f", &mut out).is_err(),
                "{xml}"
            );
        }
    }
}
