//! The built-in HTTP server (`wasmcloud+builtin://http-server`) on one shard: every shard
//! listens on every route's address (`SO_REUSEPORT`: the kernel spreads the connections over
//! the cores) and serves the requests of the connections it accepted itself, with hyper's
//! HTTP/1.1 (keep-alive, pipelining, chunked bodies) over the runtime seam ([`io`]). A request
//! runs `HttpServer.HandleRequest` on a warm instance of this shard ([`handle`]), or goes to
//! the lattice when the actor does not run here.
//!
//! [`Listeners`] follows the control plane's route set (`ShardCommand::HttpRoutes`): a new
//! route is bound (and the bind reported, `ShardReport::HttpListen`), a route gone stops
//! accepting and its connections finish the request in flight, then close (hyper's graceful
//! shutdown). Data plane: shard-local state only.

mod handle;
pub mod io;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::{FutureExt, Shared};

use crate::builtin::routes::HttpRoute;
use crate::plane::{HttpListen, ShardReport};

use super::core::ShardCore;
use super::rt::{self, TcpListener, TcpStream};
use io::{HyperIo, ShardTimer};

/// HTTP connections one shard keeps open at once; past it a new connection is answered 503
/// and closed.
pub const HTTP_CONNECTIONS_PER_SHARD_MAX: usize = 8_192;
/// Bytes hyper buffers for one connection's request head (request line and headers); a head
/// past it is answered 431.
pub const HTTP_HEADER_BYTES_MAX: usize = 64 * 1024;
/// Headers one request may carry.
pub const HTTP_HEADERS_MAX: usize = 128;
/// Wait after a failed `accept` (out of file descriptors …) before the next one.
const ACCEPT_RETRY_MS: u64 = 10;
/// Longest wait for a route's accept loop to end after its socket was shut down.
const ACCEPT_STOP_WAIT_MS: u64 = 1_000;
/// How often a stopping shard checks whether its HTTP requests have finished.
const HTTP_DRAIN_CHECK_MS: u64 = 5;

/// What one route's listener and connections share.
pub(crate) struct RouteState {
    pub(crate) route: HttpRoute,
    /// Resolves when the route is closed: connections finish their request and close.
    closing: Shared<oneshot::Receiver<()>>,
    /// HTTPS: the handshake before HTTP.
    tls: Option<futures_rustls::TlsAcceptor>,
    /// Set when the route closes: the accept loop's errors from then on are the shutdown's.
    closed: Cell<bool>,
}

/// The shard's HTTP counters and bounds.
#[derive(Default)]
pub(crate) struct HttpLoad {
    connections: Cell<usize>,
    inflight: Cell<usize>,
}

impl HttpLoad {
    pub(crate) fn inflight(&self) -> usize {
        self.inflight.get()
    }
}

/// One open route: its state, its socket and the accept loop.
struct Open {
    state: Rc<RouteState>,
    listener: Rc<TcpListener>,
    close: oneshot::Sender<()>,
    accept: rt::Task<()>,
}

/// The routes this shard listens on.
#[derive(Default)]
pub(crate) struct Listeners {
    open: RefCell<Vec<Open>>,
    load: Rc<HttpLoad>,
}

impl Listeners {
    /// Follow the control plane's route set.
    pub(crate) async fn apply(
        &self,
        core: &Rc<ShardCore>,
        listens: &Arc<Vec<HttpListen>>,
        reports: &mpsc::Sender<ShardReport>,
    ) {
        let gone: Vec<Open> = {
            let mut open = self.open.borrow_mut();
            let (keep, gone) = std::mem::take(&mut *open)
                .into_iter()
                .partition(|o| listens.iter().any(|l| l.route == o.state.route));
            *open = keep;
            gone
        };
        for route in gone {
            close(route).await;
        }
        for listen in listens.iter() {
            let route = &listen.route;
            if self.open.borrow().iter().any(|o| o.state.route == *route) {
                continue;
            }
            let address = route.settings.address;
            let bound = TcpListener::bind(address);
            let error = bound.as_ref().err().map(|e| e.to_string());
            let mut reports = reports.clone();
            let report = ShardReport::HttpListen {
                shard: core.id(),
                address,
                error: error.clone(),
            };
            if reports.try_send(report).is_err() {
                core.bump(|s| s.reports_dropped += 1);
            }
            let Ok(listener) = bound else {
                tracing::error!(shard = %core.id(), %address, error = error.unwrap_or_default(), "cannot listen for the built-in HTTP server");
                continue;
            };
            tracing::info!(shard = %core.id(), %address, actor = %route.actor_id, "built-in HTTP server listening");
            let (close, closed) = oneshot::channel();
            let state = Rc::new(RouteState {
                route: route.clone(),
                closing: closed.shared(),
                tls: listen.tls.clone().map(futures_rustls::TlsAcceptor::from),
                closed: Cell::new(false),
            });
            let listener = Rc::new(listener);
            let accept = rt::spawn_local(accept_loop(
                Rc::clone(core),
                Rc::clone(&state),
                Rc::clone(&self.load),
                Rc::clone(&listener),
            ));
            self.open.borrow_mut().push(Open {
                state,
                listener,
                close,
                accept,
            });
        }
    }

