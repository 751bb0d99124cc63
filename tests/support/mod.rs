//! Shared test support: launchers for moto and PostgreSQL, and a `tenantctl` runner that
//! dumps command, working directory, stdout and stderr on failure.
#![allow(dead_code)]

pub mod moto;
pub mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tenantctl"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

static CHILDREN: OnceLock<Mutex<Vec<Child>>> = OnceLock::new();

extern "C" fn kill_children() {
    if let Some(children) = CHILDREN.get()
        && let Ok(mut list) = children.lock()
    {
        for c in list.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns a server that is killed when the test binary exits.
pub fn spawn_reaped(mut cmd: Command) {
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let list = CHILDREN.get_or_init(|| {
        unsafe { libc::atexit(kill_children) };
        Mutex::new(Vec::new())
    });
    list.lock().unwrap().push(child);
}

/// A Terraform CLI config pointing at the provider mirror (no registry access here).
pub fn tf_cli_config() -> &'static Path {
    static CFG: OnceLock<PathBuf> = OnceLock::new();
    CFG.get_or_init(|| {
        if Command::new("terraform").arg("version").output().is_err() {
            panic!("terraform is not on PATH: install Terraform 1.11 (the tests run real Terraform)");
        }
        let mirror = std::env::var("TF_PLUGIN_MIRROR").unwrap_or_else(|_| "/opt/tf-plugins".into());
        assert!(
            Path::new(&mirror).exists(),
            "the Terraform provider mirror `{mirror}` is missing: it must hold hashicorp/aws 5.100 (set TF_PLUGIN_MIRROR)"
        );
        let path = std::env::temp_dir().join(format!("tenantctl-test-{}.tfrc", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{mirror}\"\n    include = [\"registry.terraform.io/hashicorp/*\"]\n  }}\n  direct {{\n    exclude = [\"registry.terraform.io/hashicorp/*\"]\n  }}\n}}\n"
            ),
        )
        .unwrap();
        path
    })
}

/// A unique suffix so tests sharing one moto never collide on names.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}{n}", std::process::id() % 100_000)
}

/// A temp work dir with a `tenantctl.toml` aimed at the shared moto (and PostgreSQL
/// when the test asks for it).
pub struct Workdir {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

pub struct Run {
    pub cmd: String,
    pub cwd: PathBuf,
    pub out: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn dump(&self) -> String {
        format!(
            "command: {}\ncwd: {}\nexit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmd,
            self.cwd.display(),
            self.out.status.code(),
            self.stdout(),
            self.stderr()
        )
    }
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code(), code, "unexpected exit code\n{}", self.dump());
        self
    }
}

impl Workdir {
    /// A local-emulator work dir with the shared platform already applied.
    pub fn new() -> Workdir {
        let rec = moto::platform_record();
        let ws = Workdir::new_without_platform();
        std::fs::create_dir_all(ws.path().join(".tenantctl")).unwrap();
        std::fs::copy(rec, ws.path().join(".tenantctl/platform.json")).unwrap();
        ws
    }

    pub fn new_without_platform() -> Workdir {
        let m = moto::moto();
        let dir = tempfile::Builder::new()
            .prefix("tenantctl-test-")
            .tempdir()
            .unwrap();
        let ws = Workdir {
            dir,
            env: vec![
                ("AWS_ENDPOINT_URL".into(), m.endpoint.clone()),
                ("AWS_ACCESS_KEY_ID".into(), "test".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
                ("AWS_REGION".into(), "us-east-1".into()),
                ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
                (
                    "TF_CLI_CONFIG_FILE".into(),
                    tf_cli_config().display().to_string(),
                ),
            ],
        };
        ws.tenantctl(&["init", "--local"]).assert_code(0);
        ws
    }

    /// A work dir for tests that must not reach AWS at all (bad input): the endpoint
    /// points at a closed port, so any AWS call would fail loudly.
    pub fn offline() -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix("tenantctl-test-")
            .tempdir()
            .unwrap();
        let ws = Workdir {
            dir,
            env: vec![
                ("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:9".into()),
                ("AWS_ACCESS_KEY_ID".into(), "test".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
                ("AWS_REGION".into(), "us-east-1".into()),
                (
                    "TENANTCTL_TERRAFORM".into(),
                    "/nonexistent/terraform-must-not-run".into(),
                ),
            ],
        };
        ws.tenantctl(&["init", "--local"]).assert_code(0);
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Replaces `old` by `new` in `tenantctl.toml`.
    pub fn edit_config(&self, old: &str, new: &str) {
        let p = self.path().join("tenantctl.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(old), "config has no `{old}`:\n{text}");
        std::fs::write(&p, text.replacen(old, new, 1)).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("AWS_PROFILE")
            .env("CHECKPOINT_DISABLE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn tenantctl(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run tenantctl");
        Run {
            cmd: format!("tenantctl {}", args.join(" ")),
            cwd: self.path().to_path_buf(),
            out,
        }
    }

    /// Runs the `aws` CLI against the shared moto; returns parsed JSON (or panics with
    /// the CLI's own error when `ok` is expected).
    pub fn aws(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let m = moto::moto();
        let out = Command::new("aws")
            .args(["--endpoint-url", &m.endpoint, "--region", "us-east-1", "--output", "json"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .expect("awscli is not installed: `pip install awscli` (the tests read resources back with it)");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.into_owned())))
    }

    /// Every file below the work dir (state, rendered roots, logs), as bytes.
    pub fn all_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                let ft = e.file_type().unwrap();
                if ft.is_symlink() {
                    continue;
                }
                if ft.is_dir() {
                    walk(&p, out);
                } else if let Ok(b) = std::fs::read(&p) {
                    out.push((p, b));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), &mut out);
        out
    }
}

