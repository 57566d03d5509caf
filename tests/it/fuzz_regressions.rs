//! Every input a fuzz target ever failed on, kept under `tests/fuzz_regressions/<target>/`, and
//! every hand-written seed under `fuzz/seeds/<target>/`, replayed through the target's own body
//! (`clerkgate::fuzzing`), so a fixed finding stays fixed on stable without cargo-fuzz.

use std::path::Path;

use clerkgate::fuzzing::TARGETS;

fn replay(folder: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut replayed = 0;
    let mut failed = Vec::new();
    for (target, run) in TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else { continue };
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
    }
    assert!(failed.is_empty(), "{folder}: these inputs fail: {failed:?}");
    replayed
}

#[test]
fn kept_crash_inputs_pass() {
    replay("tests/fuzz_regressions");
}

#[test]
fn seeds_pass() {
    assert!(replay("fuzz/seeds") >= TARGETS.len(), "every target has seeds");
}
