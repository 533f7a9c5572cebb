//! `COPY ... TO STDOUT` lines in PostgreSQL's text and CSV formats.

use arrow::datatypes::Schema;
use bytes::{BufMut, BytesMut};

use super::{write_message, RowEncoder};

/// Appends one CSV field, quoted when empty or when it holds a delimiter,
/// quote or line break (PostgreSQL's rule for the default CSV options).
fn write_csv_field(out: &mut impl BufMut, value: &[u8]) {
    let quote = value.is_empty()
        || value
            .iter()
            .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !quote {
        out.put_slice(value);
        return;
    }
    out.put_u8(b'"');
    for &b in value {
        if b == b'"' {
            out.put_u8(b'"');
        }
        out.put_u8(b);
    }
    out.put_u8(b'"');
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

/// Bytes a text-format COPY value must escape.
fn needs_text_escape(value: &[u8]) -> bool {
    value
        .iter()
        .any(|&b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
}

impl RowEncoder<'_> {
    /// One CopyData message holding the lines of rows `from..to`, appended
    /// to `out`, ending after the line that takes its data past `max_bytes`.
    /// Returns the row after the last one written.
    pub fn write_copy_data(
        &mut self,
        from: usize,
        to: usize,
        csv: bool,
        max_bytes: usize,
        out: &mut BytesMut,
    ) -> usize {
        write_message(out, b'd', |out| {
            let data = out.len();
            let mut row = from;
            while row < to && out.len() - data < max_bytes {
                self.copy_line(row, csv, out);
                row += 1;
            }
            row
        })
    }

    /// One line of `COPY ... TO STDOUT` output (text or CSV), with newline.
    pub fn copy_line(&mut self, row: usize, csv: bool, out: &mut BytesMut) {
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(if csv { b"," } else { b"\t" });
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
            } else if !needs_text_escape(&self.scratch) {
                out.extend_from_slice(&self.scratch);
            } else {
                for &b in &self.scratch {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        _ => out.extend_from_slice(&[b]),
                    }
                }
            }
        }
        out.extend_from_slice(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]);
        let strings = StringArray::from(vec![Some("plain"), Some("a\tb\\c\nd"), Some(""), None]);
        let numbers = Int64Array::from(vec![Some(1), None, Some(-3), Some(4)]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(strings), Arc::new(numbers)]).unwrap()
    }

    fn copy_data(csv: bool, max_bytes: usize) -> (BytesMut, usize) {
        let batch = batch();
        let mut out = BytesMut::new();
        let next = RowEncoder::new(&batch).write_copy_data(0, 4, csv, max_bytes, &mut out);
        (out, next)
    }

    #[test]
    fn text_lines_escape_as_postgresql_does() {
        let (out, next) = copy_data(false, usize::MAX);
        assert_eq!(next, 4);
        let data = &out[5..];
        assert_eq!(
            &out[..5],
            [&[b'd'][..], &(data.len() as i32 + 4).to_be_bytes()].concat()
        );
        assert_eq!(data, b"plain\t1\na\\tb\\\\c\\nd\t\\N\n\t-3\n\\N\t4\n");
    }

    #[test]
    fn csv_lines_quote_as_postgresql_does() {
        let (out, _) = copy_data(true, usize::MAX);
        assert_eq!(&out[5..], b"plain,1\n\"a\tb\\c\nd\",\n\"\",-3\n,4\n");
    }

    #[test]
    fn a_message_ends_after_the_line_that_passes_the_bound() {
        let (out, next) = copy_data(false, 1);
        assert_eq!(next, 1);
        assert_eq!(&out[5..], b"plain\t1\n");
    }
}
