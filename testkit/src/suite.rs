//! The whole test suite, run as a schedule of test binaries (`scripts/test`).
//!
//! `cargo test` runs its test binaries one after another. Most of cmesh's time in them
//! is waiting: for a run's planned duration, for containers to start. So the suite runs
//! several binaries at once, within what each says it can share. A test file says it at
//! its top, in a line of its own:
//!
//! ```text
//! // suite: docker
//! ```
//!
//! | class | what it is | runs |
//! |---|---|---|
//! | `light` (no line) | unit tests, simulated engines, processes on loopback | up to `jobs` at once, first |
//! | `docker` | runs on this machine's Docker Engine | up to `docker` lanes at once, beside light ones |
//! | `alone` | measures timing, changes what every run shares (this engine's swarm), or does not yet pass on a loaded machine (its file says why) | last, with nothing else running |
//!
//! A line may add how long the binary takes, `// suite: docker ~200s`: the longest go
//! first, so the lanes end together. Light binaries go first, so a broken build or a
//! failing unit test shows in the first minute; the alone ones go last. Every binary runs to its end (no
//! fail-fast), and each one's output is kept in a log of its own and printed when it
//! fails.
//!
//! [`Schedule`] decides what starts when, with no I/O: it is given what ended and says
//! what to start. [`run`] does the processes.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a test binary may share the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Light,
    Docker,
    Alone,
}

/// One test binary, as cargo built it.
#[derive(Clone, Debug, PartialEq)]
pub struct Binary {
    /// `package/target` (`cmesh-launcher/docker`, `cmesh-peer/lib`).
    pub name: String,
    pub executable: PathBuf,
    pub class: Class,
    /// What its file says it takes, if it says.
    pub about: Option<Duration>,
}

/// What a test file's `// suite:` line says: its class and how long it takes. A file
/// without the line is light; a line that cannot be read is an error naming it.
pub fn class_of(source: &str) -> Result<(Class, Option<Duration>), String> {
    let Some(line) = source
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("// suite:"))
    else {
        return Ok((Class::Light, None));
    };
    let mut words = line.split_whitespace();
    let class = match words.next() {
        Some("light") => Class::Light,
        Some("docker") => Class::Docker,
        Some("alone") => Class::Alone,
        other => {
            return Err(format!(
                "`// suite:{line}`: the class is light, docker or alone, not {other:?}"
            ))
        }
    };
    let about = match words.next() {
        None => None,
        Some(w) => {
            let secs = w
                .strip_prefix('~')
                .and_then(|s| s.strip_suffix('s'))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| format!("`// suite:{line}`: the time is written ~200s, not {w}"))?;
            Some(Duration::from_secs(secs))
        }
    };
    Ok((class, about))
}

