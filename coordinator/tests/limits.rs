//! The coordinator as a process under slow and hostile clients (docs/security.md): 200
//! simulated peers keep beating while 100 slow connections (50 trickling a request head,
//! 50 a body) and a pathological chaos pattern run; no peer is lost, every slow
//! connection is closed by the coordinator, the peers' token cannot post chaos, and a
//! body over the cap is refused.

use cmesh_testkit::Mesh;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PEERS: usize = 200;
const SLOW: usize = 100;
const ADMIN: &str = "the-admin-token";

/// Names that a backtracking glob would take exponential time on: 40 a's.
fn peer(i: usize) -> String {
    format!("{}-{i:03}", "a".repeat(40))
}

/// One slow client: connects, then sends `head` and `body` a byte every 200 ms, and
/// never finishes (the body is shorter than its Content-Length). Returns once the
/// coordinator has closed the connection.
async fn slow_client(addr: String, slow_body: bool) {
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = if slow_body {
        "POST /v1/heartbeat HTTP/1.1\r\nHost: c\r\nx-cmesh-token: test-token\r\n\
         Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    } else {
        "POST /v1/heartbeat HTTP/1.1\r\nHost: c\r\nx-cmesh-token: test-token\r\n"
    };
    if slow_body {
        stream.write_all(head.as_bytes()).await.unwrap();
    }
    let trickle = if slow_body { "{\"peer\":\"" } else { head };
    let mut bytes = trickle.bytes().cycle();
    let mut buf = [0u8; 512];
    loop {
        let byte = [bytes.next().unwrap()];
        if stream.write_all(&byte).await.is_err() {
            return;
        }
        // The coordinator closes the connection (or answers 408 and closes): done.
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
        {
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

#[test]
fn slow_and_hostile_clients_do_not_stall_the_peers_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let digest = dir.path().join("admin.sha256");
    std::fs::write(&digest, cmesh_common::token::digest(ADMIN)).unwrap();
    let mesh = Mesh::coordinator_only(
        dir.path(),
        PEERS,
        &[
            "--heartbeat",
            "1s",
            "--duration",
            "5m",
            "--start-delay",
            "2s",
            "--admin-digest-file",
            digest.to_str().unwrap(),
        ],
    )
    .unwrap();
    let base = format!("http://{}", mesh.coordinator_addr);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let status = |token: &'static str| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                http.get(format!("{base}/status"))
                    .header("x-cmesh-token", token)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        // The peers register, each with its own client (its own connections), and beat
        // every second; a peer is lost after 3 missed beats.
        let stop = Arc::new(AtomicBool::new(false));
        let beats = Arc::new(AtomicU64::new(0));
        let mut peers = Vec::new();
        for i in 0..PEERS {
            let (base, stop, beats) = (base.clone(), stop.clone(), beats.clone());
            peers.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let name = peer(i);
                let registered = http
                    .post(format!("{base}/v1/register"))
                    .header("x-cmesh-token", "test-token")
                    .json(&json!({ "peer": name, "addr": format!("127.0.0.1:{}", 10_000 + i) }))
                    .send()
                    .await
                    .unwrap();
                assert!(registered.status().is_success(), "{registered:?}");
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let beat = http
                        .post(format!("{base}/v1/heartbeat"))
                        .header("x-cmesh-token", "test-token")
                        .json(&json!({ "peer": name, "state": "running" }))
                        .send()
                        .await;
                    if beat.is_ok_and(|b| b.status().is_success()) {
                        beats.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        let planned = async {
            loop {
                if status("test-token").await["phase"] == "planned" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), planned)
            .await
            .expect("the run is planned once the 200 peers are in");

        // 100 slow connections at once.
        let slow: Vec<_> = (0..SLOW)
            .map(|i| tokio::spawn(slow_client(mesh.coordinator_addr.clone(), i % 2 == 1)))
            .collect();

        // A pattern a backtracking glob would never finish, again and again, with the
        // admin token: each is refused (it picks no peer), quickly.
        let pattern = format!("name:{}b", "a*".repeat(40));
        let chaos = json!({ "fault": { "at": "0s", "action": "kill", "peers": pattern } });
        for _ in 0..20 {
            let r = http
                .post(format!("{base}/v1/chaos"))
                .header("x-cmesh-token", ADMIN)
                .json(&chaos)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{:?}", r.text().await);
        }
        // The peers' token cannot post chaos at all.
        let everyone = json!({ "fault": { "at": "0s", "action": "kill", "peers": "all" } });
        let r = http
            .post(format!("{base}/v1/chaos"))
            .header("x-cmesh-token", "test-token")
            .json(&everyone)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // A body over the cap is refused.
        let r = http
            .post(format!("{base}/v1/heartbeat"))
            .header("x-cmesh-token", "test-token")
            .header("content-type", "application/json")
            .body(vec![b' '; 200_000])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);

        // The coordinator closes every slow connection (a head within 10 s, a request
        // within the long-poll plus 10 s); meanwhile no peer is lost.
        let mut slow_closed = futures_join(slow);
        let closed = loop {
            let s = status("test-token").await;
            let lost = s["counts"]["lost"].as_u64().unwrap_or(0);
            assert_eq!(lost, 0, "peers lost under the slow clients: {s}");
            tokio::select! {
                _ = &mut slow_closed => break true,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if beats.load(Ordering::Relaxed) > 200 * PEERS as u64 {
                break false;
            }
        };
        assert!(
            closed,
            "the slow connections were still open after 200 beats a peer"
        );
        let s = status(ADMIN).await;
        assert_eq!(s["counts"]["lost"].as_u64().unwrap_or(0), 0, "{s}");
        let running = s["counts"]["running"].as_u64().unwrap_or(0);
        assert_eq!(running, PEERS as u64, "{s}");
        stop.store(true, Ordering::Relaxed);
        for p in peers {
            p.await.unwrap();
        }
    });
    // Nothing that happened took the run's chaos log: no action was recorded.
    let timeline =
        std::fs::read_to_string(dir.path().join("coordinator/timeline.jsonl")).unwrap_or_default();
    assert!(!timeline.contains("chaos#"), "{timeline}");
    drop(mesh);
}

/// All of `tasks`, as one future.
fn futures_join(
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        for t in tasks {
            t.await.unwrap();
        }
    })
}
