//! Lattice metadata kept in the JetStream KV bucket `LATTICEDATA_{lattice}` (PROTOCOL §7):
//! link definitions, stored claims and OCI reference maps — their types, key scheme and
//! parsers, plus [`LatticeState`], the control plane's in-memory copy.
//!
//! Pure code: no I/O. Malformed entries are errors for the caller to log and skip; they never
//! panic. We read both claims shapes (OTP all-string and Rust 0.81+ arrays) and write OTP's.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Key prefix of link definitions.
pub const LINKDEF_PREFIX: &str = "LINKDEF_";
/// Key prefix of stored claims.
pub const CLAIMS_PREFIX: &str = "CLAIMS_";
/// Key prefix of OCI reference maps.
pub const REFMAP_PREFIX: &str = "REFMAP_";

/// Name of the lattice metadata bucket.
pub fn bucket_name(lattice: &str) -> String {
    format!("LATTICEDATA_{lattice}")
}

/// A link between an actor and a provider (PROTOCOL §2.5). Unknown JSON fields are ignored;
/// `values` is always written (wasmbus-rpc requires it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDefinition {
    pub actor_id: String,
    pub provider_id: String,
    pub link_name: String,
    pub contract_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: BTreeMap<String, String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl LinkDefinition {
    /// The link id: uppercase hex SHA-256 of actor ‖ contract ‖ link name (PROTOCOL §7.2).
    pub fn id(&self) -> String {
        linkdef_id(&self.actor_id, &self.contract_id, &self.link_name)
    }

    /// The KV key of this link.
    pub fn kv_key(&self) -> String {
        linkdef_key(&self.actor_id, &self.contract_id, &self.link_name)
    }

    /// JSON with the `id` field added (OTP writes it in KV, ctl replies and events).
    pub fn to_json_with_id(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert("id".to_string(), serde_json::Value::String(self.id()));
        }
        v
    }

    /// Check the fields a link must have before it is stored.
    pub fn validate(&self) -> Result<(), EntryError> {
        for (name, value) in [
            ("actor_id", &self.actor_id),
            ("provider_id", &self.provider_id),
            ("link_name", &self.link_name),
            ("contract_id", &self.contract_id),
        ] {
            if value.is_empty() {
                return Err(EntryError::MissingField(name));
            }
        }
        Ok(())
    }
}

/// KV key of the link (actor, contract, link name): what a delete names without a body.
pub fn linkdef_key(actor_id: &str, contract_id: &str, link_name: &str) -> String {
    format!("{LINKDEF_PREFIX}{}", linkdef_id(actor_id, contract_id, link_name))
}

/// Uppercase hex SHA-256 of the concatenated strings.
pub fn linkdef_id(actor_id: &str, contract_id: &str, link_name: &str) -> String {
    let mut h = Sha256::new();
    h.update(actor_id.as_bytes());
    h.update(contract_id.as_bytes());
    h.update(link_name.as_bytes());
    hex_upper(&h.finalize())
}

/// Uppercase hex of bytes.
pub fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Claims as the bucket stores them, normalised to the OTP shape: every value a string
/// (PROTOCOL §7.3). Readers of 0.30+ control clients need exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredClaims(pub BTreeMap<String, String>);

impl StoredClaims {
    /// The subject (`M…` or `V…`).
    pub fn subject(&self) -> Option<&str> {
        self.0.get("sub").map(String::as_str).filter(|s| !s.is_empty())
    }

    /// The call alias, if any (empty means none).
    pub fn call_alias(&self) -> Option<&str> {
        self.0.get("call_alias").map(String::as_str).filter(|s| !s.is_empty())
    }

    /// Capability contract ids.
    pub fn caps(&self) -> impl Iterator<Item = &str> {
        self.0
            .get("caps")
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// Parse either shape. Rust 0.81+ names (`subject`, `issuer`, `capabilities`, `revision`)
    /// are mapped to the OTP names; arrays are comma-joined; null becomes "".
    pub fn parse(bytes: &[u8]) -> Result<StoredClaims, EntryError> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| EntryError::Json)?;
        let obj = value.as_object().ok_or(EntryError::NotAnObject)?;
        let mut out = BTreeMap::new();
        for (key, v) in obj {
            let key = match key.as_str() {
                "subject" => "sub",
                "issuer" => "iss",
                "capabilities" => "caps",
                "revision" => "rev",
                other => other,
            };
            out.insert(key.to_string(), json_to_flat_string(v)?);
        }
        for required in [
            "call_alias",
            "caps",
            "contract_id",
            "iss",
            "name",
            "rev",
            "tags",
            "version",
        ] {
            out.entry(required.to_string()).or_default();
        }
        let claims = StoredClaims(out);
        if claims.subject().is_none() {
            return Err(EntryError::MissingField("sub"));
        }
        Ok(claims)
    }
}

fn json_to_flat_string(v: &serde_json::Value) -> Result<String, EntryError> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => parts.push(s.clone()),
                    Value::Number(n) => parts.push(n.to_string()),
                    _ => return Err(EntryError::BadValue),
                }
            }
            parts.join(",")
        }
        // `config_schema` may arrive as an object: keep it as a JSON string, as OTP does.
        Value::Object(_) => v.to_string(),
    })
}

