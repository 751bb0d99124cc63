//! The connections a run's workers migrate over, within `[database] connection_budget`.
//!
//! The budget counts every connection a run holds. One is the control connection: it
//! takes the fleet lock and stays open, outside the pool, until the run ends, so no
//! worker's failure can end the session that holds the lock. The rest are worker slots:
//! at most that many workers run at once, each over one connection, obtained for its
//! target by [`Connections::get`]:
//!
//! - a pool or bridge target gets a pooled connection to the shared database, reused
//!   from target to target (a deadpool pool of at most one connection per slot);
//! - a silo target gets a connection of its own to its dedicated database, closed when
//!   the target is done. Before it opens, the pool's idle connections are closed: a
//!   pooled connection is either in a worker's hands (one per slot) or idle, so with the
//!   idle ones gone, pooled and silo connections together never exceed the slots.
//!
//! Pooled connections are opened by [`Endpoint::connect_raw`], like every other
//! connection tenantctl makes, so whatever it sets up (TLS, when it does) applies here too.

use std::ops::Deref;

use anyhow::{Result, anyhow};
use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult};
use tokio_postgres::Client;

use crate::db::connect::Endpoint;
use crate::db::{Location, Target};

/// Connections to the shared database for the pool.
pub(super) struct SharedDb {
    endpoint: Endpoint,
    purpose: String,
}

impl managed::Manager for SharedDb {
    type Type = Client;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Client, tokio_postgres::Error> {
        self.endpoint.connect_raw(&self.purpose).await
    }

    async fn recycle(
        &self,
        client: &mut Client,
        _: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        // Every migration's transaction ends in COMMIT or ROLLBACK before the connection
        // is returned, and one that ran a no-transaction migration is discarded instead
        // (`Conn::discard`), so a live session is clean; a dead one is replaced.
        if client.is_closed() {
            return Err(RecycleError::message("the connection was closed"));
        }
        Ok(())
    }
}

/// The worker slots a budget of `budget` connections leaves beside the control
/// connection; at least one, since a run cannot work over the connection holding the
/// lock (a budget of 1 therefore means 2 connections).
pub(super) fn worker_slots(budget: usize) -> usize {
    budget.saturating_sub(1).max(1)
}

/// Where workers get their connections.
pub(super) struct Connections {
    shared: managed::Pool<SharedDb>,
    purpose: String,
}

/// A worker's connection: back to the pool, or closed, when dropped.
pub(super) enum Conn {
    Pooled(managed::Object<SharedDb>),
    Own(Client),
}

impl Conn {
    /// Closes the connection instead of giving it back to the pool: its session ran
    /// statements of a no-transaction migration, whose session-level effects (a `SET`)
    /// must not follow the connection to another target.
    pub fn discard(self) {
        match self {
            Conn::Pooled(c) => drop(managed::Object::take(c)),
            Conn::Own(c) => drop(c),
        }
    }
}

impl Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        match self {
            Conn::Pooled(c) => c,
            Conn::Own(c) => c,
        }
    }
}

impl Connections {
    /// `slots` is the most workers that run at once (see [`worker_slots`]).
    pub fn new(shared: &Endpoint, purpose: &str, slots: usize) -> Connections {
        let manager = SharedDb {
            endpoint: shared.clone(),
            purpose: purpose.to_string(),
        };
        let shared = managed::Pool::builder(manager)
            .max_size(slots.max(1))
            .build()
            // Only setting timeouts without a runtime makes `build` fail.
            .expect("a pool without timeouts");
        Connections {
            shared,
            purpose: purpose.to_string(),
        }
    }

    /// The connection `target` is migrated over. The caller holds a worker slot, and
    /// drops the connection before giving the slot up.
    pub async fn get(&self, target: &Target) -> Result<Conn> {
        match &target.location {
            Location::Shared => match self.shared.get().await {
                Ok(c) => Ok(Conn::Pooled(c)),
                Err(PoolError::Backend(e)) => Err(self.shared.manager().endpoint.connect_error(&e)),
                Err(e) => Err(anyhow!("no connection to the shared database: {e}")),
            },
            Location::Silo(ep) => {
                // Dropping the idle connections closes them.
                drop(self.shared.retain(|_, _| false));
                Ok(Conn::Own(ep.connect(&self.purpose).await?))
            }
            Location::Unavailable(why) => Err(anyhow!("{why}")),
        }
    }
}
