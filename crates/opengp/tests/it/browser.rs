//! The clinician web app in a real browser: headless Chromium driven over
//! WebDriver (chromedriver), against a real server with a real SQLite file.
//! Every page visited is checked with axe-core (WCAG 2.1 A and AA rules; no
//! serious or critical violation allowed), and every step saves a
//! screenshot under `target/browser-screenshots/`.
//!
//! Needs `/usr/bin/chromium`, `/usr/bin/chromedriver` and axe-core
//! (`OPENGP_AXE`), which `cargo xtask test` installs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use gp_store::accounts::NewUser;
use gp_store::{Actor, Ctx};
use serde_json::{Value, json};

use crate::support::{App, Db, TEST_MAX_BODY, spawn_app_on};

const USER: &str = "dr-browser";
const PASSWORD: &str = "a long enough password";

/// A chromedriver process and a browser session on it; both end on drop.
pub(crate) struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    test: &'static str,
    step: u32,
    axe: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl Browser {
    pub(crate) async fn start(test: &'static str) -> Browser {
        let axe_path = std::env::var("OPENGP_AXE").unwrap_or_else(|_| {
            panic!("OPENGP_AXE is not set: run the suite with `cargo xtask test`, which fetches axe-core")
        });
        let axe = std::fs::read_to_string(&axe_path)
            .unwrap_or_else(|e| panic!("reading axe-core at {axe_path}: {e}"));
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting /usr/bin/chromedriver ({e}): `cargo xtask test` installs it")
            });
        let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1024",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut client = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let client = client.unwrap_or_else(|| panic!("chromedriver did not start a session"));
        let shots =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
        std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("screenshot folder: {e}"));
        Browser {
            client,
            driver,
            _profile: profile,
            shots,
            test,
            step: 0,
            axe,
        }
    }

    /// Saves a screenshot of the page, and checks it with axe-core.
    pub(crate) async fn look(&mut self, what: &str) {
        self.step += 1;
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let file = self
            .shots
            .join(format!("{}-{:02}-{what}.png", self.test, self.step));
        std::fs::write(&file, png).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        self.accessible(what).await;
    }

    /// Runs axe-core in the page: no serious or critical WCAG 2.1 A/AA violation.
    async fn accessible(&mut self, what: &str) {
        let loaded = self
            .client
            .execute("return typeof window.axe === 'object';", vec![])
            .await
            .unwrap_or_else(|e| panic!("script: {e}"));
        if loaded != Value::Bool(true) {
            self.client
                .execute(&self.axe, vec![])
                .await
                .unwrap_or_else(|e| panic!("injecting axe-core: {e}"));
        }
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
                   .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                       nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5) }))))
                   .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("running axe-core: {e}"));
        let bad: Vec<&Value> = found
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        assert!(
            bad.is_empty(),
            "{} step {} ({what}): accessibility violations: {bad:#?}",
            self.test,
            self.step
        );
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    pub(crate) async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element '{css}' on the page: {e}"))
    }

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear()
            .await
            .unwrap_or_else(|e| panic!("clearing {css}: {e}"));
        e.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    pub(crate) async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Types at whatever has the focus, as a keyboard user does.
    async fn keys(&self, text: &str) {
        let e = self
            .client
            .active_element()
            .await
            .unwrap_or_else(|e| panic!("focused element: {e}"));
        e.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing: {e}"));
    }

    /// Presses a key with Alt held.
    async fn alt(&self, key: char) {
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down {
                value: Key::Alt.into(),
            })
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key })
            .then(KeyAction::Up {
                value: Key::Alt.into(),
            });
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|e| panic!("pressing Alt+{key}: {e}"));
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    /// Waits until the text of `css` contains `want` (across page loads),
    /// and answers it.
    async fn wait_text(&self, css: &str, want: &str) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if t.contains(want) {
                    return t;
                }
                last = t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("'{css}' never showed '{want}'; it shows: {last}")
    }

    async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.path().to_owned())
            .unwrap_or_default()
    }

    /// Waits until the page's path is `path`.
    pub(crate) async fn wait_path(&self, want: impl Fn(&str) -> bool) -> String {
        for _ in 0..100 {
            let p = self.path().await;
            if want(&p) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the page did not change as expected; it is at {}",
            self.path().await
        )
    }

    pub(crate) async fn close(self) {
        let client = self.client.clone();
        let _ = client.close().await;
    }
}

