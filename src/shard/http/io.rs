//! hyper 1.x over the shard runtime seam: [`HyperIo`] gives a seam [`TcpStream`] hyper's own
//! I/O traits, so an HTTP/1.1 connection (keep-alive, pipelining, chunked bodies: hyper's
//! `server::conn::http1`) runs as a task on either backend; [`ShardTimer`] gives hyper the
//! shard's timers (its header read timeout). Each shard binds the same address
//! (`rt::TcpListener`, `SO_REUSEPORT`) and serves the connections the kernel hands it.
//!
//! Data plane. Reads land in a buffer of the connection's own (initialised once) and are
//! copied into hyper's, one copy of what was read. The timer's only `unsafe` is
//! [`AssertSend`]'s: hyper asks `Send + Sync` of its sleeps, and a shard's never leave it.
//!
//! [`TcpStream`]: crate::shard::rt::TcpStream
//! [`AssertSend`]: crate::shard::send::AssertSend

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

use crate::shard::rt;
use crate::shard::send::AssertSend;

/// Bytes one read may take from the socket.
pub const HTTP_READ_CHUNK_BYTES: usize = 16 * 1024;

/// A `futures` byte stream as hyper's `Read` + `Write`.
pub struct HyperIo<T> {
    inner: T,
    scratch: Box<[u8]>,
}

impl<T> HyperIo<T> {
    pub fn new(inner: T) -> HyperIo<T> {
        HyperIo {
            inner,
            scratch: vec![0; HTTP_READ_CHUNK_BYTES].into_boxed_slice(),
        }
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let room = buf.remaining().min(this.scratch.len());
        let Some(scratch) = this.scratch.get_mut(..room) else {
            return Poll::Ready(Ok(()));
        };
        match Pin::new(&mut this.inner).poll_read(cx, scratch) {
            Poll::Ready(Ok(read)) => {
                if let Some(bytes) = scratch.get(..read) {
                    buf.put_slice(bytes);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// hyper's timer on the shard's executor: each sleep is the shard's own (`rt::sleep`), made
/// and polled on the shard's thread by the connection task hyper runs in.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardTimer;

impl hyper::rt::Sleep for AssertSend<rt::Sleep> {}

impl hyper::rt::Timer for ShardTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(AssertSend(rt::sleep(duration)))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        Box::pin(AssertSend(rt::sleep(left)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    use http_body_util::Full;
    use hyper::body::Bytes;

    use super::*;
    use crate::shard::rt::{self, TcpListener};

    /// Longest the test waits for its client thread.
    const CLIENT_WAIT: Duration = Duration::from_secs(10);

    /// Serve `listener`'s connections with hyper's HTTP/1.1 server: each answer names `name`
    /// and echoes the request's path and body length.
    fn serve(listener: TcpListener, name: &'static str) {
        rt::spawn_local(async move {
            while let Ok((stream, _)) = listener.accept().await {
                rt::spawn_local(async move {
                    let service =
                        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| async move {
                            use http_body_util::BodyExt as _;
                            let path = request.uri().path().to_string();
                            let body = request.into_body().collect().await?.to_bytes();
                            let text = format!("{name} {path} {}", body.len());
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(text))))
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(HyperIo::new(stream), service)
                        .await;
                })
                .detach();
            }
        })
        .detach();
    }

    /// Two keep-alive requests (the second pipelined after the first, one chunked) on one
    /// connection; returns both responses' text.
    fn client(port: u16) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(CLIENT_WAIT)).expect("timeout");
        let requests = concat!(
            "GET /first HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /second HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        );
        stream.write_all(requests.as_bytes()).expect("send");
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + CLIENT_WAIT;
        while text.matches("HTTP/1.1 200 OK").count() < 2 || !text.contains(" /second 5") {
            assert!(Instant::now() < deadline, "responses so far: {text}");
            let read = stream.read(&mut buf).expect("read");
            assert!(read > 0, "the server closed a keep-alive connection: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..read]));
        }
        text
    }

    #[test]
    fn two_shards_listen_on_one_port_and_hyper_serves_keep_alive_on_both_backends() {
        for backend in rt::BACKENDS {
            let text = rt::run_on(backend, move || async move {
                let first = TcpListener::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
                let addr = first.local_addr().unwrap();
                // SO_REUSEPORT: a second listener (another shard's) binds the same port.
                let second = TcpListener::bind(addr).expect("bind the same port again");
                serve(first, "a");
                serve(second, "b");
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(client(addr.port()));
                });
                let deadline = Instant::now() + CLIENT_WAIT;
                loop {
                    if let Ok(text) = rx.try_recv() {
                        return text;
                    }
                    assert!(Instant::now() < deadline, "the client did not finish");
                    rt::sleep(Duration::from_millis(5)).await;
                }
            })
            .unwrap();
            assert!(
                (text.contains("a /first 0") && text.contains("a /second 5"))
                    || (text.contains("b /first 0") && text.contains("b /second 5")),
                "{backend}: one connection, one shard, both answers: {text}"
            );
        }
    }
}
