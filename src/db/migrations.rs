//! The migration files: `migrations/NNNN_name.sql`, applied in version order, each with an
//! optional `NNNN_name.down.sql` beside it that undoes it (`db rollback`).
//!
//! One set of files serves every target (the pool schema, each bridge schema, each silo
//! database): the runner sets the target's schema as `search_path`, so files use
//! unqualified names and every table carries `tenant_id text not null`. A file's checksum
//! (SHA-256 of its bytes) is recorded when it is applied; an applied file must never
//! change, because the targets that already ran it would silently differ from new ones.
//! A down file's checksum is reported by `db rollback` but never recorded: a down file is
//! often written, or fixed, after its migration was applied, and that must stay possible.
//!
//! Each migration runs inside a transaction tenantctl opens and commits. A file that
//! ends or opens a transaction itself (`COMMIT`, `BEGIN`, ...) would break that promise
//! (half a migration committed, the rest in autocommit), and a statement PostgreSQL
//! refuses inside a transaction (`CREATE INDEX CONCURRENTLY`, `VACUUM`, ...) would fail on
//! every target; both are refused when the files are loaded, before any target is touched.
//!
//! A file whose first non-empty line is exactly [`NO_TRANSACTION_MARKER`] runs outside a
//! transaction instead, one statement at a time. Its statements are found by the same
//! lexer that looks for transaction control (quotes, dollar quotes, comments and `BEGIN
//! ATOMIC` bodies respected), so the file is written as any other. Such a file must be
//! safe to rerun from the start, because a failure leaves the statements before it done:
//! a `CREATE INDEX CONCURRENTLY` is, since the runner skips an index that exists and is
//! valid and rebuilds one a failed build left invalid, which is why it must be named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The first non-empty line of a migration that runs outside a transaction.
pub const NO_TRANSACTION_MARKER: &str = "-- tenantctl:no-transaction";

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
    /// Starts with [`NO_TRANSACTION_MARKER`]: runs statement by statement, no transaction.
    pub no_transaction: bool,
    /// The file's statements (what a no-transaction migration runs one at a time).
    pub statements: Vec<Statement>,
    /// `NNNN_name.down.sql`, if there is one.
    pub down: Option<Down>,
}

/// The file that undoes a migration: `NNNN_name.down.sql`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    pub path: PathBuf,
    pub sql: String,
    /// Hex SHA-256 of the file's bytes.
    pub checksum: String,
    pub no_transaction: bool,
    pub statements: Vec<Statement>,
}

impl Migration {
    pub fn file_name(&self) -> String {
        format!("{}.sql", self.name)
    }

    /// `0003_notes.down.sql`, whether it exists or not.
    pub fn down_file_name(&self) -> String {
        format!("{}.down.sql", self.name)
    }
}

/// All migrations of a work dir, sorted by version.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    pub dir: PathBuf,
    pub migrations: Vec<Migration>,
}

