//! The subprocess wrapper around `terraform` (or `tofu`).
//!
//! Every run: `CHECKPOINT_DISABLE=1`, `-input=false`, its own process group, stdin closed,
//! stdout and stderr read concurrently (a child that fills one pipe while the parent reads
//! the other deadlocks), both appended to the tenant's log file. Plans and applies use
//! `-json`, whose UI events drive the progress line and whose diagnostics become the error
//! text. Ctrl-C reaches only tenantctl (the child has its own process group); tenantctl
//! forwards exactly one SIGINT so Terraform stops gracefully — it finishes the resource in
//! flight, persists state and releases the lock — and then reports [`Interrupted`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::exit::Interrupted;
use crate::interrupt::Interrupt;

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum TerraformError {
    #[error(
        "cannot run `{binary}`: {source}\nhint: install Terraform >= 1.11 (or set `TENANTCTL_TERRAFORM` / `[terraform] binary`)"
    )]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state of `{label}` is locked by another run (lock {id}, held by {who}, operation {operation}, since {created})\nhint: wait for that run to finish and rerun, or pass `--lock-timeout SECONDS` to wait for it"
    )]
    Locked {
        label: String,
        id: String,
        who: String,
        operation: String,
        created: String,
    },
    #[error("`{command}` failed for `{label}` (exit {code}):\n{message}")]
    Failed {
        label: String,
        command: String,
        code: i32,
        message: String,
    },
}

/// Resources Terraform will (or did) add, change and destroy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    pub add: u64,
    pub change: u64,
    pub remove: u64,
}

impl ChangeSummary {
    pub fn is_empty(&self) -> bool {
        self.add == 0 && self.change == 0 && self.remove == 0
    }
}

impl std::fmt::Display for ChangeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to add, {} to change, {} to destroy",
            self.add, self.change, self.remove
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub destroy: bool,
    /// Seconds to wait for a held state lock.
    pub lock_timeout: u64,
    /// Resource addresses to replace (`-replace=ADDR`).
    pub replace: Vec<String>,
}

/// One Terraform working directory and how to run Terraform in it.
#[derive(Clone)]
pub struct Terraform {
    binary: String,
    dir: PathBuf,
    label: String,
    log: Arc<Mutex<Option<std::fs::File>>>,
    interrupt: Interrupt,
    progress: ProgressBar,
}

struct RunResult {
    code: i32,
    stdout: String,
    diagnostics: Vec<String>,
    stderr: String,
    changes: Option<ChangeSummary>,
}

