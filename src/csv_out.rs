//! Every CSV Herald writes goes through [`CsvWriter`], so no export can forget what a
//! spreadsheet does with it: a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
//! return is read as a formula by Excel, LibreOffice and Google Sheets ("CSV injection": a
//! contact named `=HYPERLINK(…)` becomes a live link). Following OWASP's advice, such a cell is
//! written with a single quote in front and the rest of the value kept, which spreadsheets show
//! as text.
//!
//! That includes phone numbers: `+14155550100` is written `'+14155550100` (a spreadsheet would
//! otherwise turn it into the number 14155550100). The import reads Herald's own exports back:
//! [`restore`] removes the quote again, so an exported file re-imports unchanged. To keep that
//! exact for values that really start with quotes, a value whose quotes are followed by a
//! formula character (`'=x`) gets one more quote, and [`restore`] removes exactly one.
//! `clippy.toml` forbids `csv::Writer` elsewhere.

use std::borrow::Cow;
use std::io::Write;

/// Characters that make a spreadsheet evaluate a cell when they come first (OWASP's list).
pub const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// True when a spreadsheet could evaluate `value`, or when it is a guard already (quotes
/// followed by a formula character), so that [`restore`] undoes exactly what
/// [`neutralise`] did.
fn needs_guard(value: &str) -> bool {
    value.trim_start_matches('\'').starts_with(FORMULA_STARTS)
}

/// The value as written to a CSV cell: with a leading `'` when a spreadsheet would otherwise
/// read it as a formula.
pub fn neutralise(value: &str) -> Cow<'_, str> {
    if needs_guard(value) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// The inverse of [`neutralise`], for reading a cell back (the contact import): one leading
/// `'` is removed when what follows would need it. Other values come back as they are.
pub fn restore(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if needs_guard(rest) => rest,
        _ => cell,
    }
}

/// A `csv::Writer` that neutralises every cell it writes.
pub struct CsvWriter<W: Write> {
    // The one place a csv::Writer is built; see the module's comment.
    #[allow(clippy::disallowed_types)]
    inner: csv::Writer<W>,
}

impl<W: Write> CsvWriter<W> {
    #[allow(clippy::disallowed_types)]
    pub fn from_writer(writer: W) -> Self {
        CsvWriter {
            inner: csv::Writer::from_writer(writer),
        }
    }

    /// Writes one record, each cell neutralised.
    pub fn write_record<I, F>(&mut self, record: I) -> csv::Result<()>
    where
        I: IntoIterator<Item = F>,
        F: AsRef<str>,
    {
        for field in record {
            self.inner
                .write_field(neutralise(field.as_ref()).as_bytes())?;
        }
        // An empty record after single fields ends the record.
        self.inner.write_record(std::iter::empty::<&[u8]>())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> std::io::Result<W> {
        self.inner.into_inner().map_err(|e| e.into_error())
    }
}

/// Encodes rows as CSV in memory (quoting what needs quotes, neutralising formulas).
pub fn rows<I, R, F>(rows: I) -> Vec<u8>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = F>,
    F: AsRef<str>,
{
    let mut w = CsvWriter::from_writer(Vec::new());
    for r in rows {
        // Writing to a Vec cannot fail; a row that could not be encoded is skipped.
        let _ = w.write_record(r);
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formula_cells_get_a_quote_and_keep_their_value() {
        let encoded = String::from_utf8(rows([[
            "=HYPERLINK(\"http://evil.test\",\"x\")",
            "+14155550100",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "Ada",
            "",
            "'plain",
            "'=already",
        ]]))
        .unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(encoded.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        let cells: Vec<&str> = record.iter().collect();
        assert_eq!(
            cells,
            [
                "'=HYPERLINK(\"http://evil.test\",\"x\")",
                "'+14155550100",
                "'-2",
                "'@SUM(A1)",
                "'\tx",
                "'\rx",
                "Ada",
                "",
                "'plain",
                "''=already",
            ]
        );
        for cell in &cells {
            assert!(!cell.starts_with(FORMULA_STARTS), "{cell:?}");
        }
    }

    #[test]
    fn restore_undoes_the_guard_only() {
        assert_eq!(restore("'+14155550100"), "+14155550100");
        assert_eq!(restore("''=x"), "'=x");
        assert_eq!(restore("'plain"), "'plain");
        assert_eq!(restore("+14155550100"), "+14155550100");
        assert_eq!(restore("'"), "'");
    }

    proptest! {
        #[test]
        fn every_value_round_trips_and_no_cell_starts_a_formula(value in "['=+\\-@\t\ra-z ]{0,6}") {
            let cell = neutralise(&value);
            prop_assert!(!cell.starts_with(FORMULA_STARTS));
            prop_assert_eq!(restore(&cell), value.as_str());
        }
    }
}
