//! `tenantctl render`: write Terraform roots only, no Terraform run. Tenants in cells
//! (`crate::cells`) are written as their cells' roots; new tenants of celled tiers are
//! placed in memory (the assignment is recorded by `add` and `apply`, not here).

use std::collections::BTreeMap;

use anyhow::Result;

use crate::cli::SelectArgs;
use crate::context::Ctx;
use crate::exit::Outcome;
use crate::fleet;
use crate::lifecycle::Services;
use crate::output::{Report, Table};
use crate::render::{self, RenderOptions};

pub async fn run(ctx: &Ctx, sel: &SelectArgs) -> Result<u8> {
    fleet::select(&ctx.ws.tenants()?, &sel.selection())?;
    let mut svc = Services::new(ctx, false).await?;
    let specs = svc.select(&sel.selection(), false).await?;
    let mut table = Table::new(&["tenant", "root"])
        .titled("tenantctl render")
        .code(0)
        .code(1);
    let mut json = Vec::new();
    // The shared modules once, then each root: 10,000 roots need not rewrite (or even
    // compare) the modules 10,000 times.
    render::write_modules(&ctx.ws)?;
    let mut cells: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for spec in &specs {
        let root = svc.render(spec, RenderOptions::default())?;
        match root.cell {
            Some(n) => cells.entry(n).or_default().push(spec.id.to_string()),
            None => {
                root.files.write(&root.dir)?;
            }
        }
        table.row([spec.id.to_string(), root.dir.display().to_string()]);
        // The fingerprint is what `apply` compares with the tenant's last apply: CI can
        // diff it between two commits to see which tenants a change touches.
        json.push(serde_json::json!({
            "tenant": spec.id,
            "root": root.dir,
            "fingerprint": root.fingerprint,
            "cell": root.cell.map(crate::cells::cell_name),
        }));
    }
    if !cells.is_empty() {
        let declared = crate::cells::declared(&ctx.ws)?;
        for n in cells.keys() {
            crate::cells::write_cell_root(&svc, *n, &declared, None).await?;
        }
    }
    Report::new(table, serde_json::Value::Array(json)).emit(ctx.output)?;
    Ok(Outcome::Success.code())
}
