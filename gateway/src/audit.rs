//! The audit log: one JSON object per line for every connection attempt,
//! every disconnection and, when configured, every statement, written
//! apart from the operational log (to a file or stdout) for auditors.
//! It never holds a password, a SCRAM message or a parameter value; the
//! SQL text only when `audit_statements = "text"`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::metrics::METRICS;

/// What is recorded per statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementDetail {
    None,
    /// Who, where it ran, how long, how many rows, the SQLSTATE.
    Summary,
    /// The summary and the statement's text.
    Text,
}

impl StatementDetail {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "summary" => Some(Self::Summary),
            "text" => Some(Self::Text),
            _ => None,
        }
    }
}

/// Where audit lines go; shared by every connection.
pub struct AuditLog {
    destination: String,
    out: Mutex<Box<dyn Write + Send>>,
    pub statements: StatementDetail,
}

pub type Audit = Option<Arc<AuditLog>>;

impl AuditLog {
    /// `destination`: "stdout", or a file appended to (created 0600).
    pub fn open(destination: &str, statements: StatementDetail) -> anyhow::Result<Self> {
        Ok(Self {
            destination: destination.to_string(),
            out: Mutex::new(open(destination)?),
            statements,
        })
    }

    /// Opens the file again (after a log rotation renamed it; SIGHUP).
    pub fn reopen(&self) -> anyhow::Result<()> {
        let out = open(&self.destination)?;
        *self.out.lock().unwrap_or_else(|p| p.into_inner()) = out;
        Ok(())
    }

    /// One line, written whole (a single write call, so lines from many
    /// connections never interleave).
    fn write(&self, event: &'static str, body: &impl Serialize) {
        #[derive(Serialize)]
        struct Line<'a, T> {
            time: String,
            event: &'static str,
            #[serde(flatten)]
            body: &'a T,
        }
        let line = Line {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            event,
            body,
        };
        let mut bytes = match serde_json::to_vec(&line) {
            Ok(bytes) => bytes,
            Err(e) => return tracing::error!("audit event: {e}"),
        };
        bytes.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.write_all(&bytes).and_then(|()| out.flush()) {
            METRICS.audit_write_errors.inc();
            tracing::error!("writing the audit log: {e}");
        }
    }

    pub fn connection(&self, attempt: &ConnectionAttempt) {
        self.write("connection", attempt);
    }

    /// A session's end.
    pub fn disconnection(&self, attempt: &ConnectionAttempt, duration: Duration) {
        #[derive(Serialize)]
        struct Body<'a> {
            client: SocketAddr,
            user: Option<&'a str>,
            pid: Option<i32>,
            session_seconds: f64,
        }
        self.write(
            "disconnection",
            &Body {
                client: attempt.client,
                user: attempt.user.as_deref(),
                pid: attempt.pid,
                session_seconds: duration.as_secs_f64(),
            },
        );
    }

    pub fn statement(&self, statement: &StatementEvent) {
        self.write("statement", statement);
    }
}

fn open(destination: &str) -> anyhow::Result<Box<dyn Write + Send>> {
    if destination == "stdout" {
        return Ok(Box::new(std::io::stdout()));
    }
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(Path::new(destination))
        .map_err(|e| anyhow::anyhow!("audit_log {destination}: {e}"))?;
    Ok(Box::new(file))
}

/// A connection attempt, filled in as the handshake goes (see `frontend`).
#[derive(Debug, Serialize)]
pub struct ConnectionAttempt {
    pub client: SocketAddr,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application_name: Option<String>,
    /// "TLSv1_3 / TLS13_AES_256_GCM_SHA384"-style, when TLS.
    pub tls: Option<String>,
    pub auth_method: Option<&'static str>,
    /// "success", "failure" (with `sqlstate`), or "abandoned" (the client
    /// left before logging in, or sent a cancel request).
    pub outcome: &'static str,
    pub sqlstate: Option<String>,
    /// The pid clients see, once logged in.
    pub pid: Option<i32>,
}

impl ConnectionAttempt {
    pub fn new(client: SocketAddr) -> Self {
        Self {
            client,
            user: None,
            database: None,
            application_name: None,
            tls: None,
            auth_method: None,
            outcome: "abandoned",
            sqlstate: None,
            pid: None,
        }
    }

    pub fn failed(&mut self, sqlstate: &str) {
        self.outcome = "failure";
        self.sqlstate = Some(sqlstate.to_string());
    }
}

/// One statement, as the session saw it end.
#[derive(Debug, Serialize)]
pub struct StatementEvent<'a> {
    pub user: &'a str,
    pub pid: i32,
    /// local, catalog or engine.
    pub route: &'static str,
    pub query_id: Option<&'a str>,
    /// The engine node that ran it.
    pub node: Option<&'a str>,
    pub rows: u64,
    pub duration_ms: f64,
    pub sqlstate: &'a str,
    /// Only with `audit_statements = "text"`; parameters never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<&'a str>,
}