/// A checked file: its text, checksum and statements.
struct Script {
    sql: String,
    checksum: String,
    no_transaction: bool,
    statements: Vec<Statement>,
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
        // Down files are attached once every up file is known.
        let mut downs: Vec<(i32, String, PathBuf, Script)> = Vec::new();
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
            if let Some(stem) = file.strip_suffix(".down.sql") {
                let (version, name) = parse_file_name(&format!("{stem}.sql")).map_err(|_| {
                    anyhow::anyhow!(
                        "invalid down migration file name `{}`: must be NNNN_name.down.sql, beside NNNN_name.sql",
                        file.escape_debug()
                    )
                })?;
                let script = read_script(&path, file)?;
                downs.push((version, name, path.clone(), script));
                continue;
            }
            let (version, name) = parse_file_name(file)?;
            let script = read_script(&path, file)?;
            let migration = Migration {
                version,
                name,
                path: path.clone(),
                sql: script.sql,
                checksum: script.checksum,
                no_transaction: script.no_transaction,
                statements: script.statements,
                down: None,
            };
            if let Some(other) = by_version.get(&version) {
                bail!(
                    "migrations `{}` and `{file}` have the same version {version:04}",
                    other.file_name()
                );
            }
            by_version.insert(version, migration);
        }
        for (version, name, path, script) in downs {
            let file = format!("{name}.down.sql");
            match by_version.get_mut(&version) {
                Some(m) if m.name == name => {
                    m.down = Some(Down {
                        path,
                        sql: script.sql,
                        checksum: script.checksum,
                        no_transaction: script.no_transaction,
                        statements: script.statements,
                    })
                }
                other => bail!(
                    "down migration `{file}` has no up migration `{name}.sql` in `{}`{}\nhint: a down file undoes the migration of the same name: rename it, or remove it",
                    dir.display(),
                    other
                        .map(|m| format!(" (version {version:04} is `{}`)", m.file_name()))
                        .unwrap_or_default()
                ),
            }
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

/// Reads and checks one file (up or down): UTF-8, no NUL, no transaction control, and
/// either the no-transaction marker or no statement that needs it.
fn read_script(path: &Path, file: &str) -> Result<Script> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let sql = String::from_utf8(bytes.clone())
        .with_context(|| format!("migration `{file}` is not UTF-8"))?;
    if sql.contains('\0') {
        bail!("migration `{file}` contains a NUL byte");
    }
    let statements = statements(&sql);
    if let Some((line, word)) = transaction_control_in(&statements).into_iter().next() {
        bail!(
            "migration `{file}` line {line}: `{word}` is not allowed: tenantctl runs each migration in its own transaction\nhint: remove transaction control statements; a statement that cannot run in a transaction (e.g. CREATE INDEX CONCURRENTLY) goes in a file of its own whose first line is `{NO_TRANSACTION_MARKER}`"
        );
    }
    let mut lines = sql
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let no_transaction = lines
        .next()
        .is_some_and(|(_, l)| l.trim() == NO_TRANSACTION_MARKER);
    if let Some((n, _)) = lines.find(|(_, l)| l.trim() == NO_TRANSACTION_MARKER) {
        bail!(
            "migration `{file}` line {}: `{NO_TRANSACTION_MARKER}` counts only as the first non-empty line of a file\nhint: move it to the top, or remove it",
            n + 1
        );
    }
    if no_transaction {
        for s in &statements {
            if let Some(None) = s.concurrent_index() {
                bail!(
                    "migration `{file}` line {}: `CREATE INDEX CONCURRENTLY` needs an index name in a no-transaction migration: a build that fails leaves an invalid index, which a rerun must find by name to drop and rebuild\nhint: name the index, e.g. `CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (tenant_id, email)`",
                    s.line
                );
            }
        }
    } else if let Some(s) = statements
        .iter()
        .find(|s| s.needs_no_transaction().is_some())
    {
        bail!(
            "migration `{file}` line {}: `{}` cannot run inside a transaction, and this migration runs in one\nhint: put it in a migration of its own whose first line is `{NO_TRANSACTION_MARKER}`: its statements then run one at a time, outside a transaction",
            s.line,
            s.needs_no_transaction().unwrap_or_default()
        );
    }
    Ok(Script {
        checksum: checksum(&bytes),
        sql,
        no_transaction,
        statements,
    })
}

/// `0001_accounts.sql` → (1, `0001_accounts`). Any other `.sql` file is an error rather
/// than silently skipped: a misnamed migration would otherwise never run.
pub fn parse_file_name(file: &str) -> Result<(i32, String)> {
    let bad = || {
        anyhow::anyhow!(
            "invalid migration file name `{}`: must be NNNN_name.sql (at least 4 digits, then `_` and letters, digits, `_` or `-`), or NNNN_name.down.sql beside it",
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

/// A lexical token of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word (keyword or identifier), as written.
    Word(String),
    /// A double-quoted identifier, unescaped.
    Quoted(String),
    /// Anything else: a string or dollar-quoted literal, a number, punctuation.
    Other(String),
}

/// One top-level statement of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Byte offset of its first token in the file.
    pub start: usize,
    /// Byte offset just after its last token (its `;` excluded).
    pub end: usize,
    /// The 1-based line of its first token.
    pub line: usize,
    tokens: Vec<Token>,
}

/// An index name as PostgreSQL resolves it: case-folded unless quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexName {
    /// The schema of the indexed table, when the statement names one (an index always
    /// lives beside its table).
    pub schema: Option<String>,
    pub name: String,
}

