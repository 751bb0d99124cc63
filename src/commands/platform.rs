//! `tenantctl platform plan|apply|destroy`: the shared stack, for a fresh account or the
//! emulator. `apply` records the outputs in `.tenantctl/platform.json`, where tenant
//! rendering picks up whatever `[platform]` in the config leaves unset.

use anyhow::{Context, Result};

use crate::backend::StateLocation;
use crate::cli::PlatformAction;
use crate::config::PlatformValues;
use crate::context::Ctx;
use crate::exit::Outcome;
use crate::fsutil::write_atomic;
use crate::render;
use crate::terraform::{PlanOptions, Terraform};

pub async fn run(ctx: &Ctx, action: PlatformAction) -> Result<u8> {
    let ws = &ctx.ws;
    let files = render::platform_root(&ws.config, &ws.config.aws.effective())?;
    render::write_modules(ws)?;
    let dir = ws.platform_dir();
    files.write(&dir)?;
    let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let log = ws.logs_dir().join("platform").join(format!("{run_id}.log"));
    let tf = Terraform::new(
        ws.config.terraform.binary(),
        &dir,
        "platform",
        Some(&log),
        ctx.interrupt.clone(),
    )?
    .with_backend(StateLocation::wanted(
        &ws.config,
        &ws.config.aws.effective(),
        &dir,
        render::PLATFORM_STATE_KEY,
    ));
    tf.init().await?;
    match action {
        PlatformAction::Plan => {
            let changes = tf.plan(PlanOptions::default()).await?;
            let _ = std::fs::remove_file(dir.join("tfplan"));
            crate::output::emit(&format!("platform: {changes}\n"))?;
            Ok(if changes.is_empty() {
                Outcome::Success.code()
            } else {
                Outcome::Changes.code()
            })
        }
        PlatformAction::Apply => {
            ctx.info("platform: planning");
            let pending = tf.plan(PlanOptions::default()).await?;
            if !pending.is_empty() {
                ctx.info(format!("platform: applying ({pending})"));
                tf.apply_plan(0).await?;
            } else {
                let _ = std::fs::remove_file(dir.join("tfplan"));
            }
            let out = tf.output_json().await?;
            let values = platform_values_from_outputs(&out)?;
            let bytes = serde_json::to_vec_pretty(&values)?;
            write_atomic(&ws.platform_outputs_file(), &bytes)?;
            let aws = crate::aws::AwsClients::new(&ws.config.aws).await;
            crate::records::RecordStore::new(ws, Some(&aws))?
                .put_platform(&bytes)
                .await?;
            ctx.info(format!(
                "platform: applied; outputs recorded in `{}`",
                ws.platform_outputs_file().display()
            ));
            crate::output::emit(&(serde_json::to_string_pretty(&values)? + "\n"))?;
            Ok(Outcome::Success.code())
        }
        PlatformAction::Destroy => {
            if !ctx.yes {
                anyhow::bail!(
                    "refusing to destroy the platform without `--yes`: every tenant depends on it"
                );
            }
            let removed = tf.destroy(0).await?;
            let _ = std::fs::remove_file(ws.platform_outputs_file());
            crate::output::emit(&format!(
                "platform: destroyed ({} resources)\n",
                removed.remove
            ))?;
            Ok(Outcome::Success.code())
        }
    }
}

/// Maps `terraform output -json` of the platform root to the values tenants need.
pub fn platform_values_from_outputs(out: &serde_json::Value) -> Result<PlatformValues> {
    let p = out
        .get("platform")
        .and_then(|v| v.get("value"))
        .context("platform root has no `platform` output")?;
    let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let list = |k: &str| -> Vec<String> {
        p.get(k)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let target = p.get("dns_target");
    Ok(PlatformValues {
        name: None,
        domain: s("domain"),
        hosted_zone_id: s("hosted_zone_id"),
        cluster_arn: s("cluster_arn"),
        data_bucket: s("data_bucket"),
        vpc_id: s("vpc_id"),
        subnet_ids: list("subnet_ids"),
        service_security_group_ids: list("service_security_group_ids"),
        dns_target_name: target
            .and_then(|t| t.get("name"))
            .and_then(|v| v.as_str())
            .map(str::to_string),
        dns_target_zone_id: target
            .and_then(|t| t.get("zone_id"))
            .and_then(|v| v.as_str())
            .map(str::to_string),
        image: None,
        create_load_balancer: None,
        certificate_arn: None,
        alarm_topic_arn: s("alarm_topic_arn"),
        deny_insecure_transport: None,
    })
}
