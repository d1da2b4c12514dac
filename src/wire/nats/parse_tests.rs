//! Tests of the NATS parser: property tests (a stream split at every offset, random bytes,
//! round trips, "need more" only for prefixes) and one test per accepted form and per error.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use proptest::prelude::*;

use crate::wire::nats::strategies::{header_pairs, payload};

const MAX: usize = 1 << 20;

/// An owned server operation: what the test encoder writes and what parsing should give.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TestOp {
    Info(Vec<u8>),
    Msg {
        subject: String,
        sid: u64,
        reply: Option<String>,
        payload: Vec<u8>,
    },
    HMsg {
        subject: String,
        sid: u64,
        reply: Option<String>,
        headers: Vec<u8>,
        payload: Vec<u8>,
    },
    Ping,
    Pong,
    Ok,
    Err(String),
}

/// How the test encoder spells a frame: verb case and argument separator vary, as servers
/// and the protocol allow.
#[derive(Debug, Clone)]
struct Spelling {
    lowercase: bool,
    separator: &'static str,
}

fn encode(op: &TestOp, spelling: &Spelling, out: &mut Vec<u8>) {
    let sep = spelling.separator;
    let verb = |v: &str| {
        if spelling.lowercase {
            v.to_ascii_lowercase()
        } else {
            v.to_string()
        }
    };
    let reply_arg = |r: &Option<String>| r.as_ref().map(|r| format!("{r}{sep}")).unwrap_or_default();
    match op {
        TestOp::Info(json) => {
            out.extend_from_slice(format!("{}{sep}", verb("INFO")).as_bytes());
            out.extend_from_slice(json);
            out.extend_from_slice(b"\r\n");
        }
        TestOp::Msg {
            subject,
            sid,
            reply,
            payload,
        } => {
            let line = format!(
                "{}{sep}{subject}{sep}{sid}{sep}{}{}\r\n",
                verb("MSG"),
                reply_arg(reply),
                payload.len()
            );
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        TestOp::HMsg {
            subject,
            sid,
            reply,
            headers,
            payload,
        } => {
            let total = headers.len() + payload.len();
            let line = format!(
                "{}{sep}{subject}{sep}{sid}{sep}{}{}{sep}{total}\r\n",
                verb("HMSG"),
                reply_arg(reply),
                headers.len()
            );
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(headers);
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        TestOp::Ping => out.extend_from_slice(format!("{}\r\n", verb("PING")).as_bytes()),
        TestOp::Pong => out.extend_from_slice(format!("{}\r\n", verb("PONG")).as_bytes()),
        TestOp::Ok => out.extend_from_slice(format!("{}\r\n", verb("+OK")).as_bytes()),
        TestOp::Err(text) => out.extend_from_slice(format!("{}{sep}'{text}'\r\n", verb("-ERR")).as_bytes()),
    }
}

fn to_owned(buf: &[u8], op: &ServerOp<'_>) -> TestOp {
    match op {
        ServerOp::Info(json) => TestOp::Info(json.to_vec()),
        ServerOp::Msg {
            subject,
            sid,
            reply,
            payload,
        } => TestOp::Msg {
            subject: subject.to_string(),
            sid: *sid,
            reply: reply.map(str::to_string),
            payload: buf[payload.clone()].to_vec(),
        },
        ServerOp::HMsg {
            subject,
            sid,
            reply,
            headers,
            payload,
        } => TestOp::HMsg {
            subject: subject.to_string(),
            sid: *sid,
            reply: reply.map(str::to_string),
            headers: buf[headers.clone()].to_vec(),
            payload: buf[payload.clone()].to_vec(),
        },
        ServerOp::Ping => TestOp::Ping,
        ServerOp::Pong => TestOp::Pong,
        ServerOp::Ok => TestOp::Ok,
        ServerOp::Err(text) => TestOp::Err(text.to_string()),
    }
}

/// Feeds `stream` to a reader in chunks whose ends are `cuts`, parsing every complete frame
/// after each chunk, as the shard does after each socket read.
fn parse_in_chunks(stream: &[u8], cuts: &[usize]) -> Vec<TestOp> {
    let mut pending = Vec::new();
    let mut ops = Vec::new();
    let mut fed = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let cut = cut.clamp(fed, stream.len());
        pending.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        while let Some((op, used)) = parse_server_op(&pending, MAX).expect("valid stream") {
            assert!(used <= pending.len());
            ops.push(to_owned(&pending, &op));
            pending.drain(..used);
        }
    }
    assert!(pending.is_empty(), "left over: {pending:?}");
    ops
}

fn encode_all(ops: &[(TestOp, Spelling)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (op, spelling) in ops {
        encode(op, spelling, &mut out);
    }
    out
}

// ---- strategies ----

fn subject() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_\\-]{1,10}(\\.[A-Za-z0-9_\\-*>]{1,10}){0,3}"
}

