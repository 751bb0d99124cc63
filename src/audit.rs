//! The audit trail: one structured event per state-changing action tenantctl takes on a
//! tenant, appended as a JSON line to `.tenantctl/audit.jsonl` and copied to CloudWatch
//! Logs (`[audit] log_group`, default `/tenantctl/audit`, one stream per tenant named by
//! its id); `tenantctl log <id>` reads a tenant's history back from the local file.
//!
//! The local file is the record of this work dir; the CloudWatch copy is the one that
//! outlives a CI runner and gathers the events of every machine that acts on the fleet.
//!
//! Events are recorded around the whole command (`commands::run`), so every outcome is
//! recorded, a failure or an interrupt included, and no command can forget to. What an
//! event holds is chosen so that no secret can reach it: ids, tiers, the action, the exit
//! code and the one-line error tenantctl prints (which never holds a secret value).
//!
//! Each event is one `write` of one line to a file opened with `O_APPEND`, so runs in
//! parallel interleave whole lines. Recording is best effort: a failure to write (or to
//! reach CloudWatch Logs) is a warning on stderr, never a reason to report a finished
//! action as failed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::config::AwsSettings;
use crate::tenant::{TenantId, Tier};

pub const FILE: &str = "audit.jsonl";

/// `[audit]`: the CloudWatch Logs copy of the trail.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Copy events to CloudWatch Logs. Unset: on when an AWS region or endpoint is
    /// configured (as `[metrics] enabled`).
    pub cloudwatch: Option<bool>,
    /// The log group; created by tenantctl if missing (with `retention_days`).
    pub log_group: Option<String>,
    /// Retention of a log group tenantctl creates (one of CloudWatch's values).
    pub retention_days: Option<i32>,
}

/// The retention periods CloudWatch Logs accepts.
const RETENTION_DAYS: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

impl AuditConfig {
    pub const DEFAULT_LOG_GROUP: &str = "/tenantctl/audit";
    pub const DEFAULT_RETENTION_DAYS: i32 = 365;

    pub fn log_group(&self) -> &str {
        self.log_group.as_deref().unwrap_or(Self::DEFAULT_LOG_GROUP)
    }

    pub fn retention_days(&self) -> i32 {
        self.retention_days.unwrap_or(Self::DEFAULT_RETENTION_DAYS)
    }

    pub fn enabled(&self, aws: &AwsSettings) -> bool {
        self.cloudwatch
            .unwrap_or(aws.region.is_some() || aws.endpoint_url.is_some())
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(g) = &self.log_group {
            let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/#".contains(c);
            if g.is_empty() || g.len() > 512 || !g.chars().all(allowed) {
                bail!(
                    "[audit] log_group `{g}` is not a CloudWatch Logs group name: 1 to 512 letters, digits and `. _ - / #`"
                );
            }
        }
        if let Some(d) = self.retention_days
            && !RETENTION_DAYS.contains(&d)
        {
            bail!(
                "[audit] retention_days = {d} is not a CloudWatch Logs retention: one of {}",
                RETENTION_DAYS.map(|d| d.to_string()).join(", ")
            );
        }
        Ok(())
    }
}

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
    /// What changed, where the action says more than its name (`db migrate`: the
    /// versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub tenantctl_version: String,
}

