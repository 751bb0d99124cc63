//! `tenantctl remove <id>`: guarded offboarding that loses nothing by accident.
//!
//! In this order, each step recorded in the tenant's record once done
//! (`records::RemoveJournal`), so an interrupted remove is simply run again and continues
//! at the recorded step:
//!
//! 1. export the tenant's database data to the archive location (`[archive]`); a failed
//!    export stops here, before anything is deleted, unless `--no-export` was given;
//! 2. turn deletion protection off (dedicated database) and name the final snapshot
//!    uniquely (`tenant-<id>-final-<time>`), keep the tenant's KMS key out of the
//!    destroy unless `--shred`, then destroy;
//! 3. check that the destroy really removed the tenant's resources: a destroy that found
//!    nothing (a wrong state location, an empty state) stops here, and no database data
//!    is deleted;
//! 4. copy the final snapshot under the archive key (`[archive] kms_key_id`), which
//!    outlives the tenant;
//! 5. archive or delete the tenant's objects under `s3://<data bucket>/tenants/<id>/`
//!    (`[archive] objects`);
//! 6. drop the tenant's database objects (both sides of a move in progress or retained);
//! 7. remove the tenant file and its record.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use chrono::Utc;

use crate::archive::{self, ObjectsPolicy};
use crate::cli::RemoveArgs;
use crate::context::Ctx;
use crate::exit::Outcome;
use crate::isolation;
use crate::lifecycle::Services;
use crate::moves::pause;
use crate::offboard;
use crate::records::RemoveJournal;
use crate::render::{RenderOptions, final_snapshot_name};
use crate::tenant::TenantId;
use crate::terraform::PlanOptions;

/// What was marked as the export of a removal run with `--no-export`.
const SKIPPED: &str = "skipped (--no-export)";

