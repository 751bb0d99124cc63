//! Everything a command shows: data on stdout, progress and status lines on stderr.
//!
//! - [`Report`] is the one shape of a command's result: a [`Table`] for people (rendered
//!   as aligned text or as Markdown for pull-request comments) and a JSON value for
//!   programs (the documented contract CI parses). Every command that prints data builds
//!   one and hands it to [`emit`].
//! - [`emit`] writes through one locked, flushed stdout whose errors are handled: a
//!   closed pipe (`tenantctl list | head -0`) ends the program quietly with exit 0, as
//!   ripgrep does; any other write error (a full disk) is a clear error, never a panic.
//! - [`Progress`] draws bars on a terminal and plain lines otherwise.

mod progress;
mod table;
mod writer;

pub use progress::Progress;
pub use table::{Align, Table, one_line};
pub use writer::{StdoutClosed, emit, is_stdout_closed, status_line};

use crate::context::OutputFormat;

/// A command's result: a table for people, a JSON value for programs.
pub struct Report {
    pub table: Table,
    pub json: serde_json::Value,
}

impl Report {
    pub fn new(table: Table, json: serde_json::Value) -> Report {
        Report { table, json }
    }

    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Human => self.table.human(),
            OutputFormat::Markdown => self.table.markdown(),
            OutputFormat::Json => {
                // A serde_json::Value always serializes.
                let mut s = serde_json::to_string_pretty(&self.json).unwrap_or_default();
                s.push('\n');
                s
            }
        }
    }

    /// Renders and writes the report to stdout.
    pub fn emit(&self, format: OutputFormat) -> anyhow::Result<()> {
        emit(&self.render(format))
    }
}