fn status() -> impl Strategy<Value = Option<(u16, Option<String>)>> {
    proptest::option::of((100u16..1000, proptest::option::of("[A-Za-z][A-Za-z ]{0,15}[A-Za-z]")))
}

fn header_block(status: &Option<(u16, Option<String>)>, pairs: &[(String, String)]) -> Vec<u8> {
    let mut block = b"NATS/1.0".to_vec();
    if let Some((code, description)) = status {
        block.extend_from_slice(format!(" {code}").as_bytes());
        if let Some(description) = description {
            block.extend_from_slice(format!(" {description}").as_bytes());
        }
    }
    block.extend_from_slice(b"\r\n");
    for (name, value) in pairs {
        block.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    block.extend_from_slice(b"\r\n");
    block
}

fn msg_op() -> impl Strategy<Value = TestOp> {
    (subject(), any::<u64>(), proptest::option::of(subject()), payload()).prop_map(|(subject, sid, reply, payload)| {
        TestOp::Msg {
            subject,
            sid,
            reply,
            payload,
        }
    })
}

fn hmsg_op() -> impl Strategy<Value = TestOp> {
    (
        subject(),
        any::<u64>(),
        proptest::option::of(subject()),
        status(),
        header_pairs(),
        payload(),
    )
        .prop_map(|(subject, sid, reply, status, pairs, payload)| TestOp::HMsg {
            subject,
            sid,
            reply,
            headers: header_block(&status, &pairs),
            payload,
        })
}

fn server_op() -> impl Strategy<Value = TestOp> {
    prop_oneof![
        3 => msg_op(),
        2 => hmsg_op(),
        1 => "\\{\"[a-z_]{1,10}\":[0-9]{1,7}\\}".prop_map(|json| TestOp::Info(json.into_bytes())),
        1 => Just(TestOp::Ping),
        1 => Just(TestOp::Pong),
        1 => Just(TestOp::Ok),
        1 => "[A-Za-z]([A-Za-z ]{0,30}[A-Za-z])?".prop_map(TestOp::Err),
    ]
}

fn spelling() -> impl Strategy<Value = Spelling> {
    (
        any::<bool>(),
        prop_oneof![Just(" "), Just("\t"), Just("  "), Just(" \t ")],
    )
        .prop_map(|(lowercase, separator)| Spelling { lowercase, separator })
}

fn stream() -> impl Strategy<Value = Vec<(TestOp, Spelling)>> {
    proptest::collection::vec((server_op(), spelling()), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// (a) A valid stream split at every offset parses to the same operations.
    #[test]
    fn split_at_every_offset_yields_same_ops(ops in stream()) {
        let bytes = encode_all(&ops);
        let expected: Vec<TestOp> = ops.iter().map(|(op, _)| op.clone()).collect();
        for cut in 0..=bytes.len() {
            prop_assert_eq!(&parse_in_chunks(&bytes, &[cut]), &expected, "cut at {}", cut);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) ... and in random chunkings, as socket reads deliver it.
    #[test]
    fn random_chunking_yields_same_ops(
        ops in stream(),
        chunks in proptest::collection::vec(1usize..80, 0..40),
    ) {
        let bytes = encode_all(&ops);
        let cuts: Vec<usize> = chunks.iter().scan(0, |end, len| { *end += len; Some(*end) }).collect();
        let expected: Vec<TestOp> = ops.iter().map(|(op, _)| op.clone()).collect();
        prop_assert_eq!(parse_in_chunks(&bytes, &cuts), expected);
    }

    /// (b) Random bytes never panic; `used` and every range stay inside the buffer.
    #[test]
    fn random_bytes_never_panic(
        prefix in prop_oneof![
            Just(""), Just("MSG "), Just("HMSG "), Just("msg a 1 "), Just("HMSG a 1 b "), Just("-ERR "),
            Just("INFO "), Just("PING"),
        ],
        tail in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), Just(b'5'), any::<u8>()], 0..300),
        max in prop_oneof![Just(0usize), Just(16), Just(MAX), Just(usize::MAX)],
    ) {
        let mut buf = prefix.as_bytes().to_vec();
        buf.extend_from_slice(&tail);
        if let Ok(Some((op, used))) = parse_server_op(&buf, max) {
            prop_assert!(used <= buf.len());
            match op {
                ServerOp::Msg { payload, .. } => prop_assert!(payload.end + 2 == used),
                ServerOp::HMsg { headers, payload, .. } => {
                    prop_assert!(headers.end == payload.start && payload.end + 2 == used);
                    let _ = parse_headers(&buf[headers]);
                }
                _ => {}
            }
        }
        let _ = parse_headers(&buf);
        let mut block = b"NATS/1.0".to_vec();
        block.extend_from_slice(&tail);
        let _ = parse_headers(&block).map(|h| h.iter().count());
    }

    /// (c) MSG and HMSG round-trip, binary payloads (with CRLF in them) included.
    #[test]
    fn msg_and_hmsg_round_trip(op in prop_oneof![msg_op(), hmsg_op()], spelling in spelling()) {
        let mut bytes = Vec::new();
        encode(&op, &spelling, &mut bytes);
        let (parsed, used) = parse_server_op(&bytes, MAX).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(to_owned(&bytes, &parsed), op);
    }

    /// (c) Header blocks round-trip: status, description and fields in order.
    #[test]
    fn header_block_round_trip(status in status(), pairs in header_pairs()) {
        let block = header_block(&status, &pairs);
        let headers = parse_headers(&block).unwrap();
        prop_assert_eq!(headers.status_code(), status.as_ref().map(|(code, _)| *code));
        prop_assert_eq!(headers.description(), status.as_ref().and_then(|(_, d)| d.as_deref()));
        let parsed: Vec<(String, String)> =
            headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        prop_assert_eq!(parsed, pairs);
    }

    /// (d) `Ok(None)` only for a prefix that the rest of the frame completes: every strict
    /// prefix of a valid frame is "need more", the whole frame parses, and bytes after it
    /// do not change the result.
    #[test]
    fn need_more_only_for_prefixes_of_a_frame(
        op in server_op(),
        spelling in spelling(),
        after in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut frame = Vec::new();
        encode(&op, &spelling, &mut frame);
        for end in 0..frame.len() {
            prop_assert_eq!(parse_server_op(&frame[..end], MAX), Ok(None), "prefix of {} bytes", end);
        }
        let mut longer = frame.clone();
        longer.extend_from_slice(&after);
        let (parsed, used) = parse_server_op(&longer, MAX).unwrap().unwrap();
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(to_owned(&longer, &parsed), op);
    }

    /// (d) Conversely, a "need more" answer on arbitrary bytes always starts like a verb.
    #[test]
    fn need_more_on_noise_starts_like_a_verb(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
        if parse_server_op(&bytes, MAX) == Ok(None) {
            let token: Vec<u8> = bytes.iter().copied().take_while(|b| !is_separator(*b)).collect();
            let token = token.split(|b| *b == b'\r').next().unwrap();
            prop_assert!(may_become_verb(token), "{:?}", bytes);
        }
    }
}

