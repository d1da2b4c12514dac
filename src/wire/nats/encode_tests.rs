//! Tests of the NATS encoders: exact frames, refusals that write nothing, and frames the
//! parser's header check reads back.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use proptest::prelude::*;

use crate::wire::nats::strategies::{header_pairs, payload};

const MAX: usize = 1 << 20;

fn split_frame(frame: &[u8]) -> (&str, &[u8]) {
    let line_end = frame.windows(2).position(|w| w == b"\r\n").unwrap();
    (std::str::from_utf8(&frame[..line_end]).unwrap(), &frame[line_end + 2..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The client encoders: PUB/HPUB frames have the declared sizes, and the header block
    /// written by HPUB parses back to the same fields.
    #[test]
    fn pub_and_hpub_frames_are_well_formed(
        subject in "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){0,3}",
        reply in proptest::option::of("_INBOX\\.[A-Za-z0-9]{1,22}"),
        pairs in header_pairs(),
        payload in payload(),
    ) {
        let mut out = Vec::new();
        write_pub(&mut out, &subject, reply.as_deref(), &payload, MAX).unwrap();
        let (line, body) = split_frame(&out);
        let args: Vec<&str> = line.split(' ').collect();
        prop_assert_eq!(args[0], "PUB");
        prop_assert_eq!(args[1], subject.as_str());
        prop_assert_eq!(args[args.len() - 1].parse::<usize>().unwrap(), payload.len());
        prop_assert_eq!(body, &[payload.as_slice(), b"\r\n"].concat()[..]);

        let mut out = BytesMut::new();
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        write_hpub(&mut out, &subject, reply.as_deref(), &borrowed, &payload, MAX).unwrap();
        let (line, body) = split_frame(&out);
        let args: Vec<&str> = line.split(' ').collect();
        prop_assert_eq!(args[0], "HPUB");
        let header_bytes: usize = args[args.len() - 2].parse().unwrap();
        let total: usize = args[args.len() - 1].parse().unwrap();
        prop_assert_eq!(body.len(), total + 2);
        let headers = parse_headers(&body[..header_bytes]).unwrap();
        prop_assert_eq!(headers.iter().collect::<Vec<_>>(), borrowed);
        prop_assert_eq!(&body[header_bytes..total], payload.as_slice());
    }
}

#[test]
fn encodes_client_frames() {
    let mut out = Vec::new();
    write_pub(&mut out, "wasmbus.rpc.x", Some("_INBOX.1"), b"a\r\nb", MAX).unwrap();
    write_pub(&mut out, "a", None, b"", MAX).unwrap();
    write_sub(&mut out, "wasmbus.rpc.default.>", Some("workers"), 42).unwrap();
    write_sub(&mut out, "a.*.c", None, 0).unwrap();
    write_unsub(&mut out, 42, None);
    write_unsub(&mut out, u64::MAX, Some(1));
    write_ping(&mut out);
    write_pong(&mut out);
    let expected = "PUB wasmbus.rpc.x _INBOX.1 4\r\na\r\nb\r\nPUB a 0\r\n\r\n\
                    SUB wasmbus.rpc.default.> workers 42\r\nSUB a.*.c 0\r\n\
                    UNSUB 42\r\nUNSUB 18446744073709551615 1\r\nPING\r\nPONG\r\n";
    assert_eq!(String::from_utf8(out).unwrap(), expected);

    let mut out = BytesMut::new();
    write_hpub(&mut out, "a.b", None, &[("K", "v 1"), ("K", "v2")], b"xyz", MAX).unwrap();
    assert_eq!(
        &out[..],
        b"HPUB a.b 27 30\r\nNATS/1.0\r\nK: v 1\r\nK: v2\r\n\r\nxyz\r\n"
    );
}

#[test]
fn encoders_reject_without_writing() {
    let mut out = b"kept".to_vec();
    let bad_subjects = [
        "", " a", "a b", "a\tb", "a\r\nb", ".a", "a.", "a..b", "a.*", "a.>", ">", "a\u{7f}",
    ];
    for subject in bad_subjects {
        assert_eq!(
            write_pub(&mut out, subject, None, b"x", MAX),
            Err(EncodeError::InvalidSubject),
            "{subject:?}"
        );
        assert_eq!(
            write_hpub(&mut out, subject, None, &[], b"x", MAX),
            Err(EncodeError::InvalidSubject)
        );
    }
    assert_eq!(
        write_pub(&mut out, "a", Some("r r"), b"x", MAX),
        Err(EncodeError::InvalidReply)
    );
    assert_eq!(
        write_pub(&mut out, "a", Some("_INBOX.*"), b"x", MAX),
        Err(EncodeError::InvalidReply)
    );
    assert_eq!(write_sub(&mut out, "a.>.b", None, 1), Err(EncodeError::InvalidSubject));
    assert_eq!(write_sub(&mut out, "", None, 1), Err(EncodeError::InvalidSubject));
    assert_eq!(
        write_sub(&mut out, "a", Some(""), 1),
        Err(EncodeError::InvalidQueueGroup)
    );
    assert_eq!(
        write_sub(&mut out, "a", Some("q q"), 1),
        Err(EncodeError::InvalidQueueGroup)
    );
    let bad_names = ["", "a b", "a:b", "é", "a\r\n"];
    for name in bad_names {
        let result = write_hpub(&mut out, "a", None, &[(name, "v")], b"", MAX);
        assert_eq!(result, Err(EncodeError::InvalidHeaderName), "{name:?}");
    }
    for value in ["a\r\nb", "a\nb", " lead", "trail\t", "\u{0}"] {
        let result = write_hpub(&mut out, "a", None, &[("K", value)], b"", MAX);
        assert_eq!(result, Err(EncodeError::InvalidHeaderValue), "{value:?}");
    }
    assert_eq!(
        write_pub(&mut out, "a", None, b"12345", 4),
        Err(EncodeError::PayloadTooLarge)
    );
    assert_eq!(
        write_hpub(&mut out, "a", None, &[], b"12", 13),
        Err(EncodeError::PayloadTooLarge)
    );
    let long = "a".repeat(CONTROL_LINE_BYTES_MAX);
    assert_eq!(
        write_pub(&mut out, &long, None, b"", MAX),
        Err(EncodeError::ControlLineTooLong)
    );
    assert_eq!(
        write_hpub(&mut out, &long, None, &[], b"", MAX),
        Err(EncodeError::ControlLineTooLong)
    );
    assert_eq!(
        write_sub(&mut out, &long, None, 1),
        Err(EncodeError::ControlLineTooLong)
    );
    assert_eq!(out, b"kept");
}

#[test]
fn pub_with_encoder_matches_pub_and_rolls_back_a_miscount() {
    let mut expected = Vec::new();
    write_pub(&mut expected, "a.b", Some("_INBOX.x"), b"hello", 1024).unwrap();
    let mut out = b"PING\r\n".to_vec();
    write_pub_with(&mut out, "a.b", Some("_INBOX.x"), 5, 1024, |o| {
        o.extend_from_slice(b"hello")
    })
    .unwrap();
    assert_eq!(&out[6..], &expected[..]);
    let before = out.clone();
    let wrong = write_pub_with(&mut out, "a.b", None, 4, 1024, |o| o.extend_from_slice(b"hello"));
    assert_eq!(wrong, Err(EncodeError::PayloadLengthMismatch));
    assert_eq!(out, before, "nothing of the bad frame stays");
    assert_eq!(
        write_pub_with(&mut out, "a.b", None, 5, 4, |_| {}),
        Err(EncodeError::PayloadTooLarge)
    );
}

#[test]
fn hpub_fits_exactly_at_max_payload() {
    let mut out = Vec::new();
    // "NATS/1.0\r\n\r\n" is 12 bytes.
    write_hpub(&mut out, "a", None, &[], b"12", 14).unwrap();
    assert_eq!(out, b"HPUB a 12 14\r\nNATS/1.0\r\n\r\n12\r\n");
}

#[test]
fn connect_json() {
    let mut options = ConnectOptions::new("0.1.0");
    options.name = Some("shardhost shard 3");
    options.jwt = Some("eyJ0");
    options.sig = Some("c2ln");
    let mut out = Vec::new();
    write_connect(&mut out, &options).unwrap();
    let line = std::str::from_utf8(&out).unwrap();
    let json = line.strip_prefix("CONNECT ").unwrap().strip_suffix("\r\n").unwrap();
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let expected = serde_json::json!({
        "verbose": false, "pedantic": false, "tls_required": false, "name": "shardhost shard 3",
        "lang": "rust", "version": "0.1.0", "protocol": 1, "echo": true, "headers": true,
        "no_responders": true, "jwt": "eyJ0", "sig": "c2ln",
    });
    assert_eq!(value, expected);
}

#[test]
fn errors_have_static_messages() {
    assert_eq!(EncodeError::InvalidSubject.to_string(), "nats: invalid subject");
}
