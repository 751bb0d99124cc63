//! The audit trail: one structured event per state-changing action tenantctl takes on a
//! tenant, appended as a JSON line to `.tenantctl/audit.jsonl`; `tenantctl log <id>`
//! reads a tenant's history back.
//!
//! Events are recorded around the whole command (`commands::run`), so every outcome is
//! recorded, a failure or an interrupt included, and no command can forget to. What an
//! event holds is chosen so that no secret can reach it: ids, tiers, the action, the exit
//! code and the one-line error tenantctl prints (which never holds a secret value).
//!
//! Each event is one `write` of one line to a file opened with `O_APPEND`, so runs in
//! parallel interleave whole lines. Recording is best effort: a failure to write is a
//! warning on stderr, never a reason to report a finished action as failed.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::tenant::{TenantId, Tier};

pub const FILE: &str = "audit.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    /// Who ran it: `TENANTCTL_ACTOR`, else the CI actor (`GITHUB_ACTOR`, `GITLAB_USER_LOGIN`),
    /// else the login (`USER`, `LOGNAME`).
    pub who: String,
    /// The command: add, remove, move, export, import.
    pub action: String,
    pub tenant: TenantId,
    /// The tenant's declared tier before and after (`null`: not declared).
    pub tier_before: Option<Tier>,
    pub tier_after: Option<Tier>,
    /// `ok`, `drift` (done, verification failed), `failed`, `interrupted`.
    pub result: String,
    pub exit_code: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    pub tenantctl_version: String,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Who is acting, from the environment.
pub fn actor() -> String {
    [
        "TENANTCTL_ACTOR",
        "GITHUB_ACTOR",
        "GITLAB_USER_LOGIN",
        "USER",
        "LOGNAME",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    .unwrap_or_else(|| "unknown".into())
}

/// The result word of an exit code.
pub fn result_of(code: u8) -> &'static str {
    match code {
        0 => "ok",
        3 => "drift",
        crate::exit::INTERRUPTED => "interrupted",
        _ => "failed",
    }
}

/// Appends one event as one line.
pub fn append(state_dir: &Path, event: &Event) -> Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create `{}`", state_dir.display()))?;
    let p = path(state_dir);
    let mut line = serde_json::to_string(event)?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| format!("cannot open the audit log `{}`", p.display()))?;
    f.write_all(line.as_bytes())
        .with_context(|| format!("cannot append to the audit log `{}`", p.display()))
}

/// A tenant's events, oldest first. A line that does not parse is an error naming it.
pub fn read(state_dir: &Path, id: &TenantId) -> Result<Vec<Event>> {
    let p = path(state_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", p.display())),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(line)
            .with_context(|| format!("invalid audit event at `{}` line {}", p.display(), n + 1))?;
        if &e.tenant == id {
            out.push(e);
        }
    }
    Ok(out)
}

pub fn when(e: &Event) -> String {
    e.at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_append_as_lines_and_read_back_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let ev = |t: &str, action: &str| Event {
            at: Utc::now(),
            who: "ci".into(),
            action: action.into(),
            tenant: TenantId::parse(t).unwrap(),
            tier_before: None,
            tier_after: Some(Tier::Starter),
            result: "ok".into(),
            exit_code: 0,
            error: None,
            duration_ms: 12,
            tenantctl_version: "0".into(),
        };
        append(dir.path(), &ev("acme", "add")).unwrap();
        append(dir.path(), &ev("globex", "add")).unwrap();
        append(dir.path(), &ev("acme", "remove")).unwrap();
        let got = read(dir.path(), &TenantId::parse("acme").unwrap()).unwrap();
        assert_eq!(
            got.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["add", "remove"]
        );
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(!text.contains("\"error\""), "{text}");
        assert_eq!(result_of(0), "ok");
        assert_eq!(result_of(3), "drift");
        assert_eq!(result_of(1), "failed");
    }
}