fn parse(bytes: &[u8]) -> Result<Option<(ServerOp<'_>, usize)>, ProtocolError> {
    parse_server_op(bytes, MAX)
}

fn parse_err(bytes: &[u8]) -> ProtocolError {
    parse(bytes).expect_err("should be invalid")
}

// ---- parser: accepted forms ----

#[test]
fn parses_msg_with_and_without_reply() {
    let buf = b"MSG a.b 7 5\r\nhello\r\nMSG a.b 8 _INBOX.x 0\r\n\r\n";
    let (op, used) = parse(buf).unwrap().unwrap();
    assert_eq!(
        op,
        ServerOp::Msg {
            subject: "a.b",
            sid: 7,
            reply: None,
            payload: 13..18
        }
    );
    assert_eq!(&buf[13..18], b"hello");
    assert_eq!(used, 20);
    let (op, used) = parse(&buf[20..]).unwrap().unwrap();
    assert_eq!(
        op,
        ServerOp::Msg {
            subject: "a.b",
            sid: 8,
            reply: Some("_INBOX.x"),
            payload: 22..22
        }
    );
    assert_eq!(used, buf.len() - 20);
}

#[test]
fn parses_hmsg_ranges() {
    let buf = b"HMSG a 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
    let (op, used) = parse(buf).unwrap().unwrap();
    let ServerOp::HMsg {
        subject,
        sid,
        reply,
        headers,
        payload,
    } = op
    else {
        panic!("{op:?}")
    };
    assert_eq!((subject, sid, reply), ("a", 1, Some("r")));
    assert_eq!(&buf[headers.clone()], b"NATS/1.0\r\n\r\n");
    assert_eq!(&buf[payload], b"hi");
    assert_eq!(used, buf.len());
    assert_eq!(parse_headers(&buf[headers]).unwrap().status_code(), None);
}

