//! Every fuzz seed and every input the fuzzers ever crashed on (`fuzz/seeds/<target>/`,
//! `fuzz/regressions/<target>/`) goes through its target's harness (`fuzz/harness.rs`, the code
//! the fuzzers run) in plain `cargo test`: each must end in `Ok` or a clear `Err`, never a panic.
//! The fuzzing itself (`scripts/fuzz.sh`) stays out of CI; docs/reliability.md has its results.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

/// Runs every file of `fuzz/<folder>/<target>/` through its target; returns the count per target.
/// A folder that names no target is an error (a misspelt name would silently test nothing).
fn replay(folder: &str) -> Vec<(&'static str, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(folder);
    for e in std::fs::read_dir(&root).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(harness::TARGETS.iter().any(|(t, _)| *t == name), "fuzz/{folder}/{name} is not a fuzz target");
    }
    let mut counts = Vec::new();
    for (target, run) in harness::TARGETS {
        let mut files: Vec<_> = match std::fs::read_dir(root.join(target)) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
            Err(_) => vec![],
        };
        files.sort();
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "fuzz target {target} panics on {}", f.display());
        }
        counts.push((*target, files.len()));
    }
    counts
}

#[test]
fn every_seed_goes_through_its_target() {
    for (target, n) in replay("seeds") {
        assert!(n >= 1, "fuzz/seeds/{target} holds no seed");
    }
}

#[test]
fn every_saved_crash_is_fixed() {
    let n: usize = replay("regressions").iter().map(|(_, n)| n).sum();
    assert!(n >= 10, "only {n} inputs under fuzz/regressions");
}
