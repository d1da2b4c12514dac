//! A `wasmcloud:httpserver` link's `values`, read as the httpserver provider 0.19.1 reads them,
//! into the settings the built-in HTTP server will listen with (issue 20). Pure: no file is
//! opened here (the TLS files are checked where the listener is built).
//!
//! The provider's rules: keys match in any case (two keys equal but for case are refused);
//! `config_b64` (base64 JSON), then `config_json`, then `address` (`IP:PORT`), then `port`
//! (`127.0.0.1:PORT`), `cache_control` and `readonly_mode`, later ones overriding earlier
//! ones; default address `127.0.0.1:8000`, body limit 100 MiB, CORS permissive with the
//! provider's default methods and headers. Where this reading differs from 0.19.1, on purpose:
//! - what the provider accepts and then does not act on is refused with a reason: a key or
//!   a JSON field this host does not know, `config_file` (use `config_json`), a `readonly_mode`
//!   that is not a boolean (the provider reads it as false);
//! - `timeout_ms` and `max_content_len` in `config_json`/`config_b64` act (the provider's merge
//!   drops them);
//! - `config_b64` is accepted with or without padding (`base64 -w0`, which the provider's
//!   README suggests, pads).
//!
//! The JSON field `log` (the provider's own log level) is accepted and named in
//! [`HttpSettings::not_acted_on`]: the built-in server logs at the host's level.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64::Engine as _;
use serde_json::Value;

/// Where the provider listens when nothing says otherwise.
pub const HTTP_ADDRESS_DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8000);
/// The provider's default request body limit: 100 MiB.
pub const HTTP_BODY_BYTES_DEFAULT: u64 = 100 * 1024 * 1024;
/// The largest body limit the provider accepts: 1 GiB.
pub const HTTP_BODY_BYTES_LIMIT: u64 = 1024 * 1024 * 1024;
/// `Access-Control-Max-Age` when the settings give none, seconds.
pub const CORS_MAX_AGE_SECS_DEFAULT: u64 = 300;
const CORS_METHODS_DEFAULT: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"];
const CORS_HEADERS_DEFAULT: [&str; 4] = ["accept", "accept-language", "content-type", "content-language"];
/// The link value keys read (lowercased).
const VALUE_KEYS: [&str; 6] = [
    "config_b64",
    "config_json",
    "address",
    "port",
    "cache_control",
    "readonly_mode",
];

/// CORS as the provider applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Empty: every origin.
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub max_age_secs: u64,
}

impl Default for Cors {
    fn default() -> Cors {
        Cors {
            allowed_origins: Vec::new(),
            allowed_methods: CORS_METHODS_DEFAULT.map(String::from).to_vec(),
            allowed_headers: CORS_HEADERS_DEFAULT.map(String::from).to_vec(),
            exposed_headers: Vec::new(),
            max_age_secs: CORS_MAX_AGE_SECS_DEFAULT,
        }
    }
}

/// PEM files for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: String,
    pub priv_key_file: String,
}

/// What one link asks of the HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub address: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub cors: Cors,
    /// How long a request may wait for the actor, ms; `None`: the host's rpc timeout.
    pub timeout_ms: Option<u64>,
    /// Added as `Cache-Control` to responses that have none.
    pub cache_control: Option<String>,
    /// Only GET and HEAD; other methods are answered 405.
    pub readonly_mode: bool,
    pub max_content_bytes: u64,
    /// Settings accepted and not acted on, for the link's log line.
    pub not_acted_on: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings {
            address: HTTP_ADDRESS_DEFAULT,
            tls: None,
            cors: Cors::default(),
            timeout_ms: None,
            cache_control: None,
            readonly_mode: false,
            max_content_bytes: HTTP_BODY_BYTES_DEFAULT,
            not_acted_on: Vec::new(),
        }
    }
}

