//! Time to start 200 peer containers: the launcher against a shell script doing what
//! people do today (`docker run -d`, 8 at a time). Target: the launcher at most 1.05x.
//! (The engine is the floor: its per-container work sets both figures, so the launcher
//! can only be about as fast as the script; the target is that its checks, placement and
//! pacing cost at most 5%. An earlier target of 0.6x assumed otherwise.)
//!
//! Both start the same images on an attachable overlay network of the same size, a
//! coordinator first, then the peers with NET_ADMIN, a memory limit and the token as a
//! file. The script mounts the token file; the launcher copies it in before start. The
//! peers idle (one write a minute) so a case's containers barely load the next.
//!
//! With `--lab-hosts N`, it also spawns the same peers across N lab hosts (`launcher lab
//! up`: Docker hosts in containers on this machine, reached over SSH), with the images
//! already on every host, and prints that beside the one-host launcher figure.
//!
//! cargo run --release -p cmesh-bench --bin spawn [-- --peers 200]
//! cargo run --release -p cmesh-bench --bin spawn -- --peers 150 --lab-hosts 3

use anyhow::Result;
use clap::Parser;
use cmesh_bench::{image_tags, launcher, machine, sh};
use std::time::Instant;

/// The launcher's spawn against the script's, at most.
const TARGET: f64 = 1.05;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 200)]
    peers: usize,
    /// Parallel `docker run` in the script.
    #[arg(long, default_value_t = 8)]
    script_parallelism: usize,
    /// Also spawn across this many lab hosts (0: skip).
    #[arg(long, default_value_t = 0)]
    lab_hosts: usize,
}

/// Spawns `n` idle peers with `extra` arguments, times it, counts the running peers and
/// removes the run. Returns (seconds, peers running).
fn timed_spawn(runs: &std::path::Path, id: &str, n: usize, extra: &[&str]) -> Result<(f64, usize)> {
    let n_text = n.to_string();
    let mut args = vec![
        "spawn",
        "--peers",
        &n_text,
        "--duration",
        "10m",
        "--write-interval",
        "60000..60000",
        "--run-id",
        id,
    ];
    args.extend_from_slice(extra);
    let t = Instant::now();
    let spawned = launcher(runs, &args);
    let secs = t.elapsed().as_secs_f64();
    let status = cmesh_testkit::launcher(runs, &["status", "--json", "--run", id]);
    launcher(runs, &["down", "--force", "--run", id])?;
    spawned?;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    let running = status["containers"]["peer"]["running"]
        .as_u64()
        .unwrap_or(0) as usize;
    Ok((secs, running))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let work = tempfile::tempdir()?;
    let runs = work.path().join("runs");
    let (peer, coordinator) = image_tags(&runs)?;
    let token = work.path().join("token");
    std::fs::write(&token, "bench-token\n")?;
    let n = args.peers;
    let prefix = format!("bs{}", std::process::id() % 100_000);
    println!("spawn: {n} peer containers; {}", machine());

    // The script.
    let script = format!(
        r#"set -e
docker network create -d overlay --attachable --subnet 10.251.0.0/22 {prefix}-net >/dev/null
docker run -d --name {prefix}-coordinator --network {prefix}-net -v {token}:/cmesh/token:ro {coordinator} \
  --listen 0.0.0.0:7400 --peers {n} --duration 10m --write-interval 60000..60000 --output /report --token-file /cmesh/token >/dev/null
seq -f %04g 1 {n} | xargs -P {par} -I{{}} docker run -d --name {prefix}-peer-{{}} --hostname {prefix}-peer-{{}} \
  --network {prefix}-net --cap-add NET_ADMIN -m 128m --log-opt max-size=10m --log-opt max-file=2 \
  -v {token}:/cmesh/token:ro {peer} --name {prefix}-peer-{{}} --coordinator {prefix}-coordinator:7400 \
  --listen 0.0.0.0:7500 --output /report --token-file /cmesh/token >/dev/null"#,
        token = token.display(),
        par = args.script_parallelism,
    );
    let t = Instant::now();
    let script_result = sh(&script);
    let script_secs = t.elapsed().as_secs_f64();
    let running = sh(&format!(
        "docker ps -q --filter name={prefix}-peer- | wc -l"
    ))?;
    sh(&format!(
        "docker ps -aq --filter name={prefix}- | xargs -r docker rm -f >/dev/null; docker network rm {prefix}-net >/dev/null"
    ))?;
    script_result?;

    // The launcher, on this machine's engine.
    let (launcher_secs, launcher_running) =
        timed_spawn(&runs, &format!("{prefix}-launcher"), n, &[])?;

    // The launcher across lab hosts, images already on every host.
    let lab = if args.lab_hosts > 0 {
        let lab_name = format!("{prefix}-lab");
        let lab_dir = work.path().join("lab");
        let hosts = lab_dir.join("hosts.toml");
        let result = (|| -> Result<(f64, usize)> {
            launcher(
                &runs,
                &[
                    "lab",
                    "up",
                    "--hosts",
                    &args.lab_hosts.to_string(),
                    "--name",
                    &lab_name,
                    "--dir",
                    lab_dir.to_str().unwrap(),
                ],
            )?;
            let h = hosts.to_str().unwrap();
            // Untimed warm-up: joins the swarm and puts the images on every host.
            let warm = args.lab_hosts.to_string();
            launcher(
                &runs,
                &[
                    "run",
                    "--hosts",
                    h,
                    "--peers",
                    &warm,
                    "--duration",
                    "1s",
                    "--image-transport",
                    "load",
                ],
            )?;
            timed_spawn(&runs, &format!("{prefix}-multi"), n, &["--hosts", h])
        })();
        launcher(&runs, &["lab", "down", "--name", &lab_name])?;
        Some(result?)
    } else {
        None
    };

    println!();
    println!("| how | peers running | time | containers/s |");
    println!("|---|---|---|---|");
    println!(
        "| script: docker run -d, {} at a time | {} | {script_secs:.1} s | {:.2} |",
        args.script_parallelism,
        running.trim(),
        n as f64 / script_secs
    );
    println!(
        "| launcher spawn, this machine's engine | {launcher_running} | {launcher_secs:.1} s | {:.2} |",
        n as f64 / launcher_secs
    );
    if let Some((secs, running)) = lab {
        println!(
            "| launcher spawn, {} lab hosts | {running} | {secs:.1} s | {:.2} |",
            args.lab_hosts,
            n as f64 / secs
        );
    }
    println!();
    let ratio = launcher_secs / script_secs;
    println!("ratio (launcher, one host / script): {ratio:.2}x");
    println!(
        "target: at most {TARGET:.2}x (the engine is the floor): {}",
        if ratio <= TARGET { "met" } else { "NOT met" }
    );
    if let Some((secs, _)) = lab {
        println!(
            "ratio ({} lab hosts / script): {:.2}x; ({} lab hosts / one host): {:.2}x",
            args.lab_hosts,
            secs / script_secs,
            args.lab_hosts,
            secs / launcher_secs
        );
    }
    Ok(())
}
