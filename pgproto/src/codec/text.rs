//! Arrow values in PostgreSQL's text output format, exactly as PostgreSQL
//! prints them. Columns are downcast once per batch (`ColumnText::new`), then
//! each value is written straight into the output buffer.

use std::fmt::Write as _;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, GenericBinaryArray, ListArray,
    MapArray, PrimitiveArray, StringArray, StructArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    IntervalMonthDayNanoType, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Offset, Timelike};
use chrono_tz::Tz;

/// One column of a batch, ready to print any of its rows.
pub enum ColumnText<'a> {
    Null,
    Bool(&'a BooleanArray),
    I16(&'a PrimitiveArray<Int16Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    F64(&'a PrimitiveArray<Float64Type>),
    Text(&'a StringArray),
    /// Numbers as text, each with its own scale (a declared `numeric`).
    NumericText(&'a StringArray),
    Bytes(&'a GenericBinaryArray<i32>),
    Date(&'a PrimitiveArray<Date32Type>),
    /// With the zone a timestamptz prints in (the session's TimeZone);
    /// `None` for timestamp without time zone.
    Timestamp(&'a PrimitiveArray<TimestampMicrosecondType>, Option<Tz>),
    Time(&'a PrimitiveArray<Time64MicrosecondType>),
    Numeric(&'a Decimal128Array, i8),
    Interval(&'a PrimitiveArray<IntervalMonthDayNanoType>),
    List(&'a ListArray),
    Json(&'a ArrayRef),
    /// Anything else: Arrow's own display.
    Other(&'a ArrayRef),
}

impl<'a> ColumnText<'a> {
    /// The column for `array` as `field` declares it.
    pub fn of(field: &arrow::datatypes::Field, array: &'a ArrayRef) -> Self {
        match (super::pg_type(field).0, array.data_type()) {
            (crate::pg::oid::NUMERIC, DataType::Utf8) => Self::NumericText(array.as_string()),
            _ => Self::new(array),
        }
    }

    pub fn new(array: &'a ArrayRef) -> Self {
        match array.data_type() {
            DataType::Null => Self::Null,
            DataType::Boolean => Self::Bool(array.as_boolean()),
            DataType::Int16 => Self::I16(array.as_primitive()),
            DataType::Int32 => Self::I32(array.as_primitive()),
            DataType::Int64 => Self::I64(array.as_primitive()),
            DataType::Float32 => Self::F32(array.as_primitive()),
            DataType::Float64 => Self::F64(array.as_primitive()),
            DataType::Utf8 => Self::Text(array.as_string()),
            DataType::Binary => Self::Bytes(array.as_binary()),
            DataType::Date32 => Self::Date(array.as_primitive()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Self::Timestamp(array.as_primitive(), tz.as_ref().map(|_| Tz::UTC))
            }
            DataType::Time64(TimeUnit::Microsecond) => Self::Time(array.as_primitive()),
            DataType::Decimal128(_, s) => Self::Numeric(array.as_primitive(), *s),
            DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano) => {
                Self::Interval(array.as_primitive())
            }
            DataType::List(_) => Self::List(array.as_list()),
            DataType::Map(..) | DataType::Struct(_) => Self::Json(array),
            _ => Self::Other(array),
        }
    }

    pub fn is_null(&self, row: usize) -> bool {
        match self {
            Self::Null => true,
            Self::Bool(a) => a.is_null(row),
            Self::I16(a) => a.is_null(row),
            Self::I32(a) => a.is_null(row),
            Self::I64(a) => a.is_null(row),
            Self::F32(a) => a.is_null(row),
            Self::F64(a) => a.is_null(row),
            Self::Text(a) | Self::NumericText(a) => a.is_null(row),
            Self::Bytes(a) => a.is_null(row),
            Self::Date(a) => a.is_null(row),
            Self::Timestamp(a, _) => a.is_null(row),
            Self::Time(a) => a.is_null(row),
            Self::Numeric(a, _) => a.is_null(row),
            Self::Interval(a) => a.is_null(row),
            Self::List(a) => a.is_null(row),
            Self::Json(a) | Self::Other(a) => a.is_null(row),
        }
    }

    /// Appends the text of a non-null value.
    pub fn write(&self, row: usize, out: &mut Vec<u8>) {
        match self {
            Self::Null => {}
            Self::Bool(a) => out.push(if a.value(row) { b't' } else { b'f' }),
            Self::I16(a) => write_int(out, a.value(row) as i64),
            Self::I32(a) => write_int(out, a.value(row) as i64),
            Self::I64(a) => write_int(out, a.value(row)),
            Self::F32(a) => write_float(out, a.value(row) as f64, 6, true),
            Self::F64(a) => write_float(out, a.value(row), 15, false),
            Self::Text(a) | Self::NumericText(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Self::Bytes(a) => write_bytea(out, a.value(row)),
            Self::Date(a) => write_date(out, a.value(row)),
            Self::Timestamp(a, tz) => write_timestamp(out, a.value(row), *tz),
            Self::Time(a) => write_time(out, a.value(row)),
            Self::Numeric(a, scale) => write_decimal(out, a.value(row), *scale),
            Self::Interval(a) => {
                let v = a.value(row);
                write_interval(out, v.months, v.days, v.nanoseconds / 1000)
            }
            Self::List(a) => write_array(out, &a.value(row)),
            Self::Json(a) => {
                let mut s = String::new();
                json_value(a, row, &mut s);
                out.extend_from_slice(s.as_bytes());
            }
            Self::Other(a) => {
                let s = arrow::util::display::array_value_to_string(a, row).unwrap_or_default();
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

fn write_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// PostgreSQL's shortest-round-trip float output (extra_float_digits = 1):
/// fixed notation for decimal exponents in [-4, digits), else scientific
/// with a signed two-digit exponent.
pub fn write_float(out: &mut Vec<u8>, v: f64, max_fixed_exponent: i32, single: bool) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    // Shortest digits that round-trip, via Rust's formatter.
    let sci = if single {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
    let (mantissa, exponent) = sci.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("integer exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if negative {
        out.push(b'-');
    }
    if exponent < -4 || exponent >= max_fixed_exponent {
        out.push(digits.as_bytes()[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits.as_bytes()[1..]);
        }
        let _ = write!(
            VecWriter(out),
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
    } else if exponent < 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-exponent - 1) as usize));
        out.extend_from_slice(digits.as_bytes());
    } else {
        let int_len = exponent as usize + 1;
        if digits.len() <= int_len {
            out.extend_from_slice(digits.as_bytes());
            out.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
        } else {
            out.extend_from_slice(&digits.as_bytes()[..int_len]);
            out.push(b'.');
            out.extend_from_slice(&digits.as_bytes()[int_len..]);
        }
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

pub fn write_decimal(out: &mut Vec<u8>, value: i128, scale: i8) {
    if scale <= 0 {
        // A negative scale multiplies by a power of ten: append the zeros
        // (the product may not fit in an i128).
        let _ = write!(VecWriter(out), "{value}");
        if value != 0 {
            out.extend(std::iter::repeat_n(b'0', scale.unsigned_abs() as usize));
        }
        return;
    }
    let scale = scale as usize;
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(value.unsigned_abs());
    if value < 0 {
        out.push(b'-');
    }
    if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits.as_bytes());
    } else {
        let split = digits.len() - scale;
        out.extend_from_slice(&digits.as_bytes()[..split]);
        out.push(b'.');
        out.extend_from_slice(&digits.as_bytes()[split..]);
    }
}

fn write_bytea(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\x");
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")
}

fn write_ymd(out: &mut Vec<u8>, date: NaiveDate) -> bool {
    let year = date.year();
    let (y, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    if y < 10_000 {
        push_digits(out, y as u32, 4);
    } else {
        write_int(out, y as i64);
    }
    out.push(b'-');
    push_digits(out, date.month(), 2);
    out.push(b'-');
    push_digits(out, date.day(), 2);
    bc
}

/// Dates past what the calendar arithmetic can represent (about ±262,000
/// years; only a misbehaving engine sends them) print as PostgreSQL's
/// infinities.
pub fn write_date(out: &mut Vec<u8>, days: i32) {
    let Some(date) = epoch().checked_add_signed(chrono::Duration::days(days as i64)) else {
        return write_infinity(out, days < 0);
    };
    if write_ymd(out, date) {
        out.extend_from_slice(b" BC");
    }
}

fn write_infinity(out: &mut Vec<u8>, negative: bool) {
    out.extend_from_slice(if negative { b"-infinity" } else { b"infinity" });
}

/// `v` as exactly `width` decimal digits, zero-padded (v < 10^width).
fn push_digits(out: &mut Vec<u8>, mut v: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for d in out[start..].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `HH:MM:SS[.ffffff]`, fraction zeros trimmed; no formatting machinery or
/// allocation since it runs once per timestamp value.
fn write_hms_micros(out: &mut Vec<u8>, h: u32, m: u32, s: u32, micros: u32) {
    if h < 100 {
        push_digits(out, h, 2);
    } else {
        write_int(out, h as i64);
    }
    out.push(b':');
    push_digits(out, m, 2);
    out.push(b':');
    push_digits(out, s, 2);
    if micros > 0 {
        out.push(b'.');
        push_digits(out, micros, 6);
        while out.last() == Some(&b'0') {
            out.pop();
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` with trailing fraction zeros trimmed, and
/// `+00` for timestamptz (rendered in UTC).
/// A timestamp as PostgreSQL prints it; with a zone (timestamptz), in
/// that zone's local time followed by its UTC offset (`+01`, `+05:30`).
pub fn write_timestamp(out: &mut Vec<u8>, micros: i64, zone: Option<Tz>) {
    let Some(utc) = DateTime::from_timestamp_micros(micros) else {
        return write_infinity(out, micros < 0);
    };
    let (dt, offset) = match zone {
        Some(zone) => {
            let local = utc.with_timezone(&zone);
            (
                local.naive_local(),
                Some(local.offset().fix().local_minus_utc()),
            )
        }
        None => (utc.naive_utc(), None),
    };
    let bc = write_ymd(out, dt.date());
    out.push(b' ');
    write_hms_micros(
        out,
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.nanosecond() / 1000,
    );
    if let Some(offset) = offset {
        let sign = if offset < 0 { '-' } else { '+' };
        let offset = offset.unsigned_abs();
        let (h, m, s) = (offset / 3600, offset / 60 % 60, offset % 60);
        let _ = write!(VecWriter(out), "{sign}{h:02}");
        if m != 0 || s != 0 {
            let _ = write!(VecWriter(out), ":{m:02}");
        }
        if s != 0 {
            let _ = write!(VecWriter(out), ":{s:02}");
        }
    }
    if bc {
        out.extend_from_slice(b" BC");
    }
}

fn write_time(out: &mut Vec<u8>, micros: i64) {
    // A time of day is within one day; anything else came from a
    // misbehaving engine and is folded into the day.
    let micros = micros.rem_euclid(86_400_000_000);
    let secs = (micros / 1_000_000) as u32;
    let t = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap_or_default();
    write_hms_micros(
        out,
        t.hour(),
        t.minute(),
        t.second(),
        (micros % 1_000_000) as u32,
    );
}

/// PostgreSQL's default (`postgres`) IntervalStyle.
pub fn write_interval(out: &mut Vec<u8>, months: i32, days: i32, micros: i64) {
    let mut parts: Vec<String> = Vec::new();
    let (years, months) = (months / 12, months % 12);
    let plural =
        |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if years != 0 {
        parts.push(plural(years as i64, "year", "years"));
    }
    if months != 0 {
        parts.push(plural(months as i64, "mon", "mons"));
    }
    if days != 0 {
        parts.push(plural(days as i64, "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let negative = micros < 0;
        let m = micros.unsigned_abs();
        let (h, rest) = (m / 3_600_000_000, m % 3_600_000_000);
        let (min, rest) = (rest / 60_000_000, rest % 60_000_000);
        let (s, us) = (rest / 1_000_000, rest % 1_000_000);
        let mut time = Vec::new();
        if negative {
            time.push(b'-');
        }
        let _ = write!(VecWriter(&mut time), "{h:02}:{min:02}:{s:02}");
        if us > 0 {
            let frac = format!("{us:06}");
            time.push(b'.');
            time.extend_from_slice(frac.trim_end_matches('0').as_bytes());
        }
        parts.push(String::from_utf8(time).expect("ascii"));
    }
    out.extend_from_slice(parts.join(" ").as_bytes());
}

/// `{1,2,NULL,"a b"}` with PostgreSQL's quoting rules.
fn write_array(out: &mut Vec<u8>, values: &ArrayRef) {
    let column = ColumnText::new(values);
    out.push(b'{');
    let mut element = Vec::new();
    for i in 0..values.len() {
        if i > 0 {
            out.push(b',');
        }
        if column.is_null(i) {
            out.extend_from_slice(b"NULL");
            continue;
        }
        element.clear();
        column.write(i, &mut element);
        if matches!(column, ColumnText::List(_)) {
            out.extend_from_slice(&element);
            continue;
        }
        let needs_quotes = element.is_empty()
            || element.eq_ignore_ascii_case(b"null")
            || element.iter().any(|&c| {
                matches!(c, b'{' | b'}' | b',' | b'"' | b'\\') || c.is_ascii_whitespace()
            });
        if needs_quotes {
            out.push(b'"');
            for &c in &element {
                if c == b'"' || c == b'\\' {
                    out.push(b'\\');
                }
                out.push(c);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(&element);
        }
    }
    out.push(b'}');
}

/// jsonb text: objects with `"key": value` pairs separated by `, `, keys in
/// jsonb order (shorter first, then bytewise).
fn json_value(array: &ArrayRef, row: usize, out: &mut String) {
    if array.is_null(row) {
        out.push_str("null");
        return;
    }
    match array.data_type() {
        DataType::Struct(_) => {
            let s: &StructArray = array.as_struct();
            let pairs = s
                .column_names()
                .into_iter()
                .zip(s.columns())
                .map(|(name, col)| {
                    let mut v = String::new();
                    json_value(col, row, &mut v);
                    (name.to_string(), v)
                })
                .collect();
            json_object(pairs, out);
        }
        DataType::Map(..) => {
            let m: &MapArray = array.as_map();
            let entries = m.value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            let pairs = (0..entries.len())
                .map(|i| {
                    let key =
                        arrow::util::display::array_value_to_string(keys, i).unwrap_or_default();
                    let mut v = String::new();
                    json_value(values, i, &mut v);
                    (key, v)
                })
                .collect();
            json_object(pairs, out);
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            out.push('[');
            for i in 0..list.len() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_value(&list, i, out);
            }
            out.push(']');
        }
        DataType::Boolean => out.push_str(if array.as_boolean().value(row) {
            "true"
        } else {
            "false"
        }),
        DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..) => {
            let mut bytes = Vec::new();
            ColumnText::new(array).write(row, &mut bytes);
            let text = String::from_utf8_lossy(&bytes);
            if text.chars().any(|c| c.is_ascii_alphabetic()) {
                // NaN/Infinity are not JSON numbers.
                json_string(&text, out);
            } else {
                out.push_str(&text);
            }
        }
        _ => {
            let mut bytes = Vec::new();
            ColumnText::new(array).write(row, &mut bytes);
            json_string(&String::from_utf8_lossy(&bytes), out);
        }
    }
}

fn json_object(mut pairs: Vec<(String, String)>, out: &mut String) {
    pairs.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
    pairs.dedup_by(|later, earlier| later.0 == earlier.0);
    out.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_string(k, out);
        out.push_str(": ");
        out.push_str(v);
    }
    out.push('}');
}

fn json_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::Value::String(s.to_string()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_calendar_print_as_infinities() {
        let text = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(&|o| write_date(o, i32::MAX)), "infinity");
        assert_eq!(text(&|o| write_date(o, i32::MIN)), "-infinity");
        assert_eq!(text(&|o| write_date(o, 0)), "1970-01-01");
        assert_eq!(text(&|o| write_timestamp(o, i64::MIN, None)), "-infinity");
        assert_eq!(
            text(&|o| write_timestamp(o, i64::MAX, Some(Tz::UTC))),
            "infinity"
        );
        assert_eq!(text(&|o| write_time(o, -1)), "23:59:59.999999");
        // A negative scale multiplies, whatever the size.
        assert_eq!(text(&|o| write_decimal(o, 12, -3)), "12000");
        assert_eq!(text(&|o| write_decimal(o, -7, -1)), "-70");
        assert_eq!(text(&|o| write_decimal(o, 0, -5)), "0");
        let huge = text(&|o| write_decimal(o, i128::MAX, -128));
        assert_eq!(huge.len(), i128::MAX.to_string().len() + 128);
    }

    #[test]
    fn timestamptz_prints_local_time_and_offset() {
        let text = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            String::from_utf8(out).unwrap()
        };
        // 2026-01-01 12:00:00 UTC.
        let noon = 1_767_268_800_000_000;
        let at = |zone: &str| text(&|o| write_timestamp(o, noon, Some(zone.parse().unwrap())));
        assert_eq!(at("UTC"), "2026-01-01 12:00:00+00");
        assert_eq!(at("Europe/Berlin"), "2026-01-01 13:00:00+01");
        assert_eq!(at("Asia/Kolkata"), "2026-01-01 17:30:00+05:30");
        assert_eq!(at("America/St_Johns"), "2026-01-01 08:30:00-03:30");
        // Before 1880 Berlin kept local mean time, +00:53:28.
        let old = -3_155_673_600_000_000; // 1870-01-01 00:00:00 UTC
        assert_eq!(
            text(&|o| write_timestamp(o, old, Some(chrono_tz::Tz::Europe__Berlin))),
            "1870-01-01 00:53:28+00:53:28"
        );
    }

    fn float(v: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, v, 15, false);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(float(1.5), "1.5");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(1e15), "1e+15");
        assert_eq!(float(1e14), "100000000000000");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(0.00001), "1e-05");
        assert_eq!(float(-2.5e-10), "-2.5e-10");
        assert_eq!(float(123456.789), "123456.789");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(float(1.0 / 3.0), "0.3333333333333333");
    }

    #[test]
    fn numerics_keep_their_scale() {
        let s = |v, scale| {
            let mut out = Vec::new();
            write_decimal(&mut out, v, scale);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(s(18945, 2), "189.45");
        assert_eq!(s(-5, 3), "-0.005");
        assert_eq!(s(100, 2), "1.00");
        assert_eq!(s(7, 0), "7");
    }

    #[test]
    fn intervals_print_like_postgres() {
        let s = |m, d, us| {
            let mut out = Vec::new();
            write_interval(&mut out, m, d, us);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(s(14, 3, 3_723_500_000), "1 year 2 mons 3 days 01:02:03.5");
        assert_eq!(s(0, 0, 0), "00:00:00");
        assert_eq!(s(0, 1, 0), "1 day");
        assert_eq!(s(0, 0, -60_000_000), "-00:01:00");
    }

    #[test]
    fn timestamps_trim_fractions() {
        let mut out = Vec::new();
        write_timestamp(&mut out, 1_704_164_645_120_000, None);
        assert_eq!(String::from_utf8(out).unwrap(), "2024-01-02 03:04:05.12");
    }
}
