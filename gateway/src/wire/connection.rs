//! Framing on one client socket: frontend messages in (decoded by `pgwire`),
//! backend messages buffered out and flushed when we decide — after every
//! engine batch for streaming results.

use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConnection;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

use crate::error::GatewayError;
use crate::metrics::METRICS;

type Socket = Either<TcpStream, Box<TlsStream<TcpStream>>>;

use super::frame::MessageReader;
use super::tls::{self, Tls};

/// Flush early when this much output is buffered.
pub const FLUSH_AT: usize = 256 * 1024;
/// Output buffer taken when a reply starts (replies to small statements
/// fit without growing it).
const WRITE_START: usize = 2048;
/// Input read at once when a client sends.
const READ_CHUNK: usize = 8192;
/// Input read ahead while a statement runs, at most.
const READ_AHEAD: usize = 64 * 1024;

/// One client socket: messages in, buffered replies out. Replies leave on
/// `flush`, which the session calls when a client needs what it has so far
/// (after every engine batch while streaming).
pub struct Connection {
    /// `None` only while the TLS handshake owns the socket.
    socket: Option<Socket>,
    input: MessageReader,
    write: BytesMut,
    eof: bool,
    /// Rows queued since the last flush (counted into metrics there, not
    /// per row).
    rows_pending: u64,
    /// Rows sent before the last flush, over the connection's life.
    rows_flushed: u64,
    /// Over TLS: the `tls-server-end-point` data SCRAM-SHA-256-PLUS binds
    /// the login to (see `wire::tls`).
    server_end_point: Option<Arc<[u8]>>,
}

impl Connection {
    pub fn new(socket: TcpStream) -> Self {
        let _ = socket.set_nodelay(true);
        Self {
            socket: Some(Either::Left(socket)),
            // Small to start: idle connections should cost little; they grow
            // with what a client actually sends and receives.
            input: MessageReader::default(),
            write: BytesMut::new(),
            eof: false,
            rows_pending: 0,
            rows_flushed: 0,
            server_end_point: None,
        }
    }

    /// The SSL negotiation is over (refused, done, or never asked):
    /// what follows is a StartupMessage.
    pub fn ssl_negotiated(&mut self) {
        self.input.ssl_negotiated();
    }

    /// The StartupMessage arrived: regular messages follow.
    pub fn startup_done(&mut self) {
        self.input.startup_done();
    }

    /// Login succeeded: messages up to `max_message_size` are accepted.
    pub fn logged_in(&mut self, max_message_size: usize) {
        self.input.logged_in(max_message_size);
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
    pub async fn start_tls(&mut self, tls: &Tls) -> Result<(), GatewayError> {
        if self.input.buffered() > 0 {
            return Err(GatewayError::Protocol(
                "received unencrypted data after SSL request".into(),
            ));
        }
        self.send_raw(b"S");
        self.flush()
            .await
            .map_err(|e| GatewayError::Protocol(e.to_string()))?;
        self.handshake(tls).await
    }

    /// Whether the client's first byte starts a TLS handshake (a direct
    /// TLS start, without SSLRequest). Waits for that byte.
    pub async fn starts_with_tls_handshake(&mut self) -> bool {
        let mut first = [0u8; 1];
        match self.socket.as_mut() {
            Some(Either::Left(tcp)) if self.input.buffered() == 0 => {
                matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == tls::HANDSHAKE_RECORD)
            }
            _ => false,
        }
    }

    /// A direct TLS start: the handshake runs at once, and the client must
    /// have negotiated the "postgresql" ALPN (as PostgreSQL 17 requires, so
    /// that a TLS connection meant for another protocol is not taken for
    /// ours). The SSL negotiation is then over.
    pub async fn start_direct_tls(&mut self, tls: &Tls) -> Result<(), GatewayError> {
        self.handshake(tls).await?;
        let alpn = self.tls_session().and_then(|s| s.alpn_protocol());
        if alpn != Some(tls::ALPN) {
            self.eof = true;
            return Err(GatewayError::Protocol(
                "received direct SSL connection request without ALPN protocol negotiation extension"
                    .into(),
            ));
        }
        self.ssl_negotiated();
        Ok(())
    }

    async fn handshake(&mut self, tls: &Tls) -> Result<(), GatewayError> {
        let Some(Either::Left(tcp)) = self.socket.take() else {
            return Err(GatewayError::Protocol("TLS requested twice".into()));
        };
        match tls.acceptor.accept(tcp).await {
            Ok(stream) => {
                self.socket = Some(Either::Right(Box::new(stream)));
                self.server_end_point = tls.server_end_point.clone();
                Ok(())
            }
            Err(e) => {
                self.eof = true;
                Err(GatewayError::Protocol(format!("TLS handshake failed: {e}")))
            }
        }
    }

    /// The TLS session, when the connection is TLS.
    fn tls_session(&self) -> Option<&ServerConnection> {
        match self.socket.as_ref() {
            Some(Either::Right(stream)) => Some(stream.get_ref().1),
            _ => None,
        }
    }

