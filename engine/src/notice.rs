//! Notices: what a running query tells its client without ending it, as
//! PostgreSQL's NoticeResponse does; for example that a snapshot is missing
//! events retention deleted before they were read. The query's scans push
//! them into the query's [`QueryNotices`]; the service sends each as a
//! `Notice` event.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use velo_proto::v1;

/// How much a notice matters, as PostgreSQL grades it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The result is not what the client may assume (e.g. incomplete).
    Warning,
    /// For information.
    Notice,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "WARNING",
            Self::Notice => "NOTICE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub severity: Severity,
    /// Five-character SQLSTATE.
    pub sqlstate: &'static str,
    /// Short, lower case, no trailing period.
    pub message: String,
    pub detail: String,
}

/// SQLSTATE 01000: warning.
const WARNING: &str = "01000";

impl Notice {
    /// A snapshot of `topic` skipped events that retention deleted before it
    /// read them; `deleted` counts them by partition (each count above zero).
    pub fn retention_deleted(topic: &str, deleted: &[(i32, u64)]) -> Self {
        let total: u64 = deleted.iter().map(|(_, n)| n).sum();
        let partitions = deleted
            .iter()
            .map(|(p, n)| format!("partition {p}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            severity: Severity::Warning,
            sqlstate: WARNING,
            message: format!(
                "snapshot of kafka://{topic} skipped {total} events that retention deleted before they were read"
            ),
            detail: format!(
                "Events deleted by partition: {partitions}. The snapshot went on from the new start of the log and stopped where it set out to."
            ),
        }
    }

    pub fn to_proto(&self) -> v1::Notice {
        v1::Notice {
            severity: self.severity.as_str().into(),
            sqlstate: self.sqlstate.into(),
            message: self.message.clone(),
            detail: self.detail.clone(),
        }
    }
}

/// The notices of one query not yet sent to its client. Clones share them:
/// the query's scans push, the service takes.
#[derive(Debug, Clone, Default)]
pub struct QueryNotices(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Vec<Notice>>,
    arrived: Notify,
}

impl QueryNotices {
    pub fn push(&self, notice: Notice) {
        self.0.pending.lock().expect("notices lock").push(notice);
        self.0.arrived.notify_one();
    }

    /// The notices pushed since the last call, oldest first.
    pub fn take(&self) -> Vec<Notice> {
        std::mem::take(&mut *self.0.pending.lock().expect("notices lock"))
    }

    /// Resolves once a notice has been pushed since this last resolved (the
    /// notice may have been taken meanwhile: `take` may then find none).
    pub async fn arrived(&self) {
        self.0.arrived.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_notice_names_the_topic_and_the_total() {
        let n = Notice::retention_deleted("trades", &[(0, 1000), (3, 234)]);
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!(
            n.message,
            "snapshot of kafka://trades skipped 1234 events that retention deleted before they were read"
        );
        assert!(n.detail.contains("partition 0: 1000, partition 3: 234"));
        let p = n.to_proto();
        assert_eq!(
            (p.severity.as_str(), p.sqlstate.as_str()),
            ("WARNING", "01000")
        );
    }

    #[tokio::test]
    async fn pushed_notices_wake_the_reader_and_are_taken_once() {
        let notices = QueryNotices::default();
        let pusher = notices.clone();
        let reader = tokio::spawn(async move {
            notices.arrived().await;
            notices.take()
        });
        pusher.push(Notice::retention_deleted("t", &[(0, 1)]));
        let taken = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(taken.len(), 1);
        assert!(pusher.take().is_empty());
    }
}
