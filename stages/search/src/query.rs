//! A typed query as the model's text encoder takes it: normalised like the captions, then the
//! `features` node's word vocabulary or pretrained tokenizer.

use std::path::Path;

use pipeline_api::UsageError;
use pipeline_data::text::{PretrainedTokenizer, UNK, Vocab, normalize};

/// Token ids of a query, and the words the vocabulary lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// `max_tokens` ids.
    pub ids: Vec<i64>,
    /// Words mapped to the unknown token (the word vocabulary), or the number of unknown
    /// tokens (a pretrained tokenizer, whose pieces are not words).
    pub unknown: Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    Words(Vec<String>),
    Tokens(usize),
}

impl Unknown {
    pub fn is_empty(&self) -> bool {
        match self {
            Unknown::Words(w) => w.is_empty(),
            Unknown::Tokens(n) => *n == 0,
        }
    }
}

/// Encodes `query` with the word vocabulary `vocab` (`<pad>`, `<unk>`, words) or, when given,
/// the tokenizer at `tokenizer`. An empty query, or one of which no word is known, is an error.
pub fn encode(
    query: &str,
    vocab: &[String],
    tokenizer: Option<&Path>,
    max_tokens: usize,
) -> anyhow::Result<Tokens> {
    let normalized = normalize(query);
    if normalized.is_empty() {
        return Err(UsageError::new("the query is empty: type what the sound is like").into());
    }
    let (ids, unknown, known) = match tokenizer {
        None => {
            let vocab = Vocab::from_words(vocab.to_vec());
            let words: Vec<&str> = normalized.split_whitespace().take(max_tokens).collect();
            let unknown: Vec<String> = words
                .iter()
                .filter(|w| vocab.id(w) == UNK)
                .map(|w| (*w).to_owned())
                .collect();
            let known = words.len() - unknown.len();
            (
                vocab.encode(&normalized, max_tokens),
                Unknown::Words(unknown),
                known,
            )
        }
        Some(path) => {
            let e = PretrainedTokenizer::load(path, max_tokens)?.encode(&normalized)?;
            (e.ids, Unknown::Tokens(e.unknown), e.words - e.unknown)
        }
    };
    if known == 0 {
        let what = match &unknown {
            Unknown::Words(words) => format!("none of its words ({}) is", words.join(", ")),
            Unknown::Tokens(_) => "none of its tokens is".to_owned(),
        };
        return Err(UsageError::new(format!(
            "the query {query:?} cannot be searched: {what} in the model's vocabulary ({} words, \
             from its training captions)",
            vocab.len().saturating_sub(2)
        ))
        .into());
    }
    Ok(Tokens { ids, unknown })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vec<String> {
        ["<pad>", "<unk>", "a", "dog", "barks"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn known_words_become_their_ids_and_unknown_ones_are_named() {
        let t = encode("A dog barks, loudly!", &vocab(), None, 6).unwrap();
        assert_eq!(t.ids, vec![2, 3, 4, UNK, 0, 0]);
        assert_eq!(t.unknown, Unknown::Words(vec!["loudly".into()]));
    }

    #[test]
    fn an_empty_or_wholly_unknown_query_is_a_usage_error() {
        for query in ["", "  ?! "] {
            let err = encode(query, &vocab(), None, 4).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some());
            assert!(err.to_string().contains("empty"), "{err}");
        }
        let err = encode("purring kitten", &vocab(), None, 4).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        assert!(err.to_string().contains("purring, kitten"), "{err}");
        assert!(err.to_string().contains("3 words"), "{err}");
    }
}
