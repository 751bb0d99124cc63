//! One move per tenant at a time. Terraform's state lock covers the Terraform steps
//! only; two runs copying the same tenant's rows at once would each clear what the
//! other wrote. A session-level advisory lock on the shared database, held for the
//! whole move, makes the second run fail fast (exit 4, retryable) instead.

use anyhow::Result;
use tokio_postgres::Client;

use crate::db::Database;
use crate::db::connect::PgContext;
use crate::tenant::TenantId;

/// Another run is moving this tenant.
#[derive(Debug, thiserror::Error)]
#[error(
    "another tenantctl run is moving tenant `{tenant}` right now\nhint: wait for it to finish and run again (the move resumes where it stands)"
)]
pub struct MoveLockHeld {
    pub tenant: String,
}

/// Held while alive: the lock goes with the session when dropped (or when the process
/// is killed, since the server ends the session).
pub struct MoveLock {
    _client: Client,
}

impl MoveLock {
    pub async fn take(db: &Database, id: &TenantId) -> Result<MoveLock> {
        let client = db.admin().connect("tenantctl move").await?;
        let key = format!("tenantctl move {id}");
        let got: bool = client
            .query_one(
                "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended($1, 0))",
                &[&key],
            )
            .await
            .pg_context(|| format!("cannot take the move lock of tenant `{id}`"))?
            .get(0);
        if !got {
            return Err(MoveLockHeld {
                tenant: id.to_string(),
            }
            .into());
        }
        Ok(MoveLock { _client: client })
    }
}
