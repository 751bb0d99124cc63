//! Moving a tenant between isolation models (a tier change that crosses them): its rows
//! are carried, verified and cut over, never stranded.
//!
//! [`db`] holds the database steps, each idempotent.

pub mod db;
