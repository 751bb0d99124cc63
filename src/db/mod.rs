//! placeholder (temporary stub by the lead so the crate compiles; the database work replaces this file)
use anyhow::Result;
use crate::config::Config;
use crate::report::Check;
use crate::workspace::TenantSpec;
#[derive(Clone, serde::Deserialize)]
pub struct DbSecret { pub password: String }
pub struct Database;
impl Database {
    pub fn from_config(_c: &Config) -> Result<Database> { Ok(Database) }
    pub async fn provision(&self, _s: &TenantSpec, _x: &DbSecret) -> Result<()> { Ok(()) }
    pub async fn deprovision(&self, _s: &TenantSpec) -> Result<()> { Ok(()) }
    pub async fn verify(&self, _s: &TenantSpec, _x: &DbSecret) -> Vec<Check> { vec![] }
}
