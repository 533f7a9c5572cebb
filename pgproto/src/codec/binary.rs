//! PostgreSQL's binary format for result values.

use arrow::array::Array;

use super::text::ColumnText;
use crate::pg::oid::{PG_EPOCH_DAYS, PG_EPOCH_MICROS};

/// Appends the binary form of a non-null value; types without a binary
/// form here fall back to their text bytes (valid for text-like types).
pub fn write(column: &ColumnText, row: usize, out: &mut Vec<u8>) {
    match column {
        ColumnText::Bool(a) => out.push(a.value(row) as u8),
        ColumnText::I16(a) => out.extend_from_slice(&a.value(row).to_be_bytes()),
        ColumnText::I32(a) => out.extend_from_slice(&a.value(row).to_be_bytes()),
        ColumnText::I64(a) => out.extend_from_slice(&a.value(row).to_be_bytes()),
        ColumnText::F32(a) => out.extend_from_slice(&a.value(row).to_be_bytes()),
        ColumnText::F64(a) => out.extend_from_slice(&a.value(row).to_be_bytes()),
        ColumnText::Text(a) => out.extend_from_slice(a.value(row).as_bytes()),
        ColumnText::Bytes(a) => out.extend_from_slice(a.value(row)),
        // Saturating: PostgreSQL's binary infinity is the extreme value.
        ColumnText::Date(a) => {
            out.extend_from_slice(&a.value(row).saturating_sub(PG_EPOCH_DAYS).to_be_bytes())
        }
        ColumnText::Timestamp(a, _) => {
            out.extend_from_slice(&a.value(row).saturating_sub(PG_EPOCH_MICROS).to_be_bytes())
        }
        ColumnText::Time(a) => out.extend_from_slice(&a.value(row).to_be_bytes()),
        ColumnText::Numeric(a, scale) => write_numeric(out, a.value(row), *scale),
        ColumnText::NumericText(a) => write_numeric_text(out, a.value(row)),
        ColumnText::Interval(a) => {
            let v = a.value(row);
            out.extend_from_slice(&(v.nanoseconds / 1000).to_be_bytes());
            out.extend_from_slice(&v.days.to_be_bytes());
            out.extend_from_slice(&v.months.to_be_bytes());
        }
        ColumnText::Json(_) => {
            out.push(1); // jsonb version
            column.write(row, out);
        }
        ColumnText::List(a) => {
            let values = a.value(row);
            let element = ColumnText::new(&values);
            // The element field says a declared element type (name[]).
            let element_oid = match a.data_type() {
                arrow::datatypes::DataType::List(field) => super::pg_type(field).0,
                other => {
                    super::pg_type(&arrow::datatypes::Field::new("item", other.clone(), true)).0
                }
            };
            let has_null = (0..values.len()).any(|i| element.is_null(i));
            for v in [
                1i32,
                has_null as i32,
                element_oid as i32,
                values.len() as i32,
                1,
            ] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            let mut buf = Vec::new();
            for i in 0..values.len() {
                if element.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    buf.clear();
                    write(&element, i, &mut buf);
                    out.extend_from_slice(&(buf.len() as i32).to_be_bytes());
                    out.extend_from_slice(&buf);
                }
            }
        }
        ColumnText::Null | ColumnText::Other(_) => column.write(row, out),
    }
}

