//! Framing on one client socket: frontend messages in (decoded by `pgwire`),
//! backend messages buffered out and flushed when we decide — after every
//! engine batch for streaming results.

use std::io;

use bytes::{Buf, BytesMut};
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

use crate::error::GatewayError;
use crate::metrics::METRICS;

type Socket = Either<TcpStream, Box<TlsStream<TcpStream>>>;

use super::frame::{frame, Frame, PRE_LOGIN_LIMIT};

/// Flush early when this much output is buffered.
const FLUSH_AT: usize = 256 * 1024;
/// Input read ahead while a statement runs, at most.
const READ_AHEAD: usize = 64 * 1024;
/// A message up to this many times the limit is skipped (54000) and the
/// connection goes on; a larger claim is taken as an attack and ends it.
const SKIPPABLE_OVER_LIMIT: usize = 64;
/// A read buffer larger than this is given back after its message.
const READ_BUFFER_KEEP: usize = 64 * 1024;

/// One client socket: messages in, buffered replies out. Replies leave on
/// `flush`, which the session calls when a client needs what it has so far
/// (after every engine batch while streaming).
pub struct Connection {
    /// `None` only while the TLS handshake owns the socket.
    socket: Option<Socket>,
    read: BytesMut,
    write: BytesMut,
    decode: DecodeContext,
    /// Regular messages may be this large (after login).
    max_message: usize,
    logged_in: bool,
    /// Bytes of an oversized message still to discard, and its error.
    skip: usize,
    skipped: Option<GatewayError>,
    eof: bool,
    /// Rows queued since the last flush (counted into metrics there, not
    /// per row).
    rows_pending: u64,
}

impl Connection {
    pub fn new(socket: TcpStream) -> Self {
        let _ = socket.set_nodelay(true);
        Self {
            socket: Some(Either::Left(socket)),
            // Small to start: idle connections should cost little; they grow
            // with what a client actually sends and receives.
            read: BytesMut::with_capacity(1024),
            write: BytesMut::with_capacity(1024),
            decode: DecodeContext::default(),
            max_message: PRE_LOGIN_LIMIT,
            logged_in: false,
            skip: 0,
            skipped: None,
            eof: false,
            rows_pending: 0,
        }
    }

    /// The SSL negotiation is over (refused, done, or never asked):
    /// what follows is a StartupMessage.
    pub fn ssl_negotiated(&mut self) {
        self.decode.awaiting_frontend_ssl = false;
    }

    /// The StartupMessage arrived: regular messages follow.
    pub fn startup_done(&mut self) {
        self.decode.awaiting_frontend_startup = false;
    }

