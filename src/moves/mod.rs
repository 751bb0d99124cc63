//! Moving a tenant between isolation models (a tier change that crosses them): its rows
//! are carried, verified and cut over, never stranded.
//!
//! - [`flow`] runs the protocol for one tenant: Terraform, database, journal;
//! - [`db`] holds the database steps, each idempotent;
//! - [`journal`] is where a move stands, kept in the tenant's record so a rerun resumes;
//! - [`lock`] keeps two runs from moving one tenant at once;
//! - [`report`] is what a move shows (progress aside): per-table rows and checksums,
//!   the freeze and the total time, as a table or JSON;
//! - [`pause`] gives tests a deterministic place to interrupt a move.

pub mod db;
pub mod flow;
pub mod journal;
pub mod lock;
pub mod pause;
pub mod report;
