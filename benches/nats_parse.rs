//! NATS frame parsing cost on the shard's hot path: one socket read holding 64 `MSG` frames of
//! about 1.2 KB each (what a read holds at 64 invocations in flight), parsed frame by frame the
//! way the shard does. Criterion reports time per buffer and frames per second; per-frame time
//! is the buffer time divided by 64. Runs as a test under `cargo test --benches`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardhost::wire::nats::{parse_headers, parse_server_op, ServerOp};

/// Frames in one socket read at 64 invocations in flight.
const FRAMES_PER_READ_COUNT: usize = 64;
/// Payload of one invocation (msgpack with its ~600-char token), in bytes.
const PAYLOAD_BYTES: usize = 1200;
/// The server's default `max_payload`.
const MAX_PAYLOAD_BYTES: usize = 1 << 20;

const SUBJECT: &str = "wasmbus.rpc.default.MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD";

fn msg_read_buffer() -> Vec<u8> {
    let payload: Vec<u8> = (0..PAYLOAD_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let mut buf = Vec::new();
    for index in 0..FRAMES_PER_READ_COUNT {
        let line = format!("MSG {SUBJECT} 1 _INBOX.Z7pFhDHpQkcVnFd0qjT4Ae.{index} {PAYLOAD_BYTES}\r\n");
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(b"\r\n");
    }
    buf
}

fn hmsg_read_buffer() -> Vec<u8> {
    let headers = b"NATS/1.0\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
    let payload = vec![0x5a; PAYLOAD_BYTES];
    let mut buf = Vec::new();
    for index in 0..FRAMES_PER_READ_COUNT {
        let total = headers.len() + payload.len();
        let line = format!(
            "HMSG {SUBJECT} 1 _INBOX.Z7pFhDHpQkcVnFd0qjT4Ae.{index} {} {total}\r\n",
            headers.len()
        );
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(headers);
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(b"\r\n");
    }
    buf
}

/// Parses every frame in `buf`; returns the payload bytes seen so the work cannot be elided.
fn parse_all(buf: &[u8], with_headers: bool) -> usize {
    let mut offset = 0;
    let mut payload_bytes = 0;
    while let Ok(Some((op, used))) = parse_server_op(&buf[offset..], MAX_PAYLOAD_BYTES) {
        match op {
            ServerOp::Msg { payload, .. } => payload_bytes += payload.len(),
            ServerOp::HMsg { headers, payload, .. } => {
                if with_headers {
                    let block = &buf[offset..][headers];
                    payload_bytes += parse_headers(block).map_or(0, |h| h.iter().count());
                }
                payload_bytes += payload.len();
            }
            _ => {}
        }
        offset += used;
    }
    assert_eq!(offset, buf.len(), "every frame parsed");
    payload_bytes
}

fn bench_parse(c: &mut Criterion) {
    let msgs = msg_read_buffer();
    let hmsgs = hmsg_read_buffer();
    let mut group = c.benchmark_group("nats_parse");
    group.throughput(Throughput::Elements(FRAMES_PER_READ_COUNT as u64));
    group.bench_function("msg_64x1200B", |b| b.iter(|| parse_all(black_box(&msgs), false)));
    group.bench_function("hmsg_64x1200B", |b| b.iter(|| parse_all(black_box(&hmsgs), false)));
    group.bench_function("hmsg_64x1200B_with_headers", |b| {
        b.iter(|| parse_all(black_box(&hmsgs), true))
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
