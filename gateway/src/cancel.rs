//! Cancel keys: every connection registers a random key; a CancelRequest
//! carrying a registered key (from any connection) cancels whatever that
//! connection is running. Wrong keys do nothing, as in PostgreSQL.
//!
//! Behind a load balancer a CancelRequest may reach another gateway
//! replica. Replicas do not know each other; instead each session's
//! engine queries carry a session id derived from its cancel key, so the
//! replica that receives a key it does not hold can ask every engine node
//! to cancel that session's queries (`CancelSession`). The id is a one-way
//! hash of the key: seeing it does not reveal the key, and a guessed key
//! is no more useful than before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pgwire::messages::startup::SecretKey;
use ring::digest;
use tokio_util::sync::CancellationToken;

/// The cancellation point of one connection's current statement. The
/// token is made by the first statement: an idle connection that never
/// ran one holds none.
#[derive(Default)]
pub struct CancelSlot {
    token: Mutex<Option<CancellationToken>>,
}

impl CancelSlot {
    /// A fresh token for the statement about to run.
    pub fn begin_statement(&self) -> CancellationToken {
        let mut token = self.token.lock().expect("cancel slot");
        match token.as_ref() {
            Some(t) if !t.is_cancelled() => t.clone(),
            _ => token.insert(CancellationToken::new()).clone(),
        }
    }

    fn cancel(&self) {
        if let Some(t) = self.token.lock().expect("cancel slot").as_ref() {
            t.cancel();
        }
    }
}

#[derive(Default)]
/// Every live connection's cancel key, shared by all connections so a
/// CancelRequest on a new socket finds the session it names.
pub struct CancelRegistry {
    by_pid: Mutex<HashMap<i32, (i32, Arc<CancelSlot>)>>,
}

/// The engine-side id of the session holding cancel key (`pid`, `secret`).
pub fn session_id(pid: i32, secret: i32) -> String {
    let mut input = b"velo-gateway session".to_vec();
    input.extend_from_slice(&pid.to_be_bytes());
    input.extend_from_slice(&secret.to_be_bytes());
    let hash = digest::digest(&digest::SHA256, &input);
    hash.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Removes the registration when the connection ends.
pub struct Registration {
    registry: Arc<CancelRegistry>,
    pub pid: i32,
    pub secret: i32,
    pub slot: Arc<CancelSlot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry
            .by_pid
            .lock()
            .expect("registry")
            .remove(&self.pid);
    }
}

impl CancelRegistry {
    pub fn register(self: &Arc<Self>) -> Registration {
        let slot = Arc::new(CancelSlot::default());
        let mut map = self.by_pid.lock().expect("registry");
        let pid = loop {
            let pid = rand::random::<i32>() & 0x3fff_ffff;
            if pid != 0 && !map.contains_key(&pid) {
                break pid;
            }
        };
        let secret = rand::random::<i32>();
        map.insert(pid, (secret, slot.clone()));
        Registration {
            registry: self.clone(),
            pid,
            secret,
            slot,
        }
    }

    /// Returns whether a statement was signalled.
    pub fn cancel(&self, pid: i32, key: &SecretKey) -> bool {
        let slot = {
            let map = self.by_pid.lock().expect("registry");
            match map.get(&pid) {
                Some((secret, slot)) if key.eq_value(&SecretKey::I32(*secret)) => slot.clone(),
                _ => return false,
            }
        };
        slot.cancel();
        true
    }
}
