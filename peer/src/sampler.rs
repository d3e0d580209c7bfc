//! The harness's periodic sampling, at one wake-up per tick.
//!
//! One task ticks ([`crate::ticker`]) from the plan's start and, on each tick:
//!
//! - records how late the tick came: the scheduling lag ([`crate::lag`]);
//! - once a window's worth of ticks, reads the usage counters and adds the window
//!   ([`crate::usage`]): the host's CPU, this peer's, its throttling, its interfaces.
//!
//! The tick comes from [`crate::pacing::tick_period`]: 50 ms on a host of few peers, up
//! to a window on a crowded one, a whole number per window. Each peer ticks at its own
//! phase in the period ([`crate::pacing::spread`]), so a host's peers do not wake at the
//! same instant (a thousand peers reading /proc at once queue behind each other, and the
//! queue reads as lag and as latency). So a peer's usage windows begin at the plan's
//! start plus its phase, less than a tick after the plan's windows begin. Both series are
//! by sampling time, so they may run past the writing into the catch-up; the usage series
//! stops at twice the run's windows, as every arrival-time series does.

use crate::lag::Lag;
use crate::ticker::Ticker;
use crate::usage::{Reading, Usage};
use cmesh_common::report::{LatencyReport, WindowLatency};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// When a peer samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// The plan's start, where its windows begin.
    pub start_unix_ms: u64,
    pub window_ms: u64,
    /// Usage windows taken at most.
    pub max_windows: usize,
    pub tick: Duration,
    pub ticks_per_window: u32,
    /// This peer's phase in the tick, less than `tick`.
    pub phase: Duration,
}

impl Schedule {
    /// The schedule of peer `index`, one of `peers_on_host` on its host, for windows of
    /// `window_ms` from `start_unix_ms`; `max_windows` as for the arrival series.
    pub fn new(
        start_unix_ms: u64,
        window_ms: u64,
        max_windows: usize,
        peers_on_host: usize,
        index: u32,
    ) -> Schedule {
        let (tick, ticks_per_window) =
            crate::pacing::tick_period(peers_on_host, Duration::from_millis(window_ms.max(1)));
        Schedule {
            start_unix_ms,
            window_ms,
            max_windows,
            tick,
            ticks_per_window,
            phase: tick.mul_f64(crate::pacing::spread(index)),
        }
    }
}

/// The running sampler.
pub struct Sampler {
    lag: Arc<Mutex<Lag>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Usage>>,
}

impl Sampler {
    /// Starts sampling on `schedule`'s ticks.
    pub fn start(schedule: Schedule) -> Sampler {
        let lag = Arc::new(Mutex::new(Lag::new(
            schedule.start_unix_ms,
            schedule.window_ms,
            schedule.max_windows,
        )));
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn({
            let lag = lag.clone();
            async move {
                let first = crate::time::unix_ms_to_instant(schedule.start_unix_ms).into_std()
                    + schedule.phase;
                let mut ticker = Ticker::new(first, schedule.tick);
                let per_window = u64::from(schedule.ticks_per_window);
                // The reading the next window starts from, and that window's number.
                let mut before: Option<(Reading, u64)> = None;
                let mut usage = Usage::default();
                loop {
                    let tick = tokio::select! {
                        t = ticker.tick() => t,
                        _ = &mut stopped => break,
                    };
                    lag.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(cmesh_common::unix_micros(), tick.late.as_micros() as u64);
                    let window = tick.index / per_window;
                    match &before {
                        None => {
                            let now = Reading::now();
                            usage = Usage::new(&now);
                            before = Some((now, window));
                        }
                        Some((reading, from)) if window > *from => {
                            let room = schedule.max_windows.saturating_sub(usage.windows());
                            let covered = ((window - from) as usize).min(room);
                            if covered == 0 {
                                continue;
                            }
                            let now = Reading::now();
                            usage.push(covered, reading, &now);
                            before = Some((now, window));
                        }
                        Some(_) => {}
                    }
                }
                usage
            }
        });
        Sampler {
            lag,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The scheduling lag sampled so far: over the run, and per window.
    pub fn lag(&self) -> (LatencyReport, Vec<WindowLatency>) {
        self.lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot()
    }

    /// A handle on the lag for a checkpoint taken while the sampler runs.
    pub fn lag_handle(&self) -> Arc<Mutex<Lag>> {
        self.lag.clone()
    }

    /// Stops sampling (the window in progress is left out) and returns the usage series.
    pub async fn finish(mut self) -> Usage {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => Usage::default(),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crowded_host_ticks_once_a_window_at_its_own_phase() {
        let few = Schedule::new(0, 1_000, 10, 10, 0);
        assert_eq!(
            (few.tick, few.ticks_per_window),
            (Duration::from_millis(50), 20)
        );
        assert_eq!(few.phase, Duration::ZERO);
        let crowded = Schedule::new(0, 1_000, 10, 1_000, 7);
        assert_eq!(
            (crowded.tick, crowded.ticks_per_window),
            (Duration::from_secs(1), 1)
        );
        assert!(crowded.phase > Duration::ZERO && crowded.phase < crowded.tick);
        assert_ne!(
            crowded.phase,
            Schedule::new(0, 1_000, 10, 1_000, 8).phase,
            "neighbours wake apart"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn samples_lag_every_tick_and_usage_every_window_and_a_stall_shows() {
        let start = cmesh_common::unix_millis();
        // 50 ms ticks, 4 per 200 ms window.
        let schedule = Schedule {
            start_unix_ms: start,
            window_ms: 200,
            max_windows: 50,
            tick: Duration::from_millis(50),
            ticks_per_window: 4,
            phase: Duration::ZERO,
        };
        let sampler = Sampler::start(schedule);
        tokio::time::sleep(Duration::from_millis(450)).await;
        // Hold the only runtime thread for 300 ms, busy: the next tick is that late. It
        // spins until it has also had 60 ms of CPU, so the figure below holds on a
        // machine busy with other work too.
        tokio::task::spawn(async {
            let spin = std::time::Instant::now();
            let cpu_us = || crate::cpu::Reading::now().process_us;
            let from = cpu_us();
            let short_of_cpu = || {
                from.zip(cpu_us())
                    .is_some_and(|(a, b)| b.saturating_sub(a) < 60_000)
            };
            while spin.elapsed() < Duration::from_millis(300)
                || (short_of_cpu() && spin.elapsed() < Duration::from_secs(10))
            {
                std::hint::black_box(spin.elapsed());
            }
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (all, windows) = sampler.lag();
        assert!(all.summary.count >= 6, "{all:?}");
        assert!(all.summary.max_us >= 200_000, "{all:?}");
        assert!(windows.iter().any(|w| w.max_us >= 200_000), "{windows:?}");
        let usage = sampler.finish().await;
        let cpu = usage.cpu.expect("/proc/stat is readable here");
        // About 1 s: 4 or 5 windows, the stalled ones included (split evenly).
        let n = cpu.host_busy_permille.len();
        assert!((3..=6).contains(&n), "{cpu:?}");
        assert_eq!(cpu.process_us.len(), n);
        assert!(
            cpu.process_us.iter().sum::<u64>() >= 50_000,
            "the stall spent CPU: {cpu:?}"
        );
    }
}