/// The test binaries in cargo's `--message-format=json` output, with their classes read
/// from their sources.
pub fn binaries_of(messages: &str) -> Result<Vec<Binary>> {
    let mut out = Vec::new();
    for line in messages.lines() {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if m["reason"] != "compiler-artifact" || m["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = m["executable"].as_str() else {
            continue;
        };
        let target = &m["target"];
        let src = PathBuf::from(target["src_path"].as_str().unwrap_or_default());
        let package = m["package_id"]
            .as_str()
            .and_then(package_name)
            .unwrap_or("?")
            .to_owned();
        let kind = target["kind"][0].as_str().unwrap_or("?");
        let tname = target["name"].as_str().unwrap_or("?");
        let name = match kind {
            "lib" => format!("{package}/lib"),
            "bin" => format!("{package}/bin/{tname}"),
            _ => format!("{package}/{tname}"),
        };
        let (class, about) = match kind {
            "test" => {
                let text = std::fs::read_to_string(&src)
                    .with_context(|| format!("reading {}", src.display()))?;
                class_of(&text).map_err(|e| anyhow::anyhow!("{}: {e}", src.display()))?
            }
            _ => (Class::Light, None),
        };
        out.push(Binary {
            name,
            executable: PathBuf::from(exe),
            class,
            about,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.executable == b.executable);
    Ok(out)
}

/// The package's name in a cargo package id (`path+file:///w/launcher#cmesh-launcher@0.1.0`
/// or the older `cmesh-launcher 0.1.0 (path+file://…)`).
fn package_name(id: &str) -> Option<&str> {
    if let Some((_, tail)) = id.rsplit_once('#') {
        return Some(tail.split('@').next().unwrap_or(tail));
    }
    id.split_whitespace().next()
}

/// How many of each may run at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub jobs: usize,
    pub docker: usize,
}

/// What starts when: light binaries first, up to `jobs` at once, and beside them the
/// Docker ones, longest first, up to `docker` at once; then the alone ones, each by
/// itself once everything else has ended.
#[derive(Debug)]
pub struct Schedule {
    waiting: Vec<usize>,
    running: BTreeMap<usize, Class>,
    limits: Limits,
}

impl Schedule {
    pub fn new(binaries: &[Binary], limits: Limits) -> Schedule {
        let mut waiting: Vec<usize> = (0..binaries.len()).collect();
        let rank = |c: Class| match c {
            Class::Light => 0,
            Class::Docker => 1,
            Class::Alone => 2,
        };
        waiting.sort_by_key(|&i| {
            let b = &binaries[i];
            (rank(b.class), std::cmp::Reverse(b.about), b.name.clone())
        });
        Schedule {
            waiting,
            running: BTreeMap::new(),
            limits: Limits {
                jobs: limits.jobs.max(1),
                docker: limits.docker.max(1),
            },
        }
    }

    /// The binaries (indexes) to start now: in order, each that fits beside what runs.
    pub fn start(&mut self, binaries: &[Binary]) -> Vec<usize> {
        let mut started = Vec::new();
        let mut k = 0;
        while k < self.waiting.len() {
            let count = |c: Class| self.running.values().filter(|&&r| r == c).count();
            if count(Class::Alone) > 0 {
                break;
            }
            let next = self.waiting[k];
            let class = binaries[next].class;
            let fits = match class {
                Class::Light => count(Class::Light) < self.limits.jobs,
                Class::Docker => count(Class::Docker) < self.limits.docker,
                Class::Alone => self.running.is_empty(),
            };
            if fits {
                self.waiting.remove(k);
                self.running.insert(next, class);
                started.push(next);
            } else {
                k += 1;
            }
        }
        started
    }

    /// Binary `i` ended.
    pub fn ended(&mut self, i: usize) {
        self.running.remove(&i);
    }

    pub fn done(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }
}

/// What one binary did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// The process's exit was success.
    pub ok: bool,
}

/// Adds up libtest's `test result:` lines in `output`.
pub fn outcome_of(output: &str, ok: bool) -> Outcome {
    let mut o = Outcome {
        ok,
        ..Outcome::default()
    };
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("test result: ") else {
            continue;
        };
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let n = |w: &[&str]| w.iter().find_map(|x| x.parse::<u64>().ok()).unwrap_or(0);
            if part.contains(" passed") {
                o.passed += n(&words);
            } else if part.contains(" failed") {
                o.failed += n(&words);
            } else if part.contains(" ignored") {
                o.ignored += n(&words);
            }
        }
    }
    o
}

