//! The settings of one NATS connection (ctl, rpc, prov-rpc): their clap flag groups, the
//! credentials they resolve to, the resolved endpoint, and `.creds` files. Shared by both planes
//! (the shards authenticate with what the control plane does).

use anyhow::{bail, Result};
use clap::Args as ClapArgs;

/// A port flag: 1 to 65535.
pub fn port_parser() -> clap::builder::RangedI64ValueParser<u16> {
    clap::value_parser!(u16).range(1..)
}

/// Expands to the clap argument group of one NATS connection (ctl, rpc or prov-rpc), so the
/// three stay identical apart from their names.
macro_rules! conn_args {
    ($name:ident, $flag:literal, $env:literal, $what:literal) => {
        #[doc = concat!("NATS connection settings for ", $what, ".")]
        #[derive(Debug, Clone, Default, ClapArgs)]
        pub struct $name {
            #[doc = concat!("NATS host for ", $what, " (default: --nats-host).")]
            #[arg(id = concat!($flag, "-host"), long = concat!($flag, "-host"), env = concat!("WASMCLOUD_", $env, "_HOST"))]
            pub host: Option<String>,
            #[doc = concat!("NATS port for ", $what, " (default: --nats-port).")]
            #[arg(id = concat!($flag, "-port"), long = concat!($flag, "-port"), env = concat!("WASMCLOUD_", $env, "_PORT"), value_parser = port_parser())]
            pub port: Option<u16>,
            #[doc = concat!("User JWT for ", $what, " (needs the matching seed).")]
            #[arg(id = concat!($flag, "-jwt"), long = concat!($flag, "-jwt"), env = concat!("WASMCLOUD_", $env, "_JWT"), hide_env_values = true)]
            pub jwt: Option<String>,
            #[doc = concat!("User nkey seed for ", $what, " (needs the matching JWT).")]
            #[arg(id = concat!($flag, "-seed"), long = concat!($flag, "-seed"), env = concat!("WASMCLOUD_", $env, "_SEED"), hide_env_values = true)]
            pub seed: Option<String>,
            #[doc = concat!("NATS credentials file for ", $what, ".")]
            #[arg(id = concat!($flag, "-credsfile"), long = concat!($flag, "-credsfile"), env = concat!("WASMCLOUD_", $env, "_CREDSFILE"))]
            pub credsfile: Option<String>,
            #[doc = concat!("Require TLS for ", $what, ".")]
            #[arg(id = concat!($flag, "-tls"), long = concat!($flag, "-tls"), env = concat!("WASMCLOUD_", $env, "_TLS"))]
            pub tls: bool,
        }

        impl From<$name> for ConnArgs {
            fn from(a: $name) -> ConnArgs {
                ConnArgs { host: a.host, port: a.port, jwt: a.jwt, seed: a.seed, credsfile: a.credsfile, tls: a.tls }
            }
        }
    };
}

conn_args!(CtlConnArgs, "ctl", "CTL", "the control interface");
conn_args!(RpcConnArgs, "rpc", "RPC", "actor RPC");
conn_args!(ProvRpcConnArgs, "prov-rpc", "PROV_RPC", "provider RPC");

/// The settings of one NATS connection, whichever flag group they came from.
#[derive(Debug, Clone, Default)]
pub struct ConnArgs {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub jwt: Option<String>,
    pub seed: Option<String>,
    pub credsfile: Option<String>,
    pub tls: bool,
}

/// Credentials for a NATS connection.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsAuth {
    None,
    /// A user JWT plus the nkey seed that signs the server nonce.
    JwtSeed {
        jwt: String,
        seed: String,
    },
    /// A `.creds` file holding both.
    CredsFile(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets into logs.
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::JwtSeed { .. } => f.write_str("JwtSeed(..)"),
            NatsAuth::CredsFile(path) => write!(f, "CredsFile({path})"),
        }
    }
}

/// A resolved NATS endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsEndpoint {
    pub host: String,
    pub port: u16,
    pub auth: NatsAuth,
    pub tls: bool,
}

impl NatsEndpoint {
    /// `nats://host:port`, the form the 0.x hosts print and hand to providers.
    pub fn url(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("nats://[{}]:{}", self.host, self.port)
        } else {
            format!("nats://{}:{}", self.host, self.port)
        }
    }
}

/// The credentials one connection's flags give (a JWT and seed, or a credentials file).
pub fn resolve_auth(c: &ConnArgs, what: &str) -> Result<NatsAuth> {
    match (&c.jwt, &c.seed, &c.credsfile) {
        (None, None, None) => Ok(NatsAuth::None),
        (Some(jwt), Some(seed), None) => {
            let kp = nkeys::KeyPair::from_seed(seed)
                .map_err(|e| anyhow::anyhow!("{what} seed is not a valid nkey seed: {e}"))?;
            if kp.key_pair_type() != nkeys::KeyPairType::User {
                bail!("{what} seed must be a user seed (SU…)");
            }
            Ok(NatsAuth::JwtSeed {
                jwt: jwt.clone(),
                seed: seed.clone(),
            })
        }
        (None, None, Some(path)) => Ok(NatsAuth::CredsFile(path.clone())),
        (Some(_), None, None) | (None, Some(_), None) => bail!("{what} JWT and seed must be given together"),
        _ => bail!("{what}: give either a JWT and seed or a credentials file, not both"),
    }
}

/// Read a `.creds` file: the user JWT and the nkey seed between their armour lines.
pub fn read_creds(path: &str) -> std::result::Result<(String, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let block = |marker: &str| {
        let mut lines = text
            .lines()
            .skip_while(|l| !(l.contains("BEGIN") && l.contains(marker)))
            .skip(1);
        lines
            .find(|l| !l.trim().is_empty() && !l.starts_with("---"))
            .map(|l| l.trim().to_string())
    };
    match (block("JWT"), block("SEED")) {
        (Some(jwt), Some(seed)) => Ok((jwt, seed)),
        _ => Err(format!("{path} holds no user JWT and seed")),
    }
}
