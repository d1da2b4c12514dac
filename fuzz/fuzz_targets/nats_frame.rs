//! Feeds arbitrary bytes to the NATS server-op parser, frame after frame as a shard does, and
//! to the header parser: no input may panic, and offsets must stay inside the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardhost::wire::nats::{parse_headers, parse_server_op, ServerOp};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a max_payload, so the size checks see small limits too.
    let (max_payload_bytes, mut rest) = match data.split_first() {
        Some((limit, rest)) => (usize::from(*limit) * 64, rest),
        None => (0, data),
    };
    while let Ok(Some((op, used))) = parse_server_op(rest, max_payload_bytes) {
        assert!(used > 0 && used <= rest.len());
        if let ServerOp::HMsg { headers, payload, .. } = op {
            assert!(headers.end == payload.start && payload.end < used);
            let _ = parse_headers(&rest[headers]).map(|h| h.iter().count());
        }
        rest = &rest[used..];
    }
    let _ = parse_headers(data).map(|h| h.iter().count());
});
