//! Test-only mirrors of wasmbus-rpc's structs, encoded by rmp-serde: the third-party side of
//! the interop tests (shared with `auth::antiforgery`).

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// `#[serde(with = "serde_bytes")]` without the dependency: bin out, bin/str/seq in.
pub mod bin {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    struct BytesVisitor;

    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(byte) = seq.next_element()? {
                out.push(byte);
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WasmCloudEntity {
    #[serde(default)]
    pub public_key: String,
    #[serde(default)]
    pub link_name: String,
    #[serde(default)]
    pub contract_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Invocation {
    pub origin: WasmCloudEntity,
    pub target: WasmCloudEntity,
    #[serde(default)]
    pub operation: String,
    #[serde(with = "bin", default)]
    pub msg: Vec<u8>,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub encoded_claims: String,
    #[serde(default)]
    pub host_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    #[serde(rename = "traceContext", default, skip_serializing_if = "HashMap::is_empty")]
    pub trace_context: HashMap<String, String>,
}

/// The Rust host's (0.78+) response: `content_length` required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InvocationResponse {
    #[serde(with = "bin", default)]
    pub msg: Vec<u8>,
    pub invocation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub content_length: u64,
    #[serde(rename = "traceContext", default, skip_serializing_if = "HashMap::is_empty")]
    pub trace_context: HashMap<String, String>,
}

impl WasmCloudEntity {
    pub fn new(public_key: &str, link_name: &str, contract_id: &str) -> Self {
        WasmCloudEntity {
            public_key: public_key.to_string(),
            link_name: link_name.to_string(),
            contract_id: contract_id.to_string(),
        }
    }
}

/// The URL form as wasmbus-rpc writes it (`replace` then `to_lowercase`, `format!`), kept
/// independent of our implementation on purpose.
pub fn reference_url(entity: &WasmCloudEntity) -> String {
    if entity.public_key.to_uppercase().starts_with('M') {
        format!("wasmbus://{}", entity.public_key)
    } else {
        format!(
            "wasmbus://{}/{}/{}",
            entity.contract_id.replace(':', "/").replace(' ', "_").to_lowercase(),
            entity.link_name.replace(' ', "_").to_lowercase(),
            entity.public_key
        )
    }
}

/// The invocation hash as the third-party implementations compute it: one concatenated
/// buffer, SHA-256, `{:02X}` per byte.
pub fn reference_hash(inv: &Invocation) -> String {
    use sha2::{Digest, Sha256};
    let target_url = format!("{}/{}", reference_url(&inv.target), inv.operation);
    let mut all = Vec::new();
    all.extend_from_slice(reference_url(&inv.origin).as_bytes());
    all.extend_from_slice(target_url.as_bytes());
    all.extend_from_slice(inv.operation.as_bytes());
    all.extend_from_slice(&inv.msg);
    Sha256::digest(&all).iter().map(|b| format!("{b:02X}")).collect()
}