/// A server with a practice, a GP's account linked to a Practitioner, and
/// a patient with a problem.
async fn practice() -> App {
    let app = spawn_app_on(Db::Sqlite, TEST_MAX_BODY).await;
    let ods = opengp::config::DEFAULT_PRACTICE;
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "resource": { "resourceType": "Organization", "id": "org",
                "identifier": [{ "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods }],
                "name": "Browser Test Surgery" },
              "request": { "method": "PUT", "url": "Organization/org" } },
            { "resource": { "resourceType": "Practitioner", "id": "dr-browser",
                "name": [{ "family": "Okoro", "given": ["Ada"], "prefix": ["Dr"] }] },
              "request": { "method": "PUT", "url": "Practitioner/dr-browser" } },
            { "resource": { "resourceType": "Patient", "id": "pat-1",
                "identifier": [{ "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919" }],
                "name": [{ "use": "official", "family": "Fairweather", "given": ["Edith"], "prefix": ["Mrs"] }],
                "gender": "female", "birthDate": "1948-05-02",
                "address": [{ "use": "home", "line": ["1 Park Row"], "postalCode": "LS1 5AB" }],
                "managingOrganization": { "reference": "Organization/org" } },
              "request": { "method": "PUT", "url": "Patient/pat-1" } },
            { "resource": { "resourceType": "Condition", "id": "cond-1",
                "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
                "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item" }] }],
                "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "44054006", "display": "Type 2 diabetes mellitus" }] },
                "subject": { "reference": "Patient/pat-1" }, "onsetDateTime": "2015-03-01" },
              "request": { "method": "PUT", "url": "Condition/cond-1" } },
            { "resource": { "resourceType": "AllergyIntolerance", "id": "alg-1",
                "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active" }] },
                "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "91936005", "display": "Allergy to penicillin" }] },
                "patient": { "reference": "Patient/pat-1" } },
              "request": { "method": "PUT", "url": "AllergyIntolerance/alg-1" } }
        ]
    });
    let res = app.post("", &bundle).await;
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    add_account(&app, USER, "Dr Ada Okoro", &["R8000"], Some("dr-browser")).await;
    app
}

