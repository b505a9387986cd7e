//! Caption normalisation and word-level tokenisation.
//!
//! Normalisation: lower case; every character that is not alphanumeric becomes a space, except
//! apostrophes, which are dropped (`"dog's"` → `"dogs"`); runs of spaces collapse to one.
//! Tokenisation: whitespace-separated words looked up in a vocabulary built from the training
//! split only (`<pad>` = 0, `<unk>` = 1, then words by decreasing count, ties alphabetical),
//! truncated or padded to `max_tokens`.
//!
//! Alternatively, [`PretrainedTokenizer`] encodes the normalised text with a HuggingFace
//! `tokenizer.json` (special tokens included), truncated and padded to `max_tokens`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokenizers::{ModelWrapper, PostProcessor, Tokenizer, TruncationParams};

pub const PAD: i64 = 0;
pub const UNK: i64 = 1;
pub const PAD_WORD: &str = "<pad>";
pub const UNK_WORD: &str = "<unk>";

/// Lower-cases and removes punctuation.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.chars() {
        if matches!(c, '\'' | '\u{2019}' | '`') {
            continue;
        }
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// A word vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    words: Vec<String>,
    index: HashMap<String, i64>,
}

impl Vocab {
    /// Builds the vocabulary from normalised texts, keeping words seen at least `min_count` times.
    pub fn build<'a>(normalized: impl IntoIterator<Item = &'a str>, min_count: usize) -> Self {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for text in normalized {
            for w in text.split_whitespace() {
                *counts.entry(w).or_default() += 1;
            }
        }
        let mut kept: Vec<(&str, usize)> = counts
            .into_iter()
            .filter(|&(_, c)| c >= min_count.max(1))
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Self::from_words(
            [PAD_WORD, UNK_WORD]
                .into_iter()
                .chain(kept.into_iter().map(|(w, _)| w))
                .map(str::to_owned)
                .collect(),
        )
    }

    /// A vocabulary from its word list (`words[0]` = `<pad>`, `words[1]` = `<unk>`).
    pub fn from_words(words: Vec<String>) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as i64))
            .collect();
        Self { words, index }
    }

    pub fn words(&self) -> &[String] {
        &self.words
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn id(&self, word: &str) -> i64 {
        self.index
            .get(word)
            .copied()
            .filter(|&i| i > UNK)
            .unwrap_or(UNK)
    }

    /// Token ids of a normalised text, padded with [`PAD`] or truncated to `max_tokens`.
    pub fn encode(&self, normalized: &str, max_tokens: usize) -> Vec<i64> {
        let mut ids: Vec<i64> = normalized
            .split_whitespace()
            .take(max_tokens)
            .map(|w| self.id(w))
            .collect();
        ids.resize(max_tokens, PAD);
        ids
    }
}

/// A pretrained HuggingFace tokenizer read from a `tokenizer.json` (no download ever happens).
///
/// [`PretrainedTokenizer::encode`] runs the tokenizer (its own normaliser, pre-tokeniser, model
/// and post-processor, so special tokens such as BERT's `[CLS]` … `[SEP]` are added) on an
/// already [`normalize`]d text. Sequences longer than `max_tokens` are truncated the way the
/// tokenizer itself truncates (`truncation=True, max_length=max_tokens` in `transformers`): the
/// words are cut from the right and the special tokens are kept, so a truncated BERT caption
/// still ends with `[SEP]` (when `max_tokens` leaves no room for any word, the ids are simply cut
/// at `max_tokens`). Shorter sequences are right-padded with [`PretrainedTokenizer::pad_id`].
/// The tokenizer's own padding and truncation settings in the file are ignored.
#[derive(Debug, Clone)]
pub struct PretrainedTokenizer {
    tokenizer: Tokenizer,
    path: PathBuf,
    max_tokens: usize,
    /// Token of each id (`vocab[id]`), added tokens included.
    vocab: Vec<String>,
    pad_id: u32,
    unk_id: Option<u32>,
    special_tokens: usize,
}

/// One caption encoded by a [`PretrainedTokenizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// `max_tokens` ids, padded with the padding id.
    pub ids: Vec<i64>,
    /// Whether tokens were dropped to fit `max_tokens`.
    pub truncated: bool,
    /// Tokens kept that are not special tokens (nor padding).
    pub words: usize,
    /// Of which the tokenizer's unknown token.
    pub unknown: usize,
}

