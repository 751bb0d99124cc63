//! The migration files: `migrations/NNNN_name.sql`, applied in version order.
//!
//! One set of files serves every target (the pool schema, each bridge schema, each silo
//! database): the runner sets the target's schema as `search_path`, so files use
//! unqualified names and every table carries `tenant_id text not null`. A file's checksum
//! (SHA-256 of its bytes) is recorded when it is applied; an applied file must never
//! change, because the targets that already ran it would silently differ from new ones.
//!
//! Each migration runs inside a transaction tenantctl opens and commits. A file that
//! ends or opens a transaction itself (`COMMIT`, `BEGIN`, ...) would break that promise
//! (half a migration committed, the rest in autocommit), so such files are refused when
//! they are loaded, before any target is touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i32,
    /// The file stem, e.g. `0002_projects`.
    pub name: String,
    pub path: PathBuf,
    pub sql: String,
    /// Hex SHA-256 of the file's bytes.
    pub checksum: String,
}

impl Migration {
    pub fn file_name(&self) -> String {
        format!("{}.sql", self.name)
    }
}

/// All migrations of a work dir, sorted by version.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    pub dir: PathBuf,
    pub migrations: Vec<Migration>,
}

impl MigrationSet {
    /// Reads `dir`. A missing directory is an error: `db migrate` without migrations is
    /// almost always a wrong `--config` or `migrations_dir`.
    pub fn load(dir: &Path) -> Result<MigrationSet> {
        let entries = std::fs::read_dir(dir).with_context(|| {
            format!(
                "cannot read the migrations directory `{}`\nhint: set `[database] migrations_dir` in tenantctl.toml",
                dir.display()
            )
        })?;
        let mut by_version: BTreeMap<i32, Migration> = BTreeMap::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot read `{}`", dir.display()))?
                .path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if !file.ends_with(".sql") {
                continue;
            }
            let (version, name) = parse_file_name(file)?;
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            let sql = String::from_utf8(bytes.clone())
                .with_context(|| format!("migration `{file}` is not UTF-8"))?;
            if sql.contains('\0') {
                bail!("migration `{file}` contains a NUL byte");
            }
            if let Some((line, word)) = transaction_control(&sql).into_iter().next() {
                bail!(
                    "migration `{file}` line {line}: `{word}` is not allowed: tenantctl runs each migration in its own transaction\nhint: remove transaction control statements; statements that cannot run in a transaction (e.g. CREATE INDEX CONCURRENTLY) are not supported"
                );
            }
            let migration = Migration {
                version,
                name,
                path: path.clone(),
                sql,
                checksum: checksum(&bytes),
            };
            if let Some(other) = by_version.get(&version) {
                bail!(
                    "migrations `{}` and `{file}` have the same version {version:04}",
                    other.file_name()
                );
            }
            by_version.insert(version, migration);
        }
        Ok(MigrationSet {
            dir: dir.to_path_buf(),
            migrations: by_version.into_values().collect(),
        })
    }

    /// Like [`load`](Self::load), but a missing directory means "no migrations" (a new
    /// tenant is provisioned even before the first migration is written).
    pub fn load_or_empty(dir: &Path) -> Result<MigrationSet> {
        if dir.exists() {
            MigrationSet::load(dir)
        } else {
            Ok(MigrationSet {
                dir: dir.to_path_buf(),
                migrations: Vec::new(),
            })
        }
    }

    pub fn latest(&self) -> Option<&Migration> {
        self.migrations.last()
    }

    pub fn get(&self, version: i32) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|i| &self.migrations[i])
    }
}

/// `0001_accounts.sql` → (1, `0001_accounts`). Any other `.sql` file is an error rather
/// than silently skipped: a misnamed migration would otherwise never run.
pub fn parse_file_name(file: &str) -> Result<(i32, String)> {
    let bad = || {
        anyhow::anyhow!(
            "invalid migration file name `{}`: must be NNNN_name.sql (at least 4 digits, then `_` and letters, digits, `_` or `-`)",
            file.escape_debug()
        )
    };
    let stem = file.strip_suffix(".sql").ok_or_else(bad)?;
    let (digits, name) = stem.split_once('_').ok_or_else(bad)?;
    if digits.len() < 4
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad());
    }
    let version: i32 = digits.parse().map_err(|_| bad())?;
    if version == 0 {
        bail!(
            "invalid migration file name `{}`: versions start at 0001",
            file.escape_debug()
        );
    }
    Ok((version, stem.to_string()))
}

