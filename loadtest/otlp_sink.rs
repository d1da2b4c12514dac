//! `otlp-sink`: the collector of the tracing variants of the echo scenario. An OTLP/HTTP
//! receiver (hyper, protobuf decoded with `opentelemetry-proto`) that answers every export
//! with success and counts what it got, per host (`service.instance.id`): spans, log records,
//! requests and bytes. It does no more work per span than decoding, so a run measures what
//! tracing costs the host, not a collector's back-pressure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde::Serialize;

use crate::error::LoadtestError;

/// What one host exported.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HostCounts {
    pub spans: u64,
    pub log_records: u64,
    pub requests: u64,
    pub bytes: u64,
}

/// Everything received, by `service.instance.id` (the host key).
pub type Counts = BTreeMap<String, HostCounts>;

fn instance(resource: Option<&Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.instance.id"))
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(AnyValue::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Count one export body; an undecodable one is a 400, as a collector answers.
fn count(path: &str, body: &[u8], counts: &Mutex<Counts>) -> Result<(), String> {
    let mut counts = counts.lock().map_err(|_| "sink state poisoned".to_string())?;
    let mut add = |resource: Option<&Resource>, spans: u64, logs: u64| {
        let entry = counts.entry(instance(resource)).or_default();
        entry.spans += spans;
        entry.log_records += logs;
    };
    let first = match path {
        "/v1/traces" => {
            let request = ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())?;
            for rs in &request.resource_spans {
                let spans = rs.scope_spans.iter().map(|s| s.spans.len() as u64).sum();
                add(rs.resource.as_ref(), spans, 0);
            }
            request.resource_spans.first().and_then(|r| r.resource.clone())
        }
        "/v1/logs" => {
            let request = ExportLogsServiceRequest::decode(body).map_err(|e| e.to_string())?;
            for rl in &request.resource_logs {
                let logs = rl.scope_logs.iter().map(|s| s.log_records.len() as u64).sum();
                add(rl.resource.as_ref(), 0, logs);
            }
            request.resource_logs.first().and_then(|r| r.resource.clone())
        }
        other => return Err(format!("no OTLP signal at {other}")),
    };
    let entry = counts.entry(instance(first.as_ref())).or_default();
    entry.requests += 1;
    entry.bytes += body.len() as u64;
    Ok(())
}

async fn serve(
    request: Request<hyper::body::Incoming>,
    counts: Arc<Mutex<Counts>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_string();
    let body = request.into_body().collect().await?.to_bytes();
    let (status, text) = match count(&path, &body, &counts) {
        Ok(()) => (StatusCode::OK, Bytes::new()),
        Err(error) => (StatusCode::BAD_REQUEST, Bytes::from(error)),
    };
    let mut response = Response::new(Full::new(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(response)
}

/// Serve on `listen` until `stop` resolves; `ready(url)` once bound. Returns the counts.
pub async fn run(
    listen: SocketAddr,
    ready: impl FnOnce(&str),
    stop: impl std::future::Future<Output = ()>,
) -> Result<Counts, LoadtestError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| LoadtestError::Io {
            path: listen.to_string().into(),
            source: e,
        })?;
    let bound = listener.local_addr().map_err(|e| LoadtestError::Io {
        path: listen.to_string().into(),
        source: e,
    })?;
    ready(&format!("http://{bound}"));
    let counts = Arc::new(Mutex::new(Counts::new()));
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| serve(request, Arc::clone(&counts)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
    let counts = counts.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(counts)
}
