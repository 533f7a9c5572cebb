//! Statements the gateway answers itself: transactions, SET/SHOW/RESET, pool
//! resets, and trivial SELECTs (`SELECT 1`, `version()`, ...).

use bytes::BytesMut;
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::response::CommandComplete;
use pgwire::messages::PgWireBackendMessage as B;

use super::{settings, warning, Session, TxState};
use crate::encoding::{binary_columns, oid};
use crate::error::GatewayError;
use crate::protocol::connection::Connection;

/// The result of a statement answered locally.
pub enum Local {
    Command(String),
    Rows(LocalRows),
}

/// A small text result: column names and types, rows, command tag.
pub struct LocalRows {
    pub columns: Vec<(String, u32)>,
    pub rows: Vec<Vec<Option<String>>>,
    pub tag: String,
}

impl LocalRows {
    fn new(columns: &[(&str, u32)], rows: Vec<Vec<Option<String>>>, tag: &str) -> Self {
        Self {
            columns: columns.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            rows,
            tag: tag.into(),
        }
    }

    pub fn row_description(&self) -> RowDescription {
        self.row_description_with_formats(&[])
    }

    pub fn row_description_with_formats(&self, formats: &[i16]) -> RowDescription {
        let binary = binary_columns(formats, self.columns.len());
        RowDescription::new(
            self.columns
                .iter()
                .zip(binary)
                .map(|((name, type_id), b)| {
                    let size = match *type_id {
                        oid::INT4 => 4,
                        oid::BOOL => 1,
                        _ => -1,
                    };
                    FieldDescription::new(name.clone(), 0, 0, *type_id, size, -1, b as i16)
                })
                .collect(),
        )
    }

    /// DataRows (text format) and CommandComplete.
    pub fn send(&self, conn: &mut Connection) {
        self.send_with_formats(conn, &[]);
    }

