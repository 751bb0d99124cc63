//! A moto server (with the RDS fix from `scripts/moto_server.py`) started once per test
//! binary on a free loopback port, and the shared platform applied on it once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, repo_root, spawn_reaped};

pub struct Moto {
    pub endpoint: String,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The shared moto server; started on first use, stopped when the test binary exits.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let check = Command::new(&python)
            .args(["-c", "import moto.server"])
            .output();
        match check {
            Ok(o) if o.status.success() => {}
            _ => panic!(
                "moto is not installed for `{python}`: install it with `pip install 'moto[server]'` (the tests run a real moto server)"
            ),
        }
        let port = free_port();
        let script = repo_root().join("scripts/moto_server.py");
        let log = std::env::temp_dir().join(format!("tenantctl-test-moto-{port}.log"));
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        spawn_reaped(cmd);
        let endpoint = format!("http://127.0.0.1:{port}");
        // Generous: on a loaded two-core runner, importing moto alone can take many seconds.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "moto did not start on port {port}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { endpoint }
    })
}

static PLATFORM: OnceLock<PathBuf> = OnceLock::new();

/// `tenantctl platform apply` run once against the shared moto; returns the recorded
/// `platform.json` that each test's work dir copies.
pub fn platform_record() -> &'static Path {
    PLATFORM.get_or_init(|| {
        let ws = super::Workdir::new_without_platform();
        ws.tenantctl(&["platform", "apply"]).assert_code(0);
        let rec = ws.path().join(".tenantctl/platform.json");
        assert!(rec.exists(), "platform apply recorded no outputs");
        let keep = std::env::temp_dir().join(format!(
            "tenantctl-test-platform-{}.json",
            std::process::id()
        ));
        std::fs::copy(&rec, &keep).unwrap();
        // The work dir is kept alive for the binary's lifetime (its state backs the platform).
        std::mem::forget(ws);
        keep
    })
}

/// An AWS SDK configuration for the shared moto (fake static credentials), for tests that
/// call the SDK in-process: no process-wide environment is read or changed.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let creds =
        aws_sdk_cloudwatch::config::Credentials::new("test", "test", None, None, "tenantctl-tests");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto().endpoint)
        .credentials_provider(creds)
        .load()
        .await
}
