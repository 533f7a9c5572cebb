//! Bind parameters → the engine's typed values. Parameters travel as typed
//! values, never spliced into SQL. Every decoder checks lengths and ranges
//! before it allocates: a malformed value is a 22P02/22P03 error, never a
//! panic or an allocation the client sized.

use bytes::Bytes;
use velo_proto::v1::{typed_value::Value, LogicalType, TypedValue};

use crate::error::GatewayError;
use crate::pg::oid::{self, PG_EPOCH_DAYS, PG_EPOCH_MICROS};

/// The PostgreSQL type an engine's logical parameter type is described as.
pub fn logical_oid(t: i32) -> u32 {
    match LogicalType::try_from(t).unwrap_or(LogicalType::Unspecified) {
        LogicalType::Boolean => oid::BOOL,
        LogicalType::Int16 => oid::INT2,
        LogicalType::Int32 => oid::INT4,
        LogicalType::Int64 => oid::INT8,
        LogicalType::Float32 => oid::FLOAT4,
        LogicalType::Float64 => oid::FLOAT8,
        LogicalType::Binary => oid::BYTEA,
        LogicalType::Date => oid::DATE,
        LogicalType::Timestamp => oid::TIMESTAMP,
        LogicalType::Timestamptz => oid::TIMESTAMPTZ,
        LogicalType::Decimal | LogicalType::ScaledInteger => oid::NUMERIC,
        LogicalType::Interval => oid::INTERVAL,
        LogicalType::Json => oid::JSONB,
        LogicalType::Time => oid::TIME,
        _ => oid::TEXT,
    }
}

fn invalid(kind: &str, text: &str) -> GatewayError {
    GatewayError::InvalidText(format!("invalid input syntax for type {kind}: \"{text}\""))
}

fn bad_binary(type_oid: u32) -> GatewayError {
    GatewayError::InvalidBinary(format!(
        "incorrect binary data format in bind parameter of type oid {type_oid}"
    ))
}

/// One bound parameter (`None`: SQL NULL) of type `type_oid`, in text or
/// binary format, as the engine's typed value.
pub fn decode_parameter(
    type_oid: u32,
    binary: bool,
    value: Option<&Bytes>,
) -> Result<TypedValue, GatewayError> {
    let value = match value {
        None => Value::Null(true),
        Some(bytes) if binary => from_binary(type_oid, bytes)?,
        Some(bytes) => from_text(type_oid, bytes)?,
    };
    Ok(TypedValue { value: Some(value) })
}

fn from_binary(type_oid: u32, bytes: &[u8]) -> Result<Value, GatewayError> {
    fn fixed<const N: usize>(type_oid: u32, bytes: &[u8]) -> Result<[u8; N], GatewayError> {
        bytes.try_into().map_err(|_| bad_binary(type_oid))
    }
    let out_of_range = |kind: &str| GatewayError::OutOfRange(format!("{kind} out of range"));
    Ok(match type_oid {
        oid::BOOL => Value::Boolean(fixed::<1>(type_oid, bytes)?[0] != 0),
        oid::INT2 => Value::Int64(i16::from_be_bytes(fixed(type_oid, bytes)?) as i64),
        oid::INT4 => Value::Int64(i32::from_be_bytes(fixed(type_oid, bytes)?) as i64),
        oid::INT8 => Value::Int64(i64::from_be_bytes(fixed(type_oid, bytes)?)),
        oid::FLOAT4 => Value::Float64(f32::from_be_bytes(fixed(type_oid, bytes)?) as f64),
        oid::FLOAT8 => Value::Float64(f64::from_be_bytes(fixed(type_oid, bytes)?)),
        oid::BYTEA => Value::Binary(bytes.to_vec()),
        oid::DATE => Value::DateDays(
            i32::from_be_bytes(fixed(type_oid, bytes)?)
                .checked_add(PG_EPOCH_DAYS)
                .ok_or_else(|| out_of_range("date"))?,
        ),
        oid::TIMESTAMP | oid::TIMESTAMPTZ => Value::TimestampMicros(
            i64::from_be_bytes(fixed(type_oid, bytes)?)
                .checked_add(PG_EPOCH_MICROS)
                .ok_or_else(|| out_of_range("timestamp"))?,
        ),
        oid::NUMERIC => Value::Decimal(numeric_from_binary(bytes)?),
        oid::TEXT | oid::VARCHAR | oid::NAME | oid::UNSPECIFIED | oid::UNKNOWN => Value::Text(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| GatewayError::InvalidText("invalid UTF-8 in parameter".into()))?,
        ),
        other => {
            return Err(GatewayError::Unsupported(format!(
                "binary parameters of type oid {other} are not supported; send them as text"
            )))
        }
    })
}

