//! The shard's runtime seam: everything a shard needs from its executor — spawn a local task,
//! a timer, step off for I/O, a TCP connection, a pinned executor thread — in one small API,
//! with two backends behind it:
//!
//! - [`Backend::IoUring`]: glommio (io_uring), the default wherever the kernel allows it
//!   (`uring.rs`);
//! - [`Backend::Epoll`]: a current-thread tokio runtime with a `LocalSet` per shard, pinned
//!   like glommio's executors (`epoll.rs`), for containers and kernels that block io_uring
//!   (Docker's and containerd's default seccomp profiles, `kernel.io_uring_disabled`).
//!
//! The shard's logic (connection, batch pipeline, instances, turns, calls, drain) is written
//! once above this module and names neither runtime: only the two backend files do (the tidy
//! test checks it). Which backend a thread runs is fixed when its executor starts
//! ([`start_executor`]) and kept in a thread-local, so a call here is one branch on it. A
//! thread this module did not start (benches and fuzz targets that build a glommio executor
//! themselves) counts as io_uring.
//!
//! [`resolve`] turns the operator's `--shard-io` choice into a backend, probing io_uring once
//! with a real ring ([`sys::probe_io_uring`]) before anything else starts.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

mod epoll;
mod sys;
mod uring;

pub use sys::{allowed_cpus, probe_io_uring};

/// The executor behind a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// glommio on io_uring.
    IoUring,
    /// tokio (current-thread runtime and `LocalSet`) on epoll.
    Epoll,
}

