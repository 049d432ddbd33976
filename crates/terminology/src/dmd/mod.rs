//! dm+d, the NHS Dictionary of medicines and devices: its five kinds of
//! product (VTM substance, VMP generic product, AMP branded product, and
//! their packs VMPP and AMPP), the lookups prescribing needs (form, route,
//! controlled drug category, unit of measure and the rest), read from the
//! release's XML files ([`xml`]) and held in memory for prescribing: search
//! by name, navigation between a VMP and its AMPs and packs.
//!
//! The element names of the release are kept as they are: a product's
//! attributes are `(name, value)` pairs such as `("SUPPCD", ...)`, and those
//! from the VMP file's side tables are named `table/field`
//! (`DFORM/FORMCD`, `DROUTE/ROUTECD`, `CONTROL_INFO/CATCD`; a VMP's
//! ingredients `VPI/ISID`, `VPI/STRNT_NMRTR_VAL`, `VPI/STRNT_NMRTR_UOMCD`,
//! `VPI/STRNT_DNMTR_VAL` ..., one group per ingredient in the release's
//! order), so nothing the release says is dropped or renamed. Ingredient
//! substances are the lookup table `INGREDIENT`.

pub mod xml;

/// What the name of every edition of the shipped sample starts with.
pub const SHIPPED_PREFIX: &str = "OpenGP shipped dm+d sample";

/// The name this edition of the shipped sample is stored under (a new
/// edition, such as the one that added ingredients, gets a new name, so a
/// store holding an older one is brought up to date at start).
pub const SHIPPED_NAME: &str = "OpenGP shipped dm+d sample 20250101.2";

const SHIPPED: &[(&str, &str)] = &[
    (
        "f_vtm2_320250101.xml",
        include_str!("../../data/dmd/f_vtm2_320250101.xml"),
    ),
    (
        "f_vmp2_320250101.xml",
        include_str!("../../data/dmd/f_vmp2_320250101.xml"),
    ),
    (
        "f_amp2_320250101.xml",
        include_str!("../../data/dmd/f_amp2_320250101.xml"),
    ),
    (
        "f_vmpp2_320250101.xml",
        include_str!("../../data/dmd/f_vmpp2_320250101.xml"),
    ),
    (
        "f_ampp2_320250101.xml",
        include_str!("../../data/dmd/f_ampp2_320250101.xml"),
    ),
    (
        "f_lookup2_320250101.xml",
        include_str!("../../data/dmd/f_lookup2_320250101.xml"),
    ),
    (
        "f_ingredient2_320250101.xml",
        include_str!("../../data/dmd/f_ingredient2_320250101.xml"),
    ),
];

/// The shipped sample of about two hundred common GP medicines
/// (`data/dmd`, see its README: the product ids are project-assigned).
pub fn shipped() -> Result<DmdRelease, crate::TermError> {
    xml::read_texts(SHIPPED)
}

use std::collections::HashMap;

use crate::rf2::{Concept, Description, RefsetMember, Rows};
use crate::{
    ACCEPTABLE, CORE_MODULE, ConceptSet, GB_ENGLISH, Hit, INITIAL_CASE_INSENSITIVE, Index,
    IndexBuilder, PREFERRED, PRIMITIVE, SYNONYM, TermQuery,
};

/// The code system URI of dm+d in FHIR.
pub const DMD_URI: &str = "https://dmd.nhs.uk";

/// The five kinds of dm+d product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Vtm,
    Vmp,
    Amp,
    Vmpp,
    Ampp,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Vtm, Kind::Vmp, Kind::Amp, Kind::Vmpp, Kind::Ampp];

    /// The release's name for it (`VTM`, `VMP`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Kind::Vtm => "VTM",
            Kind::Vmp => "VMP",
            Kind::Amp => "AMP",
            Kind::Vmpp => "VMPP",
            Kind::Ampp => "AMPP",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.code().eq_ignore_ascii_case(s))
    }
}

/// A product of any kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// Its dm+d id (`VTMID`, `VPID`, `APID`, `VPPID`, `APPID`), an SCTID.
    pub id: u64,
    pub kind: Kind,
    /// `NM`.
    pub name: String,
    /// `INVALID`: withdrawn, kept for old records only.
    pub invalid: bool,
    /// The product above it: a VMP's VTM, an AMP's or a VMPP's VMP, an
    /// AMPP's VMPP.
    pub parent: Option<u64>,
    /// An AMPP's AMP.
    pub amp: Option<u64>,
    /// Everything else the release says of it, by element name.
    pub attributes: Vec<(String, String)>,
}

