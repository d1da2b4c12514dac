//! One request of the built-in HTTP server, on the shard that accepted its connection: the
//! httpserver provider's rules (read-only mode → 405, the body limit → 413, CORS, the
//! `Cache-Control` setting, an invocation error → 500 with an empty body), the host's own
//! (a shard over its bound → 503 with `Retry-After`), then `HttpServer.HandleRequest` on a warm
//! instance of this shard — the policy verdict of (built-in, link name, actor) applies, and the
//! actor's claims must grant `wasmcloud:httpserver` — or, when the actor does not run here (or
//! its pair waits for a policy decision), a signed invocation through the lattice from the
//! built-in's identity, as the provider sends it.
//!
//! Data plane. The request is encoded straight from hyper's parsed head into the guest's
//! payload (`wire::http`); the actor's response is read in place and its body handed to hyper
//! without a copy.

use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::builtin::http_settings::{Cors, HttpSettings};
use crate::builtin::identity::BuiltinProvider;
use crate::wire::http::{decode_response, encode_request, HttpRequestFields};
use crate::wire::trace::{extract, CallTrace};

use super::super::calls::{from_builtin, BuiltinRequest, Delivery};
use super::super::core::ShardCore;
use super::super::local::Refusal;
use super::{HttpLoad, RouteState};

/// The operation every request runs.
pub const HANDLE_REQUEST: &str = "HttpServer.HandleRequest";
/// `Retry-After` on a 503 for overload, seconds.
pub const RETRY_AFTER_SECS: u32 = 1;

type HttpResponse = Response<Full<Bytes>>;

/// Counts one request in flight on the shard until dropped.
struct InFlight(Rc<HttpLoad>);

impl InFlight {
    fn enter(load: &Rc<HttpLoad>) -> InFlight {
        load.inflight.set(load.inflight.get() + 1);
        InFlight(Rc::clone(load))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.set(self.0.inflight.get().saturating_sub(1));
    }
}

fn status_only(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Serve one request (hyper's service function: every outcome is a response).
pub(super) async fn handle(
    core: Rc<ShardCore>,
    state: Rc<RouteState>,
    load: Rc<HttpLoad>,
    request: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    core.bump(|s| s.http_requests += 1);
    let settings = &state.route.settings;
    let origin = request.headers().get(hyper::header::ORIGIN).cloned();
    let mut response = match cors_check(&settings.cors, &request, origin.as_ref()) {
        CorsVerdict::Forbidden => refused(&core, StatusCode::FORBIDDEN),
        CorsVerdict::Preflight(response) => response,
        CorsVerdict::Pass => serve(&core, &state, &load, request).await,
    };
    if let Some(origin) = origin.filter(|_| response.status() != StatusCode::FORBIDDEN) {
        allow_origin(&settings.cors, origin, response.headers_mut());
    }
    Ok(response)
}

/// A response the host makes without the actor.
fn refused(core: &ShardCore, status: StatusCode) -> HttpResponse {
    core.bump(|s| s.http_refused += 1);
    status_only(status)
}

async fn serve(
    core: &Rc<ShardCore>,
    state: &RouteState,
    load: &Rc<HttpLoad>,
    request: Request<Incoming>,
) -> HttpResponse {
    let settings = &state.route.settings;
    if settings.readonly_mode && request.method() != Method::GET && request.method() != Method::HEAD {
        return refused(core, StatusCode::METHOD_NOT_ALLOWED);
    }
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > settings.max_content_bytes) {
        return refused(core, StatusCode::PAYLOAD_TOO_LARGE);
    }
    if load.inflight() >= core.config().inflight_max {
        let mut response = refused(core, StatusCode::SERVICE_UNAVAILABLE);
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        return response;
    }
    let _inflight = InFlight::enter(load);
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(settings.max_content_bytes).unwrap_or(usize::MAX);
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return refused(core, StatusCode::PAYLOAD_TOO_LARGE);
        }
        Err(e) => {
            tracing::debug!(shard = %core.id(), error = %e, "cannot read a request body");
            return refused(core, StatusCode::BAD_REQUEST);
        }
    };
    let payload = encode(&parts, &body);
    let trace = extract(
        parts
            .headers
            .iter()
            .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str(), v))),
    )
    .ok()
    .flatten();
    match invoke(core, state, payload, trace.as_ref()).await {
        Ok(bytes) => respond(core, settings, bytes),
        Err(Failure { status, error }) => {
            tracing::debug!(shard = %core.id(), actor = %state.route.actor_id, %error, "HTTP request failed");
            let mut response = refused(core, status);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response
                    .headers_mut()
                    .insert(hyper::header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            response
        }
    }
}

/// The request as the provider hands it to the actor: header values that are not text are
/// left out, as the provider leaves them out.
fn encode(parts: &hyper::http::request::Parts, body: &[u8]) -> Vec<u8> {
    let mut values: Vec<(&str, Vec<&str>)> = Vec::with_capacity(parts.headers.keys_len());
    for name in parts.headers.keys() {
        let texts: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !texts.is_empty() {
            values.push((name.as_str(), texts));
        }
    }
    let header: Vec<(&str, &[&str])> = values.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let fields = HttpRequestFields {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query_string: parts.uri.query().unwrap_or(""),
        header: &header,
        body,
    };
    let mut out = Vec::with_capacity(body.len() + 256);
    encode_request(&mut out, &fields);
    out
}

