//! Tests of the invocation codec: shapes, interop with rmp-serde, properties.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::mirror::{reference_url, WasmCloudEntity};
use super::*;
use crate::wire::response::*;
use proptest::prelude::*;

fn entity(public_key: &str, link_name: &str, contract_id: &str) -> WasmCloudEntity {
    WasmCloudEntity::new(public_key, link_name, contract_id)
}

fn sample() -> mirror::Invocation {
    mirror::Invocation {
        origin: entity("MB2ACTOR", "", ""),
        target: entity("VPROVIDER", "default", "wasmcloud:keyvalue"),
        operation: "KeyValue.Get".into(),
        msg: b"\x81\xa3key\xa1k".to_vec(),
        id: "5d4d6ba3b1c44a5e8e1b7f3b3cf7e6b1".into(),
        encoded_claims: "aaa.bbb.ccc".into(),
        host_id: format!("N{}", "A".repeat(55)),
        content_length: Some(9),
        trace_context: [("traceparent".to_string(), "00-ab-cd-01".to_string())].into(),
    }
}

fn assert_matches(ours: &InvocationRef<'_>, theirs: &mirror::Invocation) {
    let entity_eq = |a: &EntityRef<'_>, b: &WasmCloudEntity| {
        a.public_key == b.public_key && a.link_name == b.link_name && a.contract_id == b.contract_id
    };
    assert!(entity_eq(&ours.origin, &theirs.origin));
    assert!(entity_eq(&ours.target, &theirs.target));
    assert_eq!(ours.operation, theirs.operation);
    assert_eq!(ours.msg, theirs.msg.as_slice());
    assert_eq!(ours.id, theirs.id);
    assert_eq!(ours.encoded_claims, theirs.encoded_claims);
    assert_eq!(ours.host_id, theirs.host_id);
    assert_eq!(ours.content_length, theirs.content_length);
    let trace: std::collections::HashMap<String, String> = ours
        .trace_context
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(trace, theirs.trace_context);
}

fn fields_of<'a>(inv: &'a mirror::Invocation, trace: &'a [(&'a str, &'a str)]) -> InvocationFields<'a> {
    let e = |x: &'a WasmCloudEntity| EntityRef {
        public_key: &x.public_key,
        link_name: &x.link_name,
        contract_id: &x.contract_id,
    };
    InvocationFields {
        origin: e(&inv.origin),
        target: e(&inv.target),
        operation: &inv.operation,
        msg: &inv.msg,
        id: &inv.id,
        encoded_claims: &inv.encoded_claims,
        host_id: &inv.host_id,
        content_length: inv.content_length.unwrap_or(inv.msg.len() as u64),
        trace_context: trace,
    }
}

#[test]
fn decodes_rmp_serde_named_and_array_forms() {
    let inv = sample();
    let named = rmp_serde::to_vec_named(&inv).unwrap();
    assert_matches(&decode_invocation(&named).unwrap(), &inv);
    // Positional form (rmp_serde::to_vec): the field order documented at ARRAY_FIELDS.
    let positional = rmp_serde::to_vec(&inv).unwrap();
    assert_eq!(positional[0] & 0xf0, 0x90, "rmp-serde writes an array");
    assert_matches(&decode_invocation(&positional).unwrap(), &inv);
    // Without content_length / traceContext.
    let mut bare = inv.clone();
    bare.content_length = None;
    bare.trace_context.clear();
    for bytes in [
        rmp_serde::to_vec_named(&bare).unwrap(),
        rmp_serde::to_vec(&bare).unwrap(),
    ] {
        let decoded = decode_invocation(&bytes).unwrap();
        assert_matches(&decoded, &bare);
        assert_eq!(decoded.content_length_or_msg(), bare.msg.len() as u64);
    }
}

/// Write a map by hand: keys in the given order, values as pre-encoded bytes.
fn hand_map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    msgpack::write_map_len(&mut out, entries.len());
    for (key, value) in entries {
        msgpack::write_str(&mut out, key);
        out.extend_from_slice(value);
    }
    out
}

fn s(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    msgpack::write_str(&mut out, text);
    out
}

