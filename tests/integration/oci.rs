//! Actor pulls from a real OCI registry (PROTOCOL.md §11): Debian's docker-registry 2.8 on
//! 127.0.0.1 (plain HTTP), artifacts pushed with oci-client in the wasmCloud actor shape, then
//! fetched with `shardhost::control::fetch::Fetcher`: bytes, layer cache (memory and disk),
//! `:latest` policy, HTTPS for registries not listed as insecure, unknown tags, no wasm layer,
//! a registry that never answers, and htpasswd basic auth with credentials from `Registries`.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use shardhost::control::fetch::{FetchPolicy, Fetched, Fetcher, ACTOR_CONFIG_MEDIA_TYPE, ACTOR_LAYER_MEDIA_TYPE};
use shardhost::control::registries::Registries;

use crate::support::{free_port, Registry};

/// Upper bound for one push or fetch against the local registry.
const OCI_TIMEOUT: Duration = Duration::from_secs(30);

/// A small valid module; `marker` makes each one distinct.
fn module(marker: i32) -> Vec<u8> {
    wat::parse_str(format!(
        "(module (func (export \"marker\") (result i32) i32.const {marker}))"
    ))
    .expect("wat")
}

fn policy(registry: &Registry, allow_latest: bool) -> FetchPolicy {
    FetchPolicy {
        allow_latest,
        allow_file_load: false,
        allowed_insecure: vec![registry.addr.clone()],
    }
}

/// Pushes `layer` (with `media_type`) as a wasmCloud actor artifact over plain HTTP; returns
/// the manifest digest.
pub(crate) async fn push(
    registry: &Registry,
    reference: &str,
    layer: &[u8],
    media_type: &str,
    auth: &RegistryAuth,
) -> String {
    push_with_config(registry, reference, layer, media_type, ACTOR_CONFIG_MEDIA_TYPE, auth).await
}

/// Pushes a provider archive as `wash push` did: the PAR layer and the provider config type.
pub(crate) async fn push_provider(registry: &Registry, reference: &str, par: &[u8]) -> String {
    push_with_config(
        registry,
        reference,
        par,
        shardhost::control::fetch::PROVIDER_LAYER_MEDIA_TYPE,
        "application/vnd.wasmcloud.provider.archive.config",
        &RegistryAuth::Anonymous,
    )
    .await
}

async fn push_with_config(
    registry: &Registry,
    reference: &str,
    layer: &[u8],
    media_type: &str,
    config_media_type: &str,
    auth: &RegistryAuth,
) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_from(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.addr.clone()]),
        ..ClientConfig::default()
    })
    .expect("oci client");
    let image: Reference = reference.parse().expect("reference");
    let layers = [ImageLayer::new(layer.to_vec(), media_type.to_string(), None)];
    let config = Config::new(b"{}".to_vec(), config_media_type.to_string(), None);
    tokio::time::timeout(OCI_TIMEOUT, client.push(&image, &layers, config, auth, None))
        .await
        .expect("push timed out")
        .unwrap_or_else(|e| panic!("push {reference}: {e}"));
    tokio::time::timeout(OCI_TIMEOUT, client.fetch_manifest_digest(&image, auth))
        .await
        .expect("manifest digest timed out")
        .expect("manifest digest")
}

pub(crate) async fn push_actor(registry: &Registry, reference: &str, module: &[u8]) -> String {
    push(
        registry,
        reference,
        module,
        ACTOR_LAYER_MEDIA_TYPE,
        &RegistryAuth::Anonymous,
    )
    .await
}

async fn fetch(fetcher: &mut Fetcher, reference: &str, registries: &Registries) -> anyhow::Result<Fetched> {
    tokio::time::timeout(OCI_TIMEOUT, fetcher.fetch_actor(reference, registries))
        .await
        .unwrap_or_else(|_| panic!("fetch {reference} timed out"))
}

async fn fetch_err(fetcher: &mut Fetcher, reference: &str, registries: &Registries) -> String {
    match fetch(fetcher, reference, registries).await {
        Ok(_) => panic!("fetch {reference} should have failed"),
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("fetch {reference}: {message}");
            message
        }
    }
}

