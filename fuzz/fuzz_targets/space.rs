//! Search-space text (our YAML format or Optuna's JSON): parsing never panics, a parsed space survives the
//! round trip through `to_json`, and values snapped onto a distribution are accepted back by it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightshift_search::SearchSpace;

fuzz_target!(|text: &str| {
    let Ok(space) = SearchSpace::parse(text, "fuzz.yaml") else { return };
    let _ = space.grid_size();
    let json = space.to_json().to_string();
    let again = SearchSpace::parse(&json, "round-trip.json").expect("to_json output parses");
    assert_eq!(again, space, "round trip through {json}");
    for (name, dist) in space.iter() {
        for internal in [f64::MIN, -1.0, 0.0, 0.5, 1.0, 1e9, f64::MAX] {
            let value = dist.to_external(dist.snap(internal));
            assert!(dist.to_internal(&value).is_ok(), "{name}: snapped value {value} rejected by {dist}");
        }
    }
});
