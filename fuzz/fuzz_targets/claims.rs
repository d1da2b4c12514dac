//! Feeds arbitrary text to both JWT decoders (invocation tokens and actor claims) and arbitrary
//! bytes to the actor-module claims walk. No input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardhost::auth::antiforgery::decode_invocation_token;
use shardhost::auth::claims::{decode_jwt, extract_jwt, module_hash, validate_actor};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_invocation_token(text);
        let _ = decode_jwt(text);
    }
    let _ = extract_jwt(data);
    let _ = module_hash(data);
    let _ = validate_actor(data, 0);
});
