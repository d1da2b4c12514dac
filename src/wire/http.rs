//! `wasmcloud:httpserver` payloads (wasmcloud-interface-httpserver 0.x, the smithy model the
//! httpserver provider 0.19 and every 0.x HTTP actor speak): the `HttpRequest` a server hands to
//! `HttpServer.HandleRequest` and the `HttpResponse` the actor answers, as msgpack named maps.
//! The ground the built-in HTTP server (issue 20) stands on: it encodes a request straight from
//! the parsed HTTP head into the guest's payload and reads the guest's response in place.
//!
//! Pure: no I/O, no async; decoding borrows, encoding writes into a growable buffer. Liberal as
//! the provider's serde decoder is (§16): keys in any order, unknown keys skipped, missing
//! fields defaulted (`statusCode` 200), `body` as bin or str.

use bytes::BufMut;

use super::msgpack::{self, Kind, MsgpackError, Reader};

/// Why an actor's `HttpResponse` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpResponseError {
    #[error("HttpResponse is not a msgpack map: {0}")]
    Shape(MsgpackError),
    #[error("HttpResponse field {field}: {error}")]
    Field { field: &'static str, error: MsgpackError },
    #[error("HttpResponse statusCode {0} is not an HTTP status (100 to 999)")]
    Status(u64),
    #[error("HttpResponse field {0} appears twice")]
    Duplicate(&'static str),
}

/// A request as the server saw it; header values keep their order per name.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequestFields<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query, without `?` (empty when none).
    pub query_string: &'a str,
    /// `(name, values)`, one entry per distinct header name (lowercase, as HTTP/1.1 servers
    /// hand them on).
    pub header: &'a [(&'a str, &'a [&'a str])],
    pub body: &'a [u8],
}

/// Encode an `HttpRequest` as wasmbus-rpc's serde writes it: `method`, `path`,
/// `queryString`, `header` (map of name → array of values), `body` (bin).
pub fn encode_request(out: &mut impl BufMut, request: &HttpRequestFields<'_>) {
    msgpack::write_map_len(out, 5);
    msgpack::write_str(out, "method");
    msgpack::write_str(out, request.method);
    msgpack::write_str(out, "path");
    msgpack::write_str(out, request.path);
    msgpack::write_str(out, "queryString");
    msgpack::write_str(out, request.query_string);
    msgpack::write_str(out, "header");
    msgpack::write_map_len(out, request.header.len());
    for (name, values) in request.header {
        msgpack::write_str(out, name);
        msgpack::write_array_len(out, values.len());
        for value in *values {
            msgpack::write_str(out, value);
        }
    }
    msgpack::write_str(out, "body");
    msgpack::write_bin(out, request.body);
}

/// An actor's `HttpResponse`, borrowed from its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponseRef<'a> {
    pub status_code: u16,
    /// `(name, value)` in the order written, one pair per value.
    pub header: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// Read an `HttpResponse`: `statusCode` (default 200), `header` (name → array of values, or
/// → one string, as some actors write it), `body` (bin or str; default empty).
pub fn decode_response(bytes: &[u8]) -> Result<HttpResponseRef<'_>, HttpResponseError> {
    let mut reader = Reader::new(bytes);
    let fields = reader.read_map_len().map_err(HttpResponseError::Shape)?;
    let mut status: Option<u16> = None;
    let mut header: Option<Vec<(&str, &str)>> = None;
    let mut body: Option<&[u8]> = None;
    for _ in 0..fields {
        let key = reader.read_bin_or_str().map_err(HttpResponseError::Shape)?;
        match key {
            b"statusCode" => {
                let code = reader.read_u64().map_err(|error| field("statusCode", error))?;
                let code = u16::try_from(code)
                    .ok()
                    .filter(|c| (100..=999).contains(c))
                    .ok_or(HttpResponseError::Status(code))?;
                once(&mut status, code, "statusCode")?;
            }
            b"header" => once(&mut header, read_header(&mut reader)?, "header")?,
            b"body" => {
                let value = reader.read_bin_or_str().map_err(|error| field("body", error))?;
                once(&mut body, value, "body")?;
            }
            _ => reader.skip_value().map_err(HttpResponseError::Shape)?,
        }
    }
    Ok(HttpResponseRef {
        status_code: status.unwrap_or(200),
        header: header.unwrap_or_default(),
        body: body.unwrap_or_default(),
    })
}

fn field(name: &'static str, error: MsgpackError) -> HttpResponseError {
    HttpResponseError::Field { field: name, error }
}

fn once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), HttpResponseError> {
    if slot.is_some() {
        return Err(HttpResponseError::Duplicate(name));
    }
    *slot = Some(value);
    Ok(())
}