pub async fn run(ctx: &Ctx, args: &RemoveArgs) -> Result<u8> {
    let id = TenantId::parse(&args.id)?;
    let spec = ctx.ws.tenant(&id)?;
    let cfg = ctx.config();
    let svc = Services::new(ctx, true).await?;
    let rec = svc.records.get(&id).await?;
    // A tenant in the middle of a move (or with a retained source) has data on both
    // sides: both go, and the root is rendered as the move stands.
    let moving = rec.moving.clone();
    let (rspec, ropts) = svc.render_options(&spec).await?;
    // Refuse what cannot be rendered before asking anything.
    let plain = svc.render(&rspec, ropts)?;
    let dedicated = isolation::of(rspec.tier).dedicated() || ropts.dedicated_database;
    let has_key = dedicated || plain.inputs.tenant_key;
    let final_snapshot = dedicated && !plain.inputs.skip_final_snapshot;
    let archive_key = cfg.archive.kms_key_id.clone();
    if final_snapshot && archive_key.is_none() {
        bail!(
            "refusing to remove tenant `{id}`: its dedicated database's final snapshot needs a key that outlives the tenant, and `[archive] kms_key_id` is not set\nhint: set `[archive] kms_key_id` to the platform's archive key (the snapshot is copied under it), or `[terraform] skip_final_snapshot = true` to take none"
        );
    }
    if args.shred && !has_key {
        bail!(
            "refusing `--shred` for tenant `{id}`: it has no KMS key of its own (tier {}), so there is nothing to shred\nhint: give the tier keys with `[tiers.{}] tenant_key = true` (and apply) first, or remove without `--shred`",
            spec.tier,
            spec.tier
        );
    }
    let resumed = rec.removing.clone();
    if !ctx.yes {
        confirm(
            &id,
            args.no_export && resumed.as_ref().is_none_or(|j| j.exported.is_none()),
            args.shred,
        )?;
    }
    let mut j = match resumed {
        Some(mut j) => {
            ctx.info(format!(
                "{id}: resuming the removal started at {}",
                j.started_at.format("%Y-%m-%dT%H:%M:%SZ")
            ));
            j.shred |= args.shred;
            j
        }
        None => RemoveJournal {
            started_at: Utc::now(),
            shred: args.shred,
            exported: None,
            destroying: false,
            destroyed: None,
            snapshot: None,
            objects: None,
            database_dropped: false,
            key: None,
            key_kept: false,
        },
    };
    save(&svc, &id, &j).await?;

    // 1. Export first: a removal that cannot keep a copy deletes nothing.
    if j.exported.is_none() {
        if args.no_export {
            ctx.info(format!("{id}: not exported (--no-export)"));
            j.exported = Some(SKIPPED.into());
        } else {
            ctx.info(format!(
                "{id}: exporting ({} tier) before anything is deleted",
                rspec.tier
            ));
            let exported = archive::export_tenant(&svc, &rspec, None, &|t| {
                ctx.info(format!("{id}: exported {} ({} rows)", t.name, t.rows))
            })
            .await
            .with_context(|| {
                format!("cannot export tenant `{id}` before removing it: nothing was removed\nhint: fix the export (`tenantctl export {id}` shows the same error), or pass `--no-export` to remove without a copy")
            })?;
            ctx.info(format!("{id}: exported to {}", exported.location));
            j.exported = Some(exported.location.to_string());
        }
        save(&svc, &id, &j).await?;
    }
    pause::point("exported").await;
    ctx.interrupt.check()?;

    // 2. Destroy.
    let bar = indicatif::ProgressBar::hidden();
    let allow = RenderOptions {
        allow_destroy: true,
        final_snapshot_at: Some(j.started_at),
        ..ropts
    };
    let cell = svc.cells.cell_of(&id);
    let rendered = match cell {
        None => svc.render_and_write(&rspec, allow)?,
        Some(n) => {
            crate::cells::write_cell_root(&svc, n, &crate::cells::declared(&ctx.ws)?, Some(&id))
                .await?;
            svc.render(&rspec, allow)?
        }
    };
    // In a cell only the tenant's own module instance is destroyed.
    let targets = match cell {
        None => Vec::new(),
        Some(_) => vec![format!("module.tenant[\"{id}\"]")],
    };
    if j.destroyed.is_none() {
        let tf = match cell {
            None => svc.terraform(&rspec, "remove", bar)?,
            Some(n) => svc.cell_terraform(n, "remove", bar)?,
        };
        tf.init().await?;
        if dedicated || j.shred {
            // Terraform cannot delete an RDS instance with deletion protection on: apply
            // the protection change (and the final snapshot's unique name) first; the
            // key's pending window is the configured one when the destroy schedules it.
            ctx.info(format!("{id}: preparing the destroy (deletion protection off, final snapshot name, key deletion window)"));
            let pending = tf
                .plan(PlanOptions {
                    destroy: false,
                    lock_timeout: args.lock_timeout,
                    replace: Vec::new(),
                    targets: targets.clone(),
                })
                .await?;
            if !pending.is_empty() {
                tf.apply_plan(args.lock_timeout).await?;
            }
        }
        if has_key {
            let state = tf.state_list().await?;
            let key_address = format!("module.tenant[\"{id}\"].aws_kms_key.this[0]");
            if state.contains(&key_address) {
                if j.key.is_none() {
                    j.key = tf.output_json().await.ok().and_then(|o| {
                        o["tenants"]["value"][id.as_str()]["kms_key_arn"]
                            .as_str()
                            .map(str::to_string)
                    });
                    save(&svc, &id, &j).await?;
                }
                if !j.shred {
                    // Without `--shred` the key outlives the tenant: exports and secrets
                    // under it stay readable. Terraform forgets it; the destroy keeps it.
                    tf.state_rm(&key_address, args.lock_timeout).await?;
                    j.key_kept = true;
                    save(&svc, &id, &j).await?;
                }
            }
        }
        ctx.info(format!("{id}: destroying"));
        let was_destroying = j.destroying;
        j.destroying = true;
        save(&svc, &id, &j).await?;
        let destroyed = tf.destroy_targets(args.lock_timeout, targets).await?;
        // 3. Only a destroy that really removed the tenant's resources lets its data go.
        let role = id.resource_name();
        let role_left = role_exists(&svc, &role).await?;
        if role_left || (destroyed.remove == 0 && !was_destroying && rec.last_apply.is_some()) {
            let why = if role_left {
                format!("the tenant's resources are still there (IAM role `{role}` exists)")
            } else {
                "the tenant was applied, but its state holds nothing".to_string()
            };
            bail!(
                "the destroy of tenant `{id}` removed {} resources and {why}: its Terraform state is probably not where tenantctl looks (`{}`, or the state key in the S3 backend); no database data and no objects were deleted\nhint: point `[state]` at the tenant's real state (or put the state back) and rerun `tenantctl remove {id}`: it continues after the export",
                destroyed.remove,
                rendered.dir.display()
            );
        }
        ctx.info(format!("{id}: destroyed ({} resources)", destroyed.remove));
        j.destroyed = Some(destroyed.remove);
        save(&svc, &id, &j).await?;
    }
    pause::point("destroyed").await;
    ctx.interrupt.check()?;

    // 4. The final snapshot, under a key that outlives the tenant.
    if final_snapshot && j.snapshot.is_none() {
        let source = final_snapshot_name(&id, j.started_at);
        let target = format!(
            "{}-archive-{}",
            id.resource_name(),
            j.started_at.format("%Y%m%d%H%M%S")
        );
        let key = archive_key.as_deref().unwrap_or_default();
        ctx.info(format!("{id}: copying the final snapshot `{source}` to `{target}` under the archive key `{key}`"));
        offboard::archive_snapshot(&svc.aws, &source, &target, key).await?;
        j.snapshot = Some(target);
        save(&svc, &id, &j).await?;
    }

    // 5. The tenant's objects: archived or deleted, never left readable in place.
    if j.objects.is_none() {
        let data_bucket = plain.inputs.data_bucket.clone();
        let to_bucket = cfg
            .archive
            .bucket
            .clone()
            .unwrap_or_else(|| data_bucket.clone());
        let to_prefix = format!(
            "{}/{id}/objects-{}/",
            cfg.archive
                .prefix
                .as_deref()
                .unwrap_or(archive::DEFAULT_PREFIX),
            j.started_at.format("%Y%m%dT%H%M%SZ")
        );
        let policy = cfg.archive.objects;
        let line = offboard::clear_objects(
            &svc.aws,
            &id,
            &data_bucket,
            policy,
            &to_bucket,
            &to_prefix,
            archive_key.as_deref(),
        )
        .await?;
        ctx.info(format!("{id}: {line}"));
        j.objects = Some(match policy {
            ObjectsPolicy::Archive => format!("s3://{to_bucket}/{to_prefix}"),
            ObjectsPolicy::Delete => "deleted".into(),
        });
        save(&svc, &id, &j).await?;
    }

    // 6. Database data, only now.
    if !j.database_dropped {
        if let Some(db) = &svc.db {
            let mut tiers = vec![spec.tier];
            if let Some(m) = &moving {
                tiers.extend([m.from, m.to]);
            }
            tiers.sort();
            tiers.dedup();
            for tier in tiers {
                let side = crate::workspace::TenantSpec {
                    id: id.clone(),
                    tier,
                };
                db.deprovision(&side).await.with_context(|| {
                    format!("cannot drop the database objects of tenant `{id}` ({tier})")
                })?;
            }
        }
        j.database_dropped = true;
        save(&svc, &id, &j).await?;
    }

    // 7. The desired state goes last.
    let file = ctx.ws.tenant_file(&id);
    if file.exists() {
        std::fs::remove_file(&file)
            .with_context(|| format!("cannot remove `{}`", file.display()))?;
    }
    match cell {
        // The slot goes back to the cell for the next new tenant, then the cell's root
        // is written without the tenant (its resources are gone from the state).
        Some(n) => {
            let mut cells = (*svc.cells).clone();
            cells.release(&id);
            cells.save(&svc.records).await?;
            svc.records.delete(&id).await?;
            let svc = Services {
                cells: std::sync::Arc::new(cells),
                ..svc.clone()
            };
            crate::cells::write_cell_root(&svc, n, &crate::cells::declared(&ctx.ws)?, None).await?;
        }
        None => {
            svc.records.delete(&id).await?;
            let _ = std::fs::remove_dir_all(&rendered.dir);
        }
    }
    for line in summary(ctx, &id, &j, has_key) {
        ctx.info(line);
    }
    Ok(Outcome::Success.code())
}

