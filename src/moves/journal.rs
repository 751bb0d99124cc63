//! The move journal: where a tenant's move between isolation models stands, kept in the
//! tenant's record (local or S3, beside the Terraform state), so any machine's rerun
//! resumes at the step an interrupted run stopped in.
//!
//! The journal is written *before* a step's effects are relied on and advanced only
//! after they are complete; every step is idempotent, so repeating the recorded step is
//! always safe.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::moves::db::TableCopy;
use crate::tenant::{Isolation, Tier};

/// The last step a move completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Recorded before anything runs: the destination is being provisioned.
    Started,
    /// The destination exists (Terraform and database) at the source's migration
    /// version; the tenant still works on the source.
    Prepared,
    /// The source takes no writes; the copy starts (or starts over) from here.
    Frozen,
    /// Every table copied, counts and checksums equal on both sides.
    Copied,
    /// The tenant works on the destination; the source is kept, hidden from it.
    CutOver,
    /// The retained source is being deleted (`--finish`, or retention passed).
    Finishing,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Started => "started",
            Step::Prepared => "prepared",
            Step::Frozen => "frozen",
            Step::Copied => "copied",
            Step::CutOver => "cut-over",
            Step::Finishing => "finishing",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One move of one tenant, from the tier it was applied with to the tier its file asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub from: Tier,
    pub to: Tier,
    pub step: Step,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_over_at: Option<DateTime<Utc>>,
    /// After this, `apply` deletes the retained source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<DateTime<Utc>>,
    /// What the verified copy found, per table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableCopy>,
    /// This move takes the tenant back where an earlier move took it from.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
    /// Why the last attempt stopped (a copy that did not verify), for `list` and reruns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Journal {
    pub fn new(from: Tier, to: Tier, rollback: bool) -> Journal {
        Journal {
            from,
            to,
            step: Step::Started,
            started_at: Utc::now(),
            frozen_at: None,
            cut_over_at: None,
            retain_until: None,
            tables: Vec::new(),
            rollback,
            last_error: None,
        }
    }

    /// Whether the tenant works on the destination already.
    pub fn is_cut_over(&self) -> bool {
        self.step >= Step::CutOver
    }

    /// How the tenant's root is rendered while the move stands here: the tier whose
    /// isolation the login and task definition use (the source's until the cut-over),
    /// and whether a dedicated database is kept beside it (provisioned before the
    /// cut-over of a move into silo, retained after the cut-over of a move out of it).
    pub fn render_as(&self) -> (Tier, bool) {
        let silo = |t: Tier| t.isolation() == Isolation::Silo;
        match self.step {
            Step::Finishing => (self.to, silo(self.to)),
            s if s >= Step::CutOver => (self.to, silo(self.from) || silo(self.to)),
            _ => (self.from, silo(self.from) || silo(self.to)),
        }
    }

    /// The retention has passed: `apply` finishes the move.
    pub fn retention_over(&self, now: DateTime<Utc>) -> bool {
        self.step >= Step::CutOver && self.retain_until.is_some_and(|t| t <= now)
    }

    /// Rows the copy carried.
    pub fn rows(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// How long the tenant's writes were frozen (freeze to cut-over).
    pub fn freeze_duration(&self) -> Option<std::time::Duration> {
        match (self.frozen_at, self.cut_over_at) {
            (Some(a), Some(b)) => (b - a).to_std().ok(),
            _ => None,
        }
    }

    /// One line for `list`: where the move stands.
    pub fn describe(&self) -> String {
        let what = if self.rollback {
            "rolling back"
        } else {
            "moving"
        };
        let path = format!(
            "{} ({}) → {} ({})",
            self.from,
            self.from.isolation(),
            self.to,
            self.to.isolation()
        );
        match (self.step, self.retain_until) {
            (Step::CutOver, Some(until)) => format!(
                "moved {path}; {} source retained until {}",
                self.from.isolation(),
                until.format("%Y-%m-%d %H:%M UTC")
            ),
            (Step::Finishing, _) => format!("moved {path}; deleting the retained source"),
            (step, _) => {
                let mut s = format!("{what} {path}: {step}");
                if let Some(e) = &self.last_error {
                    s.push_str(&format!(" (last attempt: {e})"));
                }
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_keep_the_dedicated_database_on_both_sides_of_a_silo_move() {
        let mut j = Journal::new(Tier::Starter, Tier::Enterprise, false);
        assert_eq!(j.render_as(), (Tier::Starter, true), "provisioned beside");
        j.step = Step::Copied;
        assert_eq!(j.render_as(), (Tier::Starter, true));
        j.step = Step::CutOver;
        assert_eq!(j.render_as(), (Tier::Enterprise, true));
        j.step = Step::Finishing;
        assert_eq!(j.render_as(), (Tier::Enterprise, true));

        let mut out = Journal::new(Tier::Enterprise, Tier::Growth, false);
        assert_eq!(out.render_as(), (Tier::Enterprise, true));
        out.step = Step::CutOver;
        assert_eq!(out.render_as(), (Tier::Growth, true), "source retained");
        out.step = Step::Finishing;
        assert_eq!(out.render_as(), (Tier::Growth, false), "then gone");

        let plain = Journal::new(Tier::Starter, Tier::Growth, false);
        assert_eq!(plain.render_as(), (Tier::Starter, false));
    }

    #[test]
    fn the_journal_round_trips_and_reads_old_records() {
        let mut j = Journal::new(Tier::Growth, Tier::Starter, true);
        j.step = Step::Frozen;
        let text = serde_json::to_string(&j).unwrap();
        assert!(text.contains("\"step\":\"frozen\""), "{text}");
        assert_eq!(serde_json::from_str::<Journal>(&text).unwrap(), j);
        let minimal = r#"{"from":"starter","to":"growth","step":"cut-over","started_at":"2026-01-01T00:00:00Z"}"#;
        let j: Journal = serde_json::from_str(minimal).unwrap();
        assert!(j.is_cut_over() && j.tables.is_empty() && !j.rollback);
        assert!(!j.retention_over(Utc::now()), "no retention date: kept");
    }
}
