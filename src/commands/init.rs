//! `tenantctl init [--local]`: write `tenantctl.toml`, `tenants/` and a `.gitignore`
//! that keeps local state, plans and logs out of version control.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::InitArgs;
use crate::config::Config;
use crate::exit::Outcome;

pub fn run(config_path: &Path, args: &InitArgs) -> Result<u8> {
    if config_path.exists() && !args.force {
        bail!(
            "`{}` already exists\nhint: pass `--force` to overwrite it",
            config_path.display()
        );
    }
    let dir = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir.join("tenants"))
        .with_context(|| format!("cannot create `{}`", dir.join("tenants").display()))?;
    std::fs::write(config_path, Config::template(args.local))
        .with_context(|| format!("cannot write `{}`", config_path.display()))?;
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        std::fs::write(
            &gitignore,
            "# tenantctl: local state, plan files and logs may hold sensitive data\n.tenantctl/\n",
        )?;
    }
    crate::output::status_line(&format!(
        "wrote `{}` and `{}`",
        config_path.display(),
        dir.join("tenants").display()
    ));
    Ok(Outcome::Success.code())
}
