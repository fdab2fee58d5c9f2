//! A CSV record reader with bounded memory, on `csv-core`: fields longer than a limit are
//! skipped (and reported), never buffered, so a 50 MB field or a file of any size reads in the
//! same few kilobytes. Handles a UTF-8 BOM, quoted fields, embedded newlines and any delimiter.

use std::io::Read;

use csv_core::{ReadFieldResult, Reader, ReaderBuilder};

/// The longest field kept, in bytes. Anything longer is reported, not read into memory.
pub const MAX_FIELD_BYTES: usize = 16 * 1024;
/// The most fields kept per record.
pub const MAX_FIELDS: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    /// The field had this many bytes, more than `MAX_FIELD_BYTES`.
    TooLong(u64),
    /// The bytes are not UTF-8 (a Latin-1 or Windows-1252 file, say); kept lossily for reports.
    NotUtf8(String),
}

impl FieldValue {
    /// A short, printable form for reports.
    pub fn display(&self) -> String {
        match self {
            FieldValue::Text(s) | FieldValue::NotUtf8(s) => truncate(s, 100),
            FieldValue::TooLong(n) => format!("({n} bytes)"),
        }
    }
}

pub fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The line of the file the record starts on (the header is line 1).
    pub line: u64,
    pub fields: Vec<FieldValue>,
    /// More than `MAX_FIELDS` fields: the rest were dropped.
    pub truncated_fields: bool,
}

pub struct RecordReader<R> {
    source: R,
    core: Reader,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    field: Vec<u8>,
    field_len: u64,
    /// Newlines consumed so far.
    newlines: u64,
    consumed: u64,
    done: bool,
}

impl<R: Read> RecordReader<R> {
    pub fn new(source: R, delimiter: u8) -> Self {
        RecordReader {
            source,
            core: ReaderBuilder::new().delimiter(delimiter).build(),
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            eof: false,
            field: vec![0; MAX_FIELD_BYTES],
            field_len: 0,
            newlines: 0,
            consumed: 0,
            done: false,
        }
    }

    /// Bytes of the source read into records so far.
    pub fn bytes_consumed(&self) -> u64 {
        self.consumed
    }