#[test]
fn verbs_are_case_insensitive_and_separators_flexible() {
    assert_eq!(parse(b"ping\r\n").unwrap(), Some((ServerOp::Ping, 6)));
    assert_eq!(parse(b"PoNg\r\n").unwrap(), Some((ServerOp::Pong, 6)));
    assert_eq!(parse(b"+ok\r\n").unwrap(), Some((ServerOp::Ok, 5)));
    assert_eq!(parse(b"PING \t\r\n").unwrap(), Some((ServerOp::Ping, 8)));
    let buf = b"msg\tsubj \t 3\t\t_INBOX.1   2\r\nab\r\n";
    let (op, _) = parse(buf).unwrap().unwrap();
    assert_eq!(
        op,
        ServerOp::Msg {
            subject: "subj",
            sid: 3,
            reply: Some("_INBOX.1"),
            payload: 28..30
        }
    );
}

#[test]
fn parses_info_and_err() {
    let buf = b"INFO {\"max_payload\":1048576}  \r\n";
    assert_eq!(
        parse(buf).unwrap(),
        Some((ServerOp::Info(b"{\"max_payload\":1048576}"), buf.len()))
    );
    let buf = b"-ERR 'Authorization Violation'\r\n";
    assert_eq!(
        parse(buf).unwrap(),
        Some((ServerOp::Err("Authorization Violation"), buf.len()))
    );
    assert_eq!(parse(b"-ERR\r\n").unwrap(), Some((ServerOp::Err(""), 6)));
}

#[test]
fn info_may_be_longer_than_a_control_line() {
    let mut buf = b"INFO {\"connect_urls\":\"".to_vec();
    buf.resize(CONTROL_LINE_BYTES_MAX * 4, b'x');
    assert_eq!(parse(&buf), Ok(None));
    buf.extend_from_slice(b"\"}\r\n");
    assert!(matches!(parse(&buf), Ok(Some((ServerOp::Info(_), _)))));
    let mut too_long = b"INFO ".to_vec();
    too_long.resize(INFO_LINE_BYTES_MAX + 1, b'x');
    assert_eq!(parse_err(&too_long), ProtocolError::ControlLineTooLong);
}

#[test]
fn need_more_bytes() {
    for partial in [
        &b""[..],
        b"M",
        b"MS",
        b"MSG",
        b"MSG a 1 5",
        b"MSG a 1 5\r",
        b"MSG a 1 5\r\nhel",
    ] {
        assert_eq!(parse(partial), Ok(None), "{partial:?}");
    }
    assert_eq!(parse(b"MSG a 1 5\r\nhello"), Ok(None));
    assert_eq!(parse(b"MSG a 1 5\r\nhello\r"), Ok(None));
    assert_eq!(parse(b"+O"), Ok(None));
    assert_eq!(parse(b"-er"), Ok(None));
}

#[test]
fn offset_range_locates_borrowed_parts() {
    let buf = b"MSG a.b 7 _INBOX.9 2\r\nhi\r\n";
    let Some((ServerOp::Msg { reply: Some(reply), .. }, _)) = parse(buf).unwrap() else {
        panic!()
    };
    let range = offset_range(buf, reply.as_bytes()).unwrap();
    assert_eq!(&buf[range], b"_INBOX.9");
    assert_eq!(offset_range(buf, b"elsewhere"), None);
    assert_eq!(offset_range(&buf[..4], &buf[2..8]), None);
}

