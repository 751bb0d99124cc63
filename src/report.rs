//! Verification results and how they are shown: a human table, JSON, or Markdown.
//!
//! The JSON shape is a contract for CI (documented in README.md): an object with
//! `status` and `checks`, each check `{tenant, check, expected, actual, status}`.

use serde::{Deserialize, Serialize};

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

/// The overall verdict of a set of checks: drift wins over errors (exit 3), errors mean
/// the audit itself could not finish (exit 1).
pub fn verdict(checks: &[Check]) -> CheckStatus {
    if checks.iter().any(|c| c.status == CheckStatus::Fail) {
        CheckStatus::Fail
    } else if checks.iter().any(|c| c.status == CheckStatus::Error) {
        CheckStatus::Error
    } else {
        CheckStatus::Pass
    }
}

pub fn exit_code(checks: &[Check]) -> u8 {
    match verdict(checks) {
        CheckStatus::Pass => crate::exit::Outcome::Success.code(),
        CheckStatus::Fail => crate::exit::Outcome::Drift.code(),
        CheckStatus::Error => crate::exit::ERROR,
    }
}

fn status_word(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "FAIL",
        CheckStatus::Error => "ERROR",
    }
}

/// Renders checks in the chosen format. Human and Markdown show every failing check with
/// expected vs actual, and one line per clean tenant; JSON carries every check.
pub fn render_checks(
    format: crate::context::OutputFormat,
    checks: &[Check],
    tenants: &[String],
) -> String {
    use crate::context::OutputFormat;
    use std::fmt::Write;
    let verdict = verdict(checks);
    let failing: Vec<&Check> = checks
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .collect();
    let clean: Vec<&String> = tenants
        .iter()
        .filter(|t| !failing.iter().any(|c| &c.tenant == *t))
        .collect();
    let mut out = String::new();
    match format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "status": match verdict { CheckStatus::Pass => "pass", CheckStatus::Fail => "drift", CheckStatus::Error => "error" },
                "tenants": tenants,
                "failed": failing.len(),
                "checks": checks,
            });
            out = serde_json::to_string_pretty(&v).expect("json") + "\n";
        }
        OutputFormat::Markdown => {
            let _ = writeln!(out, "### tenantctl verify\n");
            let _ = writeln!(
                out,
                "{} tenants, {} clean, {} failing checks\n",
                tenants.len(),
                clean.len(),
                failing.len()
            );
            if !failing.is_empty() {
                let _ = writeln!(out, "| tenant | check | status | expected | actual |");
                let _ = writeln!(out, "|---|---|---|---|---|");
                for c in &failing {
                    let _ = writeln!(
                        out,
                        "| `{}` | `{}` | {} | {} | {} |",
                        c.tenant,
                        c.check,
                        status_word(c.status),
                        crate::fleet::md_cell(&c.expected),
                        crate::fleet::md_cell(&c.actual)
                    );
                }
            }
        }
        OutputFormat::Human => {
            let w = checks
                .iter()
                .map(|c| c.tenant.len())
                .max()
                .unwrap_or(6)
                .max(6);
            let cw = checks
                .iter()
                .map(|c| c.check.len())
                .max()
                .unwrap_or(5)
                .max(5);
            let _ = writeln!(
                out,
                "{:<w$}  {:<cw$}  {:<6}  EXPECTED / ACTUAL",
                "TENANT", "CHECK", "STATUS"
            );
            for c in checks {
                if c.status == CheckStatus::Pass {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{:<w$}  {:<cw$}  {:<6}  expected: {}\n{:<w$}  {:<cw$}  {:<6}  actual:   {}",
                    c.tenant,
                    c.check,
                    status_word(c.status),
                    c.expected,
                    "",
                    "",
                    "",
                    c.actual
                );
            }
            for t in &clean {
                let n = checks.iter().filter(|c| &c.tenant == *t).count();
                let _ = writeln!(out, "{:<w$}  {:<cw$}  pass    {n} checks", t, "(all)");
            }
        }
    }
    out
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
        let json: serde_json::Value =
            serde_json::from_str(&render_checks(OutputFormat::Json, &checks, &tenants)).unwrap();
        assert_eq!(json["status"], "drift");
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][1]["tenant"], "b");
        let md = render_checks(OutputFormat::Markdown, &checks, &tenants);
        assert!(
            md.contains("| `b` | `iam.task_role.s3_resources` | FAIL |"),
            "{md}"
        );
        let human = render_checks(OutputFormat::Human, &checks, &tenants);
        assert!(human.contains("iam.task_role.s3_resources"), "{human}");
        assert!(human.contains("a "), "{human}");
    }
}
