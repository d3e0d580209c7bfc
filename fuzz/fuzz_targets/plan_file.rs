//! A plan file with `[groups]` and `[[fault]]`, as `spawn --config` reads it: parsed,
//! turned into a plan spec (every bound checked), and for a small plan, the execution
//! plan and its faults' targets made, as the coordinator would.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = cmesh_launcher::plan_file::parse(text, "fuzz.toml") else {
        return;
    };
    let Ok(spec) = file.to_spec("fuzz.toml") else {
        return;
    };
    if spec.peers > 64 {
        return;
    }
    let peers: Vec<(String, String)> = (0..spec.peers)
        .map(|i| (format!("p-{i:04}"), format!("127.0.0.1:{}", 9000 + i)))
        .collect();
    if let Ok(plan) = cmesh_common::plan::ExecutionPlan::make("fuzz", &spec, peers, 1_000) {
        let names: Vec<String> = plan.peers.iter().map(|p| p.name.clone()).collect();
        if let Ok((groups, faults)) = cmesh_common::faults::check(&spec.groups, &spec.faults) {
            for f in &faults {
                let _ = f.targets(&names, &groups, spec.seed);
            }
        }
        let _ = plan.mobility_epochs();
    }
});
