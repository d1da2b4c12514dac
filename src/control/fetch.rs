//! Actor module fetching (PROTOCOL §11): turns the `actor_ref` of `cmd.{host}.la`, `scale` or
//! `upd` into the module's bytes, from an OCI registry or (when allowed) a local file.
//!
//! Control plane (tokio, may use `anyhow`). Policy is checked before any I/O: `bindle://` is
//! refused, `file://` needs `--allow-file-load`, `:latest` (explicit, or implied by a ref with
//! neither tag nor digest) needs `--allow-latest`, and plain HTTP is used only for registries
//! listed in `--allowed-insecure`. Credentials come from [`Registries`] by registry host; without
//! an entry the pull is anonymous.
//!
//! What is cached, and why a second start is cheap: the manifest is always pulled again (it is
//! small, it re-checks that the credentials still grant access, and it notices a tag that moved),
//! but the layer blob is kept by its content digest (`sha256:…`), in memory (bounded by
//! [`ACTOR_CACHE_BYTES_MAX`], oldest first out) and, when [`Fetcher::with_cache_dir`] names a
//! directory, on disk as `sha256-<hex>` files whose hash is checked again on every read. A layer
//! digest that is already cached is never downloaded again. `file://` modules are not cached.
//!
//! It never follows a ref to a host other than the one the ref names, never reads a module past
//! [`ACTOR_MODULE_BYTES_MAX`], and never runs on a shard.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::control::registries::{Registries, RegistryCredential};

/// Largest actor module accepted, from a registry layer or a file: 64 MiB.
pub const ACTOR_MODULE_BYTES_MAX: u64 = 64 << 20;
/// Memory held by the in-memory layer cache before the oldest entries go: 512 MiB.
pub const ACTOR_CACHE_BYTES_MAX: u64 = 512 << 20;
/// TCP (and TLS) connect limit per registry request.
pub const REGISTRY_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Longest silence while reading a registry response.
pub const REGISTRY_READ_TIMEOUT_MS: u64 = 30_000;
/// Whole OCI fetch (manifest plus layer), whatever the registry does.
pub const ACTOR_FETCH_TIMEOUT_MS: u64 = 120_000;

// A cache that cannot hold one module would re-download every time.
const _: () = assert!(ACTOR_MODULE_BYTES_MAX <= ACTOR_CACHE_BYTES_MAX);

/// wasmCloud's actor layer (PROTOCOL §11).
pub const ACTOR_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// Config blob media type of a wasmCloud actor artifact (`{}` by default).
pub const ACTOR_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasmcloud.actor.archive.config";
/// Layer media types accepted for an actor; the first matching layer's bytes are the module.
/// wasmCloud hosts also accept the generic OCI tar layer; the `wasm.content` spelling is the one
/// later wasm OCI tooling writes.
pub const ACTOR_LAYER_MEDIA_TYPES: [&str; 3] = [
    ACTOR_LAYER_MEDIA_TYPE,
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// wasmCloud's provider archive layer (PROTOCOL §11): a plain or gzip'd PAR.
pub const PROVIDER_LAYER_MEDIA_TYPE: &str = "application/vnd.wasmcloud.provider.archive.layer.v1+par";
/// Layer media types accepted for a provider archive.
pub const PROVIDER_LAYER_MEDIA_TYPES: [&str; 2] = [PROVIDER_LAYER_MEDIA_TYPE, "application/vnd.oci.image.layer.v1.tar"];
/// Largest provider archive accepted, from a registry layer or a file: 512 MiB (real 0.x PARs
/// with several platforms are 20–150 MiB).
pub const PROVIDER_ARCHIVE_BYTES_MAX: u64 = 512 << 20;

/// What a reference is expected to hold: it picks the accepted layer media types, the size
/// limit, and whether the layer is kept in the memory cache (actors: yes, they are small and
/// started often; provider archives: disk cache only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    Actor,
    Provider,
}

