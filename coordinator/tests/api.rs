//! The coordinator as a process: bad input exits 2 and creates nothing; a wrong token
//! gets 401 and changes nothing; too few peers before the start timeout aborts the run.

use cmesh_testkit::{assert_bad_input, binary, token_file, wait_child, wait_until, BadInputFiles};
use std::process::{Command, Stdio};
use std::time::Duration;

fn coordinator_args<'a>(token: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--output",
        out,
        "--token-file",
        token,
    ];
    args.extend(extra);
    args
}

#[test]
fn bad_input_exits_2_with_a_clear_message_and_creates_nothing() {
    let files = BadInputFiles::new();
    let (t, e, o) = (&*files.token, &*files.empty_token, &*files.out);
    let cases = vec![
        (
            coordinator_args("/nonexistent/token", o, &["--peers", "3"]),
            "/nonexistent/token",
        ),
        (coordinator_args(e, o, &["--peers", "3"]), "is empty"),
        (
            coordinator_args(t, o, &["--peers", "0"]),
            "--peers must be at least 1",
        ),
        (
            coordinator_args(t, o, &["--peers", "3", "--graph", "star"]),
            "unknown graph `star`",
        ),
        (
            coordinator_args(t, o, &["--peers", "3", "--degree", "3"]),
            "--degree < --peers",
        ),
        (
            coordinator_args(t, o, &["--peers", "3", "--duration", "soon"]),
            "not a duration",
        ),
    ];
    assert_bad_input("coordinator", &cases, o);
    let malformed = vec![(
        vec![
            "--listen",
            "127.0.0.1",
            "--peers",
            "1",
            "--output",
            o,
            "--token-file",
            t,
        ],
        "IP:PORT",
    )];
    assert_bad_input("coordinator", &malformed, o);
}

#[test]
fn wrong_token_gets_401_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "right-token");
    let out = dir.path().join("out");
    let mut child = Command::new(binary("coordinator"))
        .args(["--listen", "127.0.0.1:0", "--peers", "2", "--linger", "0s"])
        .arg("--output")
        .arg(&out)
        .arg("--token-file")
        .arg(&token)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = wait_until(
        "coordinator.addr",
        Duration::from_secs(20),
        Duration::from_millis(20),
        || std::fs::read_to_string(out.join("coordinator.addr")).ok(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://{addr}");
        let register = serde_json::json!({"peer": "p1", "addr": "127.0.0.1:9"});
        for token in [None, Some("wrong-token"), Some("right-toke")] {
            let mut req = http.post(format!("{base}/v1/register")).json(&register);
            if let Some(t) = token {
                req = req.header("x-cmesh-token", t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "token {token:?}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("token"));
        }
        let r = http
            .get(format!("{base}/status"))
            .header("x-cmesh-token", "nope")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let status: serde_json::Value = http
            .get(format!("{base}/status"))
            .header("x-cmesh-token", "right-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            status["peers"].as_array().unwrap().len(),
            0,
            "nothing registered"
        );
        assert_eq!(status["phase"], "registering");
        assert_eq!(status["counts"]["init"], 0);
        // The clock, over UDP on the same port: the answer echoes the nonce, and both
        // of its readings fall between our send and our receive.
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.connect(&addr).await.unwrap();
        udp.send(b"not a clock request").await.unwrap();
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64
        };
        let before = now();
        udp.send(&cmesh_common::clock::request(42)).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), udp.recv(&mut buf))
            .await
            .expect("a clock answer (and none for the junk before it)")
            .unwrap();
        let after = now();
        let (nonce, t2, t3) = cmesh_common::clock::parse_reply(&buf[..n]).unwrap();
        assert_eq!(nonce, 42);
        assert!(
            before <= t2 && t2 <= t3 && t3 <= after,
            "{before} {t2} {t3} {after}"
        );
        // The right token works, and /healthz needs none.
        let r = http
            .post(format!("{base}/v1/register"))
            .header("x-cmesh-token", "right-token")
            .json(&register)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn too_few_peers_before_the_start_timeout_aborts_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mesh_dir = dir.path();
    // 3 expected, at least 2 needed, only 1 comes.
    let mut mesh = cmesh_testkit::Mesh::coordinator_only(
        mesh_dir,
        3,
        &[
            "--min-peers",
            "2",
            "--start-timeout",
            "2s",
            "--linger",
            "0s",
        ],
    )
    .unwrap();
    let mut peer = mesh.spawn_peer("peer-0001", &[]).unwrap();
    let peer_code = wait_child(&mut peer, Duration::from_secs(60))
        .unwrap()
        .code();
    let coordinator_code = wait_child(&mut mesh.coordinator, Duration::from_secs(60))
        .unwrap()
        .code();
    assert_eq!(peer_code, Some(1));
    assert_eq!(coordinator_code, Some(1));
    let report = mesh.report("peer-0001").unwrap();
    assert_eq!(report["outcome"], "failed");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("aborted") && error.contains("only 1 of 3"),
        "{error}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(mesh_dir.join("coordinator/coordinator.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["phase"], "aborted");
    assert_eq!(summary["all_done"], false);
}
