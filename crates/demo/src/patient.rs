//! One registered patient's record: demographics, problems, consultations
//! with the observations they recorded, repeat medicines, allergies,
//! immunisations and letters.

use rand::Rng;
use serde_json::{Value, json};
use time::{Date, Month};

use crate::Options;
use crate::codes::{self, CHRONIC, Chronic, Concept, DMD};
use crate::fhir::{
    add_days, base64, coded, date, datetime, day_in, normal, one_dp, quantity, reference, sct,
};
use crate::people::{self, pick};
use crate::practice::{self, Kind, ORG, StaffMember};

pub fn patient_id(i: u32) -> String {
    format!("pat-{i:06}")
}

/// What stays true of a patient across their consultations.
struct Profile {
    age: u32,
    female: bool,
    birth: Date,
    /// Their problems, with onset dates.
    chronic: Vec<(&'static Chronic, Date)>,
    height_cm: f64,
    bmi: f64,
    systolic: f64,
    hba1c: f64,
    cholesterol: f64,
    smoking: Concept,
    usual_gp: &'static StaffMember,
}

/// Numbers the resources of one patient.
struct Ids {
    patient: String,
    n: u32,
}

impl Ids {
    fn next(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!("{prefix}-{}-{}", &self.patient[4..], self.n)
    }
}

pub fn generate(opts: &Options, scale: &[f64], i: u32, rng: &mut impl Rng) -> Vec<Value> {
    let today = opts.today;
    let age = people::age(rng);
    let female = people::female(rng, age);
    let who = people::person(rng, female);
    let birth = add_days(
        today,
        -(i64::from(age) * 365 + i64::from(age / 4) + rng.random_range(0..365)),
    );
    // Registered at birth or up to 25 years ago.
    let registered = day_in(
        rng,
        birth.max(add_days(today, -25 * 365)),
        add_days(today, -1),
    );
    let history = add_days(today, -(i64::from(opts.years) * 365)).max(registered);
    let gps: Vec<&'static StaffMember> = practice::of_kind(Kind::Gp).collect();
    let mut p = Profile {
        age,
        female,
        birth,
        chronic: Vec::new(),
        height_cm: normal(rng, if female { 162.0 } else { 176.0 }, 7.0),
        bmi: normal(rng, 27.0, 4.5).max(16.0),
        systolic: 112.0 + 0.45 * f64::from(age.saturating_sub(20)),
        hba1c: normal(rng, 37.0, 3.0),
        cholesterol: normal(rng, 5.0, 0.9).max(2.8),
        smoking: codes::NEVER_SMOKED,
        usual_gp: pick(rng, &gps),
    };
    for (c, k) in CHRONIC.iter().zip(scale) {
        if age < c.min_age {
            continue;
        }
        let chance = (k * c.by_age[people::coarse(age)]).min(0.95);
        if rng.random_bool(chance) {
            let earliest =
                add_days(birth, i64::from(c.min_age) * 365).max(add_days(today, -30 * 365));
            let onset = day_in(rng, earliest, add_days(today, -30));
            p.chronic.push((c, onset));
        }
    }
    if p.has("38341003") {
        p.systolic += 16.0;
    }
    if p.chronic.iter().any(|(c, _)| codes::is_diabetes(c)) {
        p.hba1c = normal(rng, 58.0, 9.0).max(45.0);
        p.bmi += 3.0;
    }
    if age >= 16 {
        p.smoking = match rng.random_range(0..100) {
            0..=12 => codes::SMOKER,
            13..=37 => codes::EX_SMOKER,
            _ => codes::NEVER_SMOKED,
        };
    }
    if age < 18 {
        p.bmi = normal(rng, 18.0, 2.5).max(13.0);
        p.height_cm = (75.0 + 6.0 * f64::from(age)).min(p.height_cm);
    }

    let mut ids = Ids {
        patient: patient_id(i),
        n: 0,
    };
    let mut out = vec![patient_resource(&ids.patient, i, &who, &p, registered)];
    for (c, onset) in &p.chronic {
        let id = ids.next("cond");
        out.push(condition(
            &id,
            &ids.patient,
            c.concept,
            *onset,
            None,
            p.usual_gp,
        ));
    }
    allergies(rng, &mut ids, &p, registered, &mut out);
    consultations(rng, opts, &mut ids, &p, registered, history, &mut out);
    medicines(rng, opts, &mut ids, &p, &mut out);
    immunisations(rng, opts, &mut ids, &p, history, &mut out);
    letters(rng, opts, &mut ids, &p, history, &mut out);
    out
}

impl Profile {
    fn has(&self, code: &str) -> bool {
        self.chronic.iter().any(|(c, _)| c.concept.0 == code)
    }
}

fn patient_resource(
    id: &str,
    i: u32,
    who: &people::Person,
    p: &Profile,
    registered: Date,
) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "identifier": [{ "system": "https://fhir.nhs.uk/Id/nhs-number", "value": people::nhs_number(i) }],
        "active": true,
        "name": [{ "use": "official", "family": who.family, "given": [who.given], "prefix": [prefix(p)] }],
        // Ofcom's range for drama: never a real number.
        "telecom": [{ "system": "phone", "value": format!("07700 900{:03}", i % 1000), "use": "mobile" }],
        "gender": if who.female { "female" } else { "male" },
        "birthDate": date(p.birth),
        "address": [{
            "use": "home",
            "line": [who.line],
            "city": people::TOWN,
            "postalCode": who.postcode,
            "country": "GB",
            "period": { "start": date(registered) }
        }],
        "generalPractitioner": [reference("Practitioner", p.usual_gp.id)],
        "managingOrganization": reference("Organization", ORG)
    })
}

