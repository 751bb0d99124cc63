//! One file per subcommand. `run` builds the context every command shares and
//! dispatches.

pub mod add;
pub mod apply;
pub mod cells;
pub mod cost;
pub mod db;
pub mod export;
pub mod exports;
pub mod import;
pub mod init;
pub mod list;
pub mod log;
pub mod move_tenant;
pub mod plan;
pub mod platform;
pub mod remove;
pub mod render;
pub mod state;
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
    let audited = audited(&cli.command).map(|(action, id)| {
        let before = ctx.ws.read_tenant(&id).ok().flatten().map(|s| s.tier);
        (action, id, before, std::time::Instant::now())
    });
    let result = dispatch(&ctx, &cli.command).await;
    if let Some((action, id, tier_before, started)) = audited {
        let (exit_code, error) = match &result {
            Ok(code) => (*code, None),
            Err(e) => (
                crate::exit::code_for(e),
                crate::exit::render_error(e)
                    .lines()
                    .next()
                    .map(|l| l.trim_start_matches("error: ").to_string()),
            ),
        };
        let mut event = crate::audit::Event::new(
            action,
            id.clone(),
            exit_code,
            started.elapsed().as_millis() as u64,
        );
        event.tier_before = tier_before;
        event.tier_after = ctx.ws.read_tenant(&id).ok().flatten().map(|s| s.tier);
        event.error = error;
        record_audit(&ctx, vec![event]).await;
    }
    result
}

/// Records audit events (the local file, then CloudWatch Logs); best effort.
pub(crate) async fn record_audit(ctx: &Ctx, events: Vec<crate::audit::Event>) {
    let cfg = ctx.config();
    crate::audit::record(&ctx.ws.state_dir(), &cfg.aws, &cfg.audit, &events).await;
}

/// The state-changing commands on one tenant that leave an audit event, and the tenant
/// (an id that does not parse is refused before anything happens: nothing to record).
fn audited(command: &Command) -> Option<(&'static str, crate::tenant::TenantId)> {
    let (action, raw) = match command {
        Command::Add(a) => ("add", &a.id),
        Command::Remove(a) => ("remove", &a.id),
        Command::Move(a) => ("move", &a.id),
        Command::Export(a) => ("export", &a.id),
        Command::Import(a) => ("import", &a.id),
        _ => return None,
    };
    crate::tenant::TenantId::parse(raw)
        .ok()
        .map(|id| (action, id))
}

async fn dispatch(ctx: &Ctx, command: &Command) -> Result<u8> {
    let ctx = ctx.clone();
    match command {
        Command::Init(_) | Command::Completions { .. } | Command::Man => {
            unreachable!("handled above")
        }
        Command::Platform { action } => platform::run(&ctx, *action).await,
        Command::Add(args) => add::run(&ctx, args).await,
        Command::Render(sel) => render::run(&ctx, sel).await,
        Command::Plan(args) => plan::run(&ctx, args).await,
        Command::Apply(args) => apply::run(&ctx, args).await,
        Command::Verify(args) => verify::run(&ctx, args).await,
        Command::List => list::run(&ctx).await,
        Command::Remove(args) => remove::run(&ctx, args).await,
        Command::Move(args) => move_tenant::run(&ctx, args).await,
        Command::Cost(args) => cost::run(&ctx, args).await,
        Command::Log(args) => log::run(&ctx, args),
        Command::Db { action } => db::run(&ctx, action).await,
        Command::State {
            action: crate::cli::StateAction::Migrate(args),
        } => state::migrate(&ctx, args).await,
        Command::Cells {
            action: crate::cli::CellsAction::Adopt(args),
        } => cells::adopt(&ctx, args).await,
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
