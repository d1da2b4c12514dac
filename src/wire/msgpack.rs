//! A small MessagePack reader that borrows from its input, and the few writers the host needs.
//!
//! Owns: the msgpack format rules (markers, big-endian lengths, UTF-8 for `str`), skipping any
//! value including nested ones, and appending headers and scalars to a growable buffer.
//!
//! Plane: pure code, used by the shards on every inbound invocation. No I/O, no async, no
//! allocation while reading: strings and byte strings come back as slices of the input.
//!
//! Must never: panic on any input, recurse on input-controlled depth, or confuse "the input ends
//! too early" ([`MsgpackError::Truncated`]: the caller may have cut a frame short) with "the
//! input is not msgpack of the expected shape" (every other variant).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BufMut;

/// Deepest nesting of arrays/maps [`Reader::skip_value`] walks through. Real invocations nest 2
/// levels (`Invocation` → `WasmCloudEntity`/`traceContext`); unknown fields from newer peers
/// rarely add more than a few. The limit bounds the work on hostile input and the size of the
/// skip stack (one `u64` per level).
pub const DEPTH_MAX: usize = 32;

// Markers (msgpack spec). Fix families are ranges, checked in `Reader::read_header`.
const NIL: u8 = 0xc0;
const NEVER_USED: u8 = 0xc1;
const FALSE: u8 = 0xc2;
const TRUE: u8 = 0xc3;
const BIN8: u8 = 0xc4;
const BIN16: u8 = 0xc5;
const BIN32: u8 = 0xc6;
const EXT8: u8 = 0xc7;
const EXT16: u8 = 0xc8;
const EXT32: u8 = 0xc9;
const FLOAT32: u8 = 0xca;
const FLOAT64: u8 = 0xcb;
const UINT8: u8 = 0xcc;
const UINT16: u8 = 0xcd;
const UINT32: u8 = 0xce;
const UINT64: u8 = 0xcf;
const INT8: u8 = 0xd0;
const INT16: u8 = 0xd1;
const INT32: u8 = 0xd2;
const INT64: u8 = 0xd3;
const FIXEXT1: u8 = 0xd4;
const FIXEXT16: u8 = 0xd8;
const STR8: u8 = 0xd9;
const STR16: u8 = 0xda;
const STR32: u8 = 0xdb;
const ARRAY16: u8 = 0xdc;
const ARRAY32: u8 = 0xdd;
const MAP16: u8 = 0xde;
const MAP32: u8 = 0xdf;
const FIXMAP: u8 = 0x80;
const FIXARRAY: u8 = 0x90;
const FIXSTR: u8 = 0xa0;
const FIX_LEN_MAX_MAP: u32 = 15;
const FIX_LEN_MAX_STR: u32 = 31;
const POSITIVE_FIXINT_MAX: u8 = 0x7f;
const NEGATIVE_FIXINT_MIN: u8 = 0xe0;

/// Why a read failed. `Truncated` means "more bytes would help"; everything else means the
/// bytes present are wrong and more will not fix them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    #[error("msgpack input ends in the middle of a value")]
    Truncated,
    #[error("msgpack input uses the reserved marker 0xc1")]
    ReservedMarker,
    #[error("msgpack value has a different type than expected")]
    UnexpectedType,
    #[error("msgpack str is not valid UTF-8")]
    InvalidUtf8,
    #[error("msgpack integer does not fit the expected range")]
    IntegerRange,
    #[error("msgpack value nests deeper than the limit")]
    TooDeep,
}

impl MsgpackError {
    /// `true` for [`MsgpackError::Truncated`]: the input may be a prefix of a valid value.
    pub fn is_truncated(self) -> bool {
        self == MsgpackError::Truncated
    }
}

/// The type family of the next value, as told by its marker alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nil,
    Bool,
    /// Any integer encoding (positive/negative fixint, uint8–64, int8–64).
    Int,
    Float,
    Str,
    Bin,
    Array,
    Map,
    Ext,
}

