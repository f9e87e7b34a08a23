//! An IDX image file and its label file (each gzip'd or raw), loaded into a dataset and put through what a
//! trial does next: class counts, a split, conversion to the model's input size.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nightshift_trainer::load_idx_bytes;

fuzz_target!(|input: &[u8]| {
    // The first two bytes give the length of the image file (big-endian); the rest is the label file.
    let Some((len, rest)) = input.split_first_chunk::<2>() else { return };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (images, labels) = rest.split_at(len);
    let Ok(data) = load_idx_bytes(Path::new("fuzz-images-idx3-ubyte"), images, Path::new("fuzz-labels-idx1-ubyte"), labels)
    else {
        return;
    };
    assert_eq!(data.class_counts().iter().sum::<usize>(), data.len());
    for i in 0..data.len() {
        assert_eq!(data.image(i).len(), data.image_len());
    }
    let _ = data.stratified_split(0.2, 0);
    let _ = data.converted(3, 8, 8);
});
