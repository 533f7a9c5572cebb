//! Every error a client can see, typed, with its SQLSTATE and severity
//! decided here and nowhere else.

use velo_proto::v1::QueryError;

use crate::pg::sqlstate as code;
use crate::pg::{Response, Severity};

/// PostgreSQL's message for a statement that ends too soon.
pub const END_OF_INPUT: &str = "syntax error at end of input";

/// What went wrong with a statement or a connection. Each variant maps to
/// one SQLSTATE; `ClientGone` is never sent (there is no one to send it
/// to) and ends the connection quietly.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// An error reported by an engine node, passed through as-is.
    #[error("{}", .0.message)]
    Engine(QueryError),
    #[error("{0}")]
    Syntax(String),
    /// A syntax error at a character (1-based) of the statement.
    #[error("{message}")]
    SyntaxAt { message: String, position: u32 },
    #[error("{0}")]
    Unsupported(String),
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownSetting(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("cursor \"{0}\" does not exist")]
    UnknownCursor(String),
    #[error("cursor \"{0}\" already exists")]
    DuplicateCursor(String),
    #[error("{0}")]
    NoActiveTransaction(String),
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    TransactionAborted,
    #[error("canceling statement due to user request")]
    Cancelled,
    #[error("{0}")]
    EngineUnavailable(String),
    /// Admission control or a per-session bound refused the statement.
    #[error("{0}")]
    TooBusy(String),
    #[error("password authentication failed for user \"{0}\"")]
    AuthFailed(String),
    /// The startup packet lacks what login needs (a user name).
    #[error("{0}")]
    InvalidAuthorization(String),
    /// The client broke the protocol; the connection ends.
    #[error("{0}")]
    Protocol(String),
    #[error("sorry, too many clients already")]
    TooManyConnections,
    #[error("too many connections for role \"{0}\"")]
    TooManyConnectionsForRole(String),
    /// Connection attempts from one address over its rate.
    #[error("too many connection attempts from {0}")]
    ConnectionRateExceeded(String),
    /// Too many failed logins from an address, or for a user: refused
    /// until the lockout ends.
    #[error("too many failed login attempts {who}: try again in {seconds} s")]
    LoginsLocked { who: String, seconds: u64 },
    #[error("canceling authentication due to timeout")]
    AuthenticationTimeout,
    #[error("canceling statement due to statement timeout")]
    StatementTimeout,
    #[error("terminating connection due to idle-in-transaction timeout")]
    IdleInTransactionTimeout,
    #[error("terminating connection due to idle-session timeout")]
    IdleSessionTimeout,
    #[error("the database system is shutting down")]
    ShuttingDown,
    /// The gateway's drain ran out of time with this session still open.
    #[error("terminating connection due to administrator command")]
    AdminShutdown,
    #[error("{0}")]
    InvalidText(String),
    #[error("{0}")]
    InvalidBinary(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("prepared statement \"{0}\" already exists")]
    DuplicateStatement(String),
    #[error("prepared statement \"{0}\" does not exist")]
    UnknownStatement(String),
    #[error("portal \"{0}\" does not exist")]
    UnknownPortal(String),
    /// A catalog statement the catalog session could not plan or run.
    #[error("{0}")]
    Catalog(String),
    #[error("{0}")]
    UndefinedTable(String),
    #[error("{0}")]
    UndefinedFunction(String),
    /// A memory pool refused an allocation.
    #[error("{0}")]
    OutOfMemory(String),
    /// A result or input over a fixed limit.
    #[error("{0}")]
    ProgramLimitExceeded(String),
    /// A scalar subquery answered more than one row.
    #[error("more than one row returned by a subquery used as an expression")]
    CardinalityViolation,
    /// Nesting too deep to parse safely.
    #[error("{0}")]
    StatementTooComplex(String),
    /// A message over `max_message_size`; it was skipped unread.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes (max_message_size)")]
    MessageTooLarge {
        message_type: u8,
        size: usize,
        limit: usize,
    },
    /// The client closed its socket (or writing to it failed).
    #[error("the client closed the connection")]
    ClientGone,
}

