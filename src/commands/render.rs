//! `tenantctl render`: write Terraform roots only. No AWS call, no Terraform run.

use anyhow::Result;

use crate::cli::SelectArgs;
use crate::context::Ctx;
use crate::exit::Outcome;
use crate::fleet;
use crate::output::{Report, Table};
use crate::render::{self, RenderOptions};

pub fn run(ctx: &Ctx, sel: &SelectArgs) -> Result<u8> {
    let specs = fleet::select(&ctx.ws.tenants()?, &sel.selection())?;
    let platform = render::platform_values(&ctx.ws)?;
    let mut table = Table::new(&["tenant", "root"])
        .titled("tenantctl render")
        .code(0)
        .code(1);
    let mut json = Vec::new();
    for spec in &specs {
        let root = render::render_root(&ctx.ws, &platform, spec, RenderOptions::default())?;
        root.write(&ctx.ws)?;
        table.row([spec.id.to_string(), root.dir.display().to_string()]);
        json.push(serde_json::json!({"tenant": spec.id, "root": root.dir}));
    }
    Report::new(table, serde_json::Value::Array(json)).emit(ctx.output)?;
    Ok(Outcome::Success.code())
}
