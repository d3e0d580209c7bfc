//! `launcher watch`: the run while it goes, from the coordinator's live figures
//! (`GET /v1/live`, `cmesh_common::live`), refreshed every second.
//!
//! On a terminal it redraws one screen: the phase and the time, the run and each host
//! (peers running, linked and lost; records a second; coverage so far; latency p50 and
//! p99 and the scheduling lag of the last window; the live verdict), the faults acting
//! now and the warnings. Elsewhere it prints one line a second; `--json` prints each
//! report as one line of JSON. It ends when the run does. A coordinator that does not
//! answer for a while (its host is lost) is said, and asked again.
//!
//! [`LiveClient`] is how `wait --abort-on` reads the same figures.

use crate::cmd::RunArg;
use crate::run::dir::RunDir;
use crate::run::live::LiveRun;
use cmesh_common::lifecycle::{PeerState, RunPhase};
use cmesh_common::live::{LiveFigures, LiveReport, LiveVerdict};
use std::io::{IsTerminal, Write};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArg,
    /// One JSON object a second instead of a screen or lines.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for each host to answer at the start; one that has not is
    /// shown as such.
    #[arg(long, value_parser = cmesh_common::parse::duration, default_value = "8s")]
    pub host_timeout: Duration,
}

pub async fn main(runs: &std::path::Path, args: Args) -> anyhow::Result<i32> {
    watch(
        &args.run.open(runs)?,
        Output::pick(args.json),
        args.host_timeout,
    )
    .await
}

/// How often the view refreshes.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Reads the live figures from the run's coordinator.
pub struct LiveClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl LiveClient {
    /// The running coordinator of `live`'s run.
    pub async fn connect(live: &LiveRun, run: &RunDir) -> anyhow::Result<LiveClient> {
        let manager = crate::cluster::host::manager(&live.hosts)?;
        let (base, token) =
            crate::run::coordinator::coordinator_api(manager, run, &live.manifest.coordinator.name)
                .await?;
        Ok(LiveClient {
            base,
            token,
            http: reqwest::Client::new(),
        })
    }

    /// The figures now.
    pub async fn live(&self) -> anyhow::Result<LiveReport> {
        Ok(self
            .http
            .get(format!("{}/v1/live", self.base))
            .header(cmesh_common::token::HEADER, &self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// How `watch` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Redraw one screen.
    Screen,
    /// One line an interval.
    Lines,
    /// One JSON object an interval.
    Json,
}

impl Output {
    /// Json if asked, a screen on a terminal, else lines.
    pub fn pick(json: bool) -> Output {
        if json {
            Output::Json
        } else if std::io::stdout().is_terminal() {
            Output::Screen
        } else {
            Output::Lines
        }
    }
}

/// Watches the run until it ends. Returns 0 when the run finished, 1 if the coordinator
/// was never reached.
pub async fn watch(run: &RunDir, output: Output, patience: Duration) -> anyhow::Result<i32> {
    let mut live = LiveRun::load_within(
        &crate::cluster::host::Connector::Docker,
        run,
        Some(patience),
    )
    .await?;
    let mut client = None;
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = false;
    let mut unreachable_since: Option<tokio::time::Instant> = None;
    let interrupt = crate::tasks::interrupted();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut interrupt => return Ok(0),
        }
        if client.is_none() {
            match LiveClient::connect(&live, run).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    // Ended (or never started), as the engine says: nothing more to watch.
                    // (A lost manager is not an ended run: the view goes on.)
                    live.refresh().await;
                    let coordinator = &live.manifest.coordinator;
                    if !live.is_lost(&coordinator.host) && live.is_done(&coordinator.name) {
                        eprintln!(
                            "watch: run {}: the coordinator has exited; `launcher extract --run {}` collects the results",
                            run.id, run.id
                        );
                        return Ok(if seen { 0 } else { 1 });
                    }
                    show_unreachable(output, &run.id, &format!("{e:#}"), &mut unreachable_since);
                    continue;
                }
            }
        }
        let Some(c) = &client else { continue };
        match c.live().await {
            Ok(report) => {
                seen = true;
                unreachable_since = None;
                show(output, &report)?;
                if matches!(report.phase, Some(RunPhase::Finished | RunPhase::Aborted)) {
                    return Ok(0);
                }
            }
            Err(e) => {
                // Ask the engine again next time: the coordinator may have ended, or its
                // port moved with a restart.
                client = None;
                show_unreachable(output, &run.id, &format!("{e:#}"), &mut unreachable_since);
            }
        }
    }
}

