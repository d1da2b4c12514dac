//! The real capability provider of the provider tests: `tests/fixtures/kvprovider`, an in-memory
//! `wasmcloud:keyvalue` provider built with wasmbus-rpc 0.15 (the 0.x provider SDK) and packed
//! into a PAR with provider-archive 0.8 (`make-par`), plus hand-made archives for the refusal
//! cases and a reader for the provider's record file (what it saw: HostData, links, health
//! checks, shutdown).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest the fixture build may take (cold: about 2 minutes on 2 cores).
const FIXTURE_BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Builds the fixture once per test process (cargo serialises concurrent builds) and returns
/// the directory holding `kvprovider` and `make-par`.
pub fn kvprovider_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kvprovider/build.sh");
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "building the kvprovider fixture failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(started.elapsed() < FIXTURE_BUILD_TIMEOUT, "fixture build too slow");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = stdout.lines().last().expect("build.sh prints the bin dir").trim();
        PathBuf::from(dir)
    })
}

/// A PAR made by provider-archive 0.8 (`make-par`).
pub struct BuiltPar {
    pub path: PathBuf,
    /// The provider's public key (`V…`).
    pub key: String,
}

/// Pack the kvprovider into `dir/name` (gzip'd when `compress`), signed by a new account.
pub fn make_par(dir: &Path, name: &str, compress: bool) -> BuiltPar {
    make_par_of(
        dir,
        name,
        &kvprovider_bin_dir().join("kvprovider"),
        "wasmcloud:keyvalue",
        compress,
    )
}

/// Pack `binary` as a provider of `capid` into `dir/name`, signed by a new account.
pub fn make_par_of(dir: &Path, name: &str, binary: &Path, capid: &str, compress: bool) -> BuiltPar {
    let account = nkeys::KeyPair::new_account();
    let service = nkeys::KeyPair::new_service();
    let bins = kvprovider_bin_dir();
    let out = dir.join(name);
    let mut command = Command::new(bins.join("make-par"));
    command
        .arg("--binary")
        .arg(binary)
        .arg("--out")
        .arg(&out)
        .args(["--issuer-seed", &account.seed().expect("seed")])
        .args(["--subject-seed", &service.seed().expect("seed")])
        .args(["--capid", capid])
        .args([
            "--name",
            "kvprovider",
            "--vendor",
            "shardhost",
            "--rev",
            "1",
            "--ver",
            "0.1.0",
        ]);
    if compress {
        command.arg("--compress");
    }
    let output = command.output().expect("run make-par");
    assert!(
        output.status.success(),
        "make-par failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert_eq!(key, service.public_key(), "make-par prints the provider key");
    // provider-archive appends `.gz` to a compressed archive's name.
    let path = if compress && !out.exists() {
        out.with_file_name(format!("{name}.gz"))
    } else {
        out
    };
    assert!(path.is_file(), "make-par wrote {}", path.display());
    BuiltPar { path, key }
}

/// How to spoil a hand-made archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoil {
    None,
    BadSignature,
    Expired,
    NotYetValid,
    /// The binary changed after signing.
    WrongHash,
    /// Only an `aarch64-macos` binary.
    NoBinaryForPlatform,
}

/// A PAR signed with wascap 0.11 (the claims `wash par create` wrote), spoiled as asked.
/// Returns the archive and the provider key.
pub fn signed_par(binary: &[u8], spoil: Spoil) -> (Vec<u8>, String) {
    use wascap::jwt::{CapabilityProvider, Claims};
    let account = wascap::prelude::KeyPair::new_account();
    let service = wascap::prelude::KeyPair::new_service();
    let now = super::unix_now_secs();
    let target = shardhost::auth::par::host_target();
    let hash: String = Sha256::digest(binary).iter().map(|b| format!("{b:02X}")).collect();
    let metadata = CapabilityProvider {
        name: Some("kvprovider".into()),
        capid: "wasmcloud:keyvalue".into(),
        vendor: "shardhost".into(),
        rev: Some(1),
        ver: Some("0.1.0".into()),
        target_hashes: [(target.clone(), hash)].into_iter().collect(),
        config_schema: None,
    };
    let (nbf, exp) = match spoil {
        Spoil::Expired => (None, Some(now - 60)),
        Spoil::NotYetValid => (Some(now + 3600), None),
        _ => (None, None),
    };
    let claims =
        Claims::<CapabilityProvider>::with_provider(account.public_key(), service.public_key(), nbf, exp, metadata);
    let mut token = claims.encode(&account).expect("sign provider claims");
    if spoil == Spoil::BadSignature {
        // Re-sign the same claims with another account: the issuer no longer matches.
        let other = wascap::prelude::KeyPair::new_account();
        let forged = claims.encode(&other).expect("sign");
        let signature = forged.rsplit('.').next().expect("signature").to_string();
        let cut = token.rfind('.').expect("dot");
        token.truncate(cut + 1);
        token.push_str(&signature);
    }
    let tampered;
    let entries: Vec<(&str, &[u8])> = match spoil {
        Spoil::WrongHash => {
            tampered = [binary, b"tampered"].concat();
            vec![(target.as_str(), &tampered[..])]
        }
        Spoil::NoBinaryForPlatform => vec![("aarch64-macos", binary)],
        _ => vec![(target.as_str(), binary)],
    };
    let par = shardhost::auth::par::write_par(&token, &entries, true).expect("write par");
    super::capture_seed("par", &par);
    (par, service.public_key())
}

/// The provider's record file: one JSON object per line.
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Wait (bounded) until at least `count` records satisfy `pred`; returns the last of them.
pub async fn wait_record(
    path: &Path,
    count: usize,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let matching: Vec<Value> = records(path).into_iter().filter(|r| pred(r)).collect();
        if matching.len() >= count {
            return matching.last().cloned().expect("a record");
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in the provider's records within {timeout:?}; records: {:?}",
            records(path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether process `pid` still exists (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
