//! One integration-test binary; modules grouped by topic. Shared servers (moto,
//! PostgreSQL) are started once per binary by `support` and stopped at exit.
//!
//! libtest starts tests in name order. The end-to-end tests that take minutes each (many
//! Terraform runs, the provider's fixed RDS waiters) live under `a_slowest` and `b_slow`
//! so that they start first and the short tests fill the gaps; named late (`tier_moves`)
//! they would start last and stretch the whole run by their own length.

mod a_slowest {
    mod cells;
    mod offboarding;
    mod state_migrate;
    mod tier_moves;
}
mod b_slow {
    mod adoption;
    pub(crate) mod alarms;
    mod archive;
    pub(crate) mod cells;
    mod fleet;
    mod interrupt;
    mod migrate_metrics;
    mod platform_https;
    mod runner_death;
    mod silo_admin;
}

mod audit;
mod bad_input;
mod ci;
mod cli_snapshots;
mod cost;
mod db_hijack;
mod db_isolation;
mod db_migrate;
mod db_pool_rules;
mod db_rollback;
mod db_status;
mod db_tls;
mod isolation_models;
mod lifecycle;
mod module_contract;
mod moves;
mod render;
mod support;