/// numeric: ndigits, weight, sign, dscale, then base-10000 digits, as
/// PostgreSQL lays them out (no leading or trailing zero digit groups).
/// Computed with integer arithmetic: this runs once per value of every
/// numeric column a binary client reads.
pub fn write_numeric(out: &mut Vec<u8>, value: i128, scale: i8) {
    let negative = value < 0;
    let mut magnitude = value.unsigned_abs();
    // A negative scale multiplies by a power of ten (dscale is then 0).
    if scale < 0 {
        match 10u128
            .checked_pow(u32::from(scale.unsigned_abs()))
            .and_then(|p| magnitude.checked_mul(p))
        {
            Some(m) => magnitude = m,
            None => return write_numeric_wide(out, value, scale),
        }
    }
    let dscale = scale.max(0) as u32;
    // Pad the fraction to whole groups of four decimal digits.
    let pad = (4 - dscale % 4) % 4;
    let Some(padded) = 10u128
        .checked_pow(pad)
        .and_then(|p| magnitude.checked_mul(p))
    else {
        return write_numeric_wide(out, value, scale);
    };
    let fraction_groups = ((dscale + pad) / 4) as usize;
    // Base-10000 digits, least significant first.
    let mut groups = [0i16; 40];
    let mut n = 0;
    let mut rest = padded;
    while rest > 0 {
        groups[n] = (rest % 10_000) as i16;
        rest /= 10_000;
        n += 1;
    }
    let total = n.max(fraction_groups);
    // Most significant first, without leading or trailing zero groups.
    let digits = &mut groups[..total];
    digits.reverse();
    let leading = digits.iter().take_while(|&&g| g == 0).count();
    let trailing = digits[leading..]
        .iter()
        .rev()
        .take_while(|&&g| g == 0)
        .count();
    let kept = &digits[leading..total - trailing];
    let integer_groups = total as i16 - fraction_groups as i16;
    let (weight, sign) = if kept.is_empty() {
        (0, 0u16)
    } else {
        (
            integer_groups - 1 - leading as i16,
            if negative { 0x4000 } else { 0 },
        )
    };
    put_numeric(out, kept, weight, sign, dscale as u16);
}

/// `write_numeric` for a number written out in decimal (`-12.50`), its
/// scale the digits after the point. Text that is not such a number is
/// written as its bytes, so the client sees it rather than a wrong value.
pub fn write_numeric_text(out: &mut Vec<u8>, text: &str) {
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (0x4000, rest),
        None => (0, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let decimal = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    // The layout's weight is an i16 count of base-10000 digits.
    let too_long = whole.len() >= 4 * i16::MAX as usize || fraction.len() > 0x3FFF;
    if whole.is_empty() || !decimal(whole) || !decimal(fraction) || too_long {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    // Base-10000 digits aligned on the point: the whole part padded on the
    // left, the fraction on the right, to multiples of four.
    let whole = whole.trim_start_matches('0');
    let lead = (4 - whole.len() % 4) % 4;
    let trail = (4 - fraction.len() % 4) % 4;
    let padded: Vec<u8> = std::iter::repeat_n(b'0', lead)
        .chain(whole.bytes())
        .chain(fraction.bytes())
        .chain(std::iter::repeat_n(b'0', trail))
        .collect();
    let mut digits: Vec<i16> = padded
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |n, d| n * 10 + (d - b'0') as i16))
        .collect();
    let mut weight = ((lead + whole.len()) / 4) as i16 - 1;
    let leading_zeros = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading_zeros);
    weight -= leading_zeros as i16;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        put_numeric(out, &[], 0, 0, fraction.len() as u16);
    } else {
        put_numeric(out, &digits, weight, sign, fraction.len() as u16);
    }
}

