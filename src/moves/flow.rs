//! The move protocol end to end for one tenant: Terraform for the resources, the
//! database steps of [`crate::moves::db`] for the rows, the [`Journal`] for resuming.
//!
//! `apply` (and `tenantctl move`) call [`decide`] with the tenant's record and its file,
//! then run what it says. Every step below is recorded in the journal only once it is
//! complete, and is idempotent, so a rerun after Ctrl-C, SIGKILL or a failure repeats the
//! step that stopped and carries on:
//!
//! | step | Terraform | database |
//! |---|---|---|
//! | started → prepared | the source's root plus the destination's resources | destination structures, migrated |
//! | prepared → frozen | - | the source's writes revoked, sessions ended |
//! | frozen → copied | - | rows copied and verified (a mismatch unfreezes the source) |
//! | copied → cut-over | the destination's root, the source's resources kept | login and secret moved, source hidden |
//! | cut-over → finishing | deletion protection off (a dedicated source) | - |
//! | finishing → done | the destination's root alone | the retained source's rows deleted |

use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{Duration as Days, Utc};
use indicatif::ProgressBar;

use crate::db::Database;
use crate::lifecycle::{self, Services};
use crate::moves::db::{self as mv, CopyMismatch, Side};
use crate::moves::journal::{Journal, Step};
use crate::moves::pause;
use crate::records::{ApplyRecord, TenantRecord};
use crate::render::{RenderOptions, RenderedRoot};
use crate::tenant::{Isolation, TenantId, Tier};
use crate::workspace::TenantSpec;

/// What a tenant's record and file ask of `apply`.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No move: a plain apply (a retained source, if any, stays rendered).
    None,
    /// The file's tier crosses isolation models from the last applied one.
    Start { from: Tier, to: Tier },
    /// A move stopped before its cut-over, the file still asks for its destination.
    Resume(Journal),
    /// A move stopped before its cut-over, the file asks for its source again: undo it.
    Abort(Journal),
    /// A move was cut over, the file asks for its source again: move the tenant back.
    Rollback(Journal),
    /// A move was cut over and its retention has passed: delete the retained source.
    Finish(Journal),
}

/// Decides from the record (last applied tier, journal) and the desired tier.
pub fn decide(id: &TenantId, rec: &TenantRecord, desired: Tier) -> Result<Decision> {
    let same = |a: Tier, b: Tier| a.isolation() == b.isolation();
    if let Some(j) = &rec.moving {
        return Ok(if same(desired, j.to) {
            if !j.is_cut_over() {
                Decision::Resume(j.clone())
            } else if j.step == Step::Finishing || j.retention_over(Utc::now()) {
                Decision::Finish(j.clone())
            } else {
                Decision::None
            }
        } else if same(desired, j.from) {
            if j.is_cut_over() {
                Decision::Rollback(j.clone())
            } else {
                Decision::Abort(j.clone())
            }
        } else {
            bail!(
                "tenant `{id}` moving {} → {} ({}) cannot move to {desired} too: one move at a time\nhint: finish this move first (`tenantctl move {id} --finish` once cut over) or roll it back (`tenantctl move {id} --rollback`)",
                j.from,
                j.to,
                j.step
            )
        });
    }
    let Some(applied) = &rec.last_apply else {
        return Ok(Decision::None);
    };
    let Ok(from) = applied.tier.parse::<Tier>() else {
        return Ok(Decision::None);
    };
    Ok(if same(from, desired) {
        Decision::None
    } else {
        Decision::Start { from, to: desired }
    })
}

/// How to render a tenant now: its file's tier, or what its move journal says.
pub fn render_options(rec: &TenantRecord, spec: &TenantSpec) -> (TenantSpec, RenderOptions) {
    match &rec.moving {
        Some(j) => {
            let (tier, dedicated) = j.render_as();
            (
                TenantSpec {
                    id: spec.id.clone(),
                    tier,
                },
                RenderOptions {
                    dedicated_database: dedicated,
                    ..RenderOptions::default()
                },
            )
        }
        None => (spec.clone(), RenderOptions::default()),
    }
}

/// Knobs of one move run.
pub struct MoveOptions {
    pub lock_timeout: u64,
    pub retain_days: u32,
}

/// A move run's result: the journal as it ended, and what this run did.
pub struct Moved {
    pub journal: Journal,
    /// The retained source was deleted: the move is over.
    pub finished: bool,
    /// A move before its cut-over was undone.
    pub aborted: bool,
    pub elapsed: std::time::Duration,
}

