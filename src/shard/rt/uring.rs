//! The io_uring backend of the shard runtime seam: glommio. The only file under `shard/` that
//! names glommio (the tidy test checks it).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::ExecutorSpec;

/// A glommio task: dropping it cancels it.
pub struct Task<T>(glommio::Task<T>);

impl<T> Task<T> {
    pub fn detach(self) {
        drop(self.0.detach());
    }

    pub async fn cancel(self) -> Option<T> {
        self.0.cancel().await
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.0).poll(cx)
    }
}

pub fn spawn_local<F>(future: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    Task(glommio::spawn_local(future))
}

/// glommio's timer (a `Timer` is `Unpin`), completing with `()`.
pub struct Sleep(glommio::timer::Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

pub fn sleep(duration: Duration) -> Sleep {
    Sleep(glommio::timer::Timer::new(duration))
}

pub async fn yield_now() {
    glommio::executor().yield_task_queue_now().await;
}

/// glommio's TCP stream (io_uring reads and writes).
pub type TcpStream = glommio::net::TcpStream;

pub async fn connect(addr: std::net::SocketAddr, limit: Duration) -> std::io::Result<TcpStream> {
    let stream = glommio::net::TcpStream::connect_timeout(addr, limit).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// glommio's listener; glommio binds with `SO_REUSEPORT`, so every shard can listen on one
/// address and the kernel spreads connections over them.
/// glommio's listener and a second descriptor of its socket, for `shutdown(2)`.
pub struct TcpListener {
    inner: glommio::net::TcpListener,
    control: std::os::fd::OwnedFd,
}

impl TcpListener {
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.local_addr().map_err(std::io::Error::from)
    }

    pub fn control(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.control.as_fd()
    }
}

pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    use std::os::fd::IntoRawFd as _;
    let socket = super::sys::reuseport_listener(addr, backlog)?;
    let control = socket.try_clone()?;
    // SAFETY: `socket` is a bound, listening TCP socket whose descriptor is handed over here
    // (glommio closes it on drop); `control` is a duplicate of our own.
    let inner = unsafe { <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(socket.into_raw_fd()) };
    Ok(TcpListener { inner, control })
}

pub async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    let stream = listener.inner.accept().await.map_err(std::io::Error::from)?;
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    Ok((stream, peer))
}

pub struct ExecutorHandle(glommio::ExecutorJoinHandle<()>);

impl ExecutorHandle {
    pub fn join(self) -> Result<(), String> {
        self.0.join().map_err(|e| e.to_string())
    }
}

pub fn start_executor<M, F>(spec: &ExecutorSpec, main: M) -> std::io::Result<ExecutorHandle>
where
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let placement = spec.cpu.map_or(glommio::Placement::Unbound, glommio::Placement::Fixed);
    glommio::LocalExecutorBuilder::new(placement)
        .name(&spec.name)
        .io_memory(spec.io_memory_bytes)
        .spawn(main)
        .map(ExecutorHandle)
        .map_err(std::io::Error::from)
}
