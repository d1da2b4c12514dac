//! The built-in messaging provider's subscriptions on one shard (`wasmcloud+builtin://
//! messaging-nats`): every shard subscribes to every link's subjects on its own NATS
//! connection, and a message it receives runs `MessageSubscriber.HandleMessage` on a warm
//! instance of that shard — or goes to the lattice as a signed invocation from the built-in's
//! identity when the actor does not run here, as the provider would send it.
//!
//! Delivery once per host, as one provider per host delivers: a plain subscription is joined
//! by the host's shards as one queue group of their own (`shardhost.{host}.{actor}.{link}`), so
//! one shard of the host gets each message; a `subject|queue` subscription joins the link's
//! queue group, shared with every other subscriber of that group in the lattice.
//!
//! [`Subscriptions`] follows the control plane's route set (`ShardCommand::MessagingRoutes`).
//! Data plane.

use std::cell::RefCell;
use std::rc::Rc;

use crate::builtin::identity::{BuiltinProvider, MESSAGING_CONTRACT};
use crate::builtin::routes::MessagingRoute;
use crate::wire::invocation::EntityRef;
use crate::wire::messaging::{encode_message, MessageRef};

use super::calls::{send_call, Target};
use super::conn::Inbound;
use super::core::{MessagingSub, ShardCore};
use super::local::{run_here, Origin, Outcome};
use super::rt;

/// The operation a subscribed message runs.
pub const HANDLE_MESSAGE: &str = "MessageSubscriber.HandleMessage";

/// The routes this shard subscribes for, with their subscriptions' sids.
#[derive(Default)]
pub(crate) struct Subscriptions {
    open: RefCell<Vec<(MessagingRoute, Vec<u64>)>>,
}

impl Subscriptions {
    /// Follow the control plane's route set: subscribe what is new, unsubscribe what is gone.
    pub(crate) fn apply(&self, core: &Rc<ShardCore>, routes: &[MessagingRoute]) {
        let mut open = self.open.borrow_mut();
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut *open)
            .into_iter()
            .partition(|(route, _)| routes.contains(route));
        *open = keep;
        for (route, sids) in gone {
            for sid in sids {
                core.outbox().unsubscribe(sid);
                core.messaging().borrow_mut().remove(&sid);
            }
            tracing::info!(shard = %core.id(), actor = %route.actor_id, link_name = %route.link_name, "built-in messaging subscriptions closed");
        }
        for route in routes {
            if open.iter().any(|(r, _)| r == route) {
                continue;
            }
            let sub = Rc::new(MessagingSub {
                actor: Rc::from(route.actor_id.as_str()),
                link_name: Rc::from(route.link_name.as_str()),
            });
            let own_group = format!(
                "shardhost.{}.{}.{}",
                core.config().host_id,
                route.actor_id,
                route.link_name
            );
            let mut sids = Vec::with_capacity(route.subscriptions.len());
            for subscription in &route.subscriptions {
                let queue = subscription.queue.as_deref().unwrap_or(&own_group);
                match core.outbox().subscribe(&subscription.subject, Some(queue)) {
                    Ok(sid) => {
                        core.messaging().borrow_mut().insert(sid, Rc::clone(&sub));
                        sids.push(sid);
                    }
                    Err(e) => {
                        tracing::error!(shard = %core.id(), subject = %subscription.subject, error = %e, "cannot subscribe for the built-in messaging provider")
                    }
                }
            }
            tracing::info!(shard = %core.id(), actor = %route.actor_id, subjects = sids.len(), "built-in messaging subscriptions open");
            open.push((route.clone(), sids));
        }
    }
}

/// Hand one received message to its actor (a task of its own; counted, failures logged).
pub(crate) fn deliver(core: &Rc<ShardCore>, sub: Rc<MessagingSub>, msg: &Inbound) {
    core.bump(|s| s.messages_delivered += 1);
    // Counted as running until handled: a stopping shard waits for it.
    let guard = core.admit();
    let message = MessageRef {
        subject: msg.subject(),
        reply_to: msg.reply(),
        body: &msg.payload,
    };
    let mut payload = Vec::with_capacity(msg.payload.len() + message.subject.len() + 64);
    encode_message(&mut payload, &message);
    let core = Rc::clone(core);
    rt::spawn_local(async move {
        if let Err(error) = handle(&core, &sub, payload).await {
            core.bump(|s| s.messages_failed += 1);
            tracing::debug!(shard = %core.id(), actor = %sub.actor, %error, "message not delivered");
        }
        drop(guard);
    })
    .detach();
}

async fn handle(core: &Rc<ShardCore>, sub: &MessagingSub, payload: Vec<u8>) -> Result<(), String> {
    let key = BuiltinProvider::MessagingNats.key();
    if !core.routing().has_capability(&sub.actor, MESSAGING_CONTRACT) {
        return Err(format!(
            "actor {} does not have the capability claim {MESSAGING_CONTRACT}",
            sub.actor
        ));
    }
    let origin = Origin {
        key,
        link_name: &sub.link_name,
    };
    let payload = match run_here(core, origin, &sub.actor, HANDLE_MESSAGE, payload, None).await {
        Outcome::Ran(result) => return result.map(drop),
        Outcome::Refused(_, error) => return Err(error),
        Outcome::NotHere(payload) => payload,
    };
    let origin = EntityRef {
        public_key: key,
        link_name: &sub.link_name,
        contract_id: MESSAGING_CONTRACT,
    };
    let target = Target::actor(core, &sub.actor);
    let timeout = core.config().rpc_timeout;
    send_call(core, origin, &target, HANDLE_MESSAGE, payload, &[], timeout)
        .await
        .map(drop)
}
