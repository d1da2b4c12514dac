//! The control plane's table of running actors and the control-interface shapes around it:
//! start/scale/stop/update requests (both the OTP/≤0.29 and the 0.30+ shapes, PROTOCOL §5.1 and
//! §16), the inventory entries (§5.3), heartbeat counts (§10), actor event bodies (§6) and call
//! alias ownership (§4.5).
//!
//! Control plane; pure bookkeeping with no I/O, so every rule here is unit-tested.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::auth::claims::ActorClaims;
pub use crate::wire::ctl::{Annotations, ScaleTarget};

/// Instances of one actor that share one annotation set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceGroup {
    pub annotations: Annotations,
    /// One id per instance, as OTP lists them (0.30+ groups have exactly one).
    pub instance_ids: Vec<String>,
    /// Max concurrency; None = unbounded.
    pub max_concurrent: Option<u16>,
}

impl InstanceGroup {
    /// What the group counts as in events and heartbeats: its instances for the OTP shape, its
    /// max concurrency for the 0.30+ shape (what wadm and the 0.80+ hosts count), at least its
    /// instance ids.
    pub fn weight(&self) -> usize {
        self.max_concurrent
            .map_or(self.instance_ids.len(), usize::from)
            .max(self.instance_ids.len())
    }
}

/// What a scale changed: the instance ids started and stopped, and the counts the
/// `actors_started` / `actors_stopped` events report (instances for the OTP shape, the change
/// of max concurrency for the 0.30+ shape, which is what wadm adds and subtracts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleChange {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub started_count: usize,
    pub stopped_count: usize,
}

/// A running actor: its claims, where it came from, and its instance groups.
#[derive(Debug, Clone)]
pub struct RunningActor {
    pub claims: ActorClaims,
    pub image_ref: String,
    pub module_hash: String,
    pub groups: Vec<InstanceGroup>,
}

impl RunningActor {
    pub fn instance_count(&self) -> usize {
        self.groups.iter().map(|g| g.instance_ids.len()).sum()
    }

    /// The sum of the groups' [`InstanceGroup::weight`]: the count events and heartbeats report.
    pub fn reported_count(&self) -> usize {
        self.groups.iter().map(InstanceGroup::weight).sum()
    }

    /// Warm-pool size wanted across the host: the sum of max concurrency, bounded; an
    /// unbounded group counts as `unbounded_as`.
    pub fn concurrency(&self, unbounded_as: u32) -> u32 {
        self.groups
            .iter()
            .map(|g| {
                g.max_concurrent
                    .map_or(unbounded_as, u32::from)
                    .max(g.instance_ids.len() as u32)
            })
            .sum()
    }

    /// Inventory entry (§5.3): one instance entry per instance id.
    pub fn inventory_entry(&self) -> Value {
        let revision = self.claims.revision_or_iat();
        let mut instances = Vec::new();
        for group in &self.groups {
            for id in &group.instance_ids {
                instances.push(json!({
                    "instance_id": id,
                    "revision": revision,
                    "annotations": group.annotations,
                    "image_ref": self.image_ref,
                    "max_concurrent": group.max_concurrent.unwrap_or(u16::MAX),
                }));
            }
        }
        json!({
            "id": self.claims.subject,
            "image_ref": self.image_ref,
            "name": self.claims.name,
            "instances": instances,
        })
    }
}

/// `nbf`/`exp` as the events show them: RFC 3339, or `never` when absent.
pub fn human_time(secs: Option<u64>) -> String {
    secs.and_then(|s| chrono::DateTime::from_timestamp(i64::try_from(s).ok()?, 0))
        .map_or_else(|| "never".to_string(), |t| t.to_rfc3339())
}

/// The `claims` object of actor events.
pub fn event_claims(claims: &ActorClaims) -> Value {
    let human = human_time;
    json!({
        "call_alias": claims.call_alias.clone().unwrap_or_default(),
        "caps": claims.caps,
        "issuer": claims.issuer,
        "tags": claims.tags,
        "name": claims.name.clone().unwrap_or_default(),
        "version": claims.ver.clone().unwrap_or_default(),
        "revision": claims.revision_or_iat(),
        "not_before_human": human(claims.nbf_secs),
        "expires_human": human(claims.exp_secs),
    })
}

