//! One function per fuzz target: `fuzz/fuzz_targets/<name>.rs` calls
//! `<name>` with the fuzzer's bytes. Each states, with assertions, what
//! must hold for any input — beyond not panicking. The tests at the end
//! replay the committed corpora (`fuzz/corpus/<name>/`) and mutations of
//! them through the same functions on every test run.

use std::sync::Arc;

use arrow::datatypes::Schema;
use bytes::Bytes;
use pgwire::messages::PgWireFrontendMessage as F;

use crate::codec::{self, IpcDecoder, RowEncoder};
use crate::error::GatewayError;
use crate::frame::{MessageReader, PRE_LOGIN_LIMIT};
use crate::pg::oid;
use crate::scram::{sasl_initial_response, ScramExchange, ScramVerifier};
use crate::sql::{classify, split};
use crate::startup::command_line_options;

/// A fuzz target: takes any bytes, panics only on a finding.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/Cargo.toml` lists them.
pub const TARGETS: &[(&str, Target)] = &[
    ("frontend_messages", frontend_messages),
    ("startup_packet", startup_packet),
    ("scram", scram),
    ("statements", statements),
    ("parameters", parameters),
    ("ipc_rows", ipc_rows),
];

/// The gateway catches the panics some decoders raise on hostile input
/// (pgwire's, Arrow's) and answers with an error; libFuzzer's panic hook
/// would count each as a crash. A panic that is not caught still reaches
/// the fuzzer, which aborts on it.
pub fn quiet_caught_panics() {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// A client's byte stream, arriving in chunks of the size the first byte
/// picks, read through every phase of a connection (SSL negotiation,
/// startup, login, then regular messages under a limit the second byte
/// picks). A message over the limit is answered 54000 and skipped; any
/// other error ends the connection. The buffer never holds more than one
/// partial message.
pub fn frontend_messages(data: &[u8]) {
    let [chunk, limit, rest @ ..] = data else {
        return;
    };
    let chunk = usize::from(*chunk % 64) + 1;
    let limit = 16usize << (limit % 12);
    let mut reader = MessageReader::default();
    let mut phase_limit = PRE_LOGIN_LIMIT;
    for piece in rest.chunks(chunk) {
        reader.buffer().extend_from_slice(piece);
        loop {
            match reader.next_message() {
                Ok(Some(F::SslNegotiation(_))) => reader.ssl_negotiated(),
                Ok(Some(F::Startup(_))) => reader.startup_done(),
                Ok(Some(F::PasswordMessageFamily(_))) => {
                    reader.logged_in(limit);
                    phase_limit = limit;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(GatewayError::MessageTooLarge { size, .. }) => assert!(size > limit),
                Err(e) => {
                    assert_eq!(e.sqlstate(), "08P01", "{e}");
                    return;
                }
            }
        }
        assert!(
            reader.buffered() < phase_limit.max(PRE_LOGIN_LIMIT),
            "{} bytes buffered",
            reader.buffered()
        );
    }
}

/// A startup-phase packet (its length is prepended): whatever it says,
/// it is a startup, SSL, GSSENC or cancel request or an 08P01; its
/// `options` parameter parses into name=value pairs.
pub fn startup_packet(data: &[u8]) {
    let mut reader = MessageReader::default();
    let length = (data.len() as u32).wrapping_add(4);
    reader.buffer().extend_from_slice(&length.to_be_bytes());
    reader.buffer().extend_from_slice(data);
    for _ in 0..2 {
        match reader.next_message() {
            Ok(Some(F::SslNegotiation(_))) => reader.ssl_negotiated(),
            Ok(Some(F::Startup(s))) => {
                if let Some(options) = s.parameters.get("options") {
                    for (name, _) in command_line_options(options) {
                        assert!(!name.contains('-'));
                    }
                }
                return;
            }
            Ok(Some(F::CancelRequest(_))) | Ok(None) => return,
            Ok(Some(other)) => panic!("not a startup-phase message: {other:?}"),
            Err(e) => {
                assert_eq!(e.sqlstate(), "08P01", "{e}");
                return;
            }
        }
    }
}

/// A SASLInitialResponse body, then (after the first 0xff byte in what
/// follows it) a client-final message: parsed from exactly their bytes,
/// and never a successful login without the password.
pub fn scram(data: &[u8]) {
    let (first, last) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (mechanism, client_first) = match sasl_initial_response(first) {
        Ok(parsed) => parsed,
        Err(e) => return assert_eq!(e.sqlstate(), "08P01"),
    };
    assert!(mechanism.len() + client_first.len() < first.len());
    let verifier = ScramVerifier::with_salt("secret", b"0123456789abcdef", 1);
    for known in [Some(&verifier), None] {
        for end_point in [None, Some(&[9u8; 32][..])] {
            let start =
                ScramExchange::start(known, vec![7; 16], mechanism, client_first, end_point);
            if let Ok((exchange, server_first)) = start {
                assert!(server_first.starts_with("r="));
                assert!(exchange.finish(last).is_none() || known.is_some());
            }
        }
    }
}

/// A Query message's text: split into statements that lie inside it, in
/// order; each statement that is not too deep classifies.
pub fn statements(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let chars = text.chars().count() as u32;
    let mut last_offset = 0;
    for piece in split(text) {
        assert!(piece.offset >= last_offset && piece.offset <= chars);
        last_offset = piece.offset;
        if !piece.text.is_empty() {
            let start = (piece.text.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
            assert!(start + piece.text.len() <= text.len());
        }
        match piece.checked() {
            Ok(statement) => {
                classify(statement);
            }
            Err(e) => assert_eq!(e.sqlstate(), "54001"),
        }
    }
}

/// The types a Bind parameter can declare, plus one the gateway does not
/// know.
const PARAMETER_TYPES: &[u32] = &[
    oid::BOOL,
    oid::INT2,
    oid::INT4,
    oid::INT8,
    oid::FLOAT4,
    oid::FLOAT8,
    oid::NUMERIC,
    oid::TEXT,
    oid::VARCHAR,
    oid::BYTEA,
    oid::DATE,
    oid::TIME,
    oid::TIMESTAMP,
    oid::TIMESTAMPTZ,
    oid::INTERVAL,
    oid::UNKNOWN,
    0,
    12345,
];

/// One Bind parameter: the first byte picks its type and format, the rest
/// is its value. It decodes, or is a data error (class 22) or an
/// unsupported type (0A000) — never an internal error.
pub fn parameters(data: &[u8]) {
    let [pick, value @ ..] = data else {
        return;
    };
    let type_oid = PARAMETER_TYPES[usize::from(pick >> 1) % PARAMETER_TYPES.len()];
    let binary = pick & 1 == 1;
    if let Err(e) = codec::decode_parameter(type_oid, binary, Some(&Bytes::copy_from_slice(value)))
    {
        let state = e.sqlstate();
        assert!(state.starts_with("22") || state == "0A000", "{state}: {e}");
    }
}

/// Rows of one fuzzed batch that `ipc_rows` encodes.
const MAX_ROWS_ENCODED: usize = 4096;

/// What a hostile engine node can send: an Arrow IPC schema message (its
/// length in the first two bytes), then batch messages. Each decodes or
/// is a 58030; every decoded row encodes as text and binary DataRows and
/// as COPY text and CSV lines.
pub fn ipc_rows(data: &[u8]) {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let schema_len = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
    let (schema_ipc, batches) = rest.split_at(schema_len);
    let mut decoder = IpcDecoder::default();
    let schema = match decoder.schema(schema_ipc) {
        Ok(schema) => schema,
        Err(e) => return assert_eq!(e.sqlstate(), "58030"),
    };
    codec::row_description(&schema);
    codec::csv_header(&schema);
    let binary = vec![true; schema.fields().len()];
    match decoder.batch(batches.to_vec()) {
        Ok(batch) => {
            assert_eq!(
                Arc::<Schema>::clone(&batch.schema()).fields().len(),
                binary.len()
            );
            let mut text = RowEncoder::new(&batch);
            let mut binary = RowEncoder::with_formats(&batch, binary);
            let mut line = bytes::BytesMut::new();
            // A batch may claim millions of rows it has no bytes for (zero
            // columns); what matters is that each row encodes, and the
            // gateway bounds its output per flush, not per batch.
            for row in 0..batch.num_rows().min(MAX_ROWS_ENCODED) {
                text.data_row(row);
                binary.data_row(row);
                line.clear();
                text.copy_line(row, false, &mut line);
                assert_eq!(line.last(), Some(&b'\n'));
                text.copy_line(row, true, &mut line);
            }
        }
        Err(e) => assert_eq!(e.sqlstate(), "58030"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::*;

    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
            .collect();
        inputs.sort();
        inputs
    }

    /// Every committed input (the seeds, what the fuzzer kept, and any
    /// crash it found), then mutations of them for a few seconds: the
    /// fuzz targets as a regression test.
    #[test]
    fn the_fuzz_corpora_replay_cleanly() {
        for (name, target) in TARGETS {
            let inputs = corpus(name);
            assert!(
                inputs.len() >= 3,
                "{name}: corpus has {} inputs",
                inputs.len()
            );
            for input in &inputs {
                target(input);
            }
            let seeds: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let deadline = Instant::now() + Duration::from_millis(500);
            for input in crate::mutate::mutations(&seeds, 2_000) {
                target(&input);
                if Instant::now() > deadline {
                    break;
                }
            }
        }
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup_body(parameters: &[(&str, &str)]) -> Vec<u8> {
        let mut body = 196608u32.to_be_bytes().to_vec();
        for (k, v) in parameters {
            for s in [k, v] {
                body.extend_from_slice(s.as_bytes());
                body.push(0);
            }
        }
        body.push(0);
        body
    }

    fn with_length(body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }

    fn sasl_initial(client_first: &[u8]) -> Vec<u8> {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
        body.extend_from_slice(client_first);
        body
    }

    fn ipc_messages() -> Vec<Vec<u8>> {
        use arrow::array::*;
        use arrow::datatypes::*;
        use arrow::ipc::writer::StreamWriter;
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
            None,
        ]);
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("b", Arc::new(BooleanArray::from(vec![Some(true), None]))),
            ("i2", Arc::new(Int16Array::from(vec![Some(-1), Some(7)]))),
            ("i8", Arc::new(Int64Array::from(vec![Some(i64::MIN), None]))),
            (
                "f",
                Arc::new(Float64Array::from(vec![Some(f64::NAN), Some(1e300)])),
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a\tb,\"c\n"), None])),
            ),
            (
                "bin",
                Arc::new(BinaryArray::from(vec![Some(&b"\x00\xff"[..]), None])),
            ),
            (
                "d",
                Arc::new(Date32Array::from(vec![Some(-1_000_000), Some(19_000)])),
            ),
            (
                "t",
                Arc::new(Time64MicrosecondArray::from(vec![
                    Some(0),
                    Some(86_399_999_999),
                ])),
            ),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(i64::MAX),
                    Some(-1),
                ])),
            ),
            (
                "tz",
                Arc::new(TimestampMicrosecondArray::from(vec![Some(0), None]).with_timezone("UTC")),
            ),
            (
                "n",
                Arc::new(
                    Decimal128Array::from(vec![Some(-12345), Some(i128::MAX / 7)])
                        .with_precision_and_scale(38, 3)
                        .unwrap(),
                ),
            ),
            (
                "iv",
                Arc::new(IntervalMonthDayNanoArray::from(vec![
                    Some(IntervalMonthDayNano::new(1, -2, 3_000)),
                    None,
                ])),
            ),
            ("l", Arc::new(list)),
        ];
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(
            schema.clone(),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap();
        let mut writer = StreamWriter::try_new(Vec::new(), &schema).unwrap();
        let schema_ipc = std::mem::take(writer.get_mut());
        writer.write(&batch).unwrap();
        let batch_ipc = std::mem::take(writer.get_mut());
        let mut one = (schema_ipc.len() as u16).to_be_bytes().to_vec();
        one.extend_from_slice(&schema_ipc);
        one.extend_from_slice(&batch_ipc);
        let mut no_batch = (schema_ipc.len() as u16).to_be_bytes().to_vec();
        no_batch.extend_from_slice(&schema_ipc);
        vec![one, no_batch, vec![0, 0]]
    }

    /// Writes the seed inputs of every target into `fuzz/corpus/`; run by
    /// hand (`cargo test -p velo-pgproto -- --ignored write_seed_corpora`)
    /// when a target or its input format changes.
    #[test]
    #[ignore]
    fn write_seed_corpora() {
        let startup = startup_body(&[
            ("user", "alice"),
            ("database", "velo"),
            (
                "options",
                "-c statement_timeout=5s --idle-session-timeout=1min",
            ),
        ]);
        let mut session = vec![3u8, 4];
        session.extend_from_slice(&with_length(&80877103u32.to_be_bytes()));
        session.extend_from_slice(&with_length(&startup));
        session.extend_from_slice(&message(b'p', b"secret\0"));
        session.extend_from_slice(&message(
            b'Q',
            b"SELECT 1; SELECT * FROM trades EMIT CHANGES\0",
        ));
        session.extend_from_slice(&message(b'P', b"s1\0SELECT $1::int\0\0\x01\0\0\0\x17"));
        session.extend_from_slice(&message(
            b'B',
            b"p1\0s1\0\0\x01\0\x01\0\x01\0\0\0\x04\0\0\0\x07\0\x01\0\x01",
        ));
        session.extend_from_slice(&message(b'D', b"Pp1\0"));
        session.extend_from_slice(&message(b'E', b"p1\0\0\0\0\x0a"));
        session.extend_from_slice(&message(b'S', b""));
        session.extend_from_slice(&message(b'X', b""));
        let mut oversized = vec![0u8, 0];
        oversized.extend_from_slice(&with_length(&startup));
        oversized.extend_from_slice(&message(b'p', b"x\0"));
        oversized.extend_from_slice(&message(b'Q', &[b'a'; 100]));
        oversized.extend_from_slice(&message(b'Q', b"SELECT 1\0"));
        let mut sasl_session = vec![63u8, 11];
        sasl_session.extend_from_slice(&with_length(&startup));
        sasl_session.extend_from_slice(&message(b'p', &sasl_initial(b"n,,n=,r=abc")));
        let mut cancel = 80877102u32.to_be_bytes().to_vec();
        cancel.extend_from_slice(&[0, 0, 0, 42, 1, 2, 3, 4]);
        let mut scram_exchange = sasl_initial(b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL");
        scram_exchange.push(0xff);
        scram_exchange.extend_from_slice(
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        );
        let statements: Vec<Vec<u8>> = [
            "SELECT 1",
            "SELECT symbol, price FROM kafka://trades WHERE price > 10 EMIT CHANGES; SHOW ALL",
            "BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT * FROM trades; FETCH 10 FROM c; COMMIT",
            "SET statement_timeout = '5s'; RESET ALL; SET search_path TO public, \"My\"\"Schema\"",
            "COPY (SELECT * FROM trades EMIT CHANGES) TO STDOUT WITH (FORMAT csv, HEADER)",
            "SELECT $$a;b$$, $x$ $$ $x$, E'\\'';', 'it''s' /* nested /* comment */ ; */ -- ;\n; ;",
            "CREATE VIEW v AS SELECT symbol, COUNT(*) FROM trades GROUP BY symbol WINDOW TUMBLING(ts, 1s) EMIT FINAL",
            "SELECT ((((((((((1))))))))))",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let mut numeric = vec![(6u8 << 1) | 1];
        numeric.extend_from_slice(&[0, 2, 0, 0, 0, 0, 0, 3, 0, 12, 13, 0x80]);
        let mut negative_scale = vec![(6u8 << 1) | 1];
        negative_scale.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0xff, 0xfe, 0, 1]);
        let parameters = vec![
            numeric,
            negative_scale,
            vec![(3u8 << 1) | 1, 0, 0, 0, 0, 0, 0, 0, 42],
            [&[12u8 << 1][..], b"2024-02-29"].concat(),
            [&[13u8 << 1][..], b"2024-02-29 12:34:56.789+02"].concat(),
            [&[14u8 << 1][..], b"1 year 2 mons -3 days 04:05:06"].concat(),
            [&[(14u8 << 1) | 1][..], &[0; 16][..]].concat(),
            [&[6u8 << 1][..], b"-1.5e-3"].concat(),
            [&[9u8 << 1][..], b"\\x00ff"].concat(),
        ];
        let corpora: Vec<(&str, Vec<Vec<u8>>)> = vec![
            ("frontend_messages", vec![session, oversized, sasl_session]),
            (
                "startup_packet",
                vec![
                    startup,
                    80877103u32.to_be_bytes().to_vec(),
                    80877104u32.to_be_bytes().to_vec(),
                    cancel,
                ],
            ),
            (
                "scram",
                vec![
                    scram_exchange,
                    sasl_initial(b"n,,n=,r=abc"),
                    sasl_initial(b"p=tls-server-end-point,,n=,r=abc"),
                ],
            ),
            ("statements", statements),
            ("parameters", parameters),
            ("ipc_rows", ipc_messages()),
        ];
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        for (target, inputs) in corpora {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, input) in inputs.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), input).unwrap();
            }
        }
    }
}
