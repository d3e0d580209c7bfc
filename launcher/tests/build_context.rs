//! The repository's `.dockerignore` keeps secrets out of a build context, checked with
//! this machine's Docker Engine: a context laid out like a checkout after a run (a run's
//! token, the lab's SSH key, a `*.secret` licence, build output) is built into a `FROM
//! scratch` image that copies all of it, and the image holds only the sources. Needs
//! the Docker Engine; never skips (scratch needs no pull).
// suite: docker ~5s

use cmesh_testkit::{text, workspace_root};
use std::process::Command;

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

#[test]
fn secrets_and_build_output_stay_out_of_the_build_context() {
    let ctx = tempfile::tempdir().unwrap();
    let root = ctx.path();
    std::fs::copy(
        workspace_root().join(".dockerignore"),
        root.join(".dockerignore"),
    )
    .unwrap();
    for (path, body) in [
        ("peer/src/main.rs", "fn main() {}"),
        ("Cargo.toml", "[workspace]"),
        ("runs/r1/token", "run-token"),
        ("runs/r1/manifest.json", "{}"),
        ("keys/lab/id_ed25519", "private key"),
        ("ditto.secret", "licence"),
        ("configs/nested/more.secret", "licence"),
        ("target/debug/peer", "binary"),
        (".git/config", "[core]"),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    std::fs::write(root.join("Dockerfile.test"), "FROM scratch\nCOPY . /ctx/\n").unwrap();
    let tag = format!("cmesh-test-context:{}", std::process::id());
    let out = docker(&[
        "build",
        "-q",
        "-f",
        root.join("Dockerfile.test").to_str().unwrap(),
        "-t",
        &tag,
        root.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "docker build: {}", text(&out.stderr));
    let name = format!("cmesh-test-context-{}", std::process::id());
    let created = docker(&["create", "--name", &name, &tag, "/none"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let listed = Command::new("sh")
        .args(["-c", &format!("docker export {name} | tar -t")])
        .output()
        .unwrap();
    let _ = docker(&["rm", "-f", &name]);
    let _ = docker(&["rmi", "-f", &tag]);
    let files = text(&listed.stdout);
    assert!(
        files.contains("ctx/peer/src/main.rs") && files.contains("ctx/Cargo.toml"),
        "{files}"
    );
    for secret in [
        "token",
        "id_ed25519",
        ".secret",
        "target/",
        ".git/",
        "runs/",
        "keys/",
    ] {
        assert!(
            !files.contains(secret),
            "{secret} is in the build context:\n{files}"
        );
    }
}
