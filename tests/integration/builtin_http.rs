//! The built-in HTTP server (issue 20, item 1): `lp wasmcloud+builtin://http-server` starts it
//! with no process (provider events, inventory, health answers as for a PAR), a link puts the
//! shards to listen, requests run `HttpServer.HandleRequest` on the accepting shard — real
//! HTTP/1.1 clients with keep-alive, pipelining, chunked bodies —, the provider's limits and
//! modes apply, slow clients are cut off, a link delete closes the listeners, and an actor
//! running on another host is reached through the lattice.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shardhost::builtin::identity::BuiltinProvider;

use crate::support::http::{connect, exchange, exchange_on, get, RawResponse};
use crate::support::rpc::{counter, lab_with, Lab, EVENT_TIMEOUT};
use crate::support::{
    assert_accepted, assert_refused, eventually, expect_event, free_port, request_json, signed_http_echo,
};

/// The `HttpRequest` the actor received (its response body), decoded as the interface's serde.
#[derive(serde::Deserialize, Debug)]
struct SeenRequest {
    method: String,
    path: String,
    #[serde(rename = "queryString")]
    query_string: String,
    header: std::collections::HashMap<String, Vec<String>>,
    body: Body,
}

/// msgpack bin as bytes (what `serde_bytes` reads).
#[derive(Debug)]
struct Body(Vec<u8>);

impl<'de> serde::Deserialize<'de> for Body {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Body, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Body;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("msgpack bin")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Body, E> {
                Ok(Body(v.to_vec()))
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

fn seen(response: &RawResponse) -> SeenRequest {
    rmp_serde::from_slice(&response.body).expect("the actor's body is the HttpRequest it saw")
}

/// Start the built-in (link name `default`) and wait for its `provider_started`.
async fn start_builtin(lab: &mut Lab) -> Value {
    let body =
        json!({ "provider_ref": "wasmcloud+builtin://http-server", "link_name": "default", "host_id": lab.host.id });
    let ack = request_json(&lab.nc, &lab.host.cmd("lp"), body.to_string().as_bytes()).await;
    assert_accepted(&ack, "lp of the built-in");
    expect_event(&mut lab.events, "provider_started", EVENT_TIMEOUT, "built-in started").await
}

/// Link `actor` to the built-in with `values`.
async fn link(lab: &Lab, actor: &str, values: Value) -> Value {
    let link = json!({
        "actor_id": actor,
        "provider_id": BuiltinProvider::HttpServer.service_key(),
        "link_name": "default",
        "contract_id": "wasmcloud:httpserver",
        "values": values,
    });
    request_json(&lab.nc, &lab.host.ctl("linkdefs.put"), link.to_string().as_bytes()).await
}

/// Link `actor` to the built-in on a free port (acked); the port.
async fn linked_port(lab: &Lab, actor: &str) -> u16 {
    let port = free_port();
    assert_accepted(&link(lab, actor, json!({ "port": port.to_string() })).await, "link put");
    port
}

/// Wait until `port` answers a GET.
async fn serving(port: u16) -> RawResponse {
    eventually(EVENT_TIMEOUT, "the built-in listens", || async {
        get(port, "/ready").await.ok()
    })
    .await
}

#[tokio::test]
async fn the_builtin_http_server_starts_like_a_provider_and_serves_http_1_1_on_the_shards() {
    let mut lab = lab_with("builtin-http", &[("--provider-health-interval-ms", "500")]).await;
    let actor = signed_http_echo();
    lab.start("http.wasm", &actor, 1).await;
    let started = start_builtin(&mut lab).await;
    let key = BuiltinProvider::HttpServer.service_key();
    assert_eq!(started["data"]["public_key"], key.as_str());
    assert_eq!(started["data"]["image_ref"], "wasmcloud+builtin://http-server");
    assert_eq!(started["data"]["contract_id"], "wasmcloud:httpserver");
    expect_event(
        &mut lab.events,
        "health_check_passed",
        EVENT_TIMEOUT,
        "built-in healthy",
    )
    .await;
    let inventory = request_json(&lab.nc, &lab.host.ctl(&format!("get.{}.inv", lab.host.id)), b"").await;
    let providers = inventory["providers"].as_array().expect("providers");
    assert!(
        providers
            .iter()
            .any(|p| p["id"] == key.as_str() && p["link_name"] == "default"),
        "{inventory}"
    );
    // A health request is answered as a provider answers it.
    let health = lab
        .nc
        .request(
            format!("wasmbus.rpc.{}.{key}.default.health", lab.host.lattice),
            Vec::new().into(),
        )
        .await
        .expect("health reply");
    let health: Value = rmp_serde::from_slice(&health.payload).expect("HealthCheckResponse");
    assert_eq!(health["healthy"], true);
    // Its claims are in the lattice bucket, as a PAR provider's are.
    let claims = crate::support::get_claims(&lab.nc, &lab.host.lattice).await;
    assert!(
        claims
            .iter()
            .any(|c| c["sub"] == key.as_str() && c["contract_id"] == "wasmcloud:httpserver"),
        "{claims:?}"
    );

    let port = free_port();
    let ack = link(&lab, &actor.key, json!({ "ADDRESS": format!("127.0.0.1:{port}") })).await;
    assert_accepted(&ack, "link put");
    serving(port).await;

    // One connection: a GET with a query and a repeated header, then (pipelined, before the
    // first answer is read) a chunked POST; both answered in order on the same connection.
    let raw = String::from(
        "GET /items/7?sort=asc&x=1 HTTP/1.1\r\nHost: test\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n\
         POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
    let answers = exchange(port, raw.into_bytes(), 2).await.expect("two answers");
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].header("x-actor"), Some("wat"));
    let first = seen(&answers[0]);
    assert_eq!((first.method.as_str(), first.path.as_str()), ("GET", "/items/7"));
    assert_eq!(first.query_string, "sort=asc&x=1");
    assert_eq!(first.header["x-multi"], ["a", "b"]);
    let second = seen(&answers[1]);
    assert_eq!(
        (second.method.as_str(), second.body.0.as_slice()),
        ("POST", &b"hello world"[..])
    );

