//! Verification results and how they are shown: a human table, JSON, or Markdown.
//!
//! The JSON shape is a contract for CI (documented in README.md): an object with
//! `status` and `checks`, each check `{tenant, check, expected, actual, status}`.

use serde::{Deserialize, Serialize};

use crate::output::{Report, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Matches what the tier demands.
    Pass,
    /// Exists but differs, or is missing: drift.
    Fail,
    /// Could not be checked (an API or connection error).
    Error,
}

/// One verified fact about one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub tenant: String,
    /// Stable dotted name, e.g. `iam.task_role.s3_resources`.
    pub check: String,
    pub expected: String,
    pub actual: String,
    pub status: CheckStatus,
}

impl Check {
    pub fn new(
        tenant: impl Into<String>,
        check: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
        pass: bool,
    ) -> Check {
        Check {
            tenant: tenant.into(),
            check: check.into(),
            expected: expected.into(),
            actual: actual.into(),
            status: if pass {
                CheckStatus::Pass
            } else {
                CheckStatus::Fail
            },
        }
    }

    pub fn error(
        tenant: impl Into<String>,
        check: impl Into<String>,
        expected: impl Into<String>,
        err: impl std::fmt::Display,
    ) -> Check {
        Check {
            tenant: tenant.into(),
            check: check.into(),
            expected: expected.into(),
            actual: format!("error: {err}"),
            status: CheckStatus::Error,
        }
    }
}

/// The checks of one tenant as they are made: every part of verify (AWS, the database,
/// the isolation model's own) pushes into one of these.
pub struct Checks {
    tenant: String,
    out: Vec<Check>,
}

impl Checks {
    pub fn new(tenant: impl Into<String>) -> Checks {
        Checks {
            tenant: tenant.into(),
            out: Vec::new(),
        }
    }

    /// A check that passes when `pass`.
    pub fn add(
        &mut self,
        name: &str,
        expected: impl Into<String>,
        actual: impl Into<String>,
        pass: bool,
    ) {
        self.out
            .push(Check::new(&self.tenant, name, expected, actual, pass));
    }

    /// A check that could not be made.
    pub fn error(&mut self, name: &str, expected: impl Into<String>, err: impl std::fmt::Display) {
        self.out
            .push(Check::error(&self.tenant, name, expected, err));
    }

    /// Something the tier demands does not exist.
    pub fn missing(&mut self, name: &str, expected: impl Into<String>) {
        self.add(name, expected, "missing", false);
    }

    pub fn into_vec(self) -> Vec<Check> {
        self.out
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Check> {
        self.out.iter_mut()
    }
}

/// Items joined by `, `, or `empty` when there are none.
pub fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(", ")
    }
}

/// The outcome of a verification: what `verify` exits with and what the records keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// Something differs from the tier or is missing (exit 3).
    Drift,
    /// The audit itself could not finish (exit 1).
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Drift => "drift",
            Verdict::Error => "error",
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => crate::exit::Outcome::Success.code(),
            Verdict::Drift => crate::exit::Outcome::Drift.code(),
            Verdict::Error => crate::exit::ERROR,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict of a set of checks: drift wins over errors.
pub fn verdict(checks: &[Check]) -> Verdict {
    if checks.iter().any(|c| c.status == CheckStatus::Fail) {
        Verdict::Drift
    } else if checks.iter().any(|c| c.status == CheckStatus::Error) {
        Verdict::Error
    } else {
        Verdict::Pass
    }
}

pub fn exit_code(checks: &[Check]) -> u8 {
    verdict(checks).exit_code()
}

fn status_word(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "FAIL",
        CheckStatus::Error => "ERROR",
    }
}

/// The verification report: every failing check with expected vs actual, one row per
/// clean tenant; JSON carries every check.
pub fn checks_report(checks: &[Check], tenants: &[String]) -> Report {
    let verdict = verdict(checks);
    let failing: Vec<&Check> = checks
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .collect();
    let clean: Vec<&String> = tenants
        .iter()
        .filter(|t| !failing.iter().any(|c| &c.tenant == *t))
        .collect();
    let mut table = Table::new(&["tenant", "check", "status", "expected", "actual"])
        .titled("tenantctl verify")
        .code(0)
        .code(1);
    for c in &failing {
        table.row([
            c.tenant.as_str(),
            c.check.as_str(),
            status_word(c.status),
            c.expected.as_str(),
            c.actual.as_str(),
        ]);
    }
    for t in &clean {
        let n = checks.iter().filter(|c| &c.tenant == *t).count();
        table.row([t.as_str(), "(all)", "pass", &format!("{n} checks"), ""]);
    }
    table.summary(format!(
        "{} tenant(s): {} clean, {} failing check(s)",
        tenants.len(),
        clean.len(),
        failing.len()
    ));
    let json = serde_json::json!({
        "status": verdict,
        "tenants": tenants,
        "failed": failing.len(),
        "checks": checks,
    });
    Report::new(table, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::OutputFormat;

    #[test]
    fn verdict_and_formats() {
        let checks = vec![
            Check::new("a", "x.y", "1", "1", true),
            Check::new(
                "b",
                "iam.task_role.s3_resources",
                "only tenants/b/*",
                "tenants/*",
                false,
            ),
        ];
        assert_eq!(exit_code(&checks), 3);
        assert_eq!(exit_code(&checks[..1]), 0);
        let tenants = vec!["a".to_string(), "b".to_string()];
        let report = checks_report(&checks, &tenants);
        let json: serde_json::Value =
            serde_json::from_str(&report.render(OutputFormat::Json)).unwrap();
        assert_eq!(json["status"], "drift");
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][1]["tenant"], "b");
        let md = report.render(OutputFormat::Markdown);
        assert!(
            md.contains("| `b` | `iam.task_role.s3_resources` | FAIL |"),
            "{md}"
        );
        let human = report.render(OutputFormat::Human);
        assert!(human.contains("iam.task_role.s3_resources"), "{human}");
        assert!(human.contains("a       (all)"), "{human}");
    }
}
