//! Cancel keys: every connection registers a random key; a CancelRequest
//! carrying a registered key (from any connection) cancels whatever that
//! connection is running. Wrong keys do nothing, as in PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;

/// The cancellation point of one connection's current statement.
#[derive(Default)]
pub struct CancelSlot {
    token: Mutex<CancellationToken>,
}

impl CancelSlot {
    /// A fresh token for the statement about to run.
    pub fn begin_statement(&self) -> CancellationToken {
        let mut token = self.token.lock().expect("cancel slot");
        if token.is_cancelled() {
            *token = CancellationToken::new();
        }
        token.clone()
    }

    fn cancel(&self) {
        self.token.lock().expect("cancel slot").cancel();
    }
}

#[derive(Default)]
/// Every live connection's cancel key, shared by all connections so a
/// CancelRequest on a new socket finds the session it names.
pub struct CancelRegistry {
    by_pid: Mutex<HashMap<i32, (i32, Arc<CancelSlot>)>>,
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
