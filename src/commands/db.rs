//! `tenantctl db migrate|status` (owned by the database work).

use anyhow::Result;
use clap::Subcommand;

use crate::context::Ctx;

#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Apply pending migrations to every target, tenant by tenant.
    Migrate,
    /// Per target: tier, version, pending count, last error.
    Status,
}

pub async fn run(_ctx: &Ctx, _action: &DbAction) -> Result<u8> {
    anyhow::bail!("not yet implemented")
}
