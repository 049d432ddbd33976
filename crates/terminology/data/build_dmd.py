#!/usr/bin/env python3
"""Writes OpenGP's shipped dm+d sample (dmd/*.xml): about two hundred common
GP medicines as VTM, VMP, AMP, VMPP and AMPP records and the lookup rows they
use, in the element layout of the NHSBSA dm+d XML release.

Every product id, and every lookup code except the few SNOMED CT ids listed
in REAL below, is assigned by this script: SCTIDs minted in the namespace
9999998 (item numbers 1xxxxx VTM, 2xxxxx VMP, 3xxxxx AMP, 4xxxxx VMPP,
5xxxxx AMPP, 6xxxxx lookups, 7xxxxx ingredient substances; long-form concept partition 10 and a Verhoeff
check digit), or four-digit lookup codes starting with 9. They are OpenGP's
own and must never be sent to another system. See dmd/README.md.

Deterministic: run from the repository root:
    python3 crates/terminology/data/build_dmd.py"""

import os
from xml.sax.saxutils import escape

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dmd")
DATE = "20250101"
NAMESPACE = 9999998

# --- Verhoeff check digits (as SNOMED CT ids use) ---------------------------
_D = [[0,1,2,3,4,5,6,7,8,9],[1,2,3,4,0,6,7,8,9,5],[2,3,4,0,1,7,8,9,5,6],
      [3,4,0,1,2,8,9,5,6,7],[4,0,1,2,3,9,5,6,7,8],[5,9,8,7,6,0,4,3,2,1],
      [6,5,9,8,7,1,0,4,3,2],[7,6,5,9,8,2,1,0,4,3],[8,7,6,5,9,3,2,1,0,4],
      [9,8,7,6,5,4,3,2,1,0]]
_P = [[0,1,2,3,4,5,6,7,8,9],[1,5,7,6,2,8,3,0,9,4],[5,8,0,3,7,9,6,1,4,2],
      [8,9,1,6,0,4,3,5,2,7],[9,4,5,3,1,2,6,8,7,0],[4,2,8,6,5,7,3,9,0,1],
      [2,7,9,3,8,0,6,4,1,5],[7,0,4,6,9,1,3,2,5,8]]
_INV = [0,4,3,2,1,5,6,7,8,9]

def mint(item):
    """A concept SCTID in OpenGP's namespace: item, namespace, partition 10."""
    body = f"{item}{NAMESPACE:07d}10"
    c = 0
    for i, d in enumerate(reversed(body)):
        c = _D[c][_P[(i + 1) % 8][int(d)]]
    return body + str(_INV[c])

# --- Lookups -----------------------------------------------------------------
# The only real codes: SNOMED CT ids of dose forms, a route and units, which
# dm+d uses as its FORM, ROUTE and UNIT_OF_MEASURE codes.
REAL = {
    ("FORM", "Tablet"): "385055001",
    ("FORM", "Capsule"): "385049006",
    ("ROUTE", "Oral"): "26643006",
    ("UNIT_OF_MEASURE", "tablet"): "428673006",
    ("UNIT_OF_MEASURE", "capsule"): "428641000",
    ("UNIT_OF_MEASURE", "mg"): "258684004",
    ("UNIT_OF_MEASURE", "microgram"): "258685003",
    ("UNIT_OF_MEASURE", "ml"): "258773002",
}
lookups = {}  # table -> {desc: code}
_next_lookup = [600000]

def code(table, desc):
    t = lookups.setdefault(table, {})
    if desc not in t:
        if (table, desc) in REAL:
            t[desc] = REAL[(table, desc)]
        else:
            _next_lookup[0] += 1
            t[desc] = mint(_next_lookup[0])
    return t[desc]

# Four-digit codes (project-assigned, 9xxx) for the small coded lists.
SMALL = {
    "CONTROL_DRUG_CATEGORY": {"No Controlled Drug Status": "9000", "Schedule 2 (CD)": "9002",
                              "Schedule 3 (CD No Register)": "9003", "Schedule 4 (CD Benz)": "9004",
                              "Schedule 4 (CD Anab)": "9005", "Schedule 5 (CD Inv)": "9006"},
    "LEGAL_CATEGORY": {"POM": "9101", "P": "9102", "GSL": "9103"},
    "VIRTUAL_PRODUCT_PRES_STATUS": {"Valid as a prescribable product": "9201"},
}

