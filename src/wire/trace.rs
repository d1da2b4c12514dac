//! W3C Trace Context in an invocation's `traceContext` map (PROTOCOL §2.3): the `traceparent`
//! value parsed and written, and the pair a call runs in ([`CallTrace`]) carried from an
//! inbound invocation to the guest's outbound calls.
//!
//! Pure: no I/O, no clock, no randomness (new span ids come from the caller). A malformed
//! `traceparent` is an error value, which callers treat as "no parent" (W3C §3.2.2: a vendor
//! that cannot parse it starts a new trace).

use std::sync::Arc;

/// The `traceContext` key of the parent (W3C `traceparent` header).
pub const TRACEPARENT: &str = "traceparent";
/// The `traceContext` key of the vendor state (W3C `tracestate` header).
pub const TRACESTATE: &str = "tracestate";
/// Length of a version-00 `traceparent`: `00-{32 hex}-{16 hex}-{2 hex}`.
pub const TRACEPARENT_CHARS: usize = 55;
/// Longest `tracestate` carried on (W3C §3.3.1.1: 32 members of up to 256 + 1 chars, rounded
/// down to what propagators keep); a longer one is dropped, the parent is kept.
pub const TRACESTATE_CHARS_MAX: usize = 512;
/// The `sampled` bit of the trace flags.
pub const FLAG_SAMPLED: u8 = 0x01;

/// Why a `traceparent` value was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("traceparent is {0} characters; version 00 has 55")]
    Length(usize),
    #[error("traceparent has a malformed {0} field")]
    Field(&'static str),
    #[error("traceparent version ff is invalid")]
    ForbiddenVersion,
    #[error("traceparent has an all-zero {0}")]
    ZeroId(&'static str),
}

/// A parsed `traceparent`: the trace, the span a callee's work is parented on, and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parse a `traceparent` value. Version 00 must be exactly 55 characters; a later version
    /// (W3C §3.2.4) may carry more after a `-`, which is ignored. Hex must be lowercase.
    pub fn parse(value: &str) -> Result<TraceParent, TraceParentError> {
        let bytes = value.as_bytes();
        if bytes.len() < TRACEPARENT_CHARS {
            return Err(TraceParentError::Length(bytes.len()));
        }
        let version = hex_field::<1>(&bytes[0..2], "version")?[0];
        if version == 0xff {
            return Err(TraceParentError::ForbiddenVersion);
        }
        if version == 0 && bytes.len() != TRACEPARENT_CHARS {
            return Err(TraceParentError::Length(bytes.len()));
        }
        if version != 0 && bytes.len() > TRACEPARENT_CHARS && bytes[TRACEPARENT_CHARS] != b'-' {
            return Err(TraceParentError::Field("trailer"));
        }
        for (at, name) in [(2, "version"), (35, "trace-id"), (52, "parent-id")] {
            if bytes[at] != b'-' {
                return Err(TraceParentError::Field(name));
            }
        }
        let trace_id = hex_field::<16>(&bytes[3..35], "trace-id")?;
        let span_id = hex_field::<8>(&bytes[36..52], "parent-id")?;
        let flags = hex_field::<1>(&bytes[53..55], "trace-flags")?[0];
        if trace_id == [0; 16] {
            return Err(TraceParentError::ZeroId("trace-id"));
        }
        if span_id == [0; 8] {
            return Err(TraceParentError::ZeroId("parent-id"));
        }
        Ok(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// The same trace and flags, parented on `span_id` (a child span of ours).
    pub fn with_span(&self, span_id: [u8; 8]) -> TraceParent {
        TraceParent { span_id, ..*self }
    }

    /// The version-00 `traceparent` value (55 characters).
    pub fn header(&self) -> String {
        let mut buf = [0u8; TRACEPARENT_CHARS];
        self.write_header(&mut buf).to_string()
    }

    /// [`TraceParent::header`] written into `buf`, without allocating (the reply path).
    pub fn write_header<'b>(&self, buf: &'b mut [u8; TRACEPARENT_CHARS]) -> &'b str {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut at = 0;
        let mut put = |byte: u8| {
            if let Some(slot) = buf.get_mut(at) {
                *slot = byte;
            }
            at += 1;
        };
        put(b'0');
        put(b'0');
        put(b'-');
        for (i, byte) in self
            .trace_id
            .iter()
            .chain(&self.span_id)
            .chain([&self.flags])
            .enumerate()
        {
            if i == 16 || i == 24 {
                put(b'-');
            }
            put(DIGITS[usize::from(byte >> 4)]);
            put(DIGITS[usize::from(byte & 0x0f)]);
        }
        // Only ASCII hex digits and dashes were written.
        std::str::from_utf8(buf).unwrap_or_default()
    }
}

/// `N` bytes from `2N` lowercase hex digits.
fn hex_field<const N: usize>(digits: &[u8], name: &'static str) -> Result<[u8; N], TraceParentError> {
    let mut out = [0u8; N];
    if digits.len() != N * 2 {
        return Err(TraceParentError::Field(name));
    }
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = nibble(pair[0]).ok_or(TraceParentError::Field(name))?;
        let low = nibble(pair[1]).ok_or(TraceParentError::Field(name))?;
        *slot = (high << 4) | low;
    }
    Ok(out)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// The span a call runs in and the vendor state that travels with it: what the guest's