#[tokio::test]
async fn pull_returns_the_pushed_module_and_caches_its_layer() {
    let registry = Registry::start();
    let reference = format!("{}/actors/echo:0.1.0", registry.addr);
    let first = module(1);
    let manifest_digest = push_actor(&registry, &reference, &first).await;
    let cache_dir = tempfile::tempdir().unwrap();
    let registries = Registries::default();

    let mut fetcher = Fetcher::new(policy(&registry, false)).with_cache_dir(cache_dir.path());
    let fetched = fetch(&mut fetcher, &reference, &registries).await.unwrap();
    assert_eq!(&fetched.bytes[..], &first[..]);
    assert_eq!(fetched.image_ref, reference);
    assert_eq!(fetched.digest.as_deref(), Some(manifest_digest.as_str()));
    assert_eq!(fetcher.layer_downloads(), 1);

    // Same tag, same digest: the manifest is checked again, the layer comes from memory.
    let again = fetch(&mut fetcher, &reference, &registries).await.unwrap();
    assert_eq!(again.bytes, fetched.bytes);
    assert_eq!(fetcher.layer_downloads(), 1);

    // A digest ref to the same manifest is a cache hit too.
    let by_digest = format!("{}/actors/echo@{manifest_digest}", registry.addr);
    let pinned = fetch(&mut fetcher, &by_digest, &registries).await.unwrap();
    assert_eq!(&pinned.bytes[..], &first[..]);
    assert_eq!(fetcher.layer_downloads(), 1);

    // A fresh fetcher (a restarted host) on the same cache dir reads the layer from disk.
    let mut restarted = Fetcher::new(policy(&registry, false)).with_cache_dir(cache_dir.path());
    let from_disk = fetch(&mut restarted, &reference, &registries).await.unwrap();
    assert_eq!(&from_disk.bytes[..], &first[..]);
    assert_eq!(restarted.layer_downloads(), 0);

    // The tag moves to another module: the new digest is downloaded.
    let second = module(2);
    let moved_digest = push_actor(&registry, &reference, &second).await;
    assert_ne!(moved_digest, manifest_digest);
    let moved = fetch(&mut fetcher, &reference, &registries).await.unwrap();
    assert_eq!(&moved.bytes[..], &second[..]);
    assert_eq!(moved.digest.as_deref(), Some(moved_digest.as_str()));
    assert_eq!(fetcher.layer_downloads(), 2);
    assert_eq!(fetcher.cached_layer_count(), 2);
}

#[tokio::test]
async fn latest_is_refused_by_default_and_allowed_with_the_flag() {
    let registry = Registry::start();
    let explicit = format!("{}/actors/echo:latest", registry.addr);
    let implied = format!("{}/actors/echo", registry.addr);
    let bytes = module(3);
    push_actor(&registry, &explicit, &bytes).await;
    let registries = Registries::default();

    let mut strict = Fetcher::new(policy(&registry, false));
    for reference in [&explicit, &implied] {
        let err = fetch_err(&mut strict, reference, &registries).await;
        assert!(err.contains(":latest") && err.contains("--allow-latest"), "{err}");
    }
    assert_eq!(strict.layer_downloads(), 0);

    let mut lenient = Fetcher::new(policy(&registry, true));
    for reference in [&explicit, &implied] {
        let fetched = fetch(&mut lenient, reference, &registries).await.unwrap();
        assert_eq!(&fetched.bytes[..], &bytes[..]);
    }
}

#[tokio::test]
async fn a_registry_not_listed_as_insecure_is_reached_over_https_and_fails() {
    let registry = Registry::start();
    let reference = format!("{}/actors/echo:0.1.0", registry.addr);
    push_actor(&registry, &reference, &module(4)).await;
    let registries = Registries::default();

    // Listing another spelling of the same host does not make this one insecure.
    let port = registry.addr.rsplit(':').next().unwrap();
    for allowed_insecure in [vec![], vec![format!("localhost:{port}")]] {
        let mut fetcher = Fetcher::new(FetchPolicy {
            allowed_insecure,
            ..FetchPolicy::default()
        });
        let err = fetch_err(&mut fetcher, &reference, &registries).await;
        assert!(
            err.contains("over HTTPS") && err.contains("--allowed-insecure"),
            "{err}"
        );
        assert!(err.contains(&registry.addr) && err.contains(&reference), "{err}");
    }
}

