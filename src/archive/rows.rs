//! Rows of PostgreSQL's CSV output, one at a time, without buffering a table.
//!
//! An export's files are exactly what `COPY ... TO STDOUT (FORMAT csv)` printed, behind a
//! header line. The [`Rows`] scanner walks that text as it streams by: it finds where
//! each row ends (a newline outside double quotes: PostgreSQL quotes any field holding a
//! newline, a comma or a quote, and doubles quotes inside), counts rows, and sums an
//! order-independent checksum of them. On import it also checks the header line against
//! the manifest's columns and checks (and, when the export is restored under another id,
//! rewrites) the `tenant_id` field of every row.
//!
//! The checksum ([`RowSum`]) is the wrapping sum of the first 128 bits of each row's
//! SHA-256 (the row's CSV line, newline included). Being a sum, it does not depend on row
//! order, so it can be recomputed from the database after a load (whose output order is
//! not the file's) and compared.

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

/// Count and order-independent checksum of a set of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowSum {
    pub rows: u64,
    sum: u128,
}

impl RowSum {
    fn add(&mut self, digest: &[u8]) {
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(first));
        self.rows += 1;
    }

    /// 32 lower-case hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

/// The `tenant_id` field of every row: checked against the export's tenant and, when
/// `replace` is set, rewritten (an export restored under another tenant id).
#[derive(Debug, Clone)]
pub struct TenantField {
    /// Position of the column among the row's fields.
    pub index: usize,
    pub expect: String,
    pub replace: Option<String>,
}

/// A streaming scanner of CSV rows (see the module docs).
pub struct Rows {
    /// For messages: the file or table being scanned.
    what: String,
    /// The header line the input must start with (dropped from the output); None when
    /// the input has no header (COPY output).
    header: Option<Vec<u8>>,
    header_seen: Vec<u8>,
    tenant: Option<TenantField>,
    in_quotes: bool,
    field: usize,
    /// The raw bytes of the current tenant field.
    field_buf: Vec<u8>,
    /// Bytes of the current row seen (to refuse a truncated last row).
    row_open: bool,
    original: Sha256,
    /// The row as written out, when the tenant field is rewritten.
    rewritten: Option<Sha256>,
    /// Checksum of the rows as they came in.
    pub input: RowSum,
    /// Checksum of the rows as they went out (equal to `input` without a rewrite).
    pub output: RowSum,
}

/// At most this much of a foreign value is quoted in an error.
const SHOW: usize = 60;

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOW)]).into_owned();
    let more = if bytes.len() > SHOW { "..." } else { "" };
    format!("{}{more}", text.escape_debug())
}

impl Rows {
    pub fn new(what: impl Into<String>) -> Rows {
        Rows {
            what: what.into(),
            header: None,
            header_seen: Vec::new(),
            tenant: None,
            in_quotes: false,
            field: 0,
            field_buf: Vec::new(),
            row_open: false,
            original: Sha256::new(),
            rewritten: None,
            input: RowSum::default(),
            output: RowSum::default(),
        }
    }

    /// The input starts with this header line, which is checked and not passed on.
    pub fn with_header(mut self, line: Vec<u8>) -> Rows {
        self.header = Some(line);
        self
    }

    pub fn with_tenant_field(mut self, field: TenantField) -> Rows {
        if field.replace.is_some() {
            self.rewritten = Some(Sha256::new());
        }
        self.tenant = Some(field);
        self
    }

