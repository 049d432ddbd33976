#!/usr/bin/env python3
"""Assembles OpenGP's shipped SNOMED CT subset (RF2 snapshot files in
snomed/) from public sources (the dm+d sample in dmd/ is build_dmd.py's):

  * the SNOMED CT codings in ../shared/data/synthea (Synthea bundles) and
    ../shared/data/ukcore (UK Core examples): ids with their displays;
  * the SNOMED CT value set expansions of the FHIR R4 examples package
    (target/fhir-packages/hl7.fhir.r4.examples-4.0.1, fetched by
    `cargo xtask fhir-package`), whose definitions (is-a a top-level
    concept) give each concept's hierarchy;
  * CURATED below: common GP concepts, with ids, terms and parents.

Deterministic: the same inputs give byte-identical files. Run from the
repository root:  python3 crates/terminology/data/build_subset.py
See README.md beside this script for what each part is and its limits."""

import glob, gzip, json, os, sys

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(ROOT, "../../.."))
SHARED = os.environ.get("OPENGP_SHARED_DATA", os.path.join(REPO, "../shared/data"))
R4 = os.environ.get("OPENGP_R4_EXAMPLES", os.path.join(REPO, "target/fhir-packages/hl7.fhir.r4.examples-4.0.1/package"))
DATE = "20250101"
CORE = "900000000000207008"
FSN, SYN = "900000000000003001", "900000000000013009"
PREF, ACC = "900000000000548007", "900000000000549004"
GB = "900000000000508004"
ISA = "116680003"

# Top-level and metadata concepts: id -> (FSN, PT, parent).
TOP = {
    "138875005": ("SNOMED CT Concept (SNOMED RT+CTV3)", "SNOMED CT Concept", None),
    "404684003": ("Clinical finding (finding)", "Clinical finding", "138875005"),
    "71388002": ("Procedure (procedure)", "Procedure", "138875005"),
    "363787002": ("Observable entity (observable entity)", "Observable entity", "138875005"),
    "105590001": ("Substance (substance)", "Substance", "138875005"),
    "373873005": ("Pharmaceutical / biologic product (product)", "Pharmaceutical / biologic product", "138875005"),
    "123037004": ("Body structure (body structure)", "Body structure", "138875005"),
    "410607006": ("Organism (organism)", "Organism", "138875005"),
    "243796009": ("Situation with explicit context (situation)", "Situation with explicit context", "138875005"),
    "272379006": ("Event (event)", "Event", "138875005"),
    "362981000": ("Qualifier value (qualifier value)", "Qualifier value", "138875005"),
    "260787004": ("Physical object (physical object)", "Physical object", "138875005"),
    "419891008": ("Record artifact (record artifact)", "Record artifact", "138875005"),
    "48176007": ("Social context (social concept)", "Social context", "138875005"),
    "900000000000441003": ("SNOMED CT Model Component (metadata)", "SNOMED CT Model Component", "138875005"),
    "64572001": ("Disease (disorder)", "Disease", "404684003"),
    "49755003": ("Morphologically abnormal structure (morphologic abnormality)", "Morphologically abnormal structure", "123037004"),
    "442083009": ("Anatomical or acquired body structure (body structure)", "Anatomical or acquired body structure", "123037004"),
    "284009009": ("Route of administration value (qualifier value)", "Route of administration value", "362981000"),
    "421967003": ("Drug dose form (qualifier value)", "Drug dose form", "362981000"),
    "116680003": ("Is a (attribute)", "Is a", "900000000000441003"),
}
# Where a semantic tag puts a concept when no nearer parent is known.
TAG_PARENT = {
    "disorder": "64572001", "finding": "404684003", "procedure": "71388002",
    "regime/therapy": "71388002", "observable entity": "363787002",
    "substance": "105590001", "situation": "243796009", "qualifier value": "362981000",
    "physical object": "260787004", "body structure": "442083009",
    "morphologic abnormality": "49755003", "organism": "410607006",
    "record artifact": "419891008", "event": "272379006", "product": "373873005",
}
# Value sets of the R4 package defined as is-a one concept: url -> parent.
VALUESETS = [
    ("http://hl7.org/fhir/ValueSet/clinical-findings", "404684003", 700),
    ("http://hl7.org/fhir/ValueSet/procedure-code", "71388002", 500),
    ("http://hl7.org/fhir/ValueSet/route-codes", "284009009", 150),
    ("http://hl7.org/fhir/ValueSet/medication-form-codes", "421967003", 120),
]