/// An OCI reference → public key mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefMap {
    pub oci_url: String,
    pub public_key: String,
}

impl RefMap {
    /// KV key: `REFMAP_` + base64url (no padding) of the OCI URL.
    pub fn kv_key(&self) -> String {
        format!(
            "{REFMAP_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.oci_url.as_bytes())
        )
    }
}

/// Why a KV entry was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("value is not valid JSON")]
    Json,
    #[error("value is not a JSON object")]
    NotAnObject,
    #[error("required field `{0}` is missing or empty")]
    MissingField(&'static str),
    #[error("a value is neither a string, number, boolean, null nor a list of strings")]
    BadValue,
    #[error("the key's id does not match the link definition (expected {expected})")]
    LinkIdMismatch { expected: String },
    #[error("the key is not of a known kind")]
    UnknownKey,
    #[error("the refmap key does not match its oci_url")]
    RefmapKeyMismatch,
}

/// A parsed bucket entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Link(LinkDefinition),
    Claims(StoredClaims),
    RefMap(RefMap),
}

/// Parse one bucket entry by its key. Link ids are checked against the body (Rust ≥ 0.80 does
/// the same), so a forged or corrupted key cannot shadow another link.
pub fn parse_entry(key: &str, value: &[u8]) -> Result<Entry, EntryError> {
    if let Some(id) = key.strip_prefix(LINKDEF_PREFIX) {
        let link: LinkDefinition = serde_json::from_slice(value).map_err(|_| EntryError::Json)?;
        link.validate()?;
        let expected = link.id();
        if expected != id {
            return Err(EntryError::LinkIdMismatch { expected });
        }
        Ok(Entry::Link(link))
    } else if key.starts_with(CLAIMS_PREFIX) {
        StoredClaims::parse(value).map(Entry::Claims)
    } else if key.starts_with(REFMAP_PREFIX) {
        let map: RefMap = serde_json::from_slice(value).map_err(|_| EntryError::Json)?;
        if map.public_key.is_empty() {
            return Err(EntryError::MissingField("public_key"));
        }
        if map.kv_key() != key {
            return Err(EntryError::RefmapKeyMismatch);
        }
        Ok(Entry::RefMap(map))
    } else {
        Err(EntryError::UnknownKey)
    }
}

/// What a change to the state did, so the caller can emit events and forward links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    LinkSet(LinkDefinition),
    LinkDeleted(LinkDefinition),
    ClaimsSet(StoredClaims),
    ClaimsDeleted(StoredClaims),
    RefMapSet(RefMap),
    RefMapDeleted(RefMap),
    /// Nothing visible changed (a duplicate put, or a delete of an unknown key).
    None,
}

/// The control plane's copy of the lattice metadata, keyed as in the bucket.
#[derive(Debug, Clone, Default)]
pub struct LatticeState {
    /// Link id → link.
    pub links: BTreeMap<String, LinkDefinition>,
    /// Public key → claims.
    pub claims: BTreeMap<String, StoredClaims>,
    /// OCI URL → public key.
    pub refmaps: HashMap<String, String>,
}

impl LatticeState {
    /// Apply a parsed put.
    pub fn put(&mut self, entry: Entry) -> Change {
        match entry {
            Entry::Link(link) => {
                let id = link.id();
                if self.links.get(&id) == Some(&link) {
                    return Change::None;
                }
                self.links.insert(id, link.clone());
                Change::LinkSet(link)
            }
            Entry::Claims(claims) => {
                let Some(sub) = claims.subject().map(str::to_string) else {
                    return Change::None;
                };
                if self.claims.get(&sub) == Some(&claims) {
                    return Change::None;
                }
                self.claims.insert(sub, claims.clone());
                Change::ClaimsSet(claims)
            }
            Entry::RefMap(map) => {
                if self.refmaps.get(&map.oci_url) == Some(&map.public_key) {
                    return Change::None;
                }
                self.refmaps.insert(map.oci_url.clone(), map.public_key.clone());
                Change::RefMapSet(map)
            }
        }
    }

    /// Apply a delete (or purge) of a key. The delete carries no body: look it up.
    pub fn delete(&mut self, key: &str) -> Change {
        if let Some(id) = key.strip_prefix(LINKDEF_PREFIX) {
            self.links.remove(id).map_or(Change::None, Change::LinkDeleted)
        } else if let Some(sub) = key.strip_prefix(CLAIMS_PREFIX) {
            self.claims.remove(sub).map_or(Change::None, Change::ClaimsDeleted)
        } else if key.starts_with(REFMAP_PREFIX) {
            let url = self.refmaps.iter().find(|(url, pk)| {
                RefMap {
                    oci_url: url.to_string(),
                    public_key: pk.to_string(),
                }
                .kv_key()
                    == key
            });
            match url.map(|(u, _)| u.clone()) {
                Some(url) => {
                    let public_key = self.refmaps.remove(&url).unwrap_or_default();
                    Change::RefMapDeleted(RefMap {
                        oci_url: url,
                        public_key,
                    })
                }
                None => Change::None,
            }
        } else {
            Change::None
        }
    }

