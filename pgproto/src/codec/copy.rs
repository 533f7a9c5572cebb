//! `COPY ... TO STDOUT` lines in PostgreSQL's text and CSV formats.

use arrow::datatypes::Schema;

use super::RowEncoder;

/// Appends one CSV field, quoted when empty or when it holds a delimiter,
/// quote or line break (PostgreSQL's rule for the default CSV options).
fn write_csv_field(out: &mut Vec<u8>, value: &[u8]) {
    let quote = value.is_empty()
        || value
            .iter()
            .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !quote {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &b in value {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// The header line of `COPY ... (FORMAT csv, HEADER)`.
pub fn csv_header(schema: &Schema) -> Vec<u8> {
    let mut line = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        write_csv_field(&mut line, field.name().as_bytes());
    }
    line.push(b'\n');
    line
}

impl RowEncoder<'_> {
    /// One line of `COPY ... TO STDOUT` output (text or CSV), with newline.
    pub fn copy_line(&mut self, row: usize, csv: bool, out: &mut Vec<u8>) {
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(if csv { b',' } else { b'\t' });
            }
            if c.is_null(row) {
                if !csv {
                    out.extend_from_slice(b"\\N");
                }
                continue;
            }
            self.scratch.clear();
            c.write(row, &mut self.scratch);
            if csv {
                write_csv_field(out, &self.scratch);
            } else {
                for &b in &self.scratch {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        _ => out.push(b),
                    }
                }
            }
        }
        out.push(b'\n');
    }
}
