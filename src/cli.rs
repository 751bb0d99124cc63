//! The command line: global options and one subcommand per file under `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::context::OutputFormat;
use crate::db::TxMode;
use crate::tenant::Tier;

#[derive(Debug, Parser)]
#[command(
    name = "tenantctl",
    version,
    about = "Onboard, change, audit and offboard the tenants of a multi-tenant SaaS on AWS, driving Terraform"
)]
pub struct Cli {
    /// Config file; its directory is the work dir.
    #[arg(
        long,
        global = true,
        default_value = "tenantctl.toml",
        env = "TENANTCTL_CONFIG"
    )]
    pub config: PathBuf,
    /// Output format for data on stdout.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub output: OutputFormat,
    /// More log detail on stderr (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Tenants worked on at once (default: the number of CPU cores).
    #[arg(long, global = true)]
    pub parallelism: Option<usize>,
    /// Never prompt: assume yes (required for destructive commands without a terminal).
    #[arg(long, global = true)]
    pub yes: bool,
    /// No progress bars, plain lines only.
    #[arg(long, global = true)]
    pub no_progress: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write `tenantctl.toml` and `tenants/`.
    Init(InitArgs),
    /// The shared stack (optional): VPC, subnets, cluster, bucket, zone, load balancer.
    Platform {
        #[command(subcommand)]
        action: PlatformAction,
    },
    /// Declare a tenant, render, apply, provision its database and verify it.
    Add(AddArgs),
    /// Render Terraform roots only; no AWS calls.
    Render(SelectArgs),
    /// Plan; exit 0 no changes, 2 changes, 1 error.
    Plan(PlanArgs),
    /// Apply the desired state, then verify.
    Apply(ApplyArgs),
    /// Check through the AWS SDK (and SQL) that what is deployed matches the tier; drift → exit 3.
    Verify(SelectArgs),
    /// id, tier, isolation, state, last apply, last verify.
    List,
    /// Guarded offboarding: destroy the tenant's resources, then drop its file.
    Remove(RemoveArgs),
    /// Change a tenant's tier, moving its data across isolation models (verified,
    /// resumable); finish a move or roll it back.
    Move(MoveArgs),
    /// Export a tenant's database data (gzip CSV per table and a manifest) to S3 or a directory.
    Export(ExportArgs),
    /// Restore an export into a provisioned, empty tenant of any tier.
    Import(ImportArgs),
    /// The recorded exports, also of removed tenants: id, time, location, size, tables, rows.
    Exports(ExportsArgs),
    /// Terraform state: `state migrate` moves every root's state to where `[state]` now says.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// State cells: tenants of pooled tiers sharing Terraform roots (`[cells]`).
    Cells {
        #[command(subcommand)]
        action: CellsAction,
    },
    /// Monthly cost per tenant and for the fleet, estimated from what each tier creates
    /// (a versioned price table, no network); `--what-if <id>=<tier>` compares tiers.
    Cost(CostArgs),
    /// A tenant's audit trail: what tenantctl did to it, when, by whom, with what result.
    Log(LogArgs),
    /// Schema migrations across all tenants.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, e.g. `tenantctl man > tenantctl.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Aim the config at the local AWS emulator and a local PostgreSQL.
    #[arg(long)]
    pub local: bool,
    /// Overwrite an existing `tenantctl.toml`.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum PlatformAction {
    Plan,
    Apply,
    Destroy,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Tenant id: lowercase letters, digits and single hyphens.
    #[arg(allow_hyphen_values = true)]
    pub id: String,
    #[arg(long, value_enum)]
    pub tier: Tier,
    /// Seconds to wait for a state lock held by another run.
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
}

/// Which tenants a fleet command works on.
#[derive(Debug, Args, Clone, Default)]
pub struct SelectArgs {
    /// Tenant ids.
    pub ids: Vec<String>,
    /// Every declared tenant.
    #[arg(long)]
    pub all: bool,
    /// Only tenants of this tier.
    #[arg(long, value_enum)]
    pub tier: Option<Tier>,
    /// Only tenants whose desired state or rendered root differs from the last successful apply.
    #[arg(long)]
    pub changed: bool,
    /// A stable share of the fleet for runner K of N (1-based), e.g. `--shard 2/4`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Stop starting new tenants after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
}

