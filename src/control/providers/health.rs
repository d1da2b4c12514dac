//! Provider health (PROTOCOL §8.4): the reply a provider sends on `…{link}.health`, and the
//! change-only state machine whose events wadm relies on.
//!
//! Control plane; pure. The initial state is unhealthy, as on both wasmCloud hosts: the first
//! good reply is a `health_check_passed`, a bad reply or timeout while healthy a
//! `health_check_failed`, anything else a `health_check_status`.

use serde::Deserialize;

/// First check after a provider (re)starts, at most (PROTOCOL §8.4: 5 s).
pub const HEALTH_FIRST_CHECK_MS_MAX: u64 = 5_000;

/// wasmbus-rpc's `HealthCheckResponse` (msgpack, named fields).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HealthCheckResponse {
    pub healthy: bool,
    #[serde(default)]
    pub message: Option<String>,
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// A reply that decodes, healthy or not.
    Reply(HealthCheckResponse),
    /// A reply that is not a `HealthCheckResponse`.
    Malformed(String),
    /// No reply within the timeout, or nobody subscribed.
    NoReply(String),
}

impl CheckOutcome {
    /// Decode a reply payload.
    pub fn from_reply(payload: &[u8]) -> CheckOutcome {
        match rmp_serde::from_slice::<HealthCheckResponse>(payload) {
            Ok(response) => CheckOutcome::Reply(response),
            Err(e) => CheckOutcome::Malformed(format!("health reply is not a HealthCheckResponse: {e}")),
        }
    }

    pub fn healthy(&self) -> bool {
        matches!(self, CheckOutcome::Reply(HealthCheckResponse { healthy: true, .. }))
    }

    /// Why the provider counts as unhealthy, if it does.
    pub fn problem(&self) -> Option<String> {
        match self {
            CheckOutcome::Reply(HealthCheckResponse { healthy: true, .. }) => None,
            CheckOutcome::Reply(HealthCheckResponse { message, .. }) => {
                Some(message.clone().unwrap_or_else(|| "provider reported unhealthy".into()))
            }
            CheckOutcome::Malformed(why) | CheckOutcome::NoReply(why) => Some(why.clone()),
        }
    }
}

/// The event a check produces given the state before it, and the new state.
pub fn transition(was_healthy: bool, outcome: &CheckOutcome) -> (&'static str, bool) {
    let healthy = outcome.healthy();
    let event = match (was_healthy, healthy) {
        (false, true) => "health_check_passed",
        (true, false) => "health_check_failed",
        _ => "health_check_status",
    };
    (event, healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(healthy: bool) -> CheckOutcome {
        CheckOutcome::Reply(HealthCheckResponse { healthy, message: None })
    }

    #[test]
    fn events_fire_on_change_only() {
        assert_eq!(transition(false, &reply(true)), ("health_check_passed", true));
        assert_eq!(transition(true, &reply(true)), ("health_check_status", true));
        assert_eq!(transition(true, &reply(false)), ("health_check_failed", false));
        assert_eq!(
            transition(true, &CheckOutcome::NoReply("timeout".into())),
            ("health_check_failed", false)
        );
        assert_eq!(transition(false, &reply(false)), ("health_check_status", false));
    }

    #[test]
    fn replies_decode_from_the_sdk_shape() {
        #[derive(serde::Serialize)]
        struct Sdk {
            healthy: bool,
            message: Option<String>,
        }
        let bytes = rmp_serde::to_vec_named(&Sdk {
            healthy: false,
            message: Some("db down".into()),
        })
        .unwrap();
        let outcome = CheckOutcome::from_reply(&bytes);
        assert!(!outcome.healthy());
        assert_eq!(outcome.problem().as_deref(), Some("db down"));
        let ok = rmp_serde::to_vec_named(&Sdk {
            healthy: true,
            message: None,
        })
        .unwrap();
        assert!(CheckOutcome::from_reply(&ok).healthy());
        assert!(matches!(
            CheckOutcome::from_reply(b"\xc1garbage"),
            CheckOutcome::Malformed(_)
        ));
    }
}