# --- The medicines -------------------------------------------------------------
# (VTM, form words in the name, dm+d form, route, unit dose unit, strengths,
#  controlled drug category, legal category, pack size and its unit).
T, C = ("tablets", "Tablet", "Oral", "tablet"), ("capsules", "Capsule", "Oral", "capsule")
GRC = ("gastro-resistant capsules", "Gastro-resistant capsule", "Oral", "capsule")
GRT = ("gastro-resistant tablets", "Gastro-resistant tablet", "Oral", "tablet")
MRT = ("modified-release tablets", "Modified-release tablet", "Oral", "tablet")
OS = ("oral solution", "Oral solution", "Oral", "ml")
INH = ("inhaler", "Pressurised inhalation", "Inhalation", "dose")
NS = ("nasal spray", "Spray", "Nasal", "dose")
CR = ("cream", "Cream", "Cutaneous", "gram")
ED = ("eye drops", "Eye drops", "Ocular", "ml")
NCD = "No Controlled Drug Status"

def m(vtm, form, strengths, cd=NCD, legal="POM", pack=None):
    return (vtm, form, strengths, cd, legal, pack)

MEDICINES = [
    m("Amlodipine", T, ["2.5mg", "5mg", "10mg"]),
    m("Ramipril", C, ["1.25mg", "2.5mg", "5mg", "10mg"]),
    m("Lisinopril", T, ["2.5mg", "5mg", "10mg", "20mg"]),
    m("Perindopril erbumine", T, ["2mg", "4mg", "8mg"]),
    m("Losartan", T, ["25mg", "50mg", "100mg"]),
    m("Candesartan", T, ["4mg", "8mg", "16mg"]),
    m("Bendroflumethiazide", T, ["2.5mg"]),
    m("Indapamide", MRT, ["1.5mg"]),
    m("Bisoprolol", T, ["1.25mg", "2.5mg", "5mg", "10mg"]),
    m("Atenolol", T, ["25mg", "50mg", "100mg"]),
    m("Propranolol", T, ["10mg", "40mg"]),
    m("Doxazosin", T, ["1mg", "2mg", "4mg"]),
    m("Furosemide", T, ["20mg", "40mg"]),
    m("Spironolactone", T, ["25mg", "50mg"]),
    m("Atorvastatin", T, ["10mg", "20mg", "40mg", "80mg"]),
    m("Simvastatin", T, ["10mg", "20mg", "40mg"]),
    m("Rosuvastatin", T, ["5mg", "10mg", "20mg"]),
    m("Ezetimibe", T, ["10mg"]),
    m("Aspirin", GRT, ["75mg"], legal="P"),
    m("Clopidogrel", T, ["75mg"]),
    m("Apixaban", T, ["2.5mg", "5mg"]),
    m("Rivaroxaban", T, ["10mg", "20mg"]),
    m("Edoxaban", T, ["30mg", "60mg"]),
    m("Warfarin", T, ["1mg", "3mg", "5mg"]),
    m("Digoxin", T, ["62.5microgram", "125microgram"]),
    m("Isosorbide mononitrate", T, ["10mg", "20mg"]),
    m("Metformin", T, ["500mg", "850mg"]),
    m("Gliclazide", T, ["40mg", "80mg"]),
    m("Sitagliptin", T, ["50mg", "100mg"]),
    m("Linagliptin", T, ["5mg"]),
    m("Dapagliflozin", T, ["5mg", "10mg"]),
    m("Empagliflozin", T, ["10mg", "25mg"]),
    m("Pioglitazone", T, ["15mg", "30mg"]),
    m("Levothyroxine sodium", T, ["25microgram", "50microgram", "100microgram"]),
    m("Carbimazole", T, ["5mg", "20mg"]),
    m("Omeprazole", GRC, ["10mg", "20mg", "40mg"]),
    m("Lansoprazole", GRC, ["15mg", "30mg"]),
    m("Esomeprazole", GRT, ["20mg", "40mg"]),
    m("Ranitidine", T, ["150mg"]),
    m("Famotidine", T, ["20mg", "40mg"]),
    m("Loperamide", C, ["2mg"], legal="P"),
    m("Senna", T, ["7.5mg"], legal="GSL"),
    m("Lactulose", OS, ["3.35g/5ml"], legal="P", pack=("300", "ml")),
    m("Mebeverine", T, ["135mg"]),
    m("Paracetamol", T, ["500mg"], legal="P"),
    m("Ibuprofen", T, ["200mg", "400mg"], legal="P"),
    m("Naproxen", T, ["250mg", "500mg"]),
    m("Diclofenac sodium", GRT, ["25mg", "50mg"]),
    m("Co-codamol", T, ["8mg/500mg", "30mg/500mg"]),
    m("Codeine phosphate", T, ["15mg", "30mg"], cd="Schedule 5 (CD Inv)"),
    m("Tramadol", C, ["50mg"], cd="Schedule 3 (CD No Register)"),
    m("Morphine sulfate", OS, ["10mg/5ml"], cd="Schedule 5 (CD Inv)", pack=("100", "ml")),
    m("Oxycodone", C, ["5mg", "10mg"], cd="Schedule 2 (CD)"),
    m("Gabapentin", C, ["100mg", "300mg"], cd="Schedule 3 (CD No Register)"),
    m("Pregabalin", C, ["25mg", "75mg", "150mg"], cd="Schedule 3 (CD No Register)"),
    m("Amitriptyline", T, ["10mg", "25mg"]),
    m("Sertraline", T, ["50mg", "100mg"]),
    m("Citalopram", T, ["10mg", "20mg"]),
    m("Fluoxetine", C, ["20mg"]),
    m("Mirtazapine", T, ["15mg", "30mg"]),
    m("Venlafaxine", T, ["37.5mg", "75mg"]),
    m("Diazepam", T, ["2mg", "5mg"], cd="Schedule 4 (CD Benz)"),
    m("Zopiclone", T, ["3.75mg", "7.5mg"], cd="Schedule 4 (CD Benz)"),
    m("Temazepam", T, ["10mg"], cd="Schedule 3 (CD No Register)"),
    m("Quetiapine", T, ["25mg", "100mg"]),
    m("Olanzapine", T, ["5mg", "10mg"]),
    m("Lithium carbonate", MRT, ["400mg"]),
    m("Levetiracetam", T, ["250mg", "500mg"]),
    m("Lamotrigine", T, ["25mg", "100mg"]),
    m("Sodium valproate", GRT, ["200mg"]),
    m("Donepezil", T, ["5mg", "10mg"]),
    m("Sumatriptan", T, ["50mg"]),
    m("Prochlorperazine maleate", T, ["5mg"]),
    m("Cetirizine", T, ["10mg"], legal="GSL"),
    m("Loratadine", T, ["10mg"], legal="GSL"),
    m("Fexofenadine", T, ["120mg", "180mg"]),
    m("Prednisolone", T, ["5mg"]),
    m("Amoxicillin", C, ["250mg", "500mg"], pack=("21", "capsule")),
    m("Phenoxymethylpenicillin", T, ["250mg"], pack=("28", "tablet")),
    m("Flucloxacillin", C, ["250mg", "500mg"], pack=("28", "capsule")),
    m("Clarithromycin", T, ["250mg", "500mg"], pack=("14", "tablet")),
    m("Doxycycline", C, ["100mg"], pack=("8", "capsule")),
    m("Nitrofurantoin", C, ["50mg", "100mg"], pack=("30", "capsule")),
    m("Trimethoprim", T, ["100mg", "200mg"], pack=("6", "tablet")),
    m("Co-amoxiclav", T, ["250mg/125mg", "500mg/125mg"], pack=("21", "tablet")),
    m("Metronidazole", T, ["200mg", "400mg"], pack=("21", "tablet")),
    m("Fluconazole", C, ["50mg", "150mg"], pack=("1", "capsule")),
    m("Aciclovir", T, ["200mg", "400mg"], pack=("25", "tablet")),
    m("Tamsulosin", MRT, ["400microgram"]),
    m("Finasteride", T, ["5mg"]),
    m("Solifenacin", T, ["5mg", "10mg"]),
    m("Oxybutynin", T, ["2.5mg", "5mg"]),
    m("Alendronic acid", T, ["70mg"], pack=("4", "tablet")),
    m("Colecalciferol", C, ["800unit"], legal="GSL"),
    m("Folic acid", T, ["400microgram", "5mg"]),
    m("Ferrous fumarate", T, ["210mg"], legal="P"),
    m("Allopurinol", T, ["100mg", "300mg"]),
    m("Colchicine", T, ["500microgram"]),
    m("Methotrexate", T, ["2.5mg"], pack=("24", "tablet")),
    m("Hydroxychloroquine", T, ["200mg"], pack=("60", "tablet")),
    m("Montelukast", T, ["10mg"]),
    m("Salbutamol", INH, ["100micrograms/dose"], pack=("200", "dose")),
    m("Beclometasone", INH, ["100micrograms/dose"], pack=("200", "dose")),
    m("Tiotropium", INH, ["2.5micrograms/dose"], pack=("60", "dose")),
    m("Beclometasone", NS, ["50micrograms/dose"], legal="P", pack=("200", "dose")),
    m("Hydrocortisone", CR, ["1%"], legal="P", pack=("15", "gram")),
    m("Chloramphenicol", ED, ["0.5%"], legal="P", pack=("10", "ml")),
]

