//! No import cycle between the modules of cmesh's crates: each folder's children can be
//! read from the bottom up (testkit::imports says how a cycle is judged).

use cmesh_testkit::imports::Graph;
use cmesh_testkit::workspace_root;

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let mut found = String::new();
    for krate in [
        "common",
        "inputs",
        "analysis",
        "coordinator",
        "peer",
        "launcher",
        "testkit",
    ] {
        let src = workspace_root().join(krate).join("src");
        let graph =
            Graph::of_crate(&src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
        for cycle in graph.cycles() {
            found.push_str(&format!("{krate}: {cycle}"));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles (break each by moving what both sides need below them):\n{found}"
    );
}
