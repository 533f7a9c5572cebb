//! Where one frontend message ends, decided from its header before any of
//! its body is buffered, so a client cannot make the gateway hold more
//! than the limit for its phase. Every message is then decoded from
//! exactly its declared bytes (see `Connection::read_message`).

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
