//! The trial protocol: a child's stdout cut into lines (at fuzzer-chosen chunk boundaries, with a small line
//! cap) and every line classified. Never panics, and the cut does not depend on how the stream is chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightshift_orchestrator::protocol::{LineSplitter, parse_line};

fuzz_target!(|input: &[u8]| {
    let Some((&chunk, stream)) = input.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let cap = 64;
    let lines = |splitter: &mut LineSplitter, chunks: &mut dyn Iterator<Item = &[u8]>| {
        let mut out: Vec<_> = chunks.flat_map(|c| splitter.push(c)).collect();
        out.extend(splitter.finish());
        out.into_iter().map(|l| (l.text, l.truncated)).collect::<Vec<_>>()
    };
    let chunked = lines(&mut LineSplitter::new(cap), &mut stream.chunks(chunk));
    let whole = lines(&mut LineSplitter::new(cap), &mut std::iter::once(stream));
    assert_eq!(chunked, whole);
    for (text, _) in &chunked {
        let _ = parse_line(text);
    }
    // Whole lines too, as the orchestrator sees them below the default cap.
    for line in String::from_utf8_lossy(stream).lines() {
        let _ = parse_line(line);
    }
});
