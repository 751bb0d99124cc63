//! One integration-test binary; modules grouped by topic. Shared servers (moto,
//! PostgreSQL) are started once per binary by `support` and stopped at exit.

mod support;
