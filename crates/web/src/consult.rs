//! A consultation: free text (history, examination, plan) and coded
//! entries (a problem, a blood pressure, an observation with its value, a
//! procedure) chosen with SNOMED CT typeahead, filed as one encounter in
//! one transaction.

use std::sync::{Arc, Mutex};

use axum::Form;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect};
use gp_terminology::{ConceptSet, Index, TermQuery};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fhir::{self, SCT, concept, patient_name};
use crate::record::{PROBLEM_SIGNIFICANCE, banner, banner_data, patient_nav};
use crate::session::Web;
use crate::ui::{Page, WebError, error_summary, field_error, ok, page};

/// The kinds of consultation a GP records.
const CONSULTATION_TYPES: &[(&str, &str)] = &[
    ("185347001", "Encounter for problem"),
    ("185345009", "Encounter for symptom"),
    ("390906007", "Follow-up encounter"),
    ("185349003", "Encounter for check up"),
];

/// The coded slots of the form and the part of SNOMED CT each draws from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    Problem,
    Observation,
    Procedure,
    Allergy,
}

impl Slot {
    fn parse(s: &str) -> Option<Slot> {
        match s {
            "problem" => Some(Slot::Problem),
            "observation" => Some(Slot::Observation),
            "procedure" => Some(Slot::Procedure),
            "allergy" => Some(Slot::Allergy),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Slot::Problem => "problem",
            Slot::Observation => "observation",
            Slot::Procedure => "procedure",
            Slot::Allergy => "allergy",
        }
    }

    /// Findings, situations and events; observables and evaluations;
    /// procedures; allergic dispositions.
    fn ecl(self) -> &'static str {
        match self {
            Slot::Allergy => "<< 609328004",
            Slot::Problem => "<< 404684003 OR << 243796009 OR << 272379006",
            Slot::Observation => "<< 363787002 OR << 386053000",
            Slot::Procedure => "<< 71388002",
        }
    }
}

/// The concept sets of the slots for the index in use, computed once per
/// index (a new release loaded gives a new index).
fn slot_set(index: &Arc<Index>, slot: Slot) -> Option<Arc<ConceptSet>> {
    type Cache = Mutex<Vec<(usize, Slot, Arc<ConceptSet>)>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = Arc::as_ptr(index) as usize;
    if let Ok(c) = cache.lock()
        && let Some((_, _, set)) = c.iter().find(|(k, s, _)| *k == key && *s == slot)
    {
        return Some(set.clone());
    }
    let set = Arc::new(index.ecl(slot.ecl()).ok().filter(|s| !s.is_empty())?);
    if let Ok(mut c) = cache.lock() {
        c.retain(|(k, _, _)| *k == key);
        c.push((key, slot, set.clone()));
    }
    Some(set)
}

#[derive(Deserialize, Default)]
pub struct SuggestQuery {
    #[serde(default)]
    slot: String,
    #[serde(default)]
    problem_text: String,
    #[serde(default)]
    observation_text: String,
    #[serde(default)]
    procedure_text: String,
    #[serde(default)]
    allergy_text: String,
}

/// `GET /app/snomed?slot=problem&problem_text=diab`: the typeahead list.
pub async fn suggest(web: Web, Query(q): Query<SuggestQuery>) -> Page {
    let Some(slot) = Slot::parse(&q.slot) else {
        return Err(WebError::BadInput("unknown coded field".into()));
    };
    let text = match slot {
        Slot::Problem => &q.problem_text,
        Slot::Observation => &q.observation_text,
        Slot::Procedure => &q.procedure_text,
        Slot::Allergy => &q.allergy_text,
    };
    let Some(loaded) = web.state.terminology.get() else {
        return ok(html! { p class="og-muted" { "No SNOMED CT release is loaded." } });
    };
    if text.trim().chars().count() < 2 {
        return ok(html! {});
    }
    let set = slot_set(&loaded.index, slot);
    let query = TermQuery {
        within: set.as_deref(),
        ..TermQuery::new(text, 10)
    };
    let hits: Vec<(u64, String)> = loaded
        .index
        .search(&query)
        .iter()
        .map(|h| (h.concept, h.preferred_term.to_owned()))
        .collect();
    ok(html! {
        @if hits.is_empty() {
            p class="og-muted" { "No SNOMED CT terms match “" (text.trim()) "”." }
        } @else {
            ul class="og-suggest" aria-label="Matching SNOMED CT terms" {
                @for (code, term) in &hits {
                    li { button type="button" data-code=(code) data-display=(term) { (term) } }
                }
            }
        }
    })
}