impl Product {
    /// The first value of an attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A row of a lookup table (`FORM`, `ROUTE`, `CONTROL_DRUG_CATEGORY`,
/// `UNIT_OF_MEASURE`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub table: String,
    /// `CD`.
    pub code: String,
    /// `DESC`.
    pub description: String,
}

/// A dm+d release as rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmdRelease {
    pub products: Vec<Product>,
    pub lookups: Vec<Lookup>,
}

impl DmdRelease {
    /// Puts the rows in a canonical order (products by id, lookups by
    /// table and code), whatever order the files were read in.
    pub fn sort(&mut self) {
        self.products.sort_by_key(|p| p.id);
        self.lookups
            .sort_by(|a, b| (&a.table, &a.code).cmp(&(&b.table, &b.code)));
    }
}

/// The lookup table an attribute's codes come from.
pub fn lookup_table(attribute: &str) -> Option<&'static str> {
    let field = attribute.rsplit('/').next().unwrap_or(attribute);
    Some(match (attribute, field) {
        ("ONT/FORMCD", _) => "ONT_FORM_ROUTE",
        (_, "ISID") => "INGREDIENT",
        (_, "BASIS_STRNTCD") => "BASIS_OF_STRNTH",
        (_, "FORMCD") => "FORM",
        (_, "ROUTECD") => "ROUTE",
        (_, "CATCD" | "CAT_PREVCD") => "CONTROL_DRUG_CATEGORY",
        (_, f) if f.ends_with("UOMCD") => "UNIT_OF_MEASURE",
        (_, "SUPPCD") => "SUPPLIER",
        (_, "LEGAL_CATCD") => "LEGAL_CATEGORY",
        (_, "PRES_STATCD") => "VIRTUAL_PRODUCT_PRES_STATUS",
        (_, "NON_AVAILCD") => "VIRTUAL_PRODUCT_NON_AVAIL",
        (_, "DF_INDCD") => "DF_INDICATOR",
        (_, "BASISCD" | "BASIS_PREVCD") => "BASIS_OF_NAME",
        (_, "LIC_AUTHCD" | "LIC_AUTH_PREVCD") => "LICENSING_AUTHORITY",
        (_, "AVAIL_RESTRICTCD") => "AVAILABILITY_RESTRICTION",
        (_, "DISCCD") => "DISCONTINUED_IND",
        (_, "COMBPRODCD") => "COMBINATION_PROD_IND",
        (_, "COMBPACKCD") => "COMBINATION_PACK_IND",
        (_, "FLAVOURCD") => "FLAVOUR",
        _ => return None,
    })
}

/// A dm+d release in memory. Immutable once built; share it.
#[derive(Debug)]
pub struct DmdIndex {
    products: Vec<Product>,
    by_id: HashMap<u64, usize>,
    /// Products below each product (a VTM's VMPs, a VMP's AMPs and VMPPs,
    /// an AMP's and a VMPP's AMPPs), in name order.
    below: HashMap<u64, Vec<u64>>,
    lookups: HashMap<(String, String), String>,
    /// The names, searchable as terms: VTMs and VMPs ranked as preferred,
    /// AMPs as acceptable, packs after both (so "amlo 5" offers the
    /// generic product before the brands and the packs).
    names: Index,
    /// The products of each kind, as sets over `names`.
    kinds: HashMap<Kind, ConceptSet>,
}

/// A name search over dm+d.
#[derive(Clone, Debug)]
pub struct DmdQuery<'a> {
    pub text: &'a str,
    /// The kinds wanted (all when empty).
    pub kinds: &'a [Kind],
    pub limit: usize,
    pub offset: usize,
    /// Also find invalid products.
    pub include_invalid: bool,
}

