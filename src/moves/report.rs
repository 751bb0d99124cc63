//! What a move shows: per-table rows and checksums, the write-freeze and total time, the
//! retention, as one line for fleet summaries, a table for `tenantctl move`, and JSON.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::moves::flow::Moved;
use crate::moves::journal::Journal;
use crate::output::{Align, Table};
use crate::tenant::{Isolation, Tier};
use crate::terraform::humanize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableReport {
    pub table: String,
    pub rows: i64,
    /// The content checksum both sides agreed on (absent in a plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// One tenant's move, planned or carried out.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MoveReport {
    pub from: Tier,
    pub to: Tier,
    pub from_isolation: Isolation,
    pub to_isolation: Isolation,
    /// `planned`, a step it stopped after (`prepared`, `frozen`, `copied`), `cut-over`
    /// (source retained), `finished` (source deleted) or `aborted` (undone before the
    /// cut-over).
    pub state: String,
    /// This move takes the tenant back where an earlier one took it from.
    pub rollback: bool,
    pub tables: Vec<TableReport>,
    pub rows: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<DateTime<Utc>>,
}

impl MoveReport {
    fn base(j: &Journal, state: &str) -> MoveReport {
        MoveReport {
            from: j.from,
            to: j.to,
            from_isolation: j.from.isolation(),
            to_isolation: j.to.isolation(),
            state: state.to_string(),
            rollback: j.rollback,
            tables: j
                .tables
                .iter()
                .map(|t| TableReport {
                    table: t.table.clone(),
                    rows: t.rows,
                    checksum: Some(t.checksum.clone()),
                })
                .collect(),
            rows: j.rows(),
            freeze_ms: j.freeze_duration().map(|d| d.as_millis() as u64),
            total_ms: None,
            retain_until: j.retain_until,
        }
    }

    /// What a move run did.
    pub fn of(m: &Moved) -> MoveReport {
        let state = if m.aborted {
            "aborted"
        } else if m.finished {
            "finished"
        } else {
            m.journal.step.as_str()
        };
        let mut r = MoveReport::base(&m.journal, state);
        if m.aborted || m.finished {
            r.retain_until = None;
        }
        r.total_ms = Some(m.elapsed.as_millis() as u64);
        r
    }

    /// A move `plan` shows: the tables and row counts the copy will carry.
    pub fn planned(from: Tier, to: Tier, tables: Vec<(String, i64)>) -> MoveReport {
        let mut r = MoveReport::base(&Journal::new(from, to, false), "planned");
        r.rows = tables.iter().map(|(_, n)| n).sum();
        r.tables = tables
            .into_iter()
            .map(|(table, rows)| TableReport {
                table,
                rows,
                checksum: None,
            })
            .collect();
        r
    }

    fn path(&self) -> String {
        format!(
            "{} ({}) → {} ({})",
            self.from, self.from_isolation, self.to, self.to_isolation
        )
    }

    /// One line for fleet summaries and logs.
    pub fn line(&self) -> String {
        let what = if self.rollback { "moved back" } else { "moved" };
        let tables = format!(
            "{} table{}, {} rows",
            self.tables.len(),
            if self.tables.len() == 1 { "" } else { "s" },
            self.rows
        );
        match self.state.as_str() {
            "planned" => format!("move {}: {tables} to copy", self.path()),
            "abort planned" => format!(
                "move {} stopped before its cut-over: it will be undone, the tenant stays on {} ({})",
                self.path(),
                self.from,
                self.from_isolation
            ),
            "finish planned" => format!(
                "move {} will finish: the retained {} source will be deleted",
                self.path(),
                self.from_isolation
            ),
            "aborted" => format!(
                "move {} undone before its cut-over: the tenant stays on {} ({})",
                self.path(),
                self.from,
                self.from_isolation
            ),
            "finished" if self.tables.is_empty() => {
                format!(
                    "move {} finished: the retained source is deleted",
                    self.path()
                )
            }
            "cut-over" | "finished" => {
                let mut s = format!("{what} {}: {tables} verified", self.path());
                if let Some(f) = self.freeze_ms {
                    s.push_str(&format!(
                        ", writes frozen {}",
                        humanize(Duration::from_millis(f))
                    ));
                }
                match (&self.retain_until, self.state.as_str()) {
                    (_, "finished") => s.push_str("; source deleted"),
                    (Some(t), _) => s.push_str(&format!(
                        "; source retained until {}",
                        t.format("%Y-%m-%d %H:%M UTC")
                    )),
                    _ => {}
                }
                s
            }
            other => format!("move {} stopped after step {other}", self.path()),
        }
    }

    /// Per-table rows and checksums, with the summary line and the times.
    pub fn table(&self, tenant: &str) -> Table {
        let mut t = Table::new(&["table", "rows", "checksum"])
            .titled(format!("tenantctl move {tenant}"))
            .align(1, Align::Right)
            .code(0);
        for r in &self.tables {
            t.row([
                r.table.clone(),
                r.rows.to_string(),
                r.checksum.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        let mut summary = self.line();
        if let Some(total) = self.total_ms {
            summary.push_str(&format!(
                "; total {}",
                humanize(Duration::from_millis(total))
            ));
        }
        t.summary(summary);
        t
    }
}

/// The report of a journal as it stands (`list`, a move that stopped).
pub fn standing(j: &Journal) -> MoveReport {
    MoveReport::base(j, j.step.as_str())
}
