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
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(tenantctl::exit::ERROR);
        }
    };
    match runtime.block_on(tenantctl::commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // The whole cause chain on one line, printed once.
            eprintln!("error: {e:#}");
            ExitCode::from(tenantctl::exit::code_for(&e))
        }
    }
}
