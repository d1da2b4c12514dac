//! A `wasmcloud:messaging` link's `values`, read as the NATS messaging provider 0.17 reads them,
//! into the subscriptions the built-in messaging provider keeps on the shards' connections.
//! Pure.
//!
//! The provider's rules: `config_b64` (base64 JSON) or else `config_json` give
//! `subscriptions`, `cluster_uris`, `auth_jwt`, `auth_seed`, `ping_interval_sec`; then
//! `SUBSCRIPTION` adds comma-separated subjects, each `subject` or `subject|queue`; `URI`,
//! `CLIENT_JWT` and `CLIENT_SEED` set the server and credentials. Where this reading differs:
//! - keys match in any case (the provider wants `SUBSCRIPTION` in capitals and `config_json`
//!   in lower case); two keys equal but for case are refused;
//! - without `URI`/`cluster_uris` and credentials the built-in publishes and subscribes on the
//!   lattice's NATS (the shards' own connections), where the provider would dial its default
//!   `0.0.0.0:4222`; with them ([`MessagingServer`]) each shard opens a connection of its own
//!   to those servers, with those credentials (`CLIENT_JWT` and `CLIENT_SEED` together, as the
//!   provider insists);
//! - a key or field this reading does not know is refused with the reason;
//!   `ping_interval_sec` is accepted and named in [`MessagingSettings::not_acted_on`].

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

/// One subscription: a subject and, for a queue subscription, its group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subscription {
    pub subject: String,
    pub queue: Option<String>,
}

/// A NATS other than the lattice's: its servers (empty: the lattice's servers) and the user
/// JWT and seed to connect with.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MessagingServer {
    pub uris: Vec<String>,
    pub jwt: Option<String>,
    pub seed: Option<String>,
}

impl std::fmt::Debug for MessagingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        f.debug_struct("MessagingServer")
            .field("uris", &self.uris)
            .field("jwt", &self.jwt.as_ref().map(|_| ".."))
            .finish()
    }
}

/// What one link asks of the built-in messaging provider.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessagingSettings {
    pub subscriptions: Vec<Subscription>,
    /// `None`: the lattice's NATS, on the shards' own connections.
    pub server: Option<MessagingServer>,
    /// Settings accepted and not acted on, for the link's log line.
    pub not_acted_on: Vec<String>,
}

/// Read a link's `values`. Every problem found is named in one error.
pub fn messaging_settings(values: &BTreeMap<String, String>) -> Result<MessagingSettings, String> {
    let mut lowered: BTreeMap<String, &str> = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in values {
        if lowered.insert(key.to_ascii_lowercase(), value).is_some() {
            problems.push(format!("link value {key:?} is given twice (keys match in any case)"));
        }
    }
    let mut settings = MessagingSettings::default();
    let mut subjects: Vec<String> = Vec::new();
    let mut server = MessagingServer::default();
    let json = match (lowered.get("config_b64"), lowered.get("config_json")) {
        (Some(b64), _) => match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
            Ok(bytes) => Some(("config_b64", String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) => {
                problems.push(format!("config_b64 is not base64: {e}"));
                None
            }
        },
        (None, Some(json)) => Some(("config_json", json.to_string())),
        (None, None) => None,
    };
    if let Some((source, text)) = json {
        read_json(source, &text, &mut subjects, &mut server, &mut settings, &mut problems);
    }
    for (key, value) in &lowered {
        match key.as_str() {
            "config_b64" | "config_json" => {}
            "subscription" => subjects.extend(value.split(',').map(str::to_string)),
            "uri" => server.uris = split_uris(value),
            "client_jwt" => server.jwt = Some(value.trim().to_string()),
            "client_seed" => server.seed = Some(value.trim().to_string()),
            _ => problems.push(format!("unknown link value {key:?} for wasmcloud:messaging")),
        }
    }
    for entry in subjects {
        match parse_subscription(&entry) {
            Ok(subscription) => settings.subscriptions.push(subscription),
            Err(why) => problems.push(why),
        }
    }
    if server.jwt.is_some() != server.seed.is_some() {
        problems.push("CLIENT_JWT and CLIENT_SEED (auth_jwt, auth_seed) are given together or not at all".into());
    }
    if server
        .uris
        .iter()
        .any(|u| u.is_empty() || u.contains(char::is_whitespace))
    {
        problems.push(format!(
            "URI {:?} holds an empty or spaced server",
            server.uris.join(",")
        ));
    }
    if server != MessagingServer::default() {
        settings.server = Some(server);
    }
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(problems.join("; "))
    }
}

fn split_uris(text: &str) -> Vec<String> {
    text.split(',').map(|u| u.trim().to_string()).collect()
}