/// What the removal kept and where, and what shredding makes unreadable when.
fn summary(ctx: &Ctx, id: &TenantId, j: &RemoveJournal, has_key: bool) -> Vec<String> {
    let mut out = vec![format!("{id}: removed")];
    match j.exported.as_deref() {
        Some(SKIPPED) | None => out.push(format!("{id}: no export was taken (--no-export)")),
        Some(at) => out.push(format!(
            "{id}: export kept at {at} (`tenantctl exports {id}`)"
        )),
    }
    if let Some(s) = &j.snapshot {
        out.push(format!(
            "{id}: final snapshot `{s}` kept under the archive key (restorable with `aws rds restore-db-instance-from-db-snapshot`)"
        ));
    }
    let key = j
        .key
        .clone()
        .unwrap_or_else(|| format!("alias/{}", id.resource_name()));
    if has_key && j.shred && !j.key_kept {
        let days = ctx.config().keys.deletion_window_days;
        let when = (j.started_at + chrono::Duration::days(days.into())).format("%Y-%m-%d");
        out.push(format!(
            "{id}: shredded: KMS key {key} is scheduled for deletion in {days} days ([keys] deletion_window_days), around {when}; from then on the tenant's secrets, log group and every export under that key (the export above included) are unreadable, for good. Until then `aws kms cancel-key-deletion --key-id {key}` undoes it"
        ));
    } else if has_key {
        let late = if j.shred {
            " (`--shred` came after an earlier run of this removal had kept it)"
        } else {
            ""
        };
        out.push(format!(
            "{id}: KMS key {key} kept{late} (exports under it stay readable); shred later with `aws kms schedule-key-deletion --key-id {key} --pending-window-in-days 30`"
        ));
    }
    out
}

