//! The subprocess wrapper around `terraform` (or `tofu`).
//!
//! Every run: `CHECKPOINT_DISABLE=1`, `-input=false`, its own process group, stdin closed.
//! Terraform's stdout and stderr go to files beside the tenant's log, never to a pipe:
//! a pipe ties Terraform's life to tenantctl's (a killed tenantctl makes Terraform die of
//! SIGPIPE mid-apply, with created resources missing from state). tenantctl follows the
//! files while the child runs, appends them to the log, and reads the `-json` UI events
//! from them (progress line, diagnostics for the error text, the change summary).
//!
//! While Terraform runs, a marker in the root (`.tenantctl-terraform.json`: pid, command,
//! start time) says who holds the tenant. A run that finds a live marker (tenantctl was
//! killed, Terraform lives on) waits for that Terraform up to `--lock-timeout`, or fails
//! with [`TerraformError::Busy`] (exit 4); a marker whose process is gone is removed.
//!
//! Ctrl-C reaches only tenantctl (the child has its own process group); tenantctl forwards
//! it as Terraform's CLI expects (see [`crate::interrupt`]): a first SIGINT stops Terraform
//! gracefully, a second makes it abort at once; then it reports [`Interrupted`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::backend::StateLocation;
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
    #[error(
        "`{label}` is held by a Terraform process still running: pid {pid} (`{command}`), started {since} ({ago} ago)\nhint: it finishes, saves state and releases the lock on its own (its output is in `{output}`); rerun later, or pass `--lock-timeout SECONDS` to wait for it"
    )]
    Busy {
        label: String,
        pid: u32,
        command: String,
        since: String,
        ago: String,
        output: String,
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
    /// Resources imported (adopted orphans, see `crate::adopt`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub import: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ChangeSummary {
    pub fn is_empty(&self) -> bool {
        self.add == 0 && self.change == 0 && self.remove == 0 && self.import == 0
    }
}

impl std::fmt::Display for ChangeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to add, {} to change, {} to destroy",
            self.add, self.change, self.remove
        )?;
        if self.import > 0 {
            write!(f, ", {} to import", self.import)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub destroy: bool,
    /// Seconds to wait for a held state lock.
    pub lock_timeout: u64,
    /// Resource addresses to replace (`-replace=ADDR`).
    pub replace: Vec<String>,
    /// Addresses to plan alone (`-target=ADDR`): in a cell, the module instances of the
    /// tenants being worked on, so the others are neither refreshed nor touched.
    pub targets: Vec<String>,
}

/// What Terraform reported for one tenant's module instance (`module.tenant["<id>"]`)
/// of a root holding several: how a cell's plan and apply are told apart per tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantEvents {
    /// Changes planned for the tenant's resources.
    pub planned: ChangeSummary,
    /// Changes completed during an apply.
    pub applied: ChangeSummary,
    /// Error diagnostics on the tenant's resources.
    pub errors: Vec<String>,
}

/// The tenant id of a resource or module address inside `module.tenant["<id>"]`.
pub fn tenant_of_address(addr: &str) -> Option<&str> {
    let rest = addr.strip_prefix("module.tenant[\"")?;
    rest.split_once("\"]").map(|(id, _)| id)
}

fn count_action(c: &mut ChangeSummary, action: &str) {
    match action {
        "create" => c.add += 1,
        "update" => c.change += 1,
        "delete" | "remove" => c.remove += 1,
        "replace" => {
            c.add += 1;
            c.remove += 1;
        }
        "import" => c.import += 1,
        _ => {}
    }
}

/// One Terraform working directory and how to run Terraform in it.
#[derive(Clone)]
pub struct Terraform {
    binary: String,
    dir: PathBuf,
    label: String,
    log: Arc<Mutex<Option<std::fs::File>>>,
    log_path: Option<PathBuf>,
    /// Numbers the output files of this root's runs.
    seq: Arc<AtomicU32>,
    /// Seconds to wait for a Terraform an earlier run left running (the last
    /// `--lock-timeout` seen: set by the builder, and by each plan or apply).
    lock_timeout: Arc<AtomicU64>,
    interrupt: Interrupt,
    progress: ProgressBar,
    /// Where the config wants this root's state; `init` refuses to start elsewhere.
    backend: Option<Arc<StateLocation>>,
}