/// Adds a staff account at the test practice.
async fn add_account(
    app: &App,
    username: &str,
    name: &str,
    roles: &[&str],
    practitioner: Option<&str>,
) {
    let ods = gp_fhir::OdsCode::parse(opengp::config::DEFAULT_PRACTICE)
        .unwrap_or_else(|| panic!("ODS code"));
    let practice = app
        .server
        .store
        .practice(&ods, &Actor::system())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the test practice"));
    app.server
        .store
        .add_user(
            &Ctx::new(practice, Actor::system()),
            NewUser {
                username: username.into(),
                name: name.into(),
                password: PASSWORD.into(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                practitioner: practitioner.map(str::to_owned),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("adding the account {username}: {e}"));
}

fn site(app: &App) -> String {
    format!("http://{}", app.server.addr)
}

async fn sign_in(b: &mut Browser, app: &App) {
    sign_in_as(b, &site(app), USER, PASSWORD).await;
}

/// Signs `username` in to the web app at `site` through its sign-in page.
pub(crate) async fn sign_in_as(b: &mut Browser, site: &str, username: &str, password: &str) {
    b.goto(&format!("{site}/app")).await;
    b.wait_path(|p| p == "/app/login").await;
    b.look("sign-in").await;
    b.fill("#username", username).await;
    b.fill("#password", password).await;
    b.click("button[type=submit]").await;
    b.wait_path(|p| p == "/app").await;
}

/// A GP signs in, finds a patient, opens the record, records a consultation
/// with a coded problem and a blood pressure, and sees both in the summary
/// (the problem list and the blood pressure chart) and the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gp_records_a_consultation_and_sees_it_in_the_summary() {
    let app = practice().await;
    let mut b = Browser::start("consultation").await;
    sign_in(&mut b, &app).await;
    b.look("home").await;
    b.fill("#patient-search", "fairwether").await; // a typing mistake
    b.keys(&Key::Enter.to_string()).await;
    b.wait_path(|p| p == "/app/patients").await;
    let results = b.text("#results").await;
    assert!(results.contains("Edith FAIRWEATHER"), "{results}");
    b.look("search-results").await;
    b.click("#results a[href='/app/patients/pat-1']").await;
    b.wait_path(|p| p == "/app/patients/pat-1").await;
    let banner = b.text(".og-banner").await;
    assert!(banner.contains("943 476 5919"), "{banner}");
    assert!(banner.contains("Allergy to penicillin"), "{banner}");
    b.look("summary").await;
    b.click("a[data-key=consultation]").await;
    b.wait_path(|p| p.ends_with("/consultation")).await;
    b.look("consultation-form").await;
    b.fill("#history", "Wheeze and cough for two weeks.").await;
    b.fill("#plan", "Salbutamol; review in 4 weeks.").await;
    b.fill("#problem_text", "asthm").await;
    b.click("#problem-suggest button[data-code='195967001']")
        .await;
    let code = b
        .find("#problem_code")
        .await
        .prop("value")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert_eq!(code, "195967001");
    b.fill("#systolic", "152").await;
    b.fill("#diastolic", "96").await;
    b.look("consultation-filled").await;
    b.click("form[data-save] button[type=submit]").await;
    b.wait_path(|p| p == "/app/patients/pat-1").await;
    let problems = b.text("section[aria-labelledby=problems]").await;
    assert!(problems.contains("Asthma"), "{problems}");
    assert!(problems.contains("Type 2 diabetes mellitus"), "{problems}");
    let chart = b
        .find("svg[aria-label^='Blood pressure']")
        .await
        .attr("aria-label")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert!(chart.contains("152/96 mmHg"), "{chart}");
    b.look("summary-after").await;
    b.click("a[data-key=journal]").await;
    b.wait_path(|p| p.ends_with("/journal")).await;
    let journal = b.text("main").await;
    assert!(
        journal.contains("Wheeze and cough for two weeks."),
        "{journal}"
    );
    assert!(journal.contains("Dr Ada Okoro"), "{journal}");
    b.look("journal").await;
    // The same consultation is in the record the API serves.
    let found = app
        .get_json(&app.url("Observation?patient=pat-1&code=http://snomed.info/sct|75367002"))
        .await;
    assert_eq!(found["total"], 1, "{found}");
    // The home page lists the consultation as today's work.
    b.goto(&format!("{}/app", site(&app))).await;
    let work = b.text("section[aria-labelledby=work]").await;
    assert!(work.contains("Edith FAIRWEATHER"), "{work}");
    b.look("home-after").await;
    b.close().await;
    app.stop().await;
}

/// Registering a patient with an NHS number whose check digit is wrong
/// shows the NHS error summary and saves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_nhs_number_is_explained_and_nothing_is_saved() {
    let app = practice().await;
    let mut b = Browser::start("register").await;
    sign_in(&mut b, &app).await;
    b.goto(&format!("{}/app/patients/new", site(&app))).await;
    b.look("register-form").await;
    b.fill("#nhs_number", "943 476 5918").await;
    b.fill("#given", "Arthur").await;
    b.fill("#family", "Dent").await;
    b.fill("#dob_day", "11").await;
    b.fill("#dob_month", "3").await;
    b.fill("#dob_year", "1952").await;
    b.click("#gender-male").await;
    b.click("form[data-save] button[type=submit]").await;
    let summary = b.text(".nhsuk-error-summary").await;
    assert!(summary.contains("not a valid NHS number"), "{summary}");
    b.look("register-error").await;
    let found = app.get_json(&app.url("Patient?family=Dent")).await;
    assert_eq!(found["total"], 0, "{found}");
    // A patient born the same day with a similar name is shown before
    // saving; registering anyway is a choice the user makes.
    b.fill("#nhs_number", "").await;
    b.fill("#given", "Edyth").await;
    b.fill("#family", "Fairweather").await;
    b.fill("#dob_day", "2").await;
    b.fill("#dob_month", "5").await;
    b.fill("#dob_year", "1948").await;
    b.click("#gender-female").await;
    b.click("form[data-save] button[type=submit]").await;
    let warning = b.text("#duplicates").await;
    assert!(warning.contains("Edith FAIRWEATHER"), "{warning}");
    b.look("register-duplicates").await;
    b.click("form[data-save] button[type=submit]").await;
    let path = b
        .wait_path(|p| p.starts_with("/app/patients/") && p != "/app/patients/new")
        .await;
    let banner = b.text(".og-banner").await;
    assert!(banner.contains("Edyth FAIRWEATHER"), "{banner}");
    assert!(banner.contains("not recorded"), "no NHS number: {banner}");
    b.look("registered").await;
    let id = path.trim_start_matches("/app/patients/");
    let created = app.get_json(&app.url(&format!("Patient/{id}"))).await;
    assert_eq!(created["birthDate"], "1948-05-02", "{created}");
    assert_eq!(
        created["managingOrganization"]["reference"], "Organization/org",
        "{created}"
    );
    b.close().await;
    app.stop().await;
}

/// Everything by keyboard: sign in, find the patient with "/", open the
/// record, start a consultation with "n", choose a SNOMED CT problem with
/// the arrow keys, and save with Alt+S.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_works_from_the_keyboard() {
    let app = practice().await;
    let mut b = Browser::start("keyboard").await;
    b.goto(&format!("{}/app/login", site(&app))).await;
    b.find("#username").await; // focused on arrival
    b.keys(&format!("{USER}{}{PASSWORD}{}", Key::Tab, Key::Enter))
        .await;
    b.wait_path(|p| p == "/app").await;
    // "/" jumps to the patient search.
    b.find("body").await;
    b.keys("/").await;
    b.keys(&format!("Fairweather{}", Key::Enter)).await;
    b.wait_path(|p| p == "/app/patients").await;
    // Tab to the first result and open it.
    b.find("#results a").await;
    for _ in 0..30 {
        let on_result = b
            .client
            .active_element()
            .await
            .ok()
            .map(|e| async move { e.attr("href").await.ok().flatten() });
        let href = match on_result {
            Some(f) => f.await,
            None => None,
        };
        if href.as_deref() == Some("/app/patients/pat-1") {
            break;
        }
        b.keys(&Key::Tab.to_string()).await;
    }
    b.keys(&Key::Enter.to_string()).await;
    b.wait_path(|p| p == "/app/patients/pat-1").await;
    b.find("body").await;
    b.keys("n").await;
    b.wait_path(|p| p.ends_with("/consultation")).await;
    // The type of consultation has the focus; Tab on to the history.
    b.keys(&format!("{}Seen for breathlessness.", Key::Tab))
        .await;
    // On through examination, plan and the existing-problem choice.
    b.keys(&format!(
        "{}{}{}{}asth",
        Key::Tab,
        Key::Tab,
        Key::Tab,
        Key::Tab
    ))
    .await;
    b.find("#problem-suggest button").await;
    b.keys(&Key::Down.to_string()).await;
    b.keys(&Key::Enter.to_string()).await;
    let code = b
        .find("#problem_code")
        .await
        .prop("value")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert!(!code.is_empty(), "choosing with the keyboard set no code");
    b.look("keyboard-consultation").await;
    b.alt('s').await;
    b.wait_path(|p| p == "/app/patients/pat-1").await;
    let problems = b.text("section[aria-labelledby=problems]").await;
    assert!(problems.contains("sthma"), "{problems}");
    b.look("keyboard-saved").await;
    b.close().await;
    app.stop().await;
}

