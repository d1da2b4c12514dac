//! Policy decisions on the shard (`--policy-topic`): a share-nothing table of verdicts per
//! (caller, callee) pair, filled by the control plane's [`ShardCommand::Policy`] commands, and
//! the invocations held while a pair is undecided.
//!
//! A decided pair costs three hash lookups on the hot path and never a wait on the control
//! plane. An undecided pair's invocations are held (counted like queued ones, under the same
//! overload bound) and the control plane is asked once; its verdict releases them — to run, or
//! to be answered "Policy denied …". A verdict that is not lasting (the service gave no
//! decision: the host denied) is applied to what it holds and not kept, so the next invocation
//! asks again. Data plane: no locks, no runtime.
//!
//! [`ShardCommand::Policy`]: crate::plane::ShardCommand::Policy

use std::collections::HashMap;
use std::sync::Arc;

use crate::plane::{PolicyPair, PolicyVerdict};

/// What to do with one invocation.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Permitted (or no policy service): serve it.
    Pass,
    /// Denied: answer with this error.
    Deny(Arc<str>),
    /// Not decided yet: hold it until the verdict arrives.
    Hold,
}

/// Verdicts by target, then origin, then link name (lookups by `&str`, no allocation).
type Verdicts = HashMap<Box<str>, HashMap<Box<str>, HashMap<Box<str>, Option<Arc<str>>>>>;

/// One shard's policy table and held invocations (`J`: the shard's job type).
pub struct PolicyGate<J> {
    enabled: bool,
    verdicts: Verdicts,
    held: HashMap<PolicyPair, Vec<J>>,
    held_count: usize,
}

impl<J> PolicyGate<J> {
    /// A gate; `enabled` false passes everything.
    pub fn new(enabled: bool) -> PolicyGate<J> {
        PolicyGate {
            enabled,
            verdicts: HashMap::new(),
            held: HashMap::new(),
            held_count: 0,
        }
    }

    /// The gate for an invocation of `target` by `origin` (a provider's `link_name`; empty for
    /// an actor).
    #[inline]
    pub fn check(&self, origin: &str, link_name: &str, target: &str) -> Gate {
        if !self.enabled {
            return Gate::Pass;
        }
        let verdict = self
            .verdicts
            .get(target)
            .and_then(|by_origin| by_origin.get(origin))
            .and_then(|by_link| by_link.get(link_name));
        match verdict {
            Some(None) => Gate::Pass,
            Some(Some(denial)) => Gate::Deny(Arc::clone(denial)),
            None => Gate::Hold,
        }
    }

    /// Hold `job` until `pair` is decided; true when it is the pair's first held invocation
    /// (the caller then asks the control plane).
    pub fn hold(&mut self, pair: PolicyPair, job: J) -> bool {
        self.held_count += 1;
        let waiting = self.held.entry(pair).or_default();
        waiting.push(job);
        waiting.len() == 1
    }

    /// Apply a verdict: keep it if lasting, and hand back the invocations held for the pair.
    pub fn decide(&mut self, pair: &PolicyPair, verdict: &PolicyVerdict) -> Vec<J> {
        if verdict.lasting {
            self.verdicts
                .entry(Box::from(pair.target.as_str()))
                .or_default()
                .entry(Box::from(pair.origin.as_str()))
                .or_default()
                .insert(Box::from(pair.link_name.as_str()), verdict.denial.clone());
        }
        self.release(pair)
    }

    /// Hand back every held invocation of `pair` without a verdict (its query could not be
    /// sent).
    pub fn release(&mut self, pair: &PolicyPair) -> Vec<J> {
        let released = self.held.remove(pair).unwrap_or_default();
        self.held_count -= released.len();
        released
    }

    /// Hand back everything held (a stopping shard answers them).
    pub fn release_all(&mut self) -> Vec<J> {
        self.held_count = 0;
        self.held.drain().flat_map(|(_, jobs)| jobs).collect()
    }

    /// Invocations held now.
    pub fn held(&self) -> usize {
        self.held_count
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn pair(origin: &str, link: &str, target: &str) -> PolicyPair {
        PolicyPair {
            origin: origin.into(),
            link_name: link.into(),
            target: target.into(),
        }
    }

    fn verdict(denial: Option<&str>, lasting: bool) -> PolicyVerdict {
        PolicyVerdict {
            denial: denial.map(Arc::from),
            lasting,
        }
    }

    #[test]
    fn without_a_policy_service_everything_passes() {
        let gate: PolicyGate<u32> = PolicyGate::new(false);
        assert_eq!(gate.check("Ma", "", "Mb"), Gate::Pass);
    }

    #[test]
    fn undecided_pairs_are_held_and_asked_once_then_released_by_the_verdict() {
        let mut gate = PolicyGate::new(true);
        assert_eq!(gate.check("Ma", "", "Mb"), Gate::Hold);
        assert!(gate.hold(pair("Ma", "", "Mb"), 1));
        assert!(!gate.hold(pair("Ma", "", "Mb"), 2), "asked once per pair");
        assert!(gate.hold(pair("Vp", "default", "Mb"), 3));
        assert_eq!(gate.held(), 3);
        assert_eq!(gate.decide(&pair("Ma", "", "Mb"), &verdict(None, true)), vec![1, 2]);
        assert_eq!(gate.held(), 1);
        assert_eq!(gate.check("Ma", "", "Mb"), Gate::Pass);
        // Another link name of the same provider is another pair.
        assert_eq!(gate.check("Vp", "other", "Mb"), Gate::Hold);
        let denied = verdict(Some("Policy denied request to invoke actor `r`: no"), true);
        assert_eq!(gate.decide(&pair("Vp", "default", "Mb"), &denied), vec![3]);
        assert!(matches!(gate.check("Vp", "default", "Mb"), Gate::Deny(text) if text.starts_with("Policy denied")));
        assert_eq!(gate.held(), 0);
    }

    #[test]
    fn a_verdict_that_is_not_lasting_releases_but_is_not_kept() {
        let mut gate = PolicyGate::new(true);
        gate.hold(pair("Ma", "", "Mb"), 1);
        let timeout = verdict(Some("Policy denied … did not answer"), false);
        assert_eq!(gate.decide(&pair("Ma", "", "Mb"), &timeout), vec![1]);
        assert_eq!(gate.check("Ma", "", "Mb"), Gate::Hold, "the next invocation asks again");
    }

    #[test]
    fn a_change_replaces_a_kept_verdict_and_stop_releases_all() {
        let mut gate = PolicyGate::new(true);
        gate.decide(&pair("Ma", "", "Mb"), &verdict(None, true));
        gate.decide(&pair("Ma", "", "Mb"), &verdict(Some("Policy denied: revoked"), true));
        assert!(matches!(gate.check("Ma", "", "Mb"), Gate::Deny(_)));
        gate.hold(pair("Mc", "", "Mb"), 7);
        gate.hold(pair("Md", "", "Mb"), 8);
        let mut all = gate.release_all();
        all.sort();
        assert_eq!(all, vec![7, 8]);
        assert_eq!(gate.held(), 0);
    }
}