fn b(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    msgpack::write_bin(&mut out, bytes);
    out
}

const NIL: &[u8] = &[0xc0];

fn base_entries() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("host_id", s("NHOST")),
        ("unknown_extra", hand_map(&[("nested", vec![0x92, 0x01, 0xc3])])),
        ("target", hand_map(&[("public_key", s("MTARGET"))])),
        (
            "origin",
            hand_map(&[
                ("contract_id", NIL.to_vec()),
                ("public_key", s("MORIGIN")),
                ("link_name", s("")),
                ("future_field", vec![0xcb, 0, 0, 0, 0, 0, 0, 0, 0]),
            ]),
        ),
        ("operation", s("Op.Do")),
        ("msg", b(b"payload")),
        ("encoded_claims", s("t.o.k")),
        ("id", s("id-1")),
    ]
}

#[test]
fn any_key_order_unknown_keys_nil_entities_and_str_msg() {
    let bytes = hand_map(&base_entries());
    let decoded = decode_invocation(&bytes).unwrap();
    assert_eq!(
        decoded.origin,
        EntityRef {
            public_key: "MORIGIN",
            link_name: "",
            contract_id: ""
        }
    );
    assert_eq!(
        decoded.target,
        EntityRef {
            public_key: "MTARGET",
            link_name: "",
            contract_id: ""
        }
    );
    assert_eq!(decoded.msg, b"payload");
    assert_eq!(decoded.content_length, None);
    assert!(decoded.trace_context.is_empty());

    let mut entries = base_entries();
    entries[5].1 = s("payload as str");
    entries.push(("content_length", NIL.to_vec()));
    entries.push(("traceContext", NIL.to_vec()));
    let bytes = hand_map(&entries);
    let decoded = decode_invocation(&bytes).unwrap();
    assert_eq!(decoded.msg, b"payload as str");
    assert_eq!(decoded.content_length, None);

    // Entity as an array: [public_key, link_name, contract_id].
    let mut entries = base_entries();
    entries[2].1 = [vec![0x93], s("VPROV"), NIL.to_vec(), s("wasmcloud:messaging")].concat();
    let bytes = hand_map(&entries);
    let decoded = decode_invocation(&bytes).unwrap();
    assert_eq!(
        decoded.target,
        EntityRef {
            public_key: "VPROV",
            link_name: "",
            contract_id: "wasmcloud:messaging"
        }
    );

    // A bin key is a key too (serde derive accepts bytes identifiers); an integer key is skipped.
    let mut bytes = hand_map(&base_entries());
    bytes[0] += 2;
    bytes.extend(b(b"content_length"));
    msgpack::write_uint(&mut bytes, 42);
    bytes.extend([0x07, 0xc3]);
    assert_eq!(decode_invocation(&bytes).unwrap().content_length, Some(42));
}

