//! Exit codes are part of the contract: CI branches on them.

/// 0 success / no drift · 1 error · 2 changes pending · 3 verification failed · 130 interrupted.
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
pub const INTERRUPTED: u8 = 130;

/// The run was stopped by Ctrl-C (SIGINT) or SIGTERM; maps to exit 130.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Maps an error to its exit code: 130 when anything in the chain is an interrupt.
pub fn code_for(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<Interrupted>()) {
        INTERRUPTED
    } else {
        ERROR
    }
}