// ---- parser: each error ----

#[test]
fn unknown_verb_is_invalid_even_before_crlf() {
    assert_eq!(parse_err(b"FOO\r\n"), ProtocolError::UnknownVerb);
    assert_eq!(parse_err(b"X"), ProtocolError::UnknownVerb);
    assert_eq!(parse_err(b"MSGX"), ProtocolError::UnknownVerb);
    assert_eq!(parse_err(b"PIN "), ProtocolError::UnknownVerb);
    assert_eq!(parse_err(b" PING\r\n"), ProtocolError::UnknownVerb);
    assert_eq!(parse_err(b"\r\n"), ProtocolError::UnknownVerb);
    // A publish verb is client → server only.
    assert_eq!(parse_err(b"PUB a 1\r\nx\r\n"), ProtocolError::UnknownVerb);
}

#[test]
fn control_line_too_long_is_invalid_without_crlf() {
    let mut line = b"MSG ".to_vec();
    line.resize(CONTROL_LINE_BYTES_MAX, b'a');
    assert_eq!(parse(&line), Ok(None));
    line.push(b'a');
    assert_eq!(parse_err(&line), ProtocolError::ControlLineTooLong);
    line.extend_from_slice(b" 1 0\r\n\r\n");
    assert_eq!(parse_err(&line), ProtocolError::ControlLineTooLong);
}

#[test]
fn bad_line_endings() {
    assert_eq!(parse_err(b"PING\n"), ProtocolError::BadLineEnding);
    assert_eq!(parse_err(b"PING\rX\n"), ProtocolError::BadLineEnding);
    assert_eq!(parse_err(b"MSG a\n1 0\r\n\r\n"), ProtocolError::BadLineEnding);
}

#[test]
fn argument_counts() {
    assert_eq!(parse_err(b"MSG a 1\r\n"), ProtocolError::ArgumentCount);
    assert_eq!(parse_err(b"MSG a 1 r 2 3\r\n"), ProtocolError::ArgumentCount);
    assert_eq!(parse_err(b"HMSG a 1 2\r\n"), ProtocolError::ArgumentCount);
    assert_eq!(parse_err(b"HMSG a 1 r 2 3 4\r\n"), ProtocolError::ArgumentCount);
    assert_eq!(parse_err(b"PING x\r\n"), ProtocolError::ArgumentCount);
    assert_eq!(parse_err(b"+OK now\r\n"), ProtocolError::ArgumentCount);
    assert_eq!(parse_err(b"INFO  \r\n"), ProtocolError::ArgumentCount);
}

#[test]
fn bad_numbers() {
    assert_eq!(parse_err(b"MSG a x 1\r\n"), ProtocolError::InvalidNumber);
    assert_eq!(parse_err(b"MSG a 1 -1\r\n"), ProtocolError::InvalidNumber);
    assert_eq!(parse_err(b"MSG a 1 +1\r\n"), ProtocolError::InvalidNumber);
    assert_eq!(
        parse_err(b"MSG a 18446744073709551616 1\r\n"),
        ProtocolError::InvalidNumber
    );
    assert_eq!(parse_err(b"HMSG a 1 1x 2\r\n"), ProtocolError::InvalidNumber);
    assert_eq!(parse(b"MSG a 18446744073709551615 0\r\n\r\n").unwrap().unwrap().1, 32);
}

#[test]
fn non_utf8_subject_reply_or_error() {
    assert_eq!(parse_err(b"MSG a\xff 1 0\r\n\r\n"), ProtocolError::InvalidUtf8);
    assert_eq!(parse_err(b"MSG a 1 \xc3 0\r\n\r\n"), ProtocolError::InvalidUtf8);
    assert_eq!(parse_err(b"-ERR '\xff'\r\n"), ProtocolError::InvalidUtf8);
}

#[test]
fn payload_over_max_is_invalid_before_it_arrives() {
    assert_eq!(
        parse_server_op(b"MSG a 1 11\r\n", 10),
        Err(ProtocolError::PayloadTooLarge)
    );
    assert_eq!(parse_server_op(b"MSG a 1 10\r\n", 10), Ok(None));
    assert_eq!(
        parse_server_op(b"HMSG a 1 8 11\r\n", 10),
        Err(ProtocolError::PayloadTooLarge)
    );
    assert_eq!(parse_err(b"MSG a 1 99999999999999\r\n"), ProtocolError::PayloadTooLarge);
}

