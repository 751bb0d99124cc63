//! One integration-test binary; modules grouped by topic. Shared servers (moto,
//! PostgreSQL) are started once per binary by `support` and stopped at exit.

mod adoption;
mod alarms;
mod archive;
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
mod fleet;
mod interrupt;
mod isolation_models;
mod lifecycle;
mod migrate_metrics;
mod module_contract;
mod moves;
mod offboarding;
mod platform_https;
mod render;
mod runner_death;
mod silo_admin;
mod state_migrate;
mod support;
mod tier_moves;
