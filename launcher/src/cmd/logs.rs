//! `launcher logs`: container logs, prefixed with the container name when several are
//! shown; a glob picks peers (`'peer-00[0-4]*'`), `--since` starts later, `-f` follows.
//!
//! Every read is one bounded request per container (`follow=false`, with timestamps),
//! at most [`REQUESTS_PER_HOST`] at a time on each host; following repeats them every
//! [`ROUND`] from the newest line each container has shown ([`Seen`]). So a run of 1000
//! peers never holds 1000 open streams against one engine, and a host that stops
//! answering costs nothing but its own containers: `-f` says so, goes on with the
//! others, and tries the host again every [`RECONNECT`], picking up where it left off
//! when it is back.

use crate::cluster::host::{Connector, LostHost};
use crate::cmd::RunArg;
use crate::engine::{EngineError, LogOptions};
use crate::run::dir::RunDir;
use crate::run::live::LiveRun;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArg,
    /// A peer (peer-0003), a container name, or a glob over either (`*`, `?`,
    /// `[0-4]`; quote it); all containers if left out.
    pub peer: Option<String>,
    /// Keep following the logs.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines from then on: a time ago (10m, 90s) or an RFC 3339 time
    /// (2026-12-07T16:00:00Z).
    #[arg(long, value_parser = since_now)]
    pub since: Option<i64>,
    /// How long to wait for each host to answer; one that has not is said and left
    /// out (with -f, tried again every 10 s).
    #[arg(long, value_parser = cmesh_common::parse::duration, default_value = "8s")]
    pub host_timeout: Duration,
}

pub async fn main(runs: &std::path::Path, args: Args) -> anyhow::Result<i32> {
    let request = Request {
        selector: args.peer,
        follow: args.follow,
        since: args.since,
        host_timeout: Some(args.host_timeout),
    };
    logs(&args.run.open(runs)?, &request).await?;
    Ok(0)
}

/// `--since`: a time ago or an RFC 3339 time, as a Unix second.
fn since_now(text: &str) -> Result<i64, String> {
    parse_since(text, SystemTime::now())
}

/// Log requests in flight on one host at most.
pub const REQUESTS_PER_HOST: usize = 16;
/// How often `-f` asks again.
pub const ROUND: Duration = Duration::from_secs(1);
/// How often `-f` tries a lost host again.
pub const RECONNECT: Duration = Duration::from_secs(10);

/// What to show.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// A peer (`peer-0003`), a container name, or a glob over either; all if none.
    pub selector: Option<String>,
    pub follow: bool,
    /// Only lines from this Unix second on.
    pub since: Option<i64>,
    /// How long a host may take to answer before it is said and left out (`None`: the
    /// engine's own bounds).
    pub host_timeout: Option<Duration>,
}

/// `--since`: a time ago (`10m`, `90s`) or an RFC 3339 time (`2026-12-07T16:00:00Z`),
/// as a Unix second.
pub fn parse_since(text: &str, now: SystemTime) -> Result<i64, String> {
    let text = text.trim();
    let at = match humantime::parse_rfc3339_weak(text) {
        Ok(t) => t,
        Err(_) => {
            let ago = cmesh_common::parse::duration(text).map_err(|_| {
                format!(
                    "`{text}` is neither a time ago (10m, 90s) nor an RFC 3339 time (2026-12-07T16:00:00Z)"
                )
            })?;
            now.checked_sub(ago).unwrap_or(UNIX_EPOCH)
        }
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64))
}

/// True if `s` is a glob rather than a name.
fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The containers `selector` picks from `all` (full names with their host index): all
/// of them for none; a name, without or with the run's prefix; or a glob, matched
/// against both (`cmesh_common::faults::glob_match`, as fault selectors are).
pub fn select(
    all: &[(String, usize)],
    run_id: &str,
    selector: Option<&str>,
) -> Result<Vec<(String, usize)>, String> {
    let Some(sel) = selector else {
        return Ok(all.to_vec());
    };
    let prefix = format!("{run_id}-");
    let short = |full: &str| full.strip_prefix(&prefix).unwrap_or(full).to_owned();
    let picked: Vec<(String, usize)> = all
        .iter()
        .filter(|(full, _)| {
            let s = short(full);
            if is_glob(sel) {
                cmesh_common::faults::glob_match(sel, &s)
                    || cmesh_common::faults::glob_match(sel, full)
            } else {
                sel == s || sel == full
            }
        })
        .cloned()
        .collect();
    if picked.is_empty() {
        return Err(format!(
            "run {run_id} has no container {} `{sel}`; `launcher status --run {run_id}` lists them",
            if is_glob(sel) { "matching" } else { "named" }
        ));
    }
    Ok(picked)
}