# The ingredient substances of VTMs that are not simply their own name
# (combination products), in the order their strengths are written.
INGREDIENTS = {
    "Co-codamol": ["Codeine phosphate", "Paracetamol"],
    "Co-amoxiclav": ["Amoxicillin", "Clavulanic acid"],
}

# Strength units: the name's spelling -> the UNIT_OF_MEASURE description.
UNITS = {"mg": "mg", "microgram": "microgram", "micrograms": "microgram", "g": "gram",
         "ml": "ml", "unit": "unit", "dose": "dose"}


def strengths_of(s):
    """The strength of each ingredient, as (numerator value, unit,
    denominator value or None, unit or None), from a strength as the name
    writes it: '5mg', '8mg/500mg' (two ingredients), '3.35g/5ml' and
    '100micrograms/dose' (per a quantity), '1%' (10 mg per gram for a
    cream, per ml otherwise: the caller says which)."""
    import re
    def one(t):
        m = re.fullmatch(r"([0-9.]+)([a-z]+)", t)
        if not m:
            raise ValueError(f"strength {t!r}")
        return m.group(1), UNITS[m.group(2)]
    if s.endswith("%"):
        return [("%", s[:-1])]
    parts = s.split("/")
    if len(parts) == 2 and parts[1] in ("dose",) or (len(parts) == 2 and re.fullmatch(r"[0-9.]+ml", parts[1])):
        v, u = one(parts[0])
        if parts[1] == "dose":
            return [(v, u, "1", "dose")]
        dv, du = one(parts[1])
        return [(v, u, dv, du)]
    return [one(p) + (None, None) for p in parts]


