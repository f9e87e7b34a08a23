//! A `.safetensors` checkpoint through `load_weights` into a small CNN: header (JSON) and data offsets.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "checkpoint_common.rs"]
mod checkpoint_common;

fuzz_target!(|input: &[u8]| checkpoint_common::load(input, "safetensors"));
