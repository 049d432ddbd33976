//! The terminology operations (terminology-service.html) through the API,
//! over the shipped GP subset that a new store loads at start, on both
//! storage backends; and `opengp terminology` at the command line.

use serde_json::{Value, json};

use crate::support::{App, assert_outcome, json, opengp_bin};

crate::on_both_backends!(
    lookup_gives_display_designations_and_parents,
    subsumes_answers_each_outcome,
    expand_filter_is_typeahead_within_an_implicit_value_set,
    expand_by_ecl_and_refset_with_paging,
    validate_code_answers_result,
    bad_input_is_an_operation_outcome_never_a_500,
);

const SCT: &str = "http://snomed.info/sct";

/// The value of a named output parameter.
fn param<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["name"] == name)
        .map(|x| {
            x.as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
                .map_or(&Value::Null, |(_, v)| v)
        })
        .unwrap_or(&Value::Null)
}

fn codes(vs: &Value) -> Vec<&str> {
    vs["expansion"]["contains"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["code"].as_str())
        .collect()
}

/// codesystem-operation-lookup.html, GET and POST.
async fn lookup_gives_display_designations_and_parents(app: App) {
    let res = app
        .get(&format!("CodeSystem/$lookup?system={SCT}&code=44054006"))
        .await;
    assert_eq!(res.status(), 200);
    let p = json(res).await;
    assert_eq!(param(&p, "name"), "SNOMED CT");
    assert_eq!(param(&p, "display"), "Type 2 diabetes mellitus");
    let text = p.to_string();
    assert!(
        text.contains("Diabetes mellitus type 2 (disorder)"),
        "{text}"
    );
    assert!(
        text.contains("Non-insulin dependent diabetes mellitus"),
        "{text}"
    );
    assert!(text.contains("\"73211009\""), "the parent: {text}");
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": SCT, "code": "75367002"}}]});
    let p = json(app.post("CodeSystem/$lookup", &body).await).await;
    assert_eq!(param(&p, "display"), "Blood pressure");
    // An unknown (but well-formed) concept is 404.
    let res = app
        .get(&format!(
            "CodeSystem/$lookup?system={SCT}&code=123456789006"
        ))
        .await;
    assert_outcome(res, 404, "not-found").await;
}

/// codesystem-operation-subsumes.html.
async fn subsumes_answers_each_outcome(app: App) {
    for (a, b, want) in [
        ("73211009", "44054006", "subsumes"),
        ("44054006", "73211009", "subsumed-by"),
        ("44054006", "44054006", "equivalent"),
        ("44054006", "46635009", "not-subsumed"),
        ("138875005", "75367002", "subsumes"),
    ] {
        let p = json(
            app.get(&format!(
                "CodeSystem/$subsumes?system={SCT}&codeA={a}&codeB={b}"
            ))
            .await,
        )
        .await;
        assert_eq!(param(&p, "outcome"), want, "{a} {b}");
    }
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "codingA", "valueCoding": {"system": SCT, "code": "404684003"}},
        {"name": "codingB", "valueCoding": {"system": SCT, "code": "59621000"}}]});
    let p = json(app.post("CodeSystem/$subsumes", &body).await).await;
    assert_eq!(param(&p, "outcome"), "subsumes");
}

/// valueset-operation-expand.html with `filter`: typeahead.
async fn expand_filter_is_typeahead_within_an_implicit_value_set(app: App) {
    let url = format!("{SCT}?fhir_vs=isa/404684003");
    let vs = json(
        app.get(&format!(
            "ValueSet/$expand?url={url}&filter=diab%20typ%202&count=5"
        ))
        .await,
    )
    .await;
    assert_eq!(vs["resourceType"], "ValueSet");
    assert_eq!(codes(&vs).first(), Some(&"44054006"), "{vs}");
    assert_eq!(
        vs["expansion"]["contains"][0]["display"],
        "Type 2 diabetes mellitus"
    );
    // Outside the hierarchy nothing is offered: blood pressure is an observable.
    let vs = json(
        app.get(&format!(
            "ValueSet/$expand?url={url}&filter=blood%20pressure"
        ))
        .await,
    )
    .await;
    assert!(!codes(&vs).contains(&"75367002"), "{vs}");
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": format!("{SCT}?fhir_vs")},
        {"name": "filter", "valueString": "blood press"},
        {"name": "count", "valueInteger": 3}]});
    let vs = json(app.post("ValueSet/$expand", &body).await).await;
    assert_eq!(codes(&vs).first(), Some(&"75367002"), "{vs}");
    assert!(codes(&vs).len() <= 3);
}

