//! The `http` scenario: a closed loop of keep-alive HTTP/1.1 connections, each sending the
//! next `GET` as soon as the previous response is in, against any HTTP server — the built-in
//! HTTP server, the httpserver provider in front of the same actor, or the bare floor
//! ([`serve_floor`]). The report is the same JSON as `run`'s (HDR latency, host CPU), so
//! `summarize` and `plot` read it; `--floor` marks the floor's report `raw`, which the summary
//! divides the others by.
//!
//! The client is a few lines over tokio's `TcpStream` (responses parsed by `httparse`, framed
//! by `Content-Length` or chunked), so its own cost per request stays far below a server's.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::engine::environment;
use crate::error::LoadtestError;
use crate::procstat::{self, Process};
use crate::schedule::Pacing;
use crate::stats::{throughput, ConfigReport, CpuReport, OriginReport, Outcome, Recorder, RunReport};

/// Bytes one read may take.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Headers a response may carry.
const RESPONSE_HEADERS_MAX: usize = 32;
/// Wait before reconnecting a connection that failed.
const RECONNECT_WAIT_MS: u64 = 50;
/// The floor's response body.
pub const FLOOR_BODY: &[u8] = b"hello from the floor";

/// One `http` run.
#[derive(Debug, Clone)]
pub struct HttpRun {
    pub address: SocketAddr,
    pub path: String,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub host_pid: Option<u32>,
    /// Report as the floor (`scenario: raw`).
    pub floor: bool,
}

/// A response's status and how many bytes of the buffer it took; `None` while incomplete.
pub fn parse_response(buf: &[u8]) -> Result<Option<(u16, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked")) {
        return chunked_end(buf, head).map(|end| end.map(|end| (status, end)));
    }
    let length = match header("content-length") {
        Some(value) => std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or("bad content-length")?,
        None => 0,
    };
    Ok((buf.len() >= head + length).then_some((status, head + length)))
}

/// Where a chunked body that starts at `at` ends, once it is all in `buf`.
fn chunked_end(buf: &[u8], mut at: usize) -> Result<Option<usize>, String> {
    loop {
        let Some(line) = buf
            .get(at..)
            .and_then(|rest| rest.windows(2).position(|w| w == b"\r\n"))
        else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&buf[at..at + line]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        let data = at + line + 2;
        if size == 0 {
            // No trailers from the servers measured: the final CRLF follows.
            return Ok((buf.len() >= data + 2).then_some(data + 2));
        }
        if buf.len() < data + size + 2 {
            return Ok(None);
        }
        at = data + size + 2;
    }
}

