//! The `tenantctl` binary: parse, run, map the error to an exit code. Everything else
//! lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors exit 1, not clap's 2: CI reads 2 as "changes pending".
    let cli = match tenantctl::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                tenantctl::exit::ERROR
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tenantctl::commands::init_tracing(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tenantctl::output::status_line(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(tenantctl::exit::ERROR);
        }
    };
    match runtime.block_on(tenantctl::commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away (`| head`): it had what it wanted.
        Err(e) if tenantctl::output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line, printed once, hints last.
            tenantctl::output::status_line(tenantctl::exit::render_error(&e).trim_end());
            ExitCode::from(tenantctl::exit::code_for(&e))
        }
    }
}