#[tokio::test]
async fn a_registry_that_accepts_and_never_answers_fails_at_the_read_timeout() {
    // Accepts connections and holds them open without a byte.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let silent = std::thread::spawn(move || {
        listener.set_nonblocking(true).expect("nonblocking");
        let mut held = Vec::new();
        while stop_rx.try_recv().is_err() {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        held.len()
    });
    let read_timeout = Duration::from_millis(500);
    let mut fetcher = Fetcher::new(FetchPolicy {
        allowed_insecure: vec![addr.clone()],
        ..FetchPolicy::default()
    })
    .with_read_timeout(read_timeout);
    let reference = format!("{addr}/actors/echo:0.1.0");
    let started = std::time::Instant::now();
    let err = fetch_err(&mut fetcher, &reference, &Registries::default()).await;
    let took = started.elapsed();
    assert!(err.contains(&reference) && err.contains(&addr), "{err}");
    assert!(
        took >= read_timeout && took < OCI_TIMEOUT / 2,
        "failed after {took:?}: {err}"
    );
    stop_tx.send(()).expect("stop");
    assert!(
        silent.join().expect("silent registry") >= 1,
        "the fetch reached the registry"
    );
}

#[tokio::test]
async fn unknown_tags_repositories_and_registries_are_errors_naming_the_ref() {
    let registry = Registry::start();
    push_actor(&registry, &format!("{}/actors/echo:0.1.0", registry.addr), &module(5)).await;
    let registries = Registries::default();
    let mut fetcher = Fetcher::new(policy(&registry, false));

    for missing in [
        format!("{}/actors/echo:9.9.9", registry.addr),
        format!("{}/actors/nobody:0.1.0", registry.addr),
    ] {
        let err = fetch_err(&mut fetcher, &missing, &registries).await;
        assert!(err.contains(&missing) && err.contains("manifest not found"), "{err}");
    }

    // Nothing listens there (a port that was free a moment ago).
    let nowhere = format!("127.0.0.1:{}", free_port());
    let mut fetcher = Fetcher::new(FetchPolicy {
        allowed_insecure: vec![nowhere.clone()],
        ..FetchPolicy::default()
    });
    let reference = format!("{nowhere}/actors/echo:0.1.0");
    let err = fetch_err(&mut fetcher, &reference, &registries).await;
    assert!(
        err.contains("cannot reach registry") && err.contains(&reference),
        "{err}"
    );
}

#[tokio::test]
async fn an_artifact_without_a_wasm_layer_is_refused() {
    let registry = Registry::start();
    let reference = format!("{}/actors/notes:0.1.0", registry.addr);
    push(&registry, &reference, b"hello", "text/plain", &RegistryAuth::Anonymous).await;
    let mut fetcher = Fetcher::new(policy(&registry, false));
    let err = fetch_err(&mut fetcher, &reference, &Registries::default()).await;
    assert!(
        err.contains("no wasm actor layer") && err.contains("text/plain"),
        "{err}"
    );
    assert!(err.contains(&reference), "{err}");
    assert_eq!(fetcher.layer_downloads(), 0);
}

#[tokio::test]
async fn basic_auth_uses_credentials_from_registries() {
    let registry = Registry::start_with_basic_auth("shard", "s3cret");
    let reference = format!("{}/actors/private:1.0.0", registry.addr);
    let bytes = module(6);
    let auth = RegistryAuth::Basic("shard".into(), "s3cret".into());
    push(&registry, &reference, &bytes, ACTOR_LAYER_MEDIA_TYPE, &auth).await;

    let mut fetcher = Fetcher::new(policy(&registry, false));
    let anonymous = fetch_err(&mut fetcher, &reference, &Registries::default()).await;
    assert!(
        anonymous.contains("401") && anonymous.contains("no credentials"),
        "{anonymous}"
    );

    let mut wrong = Registries::default();
    wrong.insert_basic(&registry.addr, "shard", "guess");
    let rejected = fetch_err(&mut fetcher, &reference, &wrong).await;
    assert!(
        rejected.contains("401") && rejected.contains("rejected the credentials"),
        "{rejected}"
    );

    // registries.put shape, keyed by registry host; the same fetcher picks the new credential up.
    let mut registries = Registries::default();
    let body = format!(
        r#"{{"{}":{{"registryType":"oci","username":"shard","password":"s3cret"}}}}"#,
        registry.addr
    );
    registries.merge(serde_json::from_str(&body).unwrap());
    let fetched = fetch(&mut fetcher, &reference, &registries).await.unwrap();
    assert_eq!(&fetched.bytes[..], &bytes[..]);
    assert_eq!(fetcher.layer_downloads(), 1);
}