impl Statement {
    /// The statement's text, without its `;`.
    pub fn text<'a>(&self, sql: &'a str) -> &'a str {
        &sql[self.start..self.end]
    }

    /// The upper-cased word at token `i`, or "" for anything that is not a bare word.
    fn word(&self, i: usize) -> String {
        match self.tokens.get(i) {
            Some(Token::Word(w)) => w.to_uppercase(),
            _ => String::new(),
        }
    }

    /// An identifier at token `i`, as PostgreSQL resolves it.
    fn ident(&self, i: usize) -> Option<String> {
        match self.tokens.get(i)? {
            Token::Word(w) => Some(w.to_lowercase()),
            Token::Quoted(q) => Some(q.clone()),
            Token::Other(_) => None,
        }
    }

    fn is_dot(&self, i: usize) -> bool {
        matches!(self.tokens.get(i), Some(Token::Other(o)) if o == ".")
    }

    /// What makes PostgreSQL refuse to run this statement inside a transaction block,
    /// e.g. `CREATE INDEX CONCURRENTLY`; `None` for every other statement.
    pub fn needs_no_transaction(&self) -> Option<String> {
        let words: Vec<String> = (0..self.tokens.len()).map(|i| self.word(i)).collect();
        let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        // `REINDEX (VERBOSE) DATABASE x`: the kind comes after the options.
        let after_options = |from: usize| {
            if w(from).is_empty()
                && matches!(self.tokens.get(from), Some(Token::Other(o)) if o == "(")
            {
                let close = (from..self.tokens.len())
                    .find(|&j| matches!(&self.tokens[j], Token::Other(o) if o == ")"));
                close.map(|c| c + 1).unwrap_or(from)
            } else {
                from
            }
        };
        let found = match (w(0), w(1)) {
            ("VACUUM", _) => Some("VACUUM".to_string()),
            ("ALTER", "SYSTEM") => Some("ALTER SYSTEM".into()),
            ("CREATE" | "DROP", "DATABASE" | "TABLESPACE" | "SUBSCRIPTION") => {
                Some(format!("{} {}", w(0), w(1)))
            }
            ("DISCARD", "ALL") => Some("DISCARD ALL".into()),
            ("REINDEX", _) if matches!(w(after_options(1)), "SYSTEM" | "DATABASE") => {
                Some(format!("REINDEX {}", w(after_options(1))))
            }
            _ => None,
        };
        if found.is_some() {
            return found;
        }
        // REFRESH MATERIALIZED VIEW CONCURRENTLY is the one that runs in a transaction.
        let at = words.iter().position(|x| x == "CONCURRENTLY")?;
        if w(0) == "REFRESH" {
            return None;
        }
        let lead = &words[..at];
        Some(if lead.len() <= 4 && lead.iter().all(|x| !x.is_empty()) {
            format!("{} CONCURRENTLY", lead.join(" "))
        } else if w(1).is_empty() {
            format!("{} ... CONCURRENTLY", w(0))
        } else {
            format!("{} {} ... CONCURRENTLY", w(0), w(1))
        })
    }

    /// For `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON [ONLY] table`: the
    /// index it builds (`Some(None)` when it names none); `None` for other statements.
    pub fn concurrent_index(&self) -> Option<Option<IndexName>> {
        if self.word(0) != "CREATE" {
            return None;
        }
        let mut i = 1;
        if self.word(i) == "UNIQUE" {
            i += 1;
        }
        if self.word(i) != "INDEX" || self.word(i + 1) != "CONCURRENTLY" {
            return None;
        }
        i += 2;
        if self.word(i) == "IF" && self.word(i + 1) == "NOT" && self.word(i + 2) == "EXISTS" {
            i += 3;
        }
        if self.word(i) == "ON" {
            return Some(None);
        }
        let Some(name) = self.ident(i) else {
            return Some(None);
        };
        i += 1;
        if self.word(i) != "ON" {
            return Some(None);
        }
        i += 1;
        if self.word(i) == "ONLY" {
            i += 1;
        }
        let schema = if self.is_dot(i + 1) {
            self.ident(i)
        } else {
            None
        };
        Some(Some(IndexName { schema, name }))
    }
}

