//! Setting values with units, read as PostgreSQL reads them
//! (`statement_timeout = '5s'`, `authentication_timeout = 60`).

use std::time::Duration;

/// The unit a bare number means for a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Milliseconds,
    Seconds,
}

/// `5000`, `5s`, `250ms`, `1min`, `2h`, `1d` (quotes and spaces allowed);
/// `None` for anything else. Zero means "no timeout" to the caller.
pub fn parse_duration(value: &str, bare: TimeUnit) -> Option<Duration> {
    let v = value.trim().trim_matches('\'').trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..split].parse().ok()?;
    let ms = match v[split..].trim() {
        "" => match bare {
            TimeUnit::Milliseconds => n,
            TimeUnit::Seconds => n.checked_mul(1000)?,
        },
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_as_postgres_reads_them() {
        let ms = |v| parse_duration(v, TimeUnit::Milliseconds).map(|d| d.as_millis());
        assert_eq!(ms("5000"), Some(5000));
        assert_eq!(ms("'5s'"), Some(5000));
        assert_eq!(ms("1min"), Some(60_000));
        assert_eq!(ms("250 ms"), Some(250));
        assert_eq!(ms("5 parsecs"), None);
        assert_eq!(ms("-1"), None);
        let s = parse_duration("60", TimeUnit::Seconds).unwrap();
        assert_eq!(s, Duration::from_secs(60));
    }
}
