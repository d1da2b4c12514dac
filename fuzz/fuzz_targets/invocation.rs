//! Feeds arbitrary bytes to `decode_invocation`, then — as a shard does for a decoded
//! invocation — computes both URLs, decodes the token and runs the claim checks. No input may
//! panic; a decoded invocation re-encodes to bytes that decode to the same fields. The same
//! bytes also go to `decode_response` (what a shard reads from providers and other hosts).
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use shardhost::auth::antiforgery::{check_capability, check_invocation, decode_invocation_token};
use shardhost::wire::invocation::{decode_invocation, encode_invocation, InvocationFields};
use shardhost::wire::response::decode_response;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = decode_response(data) {
        assert!(response.msg.len() <= data.len());
    }
    let Ok(inv) = decode_invocation(data) else { return };
    let mut url = String::new();
    inv.origin.url(&mut url);
    inv.target.target_url(inv.operation, &mut url);
    if let Ok(token) = decode_invocation_token(inv.encoded_claims) {
        let issuers: HashSet<String> = [token.issuer.clone()].into();
        let _ = check_invocation(&inv, &token, &issuers, 0);
    }
    let _ = check_capability(&inv, None);

    let trace: Vec<(&str, &str)> = inv.trace_context.iter().collect();
    let mut out = Vec::new();
    encode_invocation(
        &mut out,
        &InvocationFields {
            origin: inv.origin,
            target: inv.target,
            operation: inv.operation,
            msg: inv.msg,
            id: inv.id,
            encoded_claims: inv.encoded_claims,
            host_id: inv.host_id,
            content_length: inv.content_length.unwrap_or(0).max(inv.msg.len() as u64),
            trace_context: &trace,
        },
    );
    let again = decode_invocation(&out).expect("our own encoding decodes");
    assert_eq!(
        (again.origin, again.target, again.operation, again.msg),
        (inv.origin, inv.target, inv.operation, inv.msg)
    );
    assert_eq!(
        (again.id, again.encoded_claims, again.host_id),
        (inv.id, inv.encoded_claims, inv.host_id)
    );
    assert_eq!(again.trace_context.iter().collect::<Vec<_>>(), trace);
});
