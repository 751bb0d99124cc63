//! Ctrl-C handling, escalating as Terraform's own CLI does. tenantctl runs Terraform in
//! its own process group so a terminal's SIGINT reaches only tenantctl, which forwards it:
//!
//! 1. The first Ctrl-C (or SIGTERM) is forwarded once: Terraform stops gracefully,
//!    finishing the resource in flight, writing state and releasing the lock.
//! 2. A second one is forwarded too: Terraform then aborts at once, and a resource being
//!    created may exist in AWS without being in state (the next `apply` adopts it).
//! 3. A third one exits tenantctl at once. Terraform writes its output to files, not to
//!    tenantctl, so it lives on and finishes alone; a rerun waits for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Interrupt {
    level: Arc<AtomicU8>,
    rx: watch::Receiver<u8>,
}

const GRACEFUL: &str = "interrupted: stopping Terraform gracefully (it finishes the resource in flight, saves state, releases the lock); press Ctrl-C again to make it abort at once";
const HARD: &str = "second interrupt: Terraform now aborts at once without waiting for the resources in flight; those may exist in AWS but be missing from state (the next `tenantctl apply` adopts them); press Ctrl-C a third time to exit tenantctl now and leave Terraform to finish alone";
const EXIT: &str = "third interrupt: exiting now; any Terraform still running finishes in the background and a rerun waits for it";

impl Interrupt {
    /// Installs the SIGINT/SIGTERM listeners; call once from inside the runtime.
    pub fn install() -> Interrupt {
        let (tx, rx) = watch::channel(0u8);
        let level = Arc::new(AtomicU8::new(0));
        let l = level.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            loop {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
                let n = l.fetch_add(1, Ordering::SeqCst).saturating_add(1);
                let _ = tx.send(n);
                match n {
                    1 => crate::output::status_line(GRACEFUL),
                    2 => crate::output::status_line(HARD),
                    _ => {
                        crate::output::status_line(EXIT);
                        std::process::exit(crate::exit::INTERRUPTED as i32);
                    }
                }
            }
        });
        Interrupt { level, rx }
    }

    /// An interrupt that never fires (tests, library use).
    pub fn never() -> Interrupt {
        let (_tx, rx) = watch::channel(0u8);
        Interrupt {
            level: Arc::new(AtomicU8::new(0)),
            rx,
        }
    }

    pub fn is_set(&self) -> bool {
        self.level.load(Ordering::SeqCst) > 0
    }

    /// Resolves when an interrupt arrives (immediately if one already has).
    pub async fn wait(&self) {
        self.wait_level(1).await
    }

    /// Resolves on the second interrupt: the user asks Terraform to abort at once.
    pub async fn wait_hard(&self) {
        self.wait_level(2).await
    }

    async fn wait_level(&self, level: u8) {
        let mut rx = self.rx.clone();
        if *rx.borrow() >= level {
            return;
        }
        while rx.changed().await.is_ok() {
            if *rx.borrow() >= level {
                return;
            }
        }
        // Sender gone without firing: never resolve.
        std::future::pending::<()>().await
    }

    /// Err(Interrupted) once an interrupt has arrived: checked between steps.
    pub fn check(&self) -> Result<(), crate::exit::Interrupted> {
        if self.is_set() {
            Err(crate::exit::Interrupted)
        } else {
            Ok(())
        }
    }
}