/// Runs `binaries` on the schedule, each with `args` (test filters, `--nocapture`),
/// writing each one's output to `logs/NAME.log`. Returns the outcomes in order, and
/// prints a line as each binary starts and ends, and a table at the end.
pub fn run(
    binaries: &[Binary],
    limits: Limits,
    args: &[String],
    logs: &Path,
) -> Result<Vec<(Outcome, Duration)>> {
    std::fs::create_dir_all(logs).with_context(|| format!("making {}", logs.display()))?;
    let mut schedule = Schedule::new(binaries, limits);
    let mut results: Vec<Option<(Outcome, Duration)>> = vec![None; binaries.len()];
    let (tx, rx) = mpsc::channel::<(usize, Result<(Outcome, Duration, String)>)>();
    let begun = Instant::now();
    let stamp = |t: Instant| {
        let s = t.duration_since(begun).as_secs();
        format!("{:>2}:{:02}", s / 60, s % 60)
    };
    while !schedule.done() {
        for i in schedule.start(binaries) {
            let b = binaries[i].clone();
            let log = logs.join(format!("{}.log", b.name.replace('/', "-")));
            let args = args.to_vec();
            let tx = tx.clone();
            eprintln!(
                "suite {} start {} ({:?})",
                stamp(Instant::now()),
                b.name,
                b.class
            );
            std::thread::spawn(move || {
                // Whatever happens in the thread, the loop hears that the binary ended.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_one(&b, &args, &log)
                }))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the thread running it panicked")));
                let _ = tx.send((i, r));
            });
        }
        let (i, r) = rx.recv().context("a test binary's thread vanished")?;
        schedule.ended(i);
        let b = &binaries[i];
        let (o, took, output) = match r {
            Ok(x) => x,
            Err(e) => (Outcome::default(), Duration::ZERO, format!("{e:#}")),
        };
        let word = if o.ok { "ok" } else { "FAILED" };
        eprintln!(
            "suite {} {word} {} in {:.1}s: {} passed, {} failed",
            stamp(Instant::now()),
            b.name,
            took.as_secs_f64(),
            o.passed,
            o.failed
        );
        if !o.ok {
            eprintln!(
                "---- {} ----\n{output}\n---- end of {} ----",
                b.name, b.name
            );
        }
        results[i] = Some((o, took));
    }
    let results: Vec<(Outcome, Duration)> =
        results.into_iter().map(|r| r.unwrap_or_default()).collect();
    eprintln!("{}", table(binaries, &results, begun.elapsed()));
    Ok(results)
}

fn run_one(b: &Binary, args: &[String], log: &Path) -> Result<(Outcome, Duration, String)> {
    let file = std::fs::File::create(log).with_context(|| format!("making {}", log.display()))?;
    let t = Instant::now();
    let status = Command::new(&b.executable)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("running {}", b.executable.display()))?;
    let took = t.elapsed();
    let output = std::fs::read_to_string(log).unwrap_or_default();
    Ok((outcome_of(&output, status.success()), took, output))
}

/// The binaries' times, slowest first, and the totals.
pub fn table(binaries: &[Binary], results: &[(Outcome, Duration)], wall: Duration) -> String {
    let mut rows: Vec<(&Binary, &(Outcome, Duration))> = binaries.iter().zip(results).collect();
    rows.sort_by_key(|(_, (_, d))| std::cmp::Reverse(*d));
    let mut out = String::from("\nsuite: test binaries, slowest first\n");
    for (b, (o, d)) in &rows {
        out.push_str(&format!(
            "  {:>7.1}s  {:<6}  {:<7} {:>4} passed {:>2} failed  {}\n",
            d.as_secs_f64(),
            if o.ok { "ok" } else { "FAILED" },
            format!("{:?}", b.class).to_lowercase(),
            o.passed,
            o.failed,
            b.name
        ));
    }
    let passed: u64 = results.iter().map(|(o, _)| o.passed).sum();
    let failed: u64 = results.iter().map(|(o, _)| o.failed).sum();
    let binaries_failed = results.iter().filter(|(o, _)| !o.ok).count();
    out.push_str(&format!(
        "suite: {passed} passed, {failed} failed, {binaries_failed} of {} binaries failed, in {:.0}s\n",
        results.len(),
        wall.as_secs_f64()
    ));
    out
}

