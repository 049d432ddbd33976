//! Finding patients (by name, NHS number, date of birth or postcode,
//! tolerant of typing mistakes) and registering new ones.

use axum::Form;
use axum::extract::Query;
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use time::{Date, Month};

use crate::fhir::{self, NHS_NUMBER, patient_name, show_age};
use crate::session::Web;
use crate::ui::{self, Page, error_summary, field_error, ok, page, text_input};

/// Patients a search shows at most.
const MAX_SHOWN: usize = 50;
/// Candidates a typo-tolerant search compares at most.
const MAX_CANDIDATES: usize = 1000;

#[derive(Deserialize, Default)]
pub struct SearchForm {
    #[serde(default)]
    q: String,
}

/// What a search box held, understood.
#[derive(Debug, Default, PartialEq)]
struct Query_ {
    nhs_number: Option<String>,
    birth_date: Option<Date>,
    postcode: Option<String>,
    names: Vec<String>,
}

/// A date as people type it: `14/03/1952`, `14-3-1952`, `1952-03-14`, `14031952`.
fn parse_date(s: &str) -> Option<Date> {
    let parts: Vec<&str> = s.split(['/', '-', '.']).collect();
    let (d, m, y) = match parts.as_slice() {
        [y, m, d] if y.len() == 4 => (*d, *m, *y),
        [d, m, y] if y.len() == 4 => (*d, *m, *y),
        [one] if one.len() == 8 && one.bytes().all(|b| b.is_ascii_digit()) => {
            (&one[..2], &one[2..4], &one[4..])
        }
        _ => return None,
    };
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// A UK postcode or its outward part: letters then a digit, optionally the
/// inward part.
fn looks_like_postcode(s: &str) -> bool {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let has_letter = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let has_digit = s.chars().any(|c| c.is_ascii_digit());
    has_letter && has_digit && s.len() <= 7 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// `LS14AB` → `LS1 4AB`: the inward part is always a digit and two letters.
fn normalise_postcode(s: &str) -> String {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase();
    if s.len() >= 5 {
        let (out, inw) = s.split_at(s.len() - 3);
        if inw.starts_with(|c: char| c.is_ascii_digit()) {
            return format!("{out} {inw}");
        }
    }
    s
}

fn understand(q: &str) -> Query_ {
    let mut out = Query_::default();
    let compact: String = q.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() == 10 && compact.bytes().all(|b| b.is_ascii_digit()) {
        out.nhs_number = Some(compact);
        return out;
    }
    let words: Vec<&str> = q.split_whitespace().collect();
    // A whole postcode is typed as two words.
    let mut skip = None;
    for (i, pair) in words.windows(2).enumerate() {
        let joined = format!("{}{}", pair[0], pair[1]);
        if looks_like_postcode(&joined)
            && joined.len() >= 5
            && pair[1].len() == 3
            && pair[1].starts_with(|c: char| c.is_ascii_digit())
        {
            out.postcode = Some(normalise_postcode(&joined));
            skip = Some(i);
        }
    }
    for (i, w) in words.iter().enumerate() {
        if skip.is_some_and(|s| i == s || i == s + 1) {
            continue;
        }
        let w = w.trim_matches(',');
        if let Some(d) = parse_date(w) {
            out.birth_date = Some(d);
        } else if looks_like_postcode(w) {
            out.postcode = Some(normalise_postcode(w));
        } else if !w.is_empty() {
            out.names.push(w.to_lowercase());
        }
    }
    out
}

/// The name parts of a patient, lower case.
fn name_parts(p: &Value) -> Vec<String> {
    let mut parts = Vec::new();
    for n in p
        .get("name")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(f) = n.get("family").and_then(Value::as_str) {
            parts.push(f.to_lowercase());
        }
        for g in n
            .get("given")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(g) = g.as_str() {
                parts.push(g.to_lowercase());
            }
        }
    }
    parts
}

