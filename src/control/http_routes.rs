//! The built-in HTTP server's routes on the control plane: which links it serves on this host
//! (`builtin::routes::plan_routes` over the lattice's links and the link names the built-in
//! runs under), handed to every shard whenever that set changes — a link put or deleted, the
//! built-in started or stopped — and the shards' reports of listening (the built-in's health).
//!
//! Control plane (tokio). A link put through this host whose values the built-in cannot serve
//! is refused in the ack ([`link_put_refusal`]); one that reaches the bucket another way is
//! logged and not served.

use std::sync::Arc;

use crate::builtin::http_settings::http_settings;
use crate::builtin::identity::BuiltinProvider;
use crate::builtin::routes::{plan_routes, HttpRoute};
use crate::lattice::LinkDefinition;
use crate::plane::{HttpListen, ShardCommand, ShardId};

use super::providers::builtin::link_refusal;
use super::providers::supervisor::ProviderReport;
use super::ControlPlane;

/// Why a link put for the built-in HTTP server is refused (`None`: not for it, or fine).
pub fn link_put_refusal(link: &LinkDefinition) -> Option<String> {
    link_refusal(link, BuiltinProvider::HttpServer, "HTTP server", http_settings)
}

impl ControlPlane {
    /// Recompute every built-in's routes (HTTP and messaging) and hand the changed ones to the
    /// shards.
    pub(crate) fn publish_builtin_routes(&mut self) {
        self.publish_http_routes();
        self.publish_messaging_routes();
    }

    /// Recompute the routes and hand them to the shards if they changed.
    pub(crate) fn publish_http_routes(&mut self) {
        let running = self.providers.builtin_links(BuiltinProvider::HttpServer);
        let (routes, refused) = plan_routes(self.state.links.values(), &running);
        if routes == *self.http_routes {
            return;
        }
        for refusal in &refused {
            tracing::error!(
                actor = %refusal.actor_id,
                link_name = %refusal.link_name,
                reason = %refusal.reason,
                "the built-in HTTP server does not serve this link"
            );
        }
        for route in &routes {
            if !route.settings.not_acted_on.is_empty() {
                tracing::warn!(actor = %route.actor_id, address = %route.settings.address, not_acted_on = ?route.settings.not_acted_on, "link settings accepted but not acted on");
            }
        }
        let addresses: Vec<_> = routes.iter().map(|r| r.settings.address).collect();
        self.providers.builtin_health.retain(&addresses);
        tracing::info!(routes = routes.len(), ?addresses, "built-in HTTP server routes changed");
        let listens = self.http_listens(&routes);
        self.http_routes = Arc::new(routes);
        let command = ShardCommand::HttpRoutes(Arc::new(listens));
        if let Err(e) = self.shards.broadcast(&command) {
            tracing::error!(error = %e, "cannot hand the HTTP routes to a shard");
        }
    }

    /// The routes with their TLS configurations; a route whose certificate or key cannot be
    /// read is not served (its address reports unhealthy with the reason).
    fn http_listens(&self, routes: &[HttpRoute]) -> Vec<HttpListen> {
        let mut listens = Vec::with_capacity(routes.len());
        for route in routes {
            let tls = match &route.settings.tls {
                None => None,
                Some(files) => {
                    let cert = std::path::Path::new(&files.cert_file);
                    let key = std::path::Path::new(&files.priv_key_file);
                    match crate::tls::server_config("tls", cert, key) {
                        Ok(config) => Some(config),
                        Err(e) => {
                            let error = format!("HTTPS settings refused: {e}");
                            tracing::error!(actor = %route.actor_id, address = %route.settings.address, %error, "the built-in HTTP server does not serve this link");
                            self.providers
                                .builtin_health
                                .listened(route.settings.address, Some(error));
                            continue;
                        }
                    }
                }
            };
            listens.push(HttpListen {
                route: route.clone(),
                tls,
            });
        }
        listens
    }

    /// A shard listens on `address` now, or cannot.
    pub(crate) fn on_http_listen(&mut self, shard: ShardId, address: std::net::SocketAddr, error: Option<String>) {
        match &error {
            Some(error) => tracing::error!(%shard, %address, %error, "the built-in HTTP server cannot listen"),
            None => tracing::debug!(%shard, %address, "built-in HTTP server listening"),
        }
        self.providers.builtin_health.listened(address, error);
    }

    /// A supervisor's report; a built-in that started or stopped changes the routes.
    pub(crate) fn on_provider_report(&mut self, report: ProviderReport) {
        let builtin = BuiltinProvider::from_key(&report.provider_key).is_some();
        self.providers.on_report(report);
        if builtin {
            self.publish_builtin_routes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_puts_for_the_builtin_are_checked() {
        let mut link = LinkDefinition {
            actor_id: "Ma".into(),
            provider_id: BuiltinProvider::HttpServer.service_key(),
            link_name: "default".into(),
            contract_id: "wasmcloud:httpserver".into(),
            values: [("port".to_string(), "8080".to_string())].into(),
        };
        assert_eq!(link_put_refusal(&link), None);
        link.values.insert("bogus".into(), "1".into());
        let why = link_put_refusal(&link).expect("refused");
        assert!(why.contains("bogus"), "{why}");
        link.values.clear();
        link.contract_id = "wasmcloud:keyvalue".into();
        assert!(link_put_refusal(&link).is_some());
        link.provider_id = "Vother".into();
        assert_eq!(link_put_refusal(&link), None);
    }
}