    /// Login succeeded: messages up to `max_message_size` are accepted.
    pub fn logged_in(&mut self, max_message_size: usize) {
        self.logged_in = true;
        self.max_message = max_message_size;
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.socket, Some(Either::Right(_)))
    }

    fn socket(&mut self) -> &mut Socket {
        self.socket
            .as_mut()
            .expect("socket present outside the TLS handshake")
    }

    /// Answers an SSLRequest with 'S' and runs the TLS handshake. Bytes the
    /// client sent before the handshake would be unencrypted data spliced
    /// into the session, so they are refused.
    pub async fn start_tls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> Result<(), GatewayError> {
        if !self.read.is_empty() {
            return Err(GatewayError::Protocol(
                "received unencrypted data after SSL request".into(),
            ));
        }
        self.send_raw(b"S");
        self.flush()
            .await
            .map_err(|e| GatewayError::Protocol(e.to_string()))?;
        let Some(Either::Left(tcp)) = self.socket.take() else {
            return Err(GatewayError::Protocol("TLS requested twice".into()));
        };
        match acceptor.accept(tcp).await {
            Ok(tls) => {
                self.socket = Some(Either::Right(Box::new(tls)));
                Ok(())
            }
            Err(e) => {
                self.eof = true;
                Err(GatewayError::Protocol(format!("TLS handshake failed: {e}")))
            }
        }
    }

    /// The next message, or `None` when the client has gone. Each message
    /// is decoded from exactly the bytes its header declares; a message
    /// over the limit is skipped unread and answered with 54000 (after
    /// login) or ends the connection (before it).
    pub async fn read_message(&mut self) -> Result<Option<PgWireFrontendMessage>, GatewayError> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.read.len());
                self.read.advance(n);
                self.skip -= n;
                if self.skip == 0 {
                    if let Some(e) = self.skipped.take() {
                        return Err(e);
                    }
                }
            } else if let Some(msg) = self.next_frame()? {
                return Ok(Some(msg));
            }
            if self.eof {
                return Ok(None);
            }
            let Some(socket) = self.socket.as_mut() else {
                return Ok(None);
            };
            match socket.read_buf(&mut self.read).await {
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

    /// Decodes the message at the front of the buffer when it is complete.
    fn next_frame(&mut self) -> Result<Option<PgWireFrontendMessage>, GatewayError> {
        let startup = self.decode.awaiting_frontend_ssl || self.decode.awaiting_frontend_startup;
        let limit = if self.logged_in {
            self.max_message
        } else {
            PRE_LOGIN_LIMIT
        };
        let size = match frame(&self.read, startup, limit) {
            Frame::Header => return Ok(None),
            Frame::Message { size } if self.read.len() < size => {
                self.read.reserve(size - self.read.len());
                return Ok(None);
            }
            Frame::Message { size } => size,
            Frame::TooLarge { message_type, size }
                if self.logged_in && size / SKIPPABLE_OVER_LIMIT <= limit =>
            {
                self.skip = size;
                self.skipped = Some(GatewayError::MessageTooLarge {
                    message_type,
                    size,
                    limit,
                });
                return Ok(None);
            }
            Frame::TooLarge { size, .. } => {
                return Err(GatewayError::Protocol(format!(
                    "invalid message length {size} (limit {limit})"
                )))
            }
            Frame::Invalid { length } => {
                return Err(GatewayError::Protocol(format!(
                    "invalid message length {length}"
                )))
            }
        };
        let mut message = self.read.split_to(size);
        // The decoders index into the message by lengths it declares: a
        // lie must be an error for this connection, never a panic.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            PgWireFrontendMessage::decode(&mut message, &self.decode)
        }));
        let msg = match decoded {
            Ok(Ok(Some(msg))) => msg,
            Ok(Err(e)) => {
                return Err(GatewayError::Protocol(format!(
                    "invalid frontend message: {e}"
                )))
            }
            Ok(Ok(None)) | Err(_) => {
                return Err(GatewayError::Protocol("malformed frontend message".into()))
            }
        };
        if let PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::None) = msg {
            // Not an SSL request: the same bytes are the startup packet.
            message.unsplit(std::mem::take(&mut self.read));
            self.read = message;
            return Ok(Some(msg));
        }
        if !message.is_empty() {
            return Err(GatewayError::Protocol(format!(
                "message length does not match its contents ({} bytes left over)",
                message.len()
            )));
        }
        // Give a large message's buffer back once it is decoded.
        if self.read.capacity() > READ_BUFFER_KEEP && self.read.len() < READ_BUFFER_KEEP {
            self.read = BytesMut::from(&self.read[..]);
        }
        Ok(Some(msg))
    }

    /// Resolves only when the client closes its socket. What it sends
    /// meanwhile is kept for later, up to `READ_AHEAD`: past that the
    /// socket is left unread (as PostgreSQL does not read ahead), so a
    /// client flooding bytes during a statement cannot grow the gateway.
    pub async fn closed(&mut self) {
        loop {
            if self.eof {
                return;
            }
            if self.read.len() >= READ_AHEAD {
                std::future::pending::<()>().await;
            }
            let Some(socket) = self.socket.as_mut() else {
                return;
            };
            match socket.read_buf(&mut self.read).await {
                Ok(0) | Err(_) => {
                    self.eof = true;
                    return;
                }
                Ok(_) => {}
            }
        }
    }

    pub fn send(&mut self, msg: PgWireBackendMessage) {
        if matches!(msg, PgWireBackendMessage::DataRow(_)) {
            self.rows_pending += 1;
        }
        if let Err(e) = msg.encode(&mut self.write) {
            tracing::error!("encoding {msg:?}: {e}");
        }
    }

    /// Rows sent inside COPY data (which carries many rows per message).
    pub fn count_copy_rows(&mut self, rows: usize) {
        self.rows_pending += rows as u64;
    }

    /// Raw bytes (the one-byte SSL/GSSENC refusal).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.write.extend_from_slice(bytes);
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if self.rows_pending > 0 {
            METRICS.rows_sent.inc_by(self.rows_pending);
            self.rows_pending = 0;
        }
        if !self.write.is_empty() {
            let n = self.write.len();
            let socket = self.socket.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            socket.write_all(&self.write).await?;
            METRICS.bytes_sent.inc_by(n as u64);
            self.write.clear();
            // Give a big result's buffer back once it has been sent.
            if self.write.capacity() > 256 * 1024 {
                self.write = BytesMut::with_capacity(1024);
            }
        }
        self.socket().flush().await
    }

    pub fn has_pending_output(&self) -> bool {
        !self.write.is_empty()
    }

    /// Flushes only when a lot is buffered (mid-result).
    pub async fn maybe_flush(&mut self) -> io::Result<()> {
        if self.write.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }
}
