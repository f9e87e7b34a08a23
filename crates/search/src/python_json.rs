//! JSON as Python's `json` module writes it: NaN and infinities as the bare tokens `NaN`,
//! `Infinity` and `-Infinity`, which strict JSON (and serde_json) refuses. Trial programs print such
//! lines (the trial protocol) and Optuna writes them (its journal file), so both readers quote the
//! tokens first and read them back as numbers here.

use serde_json::Value;

/// Quotes the bare `NaN`, `Infinity` and `-Infinity` tokens outside strings, so serde_json parses
/// the text; [`number`] turns them back into floats.
pub fn quote_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push('"');
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A number, or a non-finite one quoted by [`quote_non_finite`] (also `nan`, `inf`, `-inf`).
pub fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_tokens_are_quoted_outside_strings_only() {
        let text = r#"{"a": NaN, "b": [-Infinity, Infinity], "s": "NaN \"Infinity\""}"#;
        let quoted = quote_non_finite(text);
        assert_eq!(quoted, r#"{"a": "NaN", "b": ["-Infinity", "Infinity"], "s": "NaN \"Infinity\""}"#);
        let value: Value = serde_json::from_str(&quoted).unwrap();
        assert!(number(&value["a"]).unwrap().is_nan());
        assert_eq!(number(&value["b"][0]), Some(f64::NEG_INFINITY));
        assert_eq!(number(&value["s"]), None);
    }
}
