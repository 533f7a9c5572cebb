//! Bounds on the queries sessions hold open (running statements, suspended
//! portals, cursors, WITH HOLD ones included): per session and per user,
//! so one client cannot take every engine slot. Past a bound: 53300.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::GatewayError;

/// The bounds and the per-user counts, shared by all sessions.
pub struct Quotas {
    max_per_session: usize,
    /// 0: no per-user bound.
    max_per_user: usize,
    per_user: UserCounts,
}

/// How many of something each user holds; a user at zero has no entry,
/// so the map is as large as the users holding something.
#[derive(Default)]
pub struct UserCounts(Mutex<HashMap<String, usize>>);

impl UserCounts {
    /// Counts one more for `user`, unless it holds `limit` already (0: no
    /// limit).
    pub fn try_add(&self, user: &str, limit: usize) -> bool {
        let mut counts = self.0.lock().expect("per-user counts");
        match counts.get_mut(user) {
            Some(n) if limit > 0 && *n >= limit => false,
            Some(n) => {
                *n += 1;
                true
            }
            None => {
                counts.insert(user.to_string(), 1);
                true
            }
        }
    }

    /// Counts one less for `user` (after a successful `try_add`).
    pub fn remove(&self, user: &str) {
        let mut counts = self.0.lock().expect("per-user counts");
        if let Some(n) = counts.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(user);
            }
        }
    }
}

/// One open query, counted for its session and its user until dropped.
pub struct QueryPermit {
    quotas: Arc<Quotas>,
    user: String,
    session: Arc<AtomicUsize>,
}

impl Drop for QueryPermit {
    fn drop(&mut self) {
        self.session.fetch_sub(1, Ordering::Relaxed);
        self.quotas.per_user.remove(&self.user);
    }
}

impl Quotas {
    pub fn new(max_per_session: usize, max_per_user: usize) -> Self {
        Self {
            max_per_session,
            max_per_user,
            per_user: UserCounts::default(),
        }
    }

    /// A permit for one more query of `user`'s session (whose open
    /// queries `session` counts), or 53300.
    pub fn acquire(
        self: &Arc<Self>,
        user: &str,
        session: &Arc<AtomicUsize>,
    ) -> Result<QueryPermit, GatewayError> {
        if session.load(Ordering::Relaxed) >= self.max_per_session {
            return Err(GatewayError::TooBusy(format!(
                "too many open queries in this session (limit {}): close cursors or portals first",
                self.max_per_session
            )));
        }
        if !self.per_user.try_add(user, self.max_per_user) {
            return Err(GatewayError::TooBusy(format!(
                "too many open queries for role \"{user}\" (limit {})",
                self.max_per_user
            )));
        }
        session.fetch_add(1, Ordering::Relaxed);
        Ok(QueryPermit {
            quotas: self.clone(),
            user: user.to_string(),
            session: session.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_per_session_and_user() {
        let quotas = Arc::new(Quotas::new(2, 3));
        let (a, b) = (Arc::default(), Arc::default());
        let p1 = quotas.acquire("u", &a).unwrap();
        let _p2 = quotas.acquire("u", &a).unwrap();
        assert!(quotas.acquire("u", &a).is_err(), "session bound");
        let _p3 = quotas.acquire("u", &b).unwrap();
        assert!(quotas.acquire("u", &b).is_err(), "user bound");
        assert!(quotas.acquire("v", &b).is_ok(), "other users unaffected");
        drop(p1);
        assert!(
            quotas.acquire("u", &b).is_ok(),
            "a dropped permit frees its place"
        );
    }
}
