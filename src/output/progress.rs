//! Progress for any step over many items (tenants, migration targets, tables): a bar per
//! running item plus a total on a terminal, plain lines on stderr otherwise (CI logs,
//! pipes, `--no-progress`, `NO_COLOR` terminals keep the lines).

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::context::Ctx;

pub struct Progress {
    multi: MultiProgress,
    total: ProgressBar,
    bars: bool,
    quiet: bool,
}

impl Progress {
    /// `len` items; `verb` labels the total bar ("apply", "migrating").
    pub fn new(ctx: &Ctx, len: usize, verb: &str) -> Progress {
        let multi = MultiProgress::new();
        if !ctx.progress {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        let total = multi.add(ProgressBar::new(len as u64));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        total.set_prefix(verb.to_string());
        Progress {
            multi,
            total,
            bars: ctx.progress,
            quiet: ctx.quiet,
        }
    }

    /// A spinner for one running item (hidden without a terminal); its message says
    /// which step the item is in.
    pub fn item(&self, label: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:>20} {elapsed:>4} {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// One item is done.
    pub fn inc(&self) {
        self.total.inc(1);
    }

    /// A plain line on stderr that does not tear the bars (dropped with `-q`).
    pub fn line(&self, text: &str) {
        if !self.quiet {
            self.multi.suspend(|| crate::output::status_line(text));
        }
    }

    pub fn finish(&self) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}
