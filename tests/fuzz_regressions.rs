//! Every fuzz seed and every input the fuzzers ever crashed on (`fuzz/seeds/<target>/`,
//! `fuzz/regressions/<target>/`) goes through its target's harness (`fuzz/harness.rs`, the code
//! the fuzzers run) in plain `cargo test`: each must end in `Ok` or a clear `Err`, never a panic.
//! The fuzzing itself (`scripts/fuzz.sh`) stays out of CI; docs/reliability.md has its results.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn replay(folder: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(folder);
    let mut n = 0;
    for (target, run) in harness::TARGETS {
        let dir = root.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "fuzz target {target} panics on {}", f.display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_seed_goes_through_its_target() {
    let n = replay("seeds");
    assert!(n >= harness::TARGETS.len(), "only {n} seeds under fuzz/seeds");
}

#[test]
fn every_saved_crash_is_fixed() {
    replay("regressions");
}