/// Problem list and allergy management: a problem made past moves to the
/// past problems, an allergy marked resolved leaves the banner, and the
/// entry's history shows both versions and what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_and_allergies_are_managed_and_their_history_shown() {
    let app = practice().await;
    let mut b = Browser::start("problems").await;
    sign_in(&mut b, &app).await;
    b.goto(&format!("{}/app/patients/pat-1", site(&app))).await;
    b.click("form[action$='/problems/cond-1'] button[value=past]")
        .await;
    b.wait_text(
        "section[aria-labelledby=problems] details",
        "Past problems (1)",
    )
    .await;
    b.click("form[action$='/allergies/alg-1'] button[value=resolved]")
        .await;
    b.wait_text(".og-banner", "No allergies recorded").await;
    b.look("managed").await;
    b.goto(&format!(
        "{}/app/patients/pat-1/history/Condition/cond-1",
        site(&app)
    ))
    .await;
    let history = b.text("main").await;
    assert!(history.contains("Version 2"), "{history}");
    assert!(
        history.contains("Changed: abatementDateTime, clinicalStatus"),
        "{history}"
    );
    assert!(history.contains("First recorded."), "{history}");
    // Who made each version, from the audit trail: the GP here, and the
    // test's API user who wrote the first version in a transaction.
    assert!(
        history.contains("By Dr Ada Okoro (Clinical Practitioner, R8000)"),
        "{history}"
    );
    assert!(history.contains("By Full access (test)"), "{history}");
    b.look("history").await;
    // Another patient's entry is not shown under this patient.
    b.goto(&format!(
        "{}/app/patients/pat-1/history/Condition/no-such",
        site(&app)
    ))
    .await;
    let missing = b.text("main h1").await;
    assert_eq!(missing, "Page not found");
    b.look("not-found").await;
    b.close().await;
    app.stop().await;
}

/// A user holding two role profiles chooses one after signing in, and the
/// session acts in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_two_roles_chooses_one() {
    let app = practice().await;
    add_account(&app, "two-roles", "Sam Two", &["R8001", "R8009"], None).await;
    let mut b = Browser::start("roles").await;
    b.goto(&format!("{}/app/login", site(&app))).await;
    b.fill("#username", "two-roles").await;
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_path(|p| p == "/app/role").await;
    b.look("choose-role").await;
    b.click("input[value=R8009]").await;
    b.click("form[action='/app/role'] button[type=submit]")
        .await;
    b.wait_path(|p| p == "/app").await;
    let header = b.text("header").await;
    assert!(header.contains("Receptionist, R8009"), "{header}");
    // A receptionist sees the patient's details, not the clinical record.
    b.goto(&format!("{}/app/patients/pat-1", site(&app))).await;
    let page = b.text("main").await;
    assert!(page.contains("Patient details"), "{page}");
    assert!(page.contains("1 Park Row"), "{page}");
    assert!(!page.contains("penicillin"), "{page}");
    b.look("receptionist-details").await;
    b.goto(&format!("{}/app/patients/pat-1/journal", site(&app)))
        .await;
    let refused = b.text("main h1").await;
    assert_eq!(refused, "You do not have permission to do this");
    b.look("receptionist-refused").await;
    b.close().await;
    app.stop().await;
}