#[test]
fn missing_duplicate_and_wrong_fields_are_typed_errors() {
    for (index, field) in [
        (0, Field::HostId),
        (2, Field::Target),
        (3, Field::Origin),
        (4, Field::Operation),
        (5, Field::Msg),
        (6, Field::EncodedClaims),
        (7, Field::Id),
    ] {
        let mut entries = base_entries();
        entries.remove(index);
        assert_eq!(
            decode_invocation(&hand_map(&entries)),
            Err(DecodeError::MissingField(field))
        );
    }
    let mut entries = base_entries();
    entries[2].1 = hand_map(&[("link_name", s("x"))]);
    assert_eq!(
        decode_invocation(&hand_map(&entries)),
        Err(DecodeError::MissingField(Field::PublicKey))
    );

    let mut entries = base_entries();
    entries.push(("id", s("again")));
    assert_eq!(
        decode_invocation(&hand_map(&entries)),
        Err(DecodeError::DuplicateField(Field::Id))
    );

    let cases: [(usize, Vec<u8>, DecodeError); 6] = [
        (0, vec![0x05], DecodeError::FieldType(Field::HostId)),
        (0, NIL.to_vec(), DecodeError::FieldType(Field::HostId)),
        (2, s("not an entity"), DecodeError::FieldType(Field::Target)),
        (5, vec![0x90], DecodeError::FieldType(Field::Msg)),
        (4, vec![0xa2, 0xff, 0xfe], DecodeError::FieldUtf8(Field::Operation)),
        (4, vec![0xc1], DecodeError::Malformed(MsgpackError::ReservedMarker)),
    ];
    for (index, value, expected) in cases {
        let mut entries = base_entries();
        entries[index].1 = value;
        assert_eq!(decode_invocation(&hand_map(&entries)), Err(expected));
    }
    let mut entries = base_entries();
    entries.push(("content_length", vec![0xff]));
    assert_eq!(
        decode_invocation(&hand_map(&entries)),
        Err(DecodeError::Malformed(MsgpackError::IntegerRange))
    );
    let mut entries = base_entries();
    entries.push(("traceContext", hand_map(&[("k", vec![0x01])])));
    assert_eq!(
        decode_invocation(&hand_map(&entries)),
        Err(DecodeError::FieldType(Field::TraceContext))
    );

    assert_eq!(decode_invocation(&s("hello")), Err(DecodeError::NotAStruct));
    assert_eq!(decode_invocation(&[]), Err(DecodeError::Truncated));
    let mut trailing = hand_map(&base_entries());
    trailing.push(0xc0);
    assert_eq!(decode_invocation(&trailing), Err(DecodeError::TrailingBytes));
    assert!(DecodeError::Truncated.is_truncated());
    assert!(DecodeError::TrailingBytes
        .message()
        .starts_with("Failed to deserialize invocation"));
}

#[test]
fn url_form_matches_protocol_examples() {
    let provider = EntityRef {
        public_key: "Vxxx",
        link_name: "default",
        contract_id: "wasmcloud:messaging",
    };
    let mut url = String::new();
    provider.target_url("OP_TESTING", &mut url);
    assert_eq!(url, "wasmbus://wasmcloud/messaging/default/Vxxx/OP_TESTING");
    assert!(provider.target_url_eq("OP_TESTING", "wasmbus://wasmcloud/messaging/default/Vxxx/OP_TESTING"));
    assert!(!provider.target_url_eq("OP_TESTING", "wasmbus://wasmcloud/messaging/default/Vxxx/OP_TESTIN"));
    assert!(!provider.target_url_eq("OP_TESTING", "wasmbus://wasmcloud/messaging/default/Vxxx/OP_TESTINGG"));
    assert!(provider.url_eq("wasmbus://wasmcloud/messaging/default/Vxxx"));

    let odd = EntityRef {
        public_key: "VKEY",
        link_name: "My Link",
        contract_id: "Acme:Key Value",
    };
    url.clear();
    odd.url(&mut url);
    assert_eq!(url, "wasmbus://acme/key_value/my_link/VKEY");

    for key in ["MACTOR", "mactor"] {
        let actor = EntityRef {
            public_key: key,
            link_name: "ignored",
            contract_id: "ignored",
        };
        url.clear();
        actor.url(&mut url);
        assert_eq!(url, format!("wasmbus://{key}"));
    }
    let wash = EntityRef {
        public_key: "__WASH__",
        link_name: "",
        contract_id: "",
    };
    url.clear();
    wash.url(&mut url);
    assert_eq!(url, reference_url(&entity("__WASH__", "", "")));
}