#[derive(Deserialize, Default, Clone)]
pub struct Consultation {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    history: String,
    #[serde(default)]
    examination: String,
    #[serde(default)]
    plan: String,
    /// An existing problem the consultation is about.
    #[serde(default)]
    about: String,
    #[serde(default)]
    problem_text: String,
    #[serde(default)]
    problem_code: String,
    #[serde(default)]
    significance: String,
    #[serde(default)]
    systolic: String,
    #[serde(default)]
    diastolic: String,
    #[serde(default)]
    observation_text: String,
    #[serde(default)]
    observation_code: String,
    #[serde(default)]
    observation_value: String,
    #[serde(default)]
    observation_unit: String,
    #[serde(default)]
    procedure_text: String,
    #[serde(default)]
    procedure_code: String,
    #[serde(default)]
    allergy_text: String,
    #[serde(default)]
    allergy_code: String,
    #[serde(default)]
    allergy_reaction: String,
}

/// `GET /app/patients/{id}/consultation`.
pub async fn form(web: Web, Path(id): Path<String>) -> Page {
    form_page(&web, &id, &Consultation::default(), &[]).await
}

fn coded_field(
    slot: Slot,
    label: &str,
    hint: &str,
    text: &str,
    code: &str,
    errors: &[(&str, String)],
) -> Markup {
    let name = slot.name();
    let text_id = format!("{name}_text");
    let code_id = format!("{name}_code");
    let box_id = format!("{name}-suggest");
    let err = field_error(errors, &text_id);
    html! {
        div class={ "nhsuk-form-group" @if err.is_some() { " nhsuk-form-group--error" } } {
            label class="nhsuk-label" for=(text_id) { (label) }
            div class="nhsuk-hint" id={ (text_id) "-hint" } { (hint) " Type at least two letters, then " kbd { "↓" } " to choose." }
            @if let Some(e) = err {
                span class="nhsuk-error-message" id={ (text_id) "-error" } { span class="nhsuk-u-visually-hidden" { "Error: " } (e) }
            }
            input class={ "nhsuk-input" @if err.is_some() { " nhsuk-input--error" } } id=(text_id) name=(text_id)
                type="text" value=(text) autocomplete="off" role="combobox" aria-expanded="false"
                aria-controls=(box_id) aria-autocomplete="list"
                aria-describedby={ (text_id) "-hint" @if err.is_some() { " " (text_id) "-error" } }
                data-suggest=(box_id) data-code-field=(code_id)
                hx-get={ "/app/snomed?slot=" (name) } hx-trigger="input changed delay:150ms"
                hx-target={ "#" (box_id) } hx-sync="this:replace";
            input type="hidden" id=(code_id) name=(code_id) value=(code);
            div id=(box_id) {}
            p class="og-muted" id={ (box_id) "-chosen" } aria-live="polite" {
                @if !code.is_empty() { "Chosen: " (text) " (SNOMED CT " (code) ")" }
            }
        }
    }
}