fn prefix(p: &Profile) -> &'static str {
    match (p.female, p.age) {
        (_, 0..=15) => {
            if p.female {
                "Miss"
            } else {
                "Master"
            }
        }
        (true, _) => "Ms",
        (false, _) => "Mr",
    }
}

fn condition(
    id: &str,
    patient: &str,
    code: Concept,
    onset: Date,
    resolved: Option<(Date, &str)>,
    by: &StaffMember,
) -> Value {
    let status = if resolved.is_some() {
        "resolved"
    } else {
        "active"
    };
    let mut c = json!({
        "resourceType": "Condition",
        "id": id,
        "clinicalStatus": coded("http://terminology.hl7.org/CodeSystem/condition-clinical", status, status),
        "verificationStatus": coded("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
        "category": [coded("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")],
        "code": sct(code),
        "subject": reference("Patient", patient),
        "onsetDateTime": date(onset),
        "recordedDate": date(onset),
        "recorder": reference("Practitioner", by.id)
    });
    if let Some((end, encounter)) = resolved {
        c["category"] = json!([coded(
            "http://terminology.hl7.org/CodeSystem/condition-category",
            "encounter-diagnosis",
            "Encounter Diagnosis"
        )]);
        c["abatementDateTime"] = json!(date(end));
        c["encounter"] = reference("Encounter", encounter);
    }
    c
}

fn allergies(
    rng: &mut impl Rng,
    ids: &mut Ids,
    p: &Profile,
    registered: Date,
    out: &mut Vec<Value>,
) {
    let mut any = false;
    for (code, category, share) in codes::ALLERGIES {
        if rng.random_bool(*share) {
            any = true;
            let id = ids.next("alg");
            out.push(json!({
                "resourceType": "AllergyIntolerance",
                "id": id,
                "clinicalStatus": coded("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
                "verificationStatus": coded("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"),
                "type": "allergy",
                "category": [category],
                "criticality": if *category == "food" { "high" } else { "low" },
                "code": sct(*code),
                "patient": reference("Patient", &ids.patient),
                "recordedDate": date(day_in(rng, registered.max(p.birth), add_days(registered, 365))),
                "recorder": reference("Practitioner", p.usual_gp.id),
                "reaction": [{ "manifestation": [sct(codes::RASH)] }]
            }));
        }
    }
    if !any && p.age >= 18 && rng.random_bool(0.4) {
        let id = ids.next("alg");
        out.push(json!({
            "resourceType": "AllergyIntolerance",
            "id": id,
            "clinicalStatus": coded("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
            "verificationStatus": coded("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"),
            "code": sct(codes::NKDA),
            "patient": reference("Patient", &ids.patient),
            "recordedDate": date(registered),
            "recorder": reference("Practitioner", p.usual_gp.id)
        }));
    }
}

/// Consultations: a new-patient check at registration, chronic disease
/// reviews at their interval, and consultations about acute problems.
fn consultations(
    rng: &mut impl Rng,
    opts: &Options,
    ids: &mut Ids,
    p: &Profile,
    registered: Date,
    history: Date,
    out: &mut Vec<Value>,
) {
    let today = opts.today;
    let last = add_days(today, -1);
    let nurses: Vec<&'static StaffMember> = practice::of_kind(Kind::Nurse).collect();
    let gps: Vec<&'static StaffMember> = practice::of_kind(Kind::Gp).collect();
    if registered >= history && p.age >= 16 {
        let by = pick(rng, &nurses);
        let enc = encounter(rng, ids, registered, by, codes::ENC_NEW_PATIENT, None, out);
        measure_basics(rng, ids, p, &enc, registered, by, out);
    }
    // Reviews: each problem's reviews at its interval, from its onset or
    // the start of the history, whichever is later.
    for (c, onset) in &p.chronic {
        let every = 365 / i64::from(c.reviews.max(1));
        let mut day = add_days((*onset).max(history), rng.random_range(14..every.max(15)));
        while day <= last {
            let by = if rng.random_bool(0.7) {
                pick(rng, &nurses)
            } else {
                p.usual_gp
            };
            let enc = encounter(
                rng,
                ids,
                day,
                by,
                codes::ENC_FOLLOW_UP,
                Some(c.concept),
                out,
            );
            review_observations(rng, ids, p, c, &enc, day, by, out);
            day = add_days(day, every + rng.random_range(-30..30));
        }
    }
    // Acute consultations, more for the very young and the old.
    let years = crate::fhir::days_between(history, today) as f64 / 365.0;
    let rate = match p.age {
        0..=4 => 3.0,
        5..=44 => 1.5,
        45..=64 => 2.0,
        _ => 3.0,
    } + 0.5 * p.chronic.len() as f64;
    let count = (rate * years * (0.5 + rng.random::<f64>())) as u32;
    for _ in 0..count {
        let day = day_in(rng, history, last);
        let by = if rng.random_bool(0.8) {
            pick(rng, &gps)
        } else {
            p.usual_gp
        };
        let problem = pick(rng, codes::ACUTE);
        let enc = encounter(rng, ids, day, by, codes::ENC_SYMPTOM, Some(problem), out);
        let id = ids.next("cond");
        out.push(condition(
            &id,
            &ids.patient,
            problem,
            day,
            Some((add_days(day, rng.random_range(3..28)), &enc)),
            by,
        ));
        if p.age >= 18 && rng.random_bool(0.3) {
            out.push(blood_pressure(rng, ids, p, &enc, day, by));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn encounter(
    rng: &mut impl Rng,
    ids: &mut Ids,
    day: Date,
    by: &StaffMember,
    kind: Concept,
    reason: Option<Concept>,
    out: &mut Vec<Value>,
) -> String {
    let id = ids.next("enc");
    let start = 8 * 60 + 30 + 10 * rng.random_range(0..54u32);
    let length = if by.kind == Kind::Gp { 10 } else { 15 };
    let mut e = json!({
        "resourceType": "Encounter",
        "id": id,
        "status": "finished",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory" },
        "type": [sct(kind)],
        "subject": reference("Patient", &ids.patient),
        "participant": [{
            "type": [coded("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")],
            "individual": reference("Practitioner", by.id)
        }],
        "period": { "start": datetime(day, start), "end": datetime(day, start + length) },
        "location": [{ "location": reference("Location", by.room) }],
        "serviceProvider": reference("Organization", ORG)
    });
    if let Some(r) = reason {
        e["reasonCode"] = json!([sct(r)]);
    }
    out.push(e);
    id
}

/// An Observation with its common elements.
#[allow(clippy::too_many_arguments)]
fn observation(
    id: &str,
    patient: &str,
    encounter: &str,
    category: &str,
    code: Concept,
    day: Date,
    by: &StaffMember,
) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [coded("http://terminology.hl7.org/CodeSystem/observation-category", category, category)],
        "code": sct(code),
        "subject": reference("Patient", patient),
        "encounter": reference("Encounter", encounter),
        "effectiveDateTime": date(day),
        "performer": [reference("Practitioner", by.id)]
    })
}

fn blood_pressure(
    rng: &mut impl Rng,
    ids: &mut Ids,
    p: &Profile,
    enc: &str,
    day: Date,
    by: &StaffMember,
) -> Value {
    let id = ids.next("obs");
    let sys = normal(rng, p.systolic, 10.0).round().clamp(85.0, 210.0) as u32;
    let dia = normal(rng, 0.55 * f64::from(sys) + 8.0, 6.0)
        .round()
        .clamp(45.0, 130.0) as u32;
    let mut o = observation(&id, &ids.patient, enc, "vital-signs", codes::BP, day, by);
    o["component"] = json!([
        { "code": sct(codes::SYSTOLIC), "valueQuantity": quantity(json!(sys), "mmHg", "mm[Hg]") },
        { "code": sct(codes::DIASTOLIC), "valueQuantity": quantity(json!(dia), "mmHg", "mm[Hg]") }
    ]);
    o
}

fn simple(
    ids: &mut Ids,
    enc: &str,
    category: &str,
    code: Concept,
    day: Date,
    by: &StaffMember,
    value: Value,
) -> Value {
    let id = ids.next("obs");
    let mut o = observation(&id, &ids.patient, enc, category, code, day, by);
    o["valueQuantity"] = value;
    o
}

/// Height, weight, BMI, blood pressure and smoking status.
fn measure_basics(
    rng: &mut impl Rng,
    ids: &mut Ids,
    p: &Profile,
    enc: &str,
    day: Date,
    by: &StaffMember,
    out: &mut Vec<Value>,
) {
    let height = p.height_cm;
    out.push(simple(
        ids,
        enc,
        "vital-signs",
        codes::HEIGHT,
        day,
        by,
        quantity(one_dp(height), "cm", "cm"),
    ));
    weight_and_bmi(rng, ids, p, enc, day, by, out);
    out.push(blood_pressure(rng, ids, p, enc, day, by));
    out.push(smoking(ids, p, enc, day, by));
}

fn weight_and_bmi(
    rng: &mut impl Rng,
    ids: &mut Ids,
    p: &Profile,
    enc: &str,
    day: Date,
    by: &StaffMember,
    out: &mut Vec<Value>,
) {
    let bmi = normal(rng, p.bmi, 0.8).max(12.0);
    let metres = p.height_cm / 100.0;
    let weight = bmi * metres * metres;
    out.push(simple(
        ids,
        enc,
        "vital-signs",
        codes::WEIGHT,
        day,
        by,
        quantity(one_dp(weight), "kg", "kg"),
    ));
    out.push(simple(
        ids,
        enc,
        "vital-signs",
        codes::BMI,
        day,
        by,
        quantity(one_dp(bmi), "kg/m2", "kg/m2"),
    ));
}

fn smoking(ids: &mut Ids, p: &Profile, enc: &str, day: Date, by: &StaffMember) -> Value {
    let id = ids.next("obs");
    let mut o = observation(
        &id,
        &ids.patient,
        enc,
        "social-history",
        codes::SMOKING,
        day,
        by,
    );
    o["valueCodeableConcept"] = sct(p.smoking);
    o
}

/// What a review of `c` records.
#[allow(clippy::too_many_arguments)]
fn review_observations(
    rng: &mut impl Rng,
    ids: &mut Ids,
    p: &Profile,
    c: &Chronic,
    enc: &str,
    day: Date,
    by: &StaffMember,
    out: &mut Vec<Value>,
) {
    let code = c.concept.0;
    let cardiovascular = matches!(
        code,
        "38341003" | "414545008" | "49436004" | "84114007" | "709044004"
    );
    if codes::is_diabetes(c) || cardiovascular || p.age >= 40 {
        out.push(blood_pressure(rng, ids, p, enc, day, by));
    }
    if codes::is_diabetes(c) {
        let v = normal(rng, p.hba1c, 5.0).clamp(30.0, 130.0).round();
        out.push(simple(
            ids,
            enc,
            "laboratory",
            codes::HBA1C,
            day,
            by,
            quantity(json!(v as u32), "mmol/mol", "mmol/mol"),
        ));
        weight_and_bmi(rng, ids, p, enc, day, by, out);
    }
    if codes::is_diabetes(c) || matches!(code, "414545008" | "709044004") {
        let v = normal(rng, p.cholesterol, 0.4).max(2.0);
        out.push(simple(
            ids,
            enc,
            "laboratory",
            codes::CHOLESTEROL,
            day,
            by,
            quantity(one_dp(v), "mmol/L", "mmol/L"),
        ));
    }
    if matches!(code, "49436004" | "84114007") {
        let v = normal(rng, if code == "49436004" { 82.0 } else { 74.0 }, 12.0).round() as u32;
        out.push(simple(
            ids,
            enc,
            "vital-signs",
            codes::HEART_RATE,
            day,
            by,
            quantity(json!(v), "beats/minute", "/min"),
        ));
    }
    if matches!(code, "195967001" | "13645005") && p.age >= 16 {
        out.push(smoking(ids, p, enc, day, by));
    }
}

/// The current issue of each repeat medicine (intent `order`, continuous
/// therapy), authorised until its review date.
fn medicines(rng: &mut impl Rng, opts: &Options, ids: &mut Ids, p: &Profile, out: &mut Vec<Value>) {
    for (c, onset) in &p.chronic {
        for (_, m) in codes::REPEATS
            .iter()
            .filter(|(cond, _)| *cond == c.concept.0)
        {
            // Not every patient on a register takes its usual medicine.
            if !rng.random_bool(0.8) {
                continue;
            }
            let issued = add_days(opts.today, -rng.random_range(0..28));
            let review = add_days(opts.today, rng.random_range(7..330));
            let id = ids.next("med");
            out.push(json!({
                "resourceType": "MedicationRequest",
                "id": id,
                "status": "active",
                "intent": "order",
                "category": [coded("http://terminology.hl7.org/CodeSystem/medicationrequest-category", "community", "Community")],
                "medicationCodeableConcept": {
                    "coding": [{ "system": DMD, "code": m.vmp, "display": m.name }],
                    "text": m.name
                },
                "subject": reference("Patient", &ids.patient),
                "authoredOn": date(issued),
                "requester": reference("Practitioner", p.usual_gp.id),
                "reasonCode": [sct(c.concept)],
                "courseOfTherapyType": coded("http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy", "continuous", "Continuous long term therapy"),
                "note": [{ "text": format!("Repeat; medication review due {}", date(review)) }],
                "dosageInstruction": [{ "text": m.dose }],
                "dispenseRequest": {
                    "validityPeriod": { "start": date((*onset).max(add_days(opts.today, -365))), "end": date(review) },
                    "numberOfRepeatsAllowed": 6,
                    "quantity": { "value": m.quantity, "unit": m.unit },
                    "expectedSupplyDuration": quantity(json!(28), "days", "d")
                }
            }));
        }
    }
}

/// Flu vaccination each autumn for those 65 and over or with a chronic
/// problem, COVID-19 boosters for those 75 and over, and the infant
/// primary course at 8, 12 and 16 weeks.
fn immunisations(
    rng: &mut impl Rng,
    opts: &Options,
    ids: &mut Ids,
    p: &Profile,
    history: Date,
    out: &mut Vec<Value>,
) {
    let nurses: Vec<&'static StaffMember> = practice::of_kind(Kind::Nurse).collect();
    let mut give = |rng: &mut dyn FnMut() -> u32,
                    ids: &mut Ids,
                    vaccine: (&str, &str),
                    day: Date| {
        let nurse = nurses[rng() as usize % nurses.len().max(1)];
        let id = ids.next("imm");
        out.push(json!({
            "resourceType": "Immunization",
            "id": id,
            "status": "completed",
            "vaccineCode": { "coding": [{ "system": DMD, "code": vaccine.0, "display": vaccine.1 }] },
            "patient": reference("Patient", &ids.patient),
            "occurrenceDateTime": date(day),
            "primarySource": true,
            "lotNumber": format!("DEMO{:05}", rng() % 100_000),
            "performer": [{ "actor": reference("Practitioner", nurse.id) }]
        }));
    };
    let mut draw = || rng.random::<u32>();
    let flu = p.age >= 65 || !p.chronic.is_empty();
    for year in history.year()..=opts.today.year() {
        let Ok(autumn) = Date::from_calendar_date(year, Month::October, 1) else {
            continue;
        };
        let day = add_days(autumn, i64::from(draw() % 60));
        if day < history || day >= opts.today || day < p.birth {
            continue;
        }
        if flu && draw() % 100 < 75 {
            give(&mut draw, ids, codes::FLU_VACCINE, day);
        }
        if p.age >= 75 && year >= 2021 && draw() % 100 < 70 {
            give(&mut draw, ids, codes::COVID_VACCINE, add_days(day, 7));
        }
    }
    for weeks in [8, 12, 16] {
        let day = add_days(p.birth, weeks * 7 + i64::from(draw() % 10));
        if day >= history && day < opts.today {
            give(&mut draw, ids, codes::INFANT_VACCINE, day);
        }
    }
}

/// Letters from hospital: clinic letters for some with chronic problems,
/// the odd discharge summary.
fn letters(
    rng: &mut impl Rng,
    opts: &Options,
    ids: &mut Ids,
    p: &Profile,
    history: Date,
    out: &mut Vec<Value>,
) {
    let count = match p.chronic.len() {
        0 => u32::from(rng.random_bool(0.15)),
        n => rng.random_range(0..=(n as u32).min(3)),
    };
    for _ in 0..count {
        let day = day_in(rng, history, add_days(opts.today, -1));
        let (kind, from, body) = if rng.random_bool(0.8) {
            let about = p
                .chronic
                .first()
                .map(|(c, _)| c.concept.1)
                .unwrap_or("your recent symptoms");
            (
                "Outpatient clinic letter",
                "Leeds Teaching Hospitals NHS Trust",
                format!(
                    "Dear Dr {},\n\nI reviewed this patient in clinic on {} regarding {}. Plan: continue current management; no change to medication. Please review in primary care as usual.\n\nYours sincerely,\nConsultant, Leeds Teaching Hospitals NHS Trust\n",
                    p.usual_gp.family,
                    date(day),
                    about
                ),
            )
        } else {
            (
                "Discharge summary",
                "Leeds Teaching Hospitals NHS Trust",
                format!(
                    "Discharge summary\n\nAdmitted {} and discharged {}. Diagnosis on discharge: community-acquired infection, treated. Medication changes: none. GP actions: none.\n",
                    date(add_days(day, -3)),
                    date(day)
                ),
            )
        };
        let id = ids.next("doc");
        out.push(json!({
            "resourceType": "DocumentReference",
            "id": id,
            "status": "current",
            "type": { "text": kind },
            "subject": reference("Patient", &ids.patient),
            "date": format!("{}T10:00:00Z", date(day)),
            "author": [{ "display": from }],
            "custodian": reference("Organization", ORG),
            "description": kind,
            "content": [{ "attachment": {
                "contentType": "text/plain",
                "language": "en-GB",
                "data": base64(body.as_bytes()),
                "title": kind,
                "creation": date(day)
            } }]
        }));
    }
}
