//! Session settings: what SET/SHOW/RESET act on, what ParameterStatus
//! reports, and what travels to the engine with every query.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono_tz::Tz;
use velo_proto::v1::{OffsetReset, SessionSettings};

use crate::pg::server_info::{DEFAULTS, REPORTED};
use crate::pg::units::{parse_duration, TimeUnit};

/// Session settings: the shared defaults, then this session's startup
/// values (what RESET returns to), then what it SET. Keys are lowercase;
/// entries keep the canonical name for display.
#[derive(Debug, Clone)]
pub struct Settings {
    startup: BTreeMap<String, (String, String)>,
    changed: BTreeMap<String, (String, String)>,
}

/// Settings that belong to the login and survive DISCARD/RESET ALL.
const LOGIN: [&str; 3] = ["application_name", "session_authorization", "is_superuser"];

impl Settings {
    pub fn new(user: &str, application_name: &str, superuser: bool) -> Self {
        let mut settings = Self {
            startup: BTreeMap::new(),
            changed: BTreeMap::new(),
        };
        settings.set_startup("application_name", application_name);
        settings.set_startup("session_authorization", user);
        settings.set_startup("is_superuser", if superuser { "on" } else { "off" });
        settings
    }

    /// Canonical name and value.
    pub fn entry(&self, name: &str) -> Option<(&str, &str)> {
        let key = name.to_ascii_lowercase();
        if let Some((k, v)) = self.changed.get(&key).or_else(|| self.startup.get(&key)) {
            return Some((k.as_str(), v.as_str()));
        }
        DEFAULTS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
            .map(|(k, v)| (*k, *v))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entry(name).map(|(_, v)| v)
    }

    /// Every setting, ordered by lowercase name.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut merged: BTreeMap<String, (&str, &str)> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (*k, *v)))
            .collect();
        for (key, (k, v)) in self.startup.iter().chain(&self.changed) {
            merged.insert(key.clone(), (k.as_str(), v.as_str()));
        }
        merged.into_values()
    }

    /// Sets a value; returns the canonical name if clients must be told.
    pub fn set(&mut self, name: &str, value: &str) -> Option<String> {
        let key = name.to_ascii_lowercase();
        let canonical = self
            .entry(&key)
            .map(|(k, _)| k.to_string())
            .unwrap_or_else(|| key.clone());
        let value = match key.as_str() {
            "timezone"
                if value.eq_ignore_ascii_case("local") || value.eq_ignore_ascii_case("default") =>
            {
                "UTC".to_string()
            }
            _ => value.to_string(),
        };
        self.changed.insert(key, (canonical.clone(), value));
        reported(&canonical).then_some(canonical)
    }

    /// A value from the startup packet: also what RESET returns to.
    pub fn set_startup(&mut self, name: &str, value: &str) {
        self.set(name, value);
        let key = name.to_ascii_lowercase();
        if let Some(entry) = self.changed.remove(&key) {
            self.startup.insert(key, entry);
        }
    }

    pub fn reset(&mut self, name: &str) -> Option<String> {
        let key = name.to_ascii_lowercase();
        self.changed.remove(&key)?;
        let (canonical, _) = self.entry(&key)?;
        reported(canonical).then(|| canonical.to_string())
    }

    pub fn reset_all(&mut self) {
        self.changed.retain(|k, _| LOGIN.contains(&k.as_str()));
    }

    /// The zone timestamptz values are printed in: TimeZone, as an IANA
    /// name in any case (`UTC`, `Europe/Berlin`); UTC for what is not one.
    pub fn output_zone(&self) -> Tz {
        let Some(name) = self.get("TimeZone") else {
            return Tz::UTC;
        };
        name.parse()
            .ok()
            .or_else(|| {
                chrono_tz::TZ_VARIANTS
                    .iter()
                    .find(|z| z.name().eq_ignore_ascii_case(name))
                    .copied()
            })
            .unwrap_or(Tz::UTC)
    }

    /// A timeout setting; `None` when it is 0 (off) or not a duration.
    pub fn timeout(&self, name: &str) -> Option<Duration> {
        parse_duration(self.get(name)?, TimeUnit::Milliseconds).filter(|d| !d.is_zero())
    }

    /// What the engine needs of the session with every query.
    pub fn to_engine(&self, user: &str, database: &str, admin: bool) -> SessionSettings {
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
            statement_timeout_ms: self
                .timeout("statement_timeout")
                .map_or(0, |d| d.as_millis() as u64),
            offset_reset: offset_reset as i32,
            extra: Default::default(),
            admin,
        }
    }
}

fn reported(name: &str) -> bool {
    REPORTED.iter().any(|r| r.eq_ignore_ascii_case(name))
}
