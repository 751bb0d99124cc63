//! The one way data reaches stdout, and status lines reach stderr.
//!
//! Rust ignores SIGPIPE, so a closed pipe shows up as an `EPIPE` write error; `println!`
//! turns that into a panic (exit 101 and a backtrace for `tenantctl list | head -0`).
//! Here it becomes [`StdoutClosed`], which `main` maps to a silent exit 0: the reader
//! had what it wanted. Every other error (`ENOSPC` on `> /dev/full`) is reported once.

use std::io::Write;

use anyhow::Result;

/// The reader of stdout went away: nothing left to say to anyone.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed by its reader")]
pub struct StdoutClosed;

/// Writes `text` to stdout and flushes it, so a full disk is reported here and not lost
/// in a buffer dropped at exit.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                anyhow::Error::new(StdoutClosed)
            } else {
                anyhow::anyhow!("cannot write the output to stdout: {e}")
            }
        })
}

/// Whether the error chain says stdout's reader is gone.
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<StdoutClosed>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A status line on stderr. Failing to write one is not worth failing the command (the
/// work it reports on is done either way), and `eprintln!` would panic.
pub fn status_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}
