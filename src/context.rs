//! What every command gets: the work dir and the global options.

use std::sync::Arc;

use crate::interrupt::Interrupt;
use crate::workspace::Workspace;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
    Markdown,
}

#[derive(Clone)]
pub struct Ctx {
    pub ws: Arc<Workspace>,
    pub output: OutputFormat,
    /// Tenants worked on at once.
    pub parallelism: usize,
    /// Tenants verified at once (API calls, not Terraform processes: cheaper).
    pub api_parallelism: usize,
    /// Non-interactive: never prompt.
    pub yes: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub interrupt: Interrupt,
    /// Progress bars only when stderr is a terminal.
    pub progress: bool,
}

impl Ctx {
    pub fn config(&self) -> &crate::config::Config {
        &self.ws.config
    }

    /// A plain status line on stderr (stdout is for data).
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            crate::output::status_line(msg.as_ref());
        }
    }
}
