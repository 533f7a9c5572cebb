//! Framing on one client socket: frontend messages in (decoded by `pgwire`),
//! backend messages buffered out and flushed when we decide — after every
//! engine batch for streaming results.

use std::io;

use bytes::BytesMut;
use pgwire::messages::{DecodeContext, PgWireBackendMessage, PgWireFrontendMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::GatewayError;

/// Flush early when this much output is buffered.
const FLUSH_AT: usize = 256 * 1024;

pub struct Connection {
    socket: TcpStream,
    read: BytesMut,
    write: BytesMut,
    pub decode: DecodeContext,
    eof: bool,
}

impl Connection {
    pub fn new(socket: TcpStream) -> Self {
        let _ = socket.set_nodelay(true);
        Self {
            socket,
            read: BytesMut::with_capacity(8 * 1024),
            write: BytesMut::with_capacity(64 * 1024),
            decode: DecodeContext::default(),
            eof: false,
        }
    }

    /// The next message, or `None` when the client has gone.
    pub async fn read_message(&mut self) -> Result<Option<PgWireFrontendMessage>, GatewayError> {
        loop {
            match PgWireFrontendMessage::decode(&mut self.read, &self.decode) {
                Ok(Some(msg)) => return Ok(Some(msg)),
                Ok(None) => {}
                Err(e) => {
                    return Err(GatewayError::Protocol(format!(
                        "invalid frontend message: {e}"
                    )))
                }
            }
            if self.eof {
                return Ok(None);
            }
            match self.socket.read_buf(&mut self.read).await {
                Ok(0) | Err(_) => {
                    self.eof = true;
                    if self.read.is_empty() {
                        return Ok(None);
                    }
                }
                Ok(_) => {}
            }
        }
    }

    /// Resolves only when the client closes its socket; anything it sends
    /// meanwhile is kept for later.
    pub async fn closed(&mut self) {
        loop {
            if self.eof {
                return;
            }
            match self.socket.read_buf(&mut self.read).await {
                Ok(0) | Err(_) => {
                    self.eof = true;
                    return;
                }
                Ok(_) => {}
            }
        }
    }

    pub fn send(&mut self, msg: PgWireBackendMessage) {
        if let Err(e) = msg.encode(&mut self.write) {
            tracing::error!("encoding {msg:?}: {e}");
        }
    }

    /// Raw bytes (the one-byte SSL/GSSENC refusal).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.write.extend_from_slice(bytes);
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.write.is_empty() {
            self.socket.write_all(&self.write).await?;
            self.write.clear();
        }
        self.socket.flush().await
    }

    /// Flushes only when a lot is buffered (mid-result).
    pub async fn maybe_flush(&mut self) -> io::Result<()> {
        if self.write.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    pub fn peer_is_loopback(&self) -> bool {
        self.socket
            .peer_addr()
            .map(|a| a.ip().is_loopback())
            .unwrap_or(false)
    }
}