    /// Links whose provider side is (provider, link name): what a provider is told at start.
    pub fn links_for_provider<'a>(
        &'a self,
        provider_id: &'a str,
        link_name: &'a str,
    ) -> impl Iterator<Item = &'a LinkDefinition> {
        self.links
            .values()
            .filter(move |l| l.provider_id == provider_id && l.link_name == link_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> LinkDefinition {
        LinkDefinition {
            actor_id: "Mbob".into(),
            provider_id: "Vprov".into(),
            link_name: "default".into(),
            contract_id: "wasmcloud:testy".into(),
            values: BTreeMap::new(),
        }
    }

    #[test]
    fn linkdef_id_matches_protocol_vector() {
        assert_eq!(
            link().id(),
            "B40411AD09B70A2C83D59923584F66BA2C5A3C274DC4F19416DA49CCD6531F9C"
        );
    }

    #[test]
    fn link_entries_are_checked_against_their_key() {
        let l = link();
        let body = serde_json::to_vec(&l).unwrap();
        assert_eq!(parse_entry(&l.kv_key(), &body), Ok(Entry::Link(l.clone())));
        assert!(matches!(
            parse_entry("LINKDEF_ABC", &body),
            Err(EntryError::LinkIdMismatch { .. })
        ));
        assert_eq!(parse_entry(&l.kv_key(), b"garbage"), Err(EntryError::Json));
        // OTP form: `id` present, `values` null.
        let otp = format!(
            r#"{{"id":"{}","actor_id":"Mbob","provider_id":"Vprov","link_name":"default","contract_id":"wasmcloud:testy","values":null}}"#,
            l.id()
        );
        assert_eq!(parse_entry(&l.kv_key(), otp.as_bytes()), Ok(Entry::Link(l)));
    }

    #[test]
    fn claims_both_shapes_become_all_strings() {
        let otp = br#"{"call_alias":"","caps":"wasmcloud:httpserver,wasmcloud:keyvalue","iss":"Aiss","name":"kv","rev":"3","sub":"Mkv","tags":"","version":null}"#;
        let Entry::Claims(c) = parse_entry("CLAIMS_Mkv", otp).unwrap() else {
            panic!()
        };
        assert_eq!(c.0["version"], "");
        assert_eq!(
            c.caps().collect::<Vec<_>>(),
            ["wasmcloud:httpserver", "wasmcloud:keyvalue"]
        );
        let rust = br#"{"call_alias":"a/b","capabilities":["x:y","z:w"],"issuer":"Aiss","name":"kv","revision":3,"subject":"Mkv","tags":["t1"],"version":"1.0"}"#;
        let Entry::Claims(c) = parse_entry("CLAIMS_Mkv", rust).unwrap() else {
            panic!()
        };
        assert_eq!(c.0["sub"], "Mkv");
        assert_eq!(c.0["iss"], "Aiss");
        assert_eq!(c.0["caps"], "x:y,z:w");
        assert_eq!(c.0["rev"], "3");
        assert_eq!(c.0["tags"], "t1");
        assert_eq!(c.0["contract_id"], "");
        assert_eq!(c.call_alias(), Some("a/b"));
        assert_eq!(parse_entry("CLAIMS_X", b"[1]"), Err(EntryError::NotAnObject));
        assert_eq!(
            parse_entry("CLAIMS_X", br#"{"name":"x"}"#),
            Err(EntryError::MissingField("sub"))
        );
    }

    #[test]
    fn refmap_round_trip_and_delete() {
        let map = RefMap {
            oci_url: "localhost:5000/echo:0.1".into(),
            public_key: "Mecho".into(),
        };
        let body = serde_json::to_vec(&map).unwrap();
        let mut state = LatticeState::default();
        let entry = parse_entry(&map.kv_key(), &body).unwrap();
        assert_eq!(state.put(entry.clone()), Change::RefMapSet(map.clone()));
        assert_eq!(state.put(entry), Change::None);
        assert_eq!(state.delete(&map.kv_key()), Change::RefMapDeleted(map.clone()));
        assert_eq!(parse_entry("REFMAP_bogus", &body), Err(EntryError::RefmapKeyMismatch));
    }

    #[test]
    fn state_put_and_delete_links() {
        let mut state = LatticeState::default();
        let l = link();
        assert_eq!(state.put(Entry::Link(l.clone())), Change::LinkSet(l.clone()));
        assert_eq!(state.put(Entry::Link(l.clone())), Change::None);
        assert_eq!(state.links_for_provider("Vprov", "default").count(), 1);
        assert_eq!(state.delete(&l.kv_key()), Change::LinkDeleted(l.clone()));
        assert_eq!(state.delete(&l.kv_key()), Change::None);
        assert_eq!(parse_entry("OTHER", b"{}"), Err(EntryError::UnknownKey));
    }
}
