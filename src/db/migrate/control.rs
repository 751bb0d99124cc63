//! What tenantctl keeps in the shared database besides the tenants' data: the fleet lock
//! and the control table.
//!
//! The fleet lock is a session-level advisory lock. `db migrate` and `db rollback` take
//! it exclusively on their control connection and keep that connection open, outside
//! the worker pool, until the run ends; provisioning takes it in shared mode, so it never applies migrations
//! while a run does, and several tenants can be provisioned at once. When the lock is
//! held, the error names the session holding it (from `pg_stat_activity`).
//!
//! The control table (`tenantctl.target_status`) records each target's last migration
//! error, which `db status` shows; a target that migrates cleanly later has it cleared.
//! Shared objects (the control schema, roles, grants) are changed under a second,
//! transaction-level lock, because concurrent GRANTs on one catalog row fail.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::db::connect::{PgContext, describe};
use crate::db::ident::ident;
use crate::db::sql;
use crate::tenant::Tier;

/// Another run holds the fleet lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "another `tenantctl db migrate` or `db rollback` run holds the migration lock on {database}{holder}\nhint: wait for it to finish, or pass `--lock-timeout SECONDS` to wait for it"
)]
pub struct LockHeld {
    pub database: String,
    pub holder: String,
}

/// Takes the fleet lock: exclusive for `db migrate`, shared for provisioning.
pub(crate) async fn lock_run(
    client: &Client,
    exclusive: bool,
    wait: Duration,
    database: &str,
) -> Result<()> {
    let (try_fn, wait_fn) = if exclusive {
        ("pg_try_advisory_lock", "pg_advisory_lock")
    } else {
        ("pg_try_advisory_lock_shared", "pg_advisory_lock_shared")
    };
    let key = format!("{}, {}", sql::LOCK_CLASS, sql::LOCK_RUN);
    if wait.is_zero() {
        let got: bool = client
            .query_one(&format!("SELECT {try_fn}({key})"), &[])
            .await
            .pg_context(|| "cannot take the migration lock".into())?
            .get(0);
        if got {
            return Ok(());
        }
    } else {
        let ms = wait.as_millis().max(1);
        let res = client
            .batch_execute(&format!(
                "SET lock_timeout = {ms}; SELECT {wait_fn}({key}); RESET lock_timeout;"
            ))
            .await;
        match res {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                let _ = client.batch_execute("RESET lock_timeout").await;
            }
            Err(e) => return Err(anyhow!("cannot take the migration lock: {}", describe(&e))),
        }
    }
    Err(LockHeld {
        database: database.to_string(),
        holder: lock_holder(client).await,
    }
    .into())
}

/// Releases the fleet lock taken by [`lock_run`] (closing the session would too, but not
/// before the connection's task next runs).
pub(crate) async fn unlock_run(client: &Client, exclusive: bool) {
    let f = if exclusive {
        "pg_advisory_unlock"
    } else {
        "pg_advisory_unlock_shared"
    };
    let _ = client
        .batch_execute(&format!(
            "SELECT {f}({}, {})",
            sql::LOCK_CLASS,
            sql::LOCK_RUN
        ))
        .await;
}

/// " (held by pid 123, `tenantctl db migrate` from 10.0.0.5 since ...)" or "".
async fn lock_holder(client: &Client) -> String {
    let q = format!(
        "SELECT a.pid::text, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket'),
                to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ')
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.classid = {} AND l.objid = {} AND l.objsubid = 2
           AND l.granted AND l.mode = 'ExclusiveLock'
           -- advisory locks are per database; pg_locks shows every database's
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         LIMIT 1",
        sql::LOCK_CLASS,
        sql::LOCK_RUN
    );
    match client.query_opt(&q, &[]).await {
        Ok(Some(row)) => {
            let (pid, app, from, since): (String, String, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            format!(" (held by pid {pid}, `{app}` from {from} since {since})")
        }
        _ => String::new(),
    }
}

async fn has_control(client: &Client) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT to_regclass(format('%I.target_status', $1::text)) IS NOT NULL",
            &[&sql::CONTROL_SCHEMA],
        )
        .await
        .pg_context(|| "cannot look for tenantctl's control schema".into())?
        .get(0))
}

/// Creates tenantctl's control schema if it is missing (older or fresh databases).
pub(crate) async fn ensure_control(client: &Client) -> Result<()> {
    if has_control(client).await? {
        return Ok(());
    }
    setup_tx(client, &sql::control_setup()).await
}

/// Runs `body` in a transaction holding the setup lock: concurrent GRANTs on the same
/// catalog row fail with "tuple concurrently updated", so shared objects are changed one
/// session at a time.
pub(crate) async fn setup_tx(client: &Client, body: &str) -> Result<()> {
    let text = format!(
        "BEGIN;\nSELECT pg_advisory_xact_lock({}, {});\n{body}\nCOMMIT;",
        sql::LOCK_CLASS,
        sql::LOCK_SETUP
    );
    if let Err(e) = client.batch_execute(&text).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(anyhow!("{}", describe(&e)));
    }
    Ok(())
}

/// Targets with a recorded error, to clear when they succeed.
pub(super) async fn targets_with_errors(client: &Client) -> Result<HashSet<String>> {
    let rows = client
        .query(
            &format!(
                "SELECT target FROM {}.target_status WHERE last_error IS NOT NULL",
                ident(sql::CONTROL_SCHEMA)
            ),
            &[],
        )
        .await
        .pg_context(|| "cannot read the last migration errors".into())?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Each target's last error and when it happened (`db status`). Read-only: a database
/// without the control schema has none recorded.
pub(super) async fn last_errors(
    client: &Client,
) -> Result<HashMap<String, (Option<String>, Option<String>)>> {
    if !has_control(client).await? {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT target, last_error, to_char(last_error_at, 'YYYY-MM-DD\"T\"HH24:MI:SSOF') FROM {}.target_status",
                ident(sql::CONTROL_SCHEMA)
            ),
            &[],
        )
        .await
        .pg_context(|| "cannot read the last migration errors".into())?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}

/// Records (or clears) the last error of each given target in one statement.
pub(crate) async fn record_status(
    client: &Client,
    rows: &[(String, Tier, Option<String>)],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let tiers: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let errors: Vec<Option<&str>> = rows.iter().map(|r| r.2.as_deref()).collect();
    client
        .execute(
            &format!(
                "INSERT INTO {}.target_status AS s (target, tier, last_error, last_error_at, updated_at)
                 SELECT u.target, u.tier, u.err, CASE WHEN u.err IS NULL THEN NULL ELSE now() END, now()
                 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(target, tier, err)
                 ON CONFLICT (target) DO UPDATE SET
                     tier = excluded.tier, last_error = excluded.last_error,
                     last_error_at = excluded.last_error_at, updated_at = excluded.updated_at",
                ident(sql::CONTROL_SCHEMA)
            ),
            &[&names, &tiers, &errors],
        )
        .await
        .pg_context(|| "cannot record the migration results".into())?;
    Ok(())
}