    /// DataRows in the requested formats, and CommandComplete.
    pub fn send_with_formats(&self, conn: &mut Connection, formats: &[i16]) {
        let binary = binary_columns(formats, self.columns.len());
        for row in &self.rows {
            let mut data = BytesMut::new();
            for ((v, (_, type_id)), b) in row.iter().zip(&self.columns).zip(&binary) {
                let encoded: Option<Vec<u8>> = v.as_ref().map(|s| match (*b, *type_id) {
                    (true, oid::INT4) => s.parse::<i32>().unwrap_or(0).to_be_bytes().to_vec(),
                    (true, oid::BOOL) => vec![(s == "t") as u8],
                    _ => s.as_bytes().to_vec(),
                });
                match encoded {
                    Some(bytes) => {
                        data.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        data.extend_from_slice(&bytes);
                    }
                    None => data.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
            conn.send(B::DataRow(DataRow::new(data, row.len() as i16)));
        }
        conn.send(B::CommandComplete(CommandComplete::new(self.tag.clone())));
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        s[1..s.len() - 1].replace("''", "'")
    } else {
        s.strip_prefix('\'').unwrap_or(s).to_string()
    }
}

impl Session {
    pub(super) async fn local(
        &mut self,
        conn: &mut Connection,
        text: &str,
        words: &[String],
    ) -> Result<Option<Local>, GatewayError> {
        let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        let done = |tag: &str| Ok(Some(Local::Command(tag.to_string())));
        match w(0) {
            "begin" | "start" => {
                if self.tx != TxState::Idle {
                    conn.send(warning(
                        "25001",
                        "there is already a transaction in progress",
                    ));
                } else {
                    self.tx = TxState::InBlock;
                }
                done(if w(0) == "begin" {
                    "BEGIN"
                } else {
                    "START TRANSACTION"
                })
            }
            "commit" | "end" => {
                let tag = match self.tx {
                    TxState::Idle => {
                        conn.send(warning("25P01", "there is no transaction in progress"));
                        "COMMIT"
                    }
                    TxState::InBlock => "COMMIT",
                    TxState::Failed => "ROLLBACK",
                };
                self.tx = TxState::Idle;
                self.close_portals_at_end_of_transaction();
                done(tag)
            }
            "rollback" | "abort" => {
                if w(1) == "to" {
                    if self.tx == TxState::Idle {
                        return Err(GatewayError::NoActiveTransaction(
                            "ROLLBACK TO SAVEPOINT can only be used in transaction blocks".into(),
                        ));
                    }
                    self.tx = TxState::InBlock;
                    return done("ROLLBACK");
                }
                if self.tx == TxState::Idle {
                    conn.send(warning("25P01", "there is no transaction in progress"));
                }
                self.tx = TxState::Idle;
                self.close_portals_at_end_of_transaction();
                done("ROLLBACK")
            }
            "savepoint" | "release" => {
                if self.tx == TxState::Idle {
                    return Err(GatewayError::NoActiveTransaction(format!(
                        "{} can only be used in transaction blocks",
                        w(0).to_uppercase()
                    )));
                }
                done(if w(0) == "savepoint" {
                    "SAVEPOINT"
                } else {
                    "RELEASE"
                })
            }
            "set" => self
                .set(conn, words)
                .map(|_| Some(Local::Command("SET".into()))),
            "reset" => {
                if w(1) == "all" {
                    self.settings.reset_all();
                } else if let Some(name) = self.settings.reset(w(1)) {
                    self.parameter_status(conn, &name);
                }
                done("RESET")
            }
            "discard" => {
                self.settings.reset_all();
                self.cursors.clear();
                self.discard_all();
                done(&format!("DISCARD {}", w(1).to_uppercase()))
            }
            "deallocate" => {
                let name = if w(1) == "prepare" { w(2) } else { w(1) };
                self.deallocate(if name.is_empty() { "all" } else { name })?;
                done(if name == "all" {
                    "DEALLOCATE ALL"
                } else {
                    "DEALLOCATE"
                })
            }
            "listen" | "unlisten" => done(&w(0).to_uppercase()),
            "close" => {
                if w(1) == "all" {
                    self.cursors.clear();
                } else if self.cursors.remove(w(1)).is_none() {
                    return Err(GatewayError::UnknownCursor(w(1).to_string()));
                }
                done("CLOSE CURSOR")
            }
            "show" => self.show(words),
            "select" => Ok(self.select(text, words)),
            _ => Ok(None),
        }
    }

    fn set(&mut self, conn: &mut Connection, words: &[String]) -> Result<(), GatewayError> {
        let mut i = 1;
        if matches!(words.get(i).map(String::as_str), Some("session" | "local")) {
            i += 1;
        }
        let rest: Vec<&str> = words[i..].iter().map(String::as_str).collect();
        let (name, value_words): (String, &[&str]) = match rest.as_slice() {
            ["time", "zone", v @ ..] => ("TimeZone".into(), v),
            ["characteristics", ..] | ["transaction", ..] => return Ok(()),
            ["names", v @ ..] => ("client_encoding".into(), v),
            [name, "to" | "=", v @ ..] => (name.to_string(), v),
            _ => {
                return Err(GatewayError::Syntax(
                    "syntax error at or near \"SET\"".into(),
                ))
            }
        };
        let value = value_words
            .iter()
            .filter(|v| **v != ",")
            .map(|v| unquote(v))
            .collect::<Vec<_>>()
            .join(", ");
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
        if value.eq_ignore_ascii_case("default") {
            if let Some(n) = self.settings.reset(&name) {
                self.parameter_status(conn, &n);
            }
        } else if let Some(n) = self.settings.set(&name, &value) {
            self.parameter_status(conn, &n);
        }
        Ok(())
    }

    /// SHOW of a gateway setting (no side effects: Describe may call it).
    pub(super) fn show(&self, words: &[String]) -> Result<Option<Local>, GatewayError> {
        let name = match words.get(1).map(String::as_str) {
            Some("streams" | "tables" | "jobs" | "queries") => return Ok(None),
            Some("all") => {
                let rows: Vec<Vec<Option<String>>> = self
                    .settings
                    .all()
                    .map(|(k, v)| {
                        vec![
                            Some(k.to_string()),
                            Some(v.to_string()),
                            Some(String::new()),
                        ]
                    })
                    .collect();
                return Ok(Some(Local::Rows(LocalRows::new(
                    &[
                        ("name", oid::TEXT),
                        ("setting", oid::TEXT),
                        ("description", oid::TEXT),
                    ],
                    rows,
                    "SHOW",
                ))));
            }
            Some("transaction") if words.get(2).map(String::as_str) == Some("isolation") => {
                "transaction_isolation".to_string()
            }
            Some("time") if words.get(2).map(String::as_str) == Some("zone") => {
                "TimeZone".to_string()
            }
            Some(n) => n.to_string(),
            None => return Err(GatewayError::Syntax("syntax error at end of input".into())),
        };
        let (canonical, value) = self
            .settings
            .entry(&name)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .ok_or_else(|| GatewayError::UnknownSetting(name.clone()))?;
        let column = if name.eq_ignore_ascii_case(&canonical) {
            canonical.to_ascii_lowercase()
        } else {
            name
        };
        let column = if column == "timezone" {
            "TimeZone".into()
        } else if column == "datestyle" {
            "DateStyle".into()
        } else {
            column
        };
        Ok(Some(Local::Rows(LocalRows::new(
            &[(column.as_str(), oid::TEXT)],
            vec![vec![Some(value)]],
            "SHOW",
        ))))
    }

    /// `SELECT <items>` without FROM whose items the gateway knows.
    pub(super) fn select(&self, text: &str, words: &[String]) -> Option<Local> {
        if words.iter().any(|w| w == "from" || w == "where") {
            return None;
        }
        let body = text.trim().trim_end_matches(';');
        let body = body.get(6..)?.trim();
        let mut columns: Vec<(String, u32)> = Vec::new();
        let mut values = Vec::new();
        for item in split_items(body) {
            let (expr, alias) = match item.to_ascii_lowercase().rfind(" as ") {
                Some(at) => (
                    item[..at].trim().to_string(),
                    Some(item[at + 4..].trim().trim_matches('"').to_string()),
                ),
                None => (item.trim().to_string(), None),
            };
            let lower = expr.to_ascii_lowercase().replace(' ', "");
            let (name, type_id, value) = match lower.as_str() {
                "version()" => ("version", oid::TEXT, Some(settings::version_string())),
                "current_database()" => {
                    ("current_database", oid::TEXT, Some(self.database.clone()))
                }
                "current_user" | "session_user" | "user" | "current_user()" => (
                    lower.trim_end_matches("()"),
                    oid::TEXT,
                    Some(self.user.clone()),
                ),
                "current_schema()" | "current_schema" => {
                    ("current_schema", oid::TEXT, Some("public".into()))
                }
                "pg_backend_pid()" => ("pg_backend_pid", oid::INT4, Some(self.pid.to_string())),
                "pg_advisory_unlock_all()" => {
                    ("pg_advisory_unlock_all", oid::TEXT, Some(String::new()))
                }
                "null" => ("?column?", oid::TEXT, None),
                "true" | "false" => ("bool", oid::BOOL, Some(lower[..1].to_string())),
                _ if !lower.is_empty()
                    && lower.len() < 10
                    && lower.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    (
                        "?column?",
                        oid::INT4,
                        Some(lower.trim_start_matches('0').to_string()).map(|s| {
                            if s.is_empty() {
                                "0".into()
                            } else {
                                s
                            }
                        }),
                    )
                }
                _ if lower.len() >= 2
                    && lower.starts_with('\'')
                    && lower.ends_with('\'')
                    && !lower[1..lower.len() - 1].contains('\'') =>
                {
                    (
                        "?column?",
                        oid::TEXT,
                        Some(expr[1..expr.len() - 1].to_string()),
                    )
                }
                _ => return None,
            };
            columns.push((alias.unwrap_or_else(|| name.to_string()), type_id));
            values.push(value);
        }
        if columns.is_empty() {
            return None;
        }
        let cols: Vec<(&str, u32)> = columns.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        Some(Local::Rows(LocalRows::new(&cols, vec![values], "SELECT 1")))
    }
}

/// Splits a select list on top-level commas.
fn split_items(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quote) = (Vec::new(), String::new(), 0, false);
    for c in s.chars() {
        match c {
            '\'' => quote = !quote,
            '(' if !quote => depth += 1,
            ')' if !quote => depth -= 1,
            ',' if !quote && depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}