/// Read a link's `values`. Every problem found is named in one error.
pub fn http_settings(values: &BTreeMap<String, String>) -> Result<HttpSettings, String> {
    let mut lowered: BTreeMap<String, &str> = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in values {
        let key = key.to_ascii_lowercase();
        if lowered.insert(key.clone(), value).is_some() {
            problems.push(format!("link value {key:?} is given twice (keys match in any case)"));
        }
    }
    for key in lowered.keys() {
        if key == "config_file" {
            problems.push("config_file is not supported: give the settings in config_json or config_b64".into());
        } else if !VALUE_KEYS.contains(&key.as_str()) {
            problems.push(format!("unknown link value {key:?} for wasmcloud:httpserver"));
        }
    }
    let mut settings = HttpSettings::default();
    if let Some(b64) = lowered.get("config_b64") {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        match engine.decode(b64.trim()) {
            Ok(bytes) => merge_json(
                "config_b64",
                &String::from_utf8_lossy(&bytes),
                &mut settings,
                &mut problems,
            ),
            Err(e) => problems.push(format!("config_b64 is not base64: {e}")),
        }
    }
    if let Some(json) = lowered.get("config_json") {
        merge_json("config_json", json, &mut settings, &mut problems);
    }
    if let Some(address) = lowered.get("address") {
        match address.trim().parse::<SocketAddr>() {
            Ok(address) => settings.address = address,
            Err(_) => problems.push(format!("address {address:?} is not IP:PORT")),
        }
    }
    if let Some(port) = lowered.get("port") {
        match port.trim().parse::<u16>() {
            Ok(port) => settings.address = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            Err(_) => problems.push(format!("port {port:?} is not a port number")),
        }
    }
    if let Some(cache_control) = lowered.get("cache_control") {
        settings.cache_control = Some(cache_control.to_string());
    }
    if let Some(readonly) = lowered.get("readonly_mode") {
        match readonly.trim().to_ascii_lowercase().as_str() {
            "true" => settings.readonly_mode = true,
            "false" => settings.readonly_mode = false,
            _ => problems.push(format!("readonly_mode {readonly:?} is not true or false")),
        }
    }
    validate(&settings, &mut problems);
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(format!("invalid httpserver settings: {}", problems.join("; ")))
    }
}

fn validate(settings: &HttpSettings, problems: &mut Vec<String>) {
    if let Some(cache_control) = &settings.cache_control {
        if !is_header_value(cache_control) {
            problems.push(format!("cache_control {cache_control:?} is not a valid header value"));
        }
    }
    for origin in &settings.cors.allowed_origins {
        let valid = origin.split_once("://").is_some_and(|(scheme, host)| {
            matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/')
        });
        if !valid {
            problems.push(format!("CORS origin {origin:?} is not http(s)://host[:port]"));
        }
    }
    for method in &settings.cors.allowed_methods {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.push(format!("CORS method {method:?} is not an upper-case HTTP method"));
        }
    }
}

/// Visible ASCII and spaces/tabs (RFC 9110 field-value, without obs-text).
fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

fn merge_json(source: &str, text: &str, settings: &mut HttpSettings, problems: &mut Vec<String>) {
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return problems.push(format!("{source} is not a JSON object")),
        Err(e) => return problems.push(format!("{source} is not JSON: {e}")),
    };
    for (key, value) in &object {
        let at = |what: &str| format!("{source}: {key} {what}");
        match key.as_str() {
            "address" => match value.as_str().and_then(|a| a.parse::<SocketAddr>().ok()) {
                Some(address) => settings.address = address,
                None => problems.push(at("is not \"IP:PORT\"")),
            },
            "tls" => merge_tls(value, settings, problems, &at),
            "cors" => merge_cors(value, &mut settings.cors, problems, &at),
            "timeout_ms" => match value.as_u64().filter(|ms| *ms > 0) {
                Some(ms) => settings.timeout_ms = Some(ms),
                None => problems.push(at("is not a positive number of milliseconds")),
            },
            "cache_control" => match value.as_str() {
                Some(text) => settings.cache_control = Some(text.to_string()),
                None => problems.push(at("is not a string")),
            },
            "readonly_mode" => match value.as_bool() {
                Some(on) => settings.readonly_mode = on,
                None => problems.push(at("is not true or false")),
            },
            "max_content_len" => match value.as_str().map(human_size) {
                Some(Ok(bytes)) => settings.max_content_bytes = bytes,
                Some(Err(e)) => problems.push(at(&e)),
                None => problems.push(at("is not a string such as \"20M\"")),
            },
            "log" => settings
                .not_acted_on
                .push(format!("{source}: log (the host's log level applies)")),
            _ => problems.push(at("is not a setting of wasmcloud:httpserver")),
        }
    }
}

