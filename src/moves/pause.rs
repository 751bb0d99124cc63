//! Deterministic interruption points for the move's tests.
//!
//! A move's copy and cut-over take milliseconds on a small tenant, too short for a test
//! to send SIGINT into them at a known place. With `TENANTCTL_PAUSE_AT=copy` (after the
//! first table is streamed, inside the copy's transaction) or `=cutover` (after
//! Terraform moved the secret, before the database follows), the move stops there,
//! says so on stderr, and waits until it is interrupted. Unset, a point costs one
//! environment lookup.

/// The variable naming the point to pause at.
pub const VAR: &str = "TENANTCTL_PAUSE_AT";

/// Waits forever if `name` is the configured pause point; returns at once otherwise.
pub async fn point(name: &str) {
    if std::env::var(VAR).is_ok_and(|v| v == name) {
        crate::output::status_line(&format!("paused at {name} ({VAR})"));
        std::future::pending::<()>().await;
    }
}
