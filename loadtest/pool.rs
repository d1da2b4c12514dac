//! The invocations a run sends, signed before the run starts, and the replies it reads.
//!
//! Signing an invocation (an Ed25519 JWT, ~50 µs) costs more than a host may take to serve
//! it, so it must not happen inside the measured loop: [`InvocationPool::build`] encodes and
//! signs `pool_invocations` distinct invocations up front (each with its own id) and the run
//! cycles through them. The host does not deduplicate ids, and replies come back on the
//! request's own NATS inbox, so reusing an invocation later in the run is harmless.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use shardhost::auth::antiforgery::{encode_signed_invocation, Outbound};
use shardhost::wire::invocation::EntityRef;

use crate::error::LoadtestError;
use crate::stats::Outcome;

/// Default number of invocations signed up front: enough that consecutive requests carry
/// distinct ids and tokens even at high concurrency.
pub const POOL_INVOCATIONS_DEFAULT: usize = 1024;
/// Fewest invocations signed up front (tests use small pools: signing is slow in debug builds).
pub const POOL_INVOCATIONS_MIN: usize = 1;
/// Most invocations signed up front (~1 minute of signing; memory is ~1 KiB each plus payload).
pub const POOL_INVOCATIONS_MAX: usize = 1 << 20;
/// Largest payload, in bytes: above 900 KiB wasmbus chunks payloads through JetStream
/// (PROTOCOL §2.6), which this generator does not do.
pub const PAYLOAD_BYTES_MAX: usize = 900 * 1024;

/// Who the invocations claim to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub public_key: String,
    pub link_name: String,
    pub contract_id: String,
}

impl Origin {
    /// A made-up actor (`M…`): actor-to-actor calls need no capability claim.
    pub fn new_actor() -> Origin {
        Origin {
            public_key: nkeys::KeyPair::new_module().public_key(),
            link_name: String::new(),
            contract_id: String::new(),
        }
    }

    /// A made-up provider (`V…`) of `contract_id` on `link_name`: the target actor must claim
    /// that capability (PROTOCOL §4.5), as for a real HTTP server provider.
    pub fn new_provider(contract_id: &str, link_name: &str) -> Origin {
        Origin {
            public_key: nkeys::KeyPair::new_service().public_key(),
            link_name: link_name.to_string(),
            contract_id: contract_id.to_string(),
        }
    }

    fn entity(&self) -> EntityRef<'_> {
        EntityRef {
            public_key: &self.public_key,
            link_name: &self.link_name,
            contract_id: &self.contract_id,
        }
    }
}

/// What every invocation of a run has in common.
#[derive(Debug, Clone)]
pub struct InvocationTemplate {
    pub origin: Origin,
    pub target_actor: String,
    pub operation: String,
    pub payload: Bytes,
    /// `host_id` of the made-up sending host (`N…`).
    pub host_id: String,
}

/// One pre-signed, encoded invocation.
#[derive(Debug, Clone)]
pub struct PooledInvocation {
    pub id: String,
    /// The msgpack `Invocation`, ready to publish.
    pub bytes: Bytes,
}

pub struct InvocationPool {
    pub invocations: Vec<PooledInvocation>,
}

impl InvocationPool {
    /// Sign and encode `count` invocations of `template` with `cluster_key` (issued at
    /// `now_secs`), each with a fresh UUID id.
    pub fn build(
        template: &InvocationTemplate,
        cluster_key: &nkeys::KeyPair,
        count: usize,
        now_secs: u64,
    ) -> Result<InvocationPool, LoadtestError> {
        let target = EntityRef {
            public_key: &template.target_actor,
            link_name: "",
            contract_id: "",
        };
        let origin = template.origin.entity();
        let mut invocations = Vec::with_capacity(count);
        let mut buffer = BytesMut::new();
        for _ in 0..count {
            let id = uuid::Uuid::new_v4().to_string();
            let call = Outbound {
                origin,
                target,
                operation: &template.operation,
                payload: &template.payload,
                chunked: false,
                id: &id,
                host_id: &template.host_id,
                trace_context: &[],
            };
            encode_signed_invocation(&mut buffer, cluster_key, &call, now_secs)?;
            let bytes = buffer.split().freeze();
            invocations.push(PooledInvocation { id, bytes });
        }
        Ok(InvocationPool { invocations })
    }