impl Terraform {
    /// `label` names the root in messages (the tenant id, or `platform`).
    pub fn new(
        binary: impl Into<String>,
        dir: impl Into<PathBuf>,
        label: impl Into<String>,
        log_path: Option<&Path>,
        interrupt: Interrupt,
    ) -> Result<Terraform> {
        let log = match log_path {
            Some(p) => {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .with_context(|| format!("cannot open log `{}`", p.display()))?,
                )
            }
            None => None,
        };
        Ok(Terraform {
            binary: binary.into(),
            dir: dir.into(),
            label: label.into(),
            log: Arc::new(Mutex::new(log)),
            interrupt,
            progress: ProgressBar::hidden(),
        })
    }

    /// Shows Terraform's progress on this bar.
    pub fn with_progress(mut self, bar: ProgressBar) -> Terraform {
        self.progress = bar;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn log_line(&self, line: &str) {
        if let Some(f) = self.log.lock().unwrap().as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }

    /// `terraform init`. Local modules and the provider mirror make this cheap (~0.6 s).
    pub async fn init(&self) -> Result<()> {
        self.progress.set_message("init");
        let r = self
            .run(
                &["init", "-input=false", "-no-color", "-reconfigure"],
                false,
            )
            .await?;
        self.check(&r, "terraform init")?;
        Ok(())
    }

    /// `terraform plan -out=tfplan -detailed-exitcode`; returns the pending changes
    /// (empty when there are none).
    pub async fn plan(&self, opts: PlanOptions) -> Result<ChangeSummary> {
        self.progress.set_message("plan");
        let lock = format!("-lock-timeout={}s", opts.lock_timeout);
        let replace: Vec<String> = opts
            .replace
            .iter()
            .map(|a| format!("-replace={a}"))
            .collect();
        let mut args = vec![
            "plan",
            "-input=false",
            "-json",
            "-out=tfplan",
            "-detailed-exitcode",
            &lock,
        ];
        if opts.destroy {
            args.push("-destroy");
        }
        args.extend(replace.iter().map(String::as_str));
        let r = self.run(&args, true).await?;
        match r.code {
            0 => Ok(ChangeSummary::default()),
            2 => Ok(r.changes.unwrap_or(ChangeSummary {
                add: 0,
                change: 1,
                remove: 0,
            })),
            _ => {
                self.check(&r, "terraform plan")?;
                unreachable!("check fails on a non-zero exit")
            }
        }
    }

    /// Applies the saved plan and removes it (a plan file is not kept lying around).
    pub async fn apply_plan(&self, lock_timeout: u64) -> Result<ChangeSummary> {
        self.progress.set_message("apply");
        let lock = format!("-lock-timeout={lock_timeout}s");
        let r = self
            .run(&["apply", "-input=false", "-json", &lock, "tfplan"], true)
            .await;
        let _ = std::fs::remove_file(self.dir.join("tfplan"));
        let r = r?;
        self.check(&r, "terraform apply")?;
        Ok(r.changes.unwrap_or_default())
    }

    /// `terraform output -json`.
    pub async fn output_json(&self) -> Result<serde_json::Value> {
        let r = self.run(&["output", "-json", "-no-color"], false).await?;
        self.check(&r, "terraform output")?;
        serde_json::from_str(&r.stdout)
            .with_context(|| format!("`terraform output -json` for `{}` is not JSON", self.label))
    }

    /// Destroys everything in the root: a destroy plan, then its apply.
    pub async fn destroy(&self, lock_timeout: u64) -> Result<ChangeSummary> {
        let pending = self
            .plan(PlanOptions {
                destroy: true,
                lock_timeout,
                replace: Vec::new(),
            })
            .await?;
        if pending.is_empty() {
            let _ = std::fs::remove_file(self.dir.join("tfplan"));
            return Ok(pending);
        }
        self.apply_plan(lock_timeout).await
    }

    fn check(&self, r: &RunResult, command: &str) -> Result<()> {
        if r.code == 0 {
            return Ok(());
        }
        let mut message = if r.diagnostics.is_empty() {
            r.stderr.trim().to_string()
        } else {
            r.diagnostics.join("\n")
        };
        if let Some(lock) = parse_lock_error(&message, &self.label) {
            return Err(lock.into());
        }
        if message.is_empty() {
            message = "(no error text; see the log)".into();
        }
        Err(TerraformError::Failed {
            label: self.label.clone(),
            command: format!("{command} (in {})", self.dir.display()),
            code: r.code,
            message,
        }
        .into())
    }

    async fn run(&self, args: &[&str], json_ui: bool) -> Result<RunResult> {
        // Refuse to start new work once interrupted; work in flight finishes gracefully.
        self.interrupt.check()?;
        self.log_line(&format!(
            "$ {} {} (in {})",
            self.binary,
            args.join(" "),
            self.dir.display()
        ));
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|source| TerraformError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let me = self.clone();
        let out_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut text = String::new();
            let mut diagnostics = Vec::new();
            let mut changes = None;
            while let Ok(Some(line)) = lines.next_line().await {
                me.log_line(&line);
                if json_ui {
                    if let Ok(ev) = serde_json::from_str::<UiEvent>(&line) {
                        me.handle_event(&ev, &mut diagnostics, &mut changes);
                    }
                } else {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            (text, diagnostics, changes)
        });
        let me = self.clone();
        let err_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut text = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                me.log_line(&line);
                text.push_str(&line);
                text.push('\n');
            }
            text
        });

        let mut interrupted = false;
        let status = tokio::select! {
            s = child.wait() => s?,
            _ = self.interrupt.wait() => {
                interrupted = true;
                if let Some(pid) = pid {
                    // One SIGINT: graceful stop. A second would make Terraform abort hard.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
                }
                self.progress.set_message("interrupted: waiting for Terraform to save state");
                child.wait().await?
            }
        };
        let (stdout, diagnostics, changes) = out_task.await?;
        let stderr = err_task.await?;
        let code = status.code().unwrap_or(-1);
        self.log_line(&format!("# exit {code}"));
        if interrupted {
            return Err(anyhow::Error::new(Interrupted).context(format!(
                "`terraform {}` for `{}` was interrupted (exit {code}); state was saved",
                args[0], self.label
            )));
        }
        Ok(RunResult {
            code,
            stdout,
            diagnostics,
            stderr,
            changes,
        })
    }

    fn handle_event(
        &self,
        ev: &UiEvent,
        diagnostics: &mut Vec<String>,
        changes: &mut Option<ChangeSummary>,
    ) {
        match ev.kind.as_str() {
            "diagnostic" => {
                if let Some(d) = &ev.diagnostic
                    && d.severity == "error"
                {
                    let mut s = format!("Error: {}", d.summary);
                    if !d.detail.is_empty() {
                        s.push_str("\n  ");
                        s.push_str(&d.detail.replace('\n', "\n  "));
                    }
                    if let Some(addr) = &d.address {
                        s.push_str(&format!("\n  (resource {addr})"));
                    }
                    diagnostics.push(s);
                }
            }
            "change_summary" => {
                if let Some(c) = ev.changes {
                    *changes = Some(c);
                }
            }
            "apply_start" | "apply_progress" | "apply_complete" | "refresh_start"
            | "planned_change" => {
                self.progress.set_message(shorten(&ev.message, 80));
            }
            _ => {}
        }
    }
}

