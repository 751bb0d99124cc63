//! One file per subcommand. `run` builds the context every command shares and
//! dispatches.

pub mod add;
pub mod apply;
pub mod cost;
pub mod db;
pub mod export;
pub mod exports;
pub mod import;
pub mod init;
pub mod list;
pub mod move_tenant;
pub mod plan;
pub mod platform;
pub mod remove;
pub mod render;
pub mod verify;

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::context::Ctx;
use crate::interrupt::Interrupt;
use crate::workspace::Workspace;

pub fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TENANTCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("tenantctl={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal())
        .without_time()
        .try_init();
}

pub async fn run(cli: Cli) -> Result<u8> {
    // Commands that need no work dir.
    match &cli.command {
        Command::Init(args) => return init::run(&cli.config, args),
        Command::Completions { shell } => return completions(*shell),
        Command::Man => return man(),
        _ => {}
    }
    let ws = Workspace::load(&cli.config)?;
    if let Some(0) = cli.parallelism {
        anyhow::bail!("invalid --parallelism 0: must be at least 1");
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let ctx = Ctx {
        ws: Arc::new(ws),
        output: cli.output,
        parallelism: cli.parallelism.unwrap_or(cores),
        api_parallelism: cli.parallelism.unwrap_or(8),
        yes: cli.yes,
        quiet: cli.quiet,
        verbose: cli.verbose,
        interrupt: Interrupt::install(),
        progress: !cli.no_progress
            && !cli.quiet
            && std::io::stderr().is_terminal()
            && std::env::var_os("CI").is_none(),
    };
    match &cli.command {
        Command::Init(_) | Command::Completions { .. } | Command::Man => {
            unreachable!("handled above")
        }
        Command::Platform { action } => platform::run(&ctx, *action).await,
        Command::Add(args) => add::run(&ctx, args).await,
        Command::Render(sel) => render::run(&ctx, sel),
        Command::Plan(args) => plan::run(&ctx, args).await,
        Command::Apply(args) => apply::run(&ctx, args).await,
        Command::Verify(args) => verify::run(&ctx, args).await,
        Command::List => list::run(&ctx).await,
        Command::Remove(args) => remove::run(&ctx, args).await,
        Command::Move(args) => move_tenant::run(&ctx, args).await,
        Command::Cost(args) => cost::run(&ctx, args),
        Command::Db { action } => db::run(&ctx, action).await,
        Command::Export(args) => export::run(&ctx, args).await,
        Command::Import(args) => import::run(&ctx, args).await,
        Command::Exports(args) => exports::run(&ctx, args).await,
    }
}

/// `tenantctl completions <shell>`: the script clap_complete generates from the CLI.
fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "tenantctl", &mut buf);
    crate::output::emit(&String::from_utf8_lossy(&buf))?;
    Ok(crate::exit::Outcome::Success.code())
}

/// `tenantctl man`: the man page clap_mangen renders from the CLI.
fn man() -> Result<u8> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    crate::output::emit(&String::from_utf8_lossy(&buf))?;
    Ok(crate::exit::Outcome::Success.code())
}