/// A consultation form posted (as any HTTP client could) with an "about"
/// problem from another patient's record is refused with 400 and nothing
/// is written; one without the CSRF token is refused with 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consultation_cannot_point_at_another_patients_problem() {
    let app = practice().await;
    let other = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "resource": { "resourceType": "Patient", "id": "pat-2", "name": [{ "family": "Other" }] },
              "request": { "method": "PUT", "url": "Patient/pat-2" } },
            { "resource": { "resourceType": "Condition", "id": "cond-2",
                "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "195967001" }] },
                "subject": { "reference": "Patient/pat-2" } },
              "request": { "method": "PUT", "url": "Condition/cond-2" } }
        ]
    });
    assert_eq!(app.post("", &other).await.status(), 200);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"));
    let res = client
        .post(format!("{}/app/login", site(&app)))
        .form(&[
            ("practice", opengp::config::DEFAULT_PRACTICE),
            ("username", USER),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("sign in: {e}"));
    assert_eq!(res.status(), 303);
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let form_page = client
        .get(format!("{}/app/patients/pat-1/consultation", site(&app)))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("form: {e}"))
        .text()
        .await
        .unwrap_or_default();
    let csrf = form_page
        .split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_owned();
    assert!(!csrf.is_empty(), "no CSRF token in the form");
    let post = |fields: Vec<(&'static str, String)>| {
        client
            .post(format!("{}/app/patients/pat-1/consultation", site(&app)))
            .header("cookie", &cookie)
            .form(&fields)
            .send()
    };
    let res = post(vec![
        ("_csrf", csrf.clone()),
        ("kind", "185347001".into()),
        ("history", "About someone else's asthma".into()),
        ("about", "cond-2".into()),
    ])
    .await
    .unwrap_or_else(|e| panic!("post: {e}"));
    assert_eq!(res.status(), 400);
    let res = post(vec![
        ("kind", "185347001".into()),
        ("history", "No token".into()),
    ])
    .await
    .unwrap_or_else(|e| panic!("post: {e}"));
    assert_eq!(res.status(), 403);
    let found = app.get_json(&app.url("Encounter?patient=pat-1")).await;
    assert_eq!(found["total"], 0, "nothing is written: {found}");
    app.stop().await;
}

/// A nurse (no view-restricted) is told that an entry is restricted, not
/// what it is; breaking the glass without a reason shows the error summary;
/// with one, the restricted problem appears and the notice says the glass
/// is broken, until when and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurse_breaks_the_glass_with_a_reason() {
    let app = practice().await;
    let secret = json!({ "resourceType": "Condition", "id": "cond-secret",
        "meta": { "security": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R" }] },
        "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item" }] }],
        "extension": [{ "url": "https://opengp.dev/fhir/StructureDefinition/problem-significance", "valueCode": "major" }],
        "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "35489007", "display": "Depressive disorder" }] },
        "subject": { "reference": "Patient/pat-1" }, "onsetDateTime": "2020-01-01" });
    assert_eq!(
        app.put("Condition/cond-secret", &secret).await.status(),
        201
    );
    add_account(&app, "nurse", "Nell Nurse", &["R8001"], None).await;
    let mut b = Browser::start("glass").await;
    b.goto(&format!("{}/app/login", site(&app))).await;
    b.fill("#username", "nurse").await;
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_path(|p| p == "/app").await;
    b.goto(&format!("{}/app/patients/pat-1", site(&app))).await;
    let page = b.text("main").await;
    assert!(page.contains("1 entry is restricted"), "{page}");
    assert!(!page.contains("Depressive"), "{page}");
    b.look("restricted-notice").await;
    b.click(".nhsuk-warning-callout a").await;
    b.wait_path(|p| p == "/app/patients/pat-1/break-glass")
        .await;
    b.click("form[action$='/break-glass'] button[type=submit]")
        .await;
    let summary = b
        .wait_text(".nhsuk-error-summary", "Enter why you need to see")
        .await;
    assert!(summary.contains("There is a problem"), "{summary}");
    b.look("reason-required").await;
    b.fill(
        "#reason",
        "Reviewing medication interactions at the patient's request",
    )
    .await;
    b.click("form[action$='/break-glass'] button[type=submit]")
        .await;
    b.wait_path(|p| p == "/app/patients/pat-1").await;
    let page = b
        .wait_text("section[aria-labelledby=problems]", "Depressive disorder")
        .await;
    assert!(page.contains("Depressive disorder"), "{page}");
    // The record says the glass is broken, until when, and why.
    let main = b.text("main").await;
    assert!(!main.contains("entry is restricted"), "{main}");
    assert!(
        main.contains("You broke the glass for this record")
            && main.contains("Your reason: Reviewing medication interactions"),
        "{main}"
    );
    b.look("after-the-glass").await;
    b.close().await;
    app.stop().await;
}

