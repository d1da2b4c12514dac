//! A raw HTTP/1.1 client for the built-in HTTP server's tests: requests are written as bytes
//! (so a test controls keep-alive, pipelining, chunking and slow heads exactly) and responses
//! parsed by `Content-Length` or chunked framing. Blocking, bounded by [`HTTP_TIMEOUT`]; run it
//! with `spawn_blocking` from async tests ([`exchange`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Longest one exchange may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One parsed response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse one response from the front of `buf`: the response and the bytes it took, or `None`
/// while incomplete.
fn parse(buf: &[u8]) -> Option<(RawResponse, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).expect("response head is text");
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if response.header("transfer-encoding") == Some("chunked") {
        let mut at = head_end;
        loop {
            let line_end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&buf[at..line_end]).ok()?.trim(), 16).ok()?;
            let data = line_end + 2;
            if buf.len() < data + size + 2 {
                return None;
            }
            if size == 0 {
                return Some((response, data + 2));
            }
            response.body.extend_from_slice(&buf[data..data + size]);
            at = data + size + 2;
        }
    }
    let length: usize = response
        .header("content-length")
        .map_or(0, |v| v.parse().expect("content-length"));
    if buf.len() < head_end + length {
        return None;
    }
    response.body = buf[head_end..head_end + length].to_vec();
    Some((response, head_end + length))
}

/// Write `raw` on `stream` and read `count` responses.
pub fn exchange_on<S: Read + Write>(stream: &mut S, raw: &[u8], count: usize) -> Result<Vec<RawResponse>, String> {
    stream.write_all(raw).map_err(|e| format!("send: {e}"))?;
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while responses.len() < count {
        if let Some((response, used)) = parse(&buf) {
            buf.drain(..used);
            responses.push(response);
            continue;
        }
        if Instant::now() > deadline {
            return Err(format!("{} of {count} responses in {HTTP_TIMEOUT:?}", responses.len()));
        }
        let read = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if read == 0 {
            // `partial` bytes of a response that never ended (0: closed between responses).
            return Err(format!(
                "closed after {} of {count} responses (partial {} bytes)",
                responses.len(),
                buf.len()
            ));
        }
        buf.extend_from_slice(&chunk[..read]);
    }
    Ok(responses)
}

/// A connection to `127.0.0.1:port` whose reads give up after [`HTTP_TIMEOUT`].
pub fn connect(port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Connect to `127.0.0.1:port`, write `raw`, read `count` responses (on a blocking thread).
pub async fn exchange(port: u16, raw: Vec<u8>, count: usize) -> Result<Vec<RawResponse>, String> {
    tokio::task::spawn_blocking(move || {
        let mut stream = connect(port)?;
        exchange_on(&mut stream, &raw, count)
    })
    .await
    .expect("client thread")
}

/// One `GET path` on a new connection.
pub async fn get(port: u16, path: &str) -> Result<RawResponse, String> {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes();
    exchange(port, raw, 1).await.map(|mut r| r.remove(0))
}
