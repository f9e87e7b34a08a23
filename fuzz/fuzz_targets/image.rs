//! One image file (PNG or JPEG, by the name it is given, as for a file on disk) decoded to CHW bytes and
//! prepared to 8×8, as the image-folder loader and `predict` do (squash or resize-and-centre-crop).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nightshift_trainer::{Normalization, Preprocessing, Resize, decode_image_bytes, preprocess::DecodedImage};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else { return };
    let name = if selector & 1 == 0 { "fuzz.png" } else { "fuzz.jpg" };
    let channels = if selector & 2 == 0 { 1 } else { 3 };
    let resize = if selector & 4 == 0 { Resize::Squash } else { Resize::center_crop() };
    let Ok((chw, h, w)) = decode_image_bytes(Path::new(name), bytes, channels) else { return };
    assert_eq!(chw.len(), channels * h * w);
    let prep = Preprocessing { channels, size: [8, 8], resize, normalization: Normalization::centered(channels) };
    let image = DecodedImage { channels, height: h, width: w, pixels: chw };
    // A picture too elongated for the centre crop is an error, never a panic.
    if let Ok(prepared) = prep.prepare(&image, Path::new(name)) {
        assert_eq!(prepared.len(), channels * 8 * 8);
    }
});