impl ArtifactKind {
    pub fn media_types(self) -> &'static [&'static str] {
        match self {
            ArtifactKind::Actor => &ACTOR_LAYER_MEDIA_TYPES,
            ArtifactKind::Provider => &PROVIDER_LAYER_MEDIA_TYPES,
        }
    }

    pub fn bytes_max(self) -> u64 {
        match self {
            ArtifactKind::Actor => ACTOR_MODULE_BYTES_MAX,
            ArtifactKind::Provider => PROVIDER_ARCHIVE_BYTES_MAX,
        }
    }

    /// Words for messages: "actor", "provider archive".
    pub fn noun(self) -> &'static str {
        match self {
            ArtifactKind::Actor => "actor",
            ArtifactKind::Provider => "provider archive",
        }
    }

    fn layer_noun(self) -> &'static str {
        match self {
            ArtifactKind::Actor => "wasm actor layer",
            ArtifactKind::Provider => "provider archive layer",
        }
    }
}

/// What the host flags allow (`--allow-latest`, `--allow-file-load`, `--allowed-insecure`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchPolicy {
    pub allow_latest: bool,
    pub allow_file_load: bool,
    /// Registries (`host[:port]`, exactly as written in refs) reached over plain HTTP.
    pub allowed_insecure: Vec<String>,
}

impl FetchPolicy {
    pub fn from_config(config: &Config) -> FetchPolicy {
        FetchPolicy {
            allow_latest: config.allow_latest,
            allow_file_load: config.allow_file_load,
            allowed_insecure: config.allowed_insecure.clone(),
        }
    }

    /// HTTPS everywhere except the listed registries.
    pub fn client_protocol(&self) -> ClientProtocol {
        if self.allowed_insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(self.allowed_insecure.clone())
        }
    }

    /// The scheme used for a registry (`resolve_registry()` form, as oci-client compares it).
    pub fn scheme_for(&self, registry: &str) -> &'static str {
        if self.allowed_insecure.iter().any(|r| r == registry) {
            "http"
        } else {
            "https"
        }
    }
}

/// A parsed, policy-checked actor reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorRef {
    /// `file:///abs/path.wasm`.
    File(PathBuf),
    /// `registry/repo:tag` or `registry/repo@sha256:…` (oci-client's `Reference` rules: no
    /// registry means `docker.io`, no tag and no digest means `:latest`).
    Oci(Reference),
}

impl ActorRef {
    /// Parses `reference` and applies the policy. No I/O.
    pub fn parse(reference: &str, policy: &FetchPolicy) -> Result<ActorRef> {
        if let Some(path) = reference.strip_prefix("file://") {
            if !policy.allow_file_load {
                bail!("{reference}: file:// references are not allowed (start the host with --allow-file-load)");
            }
            let path = Path::new(path);
            if !path.is_absolute() {
                bail!("{reference}: a file:// reference needs an absolute path (file:///abs/path.wasm)");
            }
            return Ok(ActorRef::File(path.to_path_buf()));
        }
        if reference.starts_with("bindle://") {
            bail!("{reference}: bindle:// references are not supported (bindle was OTP-only); push the actor to an OCI registry");
        }
        if let Some((scheme, _)) = reference.split_once("://") {
            bail!("{reference}: unsupported reference scheme {scheme}:// (use registry/repo:tag, registry/repo@sha256:… or file://)");
        }
        let image = Reference::from_str(reference).with_context(|| format!("{reference}: invalid OCI reference"))?;
        if image.digest().is_none() && image.tag() == Some("latest") && !policy.allow_latest {
            bail!(
                "{reference}: the :latest tag (explicit, or implied by a ref without tag or digest) is refused; \
                 pin a version or digest, or start the host with --allow-latest"
            );
        }
        Ok(ActorRef::Oci(image))
    }
}

/// A fetched actor module.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    /// The ref as fetched: the file path for `file://`, oci-client's canonical form otherwise
    /// (`docker.io/library/x:1`).
    pub image_ref: String,
    /// Manifest digest (`sha256:…`) of an OCI pull; `None` for `file://`.
    pub digest: Option<String>,
}

/// Fetches actor modules; owns one OCI client per registry and the layer cache.
pub struct Fetcher {
    policy: FetchPolicy,
    /// Per registry (`resolve_registry()` form): the auth the client was built with, and the
    /// client. oci-client keeps the first auth it saw for a registry, so a changed credential
    /// (a later `registries.put`) needs a fresh client.
    clients: HashMap<String, (RegistryAuth, Client)>,
    cache: ModuleCache,
    cache_dir: Option<PathBuf>,
    layer_downloads: u64,
    /// Longest one read from a registry may wait ([`REGISTRY_READ_TIMEOUT_MS`] unless set).
    read_timeout: Duration,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Fetcher {
        Fetcher {
            policy,
            clients: HashMap::new(),
            cache: ModuleCache::new(ACTOR_CACHE_BYTES_MAX),
            cache_dir: None,
            layer_downloads: 0,
            read_timeout: Duration::from_millis(REGISTRY_READ_TIMEOUT_MS),
        }
    }

