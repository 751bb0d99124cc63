//! One integration-test binary; modules grouped by topic. Shared servers (moto,
//! PostgreSQL) are started once per binary by `support` and stopped at exit.

mod bad_input;
mod db_isolation;
mod db_migrate;
mod fleet;
mod interrupt;
mod lifecycle;
mod module_contract;
mod render;
mod support;
