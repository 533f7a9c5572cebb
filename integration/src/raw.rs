//! A raw PostgreSQL protocol client for tests that send what real clients
//! never send: byte-exact messages, read back one by one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::Gateway;

pub struct Raw {
    pub s: TcpStream,
}

/// (type byte, body)
pub type Msg = (u8, Vec<u8>);

impl Raw {
    pub fn connect(gw: &Gateway) -> Self {
        let s = TcpStream::connect((gw.host.as_str(), gw.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Self { s }
    }

    pub fn send_untyped(&mut self, body: &[u8]) {
        let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        self.s.write_all(&m).unwrap();
    }

    pub fn send(&mut self, tag: u8, body: &[u8]) {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        self.s.write_all(&m).unwrap();
    }

    pub fn read(&mut self) -> Option<Msg> {
        let mut head = [0u8; 5];
        self.s.read_exact(&mut head).ok()?;
        let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        self.s.read_exact(&mut body).ok()?;
        Some((head[0], body))
    }

    /// Messages up to and including ReadyForQuery.
    pub fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.read() {
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    pub fn startup(gw: &Gateway) -> (Self, i32, i32) {
        let mut raw = Self::connect(gw);
        raw.send_untyped(&startup_body("alice"));
        let msgs = raw.until_ready();
        let key = msgs.iter().find(|m| m.0 == b'K').expect("BackendKeyData");
        let pid = i32::from_be_bytes(key.1[0..4].try_into().unwrap());
        let secret = i32::from_be_bytes(key.1[4..8].try_into().unwrap());
        assert_eq!(msgs.last().unwrap().1, b"I");
        (raw, pid, secret)
    }

    pub fn query(&mut self, sql: &str) -> Vec<Msg> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(b'Q', &body);
        self.until_ready()
    }
}

pub fn sqlstate(m: &Msg) -> String {
    m.1.split(|b| *b == 0)
        .find(|f| f.first() == Some(&b'C'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

pub fn cancel(gw: &Gateway, pid: i32, secret: i32) {
    let mut raw = Raw::connect(gw);
    let mut body = 80877102i32.to_be_bytes().to_vec();
    body.extend_from_slice(&pid.to_be_bytes());
    body.extend_from_slice(&secret.to_be_bytes());
    raw.send_untyped(&body);
    // The server closes the cancel connection without a reply, once it
    // has handled the request (a read timeout is not that).
    let mut buf = [0u8; 1];
    match raw.s.read(&mut buf) {
        Ok(0) => {}
        other => panic!("the cancel connection was not closed: {other:?}"),
    }
}

pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A StartupMessage body (protocol 3.0) for `user` on database velostream.
pub fn startup_body(user: &str) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for field in ["user", user, "database", "velostream"] {
        body.extend(cstr(field));
    }
    body.push(0);
    body
}