    /// Wait at most `timeout` for each read from a registry (tests of a silent registry).
    pub fn with_read_timeout(mut self, timeout: Duration) -> Fetcher {
        self.read_timeout = timeout;
        self
    }

    /// Also keep layers on disk under `dir` (created on first write), so a restarted host does
    /// not download them again.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Fetcher {
        self.cache_dir = Some(dir.into());
        self
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Layer blobs downloaded from registries so far (cache hits do not count).
    pub fn layer_downloads(&self) -> u64 {
        self.layer_downloads
    }

    /// Layers held in the in-memory cache.
    pub fn cached_layer_count(&self) -> usize {
        self.cache.by_digest.len()
    }

    /// Fetches the module `reference` names. Errors name the ref and, for OCI, the registry.
    pub async fn fetch_actor(&mut self, reference: &str, registries: &Registries) -> Result<Fetched> {
        self.fetch(reference, registries, ArtifactKind::Actor).await
    }

    /// Fetches the provider archive `reference` names (same policy and credentials as actors).
    pub async fn fetch_provider(&mut self, reference: &str, registries: &Registries) -> Result<Fetched> {
        self.fetch(reference, registries, ArtifactKind::Provider).await
    }

    /// Fetches an artifact of `kind`. Errors name the ref and, for OCI, the registry.
    pub async fn fetch(&mut self, reference: &str, registries: &Registries, kind: ArtifactKind) -> Result<Fetched> {
        match ActorRef::parse(reference, &self.policy)? {
            ActorRef::File(path) => fetch_file(reference, &path, kind).await,
            ActorRef::Oci(image) => {
                let budget = Duration::from_millis(ACTOR_FETCH_TIMEOUT_MS);
                match tokio::time::timeout(budget, self.fetch_oci(reference, &image, registries, kind)).await {
                    Ok(fetched) => fetched,
                    Err(_) => Err(anyhow!(
                        "{reference}: pull from registry {} did not finish within {ACTOR_FETCH_TIMEOUT_MS} ms",
                        image.resolve_registry()
                    )),
                }
            }
        }
    }

    #[tracing::instrument(name = "oci_pull", skip_all, fields(otel.name = "oci pull", reference = %reference, kind = ?kind))]
    async fn fetch_oci(
        &mut self,
        reference: &str,
        image: &Reference,
        registries: &Registries,
        kind: ArtifactKind,
    ) -> Result<Fetched> {
        let registry = image.resolve_registry().to_string();
        let credential = registries.get(image.registry()).or_else(|| registries.get(&registry));
        let auth = registry_auth(credential);
        let pull = PullContext {
            reference,
            registry: &registry,
            scheme: self.policy.scheme_for(&registry),
            has_credential: auth != RegistryAuth::Anonymous,
        };
        let client = self.client_for(&registry, &auth).map_err(|e| pull.describe(e))?;

        let (manifest, manifest_digest) = client.pull_manifest(image, &auth).await.map_err(|e| pull.describe(e))?;
        let manifest = match manifest {
            OciManifest::Image(manifest) => manifest,
            OciManifest::ImageIndex(_) => {
                bail!("{reference}: registry {registry} returned an image index, not an actor manifest")
            }
        };
        let layer = find_layer(&manifest, kind).with_context(|| format!("{reference} (registry {registry})"))?;
        let fetched = |bytes: Bytes| Fetched {
            bytes,
            image_ref: image.whole(),
            digest: Some(manifest_digest.clone()),
        };

        let in_memory = kind == ArtifactKind::Actor;
        if let Some(bytes) = self.cache.get(&layer.digest) {
            return Ok(fetched(bytes));
        }
        if let Some(bytes) = self.read_disk_cache(&layer.digest, kind).await {
            if in_memory {
                self.cache.insert(layer.digest.clone(), bytes.clone());
            }
            return Ok(fetched(bytes));
        }

        let mut out = CappedBuffer::new(kind.bytes_max());
        if let Err(e) = client.pull_blob(image, layer, &mut out).await {
            if out.overflowed {
                bail!(
                    "{reference}: layer {} exceeds the {}-byte {} limit",
                    layer.digest,
                    kind.bytes_max(),
                    kind.noun()
                );
            }
            return Err(pull.describe(e).context(format!("downloading layer {}", layer.digest)));
        }
        self.layer_downloads += 1;
        let bytes = Bytes::from(out.buf);
        if in_memory {
            self.cache.insert(layer.digest.clone(), bytes.clone());
        }
        self.write_disk_cache(&layer.digest, &bytes).await;
        Ok(fetched(bytes))
    }