/// A user administrator, from the keyboard-first pages: disables a user
/// (who then cannot sign in) and enables them again, takes a role profile
/// away (none at all is refused with the NHS error summary), and creates a
/// patient's online account from their details; the patient signs in with
/// it and sees their own record, without what is restricted or hidden from
/// online view. Every page passes axe-core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_manages_accounts_and_a_patient_sees_their_record() {
    let app = practice().await;
    for (id, display, meta) in [
        (
            "cond-hidden",
            "Hidden from online view",
            json!({ "tag": [{ "system": gp_store::access::ONLINE_ACCESS, "code": gp_store::access::HIDDEN_ONLINE }] }),
        ),
        (
            "cond-restricted",
            "Restricted from everyone",
            json!({ "security": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R" }] }),
        ),
    ] {
        let c = json!({ "resourceType": "Condition", "id": id, "meta": meta,
            "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
            "code": { "text": display }, "subject": { "reference": "Patient/pat-1" } });
        assert_eq!(app.put(&format!("Condition/{id}"), &c).await.status(), 201);
    }
    add_account(&app, "admin", "Ava Admin", &["R8015"], None).await;
    add_account(&app, "nurse", "Nell Nurse", &["R8001", "R8000"], None).await;
    let nurse_signs_in = || async {
        crate::auth::login(&app, "nurse", PASSWORD, None)
            .await
            .status()
            .as_u16()
    };
    let mut b = Browser::start("admin").await;
    sign_in_as(&mut b, &site(&app), "admin", PASSWORD).await;
    b.click("a[href='/app/admin/users']").await;
    b.wait_path(|p| p == "/app/admin/users").await;
    b.look("accounts").await;

    b.click("form[action='/app/admin/users/nurse/status'] button")
        .await;
    b.wait_text("td[data-status=nurse]", "Disabled").await;
    b.look("disabled").await;
    assert_eq!(nurse_signs_in().await, 401);
    b.click("form[action='/app/admin/users/nurse/status'] button")
        .await;
    b.wait_text("td[data-status=nurse]", "Active").await;
    assert_eq!(nurse_signs_in().await, 200);

    b.click("a[href='/app/admin/users/nurse']").await;
    b.wait_path(|p| p == "/app/admin/users/nurse").await;
    b.look("roles").await;
    b.click("#role-R8000").await;
    b.click("form[action='/app/admin/users/nurse'] button[type=submit]")
        .await;
    b.wait_path(|p| p == "/app/admin/users").await;
    let roles = b.text("td[data-roles=nurse]").await;
    assert_eq!(roles.trim(), "Nurse, R8001");
    assert_eq!(
        crate::auth::login(&app, "nurse", PASSWORD, Some("R8000"))
            .await
            .status(),
        403
    );
    b.click("a[href='/app/admin/users/nurse']").await;
    b.wait_path(|p| p == "/app/admin/users/nurse").await;
    b.click("#role-R8001").await;
    b.click("form[action='/app/admin/users/nurse'] button[type=submit]")
        .await;
    b.wait_text(".nhsuk-error-summary", "Select at least one role profile")
        .await;
    b.look("no-role").await;

    // A staff account, its password shown once: a form with nothing filled
    // in says what is missing; filled in, the account is created, signs in
    // with that password in the role given, and the trail has it.
    b.goto(&format!("{}/app/admin/users", site(&app))).await;
    b.click("a[href='/app/admin/users/new']").await;
    b.wait_path(|p| p == "/app/admin/users/new").await;
    b.look("new-account").await;
    b.click("form[action='/app/admin/users/new'] button[type=submit]")
        .await;
    let errors = b
        .wait_text(".nhsuk-error-summary", "Enter a user name")
        .await;
    assert!(
        errors.contains("Enter the holder's full name")
            && errors.contains("Select at least one role profile"),
        "{errors}"
    );
    b.look("new-account-errors").await;
    b.fill("#username", "nurse").await;
    b.fill("#name", "Nina Newcomer").await;
    b.click("#role-R8001").await;
    b.click("form[action='/app/admin/users/new'] button[type=submit]")
        .await;
    b.wait_text(".nhsuk-error-summary", "already has a user 'nurse'")
        .await;
    b.fill("#username", "newcomer").await;
    b.click("form[action='/app/admin/users/new'] button[type=submit]")
        .await;
    b.wait_text("h1", "Staff account created").await;
    b.look("account-created").await;
    let made = b.text("#account-password").await;
    assert_eq!(b.text("#account-username").await.trim(), "newcomer");
    assert_eq!(
        crate::auth::login(&app, "newcomer", made.trim(), Some("R8001"))
            .await
            .status(),
        200
    );
    let added = app
        .get_json(&app.url("AuditEvent?subtype=user-add&_count=50"))
        .await;
    assert!(
        added["entry"].as_array().into_iter().flatten().any(|e| {
            let ev = &e["resource"];
            ev["outcome"] == "0"
                && ev["agent"][0]["altId"] == "admin"
                && ev["entity"].to_string().contains("newcomer")
        }),
        "the creation is in the trail, by the administrator: {added}"
    );

    // A patient's online account, from their details.
    b.goto(&format!("{}/app/patients/pat-1", site(&app))).await;
    b.click("form[action='/app/patients/pat-1/online-account'] button")
        .await;
    b.wait_text("h1", "Online account created").await;
    b.look("online-account").await;
    let username = b.text("#account-username").await;
    let password = b.text("#account-password").await;
    assert_eq!(username.trim(), "9434765919");
    b.click("form[action='/app/logout'] button").await;
    b.wait_path(|p| p == "/app/login").await;

    sign_in_as(&mut b, &site(&app), username.trim(), password.trim()).await;
    let page = b.wait_text("h1", "Your GP record").await;
    assert!(page.contains("Your GP record"), "{page}");
    let main = b.text("main").await;
    assert!(
        main.contains("Type 2 diabetes mellitus") && main.contains("Allergy to penicillin"),
        "{main}"
    );
    assert!(
        !main.contains("Hidden from online view") && !main.contains("Restricted from everyone"),
        "{main}"
    );
    b.look("patient-record").await;
    b.close().await;
    app.stop().await;
}

/// What the third-party app below saw and got.
#[derive(Clone, Debug, Default)]
struct Launched {
    client_id: String,
    iss: String,
    launch: String,
    verifier: String,
    token_endpoint: String,
    /// The token endpoint's answer to the code.
    token: Value,
}

/// A SMART app as another supplier would run it, on a loopback port of its
/// own: its launch URL takes `iss` and `launch`, discovers the
/// authorization server at `iss` (`.well-known/smart-configuration`) and
/// sends the browser to authorize with the launch, PKCE and the `launch`
/// scope; its redirect URI exchanges the code at the token endpoint.
struct ThirdPartyApp {
    base: String,
    seen: std::sync::Arc<std::sync::Mutex<Launched>>,
    task: tokio::task::JoinHandle<()>,
}

const THIRD_PARTY_SCOPE: &str = "launch patient/Patient.rs patient/Observation.rs";

impl ThirdPartyApp {
    async fn start() -> ThirdPartyApp {
        use axum::extract::{Query, State};
        use axum::response::{Html, IntoResponse};
        use std::collections::HashMap;
        type Seen = std::sync::Arc<std::sync::Mutex<Launched>>;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the app's port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the app's address: {e}"));
        // Another site than OpenGP's (127.0.0.1): `localhost`, on the
        // same loopback address.
        let base = format!("http://localhost:{}", addr.port());
        let seen: Seen = std::sync::Arc::default();
        let redirect_uri = format!("{base}/callback");
        let callback_uri = redirect_uri.clone();
        let launch = |State(seen): State<Seen>, Query(q): Query<HashMap<String, String>>| async move {
            let iss = q.get("iss").cloned().unwrap_or_default();
            let config: Value =
                match reqwest::get(format!("{iss}/.well-known/smart-configuration")).await {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => Value::Null,
                };
            let (verifier, challenge) = crate::smart::pkce();
            let client_id = {
                let Ok(mut s) = seen.lock() else {
                    return "the app's state".into_response();
                };
                s.iss = iss.clone();
                s.launch = q.get("launch").cloned().unwrap_or_default();
                s.verifier = verifier;
                s.token_endpoint = config["token_endpoint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                s.client_id.clone()
            };
            let query = serde_urlencoded::to_string([
                ("response_type", "code"),
                ("client_id", client_id.as_str()),
                ("redirect_uri", redirect_uri.as_str()),
                ("scope", THIRD_PARTY_SCOPE),
                ("state", "from-the-record"),
                ("aud", iss.as_str()),
                (
                    "launch",
                    q.get("launch").map(String::as_str).unwrap_or_default(),
                ),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .unwrap_or_default();
            let authorize = config["authorization_endpoint"]
                .as_str()
                .unwrap_or_default();
            // The app's own page sends the browser on, as a script of a
            // browser-based app would: a navigation from the app's site.
            let to = format!("{authorize}?{query}").replace('&', "&amp;");
            Html(format!(
                "<!doctype html><html lang=\"en\"><head><title>Growth charts</title>\
                 <meta http-equiv=\"refresh\" content=\"0;url={to}\"></head>\
                 <body><main><h1>Growth charts</h1><p>Connecting to the record</p></main></body></html>"
            ))
            .into_response()
        };
        let callback = move |State(seen): State<Seen>, Query(q): Query<HashMap<String, String>>| async move {
            let Some(s) = seen.lock().ok().map(|s| s.clone()) else {
                return Html("the app's state".to_owned());
            };
            let mut token = Value::Null;
            if q.get("state").map(String::as_str) == Some("from-the-record")
                && let Some(code) = q.get("code")
                && let Ok(res) = reqwest::Client::new()
                    .post(&s.token_endpoint)
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("client_id", s.client_id.as_str()),
                        ("redirect_uri", callback_uri.as_str()),
                        ("code", code.as_str()),
                        ("code_verifier", s.verifier.as_str()),
                    ])
                    .send()
                    .await
            {
                token = res.json().await.unwrap_or_default();
            }
            let patient = token["patient"].as_str().unwrap_or("none").to_owned();
            if let Ok(mut s) = seen.lock() {
                s.token = token;
            }
            Html(format!(
                "<!doctype html><html lang=\"en\"><head><title>Growth charts</title></head>\
                 <body><main><h1>Growth charts</h1><p id=\"patient\">Patient {patient}</p></main></body></html>"
            ))
        };
        let router = axum::Router::new()
            .route("/launch", axum::routing::get(launch))
            .route("/callback", axum::routing::get(callback))
            .with_state(seen.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        ThirdPartyApp { base, seen, task }
    }

    fn seen(&self) -> Launched {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for ThirdPartyApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// EHR launch from the record (SMART App Launch 2.x): a practice manager
/// registered an app with its launch URL; a GP opens a patient's record,
/// presses "Launch Growth charts" from the keyboard and lands on the app
/// (a loopback server the test runs, on another site: `localhost`, where
/// OpenGP is `127.0.0.1`) with `iss` and `launch`. The app discovers the
/// server at `iss` and its page sends the browser to authorize with the
/// launch: a navigation from another site, which the browser makes without
/// the `SameSite=Strict` session cookie, and OpenGP's page sends on
/// within its own site, so the GP is not asked to sign in again. The GP
/// allows it, and the app's code, exchanged at the token endpoint, brings
/// a token naming that patient, which reads their Observation and is
/// refused another patient's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gp_launches_an_app_from_the_record() {
    let app = practice().await;
    let obs = |id: &str, patient: &str| {
        json!({ "resource": { "resourceType": "Observation", "id": id, "status": "final",
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "27113001", "display": "Body weight" }] },
            "subject": { "reference": format!("Patient/{patient}") },
            "effectiveDateTime": "2024-05-01",
            "valueQuantity": { "value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg" } },
          "request": { "method": "PUT", "url": format!("Observation/{id}") } })
    };
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": { "resourceType": "Patient", "id": "pat-2",
            "name": [{ "family": "Other", "given": ["Olive"] }], "gender": "female", "birthDate": "1990-01-01" },
          "request": { "method": "PUT", "url": "Patient/pat-2" } },
        obs("obs-1", "pat-1"), obs("obs-2", "pat-2") ] });
    let res = app.post("", &bundle).await;
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let third = ThirdPartyApp::start().await;
    let res = app
        .client
        .post(format!(
            "{}/practices/{}/smart/apps",
            site(&app),
            opengp::config::DEFAULT_PRACTICE
        ))
        .json(
            &json!({ "name": "Growth charts", "kind": "public", "scope": THIRD_PARTY_SCOPE,
            "redirect_uris": [format!("{}/callback", third.base)],
            "launch_url": format!("{}/launch", third.base) }),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("registering the app: {e}"));
    assert_eq!(res.status(), 201);
    let reg: Value = res.json().await.unwrap_or_default();
    if let Ok(mut s) = third.seen.lock() {
        s.client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    }

    let mut b = Browser::start("ehr-launch").await;
    sign_in(&mut b, &app).await;
    b.goto(&format!("{}/app/patients/pat-1", site(&app))).await;
    b.look("record-with-app").await;
    let button = b
        .find("form[action='/app/patients/pat-1/launch'] button[type=submit]")
        .await;
    let label = button.text().await.unwrap_or_default();
    assert_eq!(label, "Launch Growth charts");
    // From the keyboard: the button is focusable and Enter presses it.
    button
        .send_keys(&Key::Enter.to_string())
        .await
        .unwrap_or_else(|e| panic!("pressing Enter on the launch button: {e}"));
    b.wait_path(|p| p == "/app/smart/authorize").await;
    let page = b.wait_text("main", "Allow Growth charts").await;
    assert!(
        page.contains("FAIRWEATHER"),
        "the patient of the launch: {page}"
    );
    b.look("allow-the-app").await;
    b.click("button[value=approve]").await;
    b.wait_path(|p| p == "/callback").await;
    let shown = b.wait_text("#patient", "Patient ").await;
    b.look("the-app").await;
    let seen = third.seen();
    assert_eq!(seen.iss, app.server.base, "{seen:?}");
    assert!(!seen.launch.is_empty(), "{seen:?}");
    assert_eq!(seen.token["patient"], "pat-1", "{seen:?}");
    assert_eq!(shown, "Patient pat-1");
    let scope = seen.token["scope"].as_str().unwrap_or_default();
    assert!(scope.split_whitespace().any(|s| s == "launch"), "{scope}");
    let as_app =
        crate::support::authorised_client(seen.token["access_token"].as_str().unwrap_or_default());
    let get = |path: &str| {
        let req = as_app.get(format!("{}/{path}", seen.iss));
        async move { req.send().await.unwrap_or_else(|e| panic!("{e}")) }
    };
    assert_eq!(get("Observation/obs-1").await.status(), 200);
    let found: Value = get("Observation").await.json().await.unwrap_or_default();
    assert_eq!(found["total"], 1, "only the patient's own: {found}");
    crate::support::assert_outcome(get("Observation/obs-2").await, 403, "forbidden").await;
    // A search naming the other patient runs inside the patient in
    // context: it finds nothing.
    let other: Value = get("Observation?patient=pat-2")
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(other["total"], 0, "{other}");
    b.close().await;
    app.stop().await;
}