    // Many connections at once, several requests each (keep-alive).
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let raw = (0..5)
                .map(|j| format!("GET /c{i}/r{j} HTTP/1.1\r\nHost: test\r\n\r\n"))
                .collect::<String>();
            exchange(port, raw.into_bytes(), 5)
        })
        .collect();
    for (i, answers) in futures::future::join_all(clients).await.into_iter().enumerate() {
        let answers = answers.expect("keep-alive client");
        for (j, answer) in answers.iter().enumerate() {
            assert_eq!(seen(answer).path, format!("/c{i}/r{j}"));
        }
    }
    let sums = lab
        .shard_sums(&["http_requests", "http_forwarded", "calls_sent"], |s| s[0] >= 83)
        .await;
    assert_eq!(sums[1], 0, "served on the shards, nothing forwarded: {sums:?}");
    // Every client has closed: no connection is left open on the shards.
    lab.shard_sums(&["http_connections"], |s| s[0] == 0).await;

    // sp: provider_stopped, and the port stops accepting.
    let body = json!({ "provider_ref": key, "link_name": "default", "host_id": lab.host.id });
    let ack = request_json(&lab.nc, &lab.host.cmd("sp"), body.to_string().as_bytes()).await;
    assert_accepted(&ack, "sp of the built-in");
    expect_event(&mut lab.events, "provider_stopped", EVENT_TIMEOUT, "built-in stopped").await;
    eventually(EVENT_TIMEOUT, "listener closed after sp", || async {
        get(port, "/").await.is_err().then_some(())
    })
    .await;
}

