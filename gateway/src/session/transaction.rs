//! Transaction status. The gateway has no transactions of its own (engine
//! queries are read-only streams); it tracks BEGIN/COMMIT/ROLLBACK and
//! savepoints so drivers, cursors and psql's prompt behave as on
//! PostgreSQL, including the failed state (25P02 until ROLLBACK).

use pgwire::messages::response::TransactionStatus;

use super::local::Local;
use super::Session;
use crate::error::GatewayError;
use crate::pg::{sqlstate, Response};
use crate::wire::Connection;

/// Where the session is with respect to a transaction block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    Idle,
    InBlock,
    /// An error happened inside the block.
    Failed,
}

impl TxState {
    /// What ReadyForQuery reports.
    pub fn status(self) -> TransactionStatus {
        match self {
            TxState::Idle => TransactionStatus::Idle,
            TxState::InBlock => TransactionStatus::Transaction,
            TxState::Failed => TransactionStatus::Error,
        }
    }
}

fn no_transaction_warning() -> Response {
    Response::warning(
        sqlstate::NO_ACTIVE_SQL_TRANSACTION,
        "there is no transaction in progress",
    )
}

impl Session {
    pub(super) fn begin(&mut self, conn: &mut Connection, tag: &str) -> Local {
        if self.tx == TxState::Idle {
            self.tx = TxState::InBlock;
        } else {
            conn.send(
                Response::warning(
                    sqlstate::ACTIVE_SQL_TRANSACTION,
                    "there is already a transaction in progress",
                )
                .into_message(),
            );
        }
        Local::Command(tag.into())
    }

    pub(super) fn commit(&mut self, conn: &mut Connection) -> Local {
        let tag = match self.tx {
            TxState::Idle => {
                conn.send(no_transaction_warning().into_message());
                "COMMIT"
            }
            TxState::InBlock => "COMMIT",
            TxState::Failed => "ROLLBACK",
        };
        self.end_transaction();
        Local::Command(tag.into())
    }

    pub(super) fn rollback(&mut self, conn: &mut Connection) -> Local {
        if self.tx == TxState::Idle {
            conn.send(no_transaction_warning().into_message());
        }
        self.end_transaction();
        Local::Command("ROLLBACK".into())
    }

    pub(super) fn rollback_to_savepoint(&mut self) -> Result<Local, GatewayError> {
        if self.tx == TxState::Idle {
            return Err(GatewayError::NoActiveTransaction(
                "ROLLBACK TO SAVEPOINT can only be used in transaction blocks".into(),
            ));
        }
        self.tx = TxState::InBlock;
        Ok(Local::Command("ROLLBACK".into()))
    }

    /// SAVEPOINT and RELEASE: accepted inside a block.
    pub(super) fn savepoint(&mut self, tag: &str) -> Result<Local, GatewayError> {
        if self.tx == TxState::Idle {
            return Err(GatewayError::NoActiveTransaction(format!(
                "{tag} can only be used in transaction blocks"
            )));
        }
        Ok(Local::Command(tag.into()))
    }

    fn end_transaction(&mut self) {
        self.tx = TxState::Idle;
        self.close_portals_at_end_of_transaction();
    }
}
