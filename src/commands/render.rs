//! `tenantctl render`: write Terraform roots only. No AWS call, no Terraform run.

use anyhow::Result;

use crate::cli::SelectArgs;
use crate::context::{Ctx, OutputFormat};
use crate::exit::Outcome;
use crate::fleet;
use crate::render::{RenderOptions, render_tenant};

pub fn run(ctx: &Ctx, sel: &SelectArgs) -> Result<u8> {
    let specs = fleet::select(&ctx.ws.tenants()?, sel)?;
    let mut rendered = Vec::new();
    for spec in &specs {
        let (dir, _) = render_tenant(&ctx.ws, spec, RenderOptions::default())?;
        rendered.push(serde_json::json!({"tenant": spec.id, "root": dir}));
        if ctx.output == OutputFormat::Human {
            println!("{}\t{}", spec.id, dir.display());
        }
    }
    if ctx.output != OutputFormat::Human {
        println!("{}", serde_json::to_string_pretty(&rendered)?);
    }
    Ok(Outcome::Success.code())
}
