//! Caption normalisation and word-level tokenisation.
//!
//! Normalisation: lower case; every character that is not alphanumeric becomes a space, except
//! apostrophes, which are dropped (`"dog's"` → `"dogs"`); runs of spaces collapse to one.
//! Tokenisation: whitespace-separated words looked up in a vocabulary built from the training
//! split only (`<pad>` = 0, `<unk>` = 1, then words by decreasing count, ties alphabetical),
//! truncated or padded to `max_tokens`.

use std::collections::HashMap;

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
        let mut kept: Vec<(&str, usize)> = counts.into_iter().filter(|&(_, c)| c >= min_count.max(1)).collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Self::from_words([PAD_WORD, UNK_WORD].into_iter().chain(kept.into_iter().map(|(w, _)| w)).map(str::to_owned).collect())
    }

    /// A vocabulary from its word list (`words[0]` = `<pad>`, `words[1]` = `<unk>`).
    pub fn from_words(words: Vec<String>) -> Self {
        let index = words.iter().enumerate().map(|(i, w)| (w.clone(), i as i64)).collect();
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
        self.index.get(word).copied().filter(|&i| i > UNK).unwrap_or(UNK)
    }

    /// Token ids of a normalised text, padded with [`PAD`] or truncated to `max_tokens`.
    pub fn encode(&self, normalized: &str, max_tokens: usize) -> Vec<i64> {
        let mut ids: Vec<i64> = normalized.split_whitespace().take(max_tokens).map(|w| self.id(w)).collect();
        ids.resize(max_tokens, PAD);
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_lowercases_and_strips_punctuation() {
        assert_eq!(normalize("  A dog's bark, then: RAIN!! "), "a dogs bark then rain");
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
