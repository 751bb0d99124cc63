//! `tenantctl cost [<id>...] [--what-if <id>=<tier>...] [--actual [--month YYYY-MM]]`:
//! the monthly estimate of `src/cost.rs` per tenant and for the fleet, now beside a
//! hypothetical change of tiers, or beside what each tenant really cost (`src/usage.rs`).
//! Without `--actual` it reads only the work dir: no AWS call, no database, nothing
//! written.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cli::CostArgs;
use crate::context::Ctx;
use crate::cost::{
    FleetCost, Model, PriceSource, PriceTable, TenantCost, cents, dollars, estimate, signed_dollars,
};
use crate::exit::Outcome;
use crate::output::{Align, Report, Table};
use crate::tenant::{TenantId, Tier};
use crate::usage::{self, Actual, Month};

pub async fn run(ctx: &Ctx, args: &CostArgs) -> Result<u8> {
    let ws = &ctx.ws;
    let cfg = ctx.config();
    // The month is checked with the rest of the input, before any call.
    let month = match (&args.month, args.actual) {
        (Some(raw), _) => Some(Month::parse(raw)?),
        (None, true) => Some(Month::default()),
        (None, false) => None,
    };
    if let Some(m) = month {
        m.check_not_future(chrono::Utc::now().date_naive())?;
        if !args.what_if.is_empty() {
            bail!(
                "invalid --actual with --what-if: actual spend is compared with the estimate of today's tiers; run them separately"
            );
        }
    }
    // Every named tenant must be declared: one clear error before any figure.
    let mut ids = Vec::new();
    for raw in &args.ids {
        let id = TenantId::parse(raw)?;
        ws.tenant(&id)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut changes: BTreeMap<TenantId, Tier> = BTreeMap::new();
    for w in &args.what_if {
        ws.tenant(&w.id)?;
        if let Some(prev) = changes.insert(w.id.clone(), w.tier)
            && prev != w.tier
        {
            bail!(
                "invalid --what-if: tenant `{}` is given two tiers, `{prev}` and `{}`",
                w.id,
                w.tier
            );
        }
    }

    let region = cfg.aws.effective().region_or_default();
    let (prices, source) = PriceTable::load(&cfg.cost, &ws.root, &region)?;
    let platform = crate::render::platform_values(ws)?;
    let model = Model {
        prices: &prices,
        cost: &cfg.cost,
        profiles: Tier::ALL.iter().map(|t| (*t, cfg.profile(*t))).collect(),
        load_balancer: platform.create_load_balancer.unwrap_or(true),
        alarms: cfg.alarms.enabled,
    };
    let fleet: Vec<(TenantId, Tier)> = ws.tenants()?.into_iter().map(|s| (s.id, s.tier)).collect();
    let now = estimate(&fleet, &model)?;
    let prices_line = prices_line(&prices, &source);
    let prices_json = json!({
        "region": prices.region,
        "version": prices.version,
        "currency": prices.currency,
        "hours_per_month": prices.hours_per_month,
        "source": source,
    });

    let actual = match month {
        Some(m) => {
            let clients = crate::aws::AwsClients::new(&cfg.aws).await;
            Some(usage::fetch(&clients.cost_explorer, m).await?)
        }
        None => None,
    };
    let report = if changes.is_empty() {
        let shown = select(&now, &ids);
        let mut table = breakdown_table(&shown, actual.as_ref());
        fleet_summary(&mut table, &now);
        let mut json = json!({ "prices": prices_json, "tenants": shown.iter().map(|t| tenant_json(t, actual.as_ref())).collect::<Vec<_>>(), "fleet": fleet_json(&now) });
        if let Some(a) = &actual {
            table.summary(actual_line(a, &now));
            json["actual"] = actual_json(a, &now);
        }
        table.summary(prices_line);
        Report::new(table, json)
    } else {
        let what_if_fleet: Vec<(TenantId, Tier)> = fleet
            .iter()
            .map(|(id, t)| (id.clone(), changes.get(id).copied().unwrap_or(*t)))
            .collect();
        let then = estimate(&what_if_fleet, &model)?;
        let ids = if ids.is_empty() {
            changes.keys().cloned().collect()
        } else {
            ids
        };
        compare(&now, &then, &ids, &changes, prices_line, prices_json)
    };
    report.emit(ctx.output)?;
    Ok(Outcome::Success.code())
}

/// The named tenants' rows, or every tenant's.
fn select<'a>(f: &'a FleetCost, ids: &[TenantId]) -> Vec<&'a TenantCost> {
    if ids.is_empty() {
        f.tenants.iter().collect()
    } else {
        ids.iter().filter_map(|id| f.get(id)).collect()
    }
}