impl GatewayError {
    pub fn sqlstate(&self) -> &str {
        match self {
            Self::Engine(e) if !e.sqlstate.is_empty() => &e.sqlstate,
            Self::Engine(_) => code::INTERNAL_ERROR,
            Self::Syntax(_) | Self::SyntaxAt { .. } => code::SYNTAX_ERROR,
            Self::Unsupported(_) | Self::Catalog(_) => code::FEATURE_NOT_SUPPORTED,
            Self::UnknownSetting(_) => code::UNDEFINED_OBJECT,
            Self::InvalidValue(_) => code::INVALID_PARAMETER_VALUE,
            Self::UnknownCursor(_) | Self::UnknownPortal(_) => code::INVALID_CURSOR_NAME,
            Self::DuplicateCursor(_) => code::DUPLICATE_CURSOR,
            Self::NoActiveTransaction(_) => code::NO_ACTIVE_SQL_TRANSACTION,
            Self::TransactionAborted => code::IN_FAILED_SQL_TRANSACTION,
            Self::Cancelled => code::QUERY_CANCELED,
            Self::EngineUnavailable(_) => code::IO_ERROR,
            Self::TooBusy(_)
            | Self::TooManyConnections
            | Self::TooManyConnectionsForRole(_)
            | Self::ConnectionRateExceeded(_) => code::TOO_MANY_CONNECTIONS,
            Self::LoginsLocked { .. } => code::INVALID_AUTHORIZATION_SPECIFICATION,
            Self::AuthenticationTimeout | Self::StatementTimeout => code::QUERY_CANCELED,
            Self::IdleInTransactionTimeout => code::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            Self::IdleSessionTimeout => code::IDLE_SESSION_TIMEOUT,
            Self::AuthFailed(_) => code::INVALID_PASSWORD,
            Self::InvalidAuthorization(_) => code::INVALID_AUTHORIZATION_SPECIFICATION,
            Self::Protocol(_) => code::PROTOCOL_VIOLATION,
            Self::ShuttingDown => code::CANNOT_CONNECT_NOW,
            Self::AdminShutdown => code::ADMIN_SHUTDOWN,
            Self::InvalidText(_) => code::INVALID_TEXT_REPRESENTATION,
            Self::InvalidBinary(_) => code::INVALID_BINARY_REPRESENTATION,
            Self::OutOfRange(_) => code::DATETIME_FIELD_OVERFLOW,
            Self::DuplicateStatement(_) => code::DUPLICATE_PREPARED_STATEMENT,
            Self::UnknownStatement(_) => code::INVALID_SQL_STATEMENT_NAME,
            Self::UndefinedTable(_) => code::UNDEFINED_TABLE,
            Self::UndefinedFunction(_) => code::UNDEFINED_FUNCTION,
            Self::ClientGone => code::CONNECTION_EXCEPTION,
            Self::MessageTooLarge { .. } | Self::ProgramLimitExceeded(_) => {
                code::PROGRAM_LIMIT_EXCEEDED
            }
            Self::StatementTooComplex(_) => code::STATEMENT_TOO_COMPLEX,
            Self::CardinalityViolation => code::CARDINALITY_VIOLATION,
            Self::OutOfMemory(_) => code::OUT_OF_MEMORY,
        }
    }

    /// FATAL for the errors that end a connection before its session
    /// starts; ERROR for the rest.
    pub fn severity(&self) -> Severity {
        match self {
            Self::AuthFailed(_)
            | Self::InvalidAuthorization(_)
            | Self::TooManyConnections
            | Self::TooManyConnectionsForRole(_)
            | Self::ConnectionRateExceeded(_)
            | Self::LoginsLocked { .. }
            | Self::AuthenticationTimeout
            | Self::IdleInTransactionTimeout
            | Self::IdleSessionTimeout
            | Self::ShuttingDown
            | Self::AdminShutdown => Severity::Fatal,
            _ => Severity::Error,
        }
    }

    /// The ErrorResponse for this error.
    pub fn response(&self) -> Response {
        let mut response = Response::new(self.severity(), self.sqlstate(), self.to_string());
        if let Self::Engine(e) = self {
            response.detail = (!e.detail.is_empty()).then(|| e.detail.clone());
            response.hint = (!e.hint.is_empty()).then(|| e.hint.clone());
            response.position = (e.position > 0).then_some(e.position);
        }
        if let Self::SyntaxAt { position, .. } = self {
            response.position = Some(*position);
        }
        response
    }

    /// A syntax error found at the end of a statement that a `;` ends is,
    /// in PostgreSQL's words, at or near that `;`.
    pub fn at_semicolon(self) -> Self {
        match self {
            Self::SyntaxAt { message, position } if message == END_OF_INPUT => Self::SyntaxAt {
                message: "syntax error at or near \";\"".into(),
                position,
            },
            other => other,
        }
    }

    /// Positions count from the statement; clients expect them from the
    /// start of their Query message.
    pub fn shifted(self, offset: u32) -> Self {
        match self {
            Self::Engine(mut q) if q.position > 0 => {
                q.position += offset;
                Self::Engine(q)
            }
            Self::SyntaxAt { message, position } => Self::SyntaxAt {
                message,
                position: position + offset,
            },
            other => other,
        }
    }
}

impl From<std::io::Error> for GatewayError {
    /// Reading from or writing to the client failed: it is gone.
    fn from(_: std::io::Error) -> Self {
        Self::ClientGone
    }
}
