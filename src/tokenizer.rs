//! CLIP's BPE tokenizer for SD1.5 prompts, through the `tokenizers` crate (diffusers' `CLIPTokenizer`).
//!
//! Real SD repositories — MAM-E's included — ship `tokenizer/vocab.json` + `merges.txt` and no
//! `tokenizer.json`; then the same pipeline transformers' `CLIPTokenizerFast` converts them to is
//! built here: NFC, curly quotes straightened (as ftfy does for the slow tokenizer), whitespace
//! runs → one space, lowercase; CLIP's split regex; byte-level
//! alphabet; BPE with the `</w>` end-of-word suffix; `<|startoftext|>` … `<|endoftext|>` around.

use serde_json::json;
use tokenizers::Tokenizer;

use crate::{Error, Result};

/// SD1.5's text encoder context length.
pub const MAX_LENGTH: usize = 77;

/// A prompt's token ids, padded to the context length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// `[bos, tokens…, eos, pad…]`, exactly `max_length` long.
    pub ids: Vec<u32>,
    /// Prompt tokens that did not fit and were dropped (0 when none).
    pub truncated_tokens: usize,
}

/// CLIP BPE tokenizer with fixed-length padding.
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_length: usize,
}

impl ClipTokenizer {
    /// From a `tokenizer.json` text (what the `tokenizers` library saves).
    pub fn from_tokenizer_json(text: &str) -> Result<Self> {
        let inner = Tokenizer::from_bytes(text.as_bytes()).map_err(|e| config_error("tokenizer.json", e))?;
        Self::new(inner)
    }

    /// From `vocab.json` and `merges.txt` texts (what SD repositories ship).
    pub fn from_vocab_merges(vocab_json: &str, merges_txt: &str) -> Result<Self> {
        let vocab: serde_json::Value = serde_json::from_str(vocab_json).map_err(|e| config_error("vocab.json", e))?;
        if !vocab.is_object() {
            return Err(config_error("vocab.json", "expected an object of token → id"));
        }
        let merges: Vec<&str> = merges_txt.lines().filter(|l| !l.starts_with("#version") && !l.trim().is_empty()).collect();
        if let Some(bad) = merges.iter().find(|l| l.split(' ').count() != 2) {
            return Err(config_error("merges.txt", format!("a merge must be two tokens separated by one space, got {bad:?}")));
        }
        let special = |id: &serde_json::Value, content: &str| json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": true});
        let (bos, eos) = ("<|startoftext|>", "<|endoftext|>");
        let (bos_id, eos_id) = (vocab.get(bos).cloned(), vocab.get(eos).cloned());
        let (Some(bos_id), Some(eos_id)) = (bos_id, eos_id) else {
            return Err(config_error("vocab.json", "missing <|startoftext|> or <|endoftext|>"));
        };
        let definition = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [special(&bos_id, bos), special(&eos_id, eos)],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"},
                // transformers' CLIPTokenizer runs ftfy.fix_text, which straightens curly quotes.
                {"type": "Replace", "pattern": {"Regex": "[\u{2018}\u{2019}\u{201a}\u{201b}]"}, "content": "'"},
                {"type": "Replace", "pattern": {"Regex": "[\u{201c}\u{201d}\u{201e}\u{201f}]"}, "content": "\""},
                {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"}
            ]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
                 "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
            ]},
            "post_processor": {"type": "RobertaProcessing", "sep": [eos, eos_id], "cls": [bos, bos_id],
                               "trim_offsets": false, "add_prefix_space": false},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": eos, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
                      "vocab": vocab, "merges": merges}
        });
        Self::from_tokenizer_json(&definition.to_string())
    }

    fn new(inner: Tokenizer) -> Result<Self> {
        let id = |token: &str| inner.token_to_id(token).ok_or_else(|| config_error("tokenizer", format!("the vocabulary has no {token}")));
        let (bos, eos) = (id("<|startoftext|>")?, id("<|endoftext|>")?);
        Ok(Self { inner, bos, eos, pad: eos, max_length: MAX_LENGTH })
    }

    /// Tokenizes `prompt` to exactly `max_length` ids: truncated (keeping the closing
    /// `<|endoftext|>`) and padded with `<|endoftext|>`, as diffusers' `encode_prompt` does.
    pub fn encode(&self, prompt: &str) -> Result<Encoded> {
        let encoding = self.inner.encode(prompt, false).map_err(|e| Error::InvalidInput { what: "prompt", reason: e.to_string() })?;
        let tokens = encoding.get_ids();
        let room = self.max_length - 2;
        let kept = tokens.len().min(room);
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos);
        ids.extend_from_slice(&tokens[..kept]);
        ids.push(self.eos);
        ids.resize(self.max_length, self.pad);
        Ok(Encoded { ids, truncated_tokens: tokens.len() - kept })
    }

    /// The text of token ids (for reporting what a truncation dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| Error::InvalidInput { what: "token ids", reason: e.to_string() })
    }
}

fn config_error(file: &str, reason: impl std::fmt::Display) -> Error {
    Error::Config { file: file.into(), reason: reason.to_string() }
}