async fn form_page(web: &Web, id: &str, f: &Consultation, errors: &[(&str, String)]) -> Page {
    let subject = format!("Patient/{id}");
    let (b, problems) = tokio::try_join!(
        banner_data(web, id),
        web.search(
            "Condition",
            vec![
                ("patient", subject),
                ("clinical-status", "active".into()),
                ("category", "problem-list-item".into()),
                ("_count", "200".into())
            ]
        )
    )?;
    let text_area = |name: &str, label: &str, value: &str| {
        html! {
            div class="nhsuk-form-group" {
                label class="nhsuk-label nhsuk-label--s" for=(name) { (label) }
                textarea class="nhsuk-textarea" id=(name) name=(name) rows="3" { (value) }
            }
        }
    };
    let number = |name: &str, label: &str, value: &str, width: u8| {
        let err = field_error(errors, name);
        html! {
            div class={ "nhsuk-form-group" @if err.is_some() { " nhsuk-form-group--error" } } {
                label class="nhsuk-label" for=(name) { (label) }
                @if let Some(e) = err { span class="nhsuk-error-message" id={ (name) "-error" } { span class="nhsuk-u-visually-hidden" { "Error: " } (e) } }
                input class={ "nhsuk-input nhsuk-input--width-" (width) @if err.is_some() { " nhsuk-input--error" } }
                    id=(name) name=(name) type="text" inputmode="decimal" value=(value)
                    aria-describedby=[err.map(|_| format!("{name}-error"))];
            }
        }
    };
    let body = html! {
        (banner(&b))
        (patient_nav(id, "consultation"))
        (error_summary(errors))
        h1 class="nhsuk-heading-l" { "New consultation" }
        form method="post" action={ "/app/patients/" (id) "/consultation" } novalidate data-save {
            input type="hidden" name="_csrf" value=(web.csrf());
            div class="nhsuk-form-group" {
                label class="nhsuk-label nhsuk-label--s" for="kind" { "Type of consultation" }
                select class="nhsuk-select" id="kind" name="kind" autofocus {
                    @for (code, name) in CONSULTATION_TYPES { option value=(code) selected[f.kind == *code] { (name) } }
                }
            }
            (text_area("history", "History", &f.history))
            (text_area("examination", "Examination", &f.examination))
            (text_area("plan", "Plan", &f.plan))
            h2 class="nhsuk-heading-m" { "Coded entries" }
            @if !problems.0.is_empty() {
                div class="nhsuk-form-group" {
                    label class="nhsuk-label" for="about" { "About an existing problem" }
                    select class="nhsuk-select" id="about" name="about" {
                        option value="" { "No existing problem" }
                        @for c in &problems.0 {
                            @let cid = c.get("id").and_then(Value::as_str).unwrap_or_default();
                            option value=(cid) selected[f.about == cid] { (concept(c.get("code"))) }
                        }
                    }
                }
            }
            fieldset class="nhsuk-fieldset og-entry" {
                legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { "New problem" }
                (coded_field(Slot::Problem, "Problem", "A diagnosis or finding, added to the problem list.", &f.problem_text, &f.problem_code, errors))
                div class="nhsuk-radios nhsuk-radios--inline nhsuk-radios--small" {
                    @for (value, label) in [("major", "Significant"), ("minor", "Minor")] {
                        div class="nhsuk-radios__item" {
                            input class="nhsuk-radios__input" id={ "significance-" (value) } name="significance" type="radio"
                                value=(value) checked[f.significance == value || (f.significance.is_empty() && value == "major")];
                            label class="nhsuk-label nhsuk-radios__label" for={ "significance-" (value) } { (label) }
                        }
                    }
                }
            }
            fieldset class="nhsuk-fieldset og-entry" {
                legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { "Blood pressure (mmHg)" }
                div class="nhsuk-date-input" {
                    div class="nhsuk-date-input__item" { (number("systolic", "Systolic", &f.systolic, 3)) }
                    div class="nhsuk-date-input__item" { (number("diastolic", "Diastolic", &f.diastolic, 3)) }
                }
            }
            fieldset class="nhsuk-fieldset og-entry" {
                legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { "Other observation" }
                (coded_field(Slot::Observation, "Observation", "For example body weight or HbA1c.", &f.observation_text, &f.observation_code, errors))
                div class="nhsuk-date-input" {
                    div class="nhsuk-date-input__item" { (number("observation_value", "Value", &f.observation_value, 5)) }
                    div class="nhsuk-date-input__item" {
                        div class="nhsuk-form-group" {
                            label class="nhsuk-label" for="observation_unit" { "Unit" }
                            input class="nhsuk-input nhsuk-input--width-5" id="observation_unit" name="observation_unit" type="text" value=(f.observation_unit);
                        }
                    }
                }
            }
            fieldset class="nhsuk-fieldset og-entry" {
                legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { "Procedure" }
                (coded_field(Slot::Procedure, "Procedure", "Something done in the consultation.", &f.procedure_text, &f.procedure_code, errors))
            }
            fieldset class="nhsuk-fieldset og-entry" {
                legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { "Allergy or intolerance" }
                (coded_field(Slot::Allergy, "Allergy", "For example allergy to penicillin; it shows in the banner.", &f.allergy_text, &f.allergy_code, errors))
                div class="nhsuk-form-group" {
                    label class="nhsuk-label" for="allergy_reaction" { "Reaction (optional)" }
                    input class="nhsuk-input" id="allergy_reaction" name="allergy_reaction" type="text" value=(f.allergy_reaction);
                }
            }
            button class="nhsuk-button" type="submit" { "Save consultation" }
            p class="og-keys" { kbd { "Alt" } "+" kbd { "S" } " saves from anywhere in the form." }
        }
    };
    let title = format!("{} – new consultation", patient_name(&b.patient));
    ok(page(&title, Some(web), &[("Home", "/app")], body))
}