/// How far a typed word is from the nearest name part (0: a prefix of it),
/// if within the typing mistakes allowed for its length.
fn distance(word: &str, parts: &[String]) -> Option<usize> {
    let allowed = match word.chars().count() {
        0..=3 => 0,
        4..=5 => 1,
        _ => 2,
    };
    parts
        .iter()
        .map(|p| {
            if p.starts_with(word) {
                0
            } else {
                // Compare with the part cut to the typed length too, so
                // that a mistyped prefix still finds the longer name.
                let cut: String = p.chars().take(word.chars().count()).collect();
                strsim::osa_distance(word, p).min(strsim::osa_distance(word, &cut) + 1)
            }
        })
        .min()
        .filter(|d| *d <= allowed)
}

/// Patients matching `q`: exact (prefix) matches first, then those whose
/// names are within a typing mistake or two.
async fn find(web: &Web, q: &Query_) -> Result<(Vec<Value>, Vec<Value>), ui::WebError> {
    let mut common: Vec<(&str, String)> = Vec::new();
    if let Some(n) = &q.nhs_number {
        common.push(("identifier", format!("{NHS_NUMBER}|{n}")));
    }
    if let Some(d) = q.birth_date {
        common.push(("birthdate", d.to_string()));
    }
    if let Some(p) = &q.postcode {
        common.push(("address-postalcode", p.clone()));
    }
    if common.is_empty() && q.names.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut exact_params = common.clone();
    for n in &q.names {
        exact_params.push(("name", n.clone()));
    }
    exact_params.push(("_count", MAX_SHOWN.to_string()));
    exact_params.push(("_sort", "family,given".into()));
    let (exact, _) = web.search("Patient", exact_params).await?;
    if q.names.is_empty() || exact.len() >= 10 {
        return Ok((exact, Vec::new()));
    }
    // Typo tolerance: candidates sharing the first letter of a typed name
    // (and any date of birth or postcode typed), ranked by distance.
    let mut candidates: Vec<Value> = Vec::new();
    let mut firsts: Vec<String> = q
        .names
        .iter()
        .filter_map(|n| n.chars().next().map(|c| c.to_string()))
        .collect();
    firsts.sort();
    firsts.dedup();
    for first in firsts {
        let mut params = common.clone();
        params.push(("name", first));
        params.push(("_count", MAX_CANDIDATES.to_string()));
        let (found, _) = web.search("Patient", params).await?;
        candidates.extend(found);
    }
    let seen: std::collections::HashSet<String> = exact
        .iter()
        .filter_map(|p| p.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let mut scored: Vec<(usize, Value)> = Vec::new();
    let mut ids = seen.clone();
    for p in candidates {
        let Some(id) = p.get("id").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        if !ids.insert(id) {
            continue;
        }
        let parts = name_parts(&p);
        let total: Option<usize> = q.names.iter().map(|w| distance(w, &parts)).sum();
        if let Some(d) = total {
            scored.push((d, p));
        }
    }
    let key = |p: &Value| {
        (
            fhir::str_at(p, &["name", "family"]).map(str::to_lowercase),
            fhir::str_at(p, &["name", "given"]).map(str::to_lowercase),
        )
    };
    scored.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| key(&a.1).cmp(&key(&b.1))));
    let similar = scored.into_iter().take(MAX_SHOWN).map(|(_, p)| p).collect();
    Ok((exact, similar))
}

