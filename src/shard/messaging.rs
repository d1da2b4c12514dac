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
//! A link that names another NATS (`URI`, `CLIENT_JWT`/`CLIENT_SEED`) gets a connection of its
//! own on each shard (shared by the links naming the same servers and credentials): its
//! subscriptions, its actors' publishes and requests go there.
//!
//! [`Subscriptions`] follows the control plane's route set (`ShardCommand::MessagingRoutes`).
//! Data plane.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crate::builtin::identity::BuiltinProvider;
use crate::builtin::messaging_settings::MessagingServer;
use crate::builtin::routes::MessagingRoute;
use crate::config_nats::NatsAuth;
use crate::plane::ConnConfig;
use crate::wire::messaging::{encode_message, MessageRef};

use super::calls::{from_builtin, BuiltinRequest, Delivery};
use super::conn::{Conn, Inbound};
use super::core::{MessagingConn, MessagingSub, ShardCore};
use super::inbox::Calls;
use super::outbox::Outbox;
use super::rt;

/// First and longest wait between attempts to reach a link's other NATS at first.
const OTHER_NATS_RETRY_MS_MIN: u64 = 200;
const OTHER_NATS_RETRY_MS_MAX: u64 = 2_000;

/// The operation a subscribed message runs.
pub const HANDLE_MESSAGE: &str = "MessageSubscriber.HandleMessage";

/// A connection this shard keeps for links to another NATS, and how many links use it.
struct Extra {
    server: MessagingServer,
    conn: Rc<MessagingConn>,
    reader: rt::Task<()>,
    users: usize,
}

/// The routes this shard subscribes for, with their subscriptions' sids, and the connections
/// of the links to another NATS.
#[derive(Default)]
pub(crate) struct Subscriptions {
    open: RefCell<Vec<(MessagingRoute, Vec<u64>)>>,
    extra: RefCell<Vec<Extra>>,
}

/// `host:port` of a server URI (`nats://` or `tls://` dropped, port 4222 when none).
fn server_address(uri: &str) -> String {
    let bare = uri.trim().trim_start_matches("nats://").trim_start_matches("tls://");
    if bare
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        bare.to_string()
    } else {
        format!("{bare}:4222")
    }
}

/// The connection settings of a link's other NATS; `None` when it is the lattice's own servers
/// with no credentials of its own (the shard's connection serves it) or the shard has none.
fn other_nats(core: &ShardCore, server: &MessagingServer) -> Option<ConnConfig> {
    let base = core.config().conn.as_ref()?;
    let servers: Vec<String> = if server.uris.is_empty() {
        base.servers.clone()
    } else {
        server.uris.iter().map(|u| server_address(u)).collect()
    };
    let lattice: Vec<String> = base.servers.iter().map(|s| server_address(s)).collect();
    if server.jwt.is_none() && servers.iter().all(|s| lattice.contains(s)) {
        return None;
    }
    let auth = match (&server.jwt, &server.seed) {
        (Some(jwt), Some(seed)) => NatsAuth::JwtSeed {
            jwt: jwt.clone(),
            seed: seed.clone(),
        },
        _ => NatsAuth::None,
    };
    Some(ConnConfig {
        servers,
        auth,
        name: format!("{} messaging", base.name),
        tls: base.tls.clone(),
        require_tls: server.uris.iter().any(|u| u.trim().starts_with("tls://")),
    })
}

impl Subscriptions {
    /// Follow the control plane's route set: subscribe what is new, unsubscribe what is gone,
    /// open and close the connections to other NATS servers as their links come and go.
    pub(crate) async fn apply(&self, core: &Rc<ShardCore>, routes: &[MessagingRoute]) {
        let gone: Vec<(MessagingRoute, Vec<u64>)> = {
            let mut open = self.open.borrow_mut();
            let (keep, gone) = std::mem::take(&mut *open)
                .into_iter()
                .partition(|(route, _)| routes.contains(route));
            *open = keep;
            gone
        };
        for (route, sids) in gone {
            self.close(core, &route, &sids).await;
        }
        for route in routes {
            if self.open.borrow().iter().any(|(r, _)| r == route) {
                continue;
            }
            let sids = self.subscribe(core, route);
            tracing::info!(shard = %core.id(), actor = %route.actor_id, subjects = sids.len(), other_nats = route.server.is_some(), "built-in messaging subscriptions open");
            self.open.borrow_mut().push((route.clone(), sids));
        }
    }

    fn subscribe(&self, core: &Rc<ShardCore>, route: &MessagingRoute) -> Vec<u64> {
        let sub = Rc::new(MessagingSub {
            actor: Rc::from(route.actor_id.as_str()),
            link_name: Rc::from(route.link_name.as_str()),
        });
        let conn = route.server.as_ref().and_then(|server| {
            let config = other_nats(core, server)?;
            Some(self.connection(core, server, config))
        });
        if let Some(conn) = &conn {
            core.messaging_conns()
                .borrow_mut()
                .entry(Rc::clone(&sub.actor))
                .or_default()
                .insert(Rc::clone(&sub.link_name), Rc::clone(conn));
        }
        let own_group = format!(
            "shardhost.{}.{}.{}",
            core.config().host_id,
            route.actor_id,
            route.link_name
        );
        let outbox = conn.as_ref().map_or(core.outbox(), |c| &c.outbox);
        let mut sids = Vec::with_capacity(route.subscriptions.len());
        for subscription in &route.subscriptions {
            let queue = subscription.queue.as_deref().unwrap_or(&own_group);
            match outbox.subscribe(&subscription.subject, Some(queue)) {
                Ok(sid) => {
                    let subs = conn.as_ref().map_or(core.messaging(), |c| &c.subs);
                    subs.borrow_mut().insert(sid, Rc::clone(&sub));
                    sids.push(sid);
                }
                Err(e) => {
                    tracing::error!(shard = %core.id(), subject = %subscription.subject, error = %e, "cannot subscribe for the built-in messaging provider")
                }
            }
        }
        sids
    }

