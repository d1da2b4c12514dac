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
//! - the built-in publishes and subscribes on the lattice's NATS (the shards' own
//!   connections): a link naming its own servers or credentials (`URI`, `CLIENT_JWT`,
//!   `CLIENT_SEED`, `cluster_uris`, `auth_*`) is refused with that reason — use the NATS
//!   messaging provider for another NATS — and so is any key or field this reading does not
//!   know; `ping_interval_sec` is accepted and named in [`MessagingSettings::not_acted_on`].

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

/// One subscription: a subject and, for a queue subscription, its group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subscription {
    pub subject: String,
    pub queue: Option<String>,
}

/// What one link asks of the built-in messaging provider.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessagingSettings {
    pub subscriptions: Vec<Subscription>,
    /// Settings accepted and not acted on, for the link's log line.
    pub not_acted_on: Vec<String>,
}

const SEPARATE_NATS: &str = "the built-in messaging provider uses the lattice's NATS connections; \
     for another NATS server or other credentials use the NATS messaging provider";

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
        read_json(source, &text, &mut subjects, &mut settings, &mut problems);
    }
    for (key, value) in &lowered {
        match key.as_str() {
            "config_b64" | "config_json" => {}
            "subscription" => subjects.extend(value.split(',').map(str::to_string)),
            "uri" | "client_jwt" | "client_seed" => problems.push(format!("{}: {SEPARATE_NATS}", key.to_uppercase())),
            _ => problems.push(format!("unknown link value {key:?} for wasmcloud:messaging")),
        }
    }
    for entry in subjects {
        match parse_subscription(&entry) {
            Ok(subscription) => settings.subscriptions.push(subscription),
            Err(why) => problems.push(why),
        }
    }
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(problems.join("; "))
    }
}

fn read_json(
    source: &str,
    text: &str,
    subjects: &mut Vec<String>,
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
            "cluster_uris" | "auth_jwt" | "auth_seed" if !value.is_null() && value != Value::Array(Vec::new()) => {
                problems.push(format!("{source}.{field}: {SEPARATE_NATS}"));
            }
            "cluster_uris" | "auth_jwt" | "auth_seed" => {}
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
            (&[("URI", "nats://other:4222")][..], "URI: the built-in"),
            (&[("CLIENT_SEED", "SU…")], "CLIENT_SEED"),
            (&[("config_json", r#"{"cluster_uris":["nats://x"]}"#)], "cluster_uris"),
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
        // An empty cluster_uris (the provider's default shape) is fine.
        assert!(messaging_settings(&values(&[("config_json", r#"{"cluster_uris":[],"auth_jwt":null}"#)])).is_ok());
    }
}
