//! A PyTorch `.pth` checkpoint (zip with a pickled state dict, or the legacy format) through `load_weights`
//! into a small CNN.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "checkpoint_common.rs"]
mod checkpoint_common;

fuzz_target!(|input: &[u8]| checkpoint_common::load(input, "pth"));