    fn fill(&mut self) -> std::io::Result<()> {
        self.start = 0;
        self.end = 0;
        loop {
            match self.source.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end = n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next record, `None` at the end. Blank lines are skipped.
    pub fn next_record(&mut self) -> std::io::Result<Option<Record>> {
        if self.done {
            return Ok(None);
        }
        let mut fields = Vec::new();
        let mut truncated_fields = false;
        let mut line = self.newlines + 1;
        let mut at_record_start = true;
        let mut out_pos = 0usize;
        loop {
            if self.start == self.end && !self.eof {
                self.fill()?;
            }
            let input = &self.buf[self.start..self.end];
            let (result, nin, nout) = self.core.read_field(input, &mut self.field[out_pos..]);
            let consumed = &self.buf[self.start..self.start + nin];
            let newlines_here = bytecount(consumed);
            if at_record_start {
                // Leading newlines belong to blank lines before the record.
                let leading = consumed
                    .iter()
                    .take_while(|b| **b == b'\n' || **b == b'\r')
                    .filter(|b| **b == b'\n')
                    .count();
                line = self.newlines + 1 + leading as u64;
                if consumed.iter().any(|b| *b != b'\n' && *b != b'\r') || nout > 0 {
                    at_record_start = false;
                }
            }
            self.newlines += newlines_here;
            self.start += nin;
            self.consumed += nin as u64;
            self.field_len += nout as u64;
            out_pos += nout;
            match result {
                ReadFieldResult::InputEmpty => {
                    if self.eof && nin == 0 {
                        // Signal the end to csv-core with empty input on the next turn.
                        let (r, _, nout2) = self.core.read_field(&[], &mut self.field[out_pos..]);
                        self.field_len += nout2 as u64;
                        out_pos += nout2;
                        match r {
                            ReadFieldResult::Field { .. } => {
                                self.push_field(&mut fields, &mut truncated_fields, out_pos);
                                return Ok(finish(line, fields, truncated_fields, &mut self.done));
                            }
                            _ => {
                                self.done = true;
                                return Ok(if fields.is_empty() {
                                    None
                                } else {
                                    Some(Record {
                                        line,
                                        fields,
                                        truncated_fields,
                                    })
                                });
                            }
                        }
                    }
                }
                ReadFieldResult::OutputFull => {
                    // Too long to keep: drop what we have and count the rest.
                    out_pos = 0;
                }
                ReadFieldResult::Field { record_end } => {
                    self.push_field(&mut fields, &mut truncated_fields, out_pos);
                    out_pos = 0;
                    if record_end {
                        if fields.len() == 1 && fields[0] == FieldValue::Text(String::new()) {
                            // A blank line.
                            fields.clear();
                            at_record_start = true;
                            truncated_fields = false;
                            continue;
                        }
                        return Ok(Some(Record {
                            line,
                            fields,
                            truncated_fields,
                        }));
                    }
                }
                ReadFieldResult::End => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }

    fn push_field(&mut self, fields: &mut Vec<FieldValue>, truncated: &mut bool, len: usize) {
        let total = self.field_len;
        self.field_len = 0;
        if fields.len() >= MAX_FIELDS {
            *truncated = true;
            return;
        }
        if total > MAX_FIELD_BYTES as u64 || len < usize::try_from(total).unwrap_or(usize::MAX) {
            fields.push(FieldValue::TooLong(total));
            return;
        }
        let bytes = &self.field[..len];
        fields.push(match std::str::from_utf8(bytes) {
            Ok(s) => FieldValue::Text(s.to_owned()),
            Err(_) => FieldValue::NotUtf8(String::from_utf8_lossy(bytes).into_owned()),
        });
    }
}

fn finish(
    line: u64,
    fields: Vec<FieldValue>,
    truncated_fields: bool,
    done: &mut bool,
) -> Option<Record> {
    *done = true;
    if fields.is_empty() || (fields.len() == 1 && fields[0] == FieldValue::Text(String::new())) {
        None
    } else {
        Some(Record {
            line,
            fields,
            truncated_fields,
        })
    }
}

fn bytecount(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

/// Guesses the delimiter from the first line: the most frequent of `,` `;` and tab outside quotes.
pub fn sniff_delimiter(sample: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut in_quotes = false;
    for &b in sample {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => break,
            b',' if !in_quotes => counts[0] += 1,
            b';' if !in_quotes => counts[1] += 1,
            b'\t' if !in_quotes => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b',', b';', b'\t'];
    let best = (0..3)
        .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
        .unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        candidates[best]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], delimiter: u8) -> Vec<Record> {
        let mut r = RecordReader::new(data, delimiter);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec);
        }
        out
    }

    fn texts(rec: &Record) -> Vec<&str> {
        rec.fields
            .iter()
            .map(|f| match f {
                FieldValue::Text(s) => s.as_str(),
                _ => "<bad>",
            })
            .collect()
    }

    #[test]
    fn reads_quoted_fields_bom_and_line_numbers() {
        let data = "\u{feff}phone,name,note\n+14155550100,\"Lovelace, Ada\",\"two\nlines\"\n\n+14155550101,Zoë,\"say \"\"hi\"\"\"\r\n+1,x,y";
        let recs = read_all(data.as_bytes(), b',');
        assert_eq!(recs.len(), 4);
        assert_eq!(texts(&recs[0]), ["phone", "name", "note"]);
        assert_eq!(recs[0].line, 1);
        assert_eq!(
            texts(&recs[1]),
            ["+14155550100", "Lovelace, Ada", "two\nlines"]
        );
        assert_eq!(recs[1].line, 2);
        assert_eq!(texts(&recs[2]), ["+14155550101", "Zoë", "say \"hi\""]);
        assert_eq!(recs[2].line, 5, "after a two-line record and a blank line");
        assert_eq!(texts(&recs[3]), ["+1", "x", "y"]);
        assert_eq!(recs[3].line, 6);
    }

    #[test]
    fn semicolons_and_tabs() {
        assert_eq!(
            texts(&read_all(b"a;b;c\n1;2;3\n", b';')[1]),
            ["1", "2", "3"]
        );
        assert_eq!(texts(&read_all(b"a\tb\n1\t2", b'\t')[1]), ["1", "2"]);
    }

    #[test]
    fn huge_fields_are_reported_without_being_kept() {
        let mut data = b"phone,note\n+14155550100,".to_vec();
        data.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
        data.extend(b"\n+14155550101,ok\n");
        let recs = read_all(&data, b',');
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].fields[1], FieldValue::TooLong(5 * 1024 * 1024));
        assert_eq!(texts(&recs[2]), ["+14155550101", "ok"]);
        assert_eq!(recs[2].line, 3);
    }

    #[test]
    fn invalid_utf8_is_flagged_per_field() {
        let recs = read_all(b"name\nZo\xeb\n", b',');
        assert!(matches!(&recs[1].fields[0], FieldValue::NotUtf8(s) if s.starts_with("Zo")));
    }

    #[test]
    fn empty_input_has_no_records() {
        assert!(read_all(b"", b',').is_empty());
        assert!(read_all(b"\n\n\r\n", b',').is_empty());
    }

    #[test]
    fn ragged_rows_keep_their_own_field_counts() {
        let recs = read_all(b"a,b,c\n1,2\n1,2,3,4\n", b',');
        assert_eq!(recs[1].fields.len(), 2);
        assert_eq!(recs[2].fields.len(), 4);
    }

    #[test]
    fn too_many_fields_are_capped() {
        let line = vec![b','; MAX_FIELDS * 2];
        let recs = read_all(&line, b',');
        assert_eq!(recs[0].fields.len(), MAX_FIELDS);
        assert!(recs[0].truncated_fields);
    }

    #[test]
    fn delimiters_are_sniffed_outside_quotes() {
        assert_eq!(sniff_delimiter(b"phone;name;email\n1,2"), b';');
        assert_eq!(sniff_delimiter(b"\"a;b\",c,d\n"), b',');
        assert_eq!(sniff_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(sniff_delimiter(b"phone"), b',');
    }

    #[test]
    fn reading_in_tiny_chunks_gives_the_same_records() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(3).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let data = "phone,name\n+14155550100,\"A, B\"\n+14155550101,C\n";
        let mut r = RecordReader::new(Trickle(data.as_bytes()), b',');
        let mut n = 0;
        while let Some(rec) = r.next_record().unwrap() {
            n += 1;
            assert_eq!(rec.fields.len(), 2);
        }
        assert_eq!(n, 3);
        assert_eq!(r.bytes_consumed(), data.len() as u64);
    }
}