/// The database the end-to-end tests' tenants share on the test binary's PostgreSQL
/// cluster (`postgres::cluster`), created once.
pub fn e2e_database() -> &'static str {
    static DB: OnceLock<String> = OnceLock::new();
    DB.get_or_init(|| {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(postgres::cluster().create_database("e2e"))
    })
}

/// A value from the work dir's recorded platform outputs.
pub fn platform_value(ws: &Workdir, key: &str) -> String {
    let text = std::fs::read_to_string(ws.path().join(".tenantctl/platform.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("platform.json has no {key}"))
        .to_string()
}

pub fn platform_zone(ws: &Workdir) -> String {
    platform_value(ws, "hosted_zone_id")
}

impl Workdir {
    /// Points the work dir at the shared PostgreSQL: admin URL in the environment, the
    /// tenants' address (and the local silo mapping) in `tenantctl.toml`.
    pub fn with_database(self) -> Workdir {
        self.with_database_named(e2e_database(), &[])
    }

    /// Like [`with_database`](Self::with_database) on database `db` of the shared
    /// cluster, with `extra` migrations (file name, SQL) beside the repository's. Every
    /// work dir on one database must have the same migrations.
    pub fn with_database_named(mut self, db: &str, extra: &[(&str, &str)]) -> Workdir {
        let pg = postgres::cluster();
        self.set_env("TENANTCTL_DATABASE_URL", &pg.admin_url(db));
        let p = self.path().join("tenantctl.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text
            .replace("port = 5432", &format!("port = {}", pg.port))
            .replace("name = \"app\"", &format!("name = \"{db}\""));
        std::fs::write(&p, text).unwrap();
        let migrations = self.path().join("migrations");
        std::fs::create_dir_all(&migrations).unwrap();
        for e in std::fs::read_dir(repo_root().join("migrations"))
            .unwrap()
            .flatten()
        {
            std::fs::copy(e.path(), migrations.join(e.file_name())).unwrap();
        }
        for (name, sql) in extra {
            std::fs::write(migrations.join(name), sql).unwrap();
        }
        self
    }
}

/// A whole command run as one reviewable text for insta: exit code, stdout, stderr, with
/// what changes from run to run replaced by placeholders: the work dir, the given
/// (unique) names, ports, timestamps, durations, ARNs and database names.
pub fn snapshot_text(run: &Run, names: &[(&str, &str)]) -> String {
    let mut text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.code(),
        run.stdout(),
        run.stderr()
    );
    for (value, placeholder) in names {
        if !value.is_empty() {
            text = text.replace(value, placeholder);
        }
    }
    let cwd = run.cwd.display().to_string();
    if !cwd.is_empty() {
        text = text.replace(&cwd, "[WORKDIR]");
    }
    let filters: &[(&str, &str)] = &[
        (r"arn:aws:[A-Za-z0-9:/_.+=,@-]+", "[ARN]"),
        // Secrets Manager appends six random characters to a secret's ARN.
        (r"(/db(-admin)?)-[A-Za-z0-9]{6}\b", "$1-[SUFFIX]"),
        (
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)",
            "[TIME]",
        ),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r"\b\d+(\.\d)?s\b", "[DUR]"),
        (r"\b\d+m\d\ds\b", "[DUR]"),
        (r#""duration_ms": \d+"#, r#""duration_ms": "[MS]""#),
        (r"\bt\d+_[a-z0-9_]+\b", "[DB]"),
        // Column widths follow the (filtered) values: keep the columns, not the padding.
        (r"(\S)  +", "$1  "),
        (r"-{4,}", "---"),
    ];
    for (pattern, placeholder) in filters {
        text = regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&text, *placeholder)
            .into_owned();
    }
    text
}

/// Starts `args` with `TENANTCTL_PAUSE_AT=point` and waits until its stderr says it
/// paused there. Returns the paused child and the thread collecting its stderr.
pub fn start_paused(
    ws: &Workdir,
    args: &[&str],
    point: &str,
    stdout: std::process::Stdio,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    use std::time::{Duration, Instant};
    let mut cmd = ws.command(args);
    cmd.env("TENANTCTL_PAUSE_AT", point)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = format!("paused at {point}");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(&marker) {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            return (child, reader);
        }
        assert!(Instant::now() < deadline, "never paused at {point}");
        if let Some(st) = child.try_wait().unwrap() {
            let err = reader.join().unwrap();
            panic!("tenantctl ended ({st}) before pausing at {point}:\n{err}");
        }
    }
}

/// `terraform state list` in the tenant's root: the addresses Terraform manages.
pub fn state_list(ws: &Workdir, id: &str) -> Vec<String> {
    let root = ws.path().join(".tenantctl/roots").join(id);
    let out = Command::new("terraform")
        .args(["state", "list"])
        .current_dir(&root)
        .env("TF_CLI_CONFIG_FILE", tf_cli_config())
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("No state file was found") {
        return Vec::new();
    }
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
