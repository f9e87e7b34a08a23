//! One image file (PNG or JPEG, by the name it is given, as for a file on disk) decoded to CHW bytes and
//! resized, as the image-folder loader does.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nightshift_trainer::data::resize_bilinear;
use nightshift_trainer::decode_image_bytes;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else { return };
    let name = if selector & 1 == 0 { "fuzz.png" } else { "fuzz.jpg" };
    let channels = if selector & 2 == 0 { 1 } else { 3 };
    let Ok((chw, h, w)) = decode_image_bytes(Path::new(name), bytes, channels) else { return };
    assert_eq!(chw.len(), channels * h * w);
    let resized = resize_bilinear(&chw, channels, h, w, 8, 8);
    assert_eq!(resized.len(), channels * 8 * 8);
});