/// Runs a decision that is a move (anything but [`Decision::None`]).
pub async fn run(
    svc: &Services,
    id: &TenantId,
    decision: Decision,
    opts: &MoveOptions,
    bar: &ProgressBar,
) -> Result<Moved> {
    let db = svc
        .db
        .as_deref()
        .context("a move needs the database (`[database]` in tenantctl.toml)")?;
    let started = Instant::now();
    let _lock = crate::moves::lock::MoveLock::take(db, id).await?;
    let done = |journal: Journal, finished: bool, aborted: bool| Moved {
        journal,
        finished,
        aborted,
        elapsed: started.elapsed(),
    };
    Ok(match decision {
        Decision::None => bail!("tenant `{id}` has no move to run"),
        Decision::Start { from, to } => {
            let j = drive(svc, db, id, Journal::new(from, to, false), opts, bar).await?;
            done(j, false, false)
        }
        Decision::Resume(j) => done(drive(svc, db, id, j, opts, bar).await?, false, false),
        Decision::Rollback(j) => {
            let back = Journal::new(j.to, j.from, true);
            done(drive(svc, db, id, back, opts, bar).await?, false, false)
        }
        Decision::Abort(j) => done(abort(svc, db, id, j, opts, bar).await?, false, true),
        Decision::Finish(j) => done(finish(svc, db, id, j, opts, bar).await?, true, false),
    })
}

/// Records that the tenant is applied as `rendered` at `tier`, with the journal as it now
/// stands (`None`: the move is over).
async fn record_applied(
    svc: &Services,
    id: &TenantId,
    rendered: &RenderedRoot,
    tier: Tier,
    moving: Option<Journal>,
) -> Result<()> {
    svc.records
        .update(id, |r| {
            r.moving = moving;
            r.last_apply = Some(ApplyRecord {
                at: Utc::now(),
                fingerprint: rendered.fingerprint.clone(),
                provider_lock: lifecycle::lock_digest(&rendered.dir),
                tier: tier.to_string(),
            });
        })
        .await
}

async fn save(svc: &Services, id: &TenantId, j: &Journal) -> Result<()> {
    svc.records
        .update(id, |r| r.moving = Some(j.clone()))
        .await
        .with_context(|| format!("cannot record the move of tenant `{id}`"))
}

fn say(svc: &Services, bar: &ProgressBar, id: &TenantId, msg: &str) {
    bar.set_message(msg.to_string());
    if bar.is_hidden() {
        svc.ctx.info(format!("{id}: {msg}"));
    }
}

/// Both sides of the move in the journal's direction.
async fn sides(db: &Database, id: &TenantId, j: &Journal) -> Result<(Side, Side)> {
    Ok((
        Side::of(db, id, j.from, None).await?,
        Side::of(db, id, j.to, None).await?,
    ))
}

/// Renders the tenant as `j` stands and converges Terraform on it.
async fn converge(
    svc: &Services,
    id: &TenantId,
    j: &Journal,
    allow_destroy: bool,
    opts: &MoveOptions,
    bar: &ProgressBar,
) -> Result<RenderedRoot> {
    let (tier, dedicated) = j.render_as();
    let spec = TenantSpec {
        id: id.clone(),
        tier,
    };
    let rendered = svc.render(
        &spec,
        RenderOptions {
            allow_destroy,
            dedicated_database: dedicated,
            ..RenderOptions::default()
        },
    )?;
    rendered.write(&svc.ctx.ws)?;
    lifecycle::converge(svc, &spec, &rendered, opts.lock_timeout, Vec::new(), bar).await?;
    svc.ctx.interrupt.check()?;
    Ok(rendered)
}