/// Implicit value sets by ECL and refset (snomedct.html#implicit), paged.
async fn expand_by_ecl_and_refset_with_paging(app: App) {
    let ecl = "%3C%3C%2073211009"; // << 73211009, URI-encoded in the URL
    let vs = json(
        app.get(&format!("ValueSet/$expand?url={SCT}?fhir_vs=ecl/{ecl}"))
            .await,
    )
    .await;
    assert_eq!(vs["expansion"]["total"], 3, "{vs}");
    assert_eq!(codes(&vs), vec!["44054006", "46635009", "73211009"]);
    let vs = json(
        app.get(&format!(
            "ValueSet/$expand?url={SCT}?fhir_vs=refset/19999999103&count=4&offset=8"
        ))
        .await,
    )
    .await;
    assert_eq!(vs["expansion"]["total"], 10, "{vs}");
    assert_eq!(vs["expansion"]["offset"], 8);
    assert_eq!(codes(&vs).len(), 2);
}

/// valueset-operation-validate-code.html: `result` answers, errors do not.
async fn validate_code_answers_result(app: App) {
    let vs = format!("{SCT}?fhir_vs=isa/73211009");
    for (code, display, want) in [
        ("44054006", None, true),
        ("44054006", Some("Type II diabetes mellitus"), true),
        ("44054006", Some("Asthma"), false),
        ("195967001", None, false),
        ("999999999999999", None, false),
    ] {
        let mut q = format!("ValueSet/$validate-code?url={vs}&system={SCT}&code={code}");
        if let Some(d) = display {
            q.push_str(&format!("&display={}", d.replace(' ', "%20")));
        }
        let p = json(app.get(&q).await).await;
        assert_eq!(param(&p, "result"), want, "{code} {display:?}: {p}");
        if !want {
            assert!(param(&p, "message").is_string(), "{p}");
        }
    }
    let p = json(
        app.get(&format!(
            "CodeSystem/$validate-code?url={SCT}&code=75367002"
        ))
        .await,
    )
    .await;
    assert_eq!(param(&p, "result"), true);
    assert_eq!(param(&p, "display"), "Blood pressure");
}

/// Bad parameters are 400 OperationOutcomes (operations.html); a value set
/// the server does not know is 404.
async fn bad_input_is_an_operation_outcome_never_a_500(app: App) {
    for (path, status, code) in [
        (
            "CodeSystem/$lookup?system=http://loinc.org&code=1234-5",
            400,
            "invalid",
        ),
        (
            "CodeSystem/$lookup?system=http://snomed.info/sct",
            400,
            "invalid",
        ),
        ("CodeSystem/$lookup?code=12345x", 400, "invalid"),
        ("CodeSystem/$subsumes?codeA=44054006", 400, "invalid"),
        ("ValueSet/$expand", 400, "invalid"),
        (
            "ValueSet/$expand?url=http://snomed.info/sct?fhir_vs=ecl/%3C%3C%20(",
            400,
            "invalid",
        ),
        (
            "ValueSet/$expand?url=http://snomed.info/sct?fhir_vs=isa/123",
            400,
            "invalid",
        ),
        (
            "ValueSet/$expand?url=http://snomed.info/sct?fhir_vs&count=many",
            400,
            "invalid",
        ),
        (
            "ValueSet/$expand?url=http://example.org/vs",
            404,
            "not-found",
        ),
        (
            "ValueSet/$validate-code?url=http://snomed.info/sct?fhir_vs",
            400,
            "invalid",
        ),
    ] {
        assert_outcome(app.get(path).await, status, code).await;
    }
    let res = app
        .post("ValueSet/$expand", &json!({"resourceType": "Patient"}))
        .await;
    assert_outcome(res, 400, "invalid").await;
    let res = app.delete("CodeSystem/$lookup").await;
    assert_eq!(res.status(), 405);
}

/// `opengp terminology generate` then `load`: a synthetic release goes into
/// the store, and a server started on it answers from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_generates_and_loads_a_release_the_server_then_serves() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let release = dir.path().join("release");
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(opengp_bin())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let r = release.to_string_lossy().into_owned();
    let d = data.to_string_lossy().into_owned();
    let said = run(&["terminology", "generate", &r, "--concepts", "3000"]);
    assert!(said.contains("wrote 3000 concepts"), "{said}");
    let said = run(&["terminology", "load", &r, "--data", &d]);
    assert!(said.contains("loaded release: 3000 concepts"), "{said}");
    let server = opengp::server::spawn_for_test(&data, 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "{}/ValueSet/$expand?url={SCT}?fhir_vs=isa/404684003&count=1",
        server.base
    );
    let client = crate::support::authorised_client(&server.token);
    let vs: Value = client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let total = vs["expansion"]["total"].as_u64().unwrap_or(0);
    // A synthetic release has hundreds of findings; the shipped subset's
    // diabetes concepts are not in it.
    assert!(total > 500, "{vs}");
    let lookup = format!(
        "{}/CodeSystem/$lookup?system={SCT}&code=44054006",
        server.base
    );
    assert_eq!(
        client
            .get(&lookup)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok(),
        Some(404)
    );
    server.stop().await.unwrap_or_else(|e| panic!("{e}"));
}
