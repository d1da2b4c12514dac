//! The built-in messaging provider's routes on the control plane: which subjects the shards
//! subscribe to for which actor (`builtin::routes::plan_messaging` over the lattice's links and
//! the link names the built-in runs under), handed to every shard whenever that set changes.
//!
//! Control plane (tokio). A link put through this host whose values the built-in cannot serve
//! is refused in the ack ([`link_put_refusal`]); one that reaches the bucket another way is
//! logged and not served.

use std::sync::Arc;

use crate::builtin::identity::BuiltinProvider;
use crate::builtin::messaging_settings::messaging_settings;
use crate::builtin::routes::plan_messaging;
use crate::lattice::LinkDefinition;
use crate::plane::ShardCommand;

use super::providers::builtin::link_refusal;
use super::ControlPlane;

/// Why a link put for the built-in messaging provider is refused (`None`: not for it, or fine).
pub fn link_put_refusal(link: &LinkDefinition) -> Option<String> {
    link_refusal(
        link,
        BuiltinProvider::MessagingNats,
        "messaging provider",
        messaging_settings,
    )
}

impl ControlPlane {
    /// Recompute the messaging routes and hand them to the shards if they changed.
    pub(crate) fn publish_messaging_routes(&mut self) {
        let running = self.providers.builtin_links(BuiltinProvider::MessagingNats);
        let (routes, refused) = plan_messaging(self.state.links.values(), &running);
        if routes == *self.messaging_routes {
            return;
        }
        for refusal in &refused {
            tracing::error!(
                actor = %refusal.actor_id,
                link_name = %refusal.link_name,
                reason = %refusal.reason,
                "the built-in messaging provider does not serve this link"
            );
        }
        let subscriptions: usize = routes.iter().map(|r| r.subscriptions.len()).sum();
        tracing::info!(
            routes = routes.len(),
            subscriptions,
            "built-in messaging routes changed"
        );
        self.messaging_routes = Arc::new(routes);
        let command = ShardCommand::MessagingRoutes(Arc::clone(&self.messaging_routes));
        if let Err(e) = self.shards.broadcast(&command) {
            tracing::error!(error = %e, "cannot hand the messaging routes to a shard");
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
            provider_id: BuiltinProvider::MessagingNats.service_key(),
            link_name: "default".into(),
            contract_id: "wasmcloud:messaging".into(),
            values: [("SUBSCRIPTION".to_string(), "a.b".to_string())].into(),
        };
        assert_eq!(link_put_refusal(&link), None);
        link.values.insert("URI".into(), "nats://elsewhere:4222".into());
        assert_eq!(link_put_refusal(&link), None, "another NATS is served");
        link.values.insert("CLIENT_JWT".into(), "eyJ.x".into());
        assert!(link_put_refusal(&link).is_some_and(|why| why.contains("CLIENT_SEED")));
        link.contract_id = "wasmcloud:keyvalue".into();
        assert!(link_put_refusal(&link).is_some_and(|why| why.contains("serves wasmcloud:messaging")));
        link.provider_id = "Vother".into();
        assert_eq!(link_put_refusal(&link), None);
    }
}
