//! The compile errors of `proxy!`, pinned: every `tests/ui/*/fail/*.rs` must fail to compile
//! with exactly its `.stderr`, every `tests/ui/pass/*.rs` must compile and run.
//!
//! `RAMA_UI_ONLY=word` runs only the cases whose path contains `word`. To accept new output
//! after reading it, run with `TRYBUILD=overwrite` and review the `.stderr` diff.

use std::path::{Path, PathBuf};

#[test]
fn ui() {
    let only = std::env::var("RAMA_UI_ONLY").ok();
    let cases = trybuild::TestCases::new();
    for dir in ["parse/fail", "validate/fail", "typeck/fail", "pass"] {
        for case in cases_in(&Path::new("tests/ui").join(dir)) {
            if only
                .as_deref()
                .is_some_and(|only| !case.to_string_lossy().contains(only))
            {
                continue;
            }
            if dir == "pass" {
                cases.pass(&case);
            } else {
                cases.compile_fail(&case);
            }
        }
    }
}

/// The `.rs` files of `dir`, sorted so the run order is stable.
fn cases_in(dir: &Path) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    cases.sort();
    cases
}