def number(x):
    """A decimal without trailing zeros ('10.0' -> '10')."""
    t = f"{x:.3f}".rstrip("0").rstrip(".")
    return t


# A few branded products (AMPs beside the generic one): VMP name -> brands.
BRANDS = {
    "Atorvastatin 20mg tablets": ["Lipitor 20mg tablets"],
    "Amlodipine 5mg tablets": ["Istin 5mg tablets"],
    "Salbutamol 100micrograms/dose inhaler": ["Ventolin 100micrograms/dose Evohaler"],
    "Omeprazole 20mg gastro-resistant capsules": ["Losec 20mg capsules"],
    "Sitagliptin 100mg tablets": ["Januvia 100mg tablets"],
    "Apixaban 5mg tablets": ["Eliquis 5mg tablets"],
}
GENERIC_SUPPLIER = "OpenGP sample generic supplier"
BRAND_SUPPLIER = "OpenGP sample brand supplier"


def build():
    vtms, vmps, amps, vmpps, ampps, vpis = [], [], [], [], [], []
    n = {"vtm": 100000, "vmp": 200000, "amp": 300000, "vmpp": 400000, "ampp": 500000,
         "ing": 700000}
    ingredient_ids = {}

    def ingredient(name):
        if name not in ingredient_ids:
            ingredient_ids[name] = nxt("ing")
        return ingredient_ids[name]

    def nxt(k):
        n[k] += 1
        return mint(n[k])

    vtm_ids = {}
    for vtm, form, strengths, cd, legal, pack in MEDICINES:
        words, form_desc, route, unit = form
        if vtm not in vtm_ids:
            vtm_ids[vtm] = nxt("vtm")
            vtms.append((vtm_ids[vtm], vtm))
        for s in strengths:
            name = f"{vtm} {s} {words}"
            vpid = nxt("vmp")
            qty, qty_unit = pack or ("28", unit)
            vmps.append(dict(VPID=vpid, VTMID=vtm_ids[vtm], NM=name,
                             PRES_STATCD=SMALL["VIRTUAL_PRODUCT_PRES_STATUS"]["Valid as a prescribable product"],
                             UDFS="1", UDFS_UOMCD=code("UNIT_OF_MEASURE", unit),
                             UNIT_DOSE_UOMCD=code("UNIT_OF_MEASURE", unit),
                             FORMCD=code("FORM", form_desc), ROUTECD=code("ROUTE", route),
                             CATCD=SMALL["CONTROL_DRUG_CATEGORY"][cd]))
            substances = INGREDIENTS.get(vtm, [vtm])
            given = strengths_of(s)
            if given[0][0] == "%":
                # Percent weight in volume or weight: mg per ml or gram.
                per = "gram" if unit == "gram" else "ml"
                given = [(number(float(given[0][1]) * 10), "mg", "1", per)]
            if len(given) != len(substances):
                raise ValueError(f"{name}: {len(given)} strengths for {substances}")
            for substance, (v, u, dv, du) in zip(substances, given):
                # Units are coded after every product, so that the codes
                # the products use keep the numbers they had before
                # ingredients were added.
                row = dict(VPID=vpid, ISID=ingredient(substance),
                           STRNT_NMRTR_VAL=v, STRNT_NMRTR_UOMCD=u)
                if dv is not None:
                    row["STRNT_DNMTR_VAL"] = dv
                    row["STRNT_DNMTR_UOMCD"] = du
                vpis.append(row)
            vppid = nxt("vmpp")
            vmpp_name = f"{name} {qty} {qty_unit if qty_unit not in ('tablet', 'capsule', 'dose') else qty_unit + ('s' if qty != '1' else '')}"
            vmpps.append(dict(VPPID=vppid, NM=vmpp_name, VPID=vpid, QTYVAL=qty,
                              QTY_UOMCD=code("UNIT_OF_MEASURE", qty_unit)))
            for amp_name, supplier in [(name, GENERIC_SUPPLIER)] + [(b, BRAND_SUPPLIER) for b in BRANDS.get(name, [])]:
                apid = nxt("amp")
                amps.append(dict(APID=apid, VPID=vpid, NM=amp_name,
                                 DESC=f"{amp_name} ({supplier})",
                                 SUPPCD=code("SUPPLIER", supplier)))
                ampps.append(dict(APPID=nxt("ampp"), NM=f"{amp_name} ({supplier}) {vmpp_name[len(name) + 1:]}",
                                  VPPID=vppid, APID=apid,
                                  LEGAL_CATCD=SMALL["LEGAL_CATEGORY"][legal]))
    for row in vpis:
        for k in ("STRNT_NMRTR_UOMCD", "STRNT_DNMTR_UOMCD"):
            if k in row:
                row[k] = code("UNIT_OF_MEASURE", row[k])
    ingredients = sorted((i, nm) for nm, i in ingredient_ids.items())
    return vtms, vmps, amps, vmpps, ampps, vpis, ingredients


