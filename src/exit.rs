//! Exit codes are part of the contract: CI branches on them. And errors are printed once,
//! here, in one shape: `error: <the whole cause chain on one line>`, then any `hint:`
//! lines, so advice never lands in the middle of a cause chain.

/// 0 success / no drift · 1 error · 2 changes pending · 3 verification failed or drift ·
/// 4 a lock is held by another run (retry later) · 130 interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Success = 0,
    Changes = 2,
    Drift = 3,
}

impl Outcome {
    pub fn code(self) -> u8 {
        self as u8
    }
}

pub const ERROR: u8 = 1;
/// A state lock or the migration lock is held by another run: CI may retry.
pub const LOCKED: u8 = 4;
pub const INTERRUPTED: u8 = 130;

/// The run was stopped by Ctrl-C (SIGINT) or SIGTERM; maps to exit 130.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Whether the error is "another run holds the lock" (Terraform state, migrations or a
/// tenant's move).
pub fn is_lock_held(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<crate::db::LockHeld>()
            || e.is::<crate::moves::lock::MoveLockHeld>()
            || matches!(
                e.downcast_ref::<crate::terraform::TerraformError>(),
                Some(
                    crate::terraform::TerraformError::Locked { .. }
                        | crate::terraform::TerraformError::Busy { .. }
                )
            )
    })
}

/// Maps an error to its exit code: 130 when anything in the chain is an interrupt, 4 for
/// a held lock, 3 for an export that fails verification, else 1.
pub fn code_for(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<Interrupted>()) {
        INTERRUPTED
    } else if is_lock_held(err) {
        LOCKED
    } else if err
        .chain()
        .any(|e| e.is::<crate::archive::VerificationFailed>())
    {
        // An export that does not match its manifest fails verification, as drift does.
        Outcome::Drift.code()
    } else {
        ERROR
    }
}

/// `error: outer: inner: root cause` then each `hint:` line of any layer, in order. A
/// layer's message may carry its hint on a line of its own (`...\nhint: ...`); other
/// continuation lines (Terraform's diagnostics) stay with their layer.
pub fn render_error(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut hints: Vec<String> = Vec::new();
    for layer in err.chain() {
        let text = layer.to_string();
        let mut own = Vec::new();
        for line in text.lines() {
            match line.trim_start().strip_prefix("hint:") {
                Some(h) => {
                    let h = h.trim().to_string();
                    if !hints.contains(&h) {
                        hints.push(h);
                    }
                }
                None => own.push(line),
            }
        }
        let own = own.join("\n");
        let own = own.trim_end();
        // thiserror/anyhow layers sometimes repeat their source in their own text.
        if !own.is_empty() && !parts.iter().any(|p| p.contains(own)) {
            parts.push(own.to_string());
        }
    }
    let mut out = format!("error: {}\n", parts.join(": "));
    for h in hints {
        out.push_str(&format!("hint: {h}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn hints_come_after_the_whole_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err = Err::<(), _>(io)
            .context("cannot read config `x.toml`\nhint: run `tenantctl init` first")
            .context("cannot load the work dir")
            .unwrap_err();
        assert_eq!(
            render_error(&err),
            "error: cannot load the work dir: cannot read config `x.toml`: No such file or directory\nhint: run `tenantctl init` first\n"
        );
    }

    #[test]
    fn lock_errors_and_interrupts_have_their_own_codes() {
        let locked = anyhow::Error::new(crate::terraform::TerraformError::Locked {
            label: "acme".into(),
            id: "1".into(),
            who: "ci@runner".into(),
            operation: "OperationTypeApply".into(),
            created: "now".into(),
        })
        .context("cannot apply tenant `acme`");
        assert_eq!(code_for(&locked), LOCKED);
        let held = anyhow::Error::new(crate::db::LockHeld {
            database: "db".into(),
            holder: String::new(),
        });
        assert_eq!(code_for(&held), LOCKED);
        assert_eq!(code_for(&anyhow::Error::new(Interrupted)), INTERRUPTED);
        assert_eq!(code_for(&anyhow::anyhow!("boom")), ERROR);
    }
}
