//! The R4 examples the specification publishes although they break its
//! own rules, with the reason; shared with the server's real-data test.

/// Examples the specification publishes although they break its own rules.
pub const INVALID_IN_SPEC: &[(&str, &str)] = &[
    (
        "Bundle-dataelements.json",
        "bdl-7: a collection whose entries repeat fullUrls without versions",
    ),
    (
        "ImplementationGuide-fhir.json",
        "no name and no status, both 1..1",
    ),
    ("ig-r4.json", "no name and no status, both 1..1"),
    (
        "Questionnaire-qs1.json",
        "nested items without linkId, which is 1..1",
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-author.json",
        NO_BASE,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-effective.json",
        NO_BASE,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-end.json",
        NO_BASE,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-keyword.json",
        NO_BASE,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-workflow.json",
        NO_BASE,
    ),
    (
        "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json",
        "an id of 67 characters (at most 64); a create, which ignores ids, accepts it",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-author.json",
        NO_BASE,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-effective.json",
        NO_BASE,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-end.json",
        NO_BASE,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-keyword.json",
        NO_BASE,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-workflow.json",
        NO_BASE,
    ),
    ("StructureDefinition-Definition.json", NOT_ABSTRACT),
    ("StructureDefinition-Event.json", NOT_ABSTRACT),
    ("StructureDefinition-FiveWs.json", NOT_ABSTRACT),
    ("StructureDefinition-Request.json", NOT_ABSTRACT),
];

const NO_BASE: &str = "no base, which is 1..1 (a draft extension search parameter)";
const NOT_ABSTRACT: &str = "sdf-4: a logical model neither abstract nor with a baseDefinition";