    /// Scans `input`; the rows (header dropped, tenant field rewritten) are appended to
    /// `out` when given.
    pub fn feed(&mut self, mut input: &[u8], mut out: Option<&mut Vec<u8>>) -> Result<()> {
        if self.header.is_some() {
            match self.scan_header(input)? {
                Some(rest) => input = rest,
                None => return Ok(()),
            }
        }
        let mut start = 0;
        for (i, &b) in input.iter().enumerate() {
            if self.in_quotes {
                if b == b'"' {
                    self.in_quotes = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_quotes = true,
                b',' | b'\n' => {
                    if self.in_tenant_field() {
                        self.field_buf.extend_from_slice(&input[start..i]);
                        self.end_tenant_field(out.as_deref_mut())?;
                        start = i;
                    }
                    if b == b'\n' {
                        self.emit(&input[start..=i], out.as_deref_mut());
                        self.end_row();
                        start = i + 1;
                    } else {
                        self.field += 1;
                        if self.in_tenant_field() {
                            self.emit(&input[start..=i], out.as_deref_mut());
                            start = i + 1;
                        }
                    }
                }
                _ => {}
            }
        }
        let rest = &input[start..];
        if self.in_tenant_field() {
            self.field_buf.extend_from_slice(rest);
        } else {
            self.emit(rest, out);
        }
        if !rest.is_empty() {
            self.row_open = true;
        }
        Ok(())
    }

    /// The input ended: refuses a missing header or a row cut short.
    pub fn finish(&self) -> Result<()> {
        if self.header.is_some() {
            bail!("{} is empty: it has no header line", self.what);
        }
        if self.row_open || self.in_quotes || self.field != 0 {
            bail!(
                "{} ends in the middle of row {}: the file is truncated",
                self.what,
                self.input.rows + 1
            );
        }
        Ok(())
    }

    /// Consumes the header line; returns what follows it once it is complete.
    fn scan_header<'a>(&mut self, input: &'a [u8]) -> Result<Option<&'a [u8]>> {
        for (i, &b) in input.iter().enumerate() {
            if self.in_quotes {
                self.in_quotes = b != b'"';
            } else if b == b'"' {
                self.in_quotes = true;
            } else if b == b'\n' {
                self.header_seen.extend_from_slice(&input[..=i]);
                let expected = self.header.take().unwrap_or_default();
                if self.header_seen != expected {
                    bail!(
                        "the header line of {} is `{}`, but the manifest lists the columns `{}`",
                        self.what,
                        show(self.header_seen.trim_ascii_end()),
                        show(expected.trim_ascii_end())
                    );
                }
                return Ok(Some(&input[i + 1..]));
            }
        }
        self.header_seen.extend_from_slice(input);
        if self.header_seen.len() > 1 << 20 {
            bail!("{} has no header line in its first MiB", self.what);
        }
        Ok(None)
    }

    fn in_tenant_field(&self) -> bool {
        self.tenant.as_ref().is_some_and(|t| t.index == self.field)
    }

    fn end_tenant_field(&mut self, out: Option<&mut Vec<u8>>) -> Result<()> {
        let Some(t) = &self.tenant else {
            return Ok(());
        };
        if self.field_buf != t.expect.as_bytes() {
            bail!(
                "row {} of {} has tenant_id `{}`, but the export is of tenant `{}`: refusing rows of another tenant",
                self.input.rows + 1,
                self.what,
                show(&self.field_buf),
                t.expect
            );
        }
        self.original.update(&self.field_buf);
        let written: &[u8] = match &t.replace {
            Some(r) => r.as_bytes(),
            None => &self.field_buf,
        };
        if let Some(h) = &mut self.rewritten {
            h.update(written);
        }
        if let Some(out) = out {
            out.extend_from_slice(written);
        }
        self.field_buf.clear();
        Ok(())
    }

    fn emit(&mut self, bytes: &[u8], out: Option<&mut Vec<u8>>) {
        self.original.update(bytes);
        if let Some(h) = &mut self.rewritten {
            h.update(bytes);
        }
        if let Some(out) = out {
            out.extend_from_slice(bytes);
        }
    }

    fn end_row(&mut self) {
        let digest = self.original.finalize_reset();
        self.input.add(&digest);
        match &mut self.rewritten {
            Some(h) => {
                let d = h.finalize_reset();
                self.output.add(&d);
            }
            None => self.output.add(&digest),
        }
        self.field = 0;
        self.row_open = false;
    }
}