# Common GP concepts: (id, parent, semantic tag, preferred term, synonyms).
CURATED = [
    # Diagnoses.
    ("73211009", "64572001", "disorder", "Diabetes mellitus", []),
    ("44054006", "73211009", "disorder", "Type 2 diabetes mellitus", ["Type II diabetes mellitus", "Non-insulin dependent diabetes mellitus", "NIDDM - non-insulin dependent diabetes mellitus"]),
    ("46635009", "73211009", "disorder", "Type 1 diabetes mellitus", ["Type I diabetes mellitus", "Insulin dependent diabetes mellitus", "IDDM - insulin dependent diabetes mellitus"]),
    ("15777000", "404684003", "finding", "Prediabetes", ["Pre-diabetes"]),
    ("38341003", "64572001", "disorder", "Hypertensive disorder, systemic arterial", ["Hypertension", "High blood pressure"]),
    ("59621000", "38341003", "disorder", "Essential hypertension", ["Primary hypertension"]),
    ("195967001", "64572001", "disorder", "Asthma", []),
    ("13645005", "64572001", "disorder", "Chronic obstructive lung disease", ["Chronic obstructive pulmonary disease", "COPD - chronic obstructive pulmonary disease"]),
    ("49436004", "64572001", "disorder", "Atrial fibrillation", ["AF - atrial fibrillation"]),
    ("84114007", "64572001", "disorder", "Heart failure", ["Cardiac failure"]),
    ("53741008", "64572001", "disorder", "Coronary arteriosclerosis", ["Coronary artery disease"]),
    ("22298006", "64572001", "disorder", "Myocardial infarction", ["Heart attack", "MI - myocardial infarction"]),
    ("230690007", "64572001", "disorder", "Cerebrovascular accident", ["Stroke", "CVA - cerebrovascular accident"]),
    ("35489007", "64572001", "disorder", "Depressive disorder", ["Depression"]),
    ("197480006", "64572001", "disorder", "Anxiety disorder", []),
    ("40930008", "64572001", "disorder", "Hypothyroidism", ["Underactive thyroid"]),
    ("34486009", "64572001", "disorder", "Hyperthyroidism", ["Overactive thyroid"]),
    ("709044004", "64572001", "disorder", "Chronic kidney disease", ["CKD - chronic kidney disease"]),
    ("69896004", "64572001", "disorder", "Rheumatoid arthritis", []),
    ("396275006", "64572001", "disorder", "Osteoarthritis", []),
    ("64859006", "64572001", "disorder", "Osteoporosis", []),
    ("84757009", "64572001", "disorder", "Epilepsy", []),
    ("52448006", "64572001", "disorder", "Dementia", []),
    ("26929004", "52448006", "disorder", "Alzheimer's disease", []),
    ("414916001", "404684003", "finding", "Obesity", []),
    ("55822004", "64572001", "disorder", "Hyperlipidaemia", ["Hyperlipidemia"]),
    ("235595009", "64572001", "disorder", "Gastro-oesophageal reflux disease", ["GORD - gastro-oesophageal reflux disease"]),
    ("37796009", "64572001", "disorder", "Migraine", []),
    ("24700007", "64572001", "disorder", "Multiple sclerosis", []),
    ("49049000", "64572001", "disorder", "Parkinson's disease", []),
    ("9014002", "64572001", "disorder", "Psoriasis", []),
    ("24079001", "64572001", "disorder", "Atopic dermatitis", ["Atopic eczema"]),
    ("68566005", "64572001", "disorder", "Urinary tract infectious disease", ["Urinary tract infection", "UTI - urinary tract infection"]),
    ("233604007", "64572001", "disorder", "Pneumonia", []),
    ("6142004", "64572001", "disorder", "Influenza", ["Flu"]),
    ("840539006", "64572001", "disorder", "COVID-19", ["Disease caused by severe acute respiratory syndrome coronavirus 2"]),
    ("271737000", "64572001", "disorder", "Anaemia", ["Anemia"]),
    ("87522002", "271737000", "disorder", "Iron deficiency anaemia", ["Iron deficiency anemia"]),
    ("65363002", "64572001", "disorder", "Otitis media", []),
    ("59282003", "64572001", "disorder", "Pulmonary embolism", []),
    ("203082005", "64572001", "disorder", "Fibromyalgia", []),
    # Symptoms.
    ("279039007", "404684003", "finding", "Low back pain", []),
    ("161891005", "404684003", "finding", "Backache", ["Back pain"]),
    ("25064002", "404684003", "finding", "Headache", []),
    ("49727002", "404684003", "finding", "Cough", []),
    ("386661006", "404684003", "finding", "Fever", ["Pyrexia"]),
    ("267036007", "404684003", "finding", "Dyspnoea", ["Dyspnea", "Breathlessness", "Shortness of breath"]),
    ("29857009", "404684003", "finding", "Chest pain", []),
    ("21522001", "404684003", "finding", "Abdominal pain", []),
    ("422587007", "404684003", "finding", "Nausea", []),
    ("422400008", "404684003", "finding", "Vomiting", []),
    ("62315008", "404684003", "finding", "Diarrhoea", ["Diarrhea"]),
    ("14760008", "404684003", "finding", "Constipation", []),
    ("84229001", "404684003", "finding", "Fatigue", ["Tiredness"]),
    ("404640003", "404684003", "finding", "Dizziness", []),
    ("271807003", "404684003", "finding", "Eruption of skin", ["Rash"]),
    ("57676002", "404684003", "finding", "Joint pain", ["Arthralgia"]),
    ("68962001", "404684003", "finding", "Muscle pain", ["Myalgia"]),
    ("162397003", "404684003", "finding", "Pain in throat", ["Sore throat"]),
    ("193462001", "404684003", "finding", "Insomnia", []),
    ("301354004", "404684003", "finding", "Pain of ear", ["Earache"]),
    # Smoking and alcohol.
    ("365981007", "404684003", "finding", "Tobacco smoking behaviour - finding", ["Tobacco smoking behavior - finding"]),
    ("77176002", "365981007", "finding", "Smoker", ["Current smoker"]),
    ("8517006", "365981007", "finding", "Ex-smoker", ["Former smoker"]),
    ("266919005", "365981007", "finding", "Never smoked tobacco", ["Non-smoker"]),
    # Observables.
    ("75367002", "363787002", "observable entity", "Blood pressure", ["BP - blood pressure"]),
    ("271649006", "75367002", "observable entity", "Systolic blood pressure", ["SBP - systolic blood pressure"]),
    ("271650006", "75367002", "observable entity", "Diastolic blood pressure", ["DBP - diastolic blood pressure"]),
    ("72313002", "75367002", "observable entity", "Systolic arterial pressure", []),
    ("60621009", "363787002", "observable entity", "Body mass index", ["BMI - body mass index", "Quetelet index"]),
    ("27113001", "363787002", "observable entity", "Body weight", ["Weight"]),
    ("50373000", "363787002", "observable entity", "Body height measure", ["Height"]),
    ("444981005", "363787002", "observable entity", "Resting heart rate", []),
    ("364075005", "363787002", "observable entity", "Heart rate", ["Pulse rate"]),
    ("86290005", "363787002", "observable entity", "Respiratory rate", []),
    ("276885007", "363787002", "observable entity", "Core body temperature", []),
    # Measurement procedures.
    ("43396009", "71388002", "procedure", "Haemoglobin A1c measurement", ["Hemoglobin A1c measurement", "HbA1c measurement", "Glycated haemoglobin measurement"]),
    ("77068002", "71388002", "procedure", "Cholesterol measurement", ["Serum cholesterol measurement"]),
    ("46973005", "71388002", "procedure", "Blood pressure taking", ["Blood pressure measurement"]),
    ("29303009", "71388002", "procedure", "Electrocardiographic procedure", ["ECG - electrocardiography"]),
    ("73761001", "71388002", "procedure", "Colonoscopy", []),
    ("33879002", "71388002", "procedure", "Administration of vaccine to produce active immunity", ["Vaccination", "Immunisation"]),
    # Allergies and allergens.
    ("609328004", "404684003", "finding", "Allergic disposition", ["Allergy"]),
    ("91936005", "609328004", "finding", "Allergy to penicillin", ["Penicillin allergy"]),
    ("300916003", "609328004", "finding", "Latex allergy", []),
    ("91935009", "609328004", "finding", "Allergy to peanuts", ["Peanut allergy"]),
    ("716186003", "243796009", "situation", "No known allergy", ["NKA - no known allergy"]),
    ("409137002", "243796009", "situation", "No known drug allergy", ["NKDA - no known drug allergy"]),
    ("372687004", "105590001", "substance", "Amoxicillin", []),
    ("764146007", "105590001", "substance", "Penicillin", []),
    ("762952008", "105590001", "substance", "Peanut", []),
    ("111088007", "105590001", "substance", "Latex", []),
    ("387517004", "105590001", "substance", "Paracetamol", ["Acetaminophen"]),
    ("387207008", "105590001", "substance", "Ibuprofen", []),
    ("387458008", "105590001", "substance", "Aspirin", []),
    # GP Connect list codes (terms: the GP Connect list titles).
    ("886921000000105", "419891008", "record artifact", "Allergies and adverse reactions", []),
    ("1103671000000101", "419891008", "record artifact", "Ended allergies", []),
    ("1149501000000101", "419891008", "record artifact", "Consultations", []),
    ("714311000000108", "419891008", "record artifact", "Diary entries", []),
    ("1102181000000102", "419891008", "record artifact", "Immunisations", []),
    ("887191000000108", "419891008", "record artifact", "Investigations and results", []),
    ("933361000000108", "419891008", "record artifact", "Medications and medical devices", []),
    ("792931000000107", "419891008", "record artifact", "Outbound referral", []),
    ("717711000000103", "419891008", "record artifact", "Problems", []),
    ("826501000000100", "419891008", "record artifact", "Miscellaneous record", []),
]