/// Steps started → cut-over, from wherever the journal stands.
async fn drive(
    svc: &Services,
    db: &Database,
    id: &TenantId,
    mut j: Journal,
    opts: &MoveOptions,
    bar: &ProgressBar,
) -> Result<Journal> {
    let interrupt = &svc.ctx.interrupt;
    if j.step == Step::Started {
        save(svc, id, &j).await?;
        say(
            svc,
            bar,
            id,
            &format!(
                "move {} → {}: provisioning {} isolation beside {}",
                j.from,
                j.to,
                j.to.isolation(),
                j.from.isolation()
            ),
        );
        converge(svc, id, &j, false, opts, bar).await?;
        let (source, dest) = sides(db, id, &j).await?;
        mv::prepare(db, &source, &dest).await?;
        j.step = Step::Prepared;
        save(svc, id, &j).await?;
    }
    if j.step == Step::Prepared {
        interrupt.check()?;
        say(svc, bar, id, "freezing writes on the source");
        let (source, _) = sides(db, id, &j).await?;
        // The journal says frozen before the freeze runs: a run killed in between
        // resumes at the copy (the freeze is repeated there), never with a source
        // frozen that no journal step thaws.
        j.step = Step::Frozen;
        j.frozen_at = Some(Utc::now());
        save(svc, id, &j).await?;
        mv::freeze(db, &source).await?;
    }
    if j.step == Step::Frozen {
        interrupt.check()?;
        let (source, dest) = sides(db, id, &j).await?;
        // Repeated on a resume: the freeze of a killed run may not have committed.
        mv::freeze(db, &source).await?;
        let on_table = |table: &str, rows: i64| {
            say(svc, bar, id, &format!("copied {table} ({rows} rows)"));
        };
        say(svc, bar, id, "copying");
        let copied = tokio::select! {
            r = mv::copy(db, &source, &dest, &on_table) => r,
            // Dropping the copy closes its connections: the destination's transaction
            // rolls back, and the rerun starts the copy over.
            _ = interrupt.wait() => Err(crate::exit::Interrupted.into()),
        };
        match copied {
            Ok(tables) => {
                j.tables = tables;
                j.step = Step::Copied;
                j.last_error = None;
                save(svc, id, &j).await?;
            }
            Err(e) if e.is::<CopyMismatch>() => {
                // The source stays authoritative: writable again, the destination
                // emptied, the journal back before the freeze for a later attempt.
                mv::clear_destination(db, &source, &dest)
                    .await
                    .context("the copy did not verify, and clearing it failed")?;
                mv::unfreeze(db, &source)
                    .await
                    .context("the copy did not verify, and unfreezing the source failed")?;
                j.step = Step::Prepared;
                j.frozen_at = None;
                j.last_error = Some(format!("{e}"));
                save(svc, id, &j).await?;
                return Err(e.context(format!(
                    "tenant `{id}` stays on {} ({}), writable",
                    j.from,
                    j.from.isolation()
                )));
            }
            Err(e) => return Err(e),
        }
    }
    if j.step == Step::Copied {
        interrupt.check()?;
        say(
            svc,
            bar,
            id,
            &format!("cutting over to {} ({})", j.to, j.to.isolation()),
        );
        let mut cut = j.clone();
        cut.step = Step::CutOver;
        let rendered = converge(svc, id, &cut, false, opts, bar).await?;
        // Terraform has pointed the secret and the task definition at the destination;
        // the database follows. A test pauses here to interrupt the cut-over.
        tokio::select! {
            _ = pause::point("cutover") => {},
            _ = interrupt.wait() => return Err(crate::exit::Interrupted.into()),
        }
        let (source, dest) = sides(db, id, &j).await?;
        let secret = svc.db_secret(&dest.spec).await?;
        mv::cut_over(db, &source, &dest, &secret).await?;
        let now = Utc::now();
        j.step = Step::CutOver;
        j.cut_over_at = Some(now);
        j.retain_until = Some(now + Days::days(opts.retain_days as i64));
        record_applied(svc, id, &rendered, j.to, Some(j.clone())).await?;
    }
    Ok(j)
}

/// Deletes the retained source: its Terraform resources (a dedicated database after
/// its final snapshot, deletion protection turned off as its own step) and its rows.
async fn finish(
    svc: &Services,
    db: &Database,
    id: &TenantId,
    mut j: Journal,
    opts: &MoveOptions,
    bar: &ProgressBar,
) -> Result<Journal> {
    if !j.is_cut_over() {
        bail!(
            "the move of tenant `{id}` ({} → {}) is not cut over yet ({}): nothing to finish\nhint: `tenantctl apply {id}` resumes it",
            j.from,
            j.to,
            j.step
        );
    }
    let dedicated_goes =
        j.from.isolation() == Isolation::Silo && j.to.isolation() != Isolation::Silo;
    if j.step == Step::CutOver {
        if dedicated_goes {
            say(
                svc,
                bar,
                id,
                "turning deletion protection off on the retained database",
            );
            converge(svc, id, &j, true, opts, bar).await?;
        }
        j.step = Step::Finishing;
        save(svc, id, &j).await?;
    }
    say(
        svc,
        bar,
        id,
        &format!("deleting the retained {} source", j.from.isolation()),
    );
    // The rows first: a real dedicated database's go with its instance (after the final
    // snapshot), a local one is dropped here; pool rows and a bridge schema are deleted.
    let real_dedicated = dedicated_goes && db.settings().local_silo.is_none();
    if !real_dedicated {
        let (source, dest) = sides(db, id, &j).await?;
        mv::drop_source(db, &source, &dest).await?;
    }
    let rendered = converge(svc, id, &j, false, opts, bar).await?;
    record_applied(svc, id, &rendered, j.to, None).await?;
    Ok(j)
}