impl DmdIndex {
    pub fn build(release: DmdRelease) -> DmdIndex {
        let mut products = release.products;
        products.sort_by_key(|p| p.id);
        products.dedup_by_key(|p| p.id);
        let by_id: HashMap<u64, usize> = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i))
            .collect();
        let mut below: HashMap<u64, Vec<u64>> = HashMap::new();
        for p in &products {
            for up in [p.parent, p.amp].into_iter().flatten() {
                below.entry(up).or_default().push(p.id);
            }
        }
        for list in below.values_mut() {
            list.sort_by(|a, b| {
                let name = |id: &u64| {
                    by_id
                        .get(id)
                        .and_then(|i| products.get(*i))
                        .map(|p| &p.name)
                };
                name(a).cmp(&name(b)).then(a.cmp(b))
            });
        }
        let mut b = IndexBuilder::new();
        b.add(Rows::Concepts(
            products
                .iter()
                .map(|p| Concept {
                    id: p.id,
                    effective_time: 0,
                    active: !p.invalid,
                    module: CORE_MODULE,
                    definition_status: PRIMITIVE,
                })
                .collect(),
        ));
        // Each name is one description, numbered after its product.
        b.add(Rows::Descriptions(
            products
                .iter()
                .enumerate()
                .map(|(i, p)| Description {
                    id: i as u64,
                    effective_time: 0,
                    active: true,
                    module: CORE_MODULE,
                    concept: p.id,
                    language: "en".into(),
                    type_id: SYNONYM,
                    term: p.name.clone(),
                    case_significance: INITIAL_CASE_INSENSITIVE,
                })
                .collect(),
        ));
        b.add(Rows::Members(
            products
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let acceptability = match p.kind {
                        Kind::Vtm | Kind::Vmp => PREFERRED,
                        Kind::Amp => ACCEPTABLE,
                        Kind::Vmpp | Kind::Ampp => return None,
                    };
                    Some(RefsetMember {
                        id: i.to_string(),
                        effective_time: 0,
                        active: true,
                        module: CORE_MODULE,
                        refset: GB_ENGLISH,
                        component: i as u64,
                        acceptability: Some(acceptability),
                    })
                })
                .collect(),
        ));
        let names = b.finish();
        let kinds = Kind::ALL
            .into_iter()
            .map(|k| {
                let ids = products.iter().filter(|p| p.kind == k).map(|p| p.id);
                (k, names.set_of(ids))
            })
            .collect();
        let lookups = release
            .lookups
            .into_iter()
            .map(|l| ((l.table, l.code), l.description))
            .collect();
        DmdIndex {
            products,
            by_id,
            below,
            lookups,
            names,
            kinds,
        }
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    pub fn product(&self, id: u64) -> Option<&Product> {
        self.products.get(*self.by_id.get(&id)?)
    }

    /// The products directly below `id` of kind `kind` (a VMP's AMPs: `amps
    /// = below(vpid, Kind::Amp)`), in name order.
    pub fn below(&self, id: u64, kind: Kind) -> Vec<&Product> {
        self.below
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|c| self.product(*c))
            .filter(|p| p.kind == kind)
            .collect()
    }

    /// The description of a lookup code (`FORM`, `385055001` → `Tablet`).
    pub fn describe(&self, table: &str, code: &str) -> Option<&str> {
        self.lookups
            .get(&(table.to_owned(), code.to_owned()))
            .map(String::as_str)
    }

    /// Every product of the given kinds (all when empty), by id.
    pub fn all(&self, kinds: &[Kind]) -> impl Iterator<Item = &Product> {
        self.products
            .iter()
            .filter(move |p| kinds.is_empty() || kinds.contains(&p.kind))
    }

    /// Products whose names hold every word typed (as prefixes, in any
    /// order), best first: VTMs and VMPs, then AMPs, then packs; shorter
    /// names first within each.
    pub fn search(&self, q: &DmdQuery<'_>) -> Vec<&Product> {
        let scope = if q.kinds.is_empty() {
            None
        } else {
            let mut s = self.names.empty_set();
            for k in q.kinds {
                if let Some(set) = self.kinds.get(k) {
                    s = s.or(set);
                }
            }
            Some(s)
        };
        let tq = TermQuery {
            offset: q.offset,
            include_inactive: q.include_invalid,
            within: scope.as_ref(),
            ..TermQuery::new(q.text, q.limit)
        };
        let hits: Vec<Hit<'_>> = self.names.search(&tq);
        hits.iter()
            .filter_map(|h| self.product(h.concept))
            .collect()
    }
}