#[test]
fn response_len_is_exact_and_decode_response_reads_every_shape() {
    let big = vec![7u8; 70_000];
    for (error, msg) in [
        (None, b"result".as_slice()),
        (None, big.as_slice()),
        (Some("Anti-forgery check failed: x"), b"".as_slice()),
    ] {
        for id in ["i", "0123456789abcdef0123456789abcdef", &"x".repeat(300)] {
            let mut out = Vec::new();
            encode_response(&mut out, id, msg, error, msg.len() as u64);
            assert_eq!(out.len(), response_len(id, msg.len(), error, msg.len() as u64));
            let decoded = decode_response(&out).unwrap();
            assert_eq!((decoded.msg, decoded.invocation_id, decoded.error), (msg, id, error));
            assert_eq!(decoded.content_length, Some(msg.len() as u64));
        }
    }
    // OTP's error reply: no content_length, an extra instance_id, a nil msg.
    #[derive(serde::Serialize)]
    struct Otp<'a> {
        msg: Option<()>,
        invocation_id: &'a str,
        error: &'a str,
        instance_id: &'a str,
    }
    let otp = rmp_serde::to_vec_named(&Otp {
        msg: None,
        invocation_id: "id",
        error: "boom",
        instance_id: "x",
    })
    .unwrap();
    let decoded = decode_response(&otp).unwrap();
    assert_eq!(
        (decoded.msg, decoded.error, decoded.content_length),
        (&b""[..], Some("boom"), None)
    );
    // Positional form, and a reply with neither msg nor error is refused.
    let array = rmp_serde::to_vec(&(serde_bytes_vec(b"ok"), "id", Option::<String>::None, 2u64)).unwrap();
    assert_eq!(decode_response(&array).unwrap().msg, b"ok");
    let empty = rmp_serde::to_vec_named(&std::collections::HashMap::from([("invocation_id", "id")])).unwrap();
    assert_eq!(decode_response(&empty), Err(DecodeError::MissingField(Field::Msg)));
    assert!(decode_response(b"\xc1").is_err());
}

/// A `Vec<u8>` serialized as msgpack bin.
fn serde_bytes_vec(bytes: &[u8]) -> rmpv_bin::Bin {
    rmpv_bin::Bin(bytes.to_vec())
}

mod rmpv_bin {
    pub struct Bin(pub Vec<u8>);
    impl serde::Serialize for Bin {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
}

#[test]
fn encode_response_is_rmp_serde_compatible() {
    for (error, msg) in [
        (None, b"result".as_slice()),
        (Some("Anti-forgery check failed: x"), b"".as_slice()),
    ] {
        let mut out = Vec::new();
        encode_response(&mut out, "id-7", msg, error, msg.len() as u64);
        let theirs: mirror::InvocationResponse = rmp_serde::from_slice(&out).unwrap();
        assert_eq!(theirs.invocation_id, "id-7");
        assert_eq!(theirs.msg, msg);
        assert_eq!(theirs.error.as_deref(), error);
        assert_eq!(theirs.content_length, msg.len() as u64);
        // Byte-identical to what wasmbus-rpc's serde writes.
        let expected = mirror::InvocationResponse {
            msg: msg.to_vec(),
            invocation_id: "id-7".into(),
            error: error.map(str::to_string),
            content_length: msg.len() as u64,
            trace_context: Default::default(),
        };
        assert_eq!(out, rmp_serde::to_vec_named(&expected).unwrap());
    }
    let mut out = bytes::BytesMut::new();
    encode_response(&mut out, "id", b"x", None, 1);
    assert_eq!(
        rmp_serde::from_slice::<mirror::InvocationResponse>(&out).unwrap().msg,
        b"x"
    );
}

#[test]
fn a_traced_response_carries_its_trace_context_and_is_framed_exactly() {
    let trace = [
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("tracestate", "congo=t61rcWkgMzE"),
    ];
    for error in [None, Some("guest trapped")] {
        let mut out = Vec::new();
        encode_response_traced(&mut out, "id-9", b"ok", error, 2, &trace);
        assert_eq!(out.len(), response_len_traced("id-9", 2, error, 2, &trace));
        let theirs: mirror::InvocationResponse = rmp_serde::from_slice(&out).unwrap();
        assert_eq!(theirs.trace_context.len(), 2);
        assert_eq!(theirs.trace_context["tracestate"], "congo=t61rcWkgMzE");
        assert_eq!(theirs.error.as_deref(), error);
        // Our own lenient decoder skips it.
        assert_eq!(decode_response(&out).unwrap().invocation_id, "id-9");
    }
}

#[test]
fn encode_invocation_is_rmp_serde_compatible() {
    let inv = sample();
    let trace = [("traceparent", "00-ab-cd-01")];
    let mut out = Vec::new();
    encode_invocation(&mut out, &fields_of(&inv, &trace));
    assert_eq!(
        out,
        rmp_serde::to_vec_named(&inv).unwrap(),
        "same bytes as to_vec_named"
    );
    let theirs: mirror::Invocation = rmp_serde::from_slice(&out).unwrap();
    assert_eq!(theirs, inv);
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Z0-9]{1,56}",
        any::<String>(),
        "[a-zA-Z:ΣσßİK ]{0,12}",
    ]
}

