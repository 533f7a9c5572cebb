//! Rate limits on logging in: connection attempts per second from one
//! client address, and failed logins from an address or for a user, after
//! which they are refused for a while (fail2ban's rule, inside the gateway).
//!
//! The tables are bounded: entries expire, and when a table is full of
//! live entries a new address or user is not tracked (counted in metrics)
//! rather than evicting one being limited. IPv6 clients are counted per
//! /64, the block one subscriber usually holds.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::GatewayError;
use crate::metrics::METRICS;

/// The limits, from the configuration (0 turns one off).
#[derive(Debug, Clone)]
pub struct ThrottleLimits {
    pub connection_rate_per_address: u32,
    pub auth_failures_per_address: u32,
    pub auth_failures_per_user: u32,
    /// How long failures are counted, and how long a lockout lasts.
    pub lockout: Duration,
}

/// Entries per table at most.
const MAX_ENTRIES: usize = 100_000;

pub struct Throttle {
    limits: ThrottleLimits,
    addresses: Mutex<Table<IpAddr>>,
    users: Mutex<Table<String>>,
}

struct Table<K> {
    entries: HashMap<K, Entry>,
    last_prune: Instant,
}

#[derive(Default)]
struct Entry {
    /// Attempts in the current one-second window.
    second: Option<(Instant, u32)>,
    /// Failures since the first one in the current lockout window.
    failures: Option<(Instant, u32)>,
    locked_until: Option<Instant>,
}

impl Entry {
    fn expired(&self, now: Instant, lockout: Duration) -> bool {
        let old = |t: Option<Instant>, after: Duration| t.is_none_or(|t| now >= t + after);
        old(self.second.map(|s| s.0), Duration::from_secs(1))
            && old(self.failures.map(|f| f.0), lockout)
            && self.locked_until.is_none_or(|t| now >= t)
    }

    /// Seconds left of a lockout, if one is running.
    fn locked(&self, now: Instant) -> Option<u64> {
        let until = self.locked_until.filter(|&t| t > now)?;
        Some(((until - now).as_millis() as u64).div_ceil(1000))
    }
}

impl<K: Hash + Eq> Table<K> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
            last_prune: Instant::now(),
        }
    }

    /// The entry for `key`, or `None` when the table is full of live ones.
    fn entry(&mut self, key: K, now: Instant, lockout: Duration) -> Option<&mut Entry> {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&key) {
            if now.duration_since(self.last_prune) >= Duration::from_secs(1) {
                self.entries.retain(|_, e| !e.expired(now, lockout));
                self.last_prune = now;
            }
            if self.entries.len() >= MAX_ENTRIES {
                METRICS.throttle_untracked.inc();
                return None;
            }
        }
        Some(self.entries.entry(key).or_default())
    }

    fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&Entry>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.entries.get(key)
    }
}

/// The address as it is counted: IPv6 by its /64.
fn counted(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            IpAddr::V4(v6.to_ipv4_mapped().expect("checked"))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl Throttle {
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            addresses: Mutex::new(Table::new()),
            users: Mutex::new(Table::new()),
        }
    }

    /// A connection from `address` arrived: refused when the address is
    /// locked out or over its rate.
    pub fn connection(&self, address: IpAddr) -> Result<(), (&'static str, GatewayError)> {
        let key = counted(address);
        let (rate, lockout) = (self.limits.connection_rate_per_address, self.limits.lockout);
        let now = Instant::now();
        let mut table = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if rate == 0 {
            // Only lockouts to check: look, without adding an entry.
            return match table.get(&key).and_then(|e| e.locked(now)) {
                Some(seconds) => Err(locked(format!("from {key}"), seconds)),
                None => Ok(()),
            };
        }
        let Some(entry) = table.entry(key, now, lockout) else {
            return Ok(());
        };
        if let Some(seconds) = entry.locked(now) {
            return Err(locked(format!("from {key}"), seconds));
        }
        let second = match entry.second {
            Some((start, n)) if now.duration_since(start) < Duration::from_secs(1) => {
                (start, n + 1)
            }
            _ => (now, 1),
        };
        entry.second = Some(second);
        if second.1 > rate {
            return Err((
                "connection_rate",
                GatewayError::ConnectionRateExceeded(key.to_string()),
            ));
        }
        Ok(())
    }

    /// Before authenticating `user`: refused while the user is locked out.
    pub fn login(&self, user: &str) -> Result<(), (&'static str, GatewayError)> {
        if self.limits.auth_failures_per_user == 0 {
            return Ok(());
        }
        let table = self.users.lock().unwrap_or_else(|p| p.into_inner());
        match table.get(user).and_then(|e| e.locked(Instant::now())) {
            Some(seconds) => Err(locked(format!("for user \"{user}\""), seconds)),
            None => Ok(()),
        }
    }

    /// A login failed (wrong password or unknown user).
    pub fn failed(&self, address: IpAddr, user: &str) {
        let (lockout, now) = (self.limits.lockout, Instant::now());
        let limit = self.limits.auth_failures_per_address;
        if limit > 0 {
            let mut table = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = table.entry(counted(address), now, lockout) {
                count_failure(entry, limit, lockout, now);
            }
        }
        let limit = self.limits.auth_failures_per_user;
        if limit > 0 {
            let mut table = self.users.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = table.entry(user.to_string(), now, lockout) {
                count_failure(entry, limit, lockout, now);
            }
        }
    }
}