/// outbound calls are parented on. Cheap to clone (the state is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTrace {
    pub parent: TraceParent,
    pub state: Option<Arc<str>>,
}

impl CallTrace {
    /// The same trace and state, parented on `span_id` (a child span of ours).
    pub fn child(&self, span_id: [u8; 8]) -> CallTrace {
        CallTrace {
            parent: self.parent.with_span(span_id),
            state: self.state.clone(),
        }
    }

    /// The `traceContext` pairs of a call made in this context, written into `buf` without
    /// allocating: `traceparent`, then `tracestate` when there is one (`len` pairs).
    pub fn pairs<'b>(&'b self, buf: &'b mut [u8; TRACEPARENT_CHARS]) -> ([(&'b str, &'b str); 2], usize) {
        let traceparent = self.parent.write_header(buf);
        let state = self.state.as_deref();
        let pairs = [(TRACEPARENT, traceparent), (TRACESTATE, state.unwrap_or(""))];
        (pairs, if state.is_some() { 2 } else { 1 })
    }
}

/// What an inbound `traceContext` map names: its parent (when one parses) and its state.
/// Keys match case-insensitively (HTTP header names, as propagators write them).
pub fn extract<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Option<CallTrace>, TraceParentError> {
    let mut parent = None;
    let mut state = None;
    for (key, value) in entries {
        if key.eq_ignore_ascii_case(TRACEPARENT) {
            parent = Some(value);
        } else if key.eq_ignore_ascii_case(TRACESTATE) {
            state = Some(value);
        }
    }
    let Some(parent) = parent else {
        return Ok(None);
    };
    let parent = TraceParent::parse(parent.trim())?;
    let state = state
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= TRACESTATE_CHARS_MAX)
        .map(Arc::from);
    Ok(Some(CallTrace { parent, state }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn parses_the_w3c_example_and_writes_it_back() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(hex(&parent.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&parent.span_id), "00f067aa0ba902b7");
        assert!(parent.sampled());
        assert_eq!(parent.header(), EXAMPLE);
        let mut buf = [0u8; TRACEPARENT_CHARS];
        assert_eq!(parent.write_header(&mut buf), EXAMPLE);
        let child = parent.with_span([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            child.header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
    }

    #[test]
    fn refuses_what_w3c_says_to_ignore() {
        let cases = [
            ("", TraceParentError::Length(0)),
            (&EXAMPLE[..54], TraceParentError::Length(54)),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                TraceParentError::Field("trace-id"),
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                TraceParentError::ZeroId("trace-id"),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                TraceParentError::ZeroId("parent-id"),
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::ForbiddenVersion,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Field("version"),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                TraceParentError::Length(61),
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01xextra",
                TraceParentError::Field("trailer"),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(TraceParent::parse(value), Err(expected), "{value:?}");
        }
        // A later version with a trailer is read as far as 00 goes.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next";
        assert!(!TraceParent::parse(later).unwrap().sampled());
    }

    #[test]
    fn extract_matches_keys_in_any_case_and_keeps_the_state() {
        let entries = [("TraceParent", EXAMPLE), ("TRACESTATE", " congo=t61rcWkgMzE ")];
        let trace = extract(entries.into_iter()).unwrap().unwrap();
        assert_eq!(trace.parent.header(), EXAMPLE);
        assert_eq!(trace.state.as_deref(), Some("congo=t61rcWkgMzE"));
        let child = trace.child([9; 8]);
        let mut buf = [0u8; TRACEPARENT_CHARS];
        let (pairs, len) = child.pairs(&mut buf);
        assert_eq!(len, 2);
        assert_eq!(pairs[0].1, "00-4bf92f3577b34da6a3ce929d0e0e4736-0909090909090909-01");
        assert_eq!(pairs[1], (TRACESTATE, "congo=t61rcWkgMzE"));
    }

    #[test]
    fn extract_without_a_parent_is_none_and_an_oversized_state_is_dropped() {
        assert_eq!(extract([("tracestate", "a=b")].into_iter()), Ok(None));
        assert_eq!(extract(std::iter::empty()), Ok(None));
        let long = "a=".to_string() + &"b".repeat(TRACESTATE_CHARS_MAX);
        let trace = extract([(TRACEPARENT, EXAMPLE), (TRACESTATE, long.as_str())].into_iter())
            .unwrap()
            .unwrap();
        assert_eq!(trace.state, None);
        assert!(extract([(TRACEPARENT, "garbage")].into_iter()).is_err());
    }

    proptest! {
        #[test]
        fn header_round_trips(trace_id in any::<[u8; 16]>(), span_id in any::<[u8; 8]>(), flags in any::<u8>()) {
            prop_assume!(trace_id != [0; 16] && span_id != [0; 8]);
            let parent = TraceParent { trace_id, span_id, flags };
            prop_assert_eq!(TraceParent::parse(&parent.header()), Ok(parent));
        }

        #[test]
        fn parse_never_panics(value in ".{0,80}") {
            let _ = TraceParent::parse(&value);
        }
    }
}
