//! tenantctl: the tenant lifecycle of a multi-tenant SaaS on AWS, driving Terraform.
//!
//! The modules follow the flow of one tenant:
//!
//! `tenant` (validated id, tier, profile, every derived name) → `workspace`
//! (`tenants/<id>.toml`, the desired state) → `render` (tera templates →
//! `.tenantctl/roots/<id>/`, rendered once per tenant per command) → `terraform` (the
//! subprocess wrapper: init/plan/apply/output/destroy) → `db` (connections, migrations,
//! the SQL of the security model, data streaming) → `verify` (AWS SDK + SQL checks) →
//! `report` (checks and verdicts) → `output` (one table type as text, Markdown or JSON,
//! one stdout writer, one progress helper) → exit code (`exit`).
//!
//! `isolation` holds one file per isolation model (pool, bridge, silo) behind one trait:
//! everything that differs between the tiers' data isolation lives there, and nothing
//! else matches on the isolation. `commands/` holds one file per subcommand; `fleet` runs
//! many tenants with bounded parallelism.

pub mod adopt;
pub mod alarms;
pub mod archive;
pub mod audit;
pub mod aws;
pub mod backend;
pub mod cells;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod cost;
pub mod db;
pub mod exit;
pub mod fleet;
pub mod fsutil;
pub mod interrupt;
pub mod isolation;
pub mod lifecycle;
pub mod metrics;
pub mod moves;
pub mod offboard;
pub mod output;
pub mod records;
pub mod render;
pub mod report;
pub mod tenant;
pub mod terraform;
pub mod usage;
pub mod verify;
pub mod workspace;