impl PretrainedTokenizer {
    /// Reads `path` (a `tokenizer.json`) for sequences of `max_tokens` ids. Errors name the file.
    pub fn load(path: &Path, max_tokens: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(max_tokens > 0, "max_tokens must be positive");
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the tokenizer `{}`", path.display()))?;
        let mut tokenizer = Tokenizer::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("`{}` is not a valid tokenizer.json", path.display()))?;
        let special_tokens = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        // Truncation by the tokenizer keeps the special tokens; it needs room for one word.
        let truncation = (max_tokens > special_tokens).then(|| TruncationParams {
            max_length: max_tokens,
            ..Default::default()
        });
        tokenizer
            .with_truncation(truncation)
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| {
                format!(
                    "the tokenizer `{}` refuses truncation to {max_tokens} tokens",
                    path.display()
                )
            })?;
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| {
                ["[PAD]", "<pad>"]
                    .iter()
                    .find_map(|t| tokenizer.token_to_id(t))
            })
            .unwrap_or(0);
        tokenizer.with_padding(None);
        let unk_token = match tokenizer.get_model() {
            ModelWrapper::WordPiece(m) => Some(m.unk_token.clone()),
            ModelWrapper::WordLevel(m) => Some(m.unk_token.clone()),
            ModelWrapper::BPE(m) => m.get_unk_token().clone(),
            // The unigram model's unknown id is private.
            ModelWrapper::Unigram(_) => None,
        };
        let unk_id = unk_token.and_then(|t| tokenizer.token_to_id(&t));
        let by_id = tokenizer.get_vocab(true);
        let size = by_id.values().map(|&id| id as usize + 1).max().unwrap_or(0);
        anyhow::ensure!(
            size > 0,
            "the tokenizer `{}` has an empty vocabulary",
            path.display()
        );
        anyhow::ensure!(
            size <= 4 * by_id.len() + 1024,
            "the tokenizer `{}` has {} tokens but ids up to {}",
            path.display(),
            by_id.len(),
            size - 1
        );
        // Ids no token maps to (none in a well-formed file) get a placeholder, so that ids
        // still index the list.
        let mut vocab: Vec<String> = (0..size).map(|id| format!("<unused:{id}>")).collect();
        for (token, id) in by_id {
            vocab[id as usize] = token;
        }
        Ok(Self {
            tokenizer,
            path: path.to_owned(),
            max_tokens,
            vocab,
            pad_id,
            unk_id,
            special_tokens,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Token of each id, in id order.
    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    /// Padding id: the one of the file's `padding` settings, else the id of `[PAD]` or `<pad>`,
    /// else 0.
    pub fn pad_id(&self) -> i64 {
        self.pad_id as i64
    }

    /// Id of the model's unknown token, when it has one.
    pub fn unk_id(&self) -> Option<i64> {
        self.unk_id.map(i64::from)
    }

    /// Special tokens the post-processor adds to one sequence (2 for BERT).
    pub fn special_tokens(&self) -> usize {
        self.special_tokens
    }

    /// The model type (`"WordPiece"`, `"BPE"`, `"WordLevel"`, `"Unigram"`).
    pub fn model_type(&self) -> &'static str {
        match self.tokenizer.get_model() {
            ModelWrapper::WordPiece(_) => "WordPiece",
            ModelWrapper::WordLevel(_) => "WordLevel",
            ModelWrapper::BPE(_) => "BPE",
            ModelWrapper::Unigram(_) => "Unigram",
        }
    }

    /// Encodes a normalised text into `max_tokens` ids (see the type's documentation).
    pub fn encode(&self, normalized: &str) -> anyhow::Result<Encoded> {
        let e = self
            .tokenizer
            .encode(normalized, true)
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| {
                format!(
                    "encoding {normalized:?} with the tokenizer `{}`",
                    self.path.display()
                )
            })?;
        let n = e.get_ids().len().min(self.max_tokens);
        let truncated = e.get_ids().len() > self.max_tokens || !e.get_overflowing().is_empty();
        let (mut words, mut unknown) = (0, 0);
        for (&id, &special) in e.get_ids()[..n].iter().zip(e.get_special_tokens_mask()) {
            if special == 0 {
                words += 1;
                unknown += (Some(id) == self.unk_id) as usize;
            }
        }
        let mut ids: Vec<i64> = e.get_ids()[..n].iter().map(|&id| id as i64).collect();
        ids.resize(self.max_tokens, self.pad_id());
        Ok(Encoded {
            ids,
            truncated,
            words,
            unknown,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Token of each id of [`TEST_TOKENIZER`].
    pub(crate) const TEST_VOCAB: [&str; 19] = [
        "[UNK]", "[CLS]", "[SEP]", "[PAD]", "a", "the", "in", "this", "clip", "high", "pitch",
        "##ed", "pluck", "string", "is", "rain", "pour", "##s", "down",
    ];

    /// A small BERT-like `tokenizer.json`: WordPiece over [`TEST_VOCAB`], whitespace
    /// pre-tokeniser, `[CLS] … [SEP]` post-processor, `[PAD]` = 3, no `padding` settings.
    pub(crate) const TEST_TOKENIZER: &str = r###"{
  "version": "1.0",
  "truncation": null,
  "padding": null,
  "added_tokens": [
    {"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 3, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "Whitespace"},
  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]},
  "decoder": null,
  "model": {
    "type": "WordPiece",
    "unk_token": "[UNK]",
    "continuing_subword_prefix": "##",
    "max_input_chars_per_word": 100,
    "vocab": {
      "[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3, "a": 4, "the": 5, "in": 6, "this": 7, "clip": 8,
      "high": 9, "pitch": 10, "##ed": 11, "pluck": 12, "string": 13, "is": 14, "rain": 15, "pour": 16,
      "##s": 17, "down": 18
    }
  }
}"###;

    fn test_tokenizer(max_tokens: usize, json: &str) -> PretrainedTokenizer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json).unwrap();
        PretrainedTokenizer::load(&path, max_tokens).unwrap()
    }

    #[test]
    fn pretrained_tokenizer_pads_and_truncates_keeping_special_tokens() {
        let t = test_tokenizer(6, TEST_TOKENIZER);
        assert_eq!(t.vocab(), TEST_VOCAB);
        assert_eq!(
            (t.pad_id(), t.unk_id(), t.special_tokens(), t.model_type()),
            (3, Some(0), 2, "WordPiece")
        );
        // [CLS] the rain pour ##s [SEP]: fits exactly.
        let e = t.encode(&normalize("The rain pours!")).unwrap();
        assert_eq!(
            e,
            Encoded {
                ids: vec![1, 5, 15, 16, 17, 2],
                truncated: false,
                words: 4,
                unknown: 0
            }
        );
        // Padded with [PAD]; an unknown word is [UNK].
        let e = t.encode("a dog").unwrap();
        assert_eq!(
            e,
            Encoded {
                ids: vec![1, 4, 0, 2, 3, 3],
                truncated: false,
                words: 2,
                unknown: 1
            }
        );
        // Truncated: the words are cut, [SEP] stays.
        let e = t.encode("the rain pours down").unwrap();
        assert_eq!(
            e,
            Encoded {
                ids: vec![1, 5, 15, 16, 17, 2],
                truncated: true,
                words: 4,
                unknown: 0
            }
        );
        assert_eq!(t.encode("").unwrap().ids, vec![1, 2, 3, 3, 3, 3]);
        // No room for a word: the ids are cut.
        let t = test_tokenizer(1, TEST_TOKENIZER);
        assert_eq!(
            t.encode("the rain").unwrap(),
            Encoded {
                ids: vec![1],
                truncated: true,
                words: 0,
                unknown: 0
            }
        );
    }

    #[test]
    fn pretrained_tokenizer_padding_id_from_its_settings_else_zero() {
        // The file's padding settings win (and their length is ignored).
        let json = TEST_TOKENIZER.replace(
            r#""padding": null"#,
            r#""padding": {"strategy": {"Fixed": 3}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 9, "pad_type_id": 0, "pad_token": "high"}"#,
        );
        let t = test_tokenizer(5, &json);
        assert_eq!(t.encode("a").unwrap().ids, vec![1, 4, 2, 9, 9]);
        // No padding settings, no [PAD] / <pad> token: 0.
        let json = TEST_TOKENIZER
            .replace(r#""[PAD]": 3"#, r#""[XXX]": 3"#)
            .replace(r#""content": "[PAD]""#, r#""content": "[XXX]""#);
        let t = test_tokenizer(5, &json);
        assert_eq!(t.pad_id(), 0);
        assert_eq!(t.vocab()[3], "[XXX]");
    }

    #[test]
    fn normalize_lowercases_and_strips_punctuation() {
        assert_eq!(
            normalize("  A dog's bark, then: RAIN!! "),
            "a dogs bark then rain"
        );
        assert_eq!(normalize("High-pitched \"beep\"…"), "high pitched beep");
        assert_eq!(normalize("Café Ünïcode"), "café ünïcode");
        assert_eq!(normalize("?!"), "");
    }

    #[test]
    fn vocab_from_training_texts_with_min_count() {
        let texts = ["a dog barks", "a dog", "a cat"];
        let v = Vocab::build(texts.iter().copied(), 2);
        assert_eq!(v.words(), &["<pad>", "<unk>", "a", "dog"]);
        assert_eq!(v.encode("a cat barks dog", 6), vec![2, 1, 1, 3, 0, 0]);
        assert_eq!(v.encode("a a a a", 2), vec![2, 2]);
        assert_eq!(v.id("<pad>"), UNK);
    }
}
