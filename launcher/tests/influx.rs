//! `launcher export --influx` against a real InfluxDB 1.x server (Debian's `influxdb`,
//! which scripts/prerequisites installs), started here on loopback ports of its own with
//! its data in a scratch directory: a short run with a fault is exported, and every
//! measurement holds the points the summary says it should. Needs the Docker Engine for
//! the run; never skips.
// suite: docker ~30s

use cmesh_testkit::{
    free_port, images_built, launcher, run_plan_json, text, wait_until, workspace_root,
};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An influxd on loopback, killed when dropped.
struct Influx {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(url: &str) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_owned()))
}

fn start_influx() -> Influx {
    let dir = tempfile::tempdir().unwrap();
    let (http, rpc) = (free_port(), free_port());
    let d = dir.path().display();
    let conf = dir.path().join("influxdb.conf");
    std::fs::write(
        &conf,
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n"
        ),
    )
    .unwrap();
    let child = Command::new("influxd")
        .arg("-config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("influxd.log")).unwrap())
        .spawn()
        .expect("influxd runs (scripts/prerequisites installs Debian's influxdb)");
    let url = format!("http://127.0.0.1:{http}");
    let influx = Influx {
        child,
        url,
        _dir: dir,
    };
    wait_until(
        "influxd to answer /ping",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || get(&format!("{}/ping", influx.url)).filter(|(c, _)| *c == 204),
    )
    .unwrap();
    influx
}

/// The server's answer to InfluxQL `q` on database `db`.
fn query(influx: &Influx, db: &str, q: &str) -> Value {
    let out = Command::new("curl")
        .args(["-s", "-G", &format!("{}/query", influx.url)])
        .args(["--data-urlencode", &format!("db={db}")])
        .args(["--data-urlencode", &format!("q={q}")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// `SELECT count(FIELD) FROM MEASUREMENT WHERE run = 'RUN'`, from the server.
fn count(influx: &Influx, db: &str, measurement: &str, field: &str, run: &str) -> u64 {
    let q = format!("SELECT count({field}) FROM {measurement} WHERE run = '{run}'");
    let v = query(influx, db, &q);
    v["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or_else(|| panic!("{q}: {v}"))
}

/// Every query of configs/grafana/cmesh.json, as Grafana would send it for `run`,
/// answers with data.
fn dashboard_queries_answer(influx: &Influx, db: &str, run: &str) {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("configs/grafana/cmesh.json")).unwrap(),
    )
    .unwrap();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["query"].as_str().unwrap().to_owned())
        .collect();
    queries.push(
        dashboard["annotations"]["list"][0]["query"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert!(queries.len() >= 7);
    for q in queries {
        let q = q.replace("$run", run).replace("$timeFilter", "time > 0");
        let v = query(influx, db, &q);
        assert!(
            v["results"][0]["series"][0]["values"]
                .as_array()
                .is_some_and(|rows| !rows.is_empty()),
            "{q}: {v}"
        );
    }
}

#[test]
fn a_run_exported_to_influxdb_reads_back_point_for_point() {
    images_built();
    let influx = start_influx();
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let plan = scratch.path().join("delay.toml");
    let source =
        std::fs::read_to_string(workspace_root().join("configs/delay-200ms.toml")).unwrap();
    std::fs::write(
        &plan,
        source.replace("duration = \"15s\"", "duration = \"6s\""),
    )
    .unwrap();
    let id = format!("t{}-influx", std::process::id() % 100_000);
    let (summary, _) = run_plan_json(&runs, &plan, &id);
    let lp = runs.join(&id).join("analysis/metrics.lp");
    assert!(lp.exists(), "launcher run writes metrics.lp");

    let out = launcher(
        &runs,
        &[
            "export",
            "--run",
            &id,
            "--influx",
            &influx.url,
            "--db",
            "cmesh_test",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    let peers = summary["per_peer"].as_array().unwrap().len() as u64;
    let windows = summary["time_series"].as_array().unwrap().len() as u64;
    let faults = summary["faults"].as_array().unwrap().len() as u64;
    assert!(peers == 6 && windows > 0 && faults == 1, "{summary}");
    assert_eq!(sent["points"], 1 + peers + windows + faults, "{sent}");
    for (measurement, field, expected) in [
        ("cmesh_run", "coverage", 1),
        ("cmesh_peer", "p50_us", peers),
        ("cmesh_window", "count", windows),
        ("cmesh_fault", "peers", faults),
    ] {
        assert_eq!(
            count(&influx, "cmesh_test", measurement, field, &id),
            expected,
            "{measurement}"
        );
    }
    // Tagged by host and peer: one series per peer.
    let first = summary["per_peer"][0]["peer"].as_str().unwrap();
    let q = format!("SELECT p50_us FROM cmesh_peer WHERE peer = '{first}' AND host = 'local'");
    let v = query(&influx, "cmesh_test", &q);
    assert_eq!(
        v["results"][0]["series"][0]["values"][0][1], summary["per_peer"][0]["p50_us"],
        "{v}"
    );

    dashboard_queries_answer(&influx, "cmesh_test", &id);

    // A server that is not there is a failure, not bad input; a URL that is not one is.
    let out = launcher(
        &runs,
        &[
            "export",
            "--run",
            &id,
            "--influx",
            &format!("http://127.0.0.1:{}", free_port()),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("did not answer"));
    let out = launcher(&runs, &["export", "--run", &id, "--influx", "influx.lab"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
