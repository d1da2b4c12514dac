//! The shard's own NATS client (`shardhost::shard::conn`) on each shard executor backend
//! (glommio on io_uring, tokio on epoll) against a real
//! nats-server: handshake, queue subscription, zero-copy delivery, replies, PING handling by
//! the server's keepalive, and reconnect with re-subscription after the server restarts.

use std::sync::mpsc;
use std::time::Duration;

use shardhost::config::NatsAuth;
use shardhost::shard::conn::{Conn, ConnConfig, Inbound};
use shardhost::shard::rt::Backend;

use crate::support::Nats;

/// Run `f` on a fresh executor thread of `backend`; its result comes back over a channel so
/// the test can bound the wait.
fn on_executor<T, Fut>(backend: Backend, f: impl FnOnce() -> Fut + Send + 'static) -> mpsc::Receiver<T>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = shardhost::shard::rt::run_on(backend, f).expect("shard executor");
        let _ = tx.send(result);
    });
    rx
}

/// Serve `count` requests on `subject` (queue group = subject) by echoing them with a prefix,
/// reconnecting once if the connection breaks. Returns the payloads served.
async fn echo_server(port: u16, subject: &str, count: usize, ready: mpsc::Sender<()>) -> Result<Vec<Vec<u8>>, String> {
    let config = ConnConfig {
        servers: vec![format!("127.0.0.1:{port}")],
        auth: NatsAuth::None,
        name: "test-shard".into(),
        tls: None,
        require_tls: false,
    };
    let mut conn = Conn::connect(config).await.map_err(|e| format!("connect: {e}"))?;
    let outbox = conn.outbox();
    outbox.subscribe(subject, Some(subject)).map_err(|e| e.to_string())?;
    outbox.drained().await;
    let _ = ready.send(());
    let mut served = Vec::new();
    let mut batch: Vec<Inbound> = Vec::new();
    while served.len() < count {
        batch.clear();
        if let Err(e) = conn.read_batch(&mut batch).await {
            // The server went away: come back (bounded) and keep serving.
            conn.reconnect(Some(200))
                .await
                .map_err(|e2| format!("reconnect after {e}: {e2}"))?;
            outbox.drained().await;
            let _ = ready.send(());
            continue;
        }
        for msg in &batch {
            assert_eq!(msg.subject(), subject);
            let mut answer = b"echo:".to_vec();
            answer.extend_from_slice(&msg.payload);
            if let Some(reply) = msg.reply() {
                outbox.publish(reply, None, &answer).map_err(|e| e.to_string())?;
            }
            served.push(msg.payload.to_vec());
        }
    }
    outbox.drained().await;
    Ok(served)
}

#[tokio::test]
async fn shard_connection_serves_requests_and_survives_a_server_restart() {
    for backend in [Backend::IoUring, Backend::Epoll] {
        serves_and_survives_a_restart(backend).await;
    }
}

async fn serves_and_survives_a_restart(backend: Backend) {
    let mut nats = Nats::start();
    let port = nats.port;
    let (ready_tx, ready_rx) = mpsc::channel();
    let subject = "wasmbus.rpc.test.Mecho";
    let done = on_executor(backend, move || echo_server(port, subject, 5, ready_tx));
    ready_rx.recv_timeout(Duration::from_secs(10)).expect("shard connected");

    let nc = nats.client().await;
    for i in 0..3u8 {
        let payload = vec![i, b'\r', b'\n', 0xff];
        let reply = tokio::time::timeout(Duration::from_secs(5), nc.request(subject, payload.clone().into()))
            .await
            .expect("reply in time")
            .expect("request");
        assert_eq!(&reply.payload[..5], b"echo:");
        assert_eq!(
            &reply.payload[5..],
            &payload[..],
            "binary payload with CRLF inside survives"
        );
    }
    drop(nc);

    nats.kill();
    let nats = Nats::start_on(port);
    ready_rx
        .recv_timeout(Duration::from_secs(15))
        .expect("shard reconnected");
    let nc = nats.client().await;
    for i in 3..5u8 {
        let reply = tokio::time::timeout(Duration::from_secs(5), nc.request(subject, vec![i].into()))
            .await
            .expect("reply after reconnect in time")
            .expect("request after reconnect");
        assert_eq!(&reply.payload[..], &[b'e', b'c', b'h', b'o', b':', i][..]);
    }
    let served = done
        .recv_timeout(Duration::from_secs(10))
        .expect("shard finished")
        .expect("shard served");
    assert_eq!(served.len(), 5);
}
