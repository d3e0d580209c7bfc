//! Shared pieces of the cmesh benchmarks: reading a process's CPU time and memory from
//! `/proc`, and printing results.

use std::path::Path;

/// Resident and peak-resident memory of a process, in KiB, from `/proc/PID/status`.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process has used, in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Median of a non-empty list.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// A short description of the machine, for the results table.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cpus} CPUs, {model}")
}

/// Creates `dir` if needed and returns it.
pub fn ensure_dir(dir: &Path) -> &Path {
    std::fs::create_dir_all(dir).expect("create the bench directory");
    dir
}

/// Runs a shell script with bash; fails with its stderr if it fails.
pub fn sh(script: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new("bash")
        .args(["-c", script])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "script failed ({}): {}\n{}",
        out.status,
        script.lines().next().unwrap_or(""),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the launcher with `--runs-dir runs`; fails with its stderr if it fails. Returns
/// its stderr (where it reports progress).
pub fn launcher(runs: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(cmesh_testkit::binary("launcher"))
        .arg("--runs-dir")
        .arg(runs)
        .args(args)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    anyhow::ensure!(out.status.success(), "launcher {args:?} failed:\n{stderr}");
    Ok(stderr)
}

/// Builds the images (untimed) and returns the peer and coordinator tags.
pub fn image_tags(runs: &Path) -> anyhow::Result<(String, String)> {
    let log = launcher(runs, &["images", "build"])?;
    let tag = |kind: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix("images: ").filter(|t| t.starts_with(kind)))
            .and_then(|t| t.split_whitespace().next())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no {kind} image in: {log}"))
    };
    Ok((tag("cmesh-peer:")?, tag("cmesh-coordinator:")?))
}