/// One connection's loop until `end`: requests before `measure_from` are warmup.
async fn drive_connection(run: &HttpRun, recorder: &RefCell<Recorder>, measure_from: Instant, end: Instant) {
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", run.path, run.address).into_bytes();
    let mut buf = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    'connect: while Instant::now() < end {
        let mut stream = match TcpStream::connect(run.address).await {
            Ok(stream) => stream,
            Err(e) => {
                record(
                    recorder,
                    measure_from,
                    Instant::now(),
                    Outcome::Failure(format!("connect: {e}")),
                );
                tokio::time::sleep(Duration::from_millis(RECONNECT_WAIT_MS)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        buf.clear();
        while Instant::now() < end {
            let sent = Instant::now();
            let exchange = async {
                stream.write_all(&request).await.map_err(|e| format!("send: {e}"))?;
                loop {
                    if let Some((status, used)) = parse_response(&buf)? {
                        buf.drain(..used);
                        return Ok::<u16, String>(status);
                    }
                    let read = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
                    if read == 0 {
                        return Err("the server closed the connection".to_string());
                    }
                    buf.extend_from_slice(&chunk[..read]);
                }
            };
            let outcome = match tokio::time::timeout(run.timeout, exchange).await {
                Ok(Ok(200)) => Outcome::Ok,
                Ok(Ok(status)) => Outcome::ErrorReply(format!("HTTP {status}")),
                Ok(Err(why)) => Outcome::Failure(why),
                Err(_) => Outcome::Timeout,
            };
            let broken = !matches!(outcome, Outcome::Ok | Outcome::ErrorReply(_));
            record(recorder, measure_from, sent, outcome);
            if broken {
                continue 'connect;
            }
        }
    }
}

fn record(recorder: &RefCell<Recorder>, measure_from: Instant, sent: Instant, outcome: Outcome) {
    let mut recorder = recorder.borrow_mut();
    if sent < measure_from {
        recorder.warmup_sent += 1;
        return;
    }
    let latency_us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
    recorder.record(&outcome, latency_us, 0);
}

/// Run the closed loop and build the report.
pub async fn run(run: &HttpRun) -> Result<RunReport, LoadtestError> {
    if let Some(pid) = run.host_pid {
        procstat::cpu_us(Process::Pid(pid))?;
    }
    TcpStream::connect(run.address)
        .await
        .map_err(|e| LoadtestError::Connect {
            url: run.address.to_string(),
            reason: e.to_string(),
        })?;
    let environment = environment();
    let recorder = RefCell::new(Recorder::new()?);
    let start = Instant::now();
    let measure_from = start + run.warmup;
    let end = measure_from + run.duration;
    let sample = |pid: Option<u32>| {
        (
            pid.and_then(|p| procstat::cpu_us(Process::Pid(p)).ok()),
            procstat::cpu_us(Process::Own).ok(),
            Instant::now(),
        )
    };
    let samples = async {
        tokio::time::sleep_until(measure_from.into()).await;
        let first = sample(run.host_pid);
        tokio::time::sleep_until(end.into()).await;
        (first, sample(run.host_pid))
    };
    let loops =
        futures::future::join_all((0..run.connections).map(|_| drive_connection(run, &recorder, measure_from, end)));
    let (((host_start, own_start, at_start), (host_end, own_end, at_end)), _) = futures::join!(samples, loops);
    let recorder = recorder.into_inner();
    let window_us = u64::try_from(run.duration.as_micros()).unwrap_or(u64::MAX);
    let cpu_window_us = u64::try_from((at_end - at_start).as_micros()).unwrap_or(u64::MAX);
    let replies = recorder.counts.replies();
    let cpu = |a: Option<u64>, b: Option<u64>| Some(CpuReport::new(b?.saturating_sub(a?), cpu_window_us, replies));
    Ok(RunReport {
        tool: env!("CARGO_BIN_NAME"),
        tool_version: env!("CARGO_PKG_VERSION"),
        environment,
        config: config_report(run),
        window_secs: run.duration.as_secs_f64(),
        cpu_window_secs: cpu_window_us as f64 / 1e6,
        warmup_sent: recorder.warmup_sent,
        throughput: throughput(&recorder.counts, window_us),
        latency_us: recorder.latency_summary(),
        send_lag_us: recorder.send_lag_summary(),
        latency_histogram_us: recorder.latency_buckets(),
        host_cpu: cpu(host_start, host_end),
        loadgen_cpu: cpu(own_start, own_end),
        outstanding_cap_waits: None,
        counts: recorder.counts,
    })
}

/// The run's configuration as `run`'s reports show it (no NATS, no actor: an HTTP address).
fn config_report(run: &HttpRun) -> ConfigReport {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    ConfigReport {
        nats_url: String::new(),
        lattice: String::new(),
        subject: format!("http://{}{}", run.address, run.path),
        scenario: if run.floor { "raw" } else { "http" },
        actor: String::new(),
        operation: "GET".to_string(),
        origin: OriginReport {
            public_key: String::new(),
            contract_id: String::new(),
            link_name: String::new(),
        },
        cluster_issuer: String::new(),
        payload_bytes: 0,
        connections: run.connections,
        pacing: Pacing::Closed {
            in_flight_count: run.connections,
        },
        duration_ms: millis(run.duration),
        warmup_ms: millis(run.warmup),
        timeout_ms: millis(run.timeout),
        pool_invocations: 0,
        verify_echo: false,
        host_pid: run.host_pid,
    }
}

/// Pending connections each floor listener's backlog holds.
const FLOOR_BACKLOG_CONNECTIONS: u32 = 1024;

/// The bare HTTP floor: hyper's HTTP/1.1 server answering every request `200` with
/// [`FLOOR_BODY`], thread-per-core as the shards are — `threads` threads, each a
/// current-thread tokio runtime with its own `SO_REUSEPORT` listener on `listen`. Prints
/// `ready <address>` once listening; runs until SIGTERM/SIGINT.
pub fn serve_floor(listen: SocketAddr, threads: usize) -> Result<(), LoadtestError> {
    let io = |e| LoadtestError::io(std::path::Path::new("http-floor listener"), e);
    let first = floor_listener(listen).map_err(io)?;
    let address = first.local_addr().map_err(io)?;
    let mut sockets = vec![first];
    for _ in 1..threads.max(1) {
        sockets.push(floor_listener(address).map_err(io)?);
    }
    let mut workers = Vec::new();
    for socket in sockets {
        workers.push(std::thread::spawn(move || -> Result<(), LoadtestError> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(LoadtestError::Runtime)?;
            runtime.block_on(tokio::task::LocalSet::new().run_until(async move {
                let listener = socket.listen(FLOOR_BACKLOG_CONNECTIONS).map_err(io)?;
                let accept = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        let _ = stream.set_nodelay(true);
                        tokio::task::spawn_local(floor_connection(stream));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = crate::stop_signal() => {}
                }
                Ok(())
            }))
        }));
    }
    println!("ready {address}");
    for worker in workers {
        worker
            .join()
            .map_err(|_| LoadtestError::Runtime(std::io::Error::other("a floor thread panicked")))??;
    }
    Ok(())
}

fn floor_listener(address: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseport(true)?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    Ok(socket)
}

async fn floor_connection(stream: TcpStream) {
    let service = hyper::service::service_fn(|_request| async {
        let body = http_body_util::Full::new(hyper::body::Bytes::from_static(FLOOR_BODY));
        Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_length_or_chunks() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 503";
        assert_eq!(parse_response(plain).unwrap(), Some((200, 43)));
        assert_eq!(parse_response(&plain[..40]).unwrap(), None);
        let chunked = b"HTTP/1.1 413 Payload Too Large\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), Some((413, chunked.len())));
        assert_eq!(parse_response(&chunked[..chunked.len() - 1]).unwrap(), None);
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
