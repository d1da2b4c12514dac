//! The built-in messaging provider's `Messaging` service, served on the calling shard: an
//! actor's `Messaging.Publish` goes out on the shard's own NATS connection, its
//! `Messaging.Request` waits on the shard's inbox for the reply (up to the request's
//! `timeoutMs`, else `--rpc-timeout-ms`), as the NATS messaging provider 0.17 serves them — with
//! no provider process and no invocation round trip. Reached from `calls.rs` when a link points
//! an actor's `wasmcloud:messaging` calls at `wasmcloud+builtin://messaging-nats`.
//!
//! Data plane.

use std::rc::Rc;
use std::time::Duration;

use crate::wire::messaging::{decode_message, decode_request, encode_message, MessageRef};
use crate::wire::nats::parse_headers;

use super::core::ShardCore;
use super::inbox::Calls;
use super::outbox::Outbox;

/// `Messaging.Publish`.
pub const PUBLISH: &str = "Messaging.Publish";
/// `Messaging.Request`.
pub const REQUEST: &str = "Messaging.Request";

/// Serve one `Messaging` call of `actor` on link `link_name`: on the link's own connection
/// when it names another NATS, else on the shard's.
pub(crate) async fn serve_call(
    core: &Rc<ShardCore>,
    actor: &str,
    link_name: &str,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    let own = core.messaging_conn(actor, link_name);
    let (outbox, calls) = match &own {
        Some(conn) => (&conn.outbox, &conn.calls),
        None => (core.outbox(), core.calls()),
    };
    match operation {
        PUBLISH => {
            let message = decode_message(payload).map_err(|e| e.to_string())?;
            outbox
                .publish(message.subject, message.reply_to, message.body)
                .map_err(|e| format!("cannot publish on {}: {e}", message.subject))?;
            core.bump(|s| s.messages_published += 1);
            Ok(Vec::new())
        }
        REQUEST => request(core, outbox, calls, payload).await,
        other => Err(format!(
            "the built-in messaging provider has no operation {other} (it serves {PUBLISH} and {REQUEST})"
        )),
    }
}

async fn request(core: &ShardCore, outbox: &Outbox, calls: &Calls, payload: &[u8]) -> Result<Vec<u8>, String> {
    let request = decode_request(payload).map_err(|e| e.to_string())?;
    let (reply_subject, token, reply) = calls.register();
    if let Err(e) = outbox.publish(request.subject, Some(&reply_subject), request.body) {
        calls.forget(token);
        return Err(format!("cannot publish the request on {}: {e}", request.subject));
    }
    core.bump(|s| s.messages_published += 1);
    let timeout = match request.timeout_ms {
        0 => core.config().rpc_timeout,
        ms => Duration::from_millis(ms),
    };
    let reply = match super::rt::timeout(timeout, reply).await {
        Some(Ok(reply)) => reply,
        Some(Err(_)) => {
            return Err(format!(
                "host stopping: the request on {} was cancelled",
                request.subject
            ))
        }
        None => {
            calls.forget(token);
            return Err(format!(
                "request timeout: no reply on {} within {} ms",
                request.subject,
                timeout.as_millis()
            ));
        }
    };
    if let Some(headers) = reply.headers.as_deref() {
        if parse_headers(headers).is_ok_and(|h| h.is_no_responders()) {
            return Err(format!("no responders: nothing subscribes to {}", request.subject));
        }
    }
    let mut out = Vec::with_capacity(reply.payload.len() + reply.subject().len() + 32);
    encode_message(
        &mut out,
        &MessageRef {
            subject: reply.subject(),
            reply_to: None,
            body: &reply.payload,
        },
    );
    Ok(out)
}