fn show_unreachable(
    output: Output,
    run: &str,
    why: &str,
    since: &mut Option<tokio::time::Instant>,
) {
    let since = *since.get_or_insert_with(tokio::time::Instant::now);
    let line = format!(
        "run {run}: the coordinator does not answer (for {}s): {why}; asking again",
        since.elapsed().as_secs()
    );
    match output {
        Output::Json => eprintln!("{line}"),
        Output::Lines => println!("{line}"),
        Output::Screen => {
            println!("\x1b[H\x1b[2J{line}");
            let _ = std::io::stdout().flush();
        }
    }
}

fn show(output: Output, report: &LiveReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string(report)?)?,
        Output::Lines => writeln!(out, "{}", line(report))?,
        // Home, clear, draw: one screen a second.
        Output::Screen => write!(out, "\x1b[H\x1b[2J{}", screen(report))?,
    }
    out.flush()?;
    Ok(())
}

fn secs(ms: u64) -> String {
    format!("{}s", ms / 1000)
}

fn latency(us: Option<u64>) -> String {
    match us {
        None => "-".into(),
        Some(us) if us < 10_000 => format!("{:.1}ms", us as f64 / 1000.0),
        Some(us) => format!("{}ms", us / 1000),
    }
}

fn coverage(c: Option<f64>) -> String {
    c.map_or("-".into(), |c| format!("{:.1}%", c * 100.0))
}

fn count(f: &LiveFigures, s: PeerState) -> usize {
    f.peers.get(&s).copied().unwrap_or(0)
}

/// The phase and time: `planned 12s of 30s (18s left)`.
fn clock(r: &LiveReport) -> String {
    let elapsed = r.elapsed_ms();
    match (r.phase, elapsed, r.start_at_unix_ms) {
        (Some(RunPhase::Finished), Some(e), _) => format!("finished after {}", secs(e)),
        (Some(RunPhase::Finished), None, _) => "finished".into(),
        (Some(RunPhase::Aborted), ..) => "aborted (too few peers came)".into(),
        (Some(RunPhase::Planned), Some(e), _) if e > r.duration_ms => format!(
            "writing done {} ago, the peers catch up and report",
            secs(e - r.duration_ms)
        ),
        (Some(RunPhase::Planned), Some(e), _) => format!(
            "running {} of {} ({} left)",
            secs(e),
            secs(r.duration_ms),
            secs(r.duration_ms - e)
        ),
        (Some(RunPhase::Planned), None, Some(start)) => format!(
            "planned, starting in {}",
            secs(start.saturating_sub(r.at_unix_ms))
        ),
        (Some(RunPhase::Registering) | None, ..) | (Some(RunPhase::Planned), None, None) => {
            "registering".into()
        }
    }
}