#[tokio::test]
async fn limits_modes_and_refused_link_values() {
    let mut lab = lab_with("builtin-limits", &[("--http-header-read-timeout-ms", "700")]).await;
    let actor = signed_http_echo();
    lab.start("http.wasm", &actor, 1).await;
    start_builtin(&mut lab).await;
    // A value the built-in does not know is refused in the ack, never ignored.
    let why = assert_refused(
        &link(&lab, &actor.key, json!({ "port": "8080", "bogus": "1" })).await,
        "bad values",
    );
    assert!(why.contains("bogus"), "{why}");
    let port = free_port();
    let config = json!({ "max_content_len": "1K", "readonly_mode": false, "cache_control": "max-age=60" });
    let ack = link(
        &lab,
        &actor.key,
        json!({ "port": port.to_string(), "config_json": config.to_string() }),
    )
    .await;
    assert_accepted(&ack, "link put");
    let ok = serving(port).await;
    assert_eq!(ok.header("cache-control"), Some("max-age=60"));

    // A body past max_content_len: 413, declared or chunked.
    let big = "x".repeat(2048);
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{big}",
        big.len()
    );
    let answer = exchange(port, raw.into_bytes(), 1).await.expect("413");
    assert_eq!(answer[0].status, 413);
    let raw = format!("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{big}\r\n0\r\n\r\n");
    assert_eq!(exchange(port, raw.into_bytes(), 1).await.expect("413")[0].status, 413);

    // Slowloris: a head trickled in is cut off at the header read timeout; others are served.
    let slow = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let began = Instant::now();
        stream.write_all(b"GET / HTTP/1.1\r\n").expect("first line");
        let mut result = None;
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(100));
            if stream.write_all(b"X-Slow: 1\r\n").is_err() {
                result = Some(began.elapsed());
                break;
            }
        }
        let closed = result.or_else(|| {
            // The server's close shows as a read of 0 (after its 408, if it sent one).
            let mut buf = [0u8; 256];
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            loop {
                match std::io::Read::read(&mut stream, &mut buf) {
                    Ok(0) | Err(_) => return Some(began.elapsed()),
                    Ok(_) => continue,
                }
            }
        });
        closed.expect("the slow connection was closed")
    });
    for _ in 0..5 {
        assert_eq!(get(port, "/fast").await.expect("served meanwhile").status, 200);
    }
    let cut_after = slow.await.expect("slow client");
    assert!(cut_after < Duration::from_secs(4), "cut off after {cut_after:?}");

    // Read-only mode: POST is 405, GET still served.
    let values = json!({ "port": port.to_string(), "readonly_mode": "true" });
    assert_accepted(&link(&lab, &actor.key, values).await, "link put (read-only)");
    eventually(EVENT_TIMEOUT, "read-only in force", || async {
        let raw = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi".to_vec();
        let answer = exchange(port, raw, 1).await.ok()?;
        (answer[0].status == 405).then_some(())
    })
    .await;
    assert_eq!(get(port, "/").await.expect("GET").status, 200);

    // Link delete: new connections are refused.
    let del = json!({ "actor_id": actor.key, "contract_id": "wasmcloud:httpserver", "link_name": "default" });
    let ack = request_json(&lab.nc, &lab.host.ctl("linkdefs.del"), del.to_string().as_bytes()).await;
    assert_accepted(&ack, "link delete");
    eventually(EVENT_TIMEOUT, "listener closed after the link delete", || async {
        get(port, "/").await.is_err().then_some(())
    })
    .await;
}

#[tokio::test]
async fn requests_for_an_actor_on_another_host_go_through_the_lattice() {
    let mut lab = lab_with("builtin-forward", &[]).await;
    let actor = signed_http_echo();
    // The actor runs on a second host only; this host runs the built-in.
    let _second = lab.second_host_on(None, &actor, &[]).await;
    start_builtin(&mut lab).await;
    let port = linked_port(&lab, &actor.key).await;
    let answer = serving(port).await;
    assert_eq!(answer.status, 200);
    assert_eq!(seen(&answer).path, "/ready");
    let raw = "GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n";
    let answers = exchange(port, raw.as_bytes().to_vec(), 2)
        .await
        .expect("forwarded answers");
    assert_eq!(seen(&answers[1]).path, "/b");
    let sums = lab.shard_sums(&["http_forwarded"], |s| s[0] >= 3).await;
    assert!(sums[0] >= 3, "{sums:?}");
}

/// Sum of `name` over the shards' last counters lines in a host's log.
fn host_counter(log: &str, name: &str) -> u64 {
    ["shard-0", "shard-1"]
        .iter()
        .filter_map(|shard| {
            log.lines()
                .rev()
                .find(|l| l.contains("shard counters") && l.contains(&format!("shard={shard} ")))
        })
        .map(|line| counter(line, name))
        .sum()
}

