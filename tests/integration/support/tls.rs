//! A test certificate authority (rcgen): a CA, a server certificate for 127.0.0.1/localhost and
//! a client certificate, written as PEM files for nats-server's `tls` block, the host's
//! `--tls-*` flags and the test clients.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// The PEM files of one test CA.
pub struct TestCa {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// What a test client needs to connect to a TLS server.
#[derive(Clone)]
pub struct ClientFiles {
    pub ca: PathBuf,
    /// Certificate and key, for servers that verify clients.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientFiles {
    pub fn apply(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        let options = options.require_tls(true).add_root_certificates(self.ca.clone());
        match &self.identity {
            Some((cert, key)) => options.add_client_certificate(cert.clone(), key.clone()),
            None => options,
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write PEM file");
    path
}

/// A CA named `name` with its server and client certificates, in `dir`.
pub fn make_ca(dir: &Path, name: &str) -> TestCa {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

    let server_key = KeyPair::generate().expect("server key");
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server params");
    server_params.distinguished_name.push(DnType::CommonName, "nats-server");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");

    let client_key = KeyPair::generate().expect("client key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client_params.distinguished_name.push(DnType::CommonName, "shardhost");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params
        .signed_by(&client_key, &ca, &ca_key)
        .expect("client certificate");

    TestCa {
        ca: write(dir, &format!("{name}-ca.pem"), &ca.pem()),
        server_cert: write(dir, &format!("{name}-server.pem"), &server.pem()),
        server_key: write(dir, &format!("{name}-server-key.pem"), &server_key.serialize_pem()),
        client_cert: write(dir, &format!("{name}-client.pem"), &client.pem()),
        client_key: write(dir, &format!("{name}-client-key.pem"), &client_key.serialize_pem()),
    }
}

impl TestCa {
    /// nats-server's `tls` block: this CA's server certificate; `verify` asks clients for a
    /// certificate of this CA.
    pub fn server_block(&self, verify: bool) -> String {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: {verify}\n  timeout: 5\n}}\n",
            self.server_cert.display(),
            self.server_key.display(),
            self.ca.display()
        )
    }

    /// What a client of a server with [`Self::server_block`]`(verify)` needs.
    pub fn client_files(&self, verify: bool) -> ClientFiles {
        ClientFiles {
            ca: self.ca.clone(),
            identity: verify.then(|| (self.client_cert.clone(), self.client_key.clone())),
        }
    }

    /// The host's flags for it.
    pub fn host_flags(&self, verify: bool) -> Vec<(String, String)> {
        let mut flags = vec![("--tls-ca-file".to_string(), self.ca.display().to_string())];
        if verify {
            flags.push(("--tls-client-cert".to_string(), self.client_cert.display().to_string()));
            flags.push(("--tls-client-key".to_string(), self.client_key.display().to_string()));
        }
        flags
    }
}