/// Why a request got no actor response.
struct Failure {
    status: StatusCode,
    error: String,
}

impl Failure {
    fn internal(error: String) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error,
        }
    }
}

/// Run the request on this shard, or send it through the lattice.
async fn invoke(
    core: &Rc<ShardCore>,
    state: &RouteState,
    payload: Vec<u8>,
    trace: Option<&CallTrace>,
) -> Result<Bytes, Failure> {
    let request = BuiltinRequest {
        builtin: BuiltinProvider::HttpServer,
        link_name: &state.route.link_name,
        actor: &state.route.actor_id,
        operation: HANDLE_REQUEST,
        trace,
        timeout: state
            .route
            .settings
            .timeout_ms
            .map_or(core.config().rpc_timeout, Duration::from_millis),
    };
    match from_builtin(core, request, payload).await {
        Delivery::Ran(result) => result.map(Bytes::from).map_err(Failure::internal),
        Delivery::Forwarded(result) => {
            core.bump(|s| s.http_forwarded += 1);
            result.map(Bytes::from).map_err(Failure::internal)
        }
        Delivery::Refused(Refusal::Overloaded, error) => Err(Failure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error,
        }),
        Delivery::Refused(_, error) => Err(Failure::internal(error)),
    }
}

/// The actor's `HttpResponse` as an HTTP response: a status that is not one, or a reply that
/// is not an `HttpResponse`, is a 500; header names or values HTTP cannot carry are left out
/// (logged), as the provider does; `Cache-Control` from the settings unless the actor set one.
fn respond(core: &ShardCore, settings: &HttpSettings, bytes: Bytes) -> HttpResponse {
    let decoded = match decode_response(&bytes) {
        Ok(decoded) => decoded,
        Err(e) => {
            tracing::debug!(shard = %core.id(), error = %e, "the actor's reply is not an HttpResponse");
            return refused(core, StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let Ok(status) = StatusCode::from_u16(decoded.status_code) else {
        return refused(core, StatusCode::INTERNAL_SERVER_ERROR);
    };
    let mut response = Response::new(Full::new(bytes.slice_ref(decoded.body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in &decoded.header {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::debug!(shard = %core.id(), header = %name, "response header HTTP cannot carry; left out"),
        }
    }
    if let Some(cache) = &settings.cache_control {
        if !headers.contains_key(hyper::header::CACHE_CONTROL) {
            if let Ok(value) = HeaderValue::from_str(cache) {
                headers.insert(hyper::header::CACHE_CONTROL, value);
            }
        }
    }
    response
}

/// What CORS makes of a request.
enum CorsVerdict {
    /// Not a CORS request, or an allowed one: serve it.
    Pass,
    /// An origin, method or header the settings do not allow.
    Forbidden,
    /// An allowed preflight: answered here.
    Preflight(HttpResponse),
}

fn listed(list: &[String], item: &str) -> bool {
    list.iter().any(|entry| entry.eq_ignore_ascii_case(item))
}

/// CORS as the provider's (warp's) filter applies it.
fn cors_check(cors: &Cors, request: &Request<Incoming>, origin: Option<&HeaderValue>) -> CorsVerdict {
    let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
        return CorsVerdict::Pass;
    };
    if !cors.allowed_origins.is_empty() && !cors.allowed_origins.iter().any(|o| o == origin) {
        return CorsVerdict::Forbidden;
    }
    let headers = request.headers();
    let asked = headers
        .get(hyper::header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| v.to_str().ok());
    let (true, Some(method)) = (request.method() == Method::OPTIONS, asked) else {
        return CorsVerdict::Pass;
    };
    if !listed(&cors.allowed_methods, method) {
        return CorsVerdict::Forbidden;
    }
    let asked_headers = headers
        .get(hyper::header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let all_allowed = asked_headers
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .all(|h| listed(&cors.allowed_headers, h));
    if !all_allowed {
        return CorsVerdict::Forbidden;
    }
    let mut response = status_only(StatusCode::OK);
    let out = response.headers_mut();
    let joined = |list: &[String]| HeaderValue::from_str(&list.join(", ")).ok();
    if let Some(value) = joined(&cors.allowed_methods) {
        out.insert(hyper::header::ACCESS_CONTROL_ALLOW_METHODS, value);
    }
    if let Some(value) = joined(&cors.allowed_headers) {
        out.insert(hyper::header::ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    out.insert(
        hyper::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(cors.max_age_secs),
    );
    CorsVerdict::Preflight(response)
}

/// The CORS headers of an allowed cross-origin response.
fn allow_origin(cors: &Cors, origin: HeaderValue, headers: &mut hyper::HeaderMap) {
    headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if !cors.exposed_headers.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&cors.exposed_headers.join(", ")) {
            headers.insert(hyper::header::ACCESS_CONTROL_EXPOSE_HEADERS, value);
        }
    }
}