impl SelectArgs {
    /// The selection as the fleet runner takes it.
    pub fn selection(&self) -> crate::fleet::Selection {
        crate::fleet::Selection {
            ids: self.ids.clone(),
            all: self.all,
            tier: self.tier,
            changed: self.changed,
            shard: self.shard.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Refresh against AWS for Terraform's own drift view (the default; kept for scripts).
    #[arg(long)]
    pub refresh: bool,
    /// Seconds to wait for a state lock held by another run.
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Plan every selected tenant, even those whose inputs did not change since the last apply.
    #[arg(long)]
    pub refresh: bool,
    /// Seconds to wait for a state lock held by another run.
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[arg(allow_hyphen_values = true)]
    pub id: String,
    /// Seconds to wait for a state lock held by another run.
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
    /// Remove without exporting the tenant's data first (the export is otherwise
    /// mandatory: a failed export stops the removal before anything is deleted).
    #[arg(long)]
    pub no_export: bool,
    /// Crypto-shredding: schedule the deletion of the tenant's KMS key (pending window
    /// `[keys] deletion_window_days`), making its secrets, logs and every export under
    /// that key unreadable once the window is over.
    #[arg(long)]
    pub shred: bool,
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    #[arg(allow_hyphen_values = true)]
    pub id: String,
    /// The tier to move to: edits `tenants/<id>.toml` and applies the tenant.
    #[arg(
        long,
        value_enum,
        conflicts_with_all = ["finish", "rollback"],
        required_unless_present_any = ["finish", "rollback"]
    )]
    pub tier: Option<Tier>,
    /// Delete the source a finished cut-over retained, without waiting for
    /// `[moves] retain_days`.
    #[arg(long, conflicts_with = "rollback")]
    pub finish: bool,
    /// Move the tenant back to the tier it came from, with the rows written since the
    /// cut-over; before the cut-over, undo the move.
    #[arg(long)]
    pub rollback: bool,
    /// Seconds to wait for a state lock held by another run.
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The tenant (also a removed one: its history stays).
    #[arg(allow_hyphen_values = true)]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// Only these tenants' rows (the fleet total and the platform shares always count
    /// every declared tenant).
    pub ids: Vec<String>,
    /// Price the fleet as if tenant ID had tier TIER, beside what it costs now
    /// (repeatable; shows those tenants unless ids are given).
    #[arg(long, value_name = "ID=TIER")]
    pub what_if: Vec<crate::cost::WhatIf>,
    /// Show each tenant's actual spend beside the estimate, from AWS Cost Explorer grouped
    /// by the `tenant` cost-allocation tag (the last full month unless --month).
    #[arg(long)]
    pub actual: bool,
    /// The calendar month of --actual, YYYY-MM (implies --actual).
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Move each selected root's Terraform state (and tenantctl's records) from where it
    /// is to where `[state]` now says, with a backup; never over another state.
    Migrate(StateMigrateArgs),
}

#[derive(Debug, Args)]
pub struct StateMigrateArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// The config file as it was before `[state]` changed (e.g. `git show
    /// HEAD~1:tenantctl.toml > old.toml`): where the states are now. Without it, each
    /// root's last `terraform init` says (roots initialised in this work dir).
    #[arg(long, value_name = "OLD_CONFIG")]
    pub from: Option<std::path::PathBuf>,
    /// Seconds to wait for a state lock held by another run.
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum CellsAction {
    /// Move the state of applied tenants of celled tiers from their own roots into
    /// cells (state surgery, nothing recreated), then plan each there: no changes.
    Adopt(CellsAdoptArgs),
}

#[derive(Debug, Args)]
pub struct CellsAdoptArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Seconds to wait for a state lock held by another run.
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Apply pending migrations to every target: the pool schema once, each bridge
    /// schema, each silo database; one transaction per target (or per migration).
    Migrate(MigrateArgs),
    /// Undo the migrations applied above `--to VERSION` with their `.down.sql` files,
    /// newest first, each in its own transaction.
    Rollback(RollbackArgs),
    /// Per target: tier, version, pending count, state and last error.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Only the targets of these tenants (a starter tenant selects the shared pool).
    pub ids: Vec<String>,
    /// Stop starting new targets after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Seconds to wait for another `db migrate` run to finish (0: fail at once).
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
    /// One transaction per target for all its pending migrations (a failure leaves the
    /// target at its previous version), or one per migration [default: `[database]
    /// tx_mode`, else target].
    #[arg(long, value_enum)]
    pub tx_mode: Option<TxMode>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Only the targets of these tenants (a starter tenant selects the shared pool, which
    /// every starter tenant shares).
    pub ids: Vec<String>,
    /// Every target of every declared tenant.
    #[arg(long)]
    pub all: bool,
    /// Only the targets of tenants of this tier.
    #[arg(long, value_enum)]
    pub tier: Option<Tier>,
    /// Undo every migration applied above this version (0: all of them).
    #[arg(long, value_name = "VERSION", value_parser = clap::value_parser!(u32).range(0..=i32::MAX as i64))]
    pub to: u32,
    /// Stop starting new targets after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Seconds to wait for another `db migrate` or `db rollback` run to finish (0: fail
    /// at once).
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only the targets of these tenants.
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(allow_hyphen_values = true)]
    pub id: String,
    /// Write the export here instead of the archive location (`[archive]`): a new or empty
    /// local directory, or an `s3://BUCKET/PREFIX/` with nothing under it.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX/")]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The tenant to restore into: declared, provisioned and without rows.
    #[arg(allow_hyphen_values = true)]
    pub id: String,
    /// The export: its `s3://BUCKET/PREFIX/` or the directory written by `export --to`.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX/")]
    pub from: String,
}

#[derive(Debug, Args)]
pub struct ExportsArgs {
    /// Only the exports of this tenant.
    #[arg(allow_hyphen_values = true)]
    pub id: Option<String>,
}
