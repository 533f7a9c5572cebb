//! Statements the gateway answers itself: transactions, SET/SHOW/RESET,
//! pool resets, and trivial SELECTs (`SELECT 1`, `version()`, ...). Rows
//! are built as a `RecordBatch`, so the one encoder writes them in text or
//! binary exactly as it writes engine rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int32Array, StringArray};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use pgwire::messages::data::RowDescription;
use pgwire::messages::response::CommandComplete;
use pgwire::messages::PgWireBackendMessage as B;

use super::Session;
use crate::codec::{binary_columns, row_description_with_formats, RowEncoder};
use crate::error::GatewayError;
use crate::pg::server_info::{version_string, TIMEOUT_SETTINGS};
use crate::pg::units::{parse_duration, TimeUnit};
use crate::sql::{LocalValue, SelectItem, Set, Statement};
use crate::wire::Connection;

/// The result of a statement answered locally.
pub enum Local {
    Command(String),
    Rows(LocalRows),
}

/// A small result: one batch and its command tag.
pub struct LocalRows {
    batch: RecordBatch,
    tag: String,
}

impl LocalRows {
    fn new(columns: Vec<(String, ArrayRef)>, tag: &str) -> Self {
        let columns = columns.into_iter().map(|(n, a)| (n, a, None)).collect();
        Self::typed(columns, tag)
    }

    /// Columns with the PostgreSQL type each declares, where its Arrow
    /// type does not say it (`name`).
    fn typed(columns: Vec<(String, ArrayRef, Option<u32>)>, tag: &str) -> Self {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, array, pg_type)| {
                let field = Field::new(name, array.data_type().clone(), true);
                match pg_type {
                    Some(oid) => field.with_metadata(std::collections::HashMap::from([(
                        crate::codec::PG_TYPE_KEY.to_string(),
                        oid.to_string(),
                    )])),
                    None => field,
                }
            })
            .collect();
        let arrays = columns.into_iter().map(|(_, a, _)| a).collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .expect("columns of equal length");
        Self {
            batch,
            tag: tag.into(),
        }
    }

    /// Text columns, one row per entry.
    fn text(names: &[&str], rows: Vec<Vec<String>>, tag: &str) -> Self {
        let columns = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let values: StringArray = rows.iter().map(|r| Some(r[i].as_str())).collect();
                (name.to_string(), Arc::new(values) as ArrayRef)
            })
            .collect();
        Self::new(columns, tag)
    }

    pub fn row_description(&self, formats: &[i16]) -> RowDescription {
        row_description_with_formats(&self.batch.schema(), formats)
    }

    /// RowDescription (when `describe`), the rows in `formats`, and
    /// CommandComplete.
    pub fn send(&self, conn: &mut Connection, formats: &[i16], describe: bool) {
        if describe {
            conn.send(B::RowDescription(self.row_description(formats)));
        }
        let binary = binary_columns(formats, self.batch.num_columns());
        let mut rows = RowEncoder::with_formats(&self.batch, binary);
        for i in 0..self.batch.num_rows() {
            conn.send(B::DataRow(rows.data_row(i)));
        }
        conn.send(B::CommandComplete(CommandComplete::new(self.tag.clone())));
    }
}

impl Session {
    /// Answers a local statement (`Statement::is_local`).
    pub(super) fn local(
        &mut self,
        conn: &mut Connection,
        statement: &Statement,
    ) -> Result<Local, GatewayError> {
        let done = |tag: &str| Ok(Local::Command(tag.to_string()));
        match statement {
            Statement::Begin { tag } => Ok(self.begin(conn, tag)),
            Statement::Commit => Ok(self.commit(conn)),
            Statement::Rollback => Ok(self.rollback(conn)),
            Statement::RollbackToSavepoint => self.rollback_to_savepoint(),
            Statement::Savepoint { tag } => self.savepoint(tag),
            Statement::Set(set) => {
                self.set(conn, set)?;
                done("SET")
            }
            Statement::Reset(None) => {
                self.settings.reset_all();
                done("RESET")
            }
            Statement::Reset(Some(name)) => {
                if let Some(name) = self.settings.reset(name) {
                    self.parameter_status(conn, &name);
                }
                done("RESET")
            }
            Statement::Discard { tag } => {
                self.settings.reset_all();
                self.cursors.clear();
                self.discard_all();
                done(tag)
            }
            Statement::Deallocate { name, tag } => {
                self.deallocate(name.as_deref())?;
                done(tag)
            }
            Statement::Listen { tag } => done(tag),
            Statement::CloseCursor(None) => {
                self.cursors.clear();
                done("CLOSE CURSOR")
            }
            Statement::CloseCursor(Some(name)) => {
                self.cursors
                    .remove(name)
                    .ok_or_else(|| GatewayError::UnknownCursor(name.clone()))?;
                done("CLOSE CURSOR")
            }
            Statement::ShowAll | Statement::Show(_) | Statement::LocalSelect(_) => {
                self.local_rows(statement).map(Local::Rows)
            }
            Statement::Invalid(e) => Err(e.clone()),
            Statement::Empty
            | Statement::Declare(_)
            | Statement::Fetch(_)
            | Statement::Copy(_)
            | Statement::Query => unreachable!("not a local statement: {statement:?}"),
        }
    }

