//! Every input a fuzz target ever failed on, kept under `tests/fuzz_regressions/<target>/`, and
//! every hand-written seed under `fuzz/seeds/<target>/`, replayed through the target's own body
//! (`clerkgate::fuzzing`), so a fixed finding stays fixed on stable without cargo-fuzz.

use std::path::Path;

use clerkgate::fuzzing::TARGETS;

/// Replays every file under `folder/<target>/`; returns how many each target replayed. A
/// folder that names no target is an error, not something silently skipped.
fn replay(folder: &str) -> Vec<(&'static str, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(TARGETS.iter().any(|(t, _)| *t == name), "{folder}/{name} names no fuzz target");
    }
    let mut counts = Vec::new();
    let mut failed = Vec::new();
    for (target, run) in TARGETS {
        let mut replayed = 0;
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            counts.push((target, 0));
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let input = std::fs::read(&file).unwrap();
            // Every input runs, and the failure names each one that panicked.
            if std::panic::catch_unwind(|| run(&input)).is_err() {
                failed.push(format!("{target}/{}", file.file_name().unwrap().to_string_lossy()));
            }
            replayed += 1;
        }
        counts.push((target, replayed));
    }
    assert!(failed.is_empty(), "{folder}: these inputs fail: {failed:?}");
    counts
}

#[test]
fn kept_crash_inputs_pass() {
    let replayed: usize = replay("tests/fuzz_regressions").iter().map(|(_, n)| n).sum();
    assert!(replayed >= 5, "the kept crash inputs were not found (replayed {replayed})");
}

#[test]
fn seeds_pass() {
    for (target, n) in replay("fuzz/seeds") {
        assert!(n > 0, "fuzz/seeds/{target} has no seed");
    }
}