fn merge_tls(value: &Value, settings: &mut HttpSettings, problems: &mut Vec<String>, at: &dyn Fn(&str) -> String) {
    let Some(tls) = value.as_object() else {
        return problems.push(at("is not an object"));
    };
    let file = |name: &str| tls.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    for key in tls
        .keys()
        .filter(|k| !matches!(k.as_str(), "cert_file" | "priv_key_file"))
    {
        problems.push(at(&format!("has an unknown field {key:?}")));
    }
    match (file("cert_file"), file("priv_key_file")) {
        (None, None) => settings.tls = None,
        (Some(cert_file), Some(priv_key_file)) => {
            settings.tls = Some(TlsFiles {
                cert_file: cert_file.to_string(),
                priv_key_file: priv_key_file.to_string(),
            })
        }
        _ => problems.push(at("needs both cert_file and priv_key_file")),
    }
}

fn merge_cors(value: &Value, cors: &mut Cors, problems: &mut Vec<String>, at: &dyn Fn(&str) -> String) {
    let Some(object) = value.as_object() else {
        return problems.push(at("is not an object"));
    };
    for (key, value) in object {
        let list = |problems: &mut Vec<String>| -> Option<Vec<String>> {
            let items: Option<Vec<String>> = value
                .as_array()
                .and_then(|items| items.iter().map(|i| i.as_str().map(String::from)).collect());
            if items.is_none() {
                problems.push(at(&format!("{key} is not a list of strings")));
            }
            items
        };
        match key.as_str() {
            "allowed_origins" => cors.allowed_origins = list(problems).unwrap_or_default(),
            "allowed_methods" => cors.allowed_methods = list(problems).unwrap_or_default(),
            "allowed_headers" => cors.allowed_headers = list(problems).unwrap_or_default(),
            "exposed_headers" => cors.exposed_headers = list(problems).unwrap_or_default(),
            "max_age_secs" => match value.as_u64() {
                Some(secs) => cors.max_age_secs = secs,
                None => problems.push(at("max_age_secs is not a number of seconds")),
            },
            other => problems.push(at(&format!("has an unknown field {other:?}"))),
        }
    }
}