    /// The rows of SHOW or a local SELECT (no side effects: Describe asks).
    pub(super) fn local_rows(&self, statement: &Statement) -> Result<LocalRows, GatewayError> {
        match statement {
            Statement::ShowAll => Ok(LocalRows::text(
                &["name", "setting", "description"],
                self.settings
                    .all()
                    .map(|(k, v)| vec![k.to_string(), v.to_string(), String::new()])
                    .collect(),
                "SHOW",
            )),
            Statement::Show(name) => self.show(name),
            Statement::LocalSelect(items) => Ok(self.select(items)),
            _ => Err(GatewayError::Unsupported("not a local result".into())),
        }
    }

    fn set(&mut self, conn: &mut Connection, set: &Set) -> Result<(), GatewayError> {
        let (name, value) = match set {
            Set::Value { name, value } => (name, value),
            Set::Ignored => return Ok(()),
            // Metabase and dbt set the role they logged in as.
            Set::Role(role) if *role == self.user => return Ok(()),
            Set::Role(_) => {
                return Err(GatewayError::Unsupported(
                    "SET ROLE and SET SESSION AUTHORIZATION are not supported: a session keeps the user it logged in as".into(),
                ))
            }
        };
        let lower = name.to_ascii_lowercase();
        if lower == "client_encoding"
            && !matches!(
                value.to_ascii_uppercase().as_str(),
                "UTF8" | "UTF-8" | "UNICODE"
            )
        {
            return Err(GatewayError::InvalidValue(format!(
                "client_encoding {value} is not supported: the gateway speaks UTF8 only"
            )));
        }
        if lower == "velostream.offset_reset"
            && !matches!(value.to_ascii_lowercase().as_str(), "latest" | "earliest")
        {
            return Err(GatewayError::InvalidValue(format!(
                "invalid value for parameter \"velostream.offset_reset\": \"{value}\" (latest or earliest)"
            )));
        }
        let is_timeout = TIMEOUT_SETTINGS.contains(&lower.as_str());
        if is_timeout
            && !value.eq_ignore_ascii_case("default")
            && parse_duration(value, TimeUnit::Milliseconds).is_none()
        {
            return Err(GatewayError::InvalidValue(format!(
                "invalid value for parameter \"{name}\": \"{value}\""
            )));
        }
        let changed = if value.eq_ignore_ascii_case("default") {
            self.settings.reset(name)
        } else {
            self.settings.set(name, value)
        };
        if let Some(name) = changed {
            self.parameter_status(conn, &name);
        }
        Ok(())
    }

    /// SHOW of one setting; the column is named as PostgreSQL names it.
    fn show(&self, name: &str) -> Result<LocalRows, GatewayError> {
        let (canonical, value) = self
            .settings
            .entry(name)
            .ok_or_else(|| GatewayError::UnknownSetting(name.to_string()))?;
        let column = if name.eq_ignore_ascii_case(canonical) {
            canonical.to_ascii_lowercase()
        } else {
            name.to_string()
        };
        let column = match column.as_str() {
            "timezone" => "TimeZone",
            "datestyle" => "DateStyle",
            other => other,
        };
        Ok(LocalRows::text(
            &[column],
            vec![vec![value.to_string()]],
            "SHOW",
        ))
    }

    /// One row of values the gateway knows.
    fn select(&self, items: &[SelectItem]) -> LocalRows {
        let text = |v: Option<String>| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let columns = items
            .iter()
            .map(|item| {
                // The database, user and schema are `name`s.
                let pg_type = matches!(
                    item.value,
                    LocalValue::CurrentDatabase | LocalValue::User(_) | LocalValue::CurrentSchema
                )
                .then_some(crate::pg::oid::NAME);
                let (name, array) = match &item.value {
                    LocalValue::Version => ("version", text(Some(version_string()))),
                    LocalValue::CurrentDatabase => {
                        ("current_database", text(Some(self.database.clone())))
                    }
                    LocalValue::User(name) => (*name, text(Some(self.user.clone()))),
                    LocalValue::CurrentSchema => ("current_schema", text(Some("public".into()))),
                    LocalValue::BackendPid => (
                        "pg_backend_pid",
                        Arc::new(Int32Array::from(vec![self.pid])) as ArrayRef,
                    ),
                    LocalValue::AdvisoryUnlockAll => {
                        ("pg_advisory_unlock_all", text(Some(String::new())))
                    }
                    LocalValue::Null => ("?column?", text(None)),
                    LocalValue::Bool(b) => {
                        ("bool", Arc::new(BooleanArray::from(vec![*b])) as ArrayRef)
                    }
                    LocalValue::Int(i) => {
                        ("?column?", Arc::new(Int32Array::from(vec![*i])) as ArrayRef)
                    }
                    LocalValue::Text(s) => ("?column?", text(Some(s.clone()))),
                };
                (
                    item.alias.clone().unwrap_or_else(|| name.to_string()),
                    array,
                    pg_type,
                )
            })
            .collect();
        LocalRows::typed(columns, "SELECT 1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_rows_use_postgres_types() {
        let rows = LocalRows::new(
            vec![
                ("a".into(), Arc::new(Int32Array::from(vec![1])) as ArrayRef),
                (
                    "b".into(),
                    Arc::new(BooleanArray::from(vec![true])) as ArrayRef,
                ),
            ],
            "SELECT 1",
        );
        let description = rows.row_description(&[1]);
        let fields = description.fields;
        assert_eq!(
            (
                fields[0].type_id,
                fields[0].type_size,
                fields[0].format_code
            ),
            (23, 4, 1)
        );
        assert_eq!((fields[1].type_id, fields[1].type_size), (16, 1));
    }
}