#[test]
fn header_size_over_total() {
    assert_eq!(parse_err(b"HMSG a 1 13 12\r\n"), ProtocolError::HeaderSizeExceedsTotal);
}

#[test]
fn missing_crlf_after_payload() {
    assert_eq!(
        parse_err(b"MSG a 1 2\r\nhiX\r\n"),
        ProtocolError::MissingPayloadTerminator
    );
    assert_eq!(
        parse_err(b"MSG a 1 2\r\nhi\rX"),
        ProtocolError::MissingPayloadTerminator
    );
    assert_eq!(parse_err(b"MSG a 1 2\r\nhi\n"), ProtocolError::MissingPayloadTerminator);
    assert_eq!(
        parse_err(b"MSG a 1 1\r\nhi\r\n"),
        ProtocolError::MissingPayloadTerminator
    );
}

// ---- headers ----

#[test]
fn no_responders_status_is_detectable() {
    let buf = b"HMSG _INBOX.abc.1 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n";
    let Some((ServerOp::HMsg { headers, payload, .. }, used)) = parse(buf).unwrap() else {
        panic!()
    };
    assert_eq!(used, buf.len());
    assert!(payload.is_empty());
    let headers = parse_headers(&buf[headers]).unwrap();
    assert!(headers.is_no_responders());
    assert_eq!(headers.status_code(), Some(STATUS_NO_RESPONDERS));
    assert_eq!(headers.description(), None);
    assert_eq!(headers.iter().count(), 0);
}

#[test]
fn status_with_description_and_fields() {
    let block = b"NATS/1.0 408 Request Timeout\r\nNats-Expected: 1\r\nX: a: b \r\nX: second\r\nEmpty:\r\n\r\n";
    let headers = parse_headers(block).unwrap();
    assert_eq!(headers.status_code(), Some(408));
    assert_eq!(headers.description(), Some("Request Timeout"));
    assert!(!headers.is_no_responders());
    let fields: Vec<_> = headers.iter().collect();
    assert_eq!(
        fields,
        [("Nats-Expected", "1"), ("X", "a: b"), ("X", "second"), ("Empty", "")]
    );
    assert_eq!(headers.get("X"), Some("a: b"));
    assert_eq!(headers.get("x"), None);
    assert_eq!((&headers).into_iter().count(), 4);
}

#[test]
fn header_errors() {
    let cases: [(&[u8], ProtocolError); 11] = [
        (b"", ProtocolError::InvalidHeaderStatusLine),
        (b"HTTP/1.1\r\n\r\n", ProtocolError::InvalidHeaderStatusLine),
        (b"NATS/1.0 50\r\n\r\n", ProtocolError::InvalidHeaderStatusLine),
        (b"NATS/1.0 5034\r\n\r\n", ProtocolError::InvalidHeaderStatusLine),
        (b"NATS/1.0 abc\r\n\r\n", ProtocolError::InvalidHeaderStatusLine),
        (b"NATS/1.0503\r\n\r\n", ProtocolError::InvalidHeaderStatusLine),
        (b"NATS/1.0\r\n", ProtocolError::MissingHeaderTerminator),
        (b"NATS/1.0\r\nA: b\r\n", ProtocolError::MissingHeaderTerminator),
        (b"NATS/1.0\r\nno colon\r\n\r\n", ProtocolError::InvalidHeaderLine),
        (b"NATS/1.0\r\n: empty name\r\n\r\n", ProtocolError::InvalidHeaderLine),
        (b"NATS/1.0\r\nA: b\nc\r\n\r\n", ProtocolError::InvalidHeaderLine),
    ];
    for (block, error) in cases {
        assert_eq!(parse_headers(block), Err(error), "{:?}", String::from_utf8_lossy(block));
    }
    assert_eq!(
        parse_headers(b"NATS/1.0\r\nA: \xff\r\n\r\n"),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn errors_have_static_messages() {
    assert_eq!(
        ProtocolError::PayloadTooLarge.to_string(),
        "nats: payload exceeds max_payload"
    );
}