    /// The client for `registry`, rebuilt when the auth to use differs from the one it has.
    fn client_for(&mut self, registry: &str, auth: &RegistryAuth) -> Result<Client, OciDistributionError> {
        if let Some((client_auth, client)) = self.clients.get(registry) {
            if client_auth == auth {
                return Ok(client.clone());
            }
        }
        install_crypto_provider();
        let config = ClientConfig {
            protocol: self.policy.client_protocol(),
            platform_resolver: None,
            connect_timeout: Some(Duration::from_millis(REGISTRY_CONNECT_TIMEOUT_MS)),
            read_timeout: Some(self.read_timeout),
            ..ClientConfig::default()
        };
        // `Client::new` would fall back to a default (HTTPS-only) client on error; surface it.
        let client = Client::try_from(config)?;
        self.clients
            .insert(registry.to_string(), (auth.clone(), client.clone()));
        Ok(client)
    }

    async fn read_disk_cache(&self, digest: &str, kind: ArtifactKind) -> Option<Bytes> {
        let path = disk_cache_path(self.cache_dir.as_deref()?, digest)?;
        let size_bytes = tokio::fs::metadata(&path).await.ok()?.len();
        if size_bytes > kind.bytes_max() {
            return None;
        }
        let bytes = tokio::fs::read(&path).await.ok()?;
        if sha256_digest(&bytes) != digest {
            tracing::warn!(path = %path.display(), "cached layer does not match its digest; removing it");
            let _ = tokio::fs::remove_file(&path).await;
            return None;
        }
        Some(Bytes::from(bytes))
    }

    /// Best effort: a failed write only costs a download after a restart.
    async fn write_disk_cache(&self, digest: &str, bytes: &[u8]) {
        let Some(dir) = self.cache_dir.as_deref() else { return };
        let Some(path) = disk_cache_path(dir, digest) else {
            return;
        };
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let result = async {
            tokio::fs::create_dir_all(dir).await?;
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the layer cache");
            let _ = tokio::fs::remove_file(&tmp).await;
        }
    }
}

/// Credentials for a registry: username/password → HTTP basic (a password alone goes with an
/// empty username), else a token → bearer (oci-client sends it as is), else anonymous.
fn registry_auth(credential: Option<&RegistryCredential>) -> RegistryAuth {
    let Some(credential) = credential else {
        return RegistryAuth::Anonymous;
    };
    match (&credential.password, &credential.token) {
        (Some(password), _) => RegistryAuth::Basic(credential.username.clone().unwrap_or_default(), password.clone()),
        (None, Some(token)) => RegistryAuth::Bearer(token.clone()),
        (None, None) => RegistryAuth::Anonymous,
    }
}

/// The first layer with a media type of `kind`, after checking its declared size.
fn find_layer(manifest: &OciImageManifest, kind: ArtifactKind) -> Result<&OciDescriptor> {
    let accepted = kind.media_types();
    let Some(layer) = manifest
        .layers
        .iter()
        .find(|l| accepted.contains(&l.media_type.as_str()))
    else {
        let found: Vec<&str> = manifest.layers.iter().map(|l| l.media_type.as_str()).collect();
        bail!(
            "no {} in the manifest (accepted {accepted:?}; found {found:?})",
            kind.layer_noun()
        );
    };
    let bytes_max = kind.bytes_max();
    if !(0..=bytes_max as i64).contains(&layer.size) {
        bail!(
            "layer {} declares {} bytes; the {} limit is {bytes_max} bytes",
            layer.digest,
            layer.size,
            kind.noun()
        );
    }
    Ok(layer)
}