async fn save(svc: &Services, id: &TenantId, j: &RemoveJournal) -> Result<()> {
    svc.records
        .update(id, |r| r.removing = Some(j.clone()))
        .await
}

async fn role_exists(svc: &Services, name: &str) -> Result<bool> {
    match svc.aws.iam.get_role().role_name(name).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = e.into_service_error();
            if e.is_no_such_entity_exception() {
                Ok(false)
            } else {
                Err(anyhow::Error::new(e))
                    .with_context(|| format!("cannot look up IAM role `{name}`"))
            }
        }
    }
}

fn confirm(id: &TenantId, no_export: bool, shred: bool) -> Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "refusing to remove tenant `{id}` without confirmation: stdin is not a terminal\nhint: pass `--yes` in non-interactive runs"
        );
    }
    let mut err = std::io::stderr().lock();
    let mut what =
        format!("This destroys every resource of tenant `{id}`, its database objects included.");
    if no_export {
        what.push_str("\nWith --no-export, NO copy of its data is taken first.");
    }
    if shred {
        what.push_str("\nWith --shred, its KMS key is scheduled for deletion: everything encrypted under it becomes unreadable after the pending window.");
    }
    write!(err, "{what}\nType the tenant id to confirm: ")?;
    err.flush()?;
    drop(err);
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if line.trim() != id.as_str() {
        bail!("confirmation did not match `{id}`: nothing was removed");
    }
    Ok(())
}