/// `"500"`, `"5k"`, `"20M"`, `"1g"`: bytes, in powers of 1024; above 0 and at most 1 GiB.
fn human_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c.to_ascii_lowercase()),
        _ => (text, 'b'),
    };
    let factor: u64 = match unit {
        'b' => 1,
        'k' => 1024,
        'm' => 1024 * 1024,
        'g' => 1024 * 1024 * 1024,
        _ => return Err(format!("{text:?} has an unknown unit (K, M or G)")),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{text:?} is not a size such as \"20M\""))?;
    if bytes == 0 || bytes > HTTP_BODY_BYTES_LIMIT {
        return Err(format!("{text:?} must be above 0 and at most 1G"));
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_the_providers() {
        let got = http_settings(&BTreeMap::new()).unwrap();
        assert_eq!(got, HttpSettings::default());
        assert_eq!(got.address.to_string(), "127.0.0.1:8000");
        assert_eq!(got.max_content_bytes, 100 * 1024 * 1024);
        assert_eq!(got.cors.allowed_methods, CORS_METHODS_DEFAULT);
    }

    #[test]
    fn keys_in_any_case_later_sources_override_earlier_ones() {
        let json = r#"{"address":"0.0.0.0:9000","timeout_ms":2500,"max_content_len":"20M","readonly_mode":true,
            "cors":{"allowed_origins":["https://example.com"],"max_age_secs":60},
            "tls":{"cert_file":"/etc/c.pem","priv_key_file":"/etc/k.pem"},"log":{"log_level":"info"}}"#;
        let got = http_settings(&values(&[
            ("CONFIG_JSON", json),
            ("Port", "8081"),
            ("cache_control", "max-age=20"),
        ]))
        .unwrap();
        assert_eq!(
            got.address.to_string(),
            "127.0.0.1:8081",
            "port comes after config_json"
        );
        assert_eq!(got.timeout_ms, Some(2500));
        assert_eq!(got.max_content_bytes, 20 * 1024 * 1024);
        assert!(got.readonly_mode);
        assert_eq!(got.cors.allowed_origins, ["https://example.com"]);
        assert_eq!(got.cors.max_age_secs, 60);
        assert_eq!(
            got.cors.allowed_headers, CORS_HEADERS_DEFAULT,
            "unspecified CORS fields keep defaults"
        );
        assert_eq!(got.tls.as_ref().unwrap().cert_file, "/etc/c.pem");
        assert_eq!(got.cache_control.as_deref(), Some("max-age=20"));
        assert_eq!(got.not_acted_on.len(), 1);
        // config_b64, padded as `base64 -w0` writes it, then address over it.
        let b64 = base64::engine::general_purpose::STANDARD.encode(r#"{"address":"0.0.0.0:7000"}"#);
        let got = http_settings(&values(&[("config_b64", &b64)])).unwrap();
        assert_eq!(got.address.to_string(), "0.0.0.0:7000");
        let got = http_settings(&values(&[("config_b64", &b64), ("address", "[::1]:7001")])).unwrap();
        assert_eq!(got.address.to_string(), "[::1]:7001");
    }

    #[test]
    fn what_is_not_supported_is_refused_with_every_reason() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("config_file", "/etc/http.toml")], "config_file is not supported"),
            (&[("colour", "blue")], "unknown link value \"colour\""),
            (&[("address", "localhost")], "is not IP:PORT"),
            (&[("port", "99999")], "is not a port number"),
            (&[("readonly_mode", "yes")], "is not true or false"),
            (&[("config_json", "{\"adress\":\"x\"}")], "adress is not a setting"),
            (&[("config_json", "[1]")], "not a JSON object"),
            (&[("config_json", "{\"max_content_len\":\"2G\"}")], "at most 1G"),
            (&[("config_json", "{\"max_content_len\":\"5X\"}")], "unknown unit"),
            (&[("config_json", "{\"tls\":{\"cert_file\":\"/c.pem\"}}")], "needs both"),
            (
                &[("config_json", "{\"cors\":{\"allowed_origins\":[\"example.com\"]}}")],
                "is not http(s)://",
            ),
            (
                &[("config_json", "{\"cors\":{\"allowed_methods\":[\"get\"]}}")],
                "upper-case",
            ),
            (&[("config_json", "{\"timeout_ms\":0}")], "positive number"),
            (&[("config_b64", "!!!")], "not base64"),
            (&[("cache_control", "max-age=\u{7f}")], "not a valid header value"),
            (&[("port", "1"), ("PORT", "2")], "given twice"),
        ];
        for (pairs, expected) in cases {
            let error = http_settings(&values(pairs)).unwrap_err();
            assert!(error.contains(expected), "{pairs:?}: {error}");
        }
        let both = http_settings(&values(&[("port", "x"), ("readonly_mode", "maybe")])).unwrap_err();
        assert!(both.contains("port") && both.contains("readonly_mode"), "{both}");
    }

    #[test]
    fn sizes_as_the_provider_reads_them() {
        assert_eq!(human_size("500"), Ok(500));
        assert_eq!(human_size("5k"), Ok(5 * 1024));
        assert_eq!(human_size("20M"), Ok(20 * 1024 * 1024));
        assert_eq!(human_size("1g"), Ok(1024 * 1024 * 1024));
        assert!(human_size("0").is_err());
        assert!(human_size("").is_err());
        assert!(human_size("-5").is_err());
    }
}
