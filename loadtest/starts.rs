//! The `start` scenario (`start-times`): how long one host takes from `la` to the start event
//! for an actor — its first start on that host (compile, or a compile-cache hit with a warm
//! `--cache-dir`), then again after each stop (the in-memory compile cache) — as JSON.
//!
//! Every wait is bounded by the request's `wait`.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::ctl::{start_actor, stop_actor, HostTarget, StartActor};
use crate::error::LoadtestError;
use crate::summary::median;

/// Most `--rounds`.
pub const ROUNDS_MAX: u32 = 100;

#[derive(Debug, Clone, Serialize)]
pub struct StartTimes {
    pub host_id: String,
    pub actor: String,
    pub actor_ref: String,
    /// `la` → start event, the first time on this host, ms.
    pub first_start_ms: f64,
    /// The same after each stop, ms.
    pub start_again_ms: Vec<f64>,
    pub start_again_median_ms: Option<f64>,
    /// `sa` → stop event, ms.
    pub stop_ms: Vec<f64>,
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// Start, then `rounds` times stop and start again.
pub async fn run(request: &StartActor, rounds: u32) -> Result<StartTimes, LoadtestError> {
    if rounds > ROUNDS_MAX {
        return Err(LoadtestError::Arg {
            flag: "--rounds",
            reason: format!("at most {ROUNDS_MAX}"),
        });
    }
    let deadline = Instant::now() + request.wait;
    let (client, host_id) = request.target.connect(deadline).await?;
    let on_host = StartActor {
        target: HostTarget {
            host_id: Some(host_id.clone()),
            ..request.target.clone()
        },
        ..request.clone()
    };
    let first = start_actor(&on_host).await?;
    let mut again = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..rounds {
        let deadline = Instant::now() + request.wait;
        let stopped = stop_actor(
            &client,
            &request.target.ctl_prefix,
            &request.target.lattice,
            &host_id,
            &first.public_key,
            deadline,
        )
        .await?;
        stops.push(ms(stopped));
        again.push(ms(start_actor(&on_host).await?.elapsed));
    }
    Ok(StartTimes {
        host_id,
        actor: first.public_key,
        actor_ref: request.actor_ref.clone(),
        first_start_ms: ms(first.elapsed),
        start_again_median_ms: median(&mut again.clone()),
        start_again_ms: again,
        stop_ms: stops,
    })
}