fn from_text(type_oid: u32, bytes: &[u8]) -> Result<Value, GatewayError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| GatewayError::InvalidText("invalid UTF-8 in parameter".into()))?;
    Ok(match type_oid {
        oid::BOOL => Value::Boolean(match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "on" | "yes" | "y" => true,
            "f" | "false" | "0" | "off" | "no" | "n" => false,
            _ => return Err(invalid("boolean", text)),
        }),
        oid::INT2 | oid::INT4 | oid::INT8 => {
            Value::Int64(text.trim().parse().map_err(|_| invalid("bigint", text))?)
        }
        oid::FLOAT4 | oid::FLOAT8 => Value::Float64(match text.trim() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            t => t.parse().map_err(|_| invalid("double precision", text))?,
        }),
        oid::NUMERIC => {
            let t = text.trim();
            let digits = t.strip_prefix('-').unwrap_or(t);
            let ok = !digits.is_empty()
                && digits.split('.').count() <= 2
                && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
            if !ok {
                return Err(invalid("numeric", text));
            }
            Value::Decimal(t.to_string())
        }
        oid::DATE => {
            let d = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .map_err(|_| invalid("date", text))?;
            Value::DateDays((d - chrono::NaiveDate::default()).num_days() as i32)
        }
        oid::TIMESTAMP | oid::TIMESTAMPTZ => Value::TimestampMicros(parse_timestamp(text)?),
        oid::BYTEA => Value::Binary(bytea_hex(text).ok_or_else(|| invalid("bytea", text))?),
        _ => Value::Text(text.to_string()),
    })
}

/// `\x0102...` (bytea's hex format) → bytes.
fn bytea_hex(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let nibble = |c: u8| (c as char).to_digit(16);
            Some((nibble(pair[0])? * 16 + nibble(pair[1])?) as u8)
        })
        .collect()
}