impl Event {
    /// An event of an action on `tenant` that took `duration_ms` and ended with
    /// `exit_code`, by the actor of this environment, now.
    pub fn new(action: &str, tenant: TenantId, exit_code: u8, duration_ms: u64) -> Event {
        Event {
            at: Utc::now(),
            who: actor(),
            action: action.to_string(),
            tenant,
            tier_before: None,
            tier_after: None,
            result: result_of(exit_code).to_string(),
            exit_code,
            error: None,
            duration_ms,
            detail: None,
            tenantctl_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
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

/// Records events: appended to the local file, then copied to CloudWatch Logs. Best
/// effort, as the module says: failures are warnings.
pub async fn record(state_dir: &Path, aws: &AwsSettings, cfg: &AuditConfig, events: &[Event]) {
    for e in events {
        if let Err(err) = append(state_dir, e) {
            tracing::warn!(
                "the audit event of `{} {}` was not recorded: {err:#}",
                e.action,
                e.tenant
            );
        }
    }
    // An action on an id that was declared neither before nor after it was refused
    // before it reached AWS (an unknown tenant, bad input): it stays in the local file
    // and makes no cloud call.
    let events: Vec<Event> = events
        .iter()
        .filter(|e| e.tier_before.is_some() || e.tier_after.is_some())
        .cloned()
        .collect();
    let aws = aws.effective();
    if events.is_empty() || !cfg.enabled(&aws) {
        return;
    }
    let clients = crate::aws::AwsClients::new(&aws).await;
    if let Err(err) = ship(&clients.logs, cfg, &events).await {
        tracing::warn!(
            "{} audit event(s) were not copied to CloudWatch Logs `{}` (they are in `{}`): {err:#}",
            events.len(),
            cfg.log_group(),
            path(state_dir).display()
        );
    }
}

/// Copies events to CloudWatch Logs, one stream per tenant, a few tenants at a time
/// (PutLogEvents is limited per stream, not per group).
pub async fn ship(
    client: &aws_sdk_cloudwatchlogs::Client,
    cfg: &AuditConfig,
    events: &[Event],
) -> Result<()> {
    let mut by_tenant: BTreeMap<&TenantId, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_tenant.entry(&e.tenant).or_default().push(e);
    }
    let group = cfg.log_group();
    let results: Vec<Result<()>> = futures::stream::iter(by_tenant)
        .map(|(tenant, mut evs)| async move {
            // A stream's events go in one call, in time order.
            evs.sort_by_key(|e| e.at);
            let batch = evs
                .iter()
                .map(|e| {
                    Ok(InputLogEvent::builder()
                        .timestamp(e.at.timestamp_millis())
                        .message(serde_json::to_string(e)?)
                        .build()?)
                })
                .collect::<Result<Vec<_>>>()?;
            // The stream exists after a tenant's first event: put first, and create the
            // stream (and the group) only when CloudWatch says it is missing, so a fleet
            // run makes one call per tenant, not two.
            let put = || {
                client
                    .put_log_events()
                    .log_group_name(group)
                    .log_stream_name(tenant.as_str())
                    .set_log_events(Some(batch.clone()))
                    .send()
            };
            let sent = match put().await {
                Err(e) if e.code() == Some("ResourceNotFoundException") => {
                    ensure_stream(client, cfg, tenant.as_str()).await?;
                    put().await
                }
                other => other,
            };
            sent.map_err(|e| anyhow::anyhow!(crate::aws::describe_error(&e)))
                .with_context(|| format!("PutLogEvents to stream `{tenant}`"))?;
            Ok(())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The tenant's stream, and the group if it is missing (created with the configured
/// retention: the platform may also create it, with its own settings).
async fn ensure_stream(
    client: &aws_sdk_cloudwatchlogs::Client,
    cfg: &AuditConfig,
    stream: &str,
) -> Result<()> {
    let group = cfg.log_group();
    let create_stream = || async {
        match client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(None),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(Some(e)),
            Err(e) => Err(anyhow::anyhow!(crate::aws::describe_error(&e)))
                .with_context(|| format!("CreateLogStream `{stream}` in `{group}`")),
        }
    };
    if create_stream().await?.is_none() {
        return Ok(());
    }
    match client.create_log_group().log_group_name(group).send().await {
        Ok(_) => {
            client
                .put_retention_policy()
                .log_group_name(group)
                .retention_in_days(cfg.retention_days())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(crate::aws::describe_error(&e)))
                .with_context(|| format!("PutRetentionPolicy on `{group}`"))?;
        }
        Err(e) if e.code() == Some("ResourceAlreadyExistsException") => {}
        Err(e) => {
            return Err(anyhow::anyhow!(crate::aws::describe_error(&e)))
                .with_context(|| format!("CreateLogGroup `{group}`"));
        }
    }
    match create_stream().await? {
        None => Ok(()),
        Some(e) => Err(anyhow::anyhow!(crate::aws::describe_error(&e)))
            .with_context(|| format!("CreateLogStream `{stream}` in `{group}`")),
    }
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
            detail: None,
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

    #[test]
    fn audit_config_names_the_bad_value_and_the_rule() {
        let ok = AuditConfig::default();
        ok.validate().unwrap();
        assert_eq!(ok.log_group(), "/tenantctl/audit");
        assert_eq!(ok.retention_days(), 365);
        let bad = AuditConfig {
            log_group: Some("audit log".into()),
            ..AuditConfig::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("`audit log`") && e.contains("1 to 512"), "{e}");
        let bad = AuditConfig {
            retention_days: Some(2),
            ..AuditConfig::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("retention_days = 2") && e.contains("365"), "{e}");
        let aws = AwsSettings::default();
        assert!(!ok.enabled(&aws), "no AWS settings: no copy unless asked");
        let on = AuditConfig {
            cloudwatch: Some(true),
            ..AuditConfig::default()
        };
        assert!(on.enabled(&aws));
    }
}
