//! Time to collect 200 containers' reports and logs: `launcher extract` against a shell
//! loop of `docker cp` and `docker logs`, what people do today. Target: the launcher at
//! most 0.25x.
//!
//! One run of 200 peers (short, so they exit) is spawned and waited for, untimed. Then the
//! script and the launcher each collect every container's report directory
//! (`/reports/<name>`) and its logs, twice,
//! alternating; the best of each is compared.
//!
//! cargo run --release -p cmesh-bench --bin extract [-- --peers 200]

use anyhow::Result;
use clap::Parser;
use cmesh_bench::{launcher, machine, sh};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 200)]
    peers: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let work = tempfile::tempdir()?;
    let runs = work.path().join("runs");
    let id = format!("be{}", std::process::id() % 100_000);
    println!(
        "extract: {} peer containers + coordinator; {}",
        args.peers,
        machine()
    );
    launcher(&runs, &["images", "build"])?;
    let setup = launcher(
        &runs,
        &[
            "spawn",
            "--peers",
            &args.peers.to_string(),
            "--duration",
            "10s",
            "--graph",
            "random-regular",
            "--run-id",
            &id,
        ],
    )
    .and_then(|_| launcher(&runs, &["wait", "--run", &id]));
    if let Err(e) = setup {
        let _ = launcher(&runs, &["down", "--force", "--run", &id]);
        return Err(e);
    }

    let out = work.path().join("script");
    let script = format!(
        r#"set -e
mkdir -p {out}
for c in $(docker ps -a --filter label=io.cmesh.run={id} --format '{{{{.Names}}}}'); do
  mkdir -p {out}/$c
  docker cp $c:/reports/$c {out}/$c/report
  docker logs -t $c > {out}/$c/logs.txt 2>&1
done"#,
        out = out.display()
    );
    let mut script_times = Vec::new();
    let mut launcher_times = Vec::new();
    let mut result = Ok(());
    for _ in 0..2 {
        let _ = std::fs::remove_dir_all(&out);
        let t = Instant::now();
        if let Err(e) = sh(&script) {
            result = Err(e);
            break;
        }
        script_times.push(t.elapsed().as_secs_f64());

        let _ = std::fs::remove_dir_all(runs.join(&id).join("extract"));
        let t = Instant::now();
        match launcher(&runs, &["extract", "--run", &id]) {
            Ok(log) => {
                launcher_times.push(t.elapsed().as_secs_f64());
                if !log.contains(&format!("{} complete reports", args.peers + 1)) {
                    result = Err(anyhow::anyhow!("not every report was complete:\n{log}"));
                    break;
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let copied = sh(&format!("ls {} | wc -l", out.display())).unwrap_or_default();
    launcher(&runs, &["down", "--force", "--run", &id])?;
    result?;
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let (s, l) = (best(&script_times), best(&launcher_times));
    println!();
    println!("| how | containers | best time | all times |");
    println!("|---|---|---|---|");
    println!(
        "| script: docker cp + docker logs, one by one | {} | {s:.2} s | {script_times:.2?} |",
        copied.trim()
    );
    println!(
        "| launcher extract (gzip, sha256, index) | {} | {l:.2} s | {launcher_times:.2?} |",
        args.peers + 1
    );
    println!();
    println!("ratio (launcher / script): {:.3}x", l / s);
    println!(
        "target: at most 0.25x: {}",
        if l / s <= 0.25 { "met" } else { "NOT met" }
    );
    Ok(())
}