# A project simple refset: the GP Connect list codes (id minted in the
# project's range, see README; not a real refset).
def verhoeff(num):
    d = [[0,1,2,3,4,5,6,7,8,9],[1,2,3,4,0,6,7,8,9,5],[2,3,4,0,1,7,8,9,5,6],[3,4,0,1,2,8,9,5,6,7],[4,0,1,2,3,9,5,6,7,8],[5,9,8,7,6,0,4,3,2,1],[6,5,9,8,7,1,0,4,3,2],[7,6,5,9,8,2,1,0,4,3],[8,7,6,5,9,3,2,1,0,4],[9,8,7,6,5,4,3,2,1,0]]
    p1 = [1,5,7,6,2,8,3,0,9,4]
    p = [list(range(10))]
    for i in range(1, 8):
        p.append([p[i-1][p1[j]] for j in range(10)])
    inv = [0,4,3,2,1,5,6,7,8,9]
    c = 0
    for i, ch in enumerate(reversed(num)):
        c = d[c][p[(i + 1) % 8][int(ch)]]
    return num + str(inv[c])

NAMESPACE = "9999999"  # project-assigned ids; not an allocated namespace
def mint(item, partition):
    return verhoeff(str(item) + NAMESPACE + partition)

GP_LISTS_REFSET = mint(1, "10")

