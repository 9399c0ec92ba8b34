//! JSON as Python's `json` module writes it: diffusers saves configs with `json.dumps`, which
//! writes non-finite floats as the bare words `Infinity`, `-Infinity` and `NaN` (a
//! `DPMSolverMultistepScheduler` config always has `"lambda_min_clipped": -Infinity`). Strict JSON
//! readers refuse them; here each becomes the string of the same word.

/// Parses `text`, reading `Infinity`, `-Infinity` and `NaN` outside strings as those strings.
pub fn parse(text: &str) -> serde_json::Result<serde_json::Value> {
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|w| rest.starts_with(w)) {
            out.push('"');
            out.push_str(word);
            out.push('"');
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    serde_json::from_str(&out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// What Python's `json.dumps({"a": float("-inf"), "b": [float("inf"), float("nan")], ...})` writes.
    #[test]
    fn reads_python_non_finite_floats_outside_strings_only() {
        let text = r#"{"a": -Infinity, "b": [Infinity, NaN], "c": "NaN -Infinity \" Infinity", "d": -1.5e-3}"#;
        let value = super::parse(text).unwrap();
        assert_eq!(value, json!({"a": "-Infinity", "b": ["Infinity", "NaN"], "c": "NaN -Infinity \" Infinity", "d": -1.5e-3}));
        assert!(super::parse("{\"a\": Inf}").is_err());
    }
}
