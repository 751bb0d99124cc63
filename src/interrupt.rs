//! Ctrl-C handling. tenantctl runs Terraform in its own process group so a terminal's
//! SIGINT reaches only tenantctl, which forwards exactly one SIGINT to each child:
//! Terraform stops gracefully on the first interrupt (finishing the resource in flight,
//! writing state, releasing the lock) but aborts hard on a second one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
    rx: watch::Receiver<bool>,
}

impl Interrupt {
    /// Installs the SIGINT/SIGTERM listeners; call once from inside the runtime.
    pub fn install() -> Interrupt {
        let (tx, rx) = watch::channel(false);
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            f.store(true, Ordering::SeqCst);
            let _ = tx.send(true);
            crate::output::status_line(
                "interrupted: stopping Terraform gracefully (state is saved, locks released)",
            );
            // Keep the listeners alive so further signals do not kill tenantctl before
            // its children have finished writing state.
            loop {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
                crate::output::status_line(
                    "still stopping: waiting for Terraform to write its state",
                );
            }
        });
        Interrupt { flag, rx }
    }

    /// An interrupt that never fires (tests, library use).
    pub fn never() -> Interrupt {
        let (_tx, rx) = watch::channel(false);
        Interrupt {
            flag: Arc::new(AtomicBool::new(false)),
            rx,
        }
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves when an interrupt arrives (immediately if one already has).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        if *rx.borrow() {
            return;
        }
        while rx.changed().await.is_ok() {
            if *rx.borrow() {
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
