//! What each tenant really cost in a month, from AWS Cost Explorer: `GetCostAndUsage`
//! for one calendar month, unblended cost, grouped by the `tenant` tag that the tenant
//! module puts on every resource it creates (activated as a cost-allocation tag in the
//! billing console). `tenantctl cost --actual` shows it beside the estimate.
//!
//! Only what carries the tag is attributed: the shared platform, the shared database and
//! usage that AWS does not tag (data transfer, most requests) land in the untagged
//! amount, and a tag value that is no declared tenant (a removed one) is reported apart.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use aws_sdk_costexplorer::types::{
    DateInterval, Granularity, GroupDefinition, GroupDefinitionType,
};
use chrono::{Datelike, NaiveDate, Utc};
use serde::Serialize;

/// The cost-allocation tag the module sets on every resource (`src/render.rs`).
pub const TAG: &str = "tenant";
/// The metric: what the account is charged, before shared discounts are spread.
const METRIC: &str = "UnblendedCost";

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Month {
    first: NaiveDate,
}

impl Month {
    pub fn parse(raw: &str) -> Result<Month> {
        let bad = || {
            anyhow::anyhow!(
                "invalid month `{raw}`: expected YYYY-MM (a calendar month, e.g. 2026-11)"
            )
        };
        let (y, m) = raw.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
        Ok(Month { first })
    }

    /// The last full month before `today`.
    pub fn last_full(today: NaiveDate) -> Month {
        let first_of_this = today.with_day(1).expect("day 1 exists");
        let first = first_of_this
            .pred_opt()
            .expect("a day before")
            .with_day(1)
            .expect("day 1 exists");
        Month { first }
    }

    pub fn first_day(self) -> NaiveDate {
        self.first
    }

    /// The first day of the next month: Cost Explorer's end date is exclusive.
    pub fn end_exclusive(self) -> NaiveDate {
        let (y, m) = if self.first.month() == 12 {
            (self.first.year() + 1, 1)
        } else {
            (self.first.year(), self.first.month() + 1)
        };
        NaiveDate::from_ymd_opt(y, m, 1).expect("a valid month")
    }

    /// Refuses a month that has not started: Cost Explorer has nothing to say about it.
    pub fn check_not_future(self, today: NaiveDate) -> Result<()> {
        if self.first > today {
            bail!(
                "invalid month `{self}`: it has not started (today is {today}); Cost Explorer reports past and current months"
            );
        }
        Ok(())
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.first.format("%Y-%m"))
    }
}

impl From<Month> for String {
    fn from(m: Month) -> String {
        m.to_string()
    }
}

impl Default for Month {
    fn default() -> Month {
        Month::last_full(Utc::now().date_naive())
    }
}

/// One month's cost by tenant tag value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actual {
    pub month: Month,
    pub currency: String,
    /// Per tag value (a tenant id, or whatever a resource was tagged with).
    pub by_tenant: BTreeMap<String, f64>,
    /// Cost without the tag: the shared platform and database, untagged usage.
    pub untagged: f64,
    /// Cost Explorer marks the figures of a month still open as estimated.
    pub estimated: bool,
}

impl Actual {
    pub fn total(&self) -> f64 {
        self.by_tenant.values().sum::<f64>() + self.untagged
    }
}

/// Asks Cost Explorer for `month`, grouped by the tenant tag, following every page.
pub async fn fetch(client: &aws_sdk_costexplorer::Client, month: Month) -> Result<Actual> {
    let period = DateInterval::builder()
        .start(month.first_day().to_string())
        .end(month.end_exclusive().to_string())
        .build()?;
    let mut actual = Actual {
        month,
        currency: "USD".into(),
        by_tenant: BTreeMap::new(),
        untagged: 0.0,
        estimated: false,
    };
    let mut token: Option<String> = None;
    loop {
        let out = client
            .get_cost_and_usage()
            .time_period(period.clone())
            .granularity(Granularity::Monthly)
            .metrics(METRIC)
            .group_by(
                GroupDefinition::builder()
                    .r#type(GroupDefinitionType::Tag)
                    .key(TAG)
                    .build(),
            )
            .set_next_page_token(token.clone())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(crate::aws::describe_error(&e)))
            .with_context(|| {
                format!("Cost Explorer GetCostAndUsage for {month}, grouped by tag `{TAG}`")
            })?;
        for by_time in out.results_by_time() {
            actual.estimated |= by_time.estimated();
            for group in by_time.groups() {
                let Some(key) = group.keys().first() else {
                    continue;
                };
                let Some(metric) = group.metrics().and_then(|m| m.get(METRIC)) else {
                    continue;
                };
                let amount = parse_amount(metric.amount().unwrap_or("0"))?;
                if let Some(unit) = metric.unit() {
                    actual.currency = unit.to_string();
                }
                match tag_value(key) {
                    Some(tenant) => {
                        *actual.by_tenant.entry(tenant.to_string()).or_default() += amount
                    }
                    None => actual.untagged += amount,
                }
            }
        }
        token = out.next_page_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(actual)
}

/// A group key is `tenant$<value>`; `tenant$` (empty value) is the untagged cost.
fn tag_value(key: &str) -> Option<&str> {
    key.strip_prefix(TAG)
        .and_then(|k| k.strip_prefix('$'))
        .filter(|v| !v.is_empty())
}

fn parse_amount(raw: &str) -> Result<f64> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .with_context(|| format!("Cost Explorer returned the amount `{raw}`, not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_bound_cost_explorer_periods() {
        let m = Month::parse("2026-12").unwrap();
        assert_eq!(m.first_day().to_string(), "2026-12-01");
        assert_eq!(m.end_exclusive().to_string(), "2027-01-01");
        assert_eq!(m.to_string(), "2026-12");
        for bad in [
            "2026-13",
            "2026-1",
            "26-11",
            "2026/11",
            "",
            "2026-00",
            "2026-11-01",
        ] {
            let e = Month::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{bad}`")) && e.contains("YYYY-MM"),
                "{e}"
            );
        }
        let today = NaiveDate::from_ymd_opt(2026, 1, 15).unwrap();
        assert_eq!(Month::last_full(today).to_string(), "2025-12");
        assert!(
            Month::parse("2026-01")
                .unwrap()
                .check_not_future(today)
                .is_ok()
        );
        let e = Month::parse("2026-02")
            .unwrap()
            .check_not_future(today)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has not started"), "{e}");
    }

    #[test]
    fn group_keys_name_the_tenant_or_nothing() {
        assert_eq!(tag_value("tenant$acme"), Some("acme"));
        assert_eq!(tag_value("tenant$"), None);
        assert_eq!(tag_value("other$acme"), None);
        assert_eq!(parse_amount(" 12.3456 ").unwrap(), 12.3456);
        assert!(parse_amount("NaN").is_err());
        assert!(parse_amount("twelve").is_err());
    }
}