/// Runs the suite from cargo's messages in `messages_file`; returns whether it passed.
pub fn main_with(
    messages_file: &Path,
    limits: Limits,
    args: &[String],
    logs: &Path,
) -> Result<bool> {
    let messages = std::fs::read_to_string(messages_file)
        .with_context(|| format!("reading {}", messages_file.display()))?;
    let binaries = binaries_of(&messages)?;
    if binaries.is_empty() {
        bail!(
            "{} names no test binary: build them with `cargo test --no-run --message-format=json`",
            messages_file.display()
        );
    }
    let results = run(&binaries, limits, args, logs)?;
    Ok(results.iter().all(|(o, _)| o.ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(name: &str, class: Class, secs: Option<u64>) -> Binary {
        Binary {
            name: name.into(),
            executable: PathBuf::from(name),
            class,
            about: secs.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_test_file_says_its_class_and_time() {
        assert_eq!(class_of("//! doc\nuse x;"), Ok((Class::Light, None)));
        assert_eq!(
            class_of("//! doc\n// suite: docker ~210s\n"),
            Ok((Class::Docker, Some(Duration::from_secs(210))))
        );
        assert_eq!(class_of("// suite: alone"), Ok((Class::Alone, None)));
        assert!(class_of("// suite: heavy")
            .unwrap_err()
            .contains("light, docker or alone"));
        assert!(class_of("// suite: docker 3m")
            .unwrap_err()
            .contains("~200s"));
    }

    #[test]
    fn light_and_docker_lanes_first_longest_first_then_alone_by_itself() {
        let b = vec![
            bin("d-short", Class::Docker, Some(10)),
            bin("a", Class::Alone, None),
            bin("l1", Class::Light, None),
            bin("d-long", Class::Docker, Some(200)),
            bin("l2", Class::Light, None),
            bin("d-mid", Class::Docker, Some(100)),
            bin("l3", Class::Light, None),
        ];
        let mut s = Schedule::new(&b, Limits { jobs: 2, docker: 2 });
        let names = |v: Vec<usize>| v.into_iter().map(|i| b[i].name.clone()).collect::<Vec<_>>();
        assert_eq!(names(s.start(&b)), ["l1", "l2", "d-long", "d-mid"]);
        s.ended(2);
        assert_eq!(names(s.start(&b)), ["l3"]);
        s.ended(3);
        assert_eq!(names(s.start(&b)), ["d-short"]);
        for i in [4, 6, 5] {
            s.ended(i);
            assert!(s.start(&b).is_empty(), "the alone one waits for all");
        }
        s.ended(0);
        assert_eq!(names(s.start(&b)), ["a"]);
        s.ended(1);
        assert!(s.done());
    }

    #[test]
    fn nothing_starts_beside_an_alone_binary() {
        let b = vec![bin("a", Class::Alone, None), bin("l", Class::Light, None)];
        let mut s = Schedule::new(&b, Limits { jobs: 2, docker: 2 });
        assert_eq!(s.start(&b), vec![1]);
        s.ended(1);
        assert_eq!(s.start(&b), vec![0]);
        assert!(s.start(&b).is_empty());
    }

    #[test]
    fn libtest_results_add_up() {
        let out = "running 3 tests\ntest a ... ok\n\ntest result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n";
        assert_eq!(
            outcome_of(out, false),
            Outcome {
                passed: 4,
                failed: 2,
                ignored: 1,
                ok: false
            }
        );
    }

    #[test]
    fn cargo_messages_name_the_test_binaries_and_their_packages() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("docker.rs");
        std::fs::write(&src, "// suite: docker ~200s\n").unwrap();
        let msg = |kind: &str, name: &str, test: bool, src: &Path| {
            serde_json::json!({
                "reason": "compiler-artifact",
                "package_id": "path+file:///w/launcher#cmesh-launcher@0.1.0",
                "target": {"kind": [kind], "name": name, "src_path": src},
                "profile": {"test": test},
                "executable": format!("/t/{name}-abc"),
            })
            .to_string()
        };
        let text = [
            msg("test", "docker", true, &src),
            msg(
                "lib",
                "cmesh_launcher",
                true,
                Path::new("/w/launcher/src/lib.rs"),
            ),
            msg(
                "bin",
                "launcher",
                false,
                Path::new("/w/launcher/src/main.rs"),
            ),
            "{\"reason\":\"build-finished\",\"success\":true}".to_owned(),
        ]
        .join("\n");
        let b = binaries_of(&text).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].name, "cmesh-launcher/docker");
        assert_eq!(b[0].class, Class::Docker);
        assert_eq!(b[0].about, Some(Duration::from_secs(200)));
        assert_eq!(b[1].name, "cmesh-launcher/lib");
        assert_eq!(b[1].class, Class::Light);
        assert_eq!(
            package_name("cmesh-peer 0.1.0 (path+file:///w/peer)"),
            Some("cmesh-peer")
        );
    }
}