/// What an OCI error message needs to say which pull failed and what to do about it.
struct PullContext<'a> {
    reference: &'a str,
    registry: &'a str,
    scheme: &'static str,
    has_credential: bool,
}

impl PullContext<'_> {
    fn describe(&self, error: OciDistributionError) -> anyhow::Error {
        let PullContext {
            reference,
            registry,
            scheme,
            ..
        } = *self;
        let what = match &error {
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                if self.has_credential {
                    format!("registry {registry} rejected the credentials for {reference} (401 unauthorized)")
                } else {
                    format!(
                        "registry {registry} requires authentication for {reference} (401 unauthorized) and no \
                         credentials are known for it (registries.put or --oci-registry/--oci-user/--oci-password)"
                    )
                }
            }
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
                    )
                }) =>
            {
                format!("{reference}: manifest not found in registry {registry}")
            }
            OciDistributionError::RequestError(_) if scheme == "https" => format!(
                "cannot reach registry {registry} over HTTPS for {reference} (a plain-HTTP registry must be listed \
                 in --allowed-insecure / WASMCLOUD_OCI_ALLOWED_INSECURE)"
            ),
            OciDistributionError::RequestError(_) => {
                format!("cannot reach registry {registry} over HTTP for {reference}")
            }
            _ => format!("pulling {reference} from registry {registry} over {scheme} failed"),
        };
        anyhow::Error::new(error).context(what)
    }
}

/// Reads a `file://` module (size-checked first).
async fn fetch_file(reference: &str, path: &Path, kind: ArtifactKind) -> Result<Fetched> {
    let metadata = tokio::fs::metadata(path)
        .await
        .with_context(|| format!("{reference}: cannot read {}", path.display()))?;
    if !metadata.is_file() {
        bail!("{reference}: {} is not a file", path.display());
    }
    if metadata.len() > kind.bytes_max() {
        bail!(
            "{reference}: {} bytes exceeds the {}-byte {} limit",
            metadata.len(),
            kind.bytes_max(),
            kind.noun()
        );
    }
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("{reference}: cannot read {}", path.display()))?;
    Ok(Fetched {
        bytes: Bytes::from(bytes),
        image_ref: path.display().to_string(),
        digest: None,
    })
}

/// reqwest is built without a default rustls provider (to avoid aws-lc-rs): install ring once.
/// An error only means a provider is already installed.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// `<dir>/sha256-<hex>` for a well-formed sha256 digest; anything else is not cached on disk
/// (the digest comes from a registry and must never become a path of its choosing).
fn disk_cache_path(dir: &Path, digest: &str) -> Option<PathBuf> {
    let hex = digest.strip_prefix("sha256:")?;
    let well_formed = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    well_formed.then(|| dir.join(format!("sha256-{hex}")))
}

/// In-memory layers by digest, oldest out first once over `bytes_max`.
struct ModuleCache {
    by_digest: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes_total: u64,
    bytes_max: u64,
}

impl ModuleCache {
    fn new(bytes_max: u64) -> ModuleCache {
        ModuleCache {
            by_digest: HashMap::new(),
            order: VecDeque::new(),
            bytes_total: 0,
            bytes_max,
        }
    }

    fn get(&self, digest: &str) -> Option<Bytes> {
        self.by_digest.get(digest).cloned()
    }

    fn insert(&mut self, digest: String, bytes: Bytes) {
        if self.by_digest.contains_key(&digest) {
            return;
        }
        self.bytes_total += bytes.len() as u64;
        self.order.push_back(digest.clone());
        self.by_digest.insert(digest, bytes);
        // Keep at least the newest entry, whatever its size.
        while self.bytes_total > self.bytes_max && self.order.len() > 1 {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(evicted) = self.by_digest.remove(&oldest) {
                self.bytes_total -= evicted.len() as u64;
            }
        }
        debug_assert_eq!(self.order.len(), self.by_digest.len());
    }
}

/// An `AsyncWrite` into memory that fails once more than `bytes_max` bytes arrive, so a
/// registry cannot make the host buffer an unbounded blob.
struct CappedBuffer {
    buf: Vec<u8>,
    bytes_max: u64,
    overflowed: bool,
}

