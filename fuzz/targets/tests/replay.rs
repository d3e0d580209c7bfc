//! Every input kept under `fuzz/seeds/TARGET/` (named examples: the real configs, hosts
//! files, reports, frames) and `fuzz/regressions/TARGET/` (every crash the fuzzers
//! found, kept once fixed), through its target as the fuzzer runs it. A panic here is
//! a bug the fuzzers would find; the generated corpus stays out of git (scripts/fuzz).

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/targets is in fuzz/")
        .to_owned()
}

/// The files under `fuzz/KIND/TARGET/`, sorted.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut count = 0;
    for (target, run) in cmesh_fuzz_targets::TARGETS {
        for path in inputs(kind, target) {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panics on {}", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_seed_replays_through_its_target() {
    for (target, _) in cmesh_fuzz_targets::TARGETS {
        assert!(
            inputs("seeds", target).len() >= 3,
            "fuzz/seeds/{target}/ should hold a few named inputs"
        );
    }
    assert!(replay("seeds") > 0);
}

#[test]
fn every_crash_ever_found_stays_fixed() {
    replay("regressions");
}
