//! Time to start 200 peer containers: the launcher against a shell script doing what
//! people do today (`docker run -d`, 8 at a time). Target: the launcher at most 0.6x.
//!
//! Both start the same images on an attachable overlay network of the same size, a
//! coordinator first, then the peers with NET_ADMIN, a memory limit and the token as a
//! file. The script mounts the token file; the launcher copies it in before start. The
//! peers idle (one write a minute) so a case's containers barely load the next.
//!
//! cargo run --release -p cmesh-bench --bin spawn [-- --peers 200]

use anyhow::Result;
use clap::Parser;
use cmesh_bench::{image_tags, launcher, machine, sh};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 200)]
    peers: usize,
    /// Parallel `docker run` in the script.
    #[arg(long, default_value_t = 8)]
    script_parallelism: usize,
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

    // The launcher.
    let id = format!("{prefix}-launcher");
    let t = Instant::now();
    let spawned = launcher(
        &runs,
        &[
            "spawn",
            "--peers",
            &n.to_string(),
            "--duration",
            "10m",
            "--write-interval",
            "60000..60000",
            "--run-id",
            &id,
        ],
    );
    let launcher_secs = t.elapsed().as_secs_f64();
    let launcher_running = sh(&format!(
        "docker ps -q --filter label=io.cmesh.run={id} --filter label=io.cmesh.role=peer | wc -l"
    ))?;
    launcher(&runs, &["down", "--force", "--run", &id])?;
    spawned?;

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
        "| launcher spawn | {} | {launcher_secs:.1} s | {:.2} |",
        launcher_running.trim(),
        n as f64 / launcher_secs
    );
    println!();
    let ratio = launcher_secs / script_secs;
    println!("ratio (launcher / script): {ratio:.2}x");
    println!(
        "target: at most 0.6x: {}",
        if ratio <= 0.6 { "met" } else { "NOT met" }
    );
    Ok(())
}