    /// The invocation for the `sequence`-th request (cycling).
    pub fn get(&self, sequence: u64) -> Option<&PooledInvocation> {
        let len = self.invocations.len() as u64;
        if len == 0 {
            return None;
        }
        self.invocations.get((sequence % len) as usize)
    }
}

/// A payload of `bytes` bytes: a repeating, recognisable pattern (so an echo can be checked).
pub fn payload(bytes: usize) -> Bytes {
    (0..bytes).map(|index| (index % 251) as u8).collect::<Vec<u8>>().into()
}

/// `InvocationResponse` (PROTOCOL §2.4), borrowed from the reply bytes. Unknown fields
/// (`traceContext`, OTP's `instance_id`) are ignored.
#[derive(Debug, Deserialize)]
pub struct ReplyRef<'a> {
    /// `None` when absent or nil (error replies may carry either).
    #[serde(borrow, default)]
    pub msg: Option<&'a [u8]>,
    #[serde(borrow, default)]
    pub invocation_id: &'a str,
    #[serde(borrow, default)]
    pub error: Option<&'a str>,
    #[serde(default)]
    pub content_length: Option<u64>,
}

/// Classify a reply to the invocation `expected_id`. With `expected_echo`, an ok reply must
/// carry exactly those bytes as `msg`.
pub fn classify_reply(payload: &[u8], expected_id: &str, expected_echo: Option<&[u8]>) -> Outcome {
    let reply: ReplyRef<'_> = match rmp_serde::from_slice(payload) {
        Ok(reply) => reply,
        Err(e) => return Outcome::Failure(format!("reply is not an InvocationResponse: {e}")),
    };
    if let Some(error) = reply.error.filter(|e| !e.is_empty()) {
        return Outcome::ErrorReply(error.to_string());
    }
    if reply.invocation_id != expected_id {
        return Outcome::Failure("reply invocation_id is not the request's id".to_string());
    }
    if let Some(expected) = expected_echo {
        let msg = reply.msg.unwrap_or_default();
        if reply.content_length.is_some_and(|length| length > msg.len() as u64) {
            return Outcome::Failure("reply is chunked; the echo cannot be checked".to_string());
        }
        if msg != expected {
            return Outcome::Failure("reply msg is not the payload (echo check)".to_string());
        }
    }
    Outcome::Ok
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use shardhost::auth::antiforgery::{check_capability, check_invocation, decode_invocation_token};
    use shardhost::wire::invocation::decode_invocation;
    use shardhost::wire::response::encode_response;

    use super::*;

    fn template(origin: Origin) -> InvocationTemplate {
        InvocationTemplate {
            origin,
            target_actor: nkeys::KeyPair::new_module().public_key(),
            operation: "HttpServer.HandleRequest".to_string(),
            payload: payload(300),
            host_id: nkeys::KeyPair::new_server().public_key(),
        }
    }

    #[test]
    fn pooled_invocations_pass_the_hosts_checks() {
        let cluster = nkeys::KeyPair::new_cluster();
        let issuers: HashSet<String> = [cluster.public_key()].into();
        for origin in [
            Origin::new_actor(),
            Origin::new_provider("wasmcloud:httpserver", "default"),
        ] {
            let template = template(origin);
            let pool = InvocationPool::build(&template, &cluster, 8, 1_700_000_000).unwrap();
            let ids: HashSet<&str> = pool.invocations.iter().map(|i| i.id.as_str()).collect();
            assert_eq!(ids.len(), 8, "every invocation has its own id");
            for pooled in &pool.invocations {
                let inv = decode_invocation(&pooled.bytes).unwrap();
                assert_eq!(inv.id, pooled.id);
                assert_eq!(inv.target.public_key, template.target_actor);
                assert_eq!(inv.origin.contract_id, template.origin.contract_id);
                assert_eq!(inv.msg, &template.payload[..]);
                assert_eq!(inv.content_length, Some(300));
                let token = decode_invocation_token(inv.encoded_claims).unwrap();
                check_invocation(&inv, &token, &issuers, 1_700_000_001).unwrap();
                let caps: HashSet<String> = ["wasmcloud:httpserver".to_string()].into();
                check_capability(&inv, Some(&caps)).unwrap();
                let key = nkeys::KeyPair::from_public_key(&token.issuer).unwrap();
                let signature_start = inv.encoded_claims.rfind('.').unwrap();
                key.verify(token.signed_part.as_bytes(), &token.signature).unwrap();
                assert_eq!(&inv.encoded_claims[..signature_start], token.signed_part);
            }
        }
        assert_eq!(pool_cycle_ids(), ["0", "1", "2", "0", "1"]);
    }

    fn pool_cycle_ids() -> Vec<String> {
        let pool = InvocationPool {
            invocations: (0..3)
                .map(|index| PooledInvocation {
                    id: index.to_string(),
                    bytes: Bytes::new(),
                })
                .collect(),
        };
        (0..5).map(|sequence| pool.get(sequence).unwrap().id.clone()).collect()
    }

    #[test]
    fn a_key_that_cannot_sign_is_an_error() {
        let public_only = nkeys::KeyPair::from_public_key(&nkeys::KeyPair::new_cluster().public_key()).unwrap();
        let result = InvocationPool::build(&template(Origin::new_actor()), &public_only, 1, 0);
        assert!(matches!(result, Err(LoadtestError::SignInvocation(_))));
        assert!(InvocationPool {
            invocations: Vec::new()
        }
        .get(3)
        .is_none());
    }

    fn response(id: &str, msg: &[u8], error: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_response(&mut out, id, msg, error, msg.len() as u64);
        out
    }

    #[test]
    fn replies_are_classified() {
        let echo = payload(10);
        assert_eq!(
            classify_reply(&response("id1", &echo, None), "id1", Some(&echo)),
            Outcome::Ok
        );
        assert_eq!(
            classify_reply(&response("id1", b"other", None), "id1", None),
            Outcome::Ok
        );
        assert_eq!(
            classify_reply(
                &response("id1", b"", Some("Anti-forgery check failed: x")),
                "id1",
                Some(&echo)
            ),
            Outcome::ErrorReply("Anti-forgery check failed: x".to_string())
        );
        assert!(matches!(
            classify_reply(&response("id2", &echo, None), "id1", None),
            Outcome::Failure(text) if text.contains("invocation_id")
        ));
        assert!(matches!(
            classify_reply(&response("id1", b"other", None), "id1", Some(&echo)),
            Outcome::Failure(text) if text.contains("echo")
        ));
        assert!(matches!(
            classify_reply(b"\xc1", "id1", None),
            Outcome::Failure(text) if text.contains("not an InvocationResponse")
        ));
        // An empty error string is not an error (some senders write "" rather than omit it).
        assert_eq!(
            classify_reply(&response("id1", &echo, Some("")), "id1", Some(&echo)),
            Outcome::Ok
        );
        // OTP-style error reply: nil msg, no content_length, an extra field.
        let otp = rmp_serde::to_vec_named(&serde_json::json!({
            "msg": serde_json::Value::Null, "invocation_id": "id1", "error": "not running",
            "instance_id": "x"
        }))
        .unwrap();
        assert_eq!(
            classify_reply(&otp, "id1", Some(&echo)),
            Outcome::ErrorReply("not running".to_string())
        );
    }

    #[test]
    fn payload_is_a_recognisable_pattern() {
        let bytes = payload(600);
        assert_eq!(bytes.len(), 600);
        assert_eq!(
            (bytes[0], bytes[250], bytes[251], bytes[599]),
            (0, 250, 0, (599 % 251) as u8)
        );
        assert!(payload(0).is_empty());
    }
}
