//! One table type for every command's human and Markdown output.
//!
//! Cells are single lines: a multi-line value (a Terraform diagnostic) is reduced to its
//! gist with [`one_line`], so a row never breaks the layout; the full text belongs on
//! stderr or in JSON.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    align: Align,
}

/// Rows under named columns, with an optional title and summary lines.
#[derive(Debug, Clone, Default)]
pub struct Table {
    title: Option<String>,
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    summary: Vec<String>,
    /// Markdown: which columns hold code-like values (ids, check names), shown in backticks.
    code: Vec<bool>,
}

impl Table {
    /// A table with these column names (lower case; the human header upper-cases them).
    pub fn new(columns: &[&str]) -> Table {
        Table {
            title: None,
            columns: columns
                .iter()
                .map(|c| Column {
                    name: c.to_string(),
                    align: Align::Left,
                })
                .collect(),
            rows: Vec::new(),
            summary: Vec::new(),
            code: vec![false; columns.len()],
        }
    }

    /// The Markdown heading (`### title`); human output leaves it out.
    pub fn titled(mut self, title: impl Into<String>) -> Table {
        self.title = Some(title.into());
        self
    }

    pub fn align(mut self, column: usize, align: Align) -> Table {
        self.columns[column].align = align;
        self
    }

    /// Shows the column's Markdown cells as code.
    pub fn code(mut self, column: usize) -> Table {
        self.code[column] = true;
        self
    }

    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells.into_iter().map(|c| one_line(&c.into())).collect();
        row.resize(self.columns.len(), String::new());
        self.rows.push(row);
    }

    /// A line shown after the table (human) or before it (Markdown): counts, totals.
    pub fn summary(&mut self, line: impl Into<String>) {
        self.summary.push(line.into());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Aligned columns separated by two spaces; the last column is not padded. An empty
    /// table prints only its summary.
    pub fn human(&self) -> String {
        let mut out = String::new();
        if !self.rows.is_empty() {
            let widths: Vec<usize> = (0..self.columns.len())
                .map(|i| {
                    self.rows
                        .iter()
                        .map(|r| r[i].chars().count())
                        .chain([self.columns[i].name.chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let header: Vec<String> = self.columns.iter().map(|c| c.name.to_uppercase()).collect();
            self.human_line(&mut out, &header, &widths);
            for r in &self.rows {
                self.human_line(&mut out, r, &widths);
            }
        }
        for s in &self.summary {
            let _ = writeln!(out, "{s}");
        }
        out
    }

    fn human_line(&self, out: &mut String, cells: &[String], widths: &[usize]) {
        let last = cells.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            match self.columns[i].align {
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                Align::Left if i == last => line.push_str(cell),
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }

    /// A GitHub-flavoured Markdown table, pipes escaped.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        if let Some(t) = &self.title {
            let _ = writeln!(out, "### {t}\n");
        }
        for s in &self.summary {
            let _ = writeln!(out, "{s}\n");
        }
        if self.rows.is_empty() {
            return out;
        }
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        let _ = writeln!(out, "| {} |", names.join(" | "));
        let rules: Vec<&str> = self
            .columns
            .iter()
            .map(|c| match c.align {
                Align::Left => "---",
                Align::Right => "---:",
            })
            .collect();
        let _ = writeln!(out, "|{}|", rules.join("|"));
        for r in &self.rows {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let c = c.replace('|', "\\|");
                    if self.code[i] && !c.is_empty() && c != "-" {
                        format!("`{}`", c.replace('`', "'"))
                    } else {
                        c
                    }
                })
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

/// A one-line digest of a possibly multi-line text: the first line, plus the first
/// `Error:` line of Terraform's diagnostics when the first line only names the command.
pub fn one_line(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    match s
        .lines()
        .skip(1)
        .find(|l| l.trim_start().starts_with("Error:"))
    {
        Some(e) => format!("{}: {}", first.trim_end_matches(':'), e.trim()),
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&["tenant", "result", "time"])
            .titled("tenantctl apply")
            .align(2, Align::Right)
            .code(0);
        t.row(["acme-corp", "changed", "1.5s"]);
        t.row(["b|x", "failed", "10.0s"]);
        t.summary("1 changed, 1 failed");
        t
    }

    #[test]
    fn human_aligns_columns_and_ends_with_the_summary() {
        assert_eq!(
            sample().human(),
            "TENANT     RESULT    TIME\nacme-corp  changed   1.5s\nb|x        failed   10.0s\n1 changed, 1 failed\n"
        );
    }

    #[test]
    fn markdown_escapes_pipes_and_marks_code() {
        assert_eq!(
            sample().markdown(),
            "### tenantctl apply\n\n1 changed, 1 failed\n\n| tenant | result | time |\n|---|---|---:|\n| `acme-corp` | changed | 1.5s |\n| `b\\|x` | failed | 10.0s |\n"
        );
    }

    #[test]
    fn cells_are_one_line() {
        let mut t = Table::new(&["a", "b"]);
        t.row([
            "x",
            "`terraform apply` failed for `t` (exit 1):\nsome detail\nError: creating IAM Role: EntityAlreadyExists",
        ]);
        assert_eq!(
            t.human(),
            "A  B\nx  `terraform apply` failed for `t` (exit 1): Error: creating IAM Role: EntityAlreadyExists\n"
        );
        let empty = Table::new(&["a"]);
        assert_eq!(empty.human(), "");
    }
}
