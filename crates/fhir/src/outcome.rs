//! `OperationOutcome`: how every error (and some warnings) reach a client.

use serde_json::{Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

/// `OperationOutcome.issue.code` (valueset-issue-type), the subset we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Forbidden,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    BusinessRule,
    Conflict,
    LockError,
    Transient,
    Exception,
    Timeout,
    TooCostly,
    Throttled,
    Incomplete,
    Informational,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::Processing => "processing",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::MultipleMatches => "multiple-matches",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::BusinessRule => "business-rule",
            IssueType::Conflict => "conflict",
            IssueType::LockError => "lock-error",
            IssueType::Transient => "transient",
            IssueType::Exception => "exception",
            IssueType::Timeout => "timeout",
            IssueType::TooCostly => "too-costly",
            IssueType::Throttled => "throttled",
            IssueType::Incomplete => "incomplete",
            IssueType::Informational => "informational",
        }
    }
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One issue: what went wrong, how badly, and where (a FHIRPath expression).
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    pub diagnostics: String,
    pub expression: Vec<String>,
}

/// An OperationOutcome under construction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperationOutcome {
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    pub fn new(severity: Severity, code: IssueType, diagnostics: impl Into<String>) -> Self {
        OperationOutcome {
            issues: vec![Issue {
                severity,
                code,
                diagnostics: diagnostics.into(),
                expression: Vec::new(),
            }],
        }
    }

    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, diagnostics)
    }

    pub fn information(diagnostics: impl Into<String>) -> Self {
        Self::new(Severity::Information, IssueType::Informational, diagnostics)
    }

    /// Points the last issue at an element, as a FHIRPath expression.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        if let Some(issue) = self.issues.last_mut() {
            issue.expression.push(expression.into());
        }
        self
    }

    pub fn to_json(&self) -> Value {
        let issues: Vec<Value> = self
            .issues
            .iter()
            .map(|i| {
                let mut v = json!({
                    "severity": i.severity.code(),
                    "code": i.code.code(),
                    "diagnostics": i.diagnostics,
                });
                if !i.expression.is_empty() {
                    v["expression"] = json!(i.expression);
                }
                v
            })
            .collect();
        json!({ "resourceType": "OperationOutcome", "issue": issues })
    }
}
