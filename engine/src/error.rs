//! Every way a query can fail, as one typed enum, and its one mapping onto the
//! contract's `QueryError` (category + SQLSTATE).

use datafusion::error::DataFusionError;
use velo_proto::v1::{ErrorCategory, QueryError};

/// A query failure. `position` fields are 1-based character offsets into the
/// SQL text the client sent (0 = unknown).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("{message}")]
    Syntax { message: String, position: u32 },
    #[error("relation \"{name}\" does not exist")]
    UnknownRelation { name: String, position: u32 },
    #[error("column \"{name}\" does not exist")]
    UnknownColumn { name: String, position: u32 },
    #[error("{message}")]
    UnknownFunction { message: String, position: u32 },
    #[error("{0}")]
    Type(String),
    #[error("{0}")]
    Execution(String),
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Window(String),
    #[error("{0}")]
    Resource(String),
    #[error("canceling statement due to user request")]
    Cancelled,
    #[error("canceling statement due to statement timeout")]
    StatementTimeout,
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Data(String),
    #[error("relation \"{0}\" already exists")]
    Duplicate(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// Category and SQLSTATE: the single place they are decided.
    pub fn classify(&self) -> (ErrorCategory, &'static str) {
        use ErrorCategory as C;
        match self {
            Self::Syntax { .. } => (C::Parse, "42601"),
            Self::UnknownRelation { .. } => (C::UnknownObject, "42P01"),
            Self::UnknownColumn { .. } => (C::UnknownObject, "42703"),
            Self::UnknownFunction { .. } => (C::UnknownObject, "42883"),
            Self::Type(_) => (C::Type, "42804"),
            Self::Execution(_) => (C::Execution, "XX000"),
            Self::Source(_) => (C::Io, "58030"),
            Self::Window(_) => (C::Window, "22023"),
            Self::Resource(_) => (C::Resource, "53000"),
            Self::Cancelled | Self::StatementTimeout => (C::Cancelled, "57014"),
            Self::Unsupported(_) => (C::Unsupported, "0A000"),
            Self::Data(_) => (C::Data, "22000"),
            Self::Duplicate(_) => (C::Duplicate, "42P07"),
        }
    }

    fn position(&self) -> u32 {
        match self {
            Self::Syntax { position, .. }
            | Self::UnknownRelation { position, .. }
            | Self::UnknownColumn { position, .. }
            | Self::UnknownFunction { position, .. } => *position,
            _ => 0,
        }
    }

    /// Re-bases a position through `map` (rewritten offset → original offset).
    pub fn map_position(mut self, map: impl Fn(u32) -> u32) -> Self {
        if let Self::Syntax { position, .. }
        | Self::UnknownRelation { position, .. }
        | Self::UnknownColumn { position, .. }
        | Self::UnknownFunction { position, .. } = &mut self
        {
            if *position > 0 {
                *position = map(*position);
            }
        }
        self
    }

    pub fn to_proto(&self) -> QueryError {
        let (category, sqlstate) = self.classify();
        let hint = match self {
            Self::UnknownRelation { .. } => "SHOW STREAMS and SHOW TABLES list what exists.",
            Self::Window(_) => "EMIT FINAL needs a WINDOW TUMBLING(...) or SLIDING(...) clause.",
            _ => "",
        };
        QueryError {
            category: category as i32,
            sqlstate: sqlstate.into(),
            message: self.to_string(),
            detail: String::new(),
            hint: hint.into(),
            position: self.position(),
        }
    }

    /// Classifies a DataFusion error. Positions are filled in later by the
    /// caller, who knows the SQL text (`locate`).
    pub fn from_datafusion(err: DataFusionError, sql: &str) -> Self {
        let err = strip_context(err);
        match err {
            DataFusionError::SQL(parser_err, _) => {
                let message = parser_err.to_string();
                let position = line_column_position(&message, sql);
                Self::Syntax {
                    message: clean_parser_message(&message),
                    position,
                }
            }
            DataFusionError::Plan(ref m) if m.contains("not found") && m.contains("table") => {
                let name = quoted_parts(m).into_iter().next().unwrap_or_default();
                let name = name.rsplit('.').next().unwrap_or(&name).to_string();
                let position = locate(sql, &name);
                Self::UnknownRelation { name, position }
            }
            DataFusionError::SchemaError(ref e, _) => {
                let m = e.to_string();
                if let Some(name) = m
                    .split("No field named ")
                    .nth(1)
                    .map(|rest| rest.split(['.', ' ']).next().unwrap_or(""))
                {
                    let name = name.trim_matches('"').to_string();
                    let position = locate(sql, &name);
                    return Self::UnknownColumn { name, position };
                }
                Self::Execution(m)
            }
            DataFusionError::Plan(m) => {
                if m.contains("DDL not supported")
                    || m.contains("DML not supported")
                    || m.contains("Statement not supported")
                {
                    Self::Unsupported(
                        "only queries, SHOW, DESCRIBE and views are supported by this engine"
                            .into(),
                    )
                } else if m.contains("Invalid function")
                    || m.contains("function") && m.contains("not")
                {
                    let name = quoted_parts(&m).into_iter().next().unwrap_or_default();
                    Self::UnknownFunction {
                        message: format!("function {name} does not exist"),
                        position: locate(sql, &name),
                    }
                } else if m.contains("Cannot") && (m.contains("coerce") || m.contains("type"))
                    || m.contains("No function matches")
                    || m.contains("does not support")
                    || m.contains("Failed to coerce")
                {
                    Self::Type(first_line(&m))
                } else {
                    Self::Execution(first_line(&m))
                }
            }
            DataFusionError::NotImplemented(m) => Self::Unsupported(first_line(&m)),
            DataFusionError::ArrowError(e, _) => {
                let m = e.to_string();
                if m.contains("Cast error") || m.contains("Parser error") {
                    Self::Data(m)
                } else if m.contains("Divide by zero") {
                    Self::Data("division by zero".into())
                } else {
                    Self::Execution(m)
                }
            }
            DataFusionError::External(e) => match e.downcast::<EngineError>() {
                Ok(inner) => *inner,
                Err(e) => Self::Source(e.to_string()),
            },
            DataFusionError::IoError(e) => Self::Source(e.to_string()),
            DataFusionError::ResourcesExhausted(m) => Self::Resource(m),
            other => Self::Execution(first_line(&other.to_string())),
        }
    }
}