/// A CSV header line for these column names (quoted where CSV needs it).
pub fn header_line<'a>(columns: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let cells: Vec<String> = columns
        .into_iter()
        .map(|c| {
            if !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                c.to_string()
            } else {
                format!("\"{}\"", c.replace('"', "\"\""))
            }
        })
        .collect();
    let mut line = cells.join(",").into_bytes();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &[u8] =
        b"1,acme,\"a,b\",\"line\nbreak\"\n2,acme,\"say \"\"hi\"\"\",\n3,acme,,\"\"\n";

    fn scan(chunks: &[&[u8]], rows: &mut Rows) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            rows.feed(c, Some(&mut out)).unwrap();
        }
        rows.finish().unwrap();
        out
    }

    #[test]
    fn rows_are_split_at_newlines_outside_quotes_whatever_the_chunking() {
        let mut whole = Rows::new("t");
        let out = scan(&[CSV], &mut whole);
        assert_eq!(out, CSV);
        assert_eq!(whole.input.rows, 3);
        assert_eq!(whole.input, whole.output);
        // Every split point gives the same rows and checksum.
        for cut in 0..CSV.len() {
            let mut r = Rows::new("t");
            let out = scan(&[&CSV[..cut], &CSV[cut..]], &mut r);
            assert_eq!(out, CSV, "cut at {cut}");
            assert_eq!(r.input, whole.input, "cut at {cut}");
        }
        // Row order does not matter; content does.
        let reordered =
            b"3,acme,,\"\"\n1,acme,\"a,b\",\"line\nbreak\"\n2,acme,\"say \"\"hi\"\"\",\n";
        let mut r = Rows::new("t");
        scan(&[reordered], &mut r);
        assert_eq!(r.input, whole.input);
        let changed = b"3,acme,,\"\"\n1,acme,\"a,b\",\"line\nbreak\"\n2,acme,\"say \"\"ho\"\"\",\n";
        let mut r = Rows::new("t");
        scan(&[changed], &mut r);
        assert_ne!(r.input.hex(), whole.input.hex());
    }

    #[test]
    fn header_is_checked_and_dropped_and_tenant_ids_are_checked_and_rewritten() {
        let mut file = b"id,tenant_id,a,b\n".to_vec();
        file.extend_from_slice(CSV);
        let field = |replace: Option<&str>| TenantField {
            index: 1,
            expect: "acme".into(),
            replace: replace.map(str::to_string),
        };
        for cut in 0..file.len() {
            let mut r = Rows::new("t")
                .with_header(header_line(["id", "tenant_id", "a", "b"]))
                .with_tenant_field(field(Some("globex-2")));
            let out = scan(&[&file[..cut], &file[cut..]], &mut r);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(CSV.to_vec())
                    .unwrap()
                    .replace(",acme,", ",globex-2,"),
                "cut at {cut}"
            );
            assert_eq!(r.input.rows, 3);
            // The input checksum is the original rows'; the output one the rewritten rows'.
            let mut plain = Rows::new("t");
            scan(&[CSV], &mut plain);
            assert_eq!(r.input, plain.input);
            let mut rewritten = Rows::new("t");
            scan(
                &[String::from_utf8(CSV.to_vec())
                    .unwrap()
                    .replace(",acme,", ",globex-2,")
                    .as_bytes()],
                &mut rewritten,
            );
            assert_eq!(r.output, rewritten.input);
        }
        // Tenant id in the first column, kept.
        let mut r = Rows::new("t").with_tenant_field(TenantField {
            index: 0,
            expect: "acme".into(),
            replace: None,
        });
        assert_eq!(scan(&[b"acme,1\nacme,2\n"], &mut r), b"acme,1\nacme,2\n");

        let mut r = Rows::new("`x.csv.gz`").with_header(header_line(["id", "name"]));
        let err = r.feed(b"id,nom\n1,2\n", None).unwrap_err().to_string();
        assert!(
            err.contains("`id,nom`") && err.contains("`id,name`"),
            "{err}"
        );

        let mut r = Rows::new("`x`").with_tenant_field(field(None));
        let err = r
            .feed(b"1,acme,a,b\n2,initech,a,b\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 2 of `x` has tenant_id `initech`"),
            "{err}"
        );
    }

    #[test]
    fn truncated_input_is_refused() {
        let mut r = Rows::new("`x`");
        r.feed(b"1,a\n2,\"b", None).unwrap();
        assert!(r.finish().unwrap_err().to_string().contains("row 2"));
        let r = Rows::new("`x`").with_header(header_line(["id"]));
        assert!(r.finish().unwrap_err().to_string().contains("no header"));
        assert_eq!(header_line(["id", "a b", "q\""]), b"id,\"a b\",\"q\"\"\"\n");
    }
}
