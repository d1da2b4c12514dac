//! Which HTTP listeners the shards keep: one [`HttpRoute`] per link of the built-in HTTP
//! server whose link name this host runs it under, with the link's settings read as the
//! httpserver provider reads them ([`super::http_settings`]).
//!
//! The control plane recomputes the whole set ([`plan_routes`]) whenever a link or a running
//! built-in changes and hands it to every shard; each shard opens what is new and closes what
//! is gone (after the requests in flight). Pure: no I/O.
//!
//! Refused here, with the reason, as the provider refuses them (it cannot bind twice): a link
//! whose values do not read, and a second link on an address another link already listens on
//! (the first one in key order keeps it). With `SO_REUSEPORT` the kernel would otherwise spread
//! one port's connections over two actors.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::http_settings::{http_settings, HttpSettings};
use super::identity::BuiltinProvider;
use super::messaging_settings::{messaging_settings, MessagingServer, Subscription};
use crate::lattice::LinkDefinition;

/// One address the shards listen on and the actor its requests go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    pub actor_id: String,
    pub link_name: String,
    pub settings: HttpSettings,
}

/// A link that cannot be served, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRefusal {
    pub actor_id: String,
    pub link_name: String,
    pub reason: String,
}

/// The routes for `links` (the lattice's, sorted by key) given the link names this host runs
/// the built-in HTTP server under, and the links refused.
pub fn plan_routes<'a>(
    links: impl IntoIterator<Item = &'a LinkDefinition>,
    running: &BTreeSet<String>,
) -> (Vec<HttpRoute>, Vec<RouteRefusal>) {
    let key = BuiltinProvider::HttpServer.service_key();
    let mut routes = Vec::new();
    let mut refused = Vec::new();
    let mut taken: BTreeMap<SocketAddr, String> = BTreeMap::new();
    for link in links {
        if link.provider_id != key || !running.contains(&link.link_name) {
            continue;
        }
        let refuse = |reason: String| RouteRefusal {
            actor_id: link.actor_id.clone(),
            link_name: link.link_name.clone(),
            reason,
        };
        let settings = match http_settings(&link.values) {
            Ok(settings) => settings,
            Err(reason) => {
                refused.push(refuse(reason));
                continue;
            }
        };
        if let Some(holder) = taken.get(&settings.address) {
            refused.push(refuse(format!(
                "address {} is already served for actor {holder}",
                settings.address
            )));
            continue;
        }
        taken.insert(settings.address, link.actor_id.clone());
        routes.push(HttpRoute {
            actor_id: link.actor_id.clone(),
            link_name: link.link_name.clone(),
            settings,
        });
    }
    (routes, refused)
}

/// One link of the built-in messaging provider: what its actor subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingRoute {
    pub actor_id: String,
    pub link_name: String,
    pub subscriptions: Vec<Subscription>,
    /// `None`: the lattice's NATS (the shards' own connections).
    pub server: Option<MessagingServer>,
}

/// The messaging routes for `links` given the link names this host runs the built-in
/// messaging provider under, and the links refused (values that do not read).
pub fn plan_messaging<'a>(
    links: impl IntoIterator<Item = &'a LinkDefinition>,
    running: &BTreeSet<String>,
) -> (Vec<MessagingRoute>, Vec<RouteRefusal>) {
    let key = BuiltinProvider::MessagingNats.service_key();
    let mut routes = Vec::new();
    let mut refused = Vec::new();
    for link in links {
        if link.provider_id != key || !running.contains(&link.link_name) {
            continue;
        }
        match messaging_settings(&link.values) {
            Ok(settings) => routes.push(MessagingRoute {
                actor_id: link.actor_id.clone(),
                link_name: link.link_name.clone(),
                subscriptions: settings.subscriptions,
                server: settings.server,
            }),
            Err(reason) => refused.push(RouteRefusal {
                actor_id: link.actor_id.clone(),
                link_name: link.link_name.clone(),
                reason,
            }),
        }
    }
    (routes, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(actor: &str, link_name: &str, values: &[(&str, &str)]) -> LinkDefinition {
        LinkDefinition {
            actor_id: actor.into(),
            provider_id: BuiltinProvider::HttpServer.service_key(),
            link_name: link_name.into(),
            contract_id: "wasmcloud:httpserver".into(),
            values: values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn routes_follow_running_link_names_and_refuse_clashes_and_bad_values() {
        let running: BTreeSet<String> = ["default".to_string()].into();
        let mut other = link("Mc", "default", &[]);
        other.provider_id = "Vsomeone-else".into();
        let links = [
            link("Ma", "default", &[("ADDRESS", "127.0.0.1:18080")]),
            link("Mb", "default", &[("port", "18080")]),
            link("Md", "default", &[("port", "not-a-port")]),
            link("Me", "other", &[("port", "18081")]),
            other,
        ];
        let (routes, refused) = plan_routes(&links, &running);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].actor_id, "Ma");
        assert_eq!(routes[0].settings.address, "127.0.0.1:18080".parse().unwrap());
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].reason.contains("already served for actor Ma"), "{refused:?}");
        assert_eq!(refused[1].actor_id, "Md");
        let (none, _) = plan_routes(&links, &BTreeSet::new());
        assert!(none.is_empty(), "nothing listens while the built-in does not run");
    }
}