impl Backend {
    /// The name used in flags, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Backend::IoUring => "io-uring",
            Backend::Epoll => "epoll",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the operator asked for (`--shard-io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardIo {
    /// io_uring when a probe ring can be set up, else epoll with a warning.
    #[default]
    Auto,
    /// io_uring or nothing: the host refuses to start without it.
    IoUring,
    /// epoll, without probing io_uring.
    Epoll,
}

impl std::str::FromStr for ShardIo {
    type Err = String;

    fn from_str(text: &str) -> Result<ShardIo, String> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(ShardIo::Auto),
            "io-uring" | "io_uring" | "uring" => Ok(ShardIo::IoUring),
            "epoll" => Ok(ShardIo::Epoll),
            _ => Err(format!("`{text}` is not one of auto, io-uring, epoll")),
        }
    }
}

/// The backend chosen for `--shard-io`, and a warning to log when `auto` fell back to epoll.
/// `io-uring` asked for and unavailable is an error (one line, for the operator).
pub fn resolve(asked: ShardIo) -> Result<(Backend, Option<String>), String> {
    match asked {
        ShardIo::Epoll => Ok((Backend::Epoll, None)),
        ShardIo::IoUring => match probe_io_uring() {
            Ok(()) => Ok((Backend::IoUring, None)),
            Err(why) => Err(format!(
                "--shard-io io-uring: io_uring is not available: {why}; or start with --shard-io epoll"
            )),
        },
        ShardIo::Auto => match probe_io_uring() {
            Ok(()) => Ok((Backend::IoUring, None)),
            Err(why) => Ok((
                Backend::Epoll,
                Some(format!(
                    "io_uring is not available, the shards run on the epoll backend: {why}"
                )),
            )),
        },
    }
}

thread_local! {
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::IoUring) };
}

/// The backend of the calling thread's executor.
pub fn current() -> Backend {
    BACKEND.with(Cell::get)
}

fn set_current(backend: Backend) {
    BACKEND.with(|b| b.set(backend));
}

/// A task spawned on the current shard. Dropping it cancels the task (glommio's rule, kept on
/// both backends); [`Task::detach`] lets it run on by itself.
pub enum Task<T: 'static> {
    Uring(uring::Task<T>),
    Epoll(epoll::Task<T>),
}

impl<T: 'static> Task<T> {
    /// Let the task run to completion on its own.
    pub fn detach(self) {
        match self {
            Task::Uring(task) => task.detach(),
            Task::Epoll(task) => task.detach(),
        }
    }

    /// Stop the task and wait until it is gone; its output if it had finished.
    pub async fn cancel(self) -> Option<T> {
        match self {
            Task::Uring(task) => task.cancel().await,
            Task::Epoll(task) => task.cancel().await,
        }
    }
}

impl<T: 'static> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Task::Uring(task) => Pin::new(task).poll(cx),
            Task::Epoll(task) => Pin::new(task).poll(cx),
        }
    }
}

/// Run `future` as a task of the current shard (same thread, never moved).
pub fn spawn_local<F>(future: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    match current() {
        Backend::IoUring => Task::Uring(uring::spawn_local(future)),
        Backend::Epoll => Task::Epoll(epoll::spawn_local(future)),
    }
}

/// A timer of the current shard's executor.
pub enum Sleep {
    Uring(uring::Sleep),
    Epoll(epoll::Sleep),
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Sleep::Uring(timer) => Pin::new(timer).poll(cx),
            Sleep::Epoll(timer) => Pin::new(timer).poll(cx),
        }
    }
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    match current() {
        Backend::IoUring => Sleep::Uring(uring::sleep(duration)),
        Backend::Epoll => Sleep::Epoll(epoll::sleep(duration)),
    }
}

/// Wait for `future` at most `limit`: `None` when the time ran out first.
pub async fn timeout<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let timer = sleep(limit);
    match futures::future::select(std::pin::pin!(future), timer).await {
        futures::future::Either::Left((output, _)) => Some(output),
        futures::future::Either::Right(_) => None,
    }
}

/// Step off the CPU so the executor polls its sockets and runs its other tasks, then come
/// back: what a busy guest does at each epoch tick ([`crate::runtime::Parker`]). On glommio a
/// [`GUEST_PARK_US`] timer (a plain yield would not poll I/O); on tokio a yield, which the
/// runtime resumes after polling its I/O driver.
pub fn io_yield() -> Pin<Box<dyn Future<Output = ()>>> {
    match current() {
        Backend::IoUring => Box::pin(uring::sleep(Duration::from_micros(GUEST_PARK_US))),
        Backend::Epoll => Box::pin(epoll::yield_now()),
    }
}

/// How long a busy guest parks at each epoch yield on the io_uring backend.
pub const GUEST_PARK_US: u64 = 10;

/// Let the other ready tasks of this shard run before continuing.
pub async fn yield_now() {
    match current() {
        Backend::IoUring => uring::yield_now().await,
        Backend::Epoll => epoll::yield_now().await,
    }
}

/// A TCP connection of the current shard's executor, with `TCP_NODELAY` set; reads and writes
/// through `futures`' `AsyncRead`/`AsyncWrite`.
pub enum TcpStream {
    Uring(uring::TcpStream),
    Epoll(epoll::TcpStream),
}

impl TcpStream {
    /// Connect to `addr`, giving up after `limit`.
    pub async fn connect(addr: std::net::SocketAddr, limit: Duration) -> std::io::Result<TcpStream> {
        match current() {
            Backend::IoUring => uring::connect(addr, limit).await.map(TcpStream::Uring),
            Backend::Epoll => epoll::connect(addr, limit).await.map(TcpStream::Epoll),
        }
    }
}

impl futures::AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            TcpStream::Uring(s) => Pin::new(s).poll_read(cx, buf),
            TcpStream::Epoll(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl futures::AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            TcpStream::Uring(s) => Pin::new(s).poll_write(cx, buf),
            TcpStream::Epoll(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            TcpStream::Uring(s) => Pin::new(s).poll_flush(cx),
            TcpStream::Epoll(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            TcpStream::Uring(s) => Pin::new(s).poll_close(cx),
            TcpStream::Epoll(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// A listening socket of the current shard's executor, bound with `SO_REUSEPORT`: each shard
/// binds the same address and the kernel spreads the connections over the shards.
pub enum TcpListener {
    Uring(uring::TcpListener),
    Epoll(epoll::TcpListener),
}

/// Pending connections a listener's backlog holds (`listen(2)`, both backends).
pub const LISTEN_BACKLOG_CONNECTIONS: u32 = 1024;

impl TcpListener {
    /// Listen on `addr` (with `SO_REUSEPORT`) on this thread's executor.
    pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
        match current() {
            Backend::IoUring => uring::bind(addr, LISTEN_BACKLOG_CONNECTIONS).map(TcpListener::Uring),
            Backend::Epoll => epoll::bind(addr, LISTEN_BACKLOG_CONNECTIONS).map(TcpListener::Epoll),
        }
    }

    /// The next connection (`TCP_NODELAY` set) and its peer.
    pub async fn accept(&self) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
        match self {
            TcpListener::Uring(l) => uring::accept(l).await.map(|(s, a)| (TcpStream::Uring(s), a)),
            TcpListener::Epoll(l) => epoll::accept(l).await.map(|(s, a)| (TcpStream::Epoll(s), a)),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            TcpListener::Uring(l) => l.local_addr(),
            TcpListener::Epoll(l) => l.local_addr(),
        }
    }

    /// Stop listening now: an accept in progress returns an error and new connections are
    /// refused (closing alone does not stop an io_uring accept in flight).
    pub fn shutdown(&self) {
        use std::os::fd::AsFd as _;
        match self {
            TcpListener::Uring(l) => sys::shutdown_listener(l.control()),
            TcpListener::Epoll(l) => sys::shutdown_listener(l.as_fd()),
        }
    }
}

/// Settings of one shard executor thread.
#[derive(Debug, Clone)]
pub struct ExecutorSpec {
    pub backend: Backend,
    /// Thread name.
    pub name: String,
    /// The CPU to pin the thread to; `None` leaves it to the scheduler.
    pub cpu: Option<usize>,
    /// io_uring registered-buffer memory (glommio only).
    pub io_memory_bytes: usize,
}

/// A running executor thread.
pub enum ExecutorHandle {
    Uring(uring::ExecutorHandle),
    Epoll(epoll::ExecutorHandle),
}

impl ExecutorHandle {
    /// Wait for the thread to end; an error says why it failed.
    pub fn join(self) -> Result<(), String> {
        match self {
            ExecutorHandle::Uring(handle) => handle.join(),
            ExecutorHandle::Epoll(handle) => handle.join(),
        }
    }
}

/// Start an executor thread as `spec` says and run `main` (built on that thread) on it until it
/// returns.
pub fn start_executor<M, F>(spec: ExecutorSpec, main: M) -> std::io::Result<ExecutorHandle>
where
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let backend = spec.backend;
    let main = move || {
        set_current(backend);
        main()
    };
    match backend {
        Backend::IoUring => uring::start_executor(&spec, main).map(ExecutorHandle::Uring),
        Backend::Epoll => epoll::start_executor(&spec, main).map(ExecutorHandle::Epoll),
    }
}

/// Run `main` on a fresh, unpinned executor of `backend` on its own thread and return its
/// output (tests and benches).
pub fn run_on<T, M, F>(backend: Backend, main: M) -> Result<T, String>
where
    T: Send + 'static,
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let spec = ExecutorSpec {
        backend,
        name: format!("{backend} test executor"),
        cpu: None,
        io_memory_bytes: crate::config::SHARD_IO_MEMORY_BYTES,
    };
    let handle = start_executor(spec, move || async move {
        let _ = tx.send(main().await);
    })
    .map_err(|e| e.to_string())?;
    handle.join()?;
    rx.recv().map_err(|_| "the executor ended without a result".to_string())
}

/// Both backends, for tests that must pass on each.
#[cfg(test)]
pub const BACKENDS: [Backend; 2] = [Backend::IoUring, Backend::Epoll];