pub fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Maps a 1-based character offset in `sql` (PostgreSQL's error position) to a 1-based
/// (line, column).
pub fn line_col(sql: &str, position: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for ch in sql.chars().take(position.saturating_sub(1)) {
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// Top-level statements that would end or open a transaction, as (line, keyword).
///
/// A small lexer rather than a regex: keywords inside comments, string literals, quoted
/// identifiers and dollar-quoted bodies (`DO $$ BEGIN ... END $$`) do not count, and a
/// SQL-standard function body (`BEGIN ATOMIC ... END`) is part of its statement.
pub fn transaction_control(sql: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = sql.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    let mut line = 1;
    // Words of the current statement so far (only the first two matter), and the depth
    // of `BEGIN ATOMIC` / `CASE` blocks inside it.
    let mut words: Vec<String> = Vec::new();
    let mut atomic_depth = 0usize;
    let mut first_line = 1;
    let mut prev_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                // Block comments nest in PostgreSQL.
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '\'' | '"' => {
                // E'...' strings allow backslash escapes; the `E` was read as a word.
                let escapes = c == '\'' && prev_word.eq_ignore_ascii_case("e");
                i += 1;
                while i < chars.len() {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    if escapes && chars[i] == '\\' {
                        i += 2;
                        continue;
                    }
                    if chars[i] == c {
                        if chars.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                words.push(String::new());
                prev_word.clear();
            }
            '$' if dollar_tag(&chars, i).is_some() => {
                let tag = dollar_tag(&chars, i).expect("checked");
                i += tag.len();
                loop {
                    if i >= chars.len() {
                        break;
                    }
                    if chars[i] == '$' && chars[i..].starts_with(&tag) {
                        i += tag.len();
                        break;
                    }
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                words.push(String::new());
                prev_word.clear();
            }
            ';' => {
                i += 1;
                if atomic_depth == 0 {
                    words.clear();
                }
                prev_word.clear();
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect::<String>().to_uppercase();
                if words.is_empty() {
                    first_line = line;
                }
                if atomic_depth > 0 {
                    match word.as_str() {
                        "CASE" => atomic_depth += 1,
                        "END" => atomic_depth -= 1,
                        _ => {}
                    }
                } else if word == "ATOMIC" && prev_word == "BEGIN" && words.len() > 1 {
                    atomic_depth = 1;
                }
                words.push(word.clone());
                if words.len() <= 2 && atomic_depth == 0 {
                    let first = words[0].as_str();
                    let second = words.get(1).map(String::as_str);
                    let bad = matches!(
                        (first, second),
                        ("COMMIT" | "ROLLBACK" | "ABORT" | "END" | "BEGIN", None)
                            | ("START" | "PREPARE", Some("TRANSACTION"))
                    );
                    if bad && !found.iter().any(|(l, _)| *l == first_line) {
                        let shown = match second {
                            Some(s) => format!("{first} {s}"),
                            None => first.to_string(),
                        };
                        found.push((first_line, shown));
                    }
                }
                prev_word = word;
            }
            _ => {
                if !c.is_whitespace() {
                    words.push(String::new());
                    prev_word.clear();
                }
                i += 1;
            }
        }
    }
    found
}

/// `$tag$` starting at `i` (the tag is empty or an identifier), as chars.
fn dollar_tag(chars: &[char], i: usize) -> Option<Vec<char>> {
    if chars.get(i) != Some(&'$') {
        return None;
    }
    // A `$` right after an identifier character is part of that identifier, and `$1` is
    // a parameter, not a quote.
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        if j == i + 1 && chars[j].is_ascii_digit() {
            return None;
        }
        j += 1;
    }
    if chars.get(j) == Some(&'$') {
        Some(chars[i..=j].to_vec())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            parse_file_name("0001_accounts.sql").unwrap(),
            (1, "0001_accounts".into())
        );
        assert_eq!(
            parse_file_name("20240101_add-index.sql").unwrap().0,
            20240101
        );
        for bad in [
            "001_x.sql",
            "0001.sql",
            "0001_.sql",
            "abcd_x.sql",
            "0001_x y.sql",
            "0000_zero.sql",
        ] {
            assert!(parse_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(
            checksum(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(checksum(b"a"), checksum(b"a "));
    }

    #[test]
    fn line_col_maps_error_positions() {
        let sql = "create table a (x int);\ncreat table b;\n";
        // PostgreSQL reports 1-based character positions.
        let pos = sql.find("creat table b").unwrap() + 1;
        assert_eq!(line_col(sql, pos), (2, 1));
        assert_eq!(line_col(sql, 1), (1, 1));
    }

    #[test]
    fn finds_transaction_control_at_statement_start() {
        let sql = "create table a (x int);\nBEGIN;\ninsert into a values (1);\ncommit;\n";
        assert_eq!(
            transaction_control(sql),
            vec![(2, "BEGIN".into()), (4, "COMMIT".into())]
        );
        assert_eq!(
            transaction_control("start transaction;"),
            vec![(1, "START TRANSACTION".into())]
        );
        assert_eq!(transaction_control("end"), vec![(1, "END".into())]);
    }

    #[test]
    fn ignores_keywords_in_bodies_comments_and_strings() {
        let sql = r#"
-- commit; begin;
/* rollback; /* nested commit; */ still comment; */
create function f() returns int language plpgsql as $$
begin
  return 1;
end;
$$;
do $body$ begin perform 1; commit; end $body$;
insert into t (note) values ('commit; begin;'), (E'it\'s; commit'), ($q$;commit;$q$);
select "commit" from t;
create function g() returns int language sql begin atomic select case when true then 1 end; select 2; end;
select 1 as commit_count;
"#;
        assert_eq!(transaction_control(sql), Vec::<(usize, String)>::new());
    }
}