fn prices_line(p: &PriceTable, source: &PriceSource) -> String {
    let from = match source {
        PriceSource::BuiltIn => "built in".to_string(),
        PriceSource::File(path) => format!("`{}`", path.display()),
    };
    format!(
        "prices: {} version {} ({from}), {} per month of {} hours; estimated from what each tier creates, usage (traffic, logs, storage, requests) not included",
        p.region, p.version, p.currency, p.hours_per_month
    )
}

fn breakdown_table(rows: &[&TenantCost], actual: Option<&Actual>) -> Table {
    let mut headers = vec![
        "tenant", "tier", "compute", "database", "secrets", "kms", "alarms", "platform", "total",
    ];
    let actual_header = actual.map(|a| format!("actual {}", a.month));
    if let Some(h) = &actual_header {
        headers.push(h.as_str());
    }
    let mut t = Table::new(&headers)
        .titled("tenantctl cost (USD per month)")
        .code(0);
    for c in 2..headers.len() {
        t = t.align(c, Align::Right);
    }
    for c in rows {
        let mut row = vec![
            c.id.to_string(),
            c.tier.to_string(),
            dollars(c.compute),
            dollars(c.database),
            dollars(c.secrets),
            dollars(c.kms),
            dollars(c.alarms),
            dollars(c.platform),
            dollars(c.total()),
        ];
        if let Some(a) = actual {
            row.push(
                a.by_tenant
                    .get(c.id.as_str())
                    .map(|v| dollars(*v))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        t.row(row);
    }
    t
}

/// Tag values Cost Explorer reported that are no declared tenant (a removed tenant, a
/// resource tagged by hand).
fn other_tag_values<'a>(a: &'a Actual, f: &FleetCost) -> BTreeMap<&'a str, f64> {
    a.by_tenant
        .iter()
        .filter(|(k, _)| f.tenants.iter().all(|t| t.id.as_str() != k.as_str()))
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

fn actual_line(a: &Actual, f: &FleetCost) -> String {
    let others = other_tag_values(a, f);
    let declared: f64 = a.by_tenant.values().sum::<f64>() - others.values().sum::<f64>();
    let mut line = format!(
        "actual {} (Cost Explorer, {} by tag `{}`{}): {} on declared tenants, {} untagged (shared platform and database, untagged usage)",
        a.month,
        a.currency,
        usage::TAG,
        if a.estimated {
            ", estimated: the month is open"
        } else {
            ""
        },
        dollars(declared),
        dollars(a.untagged),
    );
    if !others.is_empty() {
        let list: Vec<String> = others
            .iter()
            .map(|(k, v)| format!("{k} {}", dollars(*v)))
            .collect();
        line.push_str(&format!(
            ", {} on tags of no declared tenant ({})",
            dollars(others.values().sum()),
            list.join(", ")
        ));
    }
    line
}

fn actual_json(a: &Actual, f: &FleetCost) -> Value {
    let others: serde_json::Map<String, Value> = other_tag_values(a, f)
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(cents(v))))
        .collect();
    json!({
        "month": a.month,
        "source": "cost-explorer",
        "metric": "UnblendedCost",
        "tag": usage::TAG,
        "currency": a.currency,
        "estimated": a.estimated,
        "untagged": cents(a.untagged),
        "other_tag_values": others,
        "total": cents(a.total()),
    })
}

fn fleet_summary(table: &mut Table, f: &FleetCost) {
    let tiers: Vec<String> = f
        .by_tier()
        .iter()
        .map(|(tier, (n, total))| format!("{tier} {n}: {}", dollars(*total)))
        .collect();
    table.summary(format!(
        "fleet: {} tenants, {} per month ({})",
        f.tenants.len(),
        dollars(f.total()),
        tiers.join(", ")
    ));
    let shared_db = f.tenants.iter().filter(|t| !is_silo(t.tier)).count();
    let db = match (&f.shared.database_class, f.shared.database_storage_gb) {
        (Some(c), Some(gb)) => format!(" ({c}, {gb} GiB)"),
        _ => String::new(),
    };
    table.summary(format!(
        "shared: platform {} over {} tenants, database{db} {} over {shared_db} starter and growth tenants",
        dollars(f.shared.platform),
        f.tenants.len(),
        dollars(f.shared.database),
    ));
    if f.unallocated > 0.0 {
        table.summary(format!(
            "unallocated: {} per month of shared cost no tenant carries",
            dollars(f.unallocated)
        ));
    }
}

