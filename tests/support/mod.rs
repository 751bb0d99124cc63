//! Shared test support: launchers for moto and PostgreSQL, and a `tenantctl` runner that
//! dumps command, working directory, stdout and stderr on failure.
#![allow(dead_code)]
