//! Session settings: what SET/SHOW/RESET act on, what ParameterStatus
//! reports, and what travels to the engine with every query.

use std::collections::BTreeMap;

use velo_proto::v1::{OffsetReset, SessionSettings};

pub const SERVER_VERSION: &str = "15.0";
pub const SERVER_VERSION_NUM: &str = "150000";

pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (velo-gateway {}) on x86_64-pc-linux-gnu, streaming SQL gateway for Velostream, 64-bit",
        env!("CARGO_PKG_VERSION")
    )
}

/// Settings reported to clients in ParameterStatus at startup (and when SET).
pub const REPORTED: &[&str] = &[
    "server_version",
    "server_encoding",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "integer_datetimes",
    "standard_conforming_strings",
    "IntervalStyle",
    "application_name",
    "is_superuser",
    "session_authorization",
    "default_transaction_read_only",
    "in_hot_standby",
    "search_path",
];

#[derive(Debug, Clone)]
pub struct Settings {
    /// Keyed by lowercase name; values keep the canonical name for display.
    values: BTreeMap<String, (String, String)>,
    defaults: BTreeMap<String, (String, String)>,
}

impl Settings {
    pub fn new(user: &str, application_name: &str, superuser: bool) -> Self {
        let pairs: Vec<(&str, String)> = vec![
            ("server_version", SERVER_VERSION.into()),
            ("server_version_num", SERVER_VERSION_NUM.into()),
            ("server_encoding", "UTF8".into()),
            ("client_encoding", "UTF8".into()),
            ("DateStyle", "ISO, MDY".into()),
            ("TimeZone", "UTC".into()),
            ("integer_datetimes", "on".into()),
            ("standard_conforming_strings", "on".into()),
            ("IntervalStyle", "postgres".into()),
            ("application_name", application_name.into()),
            ("is_superuser", if superuser { "on" } else { "off" }.into()),
            ("session_authorization", user.into()),
            ("default_transaction_read_only", "off".into()),
            ("in_hot_standby", "off".into()),
            ("search_path", "\"$user\", public".into()),
            ("extra_float_digits", "1".into()),
            ("transaction_isolation", "read committed".into()),
            ("default_transaction_isolation", "read committed".into()),
            ("transaction_read_only", "off".into()),
            ("statement_timeout", "0".into()),
            ("lc_messages", "C".into()),
            ("lc_monetary", "C".into()),
            ("lc_numeric", "C".into()),
            ("lc_time", "C".into()),
            ("max_identifier_length", "63".into()),
            ("velostream.offset_reset", "latest".into()),
        ];
        let values: BTreeMap<_, _> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (k.to_string(), v)))
            .collect();
        Self {
            defaults: values.clone(),
            values,
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(&name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    /// Canonical name and value.
    pub fn entry(&self, name: &str) -> Option<(&str, &str)> {
        self.values
            .get(&name.to_ascii_lowercase())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.values().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets a value; returns the canonical name if clients must be told.
    pub fn set(&mut self, name: &str, value: &str) -> Option<String> {
        let key = name.to_ascii_lowercase();
        let canonical = self
            .values
            .get(&key)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| key.clone());
        let value = match key.as_str() {
            "timezone"
                if value.eq_ignore_ascii_case("local") || value.eq_ignore_ascii_case("default") =>
            {
                "UTC".to_string()
            }
            _ => value.to_string(),
        };
        self.values.insert(key, (canonical.clone(), value));
        REPORTED
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&canonical))
            .then_some(canonical)
    }

    /// A value from the startup packet: also what RESET returns to.
    pub fn set_startup(&mut self, name: &str, value: &str) {
        self.set(name, value);
        let key = name.to_ascii_lowercase();
        if let Some(entry) = self.values.get(&key).cloned() {
            self.defaults.insert(key, entry);
        }
    }

    pub fn reset(&mut self, name: &str) -> Option<String> {
        let key = name.to_ascii_lowercase();
        match self.defaults.get(&key).cloned() {
            Some((k, v)) => {
                self.values.insert(key, (k.clone(), v));
                REPORTED
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(&k))
                    .then_some(k)
            }
            None => {
                self.values.remove(&key);
                None
            }
        }
    }

    pub fn reset_all(&mut self) {
        let keep = ["application_name", "session_authorization", "is_superuser"];
        for (k, v) in self.defaults.clone() {
            if !keep.contains(&k.as_str()) {
                self.values.insert(k, v);
            }
        }
    }

    pub fn to_engine(&self, user: &str, database: &str) -> SessionSettings {
        let offset_reset = match self.get("velostream.offset_reset") {
            Some(v) if v.eq_ignore_ascii_case("earliest") => OffsetReset::Earliest,
            _ => OffsetReset::Latest,
        };
        SessionSettings {
            user: user.into(),
            database: database.into(),
            application_name: self.get("application_name").unwrap_or("").into(),
            time_zone: self.get("TimeZone").unwrap_or("UTC").into(),
            date_style: self.get("DateStyle").unwrap_or("ISO, MDY").into(),
            search_path: vec!["public".into()],
            statement_timeout_ms: parse_timeout_ms(self.get("statement_timeout").unwrap_or("0")),
            offset_reset: offset_reset as i32,
            extra: Default::default(),
        }
    }
}

/// `statement_timeout` values: `5000`, `5s`, `1min`, `250ms`.
fn parse_timeout_ms(v: &str) -> u64 {
    let v = v.trim().trim_matches('\'');
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..split].parse().unwrap_or(0);
    match v[split..].trim() {
        "" | "ms" => n,
        "s" => n * 1000,
        "min" => n * 60_000,
        "h" => n * 3_600_000,
        _ => 0,
    }
}
