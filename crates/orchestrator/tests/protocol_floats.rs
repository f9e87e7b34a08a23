//! A value a trial prints is the value the study stores, to the last bit.
//!
//! serde_json's default float parser is not correctly rounded: about 9 % of 17-digit numbers came
//! back one ulp off, so the samplers saw slightly different values than the trials reported (and
//! a study driven through the CLI, whose `tell` parses with Rust's exact parser, drifted from the
//! same study driven through the protocol). The workspace enables serde_json's `float_roundtrip`.

use nightshift_orchestrator::protocol::{Message, parse_line};

#[test]
fn reported_values_keep_every_bit() {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..10_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let value = (state >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((state % 9) as i32 - 4);
        let line = format!("{{\"report\": {{\"step\": 1, \"value\": {value:?}}}}}");
        let Ok(Message::Report(report)) = parse_line(&line) else { panic!("{line} did not parse as a report") };
        assert_eq!(report.value.map(f64::to_bits), Some(value.to_bits()), "{line} parsed as {:?}", report.value);
        let line = format!("{{\"result\": {{\"value\": {value:?}}}}}");
        let Ok(Message::Result(result)) = parse_line(&line) else { panic!("{line} did not parse as a result") };
        assert_eq!(result.value.map(f64::to_bits), Some(value.to_bits()), "{line} parsed as {:?}", result.value);
    }
}