/// Splits `sql` into its top-level statements, with a small lexer rather than a regex:
/// `;` inside comments, string literals, quoted identifiers and dollar-quoted bodies
/// (`DO $$ BEGIN ... END $$`) does not end a statement, and neither does one inside a
/// SQL-standard function body (`BEGIN ATOMIC ... END`). Empty statements are dropped.
pub fn statements(sql: &str) -> Vec<Statement> {
    let chars: Vec<(usize, char)> = sql.char_indices().collect();
    let n = chars.len();
    let at = |i: usize| chars.get(i).map(|c| c.0).unwrap_or(sql.len());
    let ch = |i: usize| chars.get(i).map(|c| c.1);
    let mut out = Vec::new();
    let mut cur: Option<Statement> = None;
    let push = |cur: &mut Option<Statement>, start: usize, end: usize, line: usize, tok: Token| {
        let s = cur.get_or_insert_with(|| Statement {
            start,
            end,
            line,
            tokens: Vec::new(),
        });
        s.end = end;
        s.tokens.push(tok);
    };
    let mut i = 0;
    let mut line = 1;
    // The depth of `BEGIN ATOMIC` / `CASE` blocks inside the current statement.
    let mut atomic_depth = 0usize;
    let mut prev_word = String::new();
    while i < n {
        let c = chars[i].1;
        let next = ch(i + 1);
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '-' if next == Some('-') => {
                while i < n && chars[i].1 != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                // Block comments nest in PostgreSQL.
                let mut depth = 0;
                while i < n {
                    if chars[i].1 == '/' && ch(i + 1) == Some('*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i].1 == '*' && ch(i + 1) == Some('/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i].1 == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '\'' | '"' => {
                let (start, first_line) = (i, line);
                // E'...' strings allow backslash escapes; the `E` was read as a word.
                let escapes = c == '\'' && prev_word == "E";
                let mut inner = String::new();
                i += 1;
                while i < n {
                    let d = chars[i].1;
                    if d == '\n' {
                        line += 1;
                    }
                    if escapes && d == '\\' {
                        i += 2;
                        continue;
                    }
                    if d == c {
                        if ch(i + 1) == Some(c) {
                            inner.push(c);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    inner.push(d);
                    i += 1;
                }
                let tok = if c == '"' {
                    Token::Quoted(inner)
                } else {
                    Token::Other(sql[at(start)..at(i)].to_string())
                };
                push(&mut cur, at(start), at(i), first_line, tok);
                prev_word.clear();
            }
            '$' if dollar_tag(&chars, i).is_some() => {
                let tag = dollar_tag(&chars, i).expect("checked");
                let (start, first_line) = (i, line);
                i += tag.len();
                while i < n {
                    if chars[i].1 == '$'
                        && chars[i..]
                            .iter()
                            .map(|c| c.1)
                            .take(tag.len())
                            .eq(tag.iter().copied())
                    {
                        i += tag.len();
                        break;
                    }
                    if chars[i].1 == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                let text = sql[at(start)..at(i)].to_string();
                push(&mut cur, at(start), at(i), first_line, Token::Other(text));
                prev_word.clear();
            }
            ';' => {
                if atomic_depth == 0 {
                    if let Some(s) = cur.take() {
                        out.push(s);
                    }
                } else {
                    push(&mut cur, at(i), at(i + 1), line, Token::Other(";".into()));
                }
                i += 1;
                prev_word.clear();
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < n
                    && (chars[i].1.is_alphanumeric() || chars[i].1 == '_' || chars[i].1 == '$')
                {
                    i += 1;
                }
                let raw = &sql[at(start)..at(i)];
                let word = raw.to_uppercase();
                let before = cur.as_ref().map_or(0, |s| s.tokens.len());
                if atomic_depth > 0 {
                    match word.as_str() {
                        "CASE" => atomic_depth += 1,
                        "END" => atomic_depth -= 1,
                        _ => {}
                    }
                } else if word == "ATOMIC" && prev_word == "BEGIN" && before > 1 {
                    atomic_depth = 1;
                }
                push(
                    &mut cur,
                    at(start),
                    at(i),
                    line,
                    Token::Word(raw.to_string()),
                );
                prev_word = word;
            }
            _ => {
                if !c.is_whitespace() {
                    push(
                        &mut cur,
                        at(i),
                        at(i + 1),
                        line,
                        Token::Other(c.to_string()),
                    );
                    prev_word.clear();
                }
                i += 1;
            }
        }
    }
    if let Some(s) = cur.take() {
        out.push(s);
    }
    out
}

/// Top-level statements that would end or open a transaction, as (line, keyword).
pub fn transaction_control(sql: &str) -> Vec<(usize, String)> {
    transaction_control_in(&statements(sql))
}

fn transaction_control_in(statements: &[Statement]) -> Vec<(usize, String)> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for s in statements {
        let (first, second) = (s.word(0), s.word(1));
        let shown = match (first.as_str(), second.as_str()) {
            ("COMMIT" | "ROLLBACK" | "ABORT" | "END" | "BEGIN", _) => first.clone(),
            ("START" | "PREPARE", "TRANSACTION") => format!("{first} {second}"),
            _ => continue,
        };
        if !found.iter().any(|(l, _)| *l == s.line) {
            found.push((s.line, shown));
        }
    }
    found
}

/// `$tag$` starting at `i` (the tag is empty or an identifier), as chars.
fn dollar_tag(chars: &[(usize, char)], i: usize) -> Option<Vec<char>> {
    let c = |j: usize| chars.get(j).map(|c| c.1);
    if c(i) != Some('$') {
        return None;
    }
    // A `$` right after an identifier character is part of that identifier, and `$1` is
    // a parameter, not a quote.
    if i > 0 && (chars[i - 1].1.is_alphanumeric() || chars[i - 1].1 == '_') {
        return None;
    }
    let mut j = i + 1;
    while let Some(d) = c(j) {
        if !(d.is_alphanumeric() || d == '_') {
            break;
        }
        if j == i + 1 && d.is_ascii_digit() {
            return None;
        }
        j += 1;
    }
    if c(j) == Some('$') {
        Some(chars[i..=j].iter().map(|c| c.1).collect())
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

    #[test]
    fn splits_statements_where_postgresql_does() {
        let sql = r#"-- tenantctl:no-transaction
CREATE INDEX CONCURRENTLY a_idx ON a (x); -- trailing; comment
/* a; comment */ insert into t values ('a;b', E'c\';d', $q$e;f$q$, "g;h");
create function g() returns int language sql begin atomic select 1; select 2; end;
;;
do $$ begin perform 1; end $$"#;
        let st = statements(sql);
        let texts: Vec<&str> = st.iter().map(|s| s.text(sql)).collect();
        assert_eq!(
            texts,
            [
                "CREATE INDEX CONCURRENTLY a_idx ON a (x)",
                r#"insert into t values ('a;b', E'c\';d', $q$e;f$q$, "g;h")"#,
                "create function g() returns int language sql begin atomic select 1; select 2; end",
                "do $$ begin perform 1; end $$",
            ]
        );
        assert_eq!(st.iter().map(|s| s.line).collect::<Vec<_>>(), [2, 3, 4, 6]);
        // Multi-byte text before a statement: offsets are bytes, slicing stays valid.
        let sql = "insert into t values ('é;ü'); vacuum t";
        let st = statements(sql);
        assert_eq!(st[1].text(sql), "vacuum t");
    }

    #[test]
    fn knows_what_cannot_run_in_a_transaction() {
        let cases = [
            (
                "create index concurrently a_idx on a (x)",
                Some("CREATE INDEX CONCURRENTLY"),
            ),
            (
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS a on a (x)",
                Some("CREATE UNIQUE INDEX CONCURRENTLY"),
            ),
            (
                "drop index concurrently if exists a_idx",
                Some("DROP INDEX CONCURRENTLY"),
            ),
            (
                "reindex (verbose) index concurrently a_idx",
                Some("REINDEX ... CONCURRENTLY"),
            ),
            (
                "alter table p detach partition c concurrently",
                Some("ALTER TABLE ... CONCURRENTLY"),
            ),
            ("VACUUM (ANALYZE) accounts", Some("VACUUM")),
            ("alter system set work_mem = '64MB'", Some("ALTER SYSTEM")),
            ("create database x", Some("CREATE DATABASE")),
            ("reindex (verbose) database x", Some("REINDEX DATABASE")),
            ("refresh materialized view concurrently mv", None),
            ("create index a_idx on a (x)", None),
            ("do $$ begin execute 'vacuum'; end $$", None),
            ("select 'create index concurrently'", None),
            ("analyze accounts", None),
        ];
        for (sql, want) in cases {
            let st = statements(sql);
            assert_eq!(st[0].needs_no_transaction().as_deref(), want, "{sql}");
        }
    }

    #[test]
    fn finds_the_index_a_concurrent_build_makes() {
        let idx = |sql: &str| statements(sql)[0].concurrent_index();
        let named = |schema: Option<&str>, name: &str| {
            Some(Some(IndexName {
                schema: schema.map(str::to_string),
                name: name.into(),
            }))
        };
        assert_eq!(
            idx("CREATE INDEX CONCURRENTLY Acc_Idx ON accounts (x)"),
            named(None, "acc_idx")
        );
        assert_eq!(
            idx(r#"create unique index concurrently if not exists "Odd ""Name""" on only s.t (x)"#),
            named(Some("s"), "Odd \"Name\"")
        );
        assert_eq!(idx("create index concurrently on t (x)"), Some(None));
        assert_eq!(idx("create index a on t (x)"), None);
        assert_eq!(idx("drop index concurrently a"), None);
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (f, sql) in files {
            std::fs::write(d.path().join(f), sql).unwrap();
        }
        d
    }

    fn load_err(files: &[(&str, &str)]) -> String {
        let d = dir_with(files);
        format!("{:#}", MigrationSet::load(d.path()).unwrap_err())
    }

    #[test]
    fn down_files_belong_to_their_migration() {
        let d = dir_with(&[
            ("0001_a.sql", "create table a (tenant_id text not null);"),
            ("0001_a.down.sql", "drop table a;"),
            ("0002_b.sql", "create table b (tenant_id text not null);"),
        ]);
        let set = MigrationSet::load(d.path()).unwrap();
        let down = set.get(1).unwrap().down.as_ref().unwrap();
        assert_eq!(down.sql, "drop table a;");
        assert_eq!(down.checksum, checksum(b"drop table a;"));
        assert!(set.get(2).unwrap().down.is_none());
        assert_eq!(set.get(2).unwrap().down_file_name(), "0002_b.down.sql");
        // The up file's checksum does not depend on its down file.
        assert_eq!(
            set.get(1).unwrap().checksum,
            checksum(b"create table a (tenant_id text not null);")
        );

        let e = load_err(&[
            ("0001_a.sql", "select 1;"),
            ("0002_b.down.sql", "drop table b;"),
        ]);
        assert!(
            e.contains("down migration `0002_b.down.sql` has no up migration `0002_b.sql`"),
            "{e}"
        );
        let e = load_err(&[
            ("0001_a.sql", "select 1;"),
            ("0001_x.down.sql", "select 1;"),
        ]);
        assert!(e.contains("(version 0001 is `0001_a.sql`)"), "{e}");
        let e = load_err(&[
            ("0001_a.sql", "select 1;"),
            ("0001_a.down.sql", "select 1; commit;"),
        ]);
        assert!(
            e.contains("`0001_a.down.sql` line 1: `COMMIT` is not allowed"),
            "{e}"
        );
    }

    #[test]
    fn no_transaction_migrations_are_marked_on_their_first_line() {
        let d = dir_with(&[(
            "0001_idx.sql",
            "\n-- tenantctl:no-transaction\n-- why: a big table\nCREATE INDEX CONCURRENTLY a_idx ON a (x);\nVACUUM a;\n",
        )]);
        let set = MigrationSet::load(d.path()).unwrap();
        let m = set.get(1).unwrap();
        assert!(m.no_transaction);
        assert_eq!(m.statements.len(), 2);

        let e = load_err(&[(
            "0001_idx.sql",
            "create table a (tenant_id text not null, x int);\n\nCREATE INDEX CONCURRENTLY a_idx ON a (x);\n",
        )]);
        assert!(
            e.contains("`0001_idx.sql` line 3: `CREATE INDEX CONCURRENTLY` cannot run inside a transaction")
                && e.contains("hint: put it in a migration of its own whose first line is `-- tenantctl:no-transaction`"),
            "{e}"
        );
        let e = load_err(&[(
            "0001_idx.sql",
            "-- creates an index\n-- tenantctl:no-transaction\nCREATE INDEX CONCURRENTLY a_idx ON a (x);\n",
        )]);
        assert!(
            e.contains(
                "line 2: `-- tenantctl:no-transaction` counts only as the first non-empty line"
            ),
            "{e}"
        );
        let e = load_err(&[(
            "0001_idx.sql",
            "-- tenantctl:no-transaction\nCREATE INDEX CONCURRENTLY ON a (x);\n",
        )]);
        assert!(
            e.contains("line 2: `CREATE INDEX CONCURRENTLY` needs an index name"),
            "{e}"
        );
        let e = load_err(&[(
            "0001_idx.sql",
            "-- tenantctl:no-transaction\nBEGIN;\nVACUUM;\n",
        )]);
        assert!(e.contains("line 2: `BEGIN` is not allowed"), "{e}");
    }
}