fn read_json(
    source: &str,
    text: &str,
    subjects: &mut Vec<String>,
    server: &mut MessagingServer,
    settings: &mut MessagingSettings,
    problems: &mut Vec<String>,
) {
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return problems.push(format!("{source} is not a JSON object")),
        Err(e) => return problems.push(format!("{source} is not JSON: {e}")),
    };
    for (field, value) in object {
        match field.as_str() {
            "subscriptions" => match value.as_array() {
                Some(list) if list.iter().all(Value::is_string) => {
                    subjects.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
                }
                _ => problems.push(format!("{source}.subscriptions is not a list of strings")),
            },
            "cluster_uris" => match value.as_array() {
                Some(list) if list.iter().all(Value::is_string) => {
                    server.uris = list
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|u| u.trim().to_string())
                        .collect();
                }
                _ if value.is_null() => {}
                _ => problems.push(format!("{source}.cluster_uris is not a list of strings")),
            },
            "auth_jwt" | "auth_seed" => match value.as_str() {
                Some(text) if field == "auth_jwt" => server.jwt = Some(text.to_string()),
                Some(text) => server.seed = Some(text.to_string()),
                None if value.is_null() => {}
                None => problems.push(format!("{source}.{field} is not a string")),
            },
            "ping_interval_sec" => settings.not_acted_on.push(format!("{source}.ping_interval_sec")),
            _ => problems.push(format!("{source}: unknown field {field:?}")),
        }
    }
}

/// `subject` or `subject|queue`, as the provider splits it.
fn parse_subscription(entry: &str) -> Result<Subscription, String> {
    let (subject, queue) = match entry.split_once('|') {
        Some((subject, queue)) => (subject.trim(), Some(queue.trim())),
        None => (entry.trim(), None),
    };
    let valid = |token: &str| !token.is_empty() && !token.contains(char::is_whitespace);
    if !valid(subject) || subject.split('.').any(str::is_empty) {
        return Err(format!("subscription {entry:?} is not a NATS subject"));
    }
    if queue.is_some_and(|q| !valid(q)) {
        return Err(format!("subscription {entry:?} has an empty or spaced queue group"));
    }
    Ok(Subscription {
        subject: subject.to_string(),
        queue: queue.map(str::to_string),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn subscriptions_from_values_and_json() {
        let got = messaging_settings(&values(&[
            ("SUBSCRIPTION", "orders.new,orders.*|workers"),
            ("config_json", r#"{"subscriptions":["audit.>"],"ping_interval_sec":10}"#),
        ]))
        .unwrap();
        let subjects: Vec<(&str, Option<&str>)> = got
            .subscriptions
            .iter()
            .map(|s| (s.subject.as_str(), s.queue.as_deref()))
            .collect();
        assert_eq!(
            subjects,
            [("audit.>", None), ("orders.new", None), ("orders.*", Some("workers"))]
        );
        assert_eq!(got.not_acted_on, ["config_json.ping_interval_sec"]);
        assert_eq!(
            messaging_settings(&values(&[("subscription", "a.b")]))
                .unwrap()
                .subscriptions
                .len(),
            1
        );
        assert!(messaging_settings(&BTreeMap::new()).unwrap().subscriptions.is_empty());
    }

    #[test]
    fn what_is_not_served_is_refused_with_a_reason() {
        for (pairs, needle) in [
            (&[("CLIENT_SEED", "SU…")][..], "CLIENT_SEED"),
            (&[("config_json", r#"{"cluster_uris":"nats://x"}"#)], "cluster_uris"),
            (&[("URI", "a:1, ,b:2")], "empty or spaced"),
            (&[("config_json", r#"{"bogus":1}"#)], "bogus"),
            (&[("SUBSCRIPTION", "a..b")], "not a NATS subject"),
            (&[("SUBSCRIPTION", "a.b|")], "queue group"),
            (&[("Subscription", "a"), ("SUBSCRIPTION", "b")], "given twice"),
            (&[("colour", "red")], "unknown link value"),
            (&[("config_b64", "!!")], "not base64"),
        ] {
            let why = messaging_settings(&values(pairs)).unwrap_err();
            assert!(why.contains(needle), "{pairs:?}: {why}");
        }
        // An empty cluster_uris (the provider's default shape): the lattice's NATS.
        let got = messaging_settings(&values(&[("config_json", r#"{"cluster_uris":[],"auth_jwt":null}"#)])).unwrap();
        assert_eq!(got.server, None);
    }

    #[test]
    fn another_nats_is_read_from_values_or_json() {
        let got = messaging_settings(&values(&[
            ("URI", "nats://10.0.0.1:4222, 10.0.0.2:4222"),
            ("CLIENT_JWT", "eyJ.jwt"),
            ("CLIENT_SEED", "SUAseed"),
        ]))
        .unwrap();
        let server = got.server.unwrap();
        assert_eq!(server.uris, ["nats://10.0.0.1:4222", "10.0.0.2:4222"]);
        assert_eq!(
            (server.jwt.as_deref(), server.seed.as_deref()),
            (Some("eyJ.jwt"), Some("SUAseed"))
        );
        assert!(
            !format!("{server:?}").contains("SUAseed"),
            "the seed never shows in logs"
        );
        let json = messaging_settings(&values(&[("config_json", r#"{"cluster_uris":["nats://x:1"]}"#)])).unwrap();
        assert_eq!(json.server.unwrap().uris, ["nats://x:1"]);
    }
}