fn is_silo(t: Tier) -> bool {
    t.isolation() == crate::tenant::Isolation::Silo
}

fn tenant_json(c: &TenantCost, actual: Option<&Actual>) -> Value {
    let mut v = json!({
        "id": c.id,
        "tier": c.tier,
        "isolation": c.tier.isolation(),
        "resources": c.resources,
        "monthly": {
            "compute": cents(c.compute),
            "database": cents(c.database),
            "secrets": cents(c.secrets),
            "kms": cents(c.kms),
            "alarms": cents(c.alarms),
            "platform": cents(c.platform),
            "total": cents(c.total()),
        },
    });
    if let Some(a) = actual {
        v["actual"] = json!(a.by_tenant.get(c.id.as_str()).map(|v| cents(*v)));
    }
    v
}

fn fleet_json(f: &FleetCost) -> Value {
    let by_tier: serde_json::Map<String, Value> = f
        .by_tier()
        .iter()
        .map(|(tier, (n, total))| {
            (
                tier.to_string(),
                json!({ "tenants": n, "monthly": cents(*total) }),
            )
        })
        .collect();
    json!({
        "tenants": f.tenants.len(),
        "monthly": cents(f.total()),
        "by_tier": by_tier,
        "shared": {
            "platform": cents(f.shared.platform),
            "database": cents(f.shared.database),
            "database_class": f.shared.database_class,
            "database_storage_gb": f.shared.database_storage_gb,
        },
        "unallocated": cents(f.unallocated),
    })
}

fn compare(
    now: &FleetCost,
    then: &FleetCost,
    ids: &[TenantId],
    changes: &BTreeMap<TenantId, Tier>,
    prices_line: String,
    prices_json: Value,
) -> Report {
    let mut t = Table::new(&["tenant", "tier", "now", "what-if tier", "what-if", "change"])
        .titled("tenantctl cost --what-if (USD per month)")
        .code(0)
        .align(2, Align::Right)
        .align(4, Align::Right)
        .align(5, Align::Right);
    let mut rows = Vec::new();
    for id in ids {
        let (Some(a), Some(b)) = (now.get(id), then.get(id)) else {
            continue;
        };
        t.row([
            id.to_string(),
            a.tier.to_string(),
            dollars(a.total()),
            b.tier.to_string(),
            dollars(b.total()),
            signed_dollars(b.total() - a.total()),
        ]);
        rows.push(json!({
            "id": id,
            "now": tenant_json(a, None),
            "what_if": tenant_json(b, None),
            "change": cents(b.total() - a.total()),
        }));
    }
    let described: Vec<String> = changes
        .iter()
        .map(|(id, tier)| {
            let from = now.get(id).map(|c| c.tier.to_string()).unwrap_or_default();
            format!("{id} {from} -> {tier}")
        })
        .collect();
    let fleet_change = then.total() - now.total();
    t.summary(format!(
        "fleet: {} per month now, {} with {}: {}",
        dollars(now.total()),
        dollars(then.total()),
        described.join(", "),
        signed_dollars(fleet_change)
    ));
    let own_change: f64 = changes
        .keys()
        .filter_map(|id| Some(then.get(id)?.total() - now.get(id)?.total()))
        .sum();
    let others = now.tenants.len() - changes.len();
    t.summary(format!(
        "of which the other {others} tenants: {} (their shares of the shared platform and database)",
        signed_dollars(fleet_change - own_change)
    ));
    t.summary(prices_line);
    let json = json!({
        "prices": prices_json,
        "what_if": changes.iter().map(|(id, tier)| json!({
            "id": id,
            "from": now.get(id).map(|c| c.tier),
            "to": tier,
        })).collect::<Vec<_>>(),
        "tenants": rows,
        "fleet": {
            "now": fleet_json(now),
            "what_if": fleet_json(then),
            "change": cents(fleet_change),
        },
    });
    Report::new(t, json)
}
