//! The epoll backend of the shard runtime seam: one current-thread tokio runtime with a
//! `LocalSet` per shard thread, pinned to its CPU like glommio's executors. The only file
//! under `shard/` that names tokio (the tidy test checks it).
//!
//! Semantics follow the io_uring backend so the shard logic cannot tell them apart: dropping
//! a [`Task`] cancels it, and [`yield_now`] lets the runtime poll its I/O driver before the
//! task runs again (tokio defers a yielded task's wake-up until after the driver was polled).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use super::ExecutorSpec;

/// A tokio local task that is aborted when dropped, unless detached.
pub struct Task<T> {
    handle: Option<tokio::task::JoinHandle<T>>,
}

impl<T> Task<T> {
    pub fn detach(mut self) {
        self.handle = None;
    }

    pub async fn cancel(mut self) -> Option<T> {
        let handle = self.handle.take()?;
        handle.abort();
        handle.await.ok()
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(handle) = self.handle.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(handle).poll(cx) {
            Poll::Ready(Ok(output)) => {
                self.handle = None;
                Poll::Ready(output)
            }
            Poll::Ready(Err(error)) => {
                self.handle = None;
                match error.try_into_panic() {
                    // The task panicked: carry the panic to the awaiting task, as glommio does.
                    Ok(payload) => std::panic::resume_unwind(payload),
                    // Aborted by the runtime's shutdown: the awaiting task goes with it.
                    Err(_) => Poll::Pending,
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

pub fn spawn_local<F>(future: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    Task {
        handle: Some(tokio::task::spawn_local(future)),
    }
}

/// tokio's timer, boxed to be `Unpin`.
pub struct Sleep(Pin<Box<tokio::time::Sleep>>);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

pub fn sleep(duration: Duration) -> Sleep {
    Sleep(Box::pin(tokio::time::sleep(duration)))
}

pub async fn yield_now() {
    tokio::task::yield_now().await;
}

/// tokio's TCP stream behind `futures`' I/O traits.
pub type TcpStream = Compat<tokio::net::TcpStream>;

pub async fn connect(addr: std::net::SocketAddr, limit: Duration) -> std::io::Result<TcpStream> {
    let stream = match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
        Ok(stream) => stream?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {addr} took over {} ms", limit.as_millis()),
            ))
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream.compat())
}

/// tokio's listener, bound with `SO_REUSEPORT` (as glommio binds), so every shard can listen on
/// one address and the kernel spreads connections over them.
pub type TcpListener = tokio::net::TcpListener;

pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

pub async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    let (stream, peer) = listener.accept().await?;
    stream.set_nodelay(true)?;
    Ok((stream.compat(), peer))
}

pub struct ExecutorHandle(std::thread::JoinHandle<Result<(), String>>);

impl ExecutorHandle {
    pub fn join(self) -> Result<(), String> {
        match self.0.join() {
            Ok(result) => result,
            Err(_) => Err("the executor thread panicked".to_string()),
        }
    }
}

pub fn start_executor<M, F>(spec: &ExecutorSpec, main: M) -> std::io::Result<ExecutorHandle>
where
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let cpu = spec.cpu;
    let name = spec.name.clone();
    let thread = std::thread::Builder::new().name(name.clone()).spawn(move || {
        if let Some(cpu) = cpu {
            super::sys::pin_to_cpu(cpu).map_err(|e| format!("{name}: cannot pin to CPU {cpu}: {e}"))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("{name}: cannot build the runtime: {e}"))?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, main());
        Ok(())
    })?;
    Ok(ExecutorHandle(thread))
}