    /// TLS protocol version and cipher suite (for the audit log).
    pub fn tls_description(&self) -> Option<String> {
        let session = self.tls_session()?;
        let version = session.protocol_version()?;
        let suite = session.negotiated_cipher_suite()?.suite();
        Some(format!("{version:?} {suite:?}"))
    }

    /// The common name of the client's certificate, when it presented one
    /// (verified in the handshake against `tls_client_ca_file`).
    pub fn client_certificate_name(&self) -> Option<String> {
        let leaf = self.tls_session()?.peer_certificates()?.first()?;
        tls::common_name(leaf)
    }

    /// The channel-binding data of this connection's TLS, if any.
    pub fn server_end_point(&self) -> Option<Arc<[u8]>> {
        self.server_end_point.clone()
    }

    /// The next message, or `None` when the client has gone (see
    /// `MessageReader` for the limits).
    pub async fn read_message(&mut self) -> Result<Option<PgWireFrontendMessage>, GatewayError> {
        loop {
            if let Some(msg) = self.input.next_message()? {
                return Ok(Some(msg));
            }
            if self.eof {
                return Ok(None);
            }
            if self.input.buffered() == 0 {
                self.wait_idle().await;
            }
            let Some(socket) = self.socket.as_mut() else {
                return Ok(None);
            };
            self.input.buffer().reserve(READ_CHUNK);
            match socket.read_buf(self.input.buffer()).await {
                Ok(0) | Err(_) => {
                    self.eof = true;
                    if self.input.buffered() == 0 {
                        return Ok(None);
                    }
                }
                Ok(_) => {}
            }
        }
    }

    /// Waits until a message can be read (or the client has gone): at
    /// once when input is buffered, else on the socket without a buffer.
    /// A small future, for the wait of an idle session.
    pub async fn input_ready(&mut self) {
        if self.input.buffered() == 0 && !self.eof {
            self.wait_idle().await;
        }
    }

    /// Nothing is buffered in: give both buffers back (when all output has
    /// gone) and, on a plain socket, wait for the client to send without
    /// holding a read buffer, so an idle connection costs its task and
    /// little else. (TLS keeps its own buffers.)
    async fn wait_idle(&mut self) {
        self.input.release_if_empty();
        if self.write.is_empty() && self.write.capacity() > 0 {
            self.write = BytesMut::new();
        }
        if let Some(Either::Left(tcp)) = self.socket.as_ref() {
            // Readiness errors show up in the read that follows.
            let _ = tcp.readable().await;
        }
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
            if self.input.buffered() >= READ_AHEAD {
                std::future::pending::<()>().await;
            }
            let Some(socket) = self.socket.as_mut() else {
                return;
            };
            match socket.read_buf(self.input.buffer()).await {
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
        if self.write.capacity() == 0 {
            self.write.reserve(WRITE_START);
        }
        if let Err(e) = msg.encode(&mut self.write) {
            tracing::error!("encoding {msg:?}: {e}");
        }
    }

    /// Rows sent (or queued to send) over the connection's life.
    pub fn rows_sent(&self) -> u64 {
        self.rows_flushed + self.rows_pending
    }

    /// Rows sent by way of `output` (DataRows encoded in place) or inside
    /// COPY data (which carries many rows per message).
    pub fn count_rows(&mut self, rows: usize) {
        self.rows_pending += rows as u64;
    }

    /// The output buffer, for messages encoded in place (DataRows): what
    /// is appended goes out with the next flush.
    pub fn output(&mut self) -> &mut BytesMut {
        if self.write.capacity() == 0 {
            self.write.reserve(WRITE_START);
        }
        &mut self.write
    }

    /// Raw bytes (the one-byte SSL/GSSENC refusal).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.write.extend_from_slice(bytes);
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if self.rows_pending > 0 {
            METRICS.rows_sent.inc_by(self.rows_pending);
            self.rows_flushed += self.rows_pending;
            self.rows_pending = 0;
        }
        if !self.write.is_empty() {
            let n = self.write.len();
            let socket = self.socket.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            socket.write_all(&self.write).await?;
            METRICS.bytes_sent.inc_by(n as u64);
            self.write.clear();
            // Give a big result's buffer back once it has been sent.
            if self.write.capacity() > 2 * FLUSH_AT {
                self.write = BytesMut::new();
            }
        }
        self.socket().flush().await
    }

    pub fn has_pending_output(&self) -> bool {
        !self.write.is_empty()
    }

    /// Enough output is buffered to send it before encoding more.
    pub fn needs_flush(&self) -> bool {
        self.write.len() >= FLUSH_AT
    }

    /// Flushes only when a lot is buffered (mid-result).
    pub async fn maybe_flush(&mut self) -> io::Result<()> {
        if self.needs_flush() {
            self.flush().await?;
        }
        Ok(())
    }
}
