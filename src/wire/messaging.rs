//! `wasmcloud:messaging` payloads (wasmcloud-interface-messaging 0.x, the smithy model the NATS
//! messaging provider 0.17 and every 0.x messaging actor speak), for the built-in messaging
//! provider: the `SubMessage` handed to `MessageSubscriber.HandleMessage`, the `PubMessage` of
//! `Messaging.Publish`, the `RequestMessage` of `Messaging.Request` and its `ReplyMessage`.
//! `SubMessage`, `PubMessage` and `ReplyMessage` share one shape: `subject`, `replyTo`
//! (optional), `body`.
//!
//! Pure: no I/O. Liberal as serde's decoder is (§16): keys in any order, unknown keys skipped,
//! `body` as bin or str, `replyTo` nil or absent.

use bytes::BufMut;

use super::msgpack::{self, MsgpackError, Reader};

/// Why a messaging payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessagingError {
    #[error("{what} is not a msgpack map: {error}")]
    Shape { what: &'static str, error: MsgpackError },
    #[error("{what} field {field}: {error}")]
    Field {
        what: &'static str,
        field: &'static str,
        error: MsgpackError,
    },
    #[error("{what} has no {field}")]
    Missing { what: &'static str, field: &'static str },
}

/// A message: what `PubMessage`, `SubMessage` and `ReplyMessage` carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef<'a> {
    pub subject: &'a str,
    pub reply_to: Option<&'a str>,
    pub body: &'a [u8],
}

/// `Messaging.Request`'s input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRef<'a> {
    pub subject: &'a str,
    pub body: &'a [u8],
    /// 0 when absent: the caller's default applies.
    pub timeout_ms: u64,
}

/// Encode a message (`SubMessage`/`ReplyMessage`) as wasmbus-rpc's serde writes it; a missing
/// `replyTo` is written as nil.
pub fn encode_message(out: &mut impl BufMut, message: &MessageRef<'_>) {
    msgpack::write_map_len(out, 3);
    msgpack::write_str(out, "subject");
    msgpack::write_str(out, message.subject);
    msgpack::write_str(out, "replyTo");
    match message.reply_to {
        Some(reply_to) => msgpack::write_str(out, reply_to),
        None => msgpack::write_nil(out),
    }
    msgpack::write_str(out, "body");
    msgpack::write_bin(out, message.body);
}

/// Read a `PubMessage` (or any message of that shape).
pub fn decode_message(bytes: &[u8]) -> Result<MessageRef<'_>, MessagingError> {
    const WHAT: &str = "PubMessage";
    let mut reader = Reader::new(bytes);
    let fields = reader
        .read_map_len()
        .map_err(|error| MessagingError::Shape { what: WHAT, error })?;
    let (mut subject, mut reply_to, mut body) = (None, None, None);
    for _ in 0..fields {
        let key = reader
            .read_bin_or_str()
            .map_err(|error| MessagingError::Shape { what: WHAT, error })?;
        let at = |field| {
            move |error| MessagingError::Field {
                what: WHAT,
                field,
                error,
            }
        };
        match key {
            b"subject" => subject = Some(reader.read_str().map_err(at("subject"))?),
            b"replyTo" => {
                reply_to = if reader.try_read_nil().map_err(at("replyTo"))? {
                    None
                } else {
                    Some(reader.read_str().map_err(at("replyTo"))?)
                }
            }
            b"body" => body = Some(reader.read_bin_or_str().map_err(at("body"))?),
            _ => reader
                .skip_value()
                .map_err(|error| MessagingError::Shape { what: WHAT, error })?,
        }
    }
    Ok(MessageRef {
        subject: subject.ok_or(MessagingError::Missing {
            what: WHAT,
            field: "subject",
        })?,
        reply_to: reply_to.filter(|r| !r.is_empty()),
        body: body.unwrap_or_default(),
    })
}

/// Read a `RequestMessage`: `subject`, `body`, `timeoutMs`.
pub fn decode_request(bytes: &[u8]) -> Result<RequestRef<'_>, MessagingError> {
    const WHAT: &str = "RequestMessage";
    let mut reader = Reader::new(bytes);
    let fields = reader
        .read_map_len()
        .map_err(|error| MessagingError::Shape { what: WHAT, error })?;
    let (mut subject, mut body, mut timeout_ms) = (None, None, 0);
    for _ in 0..fields {
        let key = reader
            .read_bin_or_str()
            .map_err(|error| MessagingError::Shape { what: WHAT, error })?;
        let at = |field| {
            move |error| MessagingError::Field {
                what: WHAT,
                field,
                error,
            }
        };
        match key {
            b"subject" => subject = Some(reader.read_str().map_err(at("subject"))?),
            b"body" => body = Some(reader.read_bin_or_str().map_err(at("body"))?),
            b"timeoutMs" => timeout_ms = reader.read_u64().map_err(at("timeoutMs"))?,
            _ => reader
                .skip_value()
                .map_err(|error| MessagingError::Shape { what: WHAT, error })?,
        }
    }
    Ok(RequestRef {
        subject: subject.ok_or(MessagingError::Missing {
            what: WHAT,
            field: "subject",
        })?,
        body: body.unwrap_or_default(),
        timeout_ms,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;

    /// wasmcloud-interface-messaging's structs, as its generated code derives them.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct PubMessage {
        subject: String,
        #[serde(rename = "replyTo")]
        reply_to: Option<String>,
        #[serde(with = "crate::wire::invocation::mirror::bin")]
        body: Vec<u8>,
    }

    #[derive(Debug, PartialEq, Serialize)]
    struct RequestMessage {
        subject: String,
        #[serde(with = "crate::wire::invocation::mirror::bin")]
        body: Vec<u8>,
        #[serde(rename = "timeoutMs")]
        timeout_ms: u32,
    }

    #[test]
    fn messages_read_back_both_ways() {
        let theirs = PubMessage {
            subject: "orders.new".into(),
            reply_to: Some("_INBOX.x".into()),
            body: b"{}".to_vec(),
        };
        let bytes = rmp_serde::to_vec_named(&theirs).unwrap();
        let ours = decode_message(&bytes).unwrap();
        assert_eq!(
            (ours.subject, ours.reply_to, ours.body),
            ("orders.new", Some("_INBOX.x"), &b"{}"[..])
        );
        let mut out = Vec::new();
        encode_message(&mut out, &ours);
        assert_eq!(rmp_serde::from_slice::<PubMessage>(&out).unwrap(), theirs);
        let none = PubMessage {
            reply_to: None,
            ..theirs
        };
        let bytes = rmp_serde::to_vec_named(&none).unwrap();
        let mut out = Vec::new();
        encode_message(&mut out, &decode_message(&bytes).unwrap());
        assert_eq!(rmp_serde::from_slice::<PubMessage>(&out).unwrap(), none);
    }

    #[test]
    fn requests_and_bad_input() {
        let theirs = RequestMessage {
            subject: "svc.echo".into(),
            body: b"ping".to_vec(),
            timeout_ms: 1500,
        };
        let bytes = rmp_serde::to_vec_named(&theirs).unwrap();
        let ours = decode_request(&bytes).unwrap();
        assert_eq!(
            (ours.subject, ours.body, ours.timeout_ms),
            ("svc.echo", &b"ping"[..], 1500)
        );
        assert!(matches!(decode_message(&[0x80]), Err(MessagingError::Missing { .. })));
        assert!(decode_request(b"\x93\x01\x02\x03").is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_message(&bytes);
            let _ = decode_request(&bytes);
        }
    }
}
