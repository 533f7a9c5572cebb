//! ErrorResponse and NoticeResponse, built in one place: every message a
//! client reads about a problem has a severity, a SQLSTATE and a text, and
//! optionally a detail, a hint and a 1-based character position.

use pgwire::messages::response::{ErrorResponse, NoticeResponse};
use pgwire::messages::PgWireBackendMessage;

use super::sqlstate;

/// PostgreSQL's severities, as the `S`/`V` fields spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The connection ends after this message.
    Fatal,
    /// The statement failed.
    Error,
    Warning,
    Notice,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "FATAL",
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
        }
    }
}

/// One error or notice, ready to be sent.
#[derive(Debug, Clone)]
pub struct Response {
    pub severity: Severity,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<u32>,
}

impl Response {
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        Self {
            severity,
            code: code.to_string(),
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
        }
    }

    /// A NOTICE with the successful-completion code.
    pub fn notice(message: impl Into<String>) -> Self {
        Self::new(Severity::Notice, sqlstate::SUCCESSFUL_COMPLETION, message)
    }

    pub fn warning(code: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    fn fields(self) -> Vec<(u8, String)> {
        let severity = self.severity.as_str();
        let mut fields = vec![
            (b'S', severity.to_string()),
            (b'V', severity.to_string()),
            (b'C', self.code),
            (b'M', self.message),
        ];
        fields.extend(self.detail.map(|d| (b'D', d)));
        fields.extend(self.hint.map(|h| (b'H', h)));
        fields.extend(self.position.map(|p| (b'P', p.to_string())));
        fields
    }

    /// ErrorResponse for errors and fatal errors, NoticeResponse otherwise.
    pub fn into_message(self) -> PgWireBackendMessage {
        match self.severity {
            Severity::Fatal | Severity::Error => {
                PgWireBackendMessage::ErrorResponse(ErrorResponse::new(self.fields()))
            }
            Severity::Warning | Severity::Notice => {
                PgWireBackendMessage::NoticeResponse(NoticeResponse::new(self.fields()))
            }
        }
    }
}