fn read_header<'a>(reader: &mut Reader<'a>) -> Result<Vec<(&'a str, &'a str)>, HttpResponseError> {
    let at = |error| field("header", error);
    if reader.try_read_nil().map_err(at)? {
        return Ok(Vec::new());
    }
    let names = reader.read_map_len().map_err(at)?;
    let mut pairs = Vec::with_capacity(names as usize);
    for _ in 0..names {
        let name = reader.read_str().map_err(at)?;
        match reader.peek_kind().map_err(at)? {
            Kind::Array => {
                let values = reader.read_array_len().map_err(at)?;
                for _ in 0..values {
                    pairs.push((name, reader.read_str().map_err(at)?));
                }
            }
            _ => pairs.push((name, reader.read_str().map_err(at)?)),
        }
    }
    Ok(pairs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;

    /// wasmcloud-interface-httpserver's structs, as its generated code derives them.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct HttpRequest {
        method: String,
        path: String,
        #[serde(rename = "queryString")]
        query_string: String,
        header: HashMap<String, Vec<String>>,
        #[serde(with = "crate::wire::invocation::mirror::bin")]
        body: Vec<u8>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct HttpResponse {
        #[serde(rename = "statusCode")]
        status_code: u16,
        header: HashMap<String, Vec<String>>,
        #[serde(with = "crate::wire::invocation::mirror::bin")]
        body: Vec<u8>,
    }

    #[test]
    fn a_request_reads_back_as_the_interface_crate_would() {
        let accept: &[&str] = &["text/html", "application/json"];
        let host: &[&str] = &["example.com"];
        let header = [("accept", accept), ("host", host)];
        let request = HttpRequestFields {
            method: "POST",
            path: "/orders/7",
            query_string: "verbose=1&x=%20",
            header: &header,
            body: b"{\"qty\":2}",
        };
        let mut out = Vec::new();
        encode_request(&mut out, &request);
        let theirs: HttpRequest = rmp_serde::from_slice(&out).unwrap();
        assert_eq!(theirs.method, "POST");
        assert_eq!(theirs.path, "/orders/7");
        assert_eq!(theirs.query_string, "verbose=1&x=%20");
        assert_eq!(theirs.header["accept"], ["text/html", "application/json"]);
        assert_eq!(theirs.header["host"], ["example.com"]);
        assert_eq!(theirs.body, b"{\"qty\":2}");
    }

    #[test]
    fn a_response_written_by_the_interface_crate_is_read() {
        let theirs = HttpResponse {
            status_code: 201,
            header: [("set-cookie".to_string(), vec!["a=1".to_string(), "b=2".to_string()])].into(),
            body: b"created".to_vec(),
        };
        let bytes = rmp_serde::to_vec_named(&theirs).unwrap();
        let ours = decode_response(&bytes).unwrap();
        assert_eq!(ours.status_code, 201);
        assert_eq!(ours.header, [("set-cookie", "a=1"), ("set-cookie", "b=2")]);
        assert_eq!(ours.body, b"created");
    }

    #[test]
    fn defaults_and_liberal_shapes() {
        // Empty map: 200, no headers, empty body (the interface's Default).
        let ours = decode_response(&[0x80]).unwrap();
        assert_eq!((ours.status_code, ours.header.len(), ours.body), (200, 0, &b""[..]));
        // A header value as one string, the body as str, an unknown key.
        let mut out = Vec::new();
        msgpack::write_map_len(&mut out, 3);
        msgpack::write_str(&mut out, "header");
        msgpack::write_map_len(&mut out, 1);
        msgpack::write_str(&mut out, "content-type");
        msgpack::write_str(&mut out, "text/plain");
        msgpack::write_str(&mut out, "body");
        msgpack::write_str(&mut out, "hi");
        msgpack::write_str(&mut out, "extra");
        msgpack::write_uint(&mut out, 9);
        let ours = decode_response(&out).unwrap();
        assert_eq!(ours.header, [("content-type", "text/plain")]);
        assert_eq!(ours.body, b"hi");
    }

    #[test]
    fn bad_responses_are_errors() {
        let status = |code: u64| {
            let mut out = Vec::new();
            msgpack::write_map_len(&mut out, 1);
            msgpack::write_str(&mut out, "statusCode");
            msgpack::write_uint(&mut out, code);
            decode_response(&out).map(|r| r.status_code)
        };
        assert_eq!(status(70_000), Err(HttpResponseError::Status(70_000)));
        assert_eq!(status(42), Err(HttpResponseError::Status(42)));
        assert_eq!(status(503), Ok(503));
        assert!(matches!(
            decode_response(b"\x93\x01\x02\x03"),
            Err(HttpResponseError::Shape(_))
        ));
        assert!(decode_response(&[]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_response(&bytes);
        }

        #[test]
        fn requests_round_trip(method in "[A-Z]{1,7}", path in "/[a-z0-9/]{0,20}", query in "[a-z=&]{0,12}",
                               body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let values: &[&str] = &["v"];
            let header = [("x-test", values)];
            let request = HttpRequestFields { method: &method, path: &path, query_string: &query, header: &header, body: &body };
            let mut out = Vec::new();
            encode_request(&mut out, &request);
            let theirs: HttpRequest = rmp_serde::from_slice(&out).unwrap();
            prop_assert_eq!(theirs, HttpRequest {
                method: method.clone(), path: path.clone(), query_string: query.clone(),
                header: [("x-test".to_string(), vec!["v".to_string()])].into(), body: body.clone(),
            });
        }
    }
}