#[derive(Debug, Deserialize)]
struct UiEvent {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "@message", default)]
    message: String,
    #[serde(default)]
    diagnostic: Option<Diagnostic>,
    #[serde(default)]
    changes: Option<ChangeSummary>,
}

#[derive(Debug, Deserialize)]
struct Diagnostic {
    #[serde(default)]
    severity: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    address: Option<String>,
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

/// Terraform reports a held lock as "Error acquiring the state lock" followed by the
/// lock's ID, Who, Operation and Created lines.
fn parse_lock_error(message: &str, label: &str) -> Option<TerraformError> {
    if !message.contains("Error acquiring the state lock") {
        return None;
    }
    let field = |name: &str| {
        message
            .lines()
            .find_map(|l| {
                let l = l.trim();
                l.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into())
    };
    Some(TerraformError::Locked {
        label: label.to_string(),
        id: field("ID"),
        who: field("Who"),
        operation: field("Operation"),
        created: field("Created"),
    })
}

pub fn humanize(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_error_names_holder() {
        let msg = "Error: Error acquiring the state lock\n  \n  Error message: lock held\n  Lock Info:\n    ID:        7f3c\n    Path:      b/k\n    Operation: OperationTypeApply\n    Who:       ci@runner-2\n    Version:   1.11.4\n    Created:   2026-11-23 10:00:00 UTC\n";
        let e = parse_lock_error(msg, "acme-corp").unwrap().to_string();
        assert!(e.contains("`acme-corp`"), "{e}");
        assert!(e.contains("ci@runner-2"), "{e}");
        assert!(e.contains("7f3c"), "{e}");
        assert!(e.contains("OperationTypeApply"), "{e}");
        assert!(parse_lock_error("Error: something else", "x").is_none());
    }

    #[test]
    fn change_summary_from_ui_event() {
        let ev: UiEvent = serde_json::from_str(
            r#"{"@level":"info","@message":"Plan: 3 to add, 0 to change, 0 to destroy.","type":"change_summary","changes":{"add":3,"change":0,"import":0,"remove":0,"operation":"plan"}}"#,
        )
        .unwrap();
        assert_eq!(
            ev.changes.unwrap(),
            ChangeSummary {
                add: 3,
                change: 0,
                remove: 0
            }
        );
    }
}
