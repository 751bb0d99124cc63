//! tenantctl: the tenant lifecycle of a multi-tenant SaaS on AWS, driving Terraform.
//!
//! The modules follow the flow of one tenant:
//!
//! `tenant` (validated id, tier, profile) → `workspace` (`tenants/<id>.toml`, the desired
//! state) → `render` (tera templates → `.tenantctl/roots/<id>/`) → `terraform` (the
//! subprocess wrapper: init/plan/apply/output/destroy) → `db` (the tier's database
//! isolation and migrations) → `verify` (AWS SDK + SQL checks) → `report` (table, JSON,
//! Markdown) → exit code (`exit`). `commands/` holds one file per subcommand; `fleet`
//! runs many tenants with bounded parallelism.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod db;
pub mod exit;
pub mod fleet;
pub mod fsutil;
pub mod interrupt;
pub mod isolation;
pub mod lifecycle;
pub mod output;
pub mod records;
pub mod render;
pub mod report;
pub mod tenant;
pub mod terraform;
pub mod verify;
pub mod workspace;
