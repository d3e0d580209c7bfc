//! The fuzz harness is a workspace of its own (fuzz/, for libFuzzer's build), so it has
//! a lockfile of its own. It must pin every crate it shares with the project's workspace
//! to the same version: the fuzzers then test the code as it ships. To bring it back in
//! step: `cp Cargo.lock fuzz/Cargo.lock && (cd fuzz && cargo metadata >/dev/null)`.

use cmesh_testkit::workspace_root;
use std::collections::{BTreeMap, BTreeSet};

/// Crate name → its versions from crates.io, in a Cargo.lock's text.
fn registry_versions(lock: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.trim().strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_owned())
            })
        };
        let from_registry = field("source ").is_some_and(|s| s.starts_with("registry+"));
        if let (Some(name), Some(version), true) =
            (field("name "), field("version "), from_registry)
        {
            out.entry(name).or_default().insert(version);
        }
    }
    out
}

#[test]
fn registry_versions_are_read_per_package() {
    let lock = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"local\"\nversion = \"0.1.0\"\n";
    let v = registry_versions(lock);
    assert_eq!(v.len(), 1);
    assert_eq!(v["a"], BTreeSet::from(["1.0.0".to_owned()]));
}

#[test]
fn the_fuzz_lockfile_pins_shared_crates_as_the_workspace_does() {
    let read = |p: &str| std::fs::read_to_string(workspace_root().join(p)).unwrap();
    let workspace = registry_versions(&read("Cargo.lock"));
    let fuzz = registry_versions(&read("fuzz/Cargo.lock"));
    let apart: Vec<String> = fuzz
        .iter()
        .filter_map(|(name, versions)| {
            let ours = workspace.get(name)?;
            (!versions.is_subset(ours))
                .then(|| format!("{name}: fuzz {versions:?}, workspace {ours:?}"))
        })
        .collect();
    assert!(
        apart.is_empty(),
        "fuzz/Cargo.lock differs from Cargo.lock (see this file's doc for the fix):\n{}",
        apart.join("\n")
    );
}