/// Undoes a move stopped before its cut-over: the source writable again, the
/// destination's rows, structures and resources removed, the journal cleared.
async fn abort(
    svc: &Services,
    db: &Database,
    id: &TenantId,
    j: Journal,
    opts: &MoveOptions,
    bar: &ProgressBar,
) -> Result<Journal> {
    say(
        svc,
        bar,
        id,
        &format!("undoing the move {} → {} ({})", j.from, j.to, j.step),
    );
    match sides(db, id, &j).await {
        Ok((source, dest)) => {
            if j.step >= Step::Frozen {
                mv::unfreeze(db, &source).await?;
            }
            let same = mv::same_server(db, &source.target, &dest.target);
            dest.model
                .drop_data(db, &dest.spec, !same)
                .await
                .context("cannot remove what the move prepared on its destination")?;
        }
        // A move stopped while Terraform created the destination may have no way in yet
        // (a dedicated database's admin secret): nothing was prepared there.
        Err(e) if j.step == Step::Started => {
            tracing::info!("{id}: nothing prepared on the destination to remove: {e:#}")
        }
        Err(e) => return Err(e),
    }
    // Terraform back to the source alone: a dedicated destination loses its deletion
    // protection first, as its own step.
    let mut back = Journal::new(j.from, j.from, false);
    if j.to.isolation() == Isolation::Silo {
        back.to = j.to;
        converge(svc, id, &back, true, opts, bar).await?;
        back.to = j.from;
    }
    let rendered = converge(svc, id, &back, false, opts, bar).await?;
    record_applied(svc, id, &rendered, j.from, None).await?;
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn applied(tier: Tier) -> TenantRecord {
        TenantRecord {
            last_apply: Some(ApplyRecord {
                at: Utc::now(),
                fingerprint: "x".into(),
                provider_lock: None,
                tier: tier.to_string(),
            }),
            ..Default::default()
        }
    }

    fn moving(from: Tier, to: Tier, step: Step) -> TenantRecord {
        let mut j = Journal::new(from, to, false);
        j.step = step;
        if step >= Step::CutOver {
            j.retain_until = Some(Utc::now() + Days::days(7));
        }
        TenantRecord {
            moving: Some(j),
            ..applied(from)
        }
    }

    #[test]
    fn a_tier_change_across_isolation_models_is_a_move() {
        use Tier::*;
        assert_eq!(
            decide(&acme(), &TenantRecord::default(), Growth).unwrap(),
            Decision::None,
            "never applied: a plain first apply"
        );
        assert_eq!(
            decide(&acme(), &applied(Growth), Growth).unwrap(),
            Decision::None
        );
        for (from, to) in [
            (Starter, Growth),
            (Growth, Starter),
            (Starter, Enterprise),
            (Enterprise, Starter),
            (Growth, Enterprise),
            (Enterprise, Growth),
        ] {
            assert_eq!(
                decide(&acme(), &applied(from), to).unwrap(),
                Decision::Start { from, to }
            );
        }
    }

    #[test]
    fn a_journal_resumes_aborts_rolls_back_or_finishes() {
        use Tier::*;
        let rec = moving(Starter, Growth, Step::Frozen);
        assert!(matches!(
            decide(&acme(), &rec, Growth).unwrap(),
            Decision::Resume(_)
        ));
        assert!(matches!(
            decide(&acme(), &rec, Starter).unwrap(),
            Decision::Abort(_)
        ));
        let e = decide(&acme(), &rec, Enterprise).unwrap_err().to_string();
        assert!(e.contains("one move at a time"), "{e}");

        let rec = moving(Starter, Growth, Step::CutOver);
        assert_eq!(
            decide(&acme(), &rec, Growth).unwrap(),
            Decision::None,
            "retained"
        );
        assert!(matches!(
            decide(&acme(), &rec, Starter).unwrap(),
            Decision::Rollback(_)
        ));

        let mut rec = moving(Starter, Growth, Step::CutOver);
        rec.moving.as_mut().unwrap().retain_until = Some(Utc::now() - Days::days(1));
        assert!(matches!(
            decide(&acme(), &rec, Growth).unwrap(),
            Decision::Finish(_)
        ));
        let rec = moving(Starter, Growth, Step::Finishing);
        assert!(matches!(
            decide(&acme(), &rec, Growth).unwrap(),
            Decision::Finish(_)
        ));
    }

    #[test]
    fn rendering_follows_the_journal() {
        use Tier::*;
        let spec = TenantSpec {
            id: TenantId::parse("acme").unwrap(),
            tier: Enterprise,
        };
        let (s, o) = render_options(&moving(Starter, Enterprise, Step::Copied), &spec);
        assert_eq!((s.tier, o.dedicated_database), (Starter, true));
        let (s, o) = render_options(&applied(Enterprise), &spec);
        assert_eq!((s.tier, o.dedicated_database), (Enterprise, false));
    }
}