fn faults(r: &LiveReport) -> String {
    r.faults
        .iter()
        .map(|f| {
            format!(
                "{} {} on {} peers{}",
                f.id,
                f.action,
                f.peers,
                f.until_ms
                    .map(|u| format!(" until {}", secs(u)))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One line: the run's figures, the faults and the warnings.
pub fn line(r: &LiveReport) -> String {
    let f = &r.run;
    let mut out = format!(
        "{} | {}: {}/{} running, {} linked, {} lost | {:.1} rec/s | coverage {} | p50 {} p99 {} | {}",
        r.run_id,
        clock(r),
        count(f, PeerState::Running),
        r.expected_peers,
        f.linked,
        count(f, PeerState::Lost),
        f.received_per_s,
        coverage(f.coverage),
        latency(f.p50_us),
        latency(f.p99_us),
        f.verdict.as_str()
    );
    if !r.faults.is_empty() {
        out.push_str(&format!(" | faults: {}", faults(r)));
    }
    for w in &r.warnings {
        out.push_str(&format!(" | ! {w}"));
    }
    out
}

/// The screen: the run and each host in a table, the faults, the warnings.
pub fn screen(r: &LiveReport) -> String {
    let mut out = format!("cmesh watch: run {} · {}\n\n", r.run_id, clock(r));
    let mut table = crate::table::new([
        "", "peers", "running", "linked", "lost", "rec/s", "coverage", "p50", "p99", "lag p99",
        "verdict",
    ]);
    let row = |name: &str, f: &LiveFigures| {
        let peers: usize = f.peers.values().sum();
        vec![
            name.to_owned(),
            peers.to_string(),
            count(f, PeerState::Running).to_string(),
            f.linked.to_string(),
            count(f, PeerState::Lost).to_string(),
            format!("{:.1}", f.received_per_s),
            coverage(f.coverage),
            latency(f.p50_us),
            latency(f.p99_us),
            latency(f.lag_p99_us),
            match f.verdict {
                LiveVerdict::Saturated => "SATURATED".to_owned(),
                v => v.as_str().to_owned(),
            },
        ]
    };
    table.add_row(row("run", &r.run));
    for (host, f) in &r.hosts {
        table.add_row(row(&format!("host {host}"), f));
    }
    out.push_str(&table.to_string());
    out.push_str("\n\n");
    if r.faults.is_empty() {
        out.push_str("faults now: none\n");
    } else {
        out.push_str(&format!("faults now: {}\n", faults(r)));
    }
    if r.warnings.is_empty() {
        out.push_str("warnings: none\n");
    } else {
        out.push_str("warnings:\n");
        for w in &r.warnings {
            out.push_str(&format!("  ! {w}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmesh_common::live::{ActiveFault, LiveWarning};

    fn report() -> LiveReport {
        let mut run = LiveFigures {
            linked: 9,
            received_per_s: 45.25,
            coverage: Some(0.723),
            p50_us: Some(1_200),
            p99_us: Some(34_000),
            lag_p99_us: Some(900),
            verdict: LiveVerdict::Clean,
            ..Default::default()
        };
        run.peers.insert(PeerState::Running, 9);
        run.peers.insert(PeerState::Lost, 1);
        let mut lab = run.clone();
        lab.verdict = LiveVerdict::Saturated;
        LiveReport {
            run_id: "r1".into(),
            phase: Some(RunPhase::Planned),
            at_unix_ms: 12_500,
            start_at_unix_ms: Some(500),
            duration_ms: 30_000,
            expected_peers: 10,
            hosts: [("lab-1".to_owned(), lab)].into(),
            run,
            faults: vec![ActiveFault {
                id: "plan#1".into(),
                action: "partition".into(),
                until_ms: Some(18_000),
                peers: 10,
            }],
            warnings: vec![LiveWarning::HostLost {
                host: "lab-2".into(),
            }],
        }
    }

    #[test]
    fn the_screen_shows_time_hosts_faults_and_warnings() {
        let s = screen(&report());
        assert!(s.contains("running 12s of 30s (18s left)"), "{s}");
        assert!(s.contains("host lab-1"), "{s}");
        assert!(s.contains("SATURATED"), "{s}");
        assert!(s.contains("72.3%"), "{s}");
        assert!(
            s.contains("faults now: plan#1 partition on 10 peers until 18s"),
            "{s}"
        );
        assert!(s.contains("! host lab-2 is lost"), "{s}");
    }

    #[test]
    fn a_line_says_the_same_in_one_line() {
        let l = line(&report());
        assert!(!l.contains('\n'));
        assert!(l.contains("9/10 running, 9 linked, 1 lost"), "{l}");
        assert!(l.contains("45.2 rec/s"), "{l}");
        assert!(l.contains("p50 1.2ms p99 34ms"), "{l}");
        assert!(l.contains("faults: plan#1 partition"), "{l}");
        let mut quiet = report();
        quiet.faults.clear();
        quiet.warnings.clear();
        quiet.start_at_unix_ms = Some(20_000);
        let l = line(&quiet);
        assert!(l.contains("planned, starting in 7s"), "{l}");
        let mut ended = report();
        ended.phase = Some(RunPhase::Finished);
        ended.at_unix_ms = 40_500;
        assert!(
            line(&ended).contains("finished after 40s"),
            "{}",
            line(&ended)
        );
        assert!(!l.contains("faults"), "{l}");
    }
}