fn parse_timestamp(text: &str) -> Result<i64, GatewayError> {
    let t = text.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(&t.replace(' ', "T")) {
        return Ok(dt.timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(dt) = chrono::DateTime::parse_from_str(t, format) {
            return Ok(dt.timestamp_micros());
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
    ] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, format) {
            return Ok(dt.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_micros());
    }
    Err(invalid("timestamp", text))
}

/// The most base-10000 digits a binary numeric may carry (PostgreSQL's
/// bound: NUMERIC_MAX_PRECISION + NUMERIC_MAX_RESULT_SCALE).
const NUMERIC_MAX_DIGITS: usize = 3000;
/// The largest display scale PostgreSQL's binary numeric allows.
const NUMERIC_MAX_DSCALE: usize = 0x3FFF;
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;

/// PostgreSQL's binary numeric (ndigits, weight, sign, dscale, then
/// base-10000 digits) → decimal text. Checked as numeric_recv checks it,
/// so a hostile header cannot make the text grow without bound.
fn numeric_from_binary(b: &[u8]) -> Result<String, GatewayError> {
    let bad = |what: &str| {
        GatewayError::InvalidBinary(format!("invalid {what} in external \"numeric\" value"))
    };
    if b.len() < 8 {
        return Err(bad("length"));
    }
    let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let (ndigits, weight, sign, dscale) = (
        word(0) as usize,
        word(2) as i16 as i32,
        word(4),
        word(6) as usize,
    );
    if ndigits > NUMERIC_MAX_DIGITS || b.len() != 8 + 2 * ndigits {
        return Err(bad("length"));
    }
    if sign == NUMERIC_NAN {
        return Err(GatewayError::InvalidText(
            "NaN is not a valid numeric parameter here".into(),
        ));
    }
    if sign != NUMERIC_POS && sign != NUMERIC_NEG {
        return Err(bad("sign"));
    }
    if dscale > NUMERIC_MAX_DSCALE {
        return Err(bad("scale"));
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect();
    if digits.iter().any(|&d| d > 9999) {
        return Err(bad("digit"));
    }
    let digit = |k: i32| -> u16 {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == NUMERIC_NEG {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        text.push_str(&digit(0).to_string());
        for k in 1..=weight {
            text.push_str(&format!("{:04}", digit(k)));
        }
    }
    if dscale > 0 {
        text.push('.');
        let mut frac = String::with_capacity(dscale + 4);
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale);
        text.push_str(&frac);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    #[test]
    fn binary_numeric_parameters_decode() {
        let mut out = Vec::new();
        super::super::binary::write_numeric(&mut out, -12345, 3);
        assert_eq!(numeric_from_binary(&out).unwrap(), "-12.345");
        out.clear();
        super::super::binary::write_numeric(&mut out, 1_000_000, 2);
        assert_eq!(numeric_from_binary(&out).unwrap(), "10000.00");
        out.clear();
        super::super::binary::write_numeric(&mut out, 5, 4);
        assert_eq!(numeric_from_binary(&out).unwrap(), "0.0005");
    }

    #[test]
    fn hostile_binary_numerics_are_22p03() {
        // A negative display scale once looped until memory ran out.
        for b in [
            numeric(1, 0, 0, 0xFFFF, &[1]),
            numeric(1, 0, 0x1234, 0, &[1]),
            numeric(1, 0, 0, 0, &[10_000]),
            numeric(0xFFFF, 0, 0, 0, &[]),
            numeric(2, 0, 0, 0, &[1]),
        ] {
            let e = numeric_from_binary(&b).unwrap_err();
            assert_eq!(e.sqlstate(), "22P03", "{e}");
        }
        assert_eq!(
            numeric_from_binary(&numeric(1, -3, 0, 0, &[5])).unwrap(),
            "0"
        );
    }

    #[test]
    fn text_parameters_follow_their_types() {
        let b = Bytes::from_static(b"42");
        assert_eq!(
            decode_parameter(oid::INT4, false, Some(&b)).unwrap().value,
            Some(Value::Int64(42))
        );
        let b = Bytes::from_static(b"2024-01-02 03:04:05.5");
        assert_eq!(
            decode_parameter(oid::TIMESTAMP, false, Some(&b))
                .unwrap()
                .value,
            Some(Value::TimestampMicros(1_704_164_645_500_000))
        );
        assert!(decode_parameter(oid::INT8, false, Some(&Bytes::from_static(b"x"))).is_err());
        assert_eq!(
            decode_parameter(oid::TEXT, false, None).unwrap().value,
            Some(Value::Null(true))
        );
        // Multi-byte characters in hex once split a char and panicked.
        let b = Bytes::from("\\x1é".as_bytes().to_vec());
        assert_eq!(
            decode_parameter(oid::BYTEA, false, Some(&b))
                .unwrap_err()
                .sqlstate(),
            "22P02"
        );
    }

    #[test]
    fn binary_lengths_and_ranges_are_checked() {
        let e = decode_parameter(oid::INT4, true, Some(&Bytes::from_static(&[0, 1]))).unwrap_err();
        assert_eq!(e.sqlstate(), "22P03");
        let e = decode_parameter(
            oid::DATE,
            true,
            Some(&Bytes::from(i32::MAX.to_be_bytes().to_vec())),
        )
        .unwrap_err();
        assert_eq!(e.sqlstate(), "22008");
    }

    #[test]
    fn hostile_parameters_are_sql_errors_never_panics() {
        let mut numeric = Vec::new();
        super::super::binary::write_numeric(&mut numeric, -1234567, 3);
        let seeds: &[&[u8]] = &[
            &numeric,
            b"2024-01-02 03:04:05.5+02",
            b"\\x0102ff",
            b"-12.345",
            b"true",
            &[0, 0, 0, 0, 0, 0, 0, 1],
        ];
        let oids = [
            oid::BOOL,
            oid::INT2,
            oid::INT4,
            oid::INT8,
            oid::FLOAT4,
            oid::FLOAT8,
            oid::BYTEA,
            oid::DATE,
            oid::TIMESTAMP,
            oid::TIMESTAMPTZ,
            oid::NUMERIC,
            oid::TEXT,
            oid::JSONB,
        ];
        for (i, input) in crate::mutate::mutations(seeds, 20_000)
            .into_iter()
            .enumerate()
        {
            let bytes = Bytes::from(input);
            let type_oid = oids[i % oids.len()];
            for binary in [false, true] {
                if let Err(e) = decode_parameter(type_oid, binary, Some(&bytes)) {
                    assert!(
                        ["22P02", "22P03", "22008", "0A000"].contains(&e.sqlstate()),
                        "{type_oid} {binary}: {e:?}"
                    );
                }
            }
        }
    }
}
