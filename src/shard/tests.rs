//! The shard's read loop against a NATS stand-in on loopback that holds back its `PONG`s: a
//! shard reports itself connected (first connection and after a reconnect) only once the
//! server has confirmed the subscriptions it sent on that connection.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::StreamExt;

use super::conn::{ConnConfig, Outbox};
use super::core::ShardCore;
use super::read_loop;
use crate::config::NatsAuth;
use crate::plane::{ShardConfig, ShardId, ShardReport};

/// How long the stand-in holds back the `PONG` that confirms the subscriptions.
const HOLD_MS: u64 = 300;
/// How long the stand-in waits for a confirming `PING` before it closes a connection anyway
/// (the former shard sent none).
const SILENCE: Duration = Duration::from_secs(3);
/// Bound on every wait of the test.
const WAIT: Duration = Duration::from_secs(10);

/// Serves `connections` connections one after another: INFO, the handshake's `PONG`, then the
/// first `PING` after a `SUB` is answered `HOLD_MS` later; sends the instant just before that
/// `PONG`.
/// Every connection but the last is closed 100 ms after it, or after `SILENCE` without a
/// confirming `PING`.
fn stand_in(listener: TcpListener, connections: usize, pongs: std_mpsc::Sender<Instant>) {
    for n in 0..connections {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .write_all(b"INFO {\"server_id\":\"stand-in\",\"max_payload\":1048576}\r\n")
            .expect("info");
        stream.set_read_timeout(Some(SILENCE)).expect("read timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let (mut handshake_done, mut saw_sub) = (false, false);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && n + 1 < connections => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
            if line.starts_with("SUB ") {
                saw_sub = true;
            } else if line.starts_with("PING") && !handshake_done {
                handshake_done = true;
                stream.write_all(b"PONG\r\n").expect("pong");
            } else if line.starts_with("PING") && saw_sub {
                std::thread::sleep(Duration::from_millis(HOLD_MS));
                // Stamped before the write: the shard cannot have read this PONG earlier.
                let at = Instant::now();
                stream.write_all(b"PONG\r\n").expect("pong");
                pongs.send(at).expect("pong instant");
                if n + 1 < connections {
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            } else if line.starts_with("PING") {
                stream.write_all(b"PONG\r\n").expect("pong");
            }
        }
    }
}

#[test]
fn a_shard_reports_connected_only_once_the_server_confirmed_its_subscriptions() {
    for backend in super::rt::BACKENDS {
        reports_connected_only_once_confirmed(backend);
    }
}

fn reports_connected_only_once_confirmed(backend: super::rt::Backend) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (pong_tx, pong_rx) = std_mpsc::channel();
    std::thread::spawn(move || stand_in(listener, 2, pong_tx));

    let (report_tx, mut report_rx) = mpsc::channel(16);
    // The shard's connection reports, stamped when they are sent.
    let (seen_tx, seen_rx) = std_mpsc::channel::<(bool, Instant)>();
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let shard = std::thread::spawn(move || {
        super::rt::run_on(backend, move || async move {
            super::rt::spawn_local(async move {
                while let Some(report) = report_rx.next().await {
                    if let ShardReport::Connection { connected, .. } = report {
                        let _ = seen_tx.send((connected, Instant::now()));
                    }
                }
            })
            .detach();
            let outbox = Rc::new(Outbox::new());
            outbox
                .subscribe("wasmbus.rpc.l.Ma", Some("wasmbus.rpc.l.Ma"))
                .expect("sub");
            let core = Rc::new(ShardCore::new(ShardId(0), ShardConfig::offline(), outbox));
            let config = ConnConfig {
                servers: vec![format!("127.0.0.1:{port}")],
                auth: NatsAuth::None,
                name: "shard-test".into(),
                tls: None,
                require_tls: false,
            };
            let serving = Box::pin(read_loop(core, config, report_tx));
            futures::future::select(serving, stop_rx).await;
        })
    });

    // Every connection report until the second "connected".
    let mut reports = Vec::new();
    while reports.iter().filter(|(up, _)| *up).count() < 2 {
        let report = seen_rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("reports so far: {reports:?}"));
        reports.push(report);
    }
    let first_pong = pong_rx
        .recv_timeout(WAIT)
        .expect("the shard asks the server to confirm its subscriptions");
    let second_pong = pong_rx.recv_timeout(WAIT).expect("second confirming PONG");
    let ups: Vec<Instant> = reports.iter().filter(|(up, _)| *up).map(|(_, at)| *at).collect();
    assert!(
        ups[0] >= first_pong,
        "connected reported before the subscriptions were confirmed"
    );
    assert!(
        reports.iter().any(|(up, at)| !*up && *at > first_pong && *at < ups[1]),
        "the lost connection was reported: {reports:?}"
    );
    assert!(
        ups[1] >= second_pong,
        "reconnected reported before the subscriptions were confirmed"
    );
    let _ = stop_tx.send(());
    shard.join().expect("shard thread").expect("executor");
}
