//! The committed fuzz corpus (services/fuzz/corpus/<target>/), every file through its
//! target, on stable: what the fuzzers found once stays a test, and a target without
//! seeds is a mistake.

use test_harness::paths::workspace_root;

#[test]
fn every_corpus_input_passes_its_target() {
    let corpus = workspace_root().join("services/fuzz/corpus");
    for (name, target) in fuzz_targets::TARGETS {
        let dir = corpus.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {name} at {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "the corpus of {name} is empty");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} fails on {}", input.display());
        }
    }
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let manifest =
        std::fs::read_to_string(workspace_root().join("services/fuzz/Cargo.toml")).unwrap();
    for (name, _) in fuzz_targets::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "services/fuzz/Cargo.toml has no [[bin]] {name}"
        );
        let source = workspace_root().join(format!("services/fuzz/fuzz_targets/{name}.rs"));
        assert!(source.is_file(), "no {}", source.display());
    }
}