def snomed_codings():
    """(id, display) pairs from the Synthea bundles and UK Core examples."""
    out = {}
    def walk(x):
        if isinstance(x, dict):
            if x.get("system") == "http://snomed.info/sct" and x.get("code") and x.get("display"):
                out.setdefault(x["code"], x["display"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    for f in sorted(glob.glob(os.path.join(SHARED, "synthea", "*.json.gz"))):
        walk(json.load(gzip.open(f)))
    for f in sorted(glob.glob(os.path.join(SHARED, "ukcore", "*.json"))):
        walk(json.load(open(f)))
    return out

def main():
    # concept id -> dict(fsn, pt, syns, parents, source)
    concepts = {}
    for cid, (fsn, pt, parent) in TOP.items():
        concepts[cid] = dict(fsn=fsn, pt=pt, syns=[], parents=[parent] if parent else [], source="top")
    for cid, parent, tag, pt, syns in CURATED:
        concepts[cid] = dict(fsn="%s (%s)" % (pt, tag), pt=pt, syns=list(syns), parents=[parent], source="curated")
    for cid, display in sorted(snomed_codings().items()):
        if not display.endswith(")") or " (" not in display:
            continue
        tag = display[display.rfind("(") + 1:-1]
        if cid in concepts:
            # A curated concept: the data's FSN beats one formed from the term.
            if concepts[cid]["source"] == "curated" and tag in TAG_PARENT:
                concepts[cid]["fsn"] = display
            continue
        if tag not in TAG_PARENT:
            continue
        concepts[cid] = dict(fsn=display, pt=display[:display.rfind(" (")], syns=[], parents=[TAG_PARENT[tag]], source="data")
    bundle = json.load(open(os.path.join(R4, "Bundle-valueset-expansions.json")))
    for url, parent, limit in VALUESETS:
        vs = next(e["resource"] for e in bundle["entry"] if e["resource"].get("url") == url)
        taken = 0
        for c in vs["expansion"]["contains"]:
            if taken >= limit:
                break
            cid, display = c.get("code"), c.get("display")
            if c.get("system") != "http://snomed.info/sct" or not display or cid in concepts:
                continue
            concepts[cid] = dict(fsn=None, pt=display, syns=[], parents=[parent], source="r4")
            taken += 1
    concepts[GP_LISTS_REFSET] = dict(fsn="OpenGP GP Connect list codes simple reference set (foundation metadata concept)", pt="OpenGP GP Connect list codes simple reference set", syns=[], parents=["900000000000441003"], source="project")

    out = os.path.join(ROOT, "snomed")
    os.makedirs(out, exist_ok=True)
    files = {
        "c": open(os.path.join(out, "sct2_Concept_Snapshot_OPENGP_%s.txt" % DATE), "w", newline=""),
        "d": open(os.path.join(out, "sct2_Description_Snapshot-en_OPENGP_%s.txt" % DATE), "w", newline=""),
        "r": open(os.path.join(out, "sct2_Relationship_Snapshot_OPENGP_%s.txt" % DATE), "w", newline=""),
        "l": open(os.path.join(out, "der2_cRefset_LanguageSnapshot-en_OPENGP_%s.txt" % DATE), "w", newline=""),
        "s": open(os.path.join(out, "der2_Refset_SimpleSnapshot_OPENGP_%s.txt" % DATE), "w", newline=""),
    }
    def line(k, *cols):
        files[k].write("\t".join(cols) + "\r\n")
    line("c", "id", "effectiveTime", "active", "moduleId", "definitionStatusId")
    line("d", "id", "effectiveTime", "active", "moduleId", "conceptId", "languageCode", "typeId", "term", "caseSignificanceId")
    line("r", "id", "effectiveTime", "active", "moduleId", "sourceId", "destinationId", "relationshipGroup", "typeId", "characteristicTypeId", "modifierId")
    line("l", "id", "effectiveTime", "active", "moduleId", "refsetId", "referencedComponentId", "acceptabilityId")
    line("s", "id", "effectiveTime", "active", "moduleId", "refsetId", "referencedComponentId")
    item = [100]
    def nid(part):
        item[0] += 1
        return mint(item[0], part)
    def uuid():
        item[0] += 1
        h = "%032x" % (item[0] * 0x9E3779B97F4A7C15 % (1 << 128))
        return "%s-%s-4%s-8%s-%s" % (h[:8], h[8:12], h[13:16], h[17:20], h[20:32])
    def describe(cid, type_id, term, acc):
        did = nid("11")
        line("d", did, DATE, "1", CORE, cid, "en", type_id, term, "900000000000448009")
        line("l", uuid(), DATE, "1", CORE, GB, did, acc)
    for cid in sorted(concepts, key=int):
        c = concepts[cid]
        line("c", cid, DATE, "1", CORE, "900000000000074008")
        if c["fsn"]:
            describe(cid, FSN, c["fsn"], PREF)
        describe(cid, SYN, c["pt"], PREF)
        for s in c["syns"]:
            describe(cid, SYN, s, ACC)
        for p in c["parents"]:
            if p in concepts:
                line("r", nid("12"), DATE, "1", CORE, cid, p, "0", ISA, "900000000000011006", "900000000000451002")
    for cid, _, _, _, _ in CURATED:
        if concepts[cid]["parents"] == ["419891008"]:
            line("s", uuid(), DATE, "1", CORE, GP_LISTS_REFSET, cid)
    for f in files.values():
        f.close()
    counts = {}
    for c in concepts.values():
        counts[c["source"]] = counts.get(c["source"], 0) + 1
    sys.stderr.write("concepts: %d %s\n" % (len(concepts), counts))

if __name__ == "__main__":
    main()