/// Why a table change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("call alias {alias} is already claimed by actor {owner}")]
    AliasClash { alias: String, owner: String },
    #[error("actor {0} is not running on this host")]
    NotRunning(String),
    #[error("no instances of actor {0} match the given annotations")]
    NoMatch(String),
}

/// All actors on this host, by public key, plus call alias ownership.
#[derive(Debug, Default, Clone)]
pub struct ActorTable {
    pub actors: BTreeMap<String, RunningActor>,
}

impl ActorTable {
    /// The running actor started from `reference`, or whose key is `reference` (control
    /// requests name actors either way).
    pub fn find(&self, reference: &str) -> Option<&RunningActor> {
        self.actors
            .get(reference)
            .or_else(|| self.actors.values().find(|a| a.image_ref == reference))
    }

    /// Which running actor (if any other) owns `alias`.
    pub fn alias_owner(&self, alias: &str) -> Option<&str> {
        self.actors
            .values()
            .find(|a| a.claims.call_alias.as_deref() == Some(alias))
            .map(|a| a.claims.subject.as_str())
    }

    /// Refuse an actor whose alias another actor (here, or in the lattice's claims) owns.
    pub fn check_alias(&self, claims: &ActorClaims, lattice_owner: Option<&str>) -> Result<(), TableError> {
        let Some(alias) = claims.call_alias.as_deref().filter(|a| !a.is_empty()) else {
            return Ok(());
        };
        let owner = self.alias_owner(alias).or(lattice_owner);
        match owner {
            Some(owner) if owner != claims.subject => Err(TableError::AliasClash {
                alias: alias.to_string(),
                owner: owner.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Add `count` instances with `annotations` (OTP semantics: they add up).
    pub fn add_instances(
        &mut self,
        template: RunningActor,
        annotations: Annotations,
        count: u16,
    ) -> (&RunningActor, Vec<String>) {
        let key = template.claims.subject.clone();
        let actor = self.actors.entry(key).or_insert_with(|| RunningActor {
            groups: Vec::new(),
            ..template
        });
        let ids: Vec<String> = (0..count).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        match actor.groups.iter_mut().find(|g| g.annotations == annotations) {
            Some(group) => {
                group.instance_ids.extend(ids.iter().cloned());
                group.max_concurrent = Some(group.instance_ids.len().min(u16::MAX as usize) as u16);
            }
            None => actor.groups.push(InstanceGroup {
                annotations,
                instance_ids: ids.clone(),
                max_concurrent: Some(count),
            }),
        }
        (actor, ids)
    }

    /// Set the instance count (OTP scale) or max concurrency (0.30+ scale) of the group with
    /// `annotations`.
    pub fn scale(&mut self, template: RunningActor, annotations: Annotations, target: ScaleTarget) -> ScaleChange {
        let key = template.claims.subject.clone();
        if target == ScaleTarget::Stop || target == ScaleTarget::Instances(0) {
            let weight: usize = self.actors.get(&key).map_or(0, |a| {
                a.groups
                    .iter()
                    .filter(|g| annotations.is_empty() || g.annotations == annotations)
                    .map(InstanceGroup::weight)
                    .sum()
            });
            let stopped = self.stop(&key, &annotations, None).unwrap_or_default();
            let stopped_count = if target == ScaleTarget::Stop {
                weight
            } else {
                stopped.len()
            };
            return ScaleChange {
                stopped,
                stopped_count,
                ..ScaleChange::default()
            };
        }
        let actor = self.actors.entry(key).or_insert_with(|| RunningActor {
            groups: Vec::new(),
            ..template
        });
        let index = match actor.groups.iter().position(|g| g.annotations == annotations) {
            Some(i) => i,
            None => {
                actor.groups.push(InstanceGroup {
                    annotations,
                    instance_ids: Vec::new(),
                    max_concurrent: None,
                });
                actor.groups.len() - 1
            }
        };
        let group = &mut actor.groups[index];
        let weight_before = group.weight();
        let want = match target {
            ScaleTarget::Instances(n) => n as usize,
            _ => 1,
        };
        group.max_concurrent = match target {
            ScaleTarget::Instances(n) => Some(n),
            ScaleTarget::MaxConcurrent(max) => max,
            ScaleTarget::Stop => Some(0),
        };
        let mut started = Vec::new();
        while group.instance_ids.len() < want {
            let id = uuid::Uuid::new_v4().to_string();
            group.instance_ids.push(id.clone());
            started.push(id);
        }
        let stopped = group.instance_ids.split_off(want);
        let weight_after = group.weight();
        let (started_count, stopped_count) = match target {
            ScaleTarget::MaxConcurrent(Some(_)) => (
                weight_after.saturating_sub(weight_before),
                weight_before.saturating_sub(weight_after),
            ),
            _ => (started.len(), stopped.len()),
        };
        ScaleChange {
            started,
            stopped,
            started_count,
            stopped_count,
        }
    }

    /// Stop up to `count` (all when None) instances whose annotations equal `annotations`
    /// (an empty filter matches every group). Returns the stopped ids; removes the actor when
    /// none remain.
    pub fn stop(
        &mut self,
        key: &str,
        annotations: &Annotations,
        count: Option<u16>,
    ) -> Result<Vec<String>, TableError> {
        let actor = self
            .actors
            .get_mut(key)
            .ok_or_else(|| TableError::NotRunning(key.to_string()))?;
        let mut budget = count.map_or(usize::MAX, usize::from);
        let mut stopped = Vec::new();
        for group in actor
            .groups
            .iter_mut()
            .filter(|g| annotations.is_empty() || &g.annotations == annotations)
        {
            let before = group.instance_ids.len();
            while budget > 0 {
                let Some(id) = group.instance_ids.pop() else { break };
                stopped.push(id);
                budget -= 1;
            }
            // An instance-count group (OTP shape: max concurrency = instances) shrinks with
            // its instances; a 0.30+ group keeps its max until it is gone.
            if group.max_concurrent == u16::try_from(before).ok() {
                group.max_concurrent = u16::try_from(group.instance_ids.len()).ok();
            }
        }
        if stopped.is_empty() {
            return Err(TableError::NoMatch(key.to_string()));
        }
        actor.groups.retain(|g| !g.instance_ids.is_empty());
        if actor.groups.is_empty() {
            self.actors.remove(key);
        }
        Ok(stopped)
    }

    /// Heartbeat `actors` map: key → count (instances, or max concurrency for 0.30+ groups, as
    /// the Rust 0.80 host reports it).
    pub fn heartbeat_counts(&self) -> BTreeMap<String, u64> {
        self.actors
            .iter()
            .map(|(k, a)| (k.clone(), a.reported_count() as u64))
            .collect()
    }

    /// Inventory `actors` list.
    pub fn inventory(&self) -> Vec<Value> {
        self.actors.values().map(RunningActor::inventory_entry).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(subject: &str, alias: Option<&str>) -> ActorClaims {
        ActorClaims {
            subject: subject.into(),
            issuer: "Aissuer".into(),
            issuer_key_bytes: [0; 32],
            jti: "j".into(),
            name: Some("echo".into()),
            hash: "H".into(),
            tags: vec![],
            caps: vec!["wasmcloud:httpserver".into()],
            rev: Some(3),
            ver: Some("0.1.0".into()),
            call_alias: alias.map(str::to_string),
            prov: false,
            iat_secs: 1_700_000_000,
            exp_secs: None,
            nbf_secs: None,
            wascap_revision: Some(3),
        }
    }

    fn actor(subject: &str) -> RunningActor {
        RunningActor {
            claims: claims(subject, None),
            image_ref: "localhost:5000/echo:0.1".into(),
            module_hash: "H".into(),
            groups: vec![],
        }
    }

    fn ann(pairs: &[(&str, &str)]) -> Annotations {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn instances_add_up_and_stop_by_annotations() {
        let mut t = ActorTable::default();
        let (_, ids) = t.add_instances(actor("Ma"), ann(&[]), 2);
        assert_eq!(ids.len(), 2);
        t.add_instances(actor("Ma"), ann(&[("app", "x")]), 1);
        assert_eq!(t.heartbeat_counts()["Ma"], 3);
        let inv = t.inventory();
        assert_eq!(inv[0]["instances"].as_array().unwrap().len(), 3);
        assert_eq!(inv[0]["instances"][0]["revision"], 3);
        // Stop only the annotated one.
        assert_eq!(t.stop("Ma", &ann(&[("app", "x")]), None).unwrap().len(), 1);
        assert_eq!(t.heartbeat_counts()["Ma"], 2);
        assert_eq!(
            t.stop("Ma", &ann(&[("app", "y")]), None),
            Err(TableError::NoMatch("Ma".into()))
        );
        // Stop one, then the rest; the actor disappears.
        assert_eq!(t.stop("Ma", &ann(&[]), Some(1)).unwrap().len(), 1);
        assert_eq!(t.stop("Ma", &ann(&[]), None).unwrap().len(), 1);
        assert!(t.actors.is_empty());
        assert_eq!(t.stop("Ma", &ann(&[]), None), Err(TableError::NotRunning("Ma".into())));
    }

    #[test]
    fn scale_sets_counts_and_concurrency() {
        let mut t = ActorTable::default();
        let c = t.scale(actor("Ma"), ann(&[]), ScaleTarget::Instances(3));
        assert_eq!(
            (c.started.len(), c.stopped.len(), c.started_count, c.stopped_count),
            (3, 0, 3, 0)
        );
        let c = t.scale(actor("Ma"), ann(&[]), ScaleTarget::Instances(1));
        assert_eq!(
            (c.started.len(), c.stopped.len(), c.started_count, c.stopped_count),
            (0, 2, 0, 2)
        );
        let c = t.scale(actor("Mb"), ann(&[]), ScaleTarget::MaxConcurrent(Some(50)));
        assert_eq!((c.started.len(), c.started_count), (1, 50));
        assert_eq!(t.actors["Mb"].concurrency(8), 50);
        t.scale(actor("Mb"), ann(&[]), ScaleTarget::MaxConcurrent(None));
        assert_eq!(t.actors["Mb"].concurrency(8), 8);
        assert_eq!(t.inventory()[1]["instances"][0]["max_concurrent"], u16::MAX);
        let c = t.scale(actor("Mb"), ann(&[]), ScaleTarget::Stop);
        assert_eq!(c.stopped.len(), 1);
        assert!(!t.actors.contains_key("Mb"));
    }

    #[test]
    fn max_concurrency_scales_report_what_wadm_counts() {
        // wadm 0.10 sends `scale` with count = the desired max concurrency and adds up the
        // `count` of actors_started / subtracts that of actors_stopped.
        let mut t = ActorTable::default();
        let c = t.scale(actor("Mw"), ann(&[]), ScaleTarget::MaxConcurrent(Some(2)));
        assert_eq!((c.started.len(), c.started_count, c.stopped_count), (1, 2, 0));
        assert_eq!(t.heartbeat_counts()["Mw"], 2);
        let again = t.scale(actor("Mw"), ann(&[]), ScaleTarget::MaxConcurrent(Some(2)));
        assert_eq!(again, ScaleChange::default(), "a repeated request changes nothing");
        let up = t.scale(actor("Mw"), ann(&[]), ScaleTarget::MaxConcurrent(Some(5)));
        assert_eq!((up.started.len(), up.started_count), (0, 3));
        let down = t.scale(actor("Mw"), ann(&[]), ScaleTarget::MaxConcurrent(Some(1)));
        assert_eq!((down.stopped.len(), down.stopped_count), (0, 4));
        assert_eq!(t.actors["Mw"].reported_count(), 1);
        t.scale(actor("Mw"), ann(&[]), ScaleTarget::MaxConcurrent(Some(3)));
        let stop = t.scale(actor("Mw"), ann(&[]), ScaleTarget::Stop);
        assert_eq!((stop.stopped.len(), stop.stopped_count), (1, 3));
        assert!(t.actors.is_empty());
    }

    #[test]
    fn aliases_cannot_clash() {
        let mut t = ActorTable::default();
        let mut a = actor("Ma");
        a.claims = claims("Ma", Some("team/echo"));
        t.add_instances(a, ann(&[]), 1);
        assert!(t.check_alias(&claims("Mb", Some("team/echo")), None).is_err());
        assert!(t.check_alias(&claims("Ma", Some("team/echo")), None).is_ok());
        assert!(t.check_alias(&claims("Mb", Some("team/other")), Some("Mc")).is_err());
        assert!(t.check_alias(&claims("Mb", None), None).is_ok());
    }

    #[test]
    fn event_claims_have_every_field() {
        let c = event_claims(&claims("Ma", Some("a/b")));
        for field in [
            "call_alias",
            "caps",
            "issuer",
            "tags",
            "name",
            "version",
            "revision",
            "not_before_human",
            "expires_human",
        ] {
            assert!(!c[field].is_null(), "{field}");
        }
        assert_eq!(c["expires_human"], "never");
    }
}
