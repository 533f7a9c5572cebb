//! Every error a client can see, typed, with its SQLSTATE decided here.

use velo_proto::v1::QueryError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// An error reported by an engine node, passed through as-is.
    #[error("{}", .0.message)]
    Engine(QueryError),
    #[error("{0}")]
    Syntax(String),
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
    #[error("{0}")]
    TooBusy(String),
    #[error("password authentication failed for user \"{0}\"")]
    AuthFailed(String),
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    TooManyConnections(String),
    #[error("{0}")]
    InvalidText(String),
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
}

impl GatewayError {
    pub fn sqlstate(&self) -> &str {
        match self {
            Self::Engine(e) if !e.sqlstate.is_empty() => &e.sqlstate,
            Self::Engine(_) => "XX000",
            Self::Syntax(_) => "42601",
            Self::Unsupported(_) => "0A000",
            Self::UnknownSetting(_) => "42704",
            Self::InvalidValue(_) => "22023",
            Self::UnknownCursor(_) => "34000",
            Self::DuplicateCursor(_) => "42P03",
            Self::NoActiveTransaction(_) => "25P01",
            Self::TransactionAborted => "25P02",
            Self::Cancelled => "57014",
            Self::EngineUnavailable(_) => "58030",
            Self::TooBusy(_) => "53300",
            Self::AuthFailed(_) => "28P01",
            Self::Protocol(_) => "08P01",
            Self::TooManyConnections(_) => "53300",
            Self::InvalidText(_) => "22P02",
            Self::DuplicateStatement(_) => "42P05",
            Self::UnknownStatement(_) => "26000",
            Self::UnknownPortal(_) => "34000",
            Self::Catalog(_) => "0A000",
            Self::UndefinedTable(_) => "42P01",
            Self::UndefinedFunction(_) => "42883",
        }
    }

    /// The ErrorResponse/NoticeResponse fields for this error.
    pub fn fields(&self) -> Vec<(u8, String)> {
        let mut fields = vec![
            (b'S', "ERROR".to_string()),
            (b'V', "ERROR".to_string()),
            (b'C', self.sqlstate().to_string()),
            (b'M', self.to_string()),
        ];
        if let Self::Engine(e) = self {
            if !e.detail.is_empty() {
                fields.push((b'D', e.detail.clone()));
            }
            if !e.hint.is_empty() {
                fields.push((b'H', e.hint.clone()));
            }
            if e.position > 0 {
                fields.push((b'P', e.position.to_string()));
            }
        }
        if let Self::AuthFailed(_) = self {
            fields[0].1 = "FATAL".into();
            fields[1].1 = "FATAL".into();
        }
        fields
    }
}
