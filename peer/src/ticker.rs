//! A periodic tick that wakes the peer once per period, and says how late it woke.
//!
//! tokio's timer wheel keeps a timer that is 64 ms to 4 s away in a slot 64 ms wide,
//! and wakes the runtime at the start of that slot to move the timer to a finer level,
//! then again at the deadline: two wake-ups per period for the harness's periodic work.
//! On a host of a thousand peers a wake-up is a context switch, and the harness's own
//! wake-ups were most of what an idle peer cost (measured: about 19 wake-ups and 1.4 ms
//! of CPU a second per idle peer, 100 peers on 2 CPUs). A Linux timerfd with absolute
//! expiries wakes the runtime once, at the deadline, and counts the expiries a late
//! reader missed. Where no timerfd can be made, the tick falls back to tokio's timers.
//!
//! Deadlines are `first + k * period` on the monotonic clock, whatever happened before:
//! a late tick does not shift the ones after it, and ticks a reader was too late for are
//! skipped (counted in [`Tick::skipped`]); its lateness is from the first deadline it
//! missed, so a stall shows whole.

use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// One tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// Its number: 0 at `first`, then one more per period.
    pub index: u64,
    /// How long after the first deadline it stands for (the earliest skipped one, if
    /// any) the peer got to it.
    pub late: Duration,
    /// Ticks before this one that passed while the peer was late (not delivered).
    pub skipped: u64,
}

/// Ticks at `first + k * period`.
pub struct Ticker {
    first: Instant,
    period: Duration,
    /// The index of the next tick to deliver.
    next: u64,
    timer: Option<AsyncFd<OwnedFd>>,
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// A timerfd on the monotonic clock (the clock of [`Instant`] on Linux) that expires at
/// `first` and every `period` after.
fn timerfd(first: Instant, period: Duration) -> std::io::Result<AsyncFd<OwnedFd>> {
    let fd = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    // `first` on the monotonic clock: now on it, plus how far `first` is from now.
    let now_mono = clock_gettime(ClockId::Monotonic);
    let now_mono = Duration::new(now_mono.tv_sec as u64, now_mono.tv_nsec as u32);
    let now = Instant::now();
    let at = if first >= now {
        now_mono + (first - now)
    } else {
        now_mono.saturating_sub(now - first)
    };
    // An all-zero expiry would disarm the timer.
    let at = at.max(Duration::from_nanos(1));
    timerfd_settime(
        &fd,
        TimerfdTimerFlags::ABSTIME,
        &Itimerspec {
            it_interval: timespec(period),
            it_value: timespec(at),
        },
    )?;
    // SAFETY: an `OwnedFd` is an open descriptor that this `AsyncFd` owns, and it gives
    // the same raw descriptor for as long as it lives: what `register` asks.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

impl Ticker {
    /// Ticks from `first` (tick 0) every `period` (at least 1 ms).
    pub fn new(first: Instant, period: Duration) -> Ticker {
        let period = period.max(Duration::from_millis(1));
        let timer = match timerfd(first, period) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::debug!("no timerfd ({e}); ticking on tokio's timers");
                None
            }
        };
        Ticker {
            first,
            period,
            next: 0,
            timer,
        }
    }

    /// Whether this ticker wakes on a timerfd (otherwise on tokio's timers).
    pub fn on_timerfd(&self) -> bool {
        self.timer.is_some()
    }

    fn deadline(&self, index: u64) -> Instant {
        let nanos = self.period.as_nanos().saturating_mul(u128::from(index));
        self.first + Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) -> Tick {
        let fired = match &self.timer {
            Some(timer) => match expired(timer).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!("the timerfd failed ({e}); ticking on tokio's timers");
                    self.timer = None;
                    false
                }
            },
            None => false,
        };
        if !fired {
            tokio::time::sleep_until(self.deadline(self.next).into()).await;
        }
        // Whichever woke us, the tick is the latest deadline that has passed: the count
        // the timerfd gave and the clock agree on it (the clock is the one truth here,
        // so a fallback or a failed read cannot make the numbers drift).
        let now = Instant::now();
        let passed = if now < self.first {
            0
        } else {
            ((now - self.first).as_nanos() / self.period.as_nanos()) as u64
        };
        let index = passed.max(self.next);
        // Late from the first deadline not yet delivered: a stall of the peer shows whole.
        let late = now.saturating_duration_since(self.deadline(self.next));
        let tick = Tick {
            index,
            late,
            skipped: index - self.next,
        };
        self.next = index + 1;
        tick
    }
}

/// Waits until `timer` has expired at least once, and takes its count.
async fn expired(timer: &AsyncFd<OwnedFd>) -> std::io::Result<()> {
    loop {
        let mut ready = timer.readable().await?;
        let mut count = [0u8; 8];
        match rustix::io::read(timer.get_ref(), &mut count) {
            Ok(8) => return Ok(()),
            Ok(_) | Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn ticks_on_its_deadlines_and_skips_what_a_blocked_runtime_missed() {
        let period = Duration::from_millis(20);
        let first = Instant::now() + period;
        let mut ticker = Ticker::new(first, period);
        assert!(ticker.on_timerfd(), "Linux has timerfd");
        let t0 = ticker.tick().await;
        assert_eq!((t0.index, t0.skipped), (0, 0));
        assert!(Instant::now() >= first);
        let t1 = ticker.tick().await;
        assert_eq!(t1.index, 1);
        assert!(Instant::now() >= first + period);
        // Hold the runtime for five periods: the next tick is late and skips the rest.
        std::thread::sleep(period * 5);
        let late = ticker.tick().await;
        assert!(late.skipped >= 3, "{late:?}");
        assert_eq!(late.index, 2 + late.skipped);
        assert!(late.late >= period * 4, "the stall shows whole: {late:?}");
        let next = ticker.tick().await;
        assert_eq!(next.index, late.index + 1);
        assert_eq!(next.skipped, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_first_tick_in_the_past_comes_at_once_with_its_lateness() {
        let first = Instant::now() - Duration::from_millis(30);
        let mut ticker = Ticker::new(first, Duration::from_millis(1_000));
        let t = ticker.tick().await;
        assert_eq!(t.index, 0);
        assert!(t.late >= Duration::from_millis(30), "{t:?}");
    }
}
