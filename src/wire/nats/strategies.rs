//! Proptest strategies shared by the parser's and the encoder's tests: payloads dense in CR
//! and LF, and header pairs in the shapes NATS headers allow.

#![cfg(test)]

use proptest::prelude::*;

/// Payload bytes, often holding what looks like a frame end.
pub fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        // Dense in CR and LF, so the payload often holds what looks like a frame end.
        proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'M'), any::<u8>()], 0..64),
    ]
}

/// Header names and values NATS accepts (names without `:`, values trimmed).
pub fn header_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("[A-Za-z][A-Za-z0-9\\-]{0,12}", "([!-~]([ -~]{0,20}[!-~])?)?"), 0..4)
}