impl CappedBuffer {
    fn new(bytes_max: u64) -> CappedBuffer {
        CappedBuffer {
            buf: Vec::new(),
            bytes_max,
            overflowed: false,
        }
    }
}

impl tokio::io::AsyncWrite for CappedBuffer {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut TaskContext<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if (self.buf.len() + data.len()) as u64 > self.bytes_max {
            self.overflowed = true;
            return Poll::Ready(Err(io::Error::other("actor module exceeds the size limit")));
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_latest: bool, allow_file_load: bool) -> FetchPolicy {
        FetchPolicy {
            allow_latest,
            allow_file_load,
            allowed_insecure: Vec::new(),
        }
    }

    fn parse_err(reference: &str, policy: &FetchPolicy) -> String {
        format!("{:#}", ActorRef::parse(reference, policy).unwrap_err())
    }

    #[test]
    fn oci_refs_parse_with_default_registry_semantics() {
        let p = policy(false, false);
        let ActorRef::Oci(r) = ActorRef::parse("localhost:5000/echo:0.3.4", &p).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost:5000", "echo", Some("0.3.4"))
        );

        let ActorRef::Oci(r) = ActorRef::parse("wasmcloud.azurecr.io/echo:0.3.4", &p).unwrap() else {
            panic!()
        };
        assert_eq!(r.registry(), "wasmcloud.azurecr.io");