/// A line's time: Unix seconds and nanoseconds.
type Stamp = (i64, u32);

/// Splits Docker's `TIME ` prefix off a line (`timestamps=true`).
fn split_stamp(line: &str) -> Option<(Stamp, &str)> {
    let (time, rest) = line.split_once(' ').unwrap_or((line, ""));
    let t = humantime::parse_rfc3339_weak(time).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    Some(((d.as_secs() as i64, d.subsec_nanos()), rest))
}

/// What a follower has shown of each container: the time of its newest line, so asking
/// again from that second shows nothing twice.
#[derive(Debug, Default)]
pub struct Seen {
    newest: HashMap<String, Stamp>,
}

impl Seen {
    /// The second to ask `name`'s logs from: its newest line's, else `since`.
    pub fn since(&self, name: &str, since: Option<i64>) -> Option<i64> {
        self.newest.get(name).map(|&(s, _)| s).or(since)
    }

    /// The lines of `text` (with Docker's timestamps) newer than what was shown of
    /// `name`, without their timestamps; remembers the newest. A line without a time
    /// is shown as it is.
    pub fn fresh(&mut self, name: &str, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in text.lines() {
            match split_stamp(line) {
                Some((stamp, rest)) => {
                    if self.newest.get(name).is_some_and(|&n| stamp <= n) {
                        continue;
                    }
                    self.newest.insert(name.to_owned(), stamp);
                    out.push(rest.to_owned());
                }
                None => out.push(line.to_owned()),
            }
        }
        out
    }
}

/// Reads one container's logs whole (Docker's log streams come one frame a write).
async fn read_logs(
    host: &crate::cluster::host::Host,
    name: &str,
    since: Option<i64>,
) -> Result<String, EngineError> {
    let mut stream = host.engine.logs(
        name,
        LogOptions {
            follow: false,
            timestamps: true,
            since,
        },
    );
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk?));
    }
    Ok(text)
}

/// Prints the logs `request` selects of `run`'s containers.
pub async fn logs(run: &RunDir, request: &Request) -> anyhow::Result<()> {
    logs_with(
        &Connector::Docker,
        run,
        request,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
        crate::tasks::interrupted(),
    )
    .await
}

