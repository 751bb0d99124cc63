//! Quoting for SQL text. Every identifier tenantctl writes into SQL goes through
//! [`ident`], every string literal through [`literal`]: tenant schemas and roles contain
//! `-` (`tenant_acme-corp`), so an unquoted name is a syntax error at best.
//!
//! Values the server can take as parameters are passed as parameters; these functions are
//! for the places PostgreSQL does not accept parameters (DDL, role names, `SET`, the
//! bodies of `DO` blocks).

/// A quoted identifier: `"` doubled, always wrapped in double quotes, so case and
/// punctuation are kept exactly and no name can close the quote.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// `schema.name`, both parts quoted.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// A quoted string literal. `'` is doubled; a value containing a backslash is written as
/// an escape string (`E'...'`) with the backslash doubled, so the result means the same
/// whatever `standard_conforming_strings` is set to.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for ch in value.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(ch),
        }
    }
    out.push('\'');
    out
}

/// A literal holding a quoted identifier, for casts such as `'"tenant_a-b"'::regnamespace`
/// (the cast parses identifier syntax, so the name must be quoted inside the literal).
pub fn reg_literal(schema: &str) -> String {
    literal(&ident(schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(ident("tenant_acme-corp"), "\"tenant_acme-corp\"");
        assert_eq!(ident("pool"), "\"pool\"");
        assert_eq!(ident("Mixed"), "\"Mixed\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            ident("x\"; DROP TABLE t; --"),
            "\"x\"\"; DROP TABLE t; --\""
        );
        assert_eq!(qualified("tenant_a-b", "t"), "\"tenant_a-b\".\"t\"");
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("acme"), "'acme'");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "E'a\\\\b'");
        assert_eq!(literal("'); DROP ROLE x; --"), "'''); DROP ROLE x; --'");
        assert_eq!(literal(""), "''");
        assert_eq!(reg_literal("tenant_a-b"), "'\"tenant_a-b\"'");
    }
}
