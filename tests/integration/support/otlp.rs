//! A real OTLP/HTTP receiver for the telemetry tests: hyper serves `POST /v1/traces` and
//! `POST /v1/logs` on loopback, `opentelemetry-proto` decodes the protobuf bodies, and the
//! spans and log records are kept (flattened) for the test to look at.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// One exported span, ids in lowercase hex.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's `SpanKind` number (2 server, 3 client, 1 internal).
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// The resource's `service.name`.
    pub service: String,
    /// OTLP status code (2 = error).
    pub status_code: i32,
}

/// One exported log record.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub body: String,
    pub severity: String,
    pub service: String,
}

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    logs: Vec<LogRecord>,
    requests: usize,
}

pub struct OtlpReceiver {
    pub url: String,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn service_of(resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    resource
        .map(|r| attributes(&r.attributes))
        .and_then(|a| a.get("service.name").cloned())
        .unwrap_or_default()
}

fn record_traces(body: &[u8], received: &Mutex<Received>) -> Result<Vec<u8>, String> {
    let request = ExportTraceServiceRequest::decode(body).map_err(|e| format!("not an OTLP trace export: {e}"))?;
    let mut received = received.lock().expect("receiver lock");
    for resource_spans in &request.resource_spans {
        let service = service_of(resource_spans.resource.as_ref());
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                received.spans.push(Span {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                    service: service.clone(),
                    status_code: span.status.as_ref().map_or(0, |s| s.code),
                });
            }
        }
    }
    received.requests += 1;
    Ok(ExportTraceServiceResponse::default().encode_to_vec())
}

fn record_logs(body: &[u8], received: &Mutex<Received>) -> Result<Vec<u8>, String> {
    let request = ExportLogsServiceRequest::decode(body).map_err(|e| format!("not an OTLP log export: {e}"))?;
    let mut received = received.lock().expect("receiver lock");
    for resource_logs in &request.resource_logs {
        let service = service_of(resource_logs.resource.as_ref());
        for scope_logs in &resource_logs.scope_logs {
            for record in &scope_logs.log_records {
                received.logs.push(LogRecord {
                    body: text(record.body.as_ref()),
                    severity: record.severity_text.clone(),
                    service: service.clone(),
                });
            }
        }
    }
    received.requests += 1;
    Ok(ExportLogsServiceResponse::default().encode_to_vec())
}

async fn serve(
    request: Request<hyper::body::Incoming>,
    received: Arc<Mutex<Received>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_string();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = request.into_body().collect().await?.to_bytes();
    let result = if content_type != "application/x-protobuf" {
        Err(format!("content-type {content_type:?}, not application/x-protobuf"))
    } else {
        match path.as_str() {
            "/v1/traces" => record_traces(&body, &received),
            "/v1/logs" => record_logs(&body, &received),
            other => Err(format!("no OTLP signal at {other}")),
        }
    };
    let response = match result {
        Ok(bytes) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(bytes))),
        Err(error) => {
            eprintln!("otlp receiver: {error}");
            Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Full::new(Bytes::from(error)))
        }
    };
    Ok(response.expect("response"))
}

impl OtlpReceiver {
    /// Listen on a free loopback port.
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Received::default()));
        let shared = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let received = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| serve(request, Arc::clone(&received)));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        OtlpReceiver { url, received, task }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.received.lock().expect("receiver lock").spans.clone()
    }

    pub fn logs(&self) -> Vec<LogRecord> {
        self.received.lock().expect("receiver lock").logs.clone()
    }

    /// The spans of `trace_id`, once `done` says they are all there (bounded wait).
    pub async fn wait_spans(&self, what: &str, timeout: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not exported within {timeout:?}; got {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