/// [`logs`] on the hosts `connector` reaches: the lines into `out`, what happens to the
/// hosts into `notes`; `-f` runs until `stop`.
pub async fn logs_with(
    connector: &Connector,
    run: &RunDir,
    request: &Request,
    out: &mut impl Write,
    notes: &mut impl Write,
    stop: impl std::future::Future,
) -> anyhow::Result<()> {
    let mut live = LiveRun::load_within(connector, run, request.host_timeout).await?;
    if !request.follow {
        live.require_all_hosts()?;
    }
    for l in &live.lost {
        writeln!(notes, "logs: {}; its containers are left out", l.reason)?;
    }
    let selected = select(&live.containers(), &run.id, request.selector.as_deref())
        .map_err(cmesh_common::exit::bad_input)?;
    // Host indices move when a lost host comes back; keep names.
    let selected: Vec<(String, String)> = selected
        .into_iter()
        .map(|(name, h)| (name, live.hosts[h].name().to_owned()))
        .collect();
    let prefix = selected.len() > 1;
    let mut seen = Seen::default();
    let mut next_reconnect = tokio::time::Instant::now() + RECONNECT;
    tokio::pin!(stop);
    loop {
        let round_started = tokio::time::Instant::now();
        let items: Vec<(usize, String)> = selected
            .iter()
            .filter(|(_, host)| !live.is_lost(host))
            .filter_map(|(name, host)| Some((live.host_index(host)?, name.clone())))
            .collect();
        let hosts = &live.hosts;
        let seen_ref = &seen;
        let mut results = crate::tasks::bounded_on_hosts(
            items,
            REQUESTS_PER_HOST,
            |h, name: String| async move {
                let since = seen_ref.since(&name, request.since);
                Ok(read_logs(&hosts[h], &name, since).await)
            },
        )
        .await;
        // One container's lines together, containers in name order.
        results.sort_by(|a, b| a.0 .1.cmp(&b.0 .1));
        for ((h, name), r) in results {
            match r {
                Ok(Ok(text)) => {
                    for line in seen.fresh(&name, &text) {
                        if prefix {
                            writeln!(out, "{name} | {line}")?;
                        } else {
                            writeln!(out, "{line}")?;
                        }
                    }
                }
                Ok(Err(e)) if e.is_unreachable() => {
                    let host = live.hosts[h].name().to_owned();
                    if !live.is_lost(&host) {
                        live.mark_lost(h, &e.to_string());
                        writeln!(
                            notes,
                            "logs: host `{host}` is lost ({e}); following the others, and trying it again every {}s",
                            RECONNECT.as_secs()
                        )?;
                    }
                }
                Ok(Err(e)) => tracing::debug!("logs: {name}: {e}"),
                Err(e) => tracing::debug!("logs: {name}: {e:#}"),
            }
        }
        out.flush()?;
        if !request.follow {
            return Ok(());
        }
        if !live.lost.is_empty() && tokio::time::Instant::now() >= next_reconnect {
            next_reconnect = tokio::time::Instant::now() + RECONNECT;
            for back in reconnect(connector, &mut live).await {
                writeln!(notes, "logs: host `{back}` is back; following it again")?;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(round_started + ROUND) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}

/// Tries each lost host again; one that answers replaces its old connection. Returns
/// the hosts that are back.
async fn reconnect(connector: &Connector, live: &mut LiveRun) -> Vec<String> {
    let file = live.manifest.hosts_file();
    let lost: Vec<LostHost> = std::mem::take(&mut live.lost);
    let mut back = Vec::new();
    for l in lost {
        let Some(spec) = file.hosts.iter().find(|h| h.name == l.name) else {
            continue;
        };
        match connector.connect(spec.clone(), &file.ssh).await {
            Ok(host) => {
                match live.host_index(&l.name) {
                    Some(i) => live.hosts[i] = host,
                    None => live.hosts.push(host),
                }
                back.push(l.name);
            }
            Err(_) => live.lost.push(l),
        }
    }
    back
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<(String, usize)> {
        [
            "r1-coordinator",
            "r1-peer-0001",
            "r1-peer-0031",
            "r1-peer-0051",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i % 2))
        .collect()
    }

    #[test]
    fn names_and_globs_pick_containers() {
        let names = |sel| {
            select(&all(), "r1", sel)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(None).len(), 4);
        assert_eq!(names(Some("peer-0031")), ["r1-peer-0031"]);
        assert_eq!(names(Some("r1-coordinator")), ["r1-coordinator"]);
        assert_eq!(
            names(Some("peer-00[0-4]*")),
            ["r1-peer-0001", "r1-peer-0031"]
        );
        assert_eq!(names(Some("r1-peer-*")).len(), 3);
        let none = select(&all(), "r1", Some("peer-9*")).unwrap_err();
        assert!(none.contains("no container matching `peer-9*`"), "{none}");
        let missing = select(&all(), "r1", Some("peer-9999")).unwrap_err();
        assert!(
            missing.contains("no container named `peer-9999`"),
            "{missing}"
        );
    }

    #[test]
    fn since_is_a_time_ago_or_a_time() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_since("10m", now), Ok(1_000_000 - 600));
        assert_eq!(parse_since("2026-12-07T16:00:00Z", now), Ok(1_796_659_200));
        assert!(parse_since("yesterday-ish", now).is_err());
    }

    #[test]
    fn a_follower_shows_each_line_once() {
        let mut seen = Seen::default();
        let first = "2026-12-07T16:00:00.5Z one\n2026-12-07T16:00:01.25Z two\n";
        assert_eq!(seen.fresh("a", first), ["one", "two"]);
        assert_eq!(seen.since("a", None), Some(1_796_659_201));
        assert_eq!(seen.since("b", Some(7)), Some(7));
        // Asked again from that second: the old line comes back, and only the new shows.
        let again = "2026-12-07T16:00:01.25Z two\n2026-12-07T16:00:01.3Z three\n";
        assert_eq!(seen.fresh("a", again), ["three"]);
        // Another container keeps its own place; a line without a time shows as is.
        assert_eq!(seen.fresh("b", first), ["one", "two"]);
        assert_eq!(seen.fresh("b", "no time here"), ["no time here"]);
    }
}