        let ActorRef::Oci(r) = ActorRef::parse("echo:1", &p).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.registry(), r.resolve_registry(), r.repository()),
            ("docker.io", "index.docker.io", "library/echo")
        );

        let digest = format!("sha256:{}", "ab".repeat(32));
        let ActorRef::Oci(r) = ActorRef::parse(&format!("127.0.0.1:5000/a/b@{digest}"), &p).unwrap() else {
            panic!()
        };
        assert_eq!((r.tag(), r.digest()), (None, Some(digest.as_str())));

        assert!(parse_err("UPPER/Case:1", &p).contains("invalid OCI reference"));
        assert!(parse_err("", &p).contains("invalid OCI reference"));
    }

    #[test]
    fn latest_is_refused_unless_allowed() {
        let strict = policy(false, false);
        for r in ["localhost:5000/echo:latest", "localhost:5000/echo", "echo"] {
            let err = parse_err(r, &strict);
            assert!(err.contains(":latest") && err.contains("--allow-latest"), "{r}: {err}");
        }
        let lenient = policy(true, false);
        for r in ["localhost:5000/echo:latest", "localhost:5000/echo"] {
            let ActorRef::Oci(image) = ActorRef::parse(r, &lenient).unwrap() else {
                panic!()
            };
            assert_eq!(image.tag(), Some("latest"));
        }
        // A digest pins the content, whatever the tag says.
        let pinned = format!("localhost:5000/echo:latest@sha256:{}", "0".repeat(64));
        assert!(ActorRef::parse(&pinned, &strict).is_ok());
    }

    #[tokio::test]
    async fn file_refs_need_allow_file_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actor.wasm");
        std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
        let reference = format!("file://{}", path.display());

        let err = parse_err(&reference, &policy(false, false));
        assert!(err.contains("file:// references are not allowed (start the host with --allow-file-load)"));
        let mut strict = Fetcher::new(policy(false, false));
        assert!(strict.fetch_actor(&reference, &Registries::default()).await.is_err());

        let mut fetcher = Fetcher::new(policy(false, true));
        let fetched = fetcher.fetch_actor(&reference, &Registries::default()).await.unwrap();
        assert_eq!(&fetched.bytes[..], b"\0asm\x01\0\0\0");
        assert_eq!(fetched.digest, None);

        assert!(parse_err("file://relative/x.wasm", &policy(false, true)).contains("absolute path"));
        let missing = format!("file://{}", dir.path().join("missing.wasm").display());
        let err = format!(
            "{:#}",
            fetcher.fetch_actor(&missing, &Registries::default()).await.unwrap_err()
        );
        assert!(err.contains("missing.wasm"), "{err}");
    }

    #[test]
    fn bindle_and_other_schemes_are_refused() {
        let p = policy(true, true);
        assert!(parse_err("bindle://example.com/echo/0.1.0", &p).contains("bindle:// references are not supported"));
        assert!(parse_err("https://example.com/echo.wasm", &p).contains("unsupported reference scheme https://"));
    }

    #[test]
    fn insecure_registries_map_to_http_only_for_those() {
        let mut p = policy(false, false);
        assert!(matches!(p.client_protocol(), ClientProtocol::Https));
        assert_eq!(p.scheme_for("127.0.0.1:5000"), "https");

        p.allowed_insecure = vec!["127.0.0.1:5000".into(), "localhost:5001".into()];
        match p.client_protocol() {
            ClientProtocol::HttpsExcept(list) => assert_eq!(list, ["127.0.0.1:5000", "localhost:5001"]),
            _ => panic!("expected HttpsExcept"),
        }
        assert_eq!(p.scheme_for("127.0.0.1:5000"), "http");
        assert_eq!(p.scheme_for("localhost:5001"), "http");
        assert_eq!(p.scheme_for("127.0.0.1:5001"), "https");
        assert_eq!(p.scheme_for("ghcr.io"), "https");
    }

    #[test]
    fn credentials_map_to_registry_auth() {
        let mut r = Registries::default();
        r.insert_basic("localhost:5000", "user", "pw");
        r.merge(serde_json::from_str(r#"{"ghcr.io":{"registryType":"oci","token":"tok"}}"#).unwrap());
        assert_eq!(
            registry_auth(r.get("localhost:5000")),
            RegistryAuth::Basic("user".into(), "pw".into())
        );
        assert_eq!(registry_auth(r.get("ghcr.io")), RegistryAuth::Bearer("tok".into()));
        assert_eq!(registry_auth(r.get("elsewhere.io")), RegistryAuth::Anonymous);
    }

    #[test]
    fn layer_choice_and_size_limit() {
        let layer = |media_type: &str, size: i64| OciDescriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", "1".repeat(64)),
            size,
            ..Default::default()
        };
        let mut manifest = OciImageManifest {
            layers: vec![layer("text/plain", 3), layer(ACTOR_LAYER_MEDIA_TYPE, 10)],
            ..Default::default()
        };
        assert_eq!(
            find_layer(&manifest, ArtifactKind::Actor).unwrap().media_type,
            ACTOR_LAYER_MEDIA_TYPE
        );
        assert!(
            format!("{:#}", find_layer(&manifest, ArtifactKind::Provider).unwrap_err())
                .contains("no provider archive layer")
        );
        manifest.layers[1].size = ACTOR_MODULE_BYTES_MAX as i64 + 1;
        assert!(format!("{:#}", find_layer(&manifest, ArtifactKind::Actor).unwrap_err()).contains("actor limit"));
        manifest.layers.truncate(1);
        assert!(
            format!("{:#}", find_layer(&manifest, ArtifactKind::Actor).unwrap_err()).contains("no wasm actor layer")
        );
    }

    #[test]
    fn memory_cache_evicts_oldest_over_budget() {
        let mut cache = ModuleCache::new(10);
        cache.insert("a".into(), Bytes::from_static(b"123456"));
        cache.insert("b".into(), Bytes::from_static(b"1234"));
        assert!(cache.get("a").is_some() && cache.get("b").is_some());
        cache.insert("c".into(), Bytes::from_static(b"12"));
        assert!(cache.get("a").is_none());
        assert_eq!(cache.bytes_total, 6);
    }

    #[test]
    fn disk_cache_paths_only_for_well_formed_digests() {
        let dir = Path::new("/cache");
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(
            disk_cache_path(dir, &format!("sha256:{hex}")),
            Some(dir.join(format!("sha256-{hex}")))
        );
        assert_eq!(disk_cache_path(dir, "sha256:../../etc/passwd"), None);
        assert_eq!(disk_cache_path(dir, &format!("sha512:{hex}{hex}")), None);
        assert_eq!(sha256_digest(b"").len(), 71);
    }

    #[tokio::test]
    async fn capped_buffer_refuses_past_its_limit() {
        use tokio::io::AsyncWriteExt;
        let mut out = CappedBuffer::new(4);
        out.write_all(b"abcd").await.unwrap();
        assert!(out.write_all(b"e").await.is_err());
        assert!(out.overflowed);
    }
}
