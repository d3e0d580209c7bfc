//! `launcher spawn --backend`: a backend the peer image does not have is refused before
//! anything is created, with how to build the right image. On this machine's Docker
//! Engine (the workspace's own peer image); never skips.
// suite: docker ~15s

use cmesh_testkit::{assert_bad_input, binary, images_built, text};
use std::process::Command;

/// The workspace's peer image, as `launcher images build` names it.
fn workspace_peer_image() -> String {
    let out = Command::new(binary("launcher"))
        .args(["images", "build"])
        .output()
        .expect("run the launcher");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("images: ")?.split_whitespace().next())
        .filter(|t| t.starts_with("cmesh-peer:"))
        .map(str::to_owned)
        .or_else(|| {
            stderr
                .split_whitespace()
                .find(|w| w.starts_with("cmesh-peer:"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no peer image in:\n{stderr}"))
}

#[test]
fn a_backend_the_peer_image_lacks_is_refused_before_anything_starts() {
    images_built();
    let peer_image = workspace_peer_image();
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let secret = scratch.path().join("ditto.secret");
    std::fs::write(
        &secret,
        "license_token = not-a-real-token\ndatabase_id = db\n",
    )
    .unwrap();
    let empty = scratch.path().join("empty.secret");
    std::fs::write(&empty, "").unwrap();
    let (runs, secret, empty) = (
        runs.to_str().unwrap(),
        secret.to_str().unwrap(),
        empty.to_str().unwrap(),
    );
    let spawn = |extra: &[&str]| -> Vec<String> {
        [
            "--runs-dir",
            runs,
            "spawn",
            "--peers",
            "2",
            "--backend",
            "ditto",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            spawn(&["--secret-file", secret, "--peer-image", &peer_image]),
            "was built without the `ditto` backend",
        ),
        (
            spawn(&["--secret-file", secret, "--peer-image", &peer_image]),
            "docker build -f images/peer-ditto/Dockerfile",
        ),
        (
            spawn(&["--secret-file", secret]),
            "has only the mesh backend",
        ),
        (spawn(&[]), "--backend ditto needs --secret-file"),
        (
            spawn(&["--secret-file", empty, "--peer-image", &peer_image]),
            "is empty",
        ),
    ];
    let cases: Vec<(Vec<&str>, &str)> = cases
        .iter()
        .map(|(args, want)| (args.iter().map(String::as_str).collect(), *want))
        .collect();
    // Each exits 2 with the message, and no run directory (or anything else) is made.
    assert_bad_input("launcher", &cases, runs);
}
