//! The `raw` scenario: the floor every figure is quoted against. The same pre-signed
//! invocations, the same payload size and the same generator go to a trivial responder
//! (`shardhost-loadtest responder`) that sends each request's bytes straight back, so a run
//! measures NATS request/reply itself on the same cores: what no host on this machine can beat.
//!
//! The responder does no decoding and no checks. The generator counts a reply as ok when it is
//! the request's bytes (`--verify-echo`) or any reply (without it).

use std::time::Duration;

use futures::StreamExt as _;

use crate::error::LoadtestError;
use crate::stats::Outcome;

/// Longest `responder --max-secs`.
pub const RESPONDER_SECS_MAX: u64 = 24 * 3_600;
/// How long the responder waits for its subscription to be confirmed by the server.
const SUBSCRIBE_CONFIRM_MS: u64 = 5_000;

/// A raw reply's outcome: ok when it is the request (`expected` given) or always (`None`).
pub fn classify_raw(reply: &[u8], expected: Option<&[u8]>) -> Outcome {
    match expected {
        Some(request) if reply != request => Outcome::Failure("raw reply is not the request's bytes".to_string()),
        _ => Outcome::Ok,
    }
}

/// Whether `subject` is one literal NATS subject (no wildcards, no empty tokens, no spaces).
pub fn is_literal_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject
            .split('.')
            .all(|token| !token.is_empty() && token != "*" && token != ">" && !token.contains([' ', '\t', '\r', '\n']))
}

/// What a responder did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    pub replies: u64,
    /// Requests without a reply subject (nothing to answer).
    pub without_reply: u64,
}

/// Answer every request on `subject` (queue group `subject`, so several responders share the
/// load) with its own bytes, until `stop` resolves or `max` passes. `ready` is called once the
/// server has the subscription.
pub async fn respond(
    url: &str,
    subject: &str,
    max: Duration,
    ready: impl FnOnce(),
    stop: impl std::future::Future<Output = ()>,
) -> Result<Served, LoadtestError> {
    if !is_literal_subject(subject) {
        return Err(LoadtestError::Arg {
            flag: "--subject",
            reason: format!("{subject:?} is not one literal NATS subject"),
        });
    }
    let client = async_nats::ConnectOptions::new()
        .name("shardhost-loadtest-responder")
        .connect(url)
        .await
        .map_err(|e| LoadtestError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let mut requests = client
        .queue_subscribe(subject.to_string(), subject.to_string())
        .await
        .map_err(|e| LoadtestError::nats(format!("subscribe to {subject}"), e))?;
    // A flush is a PING/PONG: once it returns the server has processed the SUB.
    tokio::time::timeout(Duration::from_millis(SUBSCRIBE_CONFIRM_MS), client.flush())
        .await
        .map_err(|_| LoadtestError::Timeout {
            what: format!("the server to confirm the subscription to {subject}"),
            wait_ms: SUBSCRIBE_CONFIRM_MS,
        })?
        .map_err(|e| LoadtestError::nats("flush", e))?;
    ready();
    let mut served = Served::default();
    let deadline = tokio::time::sleep(max);
    tokio::pin!(deadline, stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            () = &mut deadline => break,
            message = requests.next() => {
                let Some(message) = message else { break };
                match message.reply {
                    Some(reply) => {
                        client
                            .publish(reply, message.payload)
                            .await
                            .map_err(|e| LoadtestError::nats("reply", e))?;
                        served.replies += 1;
                    }
                    None => served.without_reply += 1,
                }
            }
        }
    }
    let _ = client.flush().await;
    Ok(served)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_reply_is_ok_when_it_is_the_request() {
        assert_eq!(classify_raw(b"abc", Some(b"abc")), Outcome::Ok);
        assert!(matches!(classify_raw(b"abd", Some(b"abc")), Outcome::Failure(_)));
        assert_eq!(classify_raw(b"anything", None), Outcome::Ok);
    }

    #[test]
    fn only_literal_subjects_are_served() {
        assert!(is_literal_subject("loadtest.raw.floor"));
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            assert!(!is_literal_subject(bad), "{bad:?}");
        }
    }
}
