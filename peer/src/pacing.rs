//! How often the harness's own periodic work runs, paced by the peers that share a host.
//!
//! A peer samples its scheduling lag and checkpoints its report on timers. Each wake-up
//! costs its host a context switch, and a checkpoint a few ms of CPU and an fsync; at a
//! fixed period per peer, a host's cost grows with its peers, and a host of 1000 peers
//! would spend its CPUs measuring itself. So the periods stretch with the peers on the
//! host, keeping what the host's peers do together about constant:
//!
//! - the lag sampler: about [`LAG_SAMPLES_PER_HOST`] wake-ups a second over the host's
//!   peers, each peer between [`LAG_MIN`] and [`LAG_MAX`];
//! - checkpoints: the configured interval, or longer so that the host's peers take at
//!   most [`CHECKPOINTS_PER_HOST`] a second.
//!
//! A peer counts the plan's peers on its own host (all of them where the plan names no
//! hosts: peers as processes on one machine).

use cmesh_common::plan::ExecutionPlan;
use std::time::Duration;

/// Lag samples a second a host's peers take together.
pub const LAG_SAMPLES_PER_HOST: f64 = 400.0;
/// The shortest lag sampling period (a host of few peers).
pub const LAG_MIN: Duration = Duration::from_millis(50);
/// The longest (a host of many): still several samples in every window.
pub const LAG_MAX: Duration = Duration::from_millis(500);
/// Checkpoints a second a host's peers take together, at most.
pub const CHECKPOINTS_PER_HOST: f64 = 40.0;

/// Peers of `plan` on the host of peer `me` (all peers where the plan names no hosts).
pub fn peers_on_my_host(plan: &ExecutionPlan, me: u32) -> usize {
    let host = plan.peers.get(me as usize).and_then(|p| p.host.as_deref());
    match host {
        None => plan.peers.len(),
        Some(h) => plan
            .peers
            .iter()
            .filter(|p| p.host.as_deref() == Some(h))
            .count(),
    }
    .max(1)
}

/// The lag sampler's period for a host of `peers` peers.
pub fn lag_period(peers: usize) -> Duration {
    Duration::from_secs_f64(peers as f64 / LAG_SAMPLES_PER_HOST).clamp(LAG_MIN, LAG_MAX)
}

/// The checkpoint interval for a host of `peers` peers, `configured` at least (zero
/// stays zero: no checkpoints).
pub fn checkpoint_interval(configured: Duration, peers: usize) -> Duration {
    if configured.is_zero() {
        return configured;
    }
    configured.max(Duration::from_secs_f64(peers as f64 / CHECKPOINTS_PER_HOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crowded_host_samples_and_checkpoints_less_often_per_peer() {
        assert_eq!(lag_period(10), LAG_MIN);
        assert_eq!(lag_period(100), Duration::from_millis(250));
        assert_eq!(lag_period(1000), LAG_MAX);
        let five = Duration::from_secs(5);
        assert_eq!(checkpoint_interval(five, 10), five);
        assert_eq!(checkpoint_interval(five, 200), five);
        assert_eq!(checkpoint_interval(five, 1000), Duration::from_secs(25));
        assert_eq!(checkpoint_interval(Duration::ZERO, 1000), Duration::ZERO);
    }

    #[test]
    fn a_peer_counts_the_peers_on_its_own_host() {
        let spec = cmesh_common::plan::PlanSpec {
            peers: 5,
            ..Default::default()
        };
        let registered = (0..5)
            .map(|i| (format!("p{i}"), format!("10.0.0.{i}:1")))
            .collect();
        let mut plan = ExecutionPlan::make("r", &spec, registered, 0).unwrap();
        assert_eq!(peers_on_my_host(&plan, 0), 5, "no hosts: one machine");
        for (i, p) in plan.peers.iter_mut().enumerate() {
            p.host = Some(if i < 3 { "a" } else { "b" }.into());
        }
        assert_eq!(peers_on_my_host(&plan, 1), 3);
        assert_eq!(peers_on_my_host(&plan, 4), 2);
    }
}