struct RunResult {
    code: i32,
    stdout: String,
    diagnostics: Vec<String>,
    stderr: String,
    changes: Option<ChangeSummary>,
    tenants: BTreeMap<String, TenantEvents>,
}

/// A plan of a root holding several tenants: the total and each tenant's share, or the
/// error with the tenants its diagnostics name.
#[derive(Debug, Default)]
pub struct CellPlan {
    pub changes: ChangeSummary,
    pub tenants: BTreeMap<String, TenantEvents>,
    pub error: Option<anyhow::Error>,
}

/// An apply of a root holding several tenants: what completed per tenant, and the
/// error, if Terraform failed (some tenants may be complete all the same).
#[derive(Debug)]
pub struct CellApply {
    pub changes: ChangeSummary,
    pub tenants: BTreeMap<String, TenantEvents>,
    pub error: Option<anyhow::Error>,
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
            log_path: log_path.map(Path::to_path_buf),
            seq: Arc::new(AtomicU32::new(0)),
            lock_timeout: Arc::new(AtomicU64::new(0)),
            interrupt,
            progress: ProgressBar::hidden(),
            backend: None,
        })
    }

    /// Shows Terraform's progress on this bar.
    pub fn with_progress(mut self, bar: ProgressBar) -> Terraform {
        self.progress = bar;
        self
    }

    /// Seconds to wait for a Terraform still running from an earlier (killed) run before
    /// starting this root's first command (`init`); plans and applies use their own.
    pub fn with_lock_timeout(self, seconds: u64) -> Terraform {
        self.lock_timeout.store(seconds, Ordering::SeqCst);
        self
    }

    /// Where the config wants the root's state: `init` fails with
    /// [`BackendChanged`](crate::backend::BackendChanged) when the root keeps it elsewhere.
    pub fn with_backend(mut self, wanted: StateLocation) -> Terraform {
        self.backend = Some(Arc::new(wanted));
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
    /// `-reconfigure` because the backend's settings that do not name the state (an
    /// emulator's endpoint) may change between runs; a change of where the state is goes
    /// through [`crate::backend::check_unchanged`] first.
    pub async fn init(&self) -> Result<()> {
        self.progress.set_message("init");
        if let Some(wanted) = &self.backend {
            crate::backend::check_unchanged(&self.label, &self.dir, wanted)?;
        }
        self.init_reconfigure().await
    }

    /// `terraform init -reconfigure` without the backend check: for `state migrate`,
    /// which has just checked what is where.
    pub async fn init_reconfigure(&self) -> Result<()> {
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

    /// `terraform init -migrate-state -force-copy`: copies the state from where the root
    /// kept it at its last `init` to where its backend block now says (the caller has
    /// checked that nothing is there yet).
    pub async fn init_migrate(&self, lock_timeout: u64) -> Result<()> {
        self.progress.set_message("init -migrate-state");
        let lock = format!("-lock-timeout={lock_timeout}s");
        let r = self
            .run(
                &[
                    "init",
                    "-input=false",
                    "-no-color",
                    "-migrate-state",
                    "-force-copy",
                    &lock,
                ],
                false,
            )
            .await?;
        self.check(&r, "terraform init -migrate-state")?;
        Ok(())
    }

    /// `terraform plan -out=tfplan -detailed-exitcode`; returns the pending changes
    /// (empty when there are none).
    pub async fn plan(&self, opts: PlanOptions) -> Result<ChangeSummary> {
        let plan = self.plan_cell(opts).await?;
        match plan.error {
            Some(e) => Err(e),
            None => Ok(plan.changes),
        }
    }

    /// [`plan`](Self::plan) of a root holding several tenants: also each tenant's share.
    pub async fn plan_cell(&self, opts: PlanOptions) -> Result<CellPlan> {
        self.progress.set_message("plan");
        self.lock_timeout.store(opts.lock_timeout, Ordering::SeqCst);
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
        let targets: Vec<String> = opts
            .targets
            .iter()
            .map(|a| format!("-target={a}"))
            .collect();
        args.extend(targets.iter().map(String::as_str));
        let r = self.run(&args, true).await?;
        match r.code {
            0 => Ok(CellPlan {
                tenants: r.tenants,
                ..CellPlan::default()
            }),
            2 => Ok(CellPlan {
                changes: r.changes.unwrap_or(ChangeSummary {
                    change: 1,
                    ..ChangeSummary::default()
                }),
                tenants: r.tenants,
                error: None,
            }),
            _ => {
                let error = self.check(&r, "terraform plan").err();
                Ok(CellPlan {
                    changes: ChangeSummary::default(),
                    tenants: r.tenants,
                    error,
                })
            }
        }
    }

    /// Applies the saved plan of a root holding several tenants. A failed apply is not
    /// an `Err`: the caller reports each tenant as what happened to it.
    pub async fn apply_plan_cell(&self, lock_timeout: u64) -> Result<CellApply> {
        self.progress.set_message("apply");
        self.lock_timeout.store(lock_timeout, Ordering::SeqCst);
        let lock = format!("-lock-timeout={lock_timeout}s");
        let r = self
            .run(&["apply", "-input=false", "-json", &lock, "tfplan"], true)
            .await;
        let _ = std::fs::remove_file(self.dir.join("tfplan"));
        let r = r?;
        let error = self.check(&r, "terraform apply").err();
        Ok(CellApply {
            changes: r.changes.unwrap_or_default(),
            tenants: r.tenants,
            error,
        })
    }

    /// Applies the saved plan and removes it (a plan file is not kept lying around).
    pub async fn apply_plan(&self, lock_timeout: u64) -> Result<ChangeSummary> {
        let applied = self.apply_plan_cell(lock_timeout).await?;
        match applied.error {
            Some(e) => Err(e),
            None => Ok(applied.changes),
        }
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
        self.destroy_targets(lock_timeout, Vec::new()).await
    }

    /// Destroys `targets` only (everything when empty): one tenant of a cell.
    pub async fn destroy_targets(
        &self,
        lock_timeout: u64,
        targets: Vec<String>,
    ) -> Result<ChangeSummary> {
        let pending = self
            .plan(PlanOptions {
                destroy: true,
                lock_timeout,
                replace: Vec::new(),
                targets,
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

    /// `terraform state rm`: Terraform forgets `address` (the resource itself stays).
    pub async fn state_rm(&self, address: &str, lock_timeout: u64) -> Result<()> {
        let lock = format!("-lock-timeout={lock_timeout}s");
        let r = self
            .run(&["state", "rm", "-no-color", &lock, address], false)
            .await?;
        self.check(&r, "terraform state rm")
    }

    /// `terraform state pull`: the root's state as JSON, None when it has none yet.
    pub async fn state_pull(&self) -> Result<Option<serde_json::Value>> {
        let r = self.run_logged(&["state", "pull"], false, false).await?;
        self.check(&r, "terraform state pull")?;
        if r.stdout.trim().is_empty() {
            return Ok(None);
        }
        let v: serde_json::Value = serde_json::from_str(&r.stdout)
            .with_context(|| format!("`terraform state pull` for `{}` is not JSON", self.label))?;
        Ok(Some(v))
    }

    /// `terraform state push`: replaces the root's state with `state` (same lineage, a
    /// higher serial, or a root without state), under the state lock.
    pub async fn state_push(&self, state: &serde_json::Value, lock_timeout: u64) -> Result<()> {
        let file = self.dir.join(".tenantctl-push.tfstate");
        crate::fsutil::write_atomic(&file, serde_json::to_string(state)?.as_bytes())?;
        let lock = format!("-lock-timeout={lock_timeout}s");
        let r = self
            .run(&["state", "push", &lock, ".tenantctl-push.tfstate"], false)
            .await;
        let _ = std::fs::remove_file(&file);
        self.check(&r?, "terraform state push")
    }

    /// `terraform state list`: the addresses in the root's state (empty before the first
    /// apply).
    pub async fn state_list(&self) -> Result<Vec<String>> {
        let r = self.run(&["state", "list", "-no-color"], false).await?;
        if r.code != 0 && r.stderr.contains("No state file was found") {
            return Ok(Vec::new());
        }
        self.check(&r, "terraform state list")?;
        Ok(r.stdout.lines().map(str::to_string).collect())
    }

    /// Where a run's stdout and stderr go: beside the tenant's log (or in the root).
    fn output_paths(&self, subcommand: &str) -> (PathBuf, PathBuf) {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let (dir, stem) = match &self.log_path {
            Some(p) => (
                p.parent().map(Path::to_path_buf).unwrap_or_default(),
                p.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            None => (self.dir.clone(), ".terraform-run".to_string()),
        };
        let base = format!("{stem}.{n}-{subcommand}");
        (
            dir.join(format!("{base}.stdout")),
            dir.join(format!("{base}.stderr")),
        )
    }

    /// Waits for a Terraform that an earlier run started in this root and that is still
    /// running (that run was killed); removes a marker whose process is gone.
    async fn wait_for_orphan(&self) -> Result<()> {
        let timeout = Duration::from_secs(self.lock_timeout.load(Ordering::SeqCst));
        let deadline = Instant::now() + timeout;
        let mut announced = false;
        loop {
            let Some(m) = RunMarker::read(&self.dir) else {
                return Ok(());
            };
            if !m.alive() {
                if !announced {
                    self.log_line(&format!(
                        "# removed a stale marker: pid {} (`{}`, started {}) is gone",
                        m.pid, m.command, m.started
                    ));
                }
                RunMarker::remove(&self.dir);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let ago = (Utc::now() - m.started).to_std().unwrap_or_default();
                return Err(TerraformError::Busy {
                    label: self.label.clone(),
                    pid: m.pid,
                    command: m.command.clone(),
                    since: m.started.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    ago: humanize(ago),
                    output: m.output.display().to_string(),
                }
                .into());
            }
            if !announced {
                announced = true;
                let msg = format!(
                    "{}: waiting for Terraform pid {} (`{}`, started {}) still running from an earlier run",
                    self.label,
                    m.pid,
                    m.command,
                    m.started.format("%H:%M:%S UTC")
                );
                self.log_line(&format!("# {msg}"));
                self.progress
                    .set_message("waiting for an earlier Terraform");
                crate::output::status_line(&msg);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = self.interrupt.wait() => return Err(Interrupted.into()),
            }
        }
    }

    async fn run(&self, args: &[&str], json_ui: bool) -> Result<RunResult> {
        self.run_logged(args, json_ui, true).await
    }

    /// [`run`](Self::run); `log_stdout` false keeps a large stdout (a state) out of the
    /// log.
    async fn run_logged(
        &self,
        args: &[&str],
        json_ui: bool,
        log_stdout: bool,
    ) -> Result<RunResult> {
        // Refuse to start new work once interrupted; work in flight finishes gracefully.
        self.interrupt.check()?;
        self.wait_for_orphan().await?;
        let (out_path, err_path) = self.output_paths(args[0]);
        let create = |p: &Path| {
            std::fs::File::create(p).with_context(|| format!("cannot create `{}`", p.display()))
        };
        let out_file = create(&out_path)?;
        let err_file = create(&err_path)?;
        let command = format!("{} {}", self.binary, args.join(" "));
        self.log_line(&format!("$ {command} (in {})", self.dir.display()));
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::from(err_file))
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|source| TerraformError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let pid = child.id();
        if let Some(pid) = pid {
            RunMarker {
                pid,
                proc_start: proc_start_ticks(pid),
                command: command.clone(),
                started: Utc::now(),
                tenantctl_pid: std::process::id(),
                output: out_path.clone(),
            }
            .write(&self.dir);
        }

        let done = Arc::new(AtomicBool::new(false));
        let me = self.clone();
        let out_task = tokio::spawn(follow(out_path.clone(), done.clone(), {
            let mut text = String::new();
            let mut diagnostics = Vec::new();
            let mut changes = None;
            let mut tenants = BTreeMap::new();
            move |line: Option<&str>| match line {
                Some(line) => {
                    if log_stdout {
                        me.log_line(line);
                    }
                    if json_ui {
                        if let Ok(ev) = serde_json::from_str::<UiEvent>(line) {
                            me.handle_event(&ev, &mut diagnostics, &mut changes, &mut tenants);
                        }
                    } else {
                        text.push_str(line);
                        text.push('\n');
                    }
                    None
                }
                None => Some((
                    std::mem::take(&mut text),
                    std::mem::take(&mut diagnostics),
                    changes.take(),
                    std::mem::take(&mut tenants),
                )),
            }
        }));
        let me = self.clone();
        let err_task = tokio::spawn(follow(err_path.clone(), done.clone(), {
            let mut text = String::new();
            move |line: Option<&str>| match line {
                Some(line) => {
                    me.log_line(line);
                    text.push_str(line);
                    text.push('\n');
                    None
                }
                None => Some(std::mem::take(&mut text)),
            }
        }));

        let sigint = |why: &str| {
            if let Some(pid) = pid {
                self.log_line(&format!("# {why}: SIGINT to pid {pid}"));
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
            }
        };
        let mut interrupted = false;
        let mut aborted = false;
        let status = tokio::select! {
            s = child.wait() => s?,
            _ = self.interrupt.wait() => {
                interrupted = true;
                // First SIGINT: Terraform stops gracefully.
                sigint("interrupt");
                self.progress.set_message("interrupted: waiting for Terraform to save state");
                tokio::select! {
                    s = child.wait() => s?,
                    _ = self.interrupt.wait_hard() => {
                        // Second: Terraform aborts at once, as its own CLI does.
                        aborted = true;
                        sigint("second interrupt");
                        self.progress.set_message("aborting Terraform");
                        child.wait().await?
                    }
                }
            }
        };
        RunMarker::remove_if_pid(&self.dir, pid);
        done.store(true, Ordering::SeqCst);
        let (stdout, diagnostics, changes, tenants) = out_task.await??;
        let stderr = err_task.await??;
        // Everything is in the log now; the files stay only when tenantctl dies first.
        let _ = std::fs::remove_file(&out_path);
        let _ = std::fs::remove_file(&err_path);
        let code = status.code().unwrap_or(-1);
        self.log_line(&format!("# exit {code}"));
        if interrupted {
            let how = if aborted {
                "aborted by a second interrupt: resources in flight may be missing from state; the next apply adopts them"
            } else {
                "state was saved"
            };
            return Err(anyhow::Error::new(Interrupted).context(format!(
                "`terraform {}` for `{}` was interrupted (exit {code}); {how}",
                args[0], self.label
            )));
        }
        Ok(RunResult {
            code,
            stdout,
            diagnostics,
            stderr,
            changes,
            tenants,
        })
    }

    fn handle_event(
        &self,
        ev: &UiEvent,
        diagnostics: &mut Vec<String>,
        changes: &mut Option<ChangeSummary>,
        tenants: &mut BTreeMap<String, TenantEvents>,
    ) {
        // Per-tenant bookkeeping for roots holding several tenants (cells).
        let resource = ev.change.as_ref().or(ev.hook.as_ref()).and_then(|c| {
            c.resource
                .as_ref()
                .map(|r| (r.addr.as_str(), c.action.as_str()))
        });
        if let Some((addr, action)) = resource
            && let Some(id) = tenant_of_address(addr)
        {
            let t = tenants.entry(id.to_string()).or_default();
            match ev.kind.as_str() {
                "planned_change" => count_action(&mut t.planned, action),
                "apply_complete" => count_action(&mut t.applied, action),
                _ => {}
            }
        }
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
                        if let Some(id) = tenant_of_address(addr) {
                            tenants
                                .entry(id.to_string())
                                .or_default()
                                .errors
                                .push(s.clone());
                        }
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
    /// `planned_change` events.
    #[serde(default)]
    change: Option<ResourceAction>,
    /// `apply_*` events.
    #[serde(default)]
    hook: Option<ResourceAction>,
}

#[derive(Debug, Deserialize)]
struct ResourceAction {
    #[serde(default)]
    resource: Option<ResourceRef>,
    #[serde(default)]
    action: String,
}

#[derive(Debug, Deserialize)]
struct ResourceRef {
    #[serde(default)]
    addr: String,
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

/// Follows a file another process writes (Terraform's output), handing each complete
/// line to `sink(Some(line))` while the writer runs; once `done` is set (the writer has
/// exited) it reads to the end and returns `sink(None)`.
async fn follow<T, F>(path: PathBuf, done: Arc<AtomicBool>, mut sink: F) -> Result<T>
where
    F: FnMut(Option<&str>) -> Option<T>,
{
    let mut file = tokio::fs::File::open(&path)
        .await
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut ending = false;
    loop {
        let n = file.read(&mut chunk).await?;
        if n > 0 {
            pending.extend_from_slice(&chunk[..n]);
            while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line[..i]);
                sink(Some(line.trim_end_matches('\r')));
            }
            continue;
        }
        if ending {
            break;
        }
        // Read once more after the writer is seen done: what it wrote last is drained.
        ending = done.load(Ordering::SeqCst);
        if !ending {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if !pending.is_empty() {
        sink(Some(&String::from_utf8_lossy(&pending)));
    }
    Ok(sink(None).expect("the sink returns its result at the end"))
}

/// Who runs Terraform in a root right now: written when Terraform starts, removed when
/// tenantctl sees it exit. Left behind when tenantctl dies first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunMarker {
    pid: u32,
    /// The process's start time (clock ticks since boot, `/proc/<pid>/stat`), so a
    /// reused pid is not mistaken for the Terraform that held the root.
    proc_start: Option<u64>,
    command: String,
    started: DateTime<Utc>,
    tenantctl_pid: u32,
    output: PathBuf,
}

const MARKER: &str = ".tenantctl-terraform.json";

impl RunMarker {
    fn read(dir: &Path) -> Option<RunMarker> {
        let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write(&self, dir: &Path) {
        let tmp = dir.join(format!("{MARKER}.tmp"));
        let ok = serde_json::to_vec_pretty(self)
            .ok()
            .and_then(|b| std::fs::write(&tmp, b).ok())
            .and_then(|_| std::fs::rename(&tmp, dir.join(MARKER)).ok());
        if ok.is_none() {
            tracing::warn!("cannot write `{}`", dir.join(MARKER).display());
        }
    }

    fn remove(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(MARKER));
    }

    fn remove_if_pid(dir: &Path, pid: Option<u32>) {
        if let (Some(m), Some(pid)) = (RunMarker::read(dir), pid)
            && m.pid == pid
        {
            RunMarker::remove(dir);
        }
    }

    /// Whether the recorded Terraform still runs (a zombie or a reused pid does not).
    fn alive(&self) -> bool {
        let pid = self.pid as libc::pid_t;
        let exists = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !exists {
            return false;
        }
        match proc_stat(self.pid) {
            Some((state, start)) => {
                state != 'Z' && self.proc_start.is_none_or(|recorded| recorded == start)
            }
            None => true,
        }
    }
}

/// State and start time of a process, from `/proc/<pid>/stat` (Linux; None elsewhere).
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after it.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // starttime is field 22 of the whole line, the 20th after the name.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

fn proc_start_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
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
                remove: 0,
                import: 0,
            }
        );
    }
}