/// What a marker announces: its kind, and either a scalar already known from the marker or
/// the length of what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    Nil,
    Bool(bool),
    Uint(u64),
    Int(i64),
    /// Bytes of the float payload (4 or 8).
    Float(usize),
    Str(u32),
    Bin(u32),
    Array(u32),
    Map(u32),
    /// Payload length, without the type byte.
    Ext(u32),
}

/// A cursor over msgpack bytes. Every `read_*` consumes one whole value on success; on error
/// the position is unspecified (callers drop the frame).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    input: &'a [u8],
    cursor: usize,
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Reader { input, cursor: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.cursor
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.input.get(self.cursor..).unwrap_or(&[])
    }

    /// `true` once every byte has been consumed.
    pub fn is_at_end(&self) -> bool {
        self.cursor >= self.input.len()
    }

    fn take(&mut self, len_bytes: usize) -> Result<&'a [u8], MsgpackError> {
        let end = self.cursor.checked_add(len_bytes).ok_or(MsgpackError::Truncated)?;
        let slice = self.input.get(self.cursor..end).ok_or(MsgpackError::Truncated)?;
        self.cursor = end;
        Ok(slice)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn take_u8(&mut self) -> Result<u8, MsgpackError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn take_u16(&mut self) -> Result<u16, MsgpackError> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    fn take_u32(&mut self) -> Result<u32, MsgpackError> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    /// The marker of the next value, without consuming it.
    pub fn peek_marker(&self) -> Result<u8, MsgpackError> {
        self.input.get(self.cursor).copied().ok_or(MsgpackError::Truncated)
    }

    /// The kind of the next value, without consuming it.
    pub fn peek_kind(&self) -> Result<Kind, MsgpackError> {
        let marker = self.peek_marker()?;
        Ok(match marker {
            0x00..=POSITIVE_FIXINT_MAX | UINT8..=INT64 | NEGATIVE_FIXINT_MIN..=0xff => Kind::Int,
            0x80..=0x8f | MAP16 | MAP32 => Kind::Map,
            0x90..=0x9f | ARRAY16 | ARRAY32 => Kind::Array,
            0xa0..=0xbf | STR8..=STR32 => Kind::Str,
            NIL => Kind::Nil,
            NEVER_USED => return Err(MsgpackError::ReservedMarker),
            FALSE | TRUE => Kind::Bool,
            BIN8..=BIN32 => Kind::Bin,
            EXT8..=EXT32 | FIXEXT1..=FIXEXT16 => Kind::Ext,
            FLOAT32 | FLOAT64 => Kind::Float,
        })
    }

    /// Consume a marker and any length/scalar bytes that belong to it (not the payload).
    fn read_header(&mut self) -> Result<Header, MsgpackError> {
        let marker = self.take_u8()?;
        Ok(match marker {
            0x00..=POSITIVE_FIXINT_MAX => Header::Uint(u64::from(marker)),
            0x80..=0x8f => Header::Map(u32::from(marker & 0x0f)),
            0x90..=0x9f => Header::Array(u32::from(marker & 0x0f)),
            0xa0..=0xbf => Header::Str(u32::from(marker & 0x1f)),
            NIL => Header::Nil,
            NEVER_USED => return Err(MsgpackError::ReservedMarker),
            FALSE => Header::Bool(false),
            TRUE => Header::Bool(true),
            BIN8 => Header::Bin(u32::from(self.take_u8()?)),
            BIN16 => Header::Bin(u32::from(self.take_u16()?)),
            BIN32 => Header::Bin(self.take_u32()?),
            EXT8 => Header::Ext(u32::from(self.take_u8()?)),
            EXT16 => Header::Ext(u32::from(self.take_u16()?)),
            EXT32 => Header::Ext(self.take_u32()?),
            FLOAT32 => Header::Float(4),
            FLOAT64 => Header::Float(8),
            UINT8 => Header::Uint(u64::from(self.take_u8()?)),
            UINT16 => Header::Uint(u64::from(self.take_u16()?)),
            UINT32 => Header::Uint(u64::from(self.take_u32()?)),
            UINT64 => Header::Uint(u64::from_be_bytes(self.take_array()?)),
            INT8 => Header::Int(i64::from(i8::from_be_bytes(self.take_array()?))),
            INT16 => Header::Int(i64::from(i16::from_be_bytes(self.take_array()?))),
            INT32 => Header::Int(i64::from(i32::from_be_bytes(self.take_array()?))),
            INT64 => Header::Int(i64::from_be_bytes(self.take_array()?)),
            // fixext 1, 2, 4, 8, 16: payload of 1 << (marker - 0xd4) bytes.
            FIXEXT1..=FIXEXT16 => Header::Ext(1u32 << (marker - FIXEXT1)),
            STR8 => Header::Str(u32::from(self.take_u8()?)),
            STR16 => Header::Str(u32::from(self.take_u16()?)),
            STR32 => Header::Str(self.take_u32()?),
            ARRAY16 => Header::Array(u32::from(self.take_u16()?)),
            ARRAY32 => Header::Array(self.take_u32()?),
            MAP16 => Header::Map(u32::from(self.take_u16()?)),
            MAP32 => Header::Map(self.take_u32()?),
            NEGATIVE_FIXINT_MIN..=0xff => Header::Int(i64::from(marker as i8)),
        })
    }

    fn take_len(&mut self, len: u32) -> Result<&'a [u8], MsgpackError> {
        // u32 always fits usize on the 32/64-bit targets we build for; a failure reads as
        // "more bytes than we have".
        let len_bytes = usize::try_from(len).map_err(|_| MsgpackError::Truncated)?;
        self.take(len_bytes)
    }

    /// Read `nil`.
    pub fn read_nil(&mut self) -> Result<(), MsgpackError> {
        match self.read_header()? {
            Header::Nil => Ok(()),
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// Consume a `nil` if one comes next; `Ok(false)` (nothing consumed) otherwise.
    pub fn try_read_nil(&mut self) -> Result<bool, MsgpackError> {
        if self.peek_marker()? == NIL {
            self.cursor += 1;
            return Ok(true);
        }
        Ok(false)
    }

    pub fn read_bool(&mut self) -> Result<bool, MsgpackError> {
        match self.read_header()? {
            Header::Bool(value) => Ok(value),
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// Any integer encoding whose value is ≥ 0 (rmp writes small `u64`s as fixint, and some
    /// encoders use signed markers for non-negative values).
    pub fn read_u64(&mut self) -> Result<u64, MsgpackError> {
        match self.read_header()? {
            Header::Uint(value) => Ok(value),
            Header::Int(value) => u64::try_from(value).map_err(|_| MsgpackError::IntegerRange),
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// Any integer encoding whose value fits `i64`.
    pub fn read_i64(&mut self) -> Result<i64, MsgpackError> {
        match self.read_header()? {
            Header::Uint(value) => i64::try_from(value).map_err(|_| MsgpackError::IntegerRange),
            Header::Int(value) => Ok(value),
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// float 32 (widened) or float 64.
    pub fn read_f64(&mut self) -> Result<f64, MsgpackError> {
        match self.read_header()? {
            Header::Float(4) => Ok(f64::from(f32::from_be_bytes(self.take_array()?))),
            Header::Float(_) => Ok(f64::from_be_bytes(self.take_array()?)),
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// A `str`, checked to be UTF-8, borrowed from the input.
    pub fn read_str(&mut self) -> Result<&'a str, MsgpackError> {
        std::str::from_utf8(self.read_str_bytes()?).map_err(|_| MsgpackError::InvalidUtf8)
    }

    /// The raw bytes of a `str`, not checked for UTF-8.
    pub fn read_str_bytes(&mut self) -> Result<&'a [u8], MsgpackError> {
        match self.read_header()? {
            Header::Str(len) => self.take_len(len),
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// A `bin`, borrowed from the input.
    pub fn read_bin(&mut self) -> Result<&'a [u8], MsgpackError> {
        match self.read_header()? {
            Header::Bin(len) => self.take_len(len),
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// A `bin` or a `str` (bytes not checked for UTF-8): for byte fields that some encoders
    /// write as strings.
    pub fn read_bin_or_str(&mut self) -> Result<&'a [u8], MsgpackError> {
        match self.read_header()? {
            Header::Bin(len) | Header::Str(len) => self.take_len(len),
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// An ext value: its type tag and payload.
    pub fn read_ext(&mut self) -> Result<(i8, &'a [u8]), MsgpackError> {
        match self.read_header()? {
            Header::Ext(len) => {
                let tag = i8::from_be_bytes(self.take_array()?);
                Ok((tag, self.take_len(len)?))
            }
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// A map header: the number of key/value pairs that follow.
    pub fn read_map_len(&mut self) -> Result<u32, MsgpackError> {
        match self.read_header()? {
            Header::Map(len) => Ok(len),
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// An array header: the number of elements that follow.
    pub fn read_array_len(&mut self) -> Result<u32, MsgpackError> {
        match self.read_header()? {
            Header::Array(len) => Ok(len),
            _ => Err(MsgpackError::UnexpectedType),
        }
    }

    /// Skip one value of any kind, including nested arrays and maps, without recursion. Strings
    /// are not checked for UTF-8 (their content is not used). Nesting deeper than [`DEPTH_MAX`]
    /// is an error. The loop is bounded by the input length: every value takes at least one byte.
    pub fn skip_value(&mut self) -> Result<(), MsgpackError> {
        // pending[d] = values still to skip at depth d; depth 0 is the value we were asked for.
        let mut pending = [0u64; DEPTH_MAX + 1];
        pending[0] = 1;
        let mut depth = 0usize;
        loop {
            while pending[depth] == 0 {
                if depth == 0 {
                    return Ok(());
                }
                depth -= 1;
            }
            pending[depth] -= 1;
            let children = match self.read_header()? {
                Header::Nil | Header::Bool(_) | Header::Uint(_) | Header::Int(_) => 0,
                Header::Float(len_bytes) => {
                    self.take(len_bytes)?;
                    0
                }
                Header::Str(len) | Header::Bin(len) => {
                    self.take_len(len)?;
                    0
                }
                Header::Ext(len) => {
                    self.take(1)?;
                    self.take_len(len)?;
                    0
                }
                Header::Array(len) => u64::from(len),
                Header::Map(len) => 2 * u64::from(len),
            };
            if children > 0 {
                if depth == DEPTH_MAX {
                    return Err(MsgpackError::TooDeep);
                }
                depth += 1;
                pending[depth] = children;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writers. Each appends the smallest encoding, as rmp does, to any growable `BufMut`
// (`Vec<u8>`, `BytesMut`). Lengths above `u32::MAX` cannot be encoded; the host's payload
// limits keep every length far below, so a longer one is our bug and asserts.
// ---------------------------------------------------------------------------------------------

fn len_u32(len: usize) -> u32 {
    assert!(len <= u32::MAX as usize, "msgpack length {len} does not fit u32");
    len as u32
}

/// A map header for `len` key/value pairs.
pub fn write_map_len(out: &mut impl BufMut, len: usize) {
    let len = len_u32(len);
    if len <= FIX_LEN_MAX_MAP {
        out.put_u8(FIXMAP | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(MAP16);
        out.put_u16(len);
    } else {
        out.put_u8(MAP32);
        out.put_u32(len);
    }
}

/// An array header for `len` elements.
pub fn write_array_len(out: &mut impl BufMut, len: usize) {
    let len = len_u32(len);
    if len <= FIX_LEN_MAX_MAP {
        out.put_u8(FIXARRAY | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(ARRAY16);
        out.put_u16(len);
    } else {
        out.put_u8(ARRAY32);
        out.put_u32(len);
    }
}

/// A `str`.
pub fn write_str(out: &mut impl BufMut, value: &str) {
    let len = len_u32(value.len());
    if len <= FIX_LEN_MAX_STR {
        out.put_u8(FIXSTR | len as u8);
    } else if let Ok(len) = u8::try_from(len) {
        out.put_u8(STR8);
        out.put_u8(len);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(STR16);
        out.put_u16(len);
    } else {
        out.put_u8(STR32);
        out.put_u32(len);
    }
    out.put_slice(value.as_bytes());
}

/// A `bin`.
pub fn write_bin(out: &mut impl BufMut, value: &[u8]) {
    let len = len_u32(value.len());
    if let Ok(len) = u8::try_from(len) {
        out.put_u8(BIN8);
        out.put_u8(len);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(BIN16);
        out.put_u16(len);
    } else {
        out.put_u8(BIN32);
        out.put_u32(len);
    }
    out.put_slice(value);
}

/// An unsigned integer in its smallest encoding.
pub fn write_uint(out: &mut impl BufMut, value: u64) {
    if value <= u64::from(POSITIVE_FIXINT_MAX) {
        out.put_u8(value as u8);
    } else if let Ok(value) = u8::try_from(value) {
        out.put_u8(UINT8);
        out.put_u8(value);
    } else if let Ok(value) = u16::try_from(value) {
        out.put_u8(UINT16);
        out.put_u16(value);
    } else if let Ok(value) = u32::try_from(value) {
        out.put_u8(UINT32);
        out.put_u32(value);
    } else {
        out.put_u8(UINT64);
        out.put_u64(value);
    }
}

/// Bytes [`write_map_len`] writes for a map of `len` pairs.
pub fn map_header_bytes(len: usize) -> usize {
    if len <= FIX_LEN_MAX_MAP as usize {
        1
    } else if len <= usize::from(u16::MAX) {
        3
    } else {
        5
    }
}

/// Bytes [`write_str`] writes for a string of `len` bytes.
pub fn str_bytes(len: usize) -> usize {
    let header = if len <= FIX_LEN_MAX_STR as usize {
        1
    } else if len <= usize::from(u8::MAX) {
        2
    } else if len <= usize::from(u16::MAX) {
        3
    } else {
        5
    };
    header + len
}

/// Bytes [`write_bin`] writes for `len` bytes of binary.
pub fn bin_bytes(len: usize) -> usize {
    let header = if len <= usize::from(u8::MAX) {
        2
    } else if len <= usize::from(u16::MAX) {
        3
    } else {
        5
    };
    header + len
}

/// Bytes [`write_uint`] writes for `value`.
pub fn uint_bytes(value: u64) -> usize {
    if value <= u64::from(POSITIVE_FIXINT_MAX) {
        1
    } else if value <= u64::from(u8::MAX) {
        2
    } else if value <= u64::from(u16::MAX) {
        3
    } else if value <= u64::from(u32::MAX) {
        5
    } else {
        9
    }
}

/// `nil`.
pub fn write_nil(out: &mut impl BufMut) {
    out.put_u8(NIL);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {

    use super::*;
    use proptest::prelude::*;

    /// Serializes as msgpack `bin` (what `serde_bytes` does), without the extra dependency.
    struct BinRef<'a>(&'a [u8]);

    impl serde::Serialize for BinRef<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    /// Unsigned values at every encoding boundary.
    const UINT_EDGES: [u64; 11] = [
        0,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64,
        u32::MAX as u64 + 1,
        u64::MAX,
    ];

    #[test]
    fn encoded_lengths_match_the_writers() {
        for len in [0usize, 1, 15, 31, 32, 127, 128, 255, 256, 65_535, 65_536, 70_000] {
            let text = "x".repeat(len);
            let mut out = Vec::new();
            write_str(&mut out, &text);
            assert_eq!(out.len(), str_bytes(len), "str {len}");
            out.clear();
            write_bin(&mut out, text.as_bytes());
            assert_eq!(out.len(), bin_bytes(len), "bin {len}");
            out.clear();
            write_map_len(&mut out, len);
            assert_eq!(out.len(), map_header_bytes(len), "map {len}");
        }
        for value in UINT_EDGES {
            let mut out = Vec::new();
            write_uint(&mut out, value);
            assert_eq!(out.len(), uint_bytes(value), "uint {value}");
        }
    }
    #[test]
    fn scalars_round_trip_and_match_rmp() {
        for value in UINT_EDGES {
            let mut ours = Vec::new();
            write_uint(&mut ours, value);
            assert_eq!(ours, rmp_serde::to_vec(&value).unwrap(), "{value}");
            let mut reader = Reader::new(&ours);
            assert_eq!(reader.read_u64(), Ok(value));
            assert!(reader.is_at_end());
        }
        for len in [0usize, 15, 16, 31, 32, 255, 256, 65535, 65536] {
            let text = "x".repeat(len);
            let mut ours = Vec::new();
            write_str(&mut ours, &text);
            assert_eq!(ours, rmp_serde::to_vec(&text).unwrap(), "str {len}");
            assert_eq!(Reader::new(&ours).read_str(), Ok(text.as_str()));

            let bytes = vec![7u8; len];
            let mut ours = Vec::new();
            write_bin(&mut ours, &bytes);
            assert_eq!(ours, rmp_serde::to_vec(&BinRef(&bytes)).unwrap(), "bin {len}");
            assert_eq!(Reader::new(&ours).read_bin(), Ok(bytes.as_slice()));

            // rmp-serde writes the header, then the entries: compare the header prefix.
            let mut ours = Vec::new();
            write_map_len(&mut ours, len);
            let map: std::collections::BTreeMap<u32, ()> = (0..len as u32).map(|k| (k, ())).collect();
            assert_eq!(ours, rmp_serde::to_vec(&map).unwrap()[..ours.len()], "map {len}");
            assert_eq!(Reader::new(&ours).read_map_len(), Ok(len as u32));

            let mut ours = Vec::new();
            write_array_len(&mut ours, len);
            assert_eq!(
                ours,
                rmp_serde::to_vec(&vec![(); len]).unwrap()[..ours.len()],
                "array {len}"
            );
            assert_eq!(Reader::new(&ours).read_array_len(), Ok(len as u32));
        }
        let mut nil = Vec::new();
        write_nil(&mut nil);
        assert_eq!(nil, [0xc0]);
        assert_eq!(Reader::new(&nil).read_nil(), Ok(()));
    }

    #[test]
    fn reads_every_integer_and_float_encoding() {
        let mut buf = Vec::new();
        for encoded in [
            rmp_serde::to_vec(&-1i64).unwrap(),
            rmp_serde::to_vec(&-100i64).unwrap(),
            vec![0xd3, 0, 0, 0, 0, 0, 0, 0, 5], // int64 5: a signed marker for a positive value
            rmp_serde::to_vec(&i64::MIN).unwrap(),
            rmp_serde::to_vec(&1.5f32).unwrap(),
            rmp_serde::to_vec(&-2.25f64).unwrap(),
            rmp_serde::to_vec(&true).unwrap(),
        ] {
            buf.extend_from_slice(&encoded);
        }
        let mut reader = Reader::new(&buf);
        assert_eq!(reader.read_i64(), Ok(-1));
        assert_eq!(reader.read_i64(), Ok(-100));
        assert_eq!(reader.read_u64(), Ok(5), "non-negative int64 reads as u64");
        assert_eq!(reader.clone().read_u64(), Err(MsgpackError::IntegerRange));
        assert_eq!(reader.read_i64(), Ok(i64::MIN));
        assert_eq!(reader.read_f64(), Ok(1.5));
        assert_eq!(reader.read_f64(), Ok(-2.25));
        assert_eq!(reader.read_bool(), Ok(true));
        assert!(reader.is_at_end());

        let mut big = Vec::new();
        write_uint(&mut big, u64::MAX);
        assert_eq!(Reader::new(&big).read_i64(), Err(MsgpackError::IntegerRange));
    }

    #[test]
    fn skips_nested_values_ext_and_float() {
        let mut buf = Vec::new();
        write_map_len(&mut buf, 2);
        write_str(&mut buf, "a");
        write_array_len(&mut buf, 3);
        buf.extend_from_slice(&[0xc7, 3, 5, 1, 2, 3]); // ext 8, type 5, 3 bytes
        buf.extend_from_slice(&[0xd8, 0xfe]); // fixext 16, type -2
        buf.extend_from_slice(&[0; 16]);
        buf.extend_from_slice(&rmp_serde::to_vec(&1.0f64).unwrap());
        write_str(&mut buf, "b");
        write_map_len(&mut buf, 1);
        write_bin(&mut buf, b"k");
        write_nil(&mut buf);
        buf.push(0x2a); // a trailing value that must stay unread
        let mut reader = Reader::new(&buf);
        reader.skip_value().unwrap();
        assert_eq!(reader.remaining(), &[0x2a]);

        let ext = [0xc7, 3, 5, 1, 2, 3];
        assert_eq!(Reader::new(&ext).read_ext(), Ok((5, &[1u8, 2, 3][..])));
        assert_eq!(Reader::new(&[0xd4, 0xff, 9]).read_ext(), Ok((-1, &[9u8][..])));
    }

    #[test]
    fn depth_limit_and_empty_containers() {
        let mut ok = vec![0x91; DEPTH_MAX];
        ok.push(0xc0);
        Reader::new(&ok).skip_value().unwrap();
        let mut deep = vec![0x91; DEPTH_MAX + 1];
        deep.push(0xc0);
        assert_eq!(Reader::new(&deep).skip_value(), Err(MsgpackError::TooDeep));
        // Empty containers do not count as a level.
        let mut reader = Reader::new(&[0x90, 0x80]);
        reader.skip_value().unwrap();
        reader.skip_value().unwrap();
        assert!(reader.is_at_end());
    }

    #[test]
    fn truncated_is_told_apart_from_invalid() {
        assert_eq!(Reader::new(&[]).read_str(), Err(MsgpackError::Truncated));
        assert_eq!(Reader::new(&[0xa3, b'a']).read_str(), Err(MsgpackError::Truncated));
        assert_eq!(
            Reader::new(&[0xdb, 0xff, 0xff]).read_str(),
            Err(MsgpackError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0xdd, 0xff, 0xff, 0xff, 0xff]).skip_value(),
            Err(MsgpackError::Truncated),
            "a huge declared array with nothing behind it"
        );
        assert_eq!(Reader::new(&[0xc1]).skip_value(), Err(MsgpackError::ReservedMarker));
        assert_eq!(Reader::new(&[0xc1]).peek_kind(), Err(MsgpackError::ReservedMarker));
        assert_eq!(
            Reader::new(&[0xa2, 0xc3, 0x28]).read_str(),
            Err(MsgpackError::InvalidUtf8)
        );
        assert_eq!(Reader::new(&[0xc4, 0]).read_str(), Err(MsgpackError::UnexpectedType));
        assert_eq!(Reader::new(&[0xa1, b'x']).read_bin(), Err(MsgpackError::UnexpectedType));
        assert_eq!(Reader::new(&[0xa1, b'x']).read_bin_or_str(), Ok(&b"x"[..]));
        assert!(MsgpackError::Truncated.is_truncated());
        assert!(!MsgpackError::InvalidUtf8.is_truncated());
    }

    #[test]
    fn writes_into_bytes_mut() {
        let mut out = bytes::BytesMut::new();
        write_map_len(&mut out, 1);
        write_str(&mut out, "k");
        write_uint(&mut out, 300);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.read_map_len(), Ok(1));
        assert_eq!(reader.read_str(), Ok("k"));
        assert_eq!(reader.read_u64(), Ok(300));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut reader = Reader::new(&bytes);
            while !reader.is_at_end() {
                if reader.skip_value().is_err() {
                    break;
                }
            }
            let _ = Reader::new(&bytes).peek_kind();
            let _ = Reader::new(&bytes).read_str();
            let _ = Reader::new(&bytes).read_ext();
            let _ = Reader::new(&bytes).read_f64();
        }

        /// Any value rmp-serde writes is skipped exactly, and every strict prefix is truncated.
        #[test]
        fn skip_consumes_exactly_one_value(
            value in proptest::collection::vec(
                (any::<String>(), proptest::collection::vec(any::<u8>(), 0..8), any::<i64>(), any::<Option<bool>>()),
                0..4,
            )
        ) {
            let bytes = rmp_serde::to_vec_named(&value).unwrap();
            let mut reader = Reader::new(&bytes);
            prop_assert_eq!(reader.skip_value(), Ok(()));
            prop_assert!(reader.is_at_end());
            for end in 0..bytes.len() {
                prop_assert_eq!(Reader::new(&bytes[..end]).skip_value(), Err(MsgpackError::Truncated));
            }
        }
    }
}