/// numeric's wire layout: ndigits, weight, sign, dscale, the digits.
fn put_numeric(out: &mut Vec<u8>, digits: &[i16], weight: i16, sign: u16, dscale: u16) {
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in digits {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

/// `write_numeric` for magnitudes past u128 once scaled (a large value
/// with a negative scale): by way of its decimal digits.
fn write_numeric_wide(out: &mut Vec<u8>, value: i128, scale: i8) {
    let mut digits = value.unsigned_abs().to_string();
    if scale < 0 && value != 0 {
        digits.extend(std::iter::repeat_n('0', scale.unsigned_abs() as usize));
    }
    let scale = scale.max(0) as usize;
    let split = digits.len().saturating_sub(scale);
    let (int_part, frac_part) = (&digits[..split], &digits[split..]);
    let frac_part = format!("{frac_part:0>scale$}");
    let int_padded = format!("{}{int_part}", "0".repeat((4 - int_part.len() % 4) % 4));
    let frac_padded = format!("{frac_part}{}", "0".repeat((4 - frac_part.len() % 4) % 4));
    let mut groups: Vec<i16> = int_padded
        .as_bytes()
        .chunks(4)
        .chain(frac_padded.as_bytes().chunks(4))
        .map(|c| std::str::from_utf8(c).unwrap_or("0").parse().unwrap_or(0))
        .collect();
    let mut weight = (int_padded.len() / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let sign: u16 = if groups.is_empty() || value >= 0 {
        0
    } else {
        0x4000
    };
    if groups.is_empty() {
        weight = 0;
    }
    put_numeric(out, &groups, weight, sign, scale as u16);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(v: i128, s: i8) -> Vec<i16> {
        let mut out = Vec::new();
        write_numeric(&mut out, v, s);
        out.chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numeric_text_has_the_layout_of_the_same_decimal() {
        let cases: &[(&str, i128, i8)] = &[
            ("12.345", 12345, 3),
            ("-0.005", -5, 3),
            ("10000", 10000, 0),
            ("0.00", 0, 2),
            ("184.2292682926829268", 1842292682926829268, 16),
            ("-0.00333333333333333333", -333333333333333333, 20),
            ("100000000.000000000000", 100000000000000000000, 12),
            ("0.0001", 1, 4),
        ];
        for &(text, value, scale) in cases {
            let (mut from_text, mut from_decimal) = (Vec::new(), Vec::new());
            write_numeric_text(&mut from_text, text);
            write_numeric(&mut from_decimal, value, scale);
            assert_eq!(from_text, from_decimal, "{text}");
        }
        for not_a_layout in ["NaN".to_string(), "9".repeat(200_000)] {
            let mut out = Vec::new();
            write_numeric_text(&mut out, &not_a_layout);
            assert_eq!(out, not_a_layout.as_bytes());
        }
    }

    #[test]
    fn numeric_matches_postgres_layout() {
        // 123.45 → ndigits 2, weight 0, +, dscale 2, [123, 4500]
        assert_eq!(numeric(12345, 2), vec![2, 0, 0, 2, 123, 4500]);
        // -0.005 → [50] at weight -1
        assert_eq!(numeric(-5, 3), vec![1, -1, 0x4000, 3, 50]);
        // 10000 → [1] weight 1
        assert_eq!(numeric(10000, 0), vec![1, 1, 0, 0, 1]);
        // 1 with scale -4 is 10000 too.
        assert_eq!(numeric(1, -4), numeric(10000, 0));
        assert_eq!(numeric(0, 2), vec![0, 0, 0, 2]);
        // 0.0001 → [1] at weight -1; 12345678.9 → [1234, 5678, 9000]
        assert_eq!(numeric(1, 4), vec![1, -1, 0, 4, 1]);
        assert_eq!(numeric(123456789, 1), vec![3, 1, 0, 1, 1234, 5678, 9000]);
        // 0.00000001 → [1] at weight -2 (leading zero groups dropped)
        assert_eq!(numeric(1, 8), vec![1, -2, 0, 8, 1]);
    }

    #[test]
    fn integer_arithmetic_agrees_with_the_decimal_string_way() {
        let mut values: Vec<i128> = vec![0, 1, -1, 9999, 10000, -10001, i128::MAX, i128::MIN + 1];
        let mut x: i128 = 7;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            values.push(x >> (x as u8 % 120));
        }
        for v in values {
            for scale in [-3i8, 0, 1, 2, 3, 4, 5, 8, 12, 20, 38] {
                let (mut fast, mut wide) = (Vec::new(), Vec::new());
                write_numeric(&mut fast, v, scale);
                write_numeric_wide(&mut wide, v, scale);
                assert_eq!(fast, wide, "{v} scale {scale}");
            }
        }
    }
}
