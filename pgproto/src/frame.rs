//! Where one frontend message ends, decided from its header before any of
//! its body is buffered, so a client cannot make the gateway hold more
//! than the limit for its phase; then each message decoded from exactly
//! its declared bytes. `MessageReader` does this without I/O: the
//! connection reads socket bytes into its buffer and asks for messages.

use bytes::{Buf, BytesMut};
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, SslNegotiationMetaMessage};

use crate::error::GatewayError;

/// The largest message accepted before login: the startup packet and the
/// password and SASL messages (PostgreSQL's startup-packet limit).
pub const PRE_LOGIN_LIMIT: usize = 10_000;

/// The smallest startup-phase packet: length and request code.
const MIN_STARTUP_PACKET: usize = 8;

/// What the front of the read buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not even a whole header yet.
    Header,
    /// A message of `size` bytes (header included), complete or not.
    Message { size: usize },
    /// A regular message over the limit: skip `size` bytes, then answer.
    TooLarge { message_type: u8, size: usize },
    /// A length no message can have: framing is lost.
    Invalid { length: i64 },
}

/// The frame at the front of `buf`. `startup`: the packet has no type
/// byte (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage).
pub fn frame(buf: &[u8], startup: bool, limit: usize) -> Frame {
    let header = if startup { 4 } else { 5 };
    if buf.len() < header {
        return Frame::Header;
    }
    let at = header - 4;
    let length = i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as i64;
    if startup {
        return match usize::try_from(length) {
            Ok(n) if (MIN_STARTUP_PACKET..=PRE_LOGIN_LIMIT).contains(&n) => {
                Frame::Message { size: n }
            }
            _ => Frame::Invalid { length },
        };
    }
    let Ok(length) = usize::try_from(length) else {
        return Frame::Invalid { length };
    };
    if length < 4 {
        return Frame::Invalid {
            length: length as i64,
        };
    }
    let size = length + 1;
    if size > limit {
        return Frame::TooLarge {
            message_type: buf[0],
            size,
        };
    }
    Frame::Message { size }
}

/// A message up to this many times the limit is skipped (54000) and the
/// connection goes on; a larger claim is taken as an attack and ends it.
const SKIPPABLE_OVER_LIMIT: usize = 64;
/// A read buffer larger than this is given back after its message.
const READ_BUFFER_KEEP: usize = 64 * 1024;

/// Frontend messages out of the bytes a client sent, phase by phase.
pub struct MessageReader {
    read: BytesMut,
    decode: DecodeContext,
    /// Regular messages may be this large (after login).
    max_message: usize,
    logged_in: bool,
    /// Bytes of an oversized message still to discard, and its error.
    skip: usize,
    skipped: Option<GatewayError>,
}

impl Default for MessageReader {
    fn default() -> Self {
        Self {
            // Nothing until bytes arrive: idle connections should cost
            // little (see `release_if_empty`).
            read: BytesMut::new(),
            decode: DecodeContext::default(),
            max_message: PRE_LOGIN_LIMIT,
            logged_in: false,
            skip: 0,
            skipped: None,
        }
    }
}

impl MessageReader {
    /// Where the next bytes from the socket go.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.read
    }

    /// Gives the read buffer back when everything in it was consumed (an
    /// idle connection then holds none).
    pub fn release_if_empty(&mut self) {
        if self.read.is_empty() && self.skip == 0 && self.read.capacity() > 0 {
            self.read = BytesMut::new();
        }
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.read.len()
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

    /// The next whole message, `None` until more bytes arrive. A message
    /// over the limit is skipped unread and answered with 54000 (after
    /// login) or ends the connection (before it).
    pub fn next_message(&mut self) -> Result<Option<PgWireFrontendMessage>, GatewayError> {
        if self.skip > 0 {
            let n = self.skip.min(self.read.len());
            self.read.advance(n);
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
            if let Some(e) = self.skipped.take() {
                return Err(e);
            }
        }
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
                return self.next_message();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_decide_sizes_and_limits() {
        assert_eq!(frame(&[0, 0, 0], true, 100), Frame::Header);
        assert_eq!(
            frame(&[0, 0, 0, 8, 4], true, 100),
            Frame::Message { size: 8 }
        );
        assert_eq!(
            frame(&[0x7f, 0xff, 0xff, 0xff], true, 100),
            Frame::Invalid {
                length: 0x7fff_ffff
            }
        );
        assert_eq!(
            frame(&[b'Q', 0, 0, 0, 9], false, 100),
            Frame::Message { size: 10 }
        );
        assert_eq!(
            frame(&[b'Q', 0x40, 0, 0, 0], false, 100),
            Frame::TooLarge {
                message_type: b'Q',
                size: 0x4000_0001
            }
        );
        assert_eq!(
            frame(&[b'Q', 0, 0, 0, 3], false, 100),
            Frame::Invalid { length: 3 }
        );
        assert_eq!(
            frame(&[b'Q', 0xff, 0xff, 0xff, 0xff], false, 100),
            Frame::Invalid { length: -1 }
        );
    }

    #[test]
    fn hostile_headers_never_claim_past_their_limits() {
        let seeds: &[&[u8]] = &[
            b"Q\0\0\0\x09abcd",
            b"\0\0\0\x08\x04\xd2\x16\x2f",
            b"p\0\0\0\x04",
        ];
        for input in crate::mutate::mutations(seeds, 20_000) {
            for startup in [false, true] {
                match frame(&input, startup, 100) {
                    Frame::Message { size } => {
                        assert!(size <= if startup { PRE_LOGIN_LIMIT } else { 100 });
                        assert!(size >= if startup { MIN_STARTUP_PACKET } else { 5 });
                    }
                    Frame::TooLarge { size, .. } => assert!(!startup && size > 100),
                    Frame::Header | Frame::Invalid { .. } => {}
                }
            }
        }
    }
}