fn results_table(caption: &str, patients: &[Value]) -> Markup {
    let today = fhir::today();
    html! {
        table class="nhsuk-table" {
            caption class="nhsuk-table__caption" { (caption) }
            thead class="nhsuk-table__head" {
                tr {
                    th scope="col" { "Name" }
                    th scope="col" { "Born" }
                    th scope="col" { "Gender" }
                    th scope="col" { "NHS number" }
                    th scope="col" { "Postcode" }
                }
            }
            tbody class="nhsuk-table__body" {
                @for p in patients {
                    @let id = p.get("id").and_then(Value::as_str).unwrap_or_default();
                    @let born = p.get("birthDate").and_then(Value::as_str).unwrap_or_default();
                    tr class="nhsuk-table__row" {
                        td class="nhsuk-table__cell" { a href={ "/app/patients/" (id) } { (patient_name(p)) } }
                        td class="nhsuk-table__cell" {
                            (fhir::show_date(born))
                            @if let Some(b) = fhir::date(born) { " (" (show_age(b, today)) ")" }
                        }
                        td class="nhsuk-table__cell" { (fhir::str_at(p, &["gender"]).unwrap_or_default()) }
                        td class="nhsuk-table__cell" { (fhir::format_nhs_number(fhir::nhs_number(p).unwrap_or_default())) }
                        td class="nhsuk-table__cell" { (fhir::str_at(p, &["address", "postalCode"]).unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

/// `GET /app/patients?q=`: the page, or (for htmx) just its results.
pub async fn search(web: Web, Query(f): Query<SearchForm>) -> Page {
    let q = understand(&f.q);
    let (exact, similar) = find(&web, &q).await?;
    let invalid_nhs = q
        .nhs_number
        .as_deref()
        .is_some_and(|n| !fhir::nhs_number_valid(n));
    let results = html! {
        div id="results" aria-live="polite" {
            @if invalid_nhs {
                div class="nhsuk-warning-callout" {
                    h3 class="nhsuk-warning-callout__label" { "Check the NHS number" }
                    p { (fhir::format_nhs_number(q.nhs_number.as_deref().unwrap_or_default()))
                        " is not a valid NHS number: its check digit is wrong." }
                }
            }
            @if f.q.trim().is_empty() {
                p class="og-muted" { "Type a name, NHS number, date of birth (14/03/1952) or postcode." }
            } @else if exact.is_empty() && similar.is_empty() {
                p { "No patients found for “" (f.q.trim()) "”." }
            } @else {
                @if !exact.is_empty() {
                    (results_table(&format!("{} patient{} found", exact.len(), if exact.len() == 1 { "" } else { "s" }), &exact))
                }
                @if !similar.is_empty() {
                    (results_table("Similar names", &similar))
                }
            }
        }
    };
    if web.htmx {
        return ok(results);
    }
    let body = html! {
        h1 { "Find a patient" }
        form action="/app/patients" method="get" role="search" {
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="q" { "Name, NHS number, date of birth or postcode" }
                input class="nhsuk-input" id="q" name="q" type="search" value=(f.q) autocomplete="off" autofocus
                    hx-get="/app/patients" hx-trigger="input changed delay:250ms, search"
                    hx-target="#results" hx-swap="outerHTML" hx-push-url="true";
            }
            button class="nhsuk-button nhsuk-button--secondary" type="submit" { "Search" }
            " "
            a class="nhsuk-button nhsuk-button--secondary" href="/app/patients/new" data-key="register" { "Register a new patient" }
        }
        (results)
    };
    ok(page(
        "Find a patient",
        Some(&web),
        &[("Home", "/app")],
        body,
    ))
}

#[derive(Deserialize, Default, Clone)]
pub struct NewPatient {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    nhs_number: String,
    #[serde(default)]
    given: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    dob_day: String,
    #[serde(default)]
    dob_month: String,
    #[serde(default)]
    dob_year: String,
    #[serde(default)]
    gender: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    postcode: String,
    #[serde(default)]
    phone: String,
    /// Set when the user has seen the likely duplicates and goes on.
    #[serde(default)]
    confirmed: String,
}

/// `GET /app/patients/new`.
pub async fn new_form(web: Web) -> Page {
    register_page(&web, &NewPatient::default(), &[], &[])
}

fn register_page(
    web: &Web,
    f: &NewPatient,
    errors: &[(&str, String)],
    duplicates: &[Value],
) -> Page {
    let dob_err = field_error(errors, "dob_day");
    let body = html! {
        div class="nhsuk-grid-row" {
            div class="nhsuk-grid-column-two-thirds" {
                (error_summary(errors))
                h1 { "Register a new patient" }
                @if !duplicates.is_empty() {
                    div class="nhsuk-warning-callout" id="duplicates" {
                        h2 class="nhsuk-warning-callout__label" { "This patient may already be registered" }
                        p { "Check these patients before registering a new one." }
                        (results_table("Possible duplicates", duplicates))
                    }
                }
                form method="post" action="/app/patients/new" novalidate data-save {
                    input type="hidden" name="_csrf" value=(web.csrf());
                    @if !duplicates.is_empty() {
                        input type="hidden" name="confirmed" value="yes";
                    }
                    div class={ "nhsuk-form-group" @if field_error(errors, "nhs_number").is_some() { " nhsuk-form-group--error" } } {
                        label class="nhsuk-label" for="nhs_number" { "NHS number (if known)" }
                        div class="nhsuk-hint" id="nhs_number-hint" { "10 digits, for example 943 476 5919" }
                        @if let Some(e) = field_error(errors, "nhs_number") {
                            span class="nhsuk-error-message" id="nhs_number-error" {
                                span class="nhsuk-u-visually-hidden" { "Error: " } (e)
                            }
                        }
                        input class={ "nhsuk-input nhsuk-input--width-10" @if field_error(errors, "nhs_number").is_some() { " nhsuk-input--error" } }
                            id="nhs_number" name="nhs_number" type="text" inputmode="numeric" value=(f.nhs_number)
                            aria-describedby={ "nhs_number-hint" @if field_error(errors, "nhs_number").is_some() { " nhs_number-error" } }
                            autofocus;
                    }
                    (text_input("given", "First name", &f.given, errors, "nhsuk-u-width-two-thirds", "off"))
                    (text_input("family", "Last name", &f.family, errors, "nhsuk-u-width-two-thirds", "off"))
                    div class={ "nhsuk-form-group" @if dob_err.is_some() { " nhsuk-form-group--error" } } {
                        fieldset class="nhsuk-fieldset" role="group" aria-describedby="dob-hint" {
                            legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { "Date of birth" }
                            div class="nhsuk-hint" id="dob-hint" { "For example, 15 3 1984" }
                            @if let Some(e) = dob_err {
                                span class="nhsuk-error-message" { span class="nhsuk-u-visually-hidden" { "Error: " } (e) }
                            }
                            div class="nhsuk-date-input" {
                                @for (id, label, value, width) in [("dob_day", "Day", &f.dob_day, 2), ("dob_month", "Month", &f.dob_month, 2), ("dob_year", "Year", &f.dob_year, 4)] {
                                    div class="nhsuk-date-input__item" {
                                        div class="nhsuk-form-group" {
                                            label class="nhsuk-label nhsuk-date-input__label" for=(id) { (label) }
                                            input class={ "nhsuk-input nhsuk-date-input__input nhsuk-input--width-" (width) @if dob_err.is_some() { " nhsuk-input--error" } }
                                                id=(id) name=(id) type="text" inputmode="numeric" value=(value);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    div class={ "nhsuk-form-group" @if field_error(errors, "gender").is_some() { " nhsuk-form-group--error" } } {
                        fieldset class="nhsuk-fieldset" {
                            legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { "Gender" }
                            @if let Some(e) = field_error(errors, "gender") {
                                span class="nhsuk-error-message" { span class="nhsuk-u-visually-hidden" { "Error: " } (e) }
                            }
                            div class="nhsuk-radios nhsuk-radios--inline" id="gender" {
                                @for (value, label) in [("female", "Female"), ("male", "Male"), ("other", "Other"), ("unknown", "Not known")] {
                                    div class="nhsuk-radios__item" {
                                        input class="nhsuk-radios__input" id={ "gender-" (value) } name="gender" type="radio"
                                            value=(value) checked[f.gender == value];
                                        label class="nhsuk-label nhsuk-radios__label" for={ "gender-" (value) } { (label) }
                                    }
                                }
                            }
                        }
                    }
                    (text_input("address", "Address (first line)", &f.address, errors, "", "off"))
                    (text_input("postcode", "Postcode", &f.postcode, errors, "nhsuk-input--width-10", "off"))
                    (text_input("phone", "Phone number", &f.phone, errors, "nhsuk-input--width-20", "off"))
                    button class="nhsuk-button" type="submit" {
                        @if duplicates.is_empty() { "Register patient" } @else { "None of these: register as a new patient" }
                    }
                }
            }
        }
    };
    ok(page(
        "Register a new patient",
        Some(web),
        &[("Home", "/app"), ("Find a patient", "/app/patients")],
        body,
    ))
}

/// `POST /app/patients/new`: checks the form, shows likely duplicates
/// once, then registers the patient.
pub async fn register(web: Web, Form(f): Form<NewPatient>) -> Page {
    web.check_csrf(&f._csrf)?;
    let mut errors: Vec<(&str, String)> = Vec::new();
    let nhs: String = f
        .nhs_number
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if !nhs.is_empty() {
        if nhs.len() != 10 || !nhs.bytes().all(|b| b.is_ascii_digit()) {
            errors.push(("nhs_number", "NHS number must be 10 digits".into()));
        } else if !fhir::nhs_number_valid(&nhs) {
            errors.push((
                "nhs_number",
                "This is not a valid NHS number: check the digits (its check digit does not match)"
                    .into(),
            ));
        }
    }
    if f.given.trim().is_empty() {
        errors.push(("given", "Enter the patient's first name".into()));
    }
    if f.family.trim().is_empty() {
        errors.push(("family", "Enter the patient's last name".into()));
    }
    let dob = (|| {
        let d: u8 = f.dob_day.trim().parse().ok()?;
        let m: u8 = f.dob_month.trim().parse().ok()?;
        let y: i32 = f.dob_year.trim().parse().ok()?;
        Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
    })();
    match dob {
        None => errors.push((
            "dob_day",
            "Enter the date of birth as a real date, for example 15 3 1984".into(),
        )),
        Some(d) if d > fhir::today() => {
            errors.push(("dob_day", "Date of birth must be in the past".into()));
        }
        Some(d) if d.year() < 1880 => {
            errors.push(("dob_day", "Date of birth must be after 1880".into()));
        }
        Some(_) => {}
    }
    if !["female", "male", "other", "unknown"].contains(&f.gender.as_str()) {
        errors.push(("gender", "Select the patient's gender".into()));
    }
    let postcode = f.postcode.trim();
    if !postcode.is_empty() && !looks_like_postcode(postcode) {
        errors.push(("postcode", "Enter a real postcode, like LS1 4AB".into()));
    }
    if !errors.is_empty() {
        return register_page(&web, &f, &errors, &[]);
    }
    let Some(dob) = dob else {
        return register_page(&web, &f, &errors, &[]);
    };
    // The same NHS number is never registered twice.
    if !nhs.is_empty() {
        let (same, _) = web
            .search(
                "Patient",
                vec![("identifier", format!("{NHS_NUMBER}|{nhs}"))],
            )
            .await?;
        if let Some(p) = same.first() {
            let id = p.get("id").and_then(Value::as_str).unwrap_or_default();
            let errors = vec![(
                "nhs_number",
                format!(
                    "{} is already registered here as {} (record {id})",
                    fhir::format_nhs_number(&nhs),
                    patient_name(p)
                ),
            )];
            return register_page(&web, &f, &errors, &same);
        }
    }
    if f.confirmed != "yes" {
        let duplicates = likely_duplicates(&web, &f, dob).await?;
        if !duplicates.is_empty() {
            return register_page(&web, &f, &[], &duplicates);
        }
    }
    let organisation = practice_organisation(&web).await?;
    let mut patient = json!({
        "resourceType": "Patient",
        "active": true,
        "name": [{ "use": "official", "family": f.family.trim(), "given": [f.given.trim()] }],
        "gender": f.gender,
        "birthDate": dob.to_string(),
    });
    if !nhs.is_empty() {
        patient["identifier"] = json!([{ "system": NHS_NUMBER, "value": nhs }]);
    }
    if !f.address.trim().is_empty() || !postcode.is_empty() {
        let mut a = json!({ "use": "home", "country": "GB", "period": { "start": fhir::today().to_string() } });
        if !f.address.trim().is_empty() {
            a["line"] = json!([f.address.trim()]);
        }
        if !postcode.is_empty() {
            a["postalCode"] = json!(normalise_postcode(postcode));
        }
        patient["address"] = json!([a]);
    }
    if !f.phone.trim().is_empty() {
        patient["telecom"] = json!([{ "system": "phone", "value": f.phone.trim() }]);
    }
    if let Some(org) = organisation {
        patient["managingOrganization"] = json!({ "reference": format!("Organization/{org}") });
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{ "resource": patient, "request": { "method": "POST", "url": "Patient" } }]
    });
    let ids = web.transaction(&bundle).await?;
    let id = ids.first().cloned().unwrap_or_default();
    Ok(Redirect::to(&format!("/app/patients/{id}")).into_response())
}

/// Patients born the same day with a similar name, or with the same name
/// at the same postcode.
async fn likely_duplicates(
    web: &Web,
    f: &NewPatient,
    dob: Date,
) -> Result<Vec<Value>, ui::WebError> {
    let (born, _) = web
        .search(
            "Patient",
            vec![("birthdate", dob.to_string()), ("_count", "200".into())],
        )
        .await?;
    let family = f.family.trim().to_lowercase();
    let given = f.given.trim().to_lowercase();
    let similar = |p: &Value| {
        let parts = name_parts(p);
        distance(&family, &parts).is_some() || distance(&given, &parts).is_some()
    };
    let mut out: Vec<Value> = born.into_iter().filter(similar).collect();
    let postcode = f.postcode.trim();
    if !postcode.is_empty() {
        let (same_name, _) = web
            .search(
                "Patient",
                vec![
                    ("family", f.family.trim().to_owned()),
                    ("given", f.given.trim().to_owned()),
                    ("address-postalcode", normalise_postcode(postcode)),
                ],
            )
            .await?;
        for p in same_name {
            if !out.iter().any(|o| o.get("id") == p.get("id")) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// The practice's own Organization resource, found by its ODS code.
pub async fn practice_organisation(web: &Web) -> Result<Option<String>, ui::WebError> {
    let (orgs, _) = web
        .search(
            "Organization",
            vec![(
                "identifier",
                format!(
                    "https://fhir.nhs.uk/Id/ods-organization-code|{}",
                    web.ctx.practice.ods.as_str()
                ),
            )],
        )
        .await?;
    Ok(orgs
        .first()
        .and_then(|o| o.get("id").and_then(Value::as_str))
        .map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_box_understands_what_was_typed() {
        let q = understand("943 476 5919");
        assert_eq!(q.nhs_number.as_deref(), Some("9434765919"));
        let q = understand("smith 14/03/1952");
        assert_eq!(q.names, vec!["smith"]);
        assert_eq!(
            q.birth_date.map(|d| d.to_string()).as_deref(),
            Some("1952-03-14")
        );
        let q = understand("ls1 4ab");
        assert_eq!(q.postcode.as_deref(), Some("LS1 4AB"));
        let q = understand("jones LS1");
        assert_eq!(q.postcode.as_deref(), Some("LS1"));
        assert_eq!(q.names, vec!["jones"]);
    }

    #[test]
    fn typing_mistakes_are_forgiven_in_proportion() {
        let parts = vec!["johnson".to_owned(), "margaret".to_owned()];
        assert_eq!(distance("john", &parts), Some(0));
        assert_eq!(distance("jonhson", &parts), Some(1));
        assert_eq!(distance("margret", &parts), Some(1));
        assert_eq!(distance("xyz", &parts), None);
        assert_eq!(distance("smith", &parts), None);
    }
}
