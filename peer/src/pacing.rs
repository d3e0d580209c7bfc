//! How often the harness's own periodic work runs, paced by the peers that share a host.
//!
//! A peer samples its scheduling lag and usage and checkpoints its report on timers.
//! Each wake-up costs its host a context switch, and a checkpoint a few ms of CPU and an
//! fsync; at a fixed period per peer, a host's cost grows with its peers, and a host of
//! 1000 peers would spend its CPUs measuring itself. So the periods stretch with the
//! peers on the host, keeping what the host's peers do together about constant:
//!
//! - the sampler's tick: about [`LAG_SAMPLES_PER_HOST`] wake-ups a second over the
//!   host's peers, each peer's between [`LAG_MIN`] and one window (it reads the usage
//!   once a window), and a whole number of ticks per window ([`tick_period`]);
//! - checkpoints: the configured interval, or longer so that the host's peers take at
//!   most [`CHECKPOINTS_PER_HOST`] a second.
//!
//! And the peers of a host must not wake together: a thousand wake-ups at one instant
//! queue behind each other, and that queue would read as scheduling lag and as latency.
//! Each peer keeps its own phase in every period ([`spread`]).
//!
//! A peer counts the plan's peers on its own host (all of them where the plan names no
//! hosts: peers as processes on one machine).

use cmesh_common::plan::ExecutionPlan;
use std::time::Duration;

/// Lag samples a second a host's peers take together.
pub const LAG_SAMPLES_PER_HOST: f64 = 400.0;
/// The shortest tick (a host of few peers).
pub const LAG_MIN: Duration = Duration::from_millis(50);
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

/// The sampler's tick for a host of `peers` peers and windows of `window`, and the ticks
/// in a window: about [`LAG_SAMPLES_PER_HOST`] a second over the host's peers, at least
/// [`LAG_MIN`], at most the window, and a whole number of them per window.
pub fn tick_period(peers: usize, window: Duration) -> (Duration, u32) {
    let want = Duration::from_secs_f64(peers as f64 / LAG_SAMPLES_PER_HOST).max(LAG_MIN);
    let per_window = (window.as_secs_f64() / want.as_secs_f64())
        .floor()
        .clamp(1.0, 10_000.0) as u32;
    (window / per_window, per_window)
}

/// Where in a period peer `index` does its periodic work, as a fraction in [0, 1): the
/// golden-ratio sequence, so any run of consecutive indices (the peers of a host, placed
/// interleaved) spreads nearly evenly over the period.
pub fn spread(index: u32) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    (f64::from(index) * GOLDEN).fract()
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
        let second = Duration::from_secs(1);
        assert_eq!(tick_period(10, second), (LAG_MIN, 20));
        assert_eq!(tick_period(100, second), (Duration::from_millis(250), 4));
        assert_eq!(tick_period(150, second), (Duration::from_millis(500), 2));
        assert_eq!(
            tick_period(1000, second),
            (second, 1),
            "once a window at most"
        );
        let wide = Duration::from_secs(4);
        assert_eq!(tick_period(1000, wide), (wide, 1));
        assert_eq!(tick_period(500, wide), (wide / 3, 3));
        let five = Duration::from_secs(5);
        assert_eq!(checkpoint_interval(five, 10), five);
        assert_eq!(checkpoint_interval(five, 200), five);
        assert_eq!(checkpoint_interval(five, 1000), Duration::from_secs(25));
        assert_eq!(checkpoint_interval(Duration::ZERO, 1000), Duration::ZERO);
    }

    #[test]
    fn neighbouring_indices_spread_over_the_period() {
        let mut phases: Vec<f64> = (0..10).map(spread).collect();
        assert!(phases.iter().all(|p| (0.0..1.0).contains(p)));
        phases.sort_by(f64::total_cmp);
        let widest_gap = phases
            .windows(2)
            .map(|w| w[1] - w[0])
            .chain([1.0 - phases[9] + phases[0]])
            .fold(0.0, f64::max);
        assert!(widest_gap < 0.25, "{phases:?}");
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