def el(tag, value):
    return f"<{tag}>{escape(str(value))}</{tag}>"


def write(name, root, parts):
    with open(os.path.join(OUT, name), "w", encoding="utf-8", newline="\n") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n')
        f.write(f"<!-- OpenGP's shipped dm+d sample, written by build_dmd.py: ids are project-assigned (see README.md). -->\n")
        f.write(f"<{root}>\n")
        for p in parts:
            f.write(p + "\n")
        f.write(f"</{root}>\n")


def group(wrapper, rows):
    return f"<{wrapper}>\n" + "\n".join(rows) + f"\n</{wrapper}>"


def main():
    os.makedirs(OUT, exist_ok=True)
    vtms, vmps, amps, vmpps, ampps, vpis, ingredients = build()
    write(f"f_vtm2_3{DATE}.xml", "VIRTUAL_THERAPEUTIC_MOIETIES",
          ["<VTM>" + el("VTMID", i) + el("NM", nm) + "</VTM>" for i, nm in vtms])
    vmp_fields = ["VPID", "VTMID", "NM", "PRES_STATCD", "UDFS", "UDFS_UOMCD", "UNIT_DOSE_UOMCD"]
    write(f"f_vmp2_3{DATE}.xml", "VIRTUAL_MED_PRODUCTS", [
        group("VMPS", ["<VMP>" + "".join(el(k, v[k]) for k in vmp_fields) + "</VMP>" for v in vmps]),
        group("DRUG_FORM", ["<DFORM>" + el("VPID", v["VPID"]) + el("FORMCD", v["FORMCD"]) + "</DFORM>" for v in vmps]),
        group("DRUG_ROUTE", ["<DROUTE>" + el("VPID", v["VPID"]) + el("ROUTECD", v["ROUTECD"]) + "</DROUTE>" for v in vmps]),
        group("CONTROL_DRUG_INFO", ["<CONTROL_INFO>" + el("VPID", v["VPID"]) + el("CATCD", v["CATCD"]) + "</CONTROL_INFO>" for v in vmps]),
        group("VIRTUAL_PRODUCT_INGREDIENT", ["<VPI>" + "".join(el(k, i[k]) for k in
              ["VPID", "ISID", "STRNT_NMRTR_VAL", "STRNT_NMRTR_UOMCD", "STRNT_DNMTR_VAL", "STRNT_DNMTR_UOMCD"]
              if k in i) + "</VPI>" for i in vpis]),
    ])
    write(f"f_ingredient2_3{DATE}.xml", "INGREDIENT_SUBSTANCES",
          ["<ING>" + el("ISID", i) + el("NM", nm) + "</ING>" for i, nm in ingredients])
    write(f"f_amp2_3{DATE}.xml", "ACTUAL_MEDICINAL_PRODUCTS", [
        group("AMPS", ["<AMP>" + "".join(el(k, a[k]) for k in ["APID", "VPID", "NM", "DESC", "SUPPCD"]) + "</AMP>" for a in amps]),
    ])
    write(f"f_vmpp2_3{DATE}.xml", "VIRTUAL_MED_PRODUCT_PACK", [
        group("VMPPS", ["<VMPP>" + "".join(el(k, p[k]) for k in ["VPPID", "NM", "VPID", "QTYVAL", "QTY_UOMCD"]) + "</VMPP>" for p in vmpps]),
    ])
    write(f"f_ampp2_3{DATE}.xml", "ACTUAL_MEDICINAL_PROD_PACKS", [
        group("AMPPS", ["<AMPP>" + "".join(el(k, p[k]) for k in ["APPID", "NM", "VPPID", "APID", "LEGAL_CATCD"]) + "</AMPP>" for p in ampps]),
    ])
    tables = {t: {d: c for d, c in v.items()} for t, v in lookups.items()}
    for t, v in SMALL.items():
        tables[t] = v
    write(f"f_lookup2_3{DATE}.xml", "LOOKUP", [
        group(t, ["<INFO>" + el("CD", c) + el("DESC", d) + "</INFO>" for d, c in sorted(v.items(), key=lambda x: x[1])])
        for t, v in sorted(tables.items())
    ])
    print(f"{len(vtms)} VTMs, {len(vmps)} VMPs, {len(amps)} AMPs, {len(vmpps)} VMPPs, {len(ampps)} AMPPs, "
          f"{len(ingredients)} ingredients in {len(vpis)} VPI rows")


if __name__ == "__main__":
    main()