#[tokio::test]
async fn a_link_delete_mid_load_finishes_what_is_in_flight_and_refuses_new_connections() {
    let mut lab = lab_with("builtin-delete", &[]).await;
    let actor = signed_http_echo();
    lab.start("http.wasm", &actor, 1).await;
    start_builtin(&mut lab).await;
    let port = linked_port(&lab, &actor.key).await;
    serving(port).await;
    // Eight keep-alive clients send one request at a time until their connection ends and no
    // new one is accepted. Every response that starts must be complete and 200; a connection
    // may end only between responses.
    let stop_at = Instant::now() + Duration::from_secs(20);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            tokio::task::spawn_blocking(move || {
                let mut ok = 0u32;
                while Instant::now() < stop_at {
                    let Ok(mut stream) = connect(port) else { return Ok(ok) };
                    loop {
                        match exchange_on(&mut stream, b"GET /load HTTP/1.1\r\nHost: t\r\n\r\n", 1) {
                            Ok(answers) if answers[0].status == 200 => ok += 1,
                            Ok(answers) => return Err(format!("status {}", answers[0].status)),
                            Err(e)
                                if e.contains("partial 0 bytes")
                                    || e.contains("reset")
                                    || e.contains("Broken pipe") =>
                            {
                                break
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(format!("still connecting after 20 s ({ok} answers)"))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let del = json!({ "actor_id": actor.key, "contract_id": "wasmcloud:httpserver", "link_name": "default" });
    let ack = request_json(&lab.nc, &lab.host.ctl("linkdefs.del"), del.to_string().as_bytes()).await;
    assert_accepted(&ack, "link delete");
    for client in clients {
        let ok = client.await.expect("client thread").expect("no broken response");
        assert!(ok > 0, "each client was served before the delete");
    }
    assert!(get(port, "/").await.is_err(), "new connections are refused");
}

#[tokio::test]
async fn two_hosts_with_the_same_link_both_serve_the_port() {
    let mut lab = lab_with("builtin-two", &[]).await;
    let actor = signed_http_echo();
    lab.start("http.wasm", &actor, 1).await;
    let second = lab.second_host_on(None, &actor, &[]).await;
    start_builtin(&mut lab).await;
    let body =
        json!({ "provider_ref": "wasmcloud+builtin://http-server", "link_name": "default", "host_id": second.id });
    assert_accepted(
        &request_json(&lab.nc, &second.cmd("lp"), body.to_string().as_bytes()).await,
        "lp on the second host",
    );
    loop {
        let event = expect_event(&mut lab.events, "provider_started", EVENT_TIMEOUT, "second built-in").await;
        if event["source"] == second.id.as_str() {
            break;
        }
    }
    let port = free_port();
    assert_accepted(
        &link(&lab, &actor.key, json!({ "port": port.to_string() })).await,
        "one link for both",
    );
    serving(port).await;
    // Both hosts bound the port (SO_REUSEPORT): new connections reach both.
    eventually(EVENT_TIMEOUT, "requests on both hosts", || async {
        let requests = (0..32).map(|_| get(port, "/spread"));
        for answer in futures::future::join_all(requests).await {
            assert_eq!(answer.ok()?.status, 200);
        }
        let first = host_counter(&lab.host.stderr(), "http_requests");
        let other = host_counter(&second.stderr(), "http_requests");
        (first > 0 && other > 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn https_with_the_links_certificate_files() {
    let mut lab = lab_with("builtin-tls", &[]).await;
    let actor = signed_http_echo();
    lab.start("http.wasm", &actor, 1).await;
    start_builtin(&mut lab).await;
    let ca = crate::support::tls::make_ca(lab.dir.path(), "https");
    let port = free_port();
    let config = json!({ "tls": { "cert_file": ca.server_cert, "priv_key_file": ca.server_key } });
    let values = json!({ "port": port.to_string(), "config_json": config.to_string() });
    assert_accepted(&link(&lab, &actor.key, values).await, "link put with TLS");
    let ca_file = ca.ca.clone();
    let answer = eventually(EVENT_TIMEOUT, "HTTPS answers", || {
        let ca_file = ca_file.clone();
        async move {
            tokio::task::spawn_blocking(move || https_get(port, &ca_file))
                .await
                .ok()?
                .ok()
        }
    })
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(seen(&answer).path, "/secure");
}

/// `GET /secure` over TLS, trusting only `ca_file`.
fn https_get(port: u16, ca_file: &std::path::Path) -> Result<RawResponse, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).map_err(|e| e.to_string())? {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(tls, connect(port)?);
    exchange_on(&mut stream, b"GET /secure HTTP/1.1\r\nHost: localhost\r\n\r\n", 1).map(|mut r| r.remove(0))
}

/// The httpserver provider 0.19.1's binary, for the test that runs it beside the built-in (not
/// built by CI: `loadtest/http.sh` says how it is built).
fn httpserver_binary() -> std::path::PathBuf {
    let path = std::path::PathBuf::from(
        std::env::var_os("SHARDHOST_HTTPSERVER_BIN")
            .expect("set SHARDHOST_HTTPSERVER_BIN to the httpserver 0.19.1 binary"),
    );
    assert!(
        path.is_file(),
        "SHARDHOST_HTTPSERVER_BIN={} is not a file",
        path.display()
    );
    path
}

#[tokio::test]
#[ignore = "needs the httpserver 0.19.1 provider binary in $SHARDHOST_HTTPSERVER_BIN"]
async fn the_httpserver_par_serves_beside_the_builtin() {
    let mut lab = lab_with("builtin-par", &[("--provider-health-interval-ms", "500")]).await;
    let actor = signed_http_echo();
    lab.start("http.wasm", &actor, 1).await;
    start_builtin(&mut lab).await;
    let par = crate::support::provider::make_par_of(
        lab.dir.path(),
        "httpserver.par",
        &httpserver_binary(),
        "wasmcloud:httpserver",
        false,
    );
    let started = crate::providers::start_provider(&mut lab, &crate::providers::file_ref(&par.path), "par", "").await;
    assert_eq!(started["data"]["public_key"], par.key.as_str());
    let (builtin_port, par_port) = (free_port(), free_port());
    assert_accepted(
        &link(&lab, &actor.key, json!({ "port": builtin_port.to_string() })).await,
        "built-in link",
    );
    let par_link = json!({
        "actor_id": actor.key, "provider_id": par.key, "link_name": "par",
        "contract_id": "wasmcloud:httpserver", "values": { "port": par_port.to_string() },
    });
    let ack = request_json(&lab.nc, &lab.host.ctl("linkdefs.put"), par_link.to_string().as_bytes()).await;
    assert_accepted(&ack, "PAR link");
    for port in [builtin_port, par_port] {
        let answer = serving(port).await;
        assert_eq!(answer.status, 200, "port {port}");
        assert_eq!(answer.header("x-actor"), Some("wat"), "port {port}");
        assert_eq!(seen(&answer).path, "/ready");
    }
}

#[tokio::test]
async fn an_actor_without_the_httpserver_claim_gets_no_request() {
    let mut lab = lab_with("builtin-claims", &[]).await;
    let actor = crate::support::signed_wat(
        include_str!("../../loadtest/http_echo.wat"),
        crate::support::ActorSpec {
            caps: vec!["wasmcloud:keyvalue".into()],
            ..Default::default()
        },
    );
    lab.start("http.wasm", &actor, 1).await;
    start_builtin(&mut lab).await;
    let port = linked_port(&lab, &actor.key).await;
    // As the provider answers a refused invocation: 500, empty body; the guest never ran.
    let answer = eventually(EVENT_TIMEOUT, "the built-in listens", || async {
        get(port, "/").await.ok()
    })
    .await;
    assert_eq!(answer.status, 500);
    assert!(answer.body.is_empty());
    let sums = lab.shard_sums(&["http_refused"], |s| s[0] >= 1).await;
    assert!(sums[0] >= 1);
}

#[tokio::test]
async fn the_policy_verdict_applies_to_http_requests() {
    let builtin = BuiltinProvider::HttpServer.service_key();
    let denied = builtin.clone();
    let (mut lab, service) = crate::policy::policy_lab("httppol", "1000", move |request: &Value| {
        let from_builtin =
            request["action"] == "perform_invocation" && request["source"]["publicKey"] == denied.as_str();
        if from_builtin {
            crate::support::policy::Answer::Deny("no HTTP here")
        } else {
            crate::support::policy::Answer::Permit
        }
    })
    .await;
    let actor = signed_http_echo();
    lab.start("http.wasm", &actor, 1).await;
    start_builtin(&mut lab).await;
    let port = linked_port(&lab, &actor.key).await;
    // Denied as the provider's request would be: 500, the guest never runs.
    let first = eventually(EVENT_TIMEOUT, "the built-in listens", || async {
        get(port, "/").await.ok()
    })
    .await;
    assert_eq!(first.status, 500);
    for _ in 0..4 {
        assert_eq!(get(port, "/again").await.expect("answer").status, 500);
    }
    // The pair (built-in, link name, actor) was asked about once; the rest were denied on the
    // accepting shards.
    let asked: Vec<Value> = service
        .requests_for("perform_invocation")
        .into_iter()
        .filter(|r| r["source"]["publicKey"] == builtin.as_str())
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["source"]["linkName"], "default");
    let sums = lab.shard_sums(&["http_refused", "http_forwarded"], |s| s[0] >= 5).await;
    assert!(
        sums[1] <= 2,
        "only undecided requests went through the lattice: {sums:?}"
    );
}

#[tokio::test]
async fn a_shard_over_its_bound_answers_503_with_retry_after() {
    // Each shard runs one request at a time; a runaway actor holds it until its 800 ms deadline.
    let extra = [("--shard-inflight-max", "1"), ("--max-execution-time", "800")];
    let mut lab = lab_with("builtin-503", &extra).await;
    let runaway = crate::support::signed_wat(
        include_str!("../../src/runtime/actors/forever.wat"),
        crate::support::ActorSpec::default(),
    );
    let path = lab.dir.path().join("forever.wasm");
    std::fs::write(&path, &runaway.bytes).expect("write actor");
    let body = json!({ "actor_ref": format!("file://{}", path.display()), "count": 1, "host_id": lab.host.id });
    assert_accepted(
        &request_json(&lab.nc, &lab.host.cmd("la"), body.to_string().as_bytes()).await,
        "la",
    );
    expect_event(&mut lab.events, "actor_started", EVENT_TIMEOUT, "runaway").await;
    start_builtin(&mut lab).await;
    let port = linked_port(&lab, &runaway.key).await;
    eventually(EVENT_TIMEOUT, "the built-in listens", || async {
        get(port, "/").await.ok()
    })
    .await;
    // Eight requests at once on two shards: a shard gets at least two, and answers the ones
    // past its bound 503 at once; the others run until the deadline stops the guest (500).
    let answers = futures::future::join_all((0..8).map(|i| get(port, if i % 2 == 0 { "/a" } else { "/b" }))).await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().expect("an answer, not a hang").status)
        .collect();
    assert!(statuses.iter().all(|s| *s == 503 || *s == 500), "{statuses:?}");
    let busy: Vec<&RawResponse> = answers.iter().flatten().filter(|a| a.status == 503).collect();
    assert!(!busy.is_empty(), "{statuses:?}");
    assert!(busy.iter().all(|a| a.header("retry-after") == Some("1")));
    assert!(statuses.contains(&500), "the first on each shard ran: {statuses:?}");
}

#[tokio::test]
async fn a_requests_traceparent_parents_its_span() {
    let receiver = crate::support::otlp::OtlpReceiver::start().await;
    let mut lab = crate::telemetry::traced_lab("builtin-trace", Some(&receiver)).await;
    let actor = signed_http_echo();
    lab.start("http.wasm", &actor, 1).await;
    start_builtin(&mut lab).await;
    let port = linked_port(&lab, &actor.key).await;
    serving(port).await;
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";
    let raw = format!("GET /traced HTTP/1.1\r\nHost: t\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n\r\n");
    let answer = exchange(port, raw.into_bytes(), 1).await.expect("answer");
    assert_eq!(answer[0].status, 200);
    // The guest saw the header too (the provider passes every text header on).
    assert!(seen(&answer[0]).header.contains_key("traceparent"));
    let spans = receiver
        .wait_spans("the request's span", Duration::from_secs(15), |spans| {
            spans.iter().any(|s| s.trace_id == TRACE)
        })
        .await;
    let span = spans.iter().find(|s| s.trace_id == TRACE).expect("span");
    assert_eq!(span.parent_span_id, PARENT, "{span:?}");
    assert_eq!(span.name, "HttpServer.HandleRequest", "{span:?}");
}