    /// Stop accepting on every route and wait (at most `limit`) for the requests in flight.
    pub(crate) async fn close_all(&self, limit: Duration) {
        let all: Vec<Open> = std::mem::take(&mut *self.open.borrow_mut());
        for route in all {
            close(route).await;
        }
        let load = Rc::clone(&self.load);
        let _ = rt::timeout(limit, async move {
            while load.inflight() > 0 {
                rt::sleep(Duration::from_millis(HTTP_DRAIN_CHECK_MS)).await;
            }
        })
        .await;
    }
}

/// Stop accepting on `route` (new connections are refused at once) and tell its connections
/// to finish the request in flight and close.
async fn close(route: Open) {
    let Open {
        state,
        listener,
        close,
        mut accept,
    } = route;
    state.closed.set(true);
    listener.shutdown();
    // The loop ends by itself on the shutdown's error. Cancelling it instead could drop an
    // io_uring accept that had already completed: that connection would stay open, unserved.
    if rt::timeout(Duration::from_millis(ACCEPT_STOP_WAIT_MS), &mut accept)
        .await
        .is_none()
    {
        accept.cancel().await;
    }
    drop(close);
    tracing::info!(address = %state.route.settings.address, actor = %state.route.actor_id, "built-in HTTP server route closed");
}

async fn accept_loop(core: Rc<ShardCore>, state: Rc<RouteState>, load: Rc<HttpLoad>, listener: Rc<TcpListener>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) if state.closed.get() => return,
            Err(e) => {
                tracing::warn!(shard = %core.id(), address = %state.route.settings.address, error = %e, "accept failed");
                rt::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                continue;
            }
        };
        if load.connections.get() >= HTTP_CONNECTIONS_PER_SHARD_MAX {
            core.bump(|s| {
                s.http_requests += 1;
                s.http_refused += 1;
            });
            rt::spawn_local(refuse_connection(stream)).detach();
            continue;
        }
        let (core, state, load) = (Rc::clone(&core), Rc::clone(&state), Rc::clone(&load));
        rt::spawn_local(async move {
            load.connections.set(load.connections.get() + 1);
            core.bump(|s| s.http_connections = load.connections.get() as u64);
            match state.tls.clone() {
                None => connection(&core, &state, &load, stream).await,
                Some(acceptor) => {
                    let limit = core.config().http_header_read_timeout;
                    match rt::timeout(limit, acceptor.accept(stream)).await {
                        Some(Ok(tls)) => connection(&core, &state, &load, tls).await,
                        Some(Err(e)) => tracing::debug!(shard = %core.id(), error = %e, "TLS handshake failed"),
                        None => tracing::debug!(shard = %core.id(), ?limit, "TLS handshake timed out"),
                    }
                }
            }
            load.connections.set(load.connections.get().saturating_sub(1));
            core.bump(|s| s.http_connections = load.connections.get() as u64);
        })
        .detach();
    }
}

/// Serve one connection (plain or TLS) until the client closes it, it breaks, or the route
/// closes (then after the request in flight).
async fn connection<S>(core: &Rc<ShardCore>, state: &Rc<RouteState>, load: &Rc<HttpLoad>, stream: S)
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin + 'static,
{
    let service = {
        let (core, state, load) = (Rc::clone(core), Rc::clone(state), Rc::clone(load));
        hyper::service::service_fn(move |request| {
            handle::handle(Rc::clone(&core), Rc::clone(&state), Rc::clone(&load), request)
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(ShardTimer)
        .header_read_timeout(core.config().http_header_read_timeout)
        .max_buf_size(HTTP_HEADER_BYTES_MAX)
        .max_headers(HTTP_HEADERS_MAX);
    let conn = builder.serve_connection(HyperIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let closing = state.closing.clone();
    let result = match futures::future::select(conn.as_mut(), closing).await {
        futures::future::Either::Left((result, _)) => result,
        futures::future::Either::Right((_, _)) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(shard = %core.id(), error = %e, "HTTP connection ended with an error");
    }
}

/// Answer a connection past the shard's bound with 503 and close it.
async fn refuse_connection(mut stream: TcpStream) {
    use futures::AsyncWriteExt as _;
    let response =
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let _ = rt::timeout(Duration::from_millis(ACCEPT_RETRY_MS * 100), async {
        let _ = stream.write_all(response).await;
        let _ = stream.close().await;
    })
    .await;
}