fn arb_entity() -> impl Strategy<Value = WasmCloudEntity> {
    (arb_text(), arb_text(), arb_text()).prop_map(|(p, l, c)| WasmCloudEntity {
        public_key: p,
        link_name: l,
        contract_id: c,
    })
}

prop_compose! {
    fn arb_invocation()(
        origin in arb_entity(),
        target in arb_entity(),
        operation in arb_text(),
        msg in prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 0..300)],
        id in arb_text(),
        encoded_claims in arb_text(),
        host_id in arb_text(),
        content_length in any::<Option<u64>>(),
        trace_context in proptest::collection::hash_map(arb_text(), arb_text(), 0..3),
    ) -> mirror::Invocation {
        mirror::Invocation { origin, target, operation, msg, id, encoded_claims, host_id, content_length, trace_context }
    }
}

proptest! {
    #[test]
    fn round_trip_ours_and_rmp_serde(inv in arb_invocation()) {
        let trace: Vec<(&str, &str)> = inv.trace_context.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut inv = inv.clone();
        inv.content_length = Some(inv.content_length.unwrap_or(0).max(inv.msg.len() as u64));
        let mut ours = Vec::new();
        encode_invocation(&mut ours, &fields_of(&inv, &trace));
        assert_matches(&decode_invocation(&ours).unwrap(), &inv);
        prop_assert_eq!(&rmp_serde::from_slice::<mirror::Invocation>(&ours).unwrap(), &inv);
        assert_matches(&decode_invocation(&rmp_serde::to_vec_named(&inv).unwrap()).unwrap(), &inv);
        assert_matches(&decode_invocation(&rmp_serde::to_vec(&inv).unwrap()).unwrap(), &inv);
    }

    #[test]
    fn truncations_are_errors(inv in arb_invocation()) {
        let bytes = rmp_serde::to_vec_named(&inv).unwrap();
        for end in 0..bytes.len() {
            prop_assert_eq!(decode_invocation(&bytes[..end]), Err(DecodeError::Truncated), "cut at {}", end);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_invocation(&bytes);
        let _ = decode_response(&bytes);
    }

    #[test]
    fn responses_round_trip_and_mutations_never_panic(
        msg in proptest::collection::vec(any::<u8>(), 0..300),
        id in arb_text(),
        error in proptest::option::of(arb_text()),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let msg = if error.is_some() { Vec::new() } else { msg };
        let mut bytes = Vec::new();
        encode_response(&mut bytes, &id, &msg, error.as_deref(), msg.len() as u64);
        prop_assert_eq!(bytes.len(), response_len(&id, msg.len(), error.as_deref(), msg.len() as u64));
        let decoded = decode_response(&bytes).unwrap();
        prop_assert_eq!((decoded.msg, decoded.invocation_id, decoded.error), (&msg[..], id.as_str(), error.as_deref()));
        let at = at.index(bytes.len());
        bytes[at] = byte;
        let _ = decode_response(&bytes);
    }

    #[test]
    fn mutated_invocations_never_panic(inv in arb_invocation(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = rmp_serde::to_vec_named(&inv).unwrap();
        let at = at.index(bytes.len());
        bytes[at] = byte;
        let _ = decode_invocation(&bytes);
    }

    #[test]
    fn url_equals_the_reference(e in arb_entity(), operation in arb_text()) {
        let ours = EntityRef { public_key: &e.public_key, link_name: &e.link_name, contract_id: &e.contract_id };
        let mut url = String::new();
        ours.url(&mut url);
        let reference = reference_url(&e);
        prop_assert_eq!(&url, &reference);
        prop_assert!(ours.url_eq(&reference));
        let target = format!("{reference}/{operation}");
        prop_assert!(ours.target_url_eq(&operation, &target));
        let longer = format!("{}x", target);
        prop_assert!(!ours.target_url_eq(&operation, &longer));
    }
}
