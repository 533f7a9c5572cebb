//! Session settings: what SET/SHOW/RESET act on, what ParameterStatus
//! reports, and what travels to the engine with every query.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono_tz::Tz;
use velo_proto::v1::{OffsetReset, SessionSettings};

use crate::pg::server_info::{DEFAULTS, REPORTED};
use crate::pg::units::{parse_duration, TimeUnit};

/// Session settings: the shared defaults, then this session's startup
/// values (what RESET returns to), then what it SET. Names compare without
/// case; each entry keeps the canonical name for display. Small vectors,
/// not maps: a session holds a dozen entries, and an idle connection
/// should cost little.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    startup: Vec<Setting>,
    changed: Vec<Setting>,
}

#[derive(Debug, Clone)]
struct Setting {
    /// Canonical: the default's own name when there is one (no copy).
    name: Cow<'static, str>,
    value: Box<str>,
}

/// Settings that belong to the login and survive DISCARD/RESET ALL.
const LOGIN: [&str; 3] = ["application_name", "session_authorization", "is_superuser"];

fn position(list: &[Setting], name: &str) -> Option<usize> {
    list.iter().position(|s| s.name.eq_ignore_ascii_case(name))
}

/// Replaces the entry of the same name, or adds one. Grown one entry at
/// a time: most sessions hold one or two.
fn put(list: &mut Vec<Setting>, setting: Setting) {
    match position(list, &setting.name) {
        Some(i) => list[i] = setting,
        None => {
            list.reserve_exact(1);
            list.push(setting)
        }
    }
}

impl Settings {
    /// Only what differs from the defaults is stored (an empty
    /// application_name and `is_superuser = off` are the defaults).
    pub fn new(user: &str, application_name: &str, superuser: bool) -> Self {
        let mut settings = Self::default();
        if !application_name.is_empty() {
            settings.set_startup("application_name", application_name);
        }
        settings.set_startup("session_authorization", user);
        if superuser {
            settings.set_startup("is_superuser", "on");
        }
        settings
    }

    /// Canonical name and value.
    pub fn entry(&self, name: &str) -> Option<(&str, &str)> {
        for list in [&self.changed, &self.startup] {
            if let Some(i) = position(list, name) {
                return Some((&list[i].name, &list[i].value));
            }
        }
        DEFAULTS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
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
        for s in self.startup.iter().chain(&self.changed) {
            merged.insert(s.name.to_ascii_lowercase(), (&s.name, &s.value));
        }
        merged.into_values()
    }

    /// Sets a value; returns the canonical name if clients must be told.
    pub fn set(&mut self, name: &str, value: &str) -> Option<String> {
        let name: Cow<'static, str> =
            match DEFAULTS.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                Some((k, _)) => Cow::Borrowed(k),
                None => match self.entry(name) {
                    Some((k, _)) => Cow::Owned(k.to_string()),
                    None => Cow::Owned(name.to_ascii_lowercase()),
                },
            };
        let value = match name.as_ref() {
            "TimeZone"
                if value.eq_ignore_ascii_case("local") || value.eq_ignore_ascii_case("default") =>
            {
                "UTC"
            }
            _ => value,
        };
        let report = reported(&name).then(|| name.to_string());
        put(
            &mut self.changed,
            Setting {
                name,
                value: value.into(),
            },
        );
        report
    }

    /// A value from the startup packet: also what RESET returns to.
    pub fn set_startup(&mut self, name: &str, value: &str) {
        self.set(name, value);
        if let Some(i) = position(&self.changed, name) {
            let setting = self.changed.swap_remove(i);
            put(&mut self.startup, setting);
        }
    }

    pub fn reset(&mut self, name: &str) -> Option<String> {
        let i = position(&self.changed, name)?;
        self.changed.swap_remove(i);
        let (canonical, _) = self.entry(name)?;
        reported(canonical).then(|| canonical.to_string())
    }

    pub fn reset_all(&mut self) {
        self.changed
            .retain(|s| LOGIN.iter().any(|l| s.name.eq_ignore_ascii_case(l)));
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