fn strip_context(err: DataFusionError) -> DataFusionError {
    match err {
        DataFusionError::Context(_, inner) => strip_context(*inner),
        DataFusionError::Diagnostic(_, inner) => strip_context(*inner),
        DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
            Ok(inner) => strip_context(inner),
            Err(shared) => DataFusionError::Execution(shared.to_string()),
        },
        other => other,
    }
}

fn first_line(m: &str) -> String {
    m.lines().next().unwrap_or(m).trim().to_string()
}

fn quoted_parts(m: &str) -> Vec<String> {
    m.split(['\'', '"'])
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// sqlparser reports "… at Line: 1, Column: 15"; turn that into a 1-based
/// character offset into `sql`.
fn line_column_position(message: &str, sql: &str) -> u32 {
    let number_after = |key: &str| -> Option<usize> {
        let rest = message.split(key).nth(1)?;
        rest.trim()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let (Some(line), Some(column)) = (number_after("Line:"), number_after("Column:")) else {
        return 0;
    };
    let mut offset = 0;
    for (i, text) in sql.split('\n').enumerate() {
        if i + 1 == line {
            return (offset + column.min(text.chars().count() + 1)) as u32;
        }
        offset += text.chars().count() + 1;
    }
    0
}

fn clean_parser_message(message: &str) -> String {
    let m = message
        .trim_start_matches("sql parser error: ")
        .trim_start_matches("SQL error: ");
    let m = m.split(" at Line:").next().unwrap_or(m);
    format!("syntax error: {m}")
}

/// 1-based character offset of the first word-boundary, case-insensitive
/// occurrence of `needle` in `sql` (0 when absent).
pub fn locate(sql: &str, needle: &str) -> u32 {
    if needle.is_empty() {
        return 0;
    }
    let hay = sql.to_lowercase();
    let needle = needle.to_lowercase();
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut from = 0;
    while let Some(found) = hay[from..].find(&needle) {
        let start = from + found;
        let end = start + needle.len();
        if !is_word(hay[..start].chars().last()) && !is_word(hay[end..].chars().next()) {
            return hay[..start].chars().count() as u32 + 1;
        }
        from = start + needle.len().max(1);
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_whole_words_only() {
        assert_eq!(locate("SELECT tradesx, trades FROM trades", "trades"), 17);
        assert_eq!(locate("select 1", "nope"), 0);
    }

    #[test]
    fn line_and_column_become_offsets() {
        let sql = "SELECT 1\nFROM FROM";
        assert_eq!(line_column_position("x at Line: 2, Column: 6", sql), 15);
    }
}