fn locked(who: String, seconds: u64) -> (&'static str, GatewayError) {
    ("auth_lockout", GatewayError::LoginsLocked { who, seconds })
}

/// One more failure; the `limit`th within `lockout` of the first locks
/// the entry for `lockout`.
fn count_failure(entry: &mut Entry, limit: u32, lockout: Duration, now: Instant) {
    let failures = match entry.failures {
        Some((start, n)) if now.duration_since(start) < lockout => (start, n + 1),
        _ => (now, 1),
    };
    entry.failures = Some(failures);
    if failures.1 >= limit {
        entry.locked_until = Some(now + lockout);
        entry.failures = None;
        METRICS.auth_lockouts.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(rate: u32, per_address: u32, per_user: u32) -> Throttle {
        Throttle::new(ThrottleLimits {
            connection_rate_per_address: rate,
            auth_failures_per_address: per_address,
            auth_failures_per_user: per_user,
            lockout: Duration::from_secs(60),
        })
    }

    #[test]
    fn the_limit_th_failure_locks_the_address_and_only_it() {
        let t = throttle(0, 3, 0);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..2 {
            t.failed(a, "alice");
            assert!(t.connection(a).is_ok());
        }
        t.failed(a, "alice");
        let (reason, e) = t.connection(a).unwrap_err();
        assert_eq!(reason, "auth_lockout");
        assert_eq!(e.sqlstate(), "28000");
        assert!(
            e.to_string().contains("from 10.0.0.1: try again in 60 s"),
            "{e}"
        );
        assert!(t.connection(b).is_ok());
        assert!(t.login("alice").is_ok(), "per-user limit is off");
    }

    #[test]
    fn users_lock_when_their_limit_is_set() {
        let t = throttle(0, 0, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        t.failed(a, "alice");
        assert!(t.login("alice").is_ok());
        t.failed("10.0.0.9".parse().unwrap(), "alice");
        assert!(t.login("alice").is_err());
        assert!(t.login("bob").is_ok());
        assert!(t.connection(a).is_ok(), "per-address limit is off");
    }

    #[test]
    fn attempts_over_the_rate_are_refused_within_the_second() {
        let t = throttle(5, 0, 0);
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..5 {
            assert!(t.connection(a).is_ok());
        }
        let (reason, e) = t.connection(a).unwrap_err();
        assert_eq!((reason, e.sqlstate()), ("connection_rate", "53300"));
        assert!(t.connection("192.0.2.8".parse().unwrap()).is_ok());
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let t = throttle(1, 0, 0);
        assert!(t.connection("2001:db8::1".parse().unwrap()).is_ok());
        assert!(t.connection("2001:db8::ffff:2".parse().unwrap()).is_err());
        assert!(t.connection("2001:db8:0:1::1".parse().unwrap()).is_ok());
        assert!(t.connection("::ffff:192.0.2.1".parse().unwrap()).is_ok());
        assert!(t.connection("192.0.2.1".parse().unwrap()).is_err());
    }

    #[test]
    fn a_full_table_stops_tracking_new_keys_instead_of_growing() {
        let t = throttle(1, 0, 0);
        for i in 0..MAX_ENTRIES as u32 + 10 {
            let address = IpAddr::V4(i.into());
            assert!(t.connection(address).is_ok());
        }
        let table = t.addresses.lock().unwrap();
        assert_eq!(table.entries.len(), MAX_ENTRIES);
    }
}
