//! dm+d through the terminology operations, over the shipped sample that a
//! new store loads at start, on both storage backends; and `opengp
//! terminology load` with a dm+d folder.

use serde_json::Value;

use crate::support::{App, assert_outcome, json, opengp_bin};

crate::on_both_backends!(
    dmd_expand_filter_finds_medicines_for_prescribing,
    dmd_lookup_gives_kind_relatives_and_lookups,
    dmd_bad_input_is_an_operation_outcome,
    dmd_validate_code_checks_product_kind_and_name,
);

const PRESCRIBING: &str = "https://dmd.nhs.uk?fhir_vs=vmp-amp";

fn contains(vs: &Value) -> Vec<(String, String)> {
    vs["expansion"]["contains"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            assert_eq!(c["system"], "https://dmd.nhs.uk", "{c}");
            (
                c["code"].as_str().unwrap_or_default().to_owned(),
                c["display"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The properties of a `$lookup` answer: (code, value, description).
fn properties(p: &Value) -> Vec<(String, String, String)> {
    p["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["name"] == "property")
        .map(|x| {
            let part = |n: &str| {
                x["part"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|y| y["name"] == n)
                    .and_then(|y| {
                        y.as_object()?
                            .iter()
                            .find(|(k, _)| k.starts_with("value"))
                            .map(|(_, v)| match v {
                                Value::String(s) => s.clone(),
                                v => v.to_string(),
                            })
                    })
                    .unwrap_or_default()
            };
            (part("code"), part("value"), part("description"))
        })
        .collect()
}

async fn expand(app: &App, url: &str, filter: &str, count: usize) -> Value {
    let res = app
        .get_with_query(
            "ValueSet/$expand",
            &[
                ("url", url),
                ("filter", filter),
                ("count", &count.to_string()),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    json(res).await
}

/// valueset-operation-expand.html with `filter`, over dm+d's VMPs and AMPs.
async fn dmd_expand_filter_finds_medicines_for_prescribing(app: App) {
    let vs = expand(&app, PRESCRIBING, "amlo 5", 20).await;
    let found = contains(&vs);
    assert_eq!(
        found.first().map(|c| c.1.as_str()),
        Some("Amlodipine 5mg tablets"),
        "{vs}"
    );
    assert!(
        found.iter().all(|c| !c.1.contains("28 tablets")),
        "packs are not VMPs or AMPs: {vs}"
    );
    let vs = expand(&app, PRESCRIBING, "omep 20", 20).await;
    assert_eq!(
        contains(&vs).first().map(|c| c.1.clone()),
        Some("Omeprazole 20mg gastro-resistant capsules".to_owned())
    );
    // Packs are in the whole of dm+d, and paging works without a filter.
    let vs = expand(&app, "https://dmd.nhs.uk?fhir_vs=vmpp", "amlo 10", 5).await;
    assert_eq!(
        contains(&vs).first().map(|c| c.1.clone()),
        Some("Amlodipine 10mg tablets 28 tablets".to_owned())
    );
    let res = app
        .get_with_query(
            "ValueSet/$expand",
            &[("url", "https://dmd.nhs.uk?fhir_vs=vtm"), ("count", "3")],
        )
        .await;
    let vs = json(res).await;
    assert_eq!(contains(&vs).len(), 3);
    assert!(vs["expansion"]["total"].as_u64().unwrap_or(0) > 50, "{vs}");
}

/// codesystem-operation-lookup.html for a VMP: its AMPs as children, its VTM
/// as parent, and the lookups prescribing needs.
async fn dmd_lookup_gives_kind_relatives_and_lookups(app: App) {
    let vs = expand(
        &app,
        "https://dmd.nhs.uk?fhir_vs=vmp",
        "amlodipine 5mg tab",
        1,
    )
    .await;
    let (vpid, _) = contains(&vs)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no VMP: {vs}"));
    let res = app
        .get_with_query(
            "CodeSystem/$lookup",
            &[("system", "https://dmd.nhs.uk"), ("code", &vpid)],
        )
        .await;
    assert_eq!(res.status(), 200);
    let p = json(res).await;
    let props = properties(&p);
    let has = |code: &str, value: Option<&str>, description: &str| {
        props
            .iter()
            .any(|(c, v, d)| c == code && value.is_none_or(|x| x == v) && d == description)
    };
    assert!(p.to_string().contains("\"Amlodipine 5mg tablets\""), "{p}");
    assert!(has("kind", Some("VMP"), ""), "{props:?}");
    assert!(has("inactive", Some("false"), ""), "{props:?}");
    assert!(has("parent", None, "Amlodipine"), "the VTM: {props:?}");
    assert!(has("child", None, "Istin 5mg tablets"), "an AMP: {props:?}");
    assert!(
        has("child", None, "Amlodipine 5mg tablets 28 tablets"),
        "the VMPP: {props:?}"
    );
    assert!(
        has("DFORM/FORMCD", Some("385055001"), "Tablet"),
        "{props:?}"
    );
    assert!(has("DROUTE/ROUTECD", Some("26643006"), "Oral"), "{props:?}");
    assert!(
        has("CONTROL_INFO/CATCD", None, "No Controlled Drug Status"),
        "{props:?}"
    );
    assert!(
        has("UNIT_DOSE_UOMCD", Some("428673006"), "tablet"),
        "{props:?}"
    );
    // Its ingredient and strength (the VPI side table).
    assert!(has("VPI/ISID", None, "Amlodipine"), "{props:?}");
    assert!(has("VPI/STRNT_NMRTR_VAL", Some("5"), ""), "{props:?}");
    assert!(
        has("VPI/STRNT_NMRTR_UOMCD", Some("258684004"), "mg"),
        "{props:?}"
    );
    // From the AMP back to its VMP.
    let istin = props
        .iter()
        .find(|(c, _, d)| c == "child" && d == "Istin 5mg tablets")
        .map(|x| x.1.clone())
        .unwrap_or_default();
    let res = app
        .get_with_query(
            "CodeSystem/$lookup",
            &[("system", "https://dmd.nhs.uk"), ("code", &istin)],
        )
        .await;
    let props = properties(&json(res).await);
    assert!(
        props.iter().any(|(c, v, _)| c == "parent" && *v == vpid),
        "{props:?}"
    );
    assert!(
        props
            .iter()
            .any(|(c, _, d)| c == "SUPPCD" && d == "OpenGP sample brand supplier"),
        "{props:?}"
    );
}

/// codesystem-operation-validate-code.html and
/// valueset-operation-validate-code.html for dm+d: `result` says whether
/// the id is a product (of the value set's kinds) and `display` its name;
/// a wrong code is `false` with a message, not an error.
async fn dmd_validate_code_checks_product_kind_and_name(app: App) {
    let first = |vs: Value| {
        contains(&vs)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("nothing: {vs}"))
            .0
    };
    let vmp = first(
        expand(
            &app,
            "https://dmd.nhs.uk?fhir_vs=vmp",
            "amlodipine 5mg tab",
            1,
        )
        .await,
    );
    let vmpp = first(
        expand(
            &app,
            "https://dmd.nhs.uk?fhir_vs=vmpp",
            "amlodipine 5mg tab",
            1,
        )
        .await,
    );
    let check = |path: &'static str, args: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let q: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let res = app.get_with_query(path, &q).await;
            assert_eq!(res.status(), 200, "{path} {q:?}");
            let p = json(res).await;
            let get = |name: &str| {
                p["parameter"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|x| x["name"] == name)
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            (
                get("result")["valueBoolean"].as_bool(),
                get("message")["valueString"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                get("display")["valueString"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    let system = || ("system", "https://dmd.nhs.uk".to_owned());
    let cs = "CodeSystem/$validate-code";
    let (ok, _, display) = check(cs, vec![system(), ("code", vmp.clone())]).await;
    assert_eq!(
        (ok, display.as_str()),
        (Some(true), "Amlodipine 5mg tablets")
    );
    let (ok, _, _) = check(
        cs,
        vec![
            ("url", "https://dmd.nhs.uk".into()),
            ("code", vmp.clone()),
            ("display", "AMLODIPINE 5mg tablets".into()),
        ],
    )
    .await;
    assert_eq!(ok, Some(true), "the name, in any case");
    let (ok, message, _) = check(
        cs,
        vec![
            system(),
            ("code", vmp.clone()),
            ("display", "Aspirin 75mg tablets".into()),
        ],
    )
    .await;
    assert_eq!(ok, Some(false));
    assert!(message.contains("is not the name of"), "{message}");
    let (ok, message, _) = check(cs, vec![system(), ("code", "123456789006".into())]).await;
    assert_eq!(ok, Some(false));
    assert!(message.contains("not a product"), "{message}");
    // What a prescriber picks from: VMPs and AMPs, not packs.
    let vs = "ValueSet/$validate-code";
    let prescribing = || ("url", PRESCRIBING.to_owned());
    let (ok, _, _) = check(vs, vec![prescribing(), ("code", vmp.clone())]).await;
    assert_eq!(ok, Some(true));
    let (ok, message, _) = check(vs, vec![prescribing(), ("code", vmpp)]).await;
    assert_eq!(ok, Some(false));
    assert!(message.contains("is a VMPP"), "{message}");
    let res = app
        .get_with_query(
            vs,
            &[("url", "https://dmd.nhs.uk?fhir_vs=pills"), ("code", &vmp)],
        )
        .await;
    assert_outcome(res, 400, "invalid").await;
}

async fn dmd_bad_input_is_an_operation_outcome(app: App) {
    let lookup = |code: &'static str| {
        let app = &app;
        async move {
            app.get_with_query(
                "CodeSystem/$lookup",
                &[("system", "https://dmd.nhs.uk"), ("code", code)],
            )
            .await
        }
    };
    assert_outcome(lookup("not-a-number").await, 400, "invalid").await;
    assert_outcome(lookup("123456789006").await, 404, "not-found").await;
    let res = app
        .get_with_query(
            "ValueSet/$expand",
            &[("url", "https://dmd.nhs.uk?fhir_vs=pills"), ("filter", "a")],
        )
        .await;
    assert_outcome(res, 400, "invalid").await;
    let res = app
        .get_with_query(
            "ValueSet/$expand",
            &[("url", "https://dmd.nhs.uk/somewhere")],
        )
        .await;
    assert_outcome(res, 404, "not-found").await;
}

/// `opengp terminology load` with a dm+d folder replaces the stored sample,
/// and a server started on it answers from the loaded release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_loads_a_dmd_release_the_server_then_serves() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let release = dir.path().join("nhsbsa_dmd_test");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&release).unwrap_or_else(|e| panic!("{e}"));
    let write = |name: &str, text: &str| {
        std::fs::write(release.join(name), text).unwrap_or_else(|e| panic!("{e}"))
    };
    write(
        "f_vtm2_3000000.xml",
        "<VIRTUAL_THERAPEUTIC_MOIETIES><VTM><VTMID>1000019999998106</VTMID><NM>Testamol</NM></VTM></VIRTUAL_THERAPEUTIC_MOIETIES>",
    );
    write(
        "f_vmp2_3000000.xml",
        "<VIRTUAL_MED_PRODUCTS><VMPS><VMP><VPID>2000019999998108</VPID><VTMID>1000019999998106</VTMID>\
         <NM>Testamol 10mg tablets</NM></VMP></VMPS></VIRTUAL_MED_PRODUCTS>",
    );
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
    let (r, d) = (
        release.to_string_lossy().into_owned(),
        data.to_string_lossy().into_owned(),
    );
    let said = run(&["terminology", "load", &r, "--data", &d]);
    assert!(
        said.contains("loaded dm+d nhsbsa_dmd_test: 2 products"),
        "{said}"
    );
    let server = opengp::server::spawn_for_test(&data, 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = crate::support::authorised_client(&server.token);
    let expand = |filter: &'static str| {
        client
            .get(format!("{}/ValueSet/$expand", server.base))
            .query(&[("url", PRESCRIBING), ("filter", filter)])
            .send()
    };
    let vs: Value = expand("test 10")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        contains(&vs),
        vec![(
            "2000019999998108".to_owned(),
            "Testamol 10mg tablets".to_owned()
        )]
    );
    let vs: Value = expand("amlo")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        contains(&vs).is_empty(),
        "the shipped sample was replaced: {vs}"
    );
    server.stop().await.unwrap_or_else(|e| panic!("{e}"));

    // A store holding an older edition of the shipped sample (here, under
    // that edition's name) gets this edition at the next start; a loaded
    // release, as above, is never replaced.
    let older = dir.path().join("OpenGP shipped dm+d sample 20250101");
    std::fs::rename(&release, &older).unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data2");
    let said = run(&[
        "terminology",
        "load",
        &older.to_string_lossy(),
        "--data",
        &data.to_string_lossy(),
    ]);
    assert!(said.contains("2 products"), "{said}");
    let server = opengp::server::spawn_for_test(&data, 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = crate::support::authorised_client(&server.token);
    let vs: Value = client
        .get(format!("{}/ValueSet/$expand", server.base))
        .query(&[("url", PRESCRIBING), ("filter", "amlodipine 5mg")])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        contains(&vs)
            .iter()
            .any(|(_, name)| name == "Amlodipine 5mg tablets"),
        "the older sample was brought up to date: {vs}"
    );
    server.stop().await.unwrap_or_else(|e| panic!("{e}"));
}
