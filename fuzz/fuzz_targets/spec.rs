//! A whole sweep spec (YAML): parsing and validation never panic, the device slots it asks for can be set up,
//! and what is stored for `resume` parses back to the same spec.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nightshift_orchestrator::{NoBuiltinTrainer, Spec};
use nightshift_orchestrator::pool::slots_for;

fuzz_target!(|text: &str| {
    let Ok(spec) = Spec::parse(text, "fuzz.yaml", Path::new("/nonexistent-fuzz-base")) else { return };
    // What `run` does next with the devices (2 cores and GPUs 0 and 1 discovered, for `auto`).
    let slots = slots_for(&spec.devices, 2, &[0, 1]);
    assert!(!slots.is_empty());
    let stored = spec.to_stored();
    let again = Spec::from_stored(&stored, &NoBuiltinTrainer).expect("a stored spec parses again");
    assert_eq!(format!("{again:?}"), format!("{spec:?}"));
});