    /// The shard's connection to `server` (opened now if no link uses it yet).
    fn connection(&self, core: &Rc<ShardCore>, server: &MessagingServer, config: ConnConfig) -> Rc<MessagingConn> {
        let mut extra = self.extra.borrow_mut();
        if let Some(existing) = extra.iter_mut().find(|e| e.server == *server) {
            existing.users += 1;
            return Rc::clone(&existing.conn);
        }
        let conn = Rc::new(MessagingConn {
            outbox: Rc::new(Outbox::new()),
            calls: Calls::new(core.id()),
            subs: RefCell::new(HashMap::new()),
        });
        match conn.outbox.subscribe(&format!("{}.*", conn.calls.inbox_prefix), None) {
            Ok(sid) => conn.calls.set_inbox_sid(sid),
            Err(e) => {
                tracing::error!(shard = %core.id(), error = %e, "cannot subscribe to the messaging connection's inbox")
            }
        }
        let reader = rt::spawn_local(read_other(Rc::clone(core), Rc::clone(&conn), config));
        extra.push(Extra {
            server: server.clone(),
            conn: Rc::clone(&conn),
            reader,
            users: 1,
        });
        conn
    }

    async fn close(&self, core: &Rc<ShardCore>, route: &MessagingRoute, sids: &[u64]) {
        let conn = core.messaging_conn(&route.actor_id, &route.link_name);
        let outbox = conn.as_ref().map_or(core.outbox(), |c| &c.outbox);
        for sid in sids {
            outbox.unsubscribe(*sid);
            let subs = conn.as_ref().map_or(core.messaging(), |c| &c.subs);
            subs.borrow_mut().remove(sid);
        }
        tracing::info!(shard = %core.id(), actor = %route.actor_id, link_name = %route.link_name, "built-in messaging subscriptions closed");
        if conn.is_none() {
            return;
        }
        if let Some(links) = core.messaging_conns().borrow_mut().get_mut(route.actor_id.as_str()) {
            links.remove(route.link_name.as_str());
        }
        let done = {
            let mut extra = self.extra.borrow_mut();
            let Some(at) = route
                .server
                .as_ref()
                .and_then(|server| extra.iter().position(|e| e.server == *server))
            else {
                return;
            };
            extra[at].users -= 1;
            (extra[at].users == 0).then(|| extra.remove(at))
        };
        if let Some(done) = done {
            // Its last link is gone: the connection closes (the writer goes with the reader).
            done.reader.cancel().await;
        }
    }
}

/// Connect to another NATS (retrying), then read: replies to the connection's requests go to
/// their callers, messages on its subscriptions to their actors; reconnect when it breaks.
async fn read_other(core: Rc<ShardCore>, conn: Rc<MessagingConn>, config: ConnConfig) {
    let mut wait = Duration::from_millis(OTHER_NATS_RETRY_MS_MIN);
    let mut nats = loop {
        match Conn::connect_with(config.clone(), Rc::clone(&conn.outbox)).await {
            Ok(nats) => break nats,
            Err(e) => {
                tracing::warn!(shard = %core.id(), servers = ?config.servers, error = %e, "the messaging connection cannot reach its NATS");
                rt::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(OTHER_NATS_RETRY_MS_MAX));
            }
        }
    };
    tracing::info!(shard = %core.id(), servers = ?config.servers, "built-in messaging connected to its own NATS");
    let mut batch = Vec::with_capacity(64);
    loop {
        batch.clear();
        match nats.read_batch(&mut batch).await {
            Ok(()) => {
                for msg in &batch {
                    if Some(msg.sid) == conn.calls.inbox_sid() {
                        conn.calls.deliver(msg);
                        continue;
                    }
                    let sub = conn.subs.borrow().get(&msg.sid).cloned();
                    if let Some(sub) = sub {
                        deliver(&core, sub, msg);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(shard = %core.id(), error = %e, "the messaging connection broke; reconnecting");
                if nats.reconnect(None).await.is_err() {
                    return;
                }
            }
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
    let request = BuiltinRequest {
        builtin: BuiltinProvider::MessagingNats,
        link_name: &sub.link_name,
        actor: &sub.actor,
        operation: HANDLE_MESSAGE,
        trace: None,
        timeout: core.config().rpc_timeout,
    };
    match from_builtin(core, request, payload).await {
        Delivery::Ran(result) | Delivery::Forwarded(result) => result.map(drop),
        Delivery::Refused(_, error) => Err(error),
    }
}
