//! The CLIP tokenizer against transformers' CLIPTokenizer on SD1.5's vocabulary
//! (tests/fixtures/make_tokenizer.py).

use mam_e::tokenizer::{ClipTokenizer, MAX_LENGTH};
use serde_json::Value;

const VOCAB: &str = include_str!("fixtures/tokenizer/vocab.json");
const MERGES: &str = include_str!("fixtures/tokenizer/merges.txt");

#[test]
fn matches_transformers_clip_tokenizer() {
    let tokenizer = ClipTokenizer::from_vocab_merges(VOCAB, MERGES).unwrap();
    let cases: Vec<Value> = serde_json::from_str(include_str!("fixtures/tokenizer_cases.json")).unwrap();
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = tokenizer.encode(prompt).unwrap();
        assert_eq!(got.ids.len(), MAX_LENGTH);
        assert_eq!(got.ids, want, "prompt {prompt:?}");
        let untruncated = case["untruncated_len"].as_u64().unwrap() as usize;
        assert_eq!(got.truncated_tokens, untruncated.saturating_sub(MAX_LENGTH), "prompt {prompt:?}");
    }
}

#[test]
fn broken_tokenizer_files_are_named() {
    let err = ClipTokenizer::from_vocab_merges("[1, 2]", MERGES).err().unwrap().to_string();
    assert!(err.contains("vocab.json"), "{err}");
    let err = ClipTokenizer::from_vocab_merges(VOCAB, "#version: 0.2\na b c\n").err().unwrap().to_string();
    assert!(err.contains("merges.txt") && err.contains("a b c"), "{err}");
    let err = ClipTokenizer::from_vocab_merges(r#"{"a": 0}"#, "").err().unwrap().to_string();
    assert!(err.contains("<|startoftext|>"), "{err}");
    let err = ClipTokenizer::from_tokenizer_json("{not json").err().unwrap().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}