/// A chosen SNOMED CT code, checked against the release: its preferred term.
fn checked_concept(web: &Web, code: &str, slot: Slot) -> Option<String> {
    let loaded = web.state.terminology.get()?;
    let id: u64 = code.parse().ok()?;
    if let Some(set) = slot_set(&loaded.index, slot)
        // The code must be in the slot's part of SNOMED CT.
        && !loaded
            .index
            .ecl(&format!("{id}"))
            .is_ok_and(|s| !s.and(&set).is_empty())
    {
        return None;
    }
    let info = loaded.index.concept(id)?;
    info.active.then(|| {
        info.preferred_term
            .or(info.fsn)
            .unwrap_or_default()
            .to_owned()
    })
}

/// A number as JSON: whole numbers without a decimal point (`142`, not `142.0`).
fn num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

fn xhtml(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let paras: Vec<String> = escaped
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("<p>{}</p>", l.trim()))
        .collect();
    format!(
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>",
        paras.join("")
    )
}

/// `POST /app/patients/{id}/consultation`: checks the form and files the
/// consultation as one transaction.
pub async fn save(web: Web, Path(id): Path<String>, Form(f): Form<Consultation>) -> Page {
    web.check_csrf(&f._csrf)?;
    let mut errors: Vec<(&str, String)> = Vec::new();
    // Coded fields: typed text must have been chosen from the list.
    let mut coded = |slot: Slot, text: &str, code: &str, field: &'static str| {
        if text.trim().is_empty() {
            return None;
        }
        if code.is_empty() {
            errors.push((
                field,
                format!(
                    "Choose a {} from the SNOMED CT list for “{}”",
                    slot.name(),
                    text.trim()
                ),
            ));
            return None;
        }
        match checked_concept(&web, code, slot) {
            Some(display) => Some((code.to_owned(), display)),
            None => {
                errors.push((
                    field,
                    format!("{code} is not an active SNOMED CT {} concept", slot.name()),
                ));
                None
            }
        }
    };
    let problem = coded(
        Slot::Problem,
        &f.problem_text,
        &f.problem_code,
        "problem_text",
    );
    let observation = coded(
        Slot::Observation,
        &f.observation_text,
        &f.observation_code,
        "observation_text",
    );
    let procedure = coded(
        Slot::Procedure,
        &f.procedure_text,
        &f.procedure_code,
        "procedure_text",
    );
    let allergy = coded(
        Slot::Allergy,
        &f.allergy_text,
        &f.allergy_code,
        "allergy_text",
    );
    let (sys, dia) = (f.systolic.trim(), f.diastolic.trim());
    let mut bp = None;
    if !sys.is_empty() || !dia.is_empty() {
        match (parse_number(sys), parse_number(dia)) {
            (Some(s), Some(d)) if !(50.0..=300.0).contains(&s) => {
                let _ = d;
                errors.push((
                    "systolic",
                    "Systolic must be between 50 and 300 mmHg".into(),
                ));
            }
            (Some(_), Some(d)) if !(20.0..=200.0).contains(&d) => {
                errors.push((
                    "diastolic",
                    "Diastolic must be between 20 and 200 mmHg".into(),
                ));
            }
            (Some(s), Some(d)) if s <= d => {
                errors.push(("systolic", "Systolic must be higher than diastolic".into()));
            }
            (Some(s), Some(d)) => bp = Some((s, d)),
            (None, _) => errors.push((
                "systolic",
                "Enter the systolic pressure as a number, or leave both empty".into(),
            )),
            (_, None) => errors.push((
                "diastolic",
                "Enter the diastolic pressure as a number, or leave both empty".into(),
            )),
        }
    }
    let obs_value = f.observation_value.trim();
    let obs_value = match (&observation, obs_value.is_empty()) {
        (Some(_), false) => match parse_number(obs_value) {
            Some(v) => Some(v),
            None => {
                errors.push(("observation_value", "Enter the value as a number".into()));
                None
            }
        },
        (None, false) if f.observation_text.trim().is_empty() => {
            errors.push(("observation_text", "Choose what the value measures".into()));
            None
        }
        _ => None,
    };
    let nothing = [&f.history, &f.examination, &f.plan]
        .iter()
        .all(|t| t.trim().is_empty())
        && problem.is_none()
        && observation.is_none()
        && procedure.is_none()
        && allergy.is_none()
        && bp.is_none()
        && f.about.is_empty();
    if nothing && errors.is_empty() {
        errors.push((
            "history",
            "Write something or record an entry before saving".into(),
        ));
    }
    if !errors.is_empty() {
        return form_page(&web, &id, &f, &errors).await;
    }
    // The patient must exist and be readable by this user.
    let patient = web.read("Patient", &id).await?;
    // A problem the consultation is about must be this patient's.
    if !f.about.is_empty() {
        let about = web.read("Condition", &f.about).await?;
        if fhir::ref_id(about.get("subject"), "Patient") != Some(id.as_str()) {
            return Err(WebError::BadInput(
                "the problem chosen is not in this patient's record".into(),
            ));
        }
    }
    let subject =
        json!({ "reference": format!("Patient/{id}"), "display": patient_name(&patient) });
    let (user_name, _) = web.who();
    let practitioner = web.practitioner();
    let who = match &practitioner {
        Some(p) => json!({ "reference": format!("Practitioner/{p}"), "display": user_name }),
        None => json!({ "display": user_name }),
    };
    let now = gp_fhir::Instant::now().to_string();
    let kind = CONSULTATION_TYPES
        .iter()
        .find(|(c, _)| *c == f.kind)
        .copied()
        .unwrap_or(CONSULTATION_TYPES[0]);
    let sct = |code: &str, display: &str| json!({ "coding": [{ "system": SCT, "code": code, "display": display }], "text": display });
    let enc_url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let enc_ref = json!({ "reference": enc_url });
    let mut entries: Vec<Value> = Vec::new();
    let mut section_refs: Vec<Value> = Vec::new();
    let mut reasons: Vec<Value> = Vec::new();
    if !f.about.is_empty() {
        reasons.push(json!({ "reference": format!("Condition/{}", f.about) }));
    }
    if let Some((code, display)) = &problem {
        let url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let significance = if f.significance == "minor" {
            "minor"
        } else {
            "major"
        };
        let mut c = json!({
            "resourceType": "Condition",
            "extension": [{ "url": PROBLEM_SIGNIFICANCE, "valueCode": significance }],
            "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
            "verificationStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed" }] },
            "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item", "display": "Problem List Item" }] }],
            "code": sct(code, display),
            "subject": subject,
            "encounter": enc_ref,
            "onsetDateTime": fhir::today().to_string(),
            "recordedDate": now,
        });
        if practitioner.is_some() {
            c["recorder"] = who.clone();
        }
        reasons.push(json!({ "reference": url }));
        section_refs.push(json!({ "reference": url }));
        entries.push(json!({ "fullUrl": url, "resource": c, "request": { "method": "POST", "url": "Condition" } }));
    }
    let observation_base = |code: &str, display: &str, category: &str| {
        let mut o = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category }] }],
            "code": sct(code, display),
            "subject": subject,
            "encounter": enc_ref,
            "effectiveDateTime": now,
        });
        if practitioner.is_some() {
            o["performer"] = json!([who.clone()]);
        }
        o
    };
    if let Some((s, d)) = bp {
        let mut o = observation_base(fhir::BLOOD_PRESSURE, "Blood pressure", "vital-signs");
        let q = |v: f64| json!({ "value": num(v), "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" });
        o["component"] = json!([
            { "code": sct(fhir::SYSTOLIC, "Systolic blood pressure"), "valueQuantity": q(s) },
            { "code": sct(fhir::DIASTOLIC, "Diastolic blood pressure"), "valueQuantity": q(d) }
        ]);
        let url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        section_refs.push(json!({ "reference": url }));
        entries.push(json!({ "fullUrl": url, "resource": o, "request": { "method": "POST", "url": "Observation" } }));
    }
    if let Some((code, display)) = &observation {
        let mut o = observation_base(code, display, "exam");
        if let Some(v) = obs_value {
            let unit = f.observation_unit.trim();
            o["valueQuantity"] = if unit.is_empty() {
                json!({ "value": num(v) })
            } else {
                json!({ "value": num(v), "unit": unit })
            };
        }
        let url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        section_refs.push(json!({ "reference": url }));
        entries.push(json!({ "fullUrl": url, "resource": o, "request": { "method": "POST", "url": "Observation" } }));
    }
    if let Some((code, display)) = &procedure {
        let mut p = json!({
            "resourceType": "Procedure",
            "status": "completed",
            "code": sct(code, display),
            "subject": subject,
            "encounter": enc_ref,
            "performedDateTime": now,
        });
        if practitioner.is_some() {
            p["performer"] = json!([{ "actor": who.clone() }]);
        }
        let url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        section_refs.push(json!({ "reference": url }));
        entries.push(json!({ "fullUrl": url, "resource": p, "request": { "method": "POST", "url": "Procedure" } }));
    }
    if let Some((code, display)) = &allergy {
        let mut a = json!({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active" }] },
            "verificationStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed" }] },
            "code": sct(code, display),
            "patient": subject,
            "encounter": enc_ref,
            "recordedDate": now,
        });
        if practitioner.is_some() {
            a["recorder"] = who.clone();
        }
        let reaction = f.allergy_reaction.trim();
        if !reaction.is_empty() {
            a["reaction"] = json!([{ "manifestation": [{ "text": reaction }] }]);
        }
        let url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        section_refs.push(json!({ "reference": url }));
        entries.push(json!({ "fullUrl": url, "resource": a, "request": { "method": "POST", "url": "AllergyIntolerance" } }));
    }
    let organisation = crate::patients::practice_organisation(&web).await?;
    let mut encounter = json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory" },
        "type": [sct(kind.0, kind.1)],
        "subject": subject,
        "participant": [{
            "type": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PPRF", "display": "primary performer" }] }],
            "individual": who
        }],
        "period": { "start": now, "end": now },
    });
    if !reasons.is_empty() {
        encounter["reasonReference"] = json!(reasons);
    }
    if let Some(org) = &organisation {
        encounter["serviceProvider"] = json!({ "reference": format!("Organization/{org}") });
    }
    let mut sections: Vec<Value> = [
        ("History", &f.history),
        ("Examination", &f.examination),
        ("Plan", &f.plan),
    ]
    .iter()
    .filter(|(_, t)| !t.trim().is_empty())
    .map(|(title, t)| json!({ "title": title, "text": { "status": "generated", "div": xhtml(t) } }))
    .collect();
    if !section_refs.is_empty() {
        sections.push(json!({
            "title": "Coded entries",
            "text": { "status": "generated", "div": xhtml(&format!("{} coded entries", section_refs.len())) },
            "entry": section_refs
        }));
    }
    let composition = json!({
        "resourceType": "Composition",
        "status": "final",
        "type": sct("371531000", "Report of clinical encounter"),
        "subject": subject,
        "encounter": enc_ref,
        "date": now,
        "author": [who],
        "title": "Consultation",
        "section": sections,
    });
    let mut all = vec![
        json!({ "fullUrl": enc_url, "resource": encounter, "request": { "method": "POST", "url": "Encounter" } }),
    ];
    all.push(json!({
        "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "resource": composition,
        "request": { "method": "POST", "url": "Composition" }
    }));
    all.extend(entries);
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": all });
    web.transaction(&bundle).await?;
    Ok(Redirect::to(&format!("/app/patients/{id}")).into_response())
}
