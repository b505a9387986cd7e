//! Captions from a recording's description, its labels, and the graded relevance between
//! clips that the labels give.

use std::collections::BTreeSet;

use rand::RngExt;

use super::catalog::Phrase;

/// Templates for any description; `{}` is the description (a noun phrase).
const ANY: &[&str] = &[
    "{}",
    "the sound of {}",
    "{} can be heard",
    "a recording of {}",
    "you can hear {}",
    "audio of {}",
    "we hear {}",
    "this is the sound of {}",
    "a short clip of {}",
    "{} is heard in this recording",
];

/// Extra templates for a bare sound source, by the first level of its category.
fn source_templates(top: &str) -> &'static [&'static str] {
    match top {
        "animal" => &[
            "the call of {}",
            "{} making a noise",
            "{} calling out",
            "noises from {}",
            "an animal sound: {}",
        ],
        "instrument" => &[
            "{} being played",
            "someone playing {}",
            "music played on {}",
            "a few notes on {}",
            "a musician plays {}",
        ],
        _ => &[
            "{} making a noise",
            "noise from {}",
            "the noise that {} makes",
        ],
    }
}

/// Upper-case first letter, final full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
    format!("{}{}.", first.unwrap_or_default(), chars.as_str())
}

/// `n` captions for one clip, from distinct templates while there are enough of them.
pub fn captions(
    rng: &mut impl RngExt,
    description: &str,
    phrase: Phrase,
    category: &[String],
    n: usize,
) -> Vec<String> {
    let mut pool: Vec<&str> = ANY.to_vec();
    if phrase == Phrase::Source {
        pool.extend(source_templates(
            category.first().map_or("", String::as_str),
        ));
    }
    // Partial Fisher-Yates: the first `n` of a random permutation, then repeats if n > pool.
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % pool.len();
        let j = rng.random_range(k..pool.len());
        pool.swap(k, j);
        out.push(sentence(&pool[k].replace("{}", description)));
    }
    out
}

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "and", "with", "in", "on", "at", "to", "from", "by", "for", "as",
    "its", "it", "is", "into", "some", "one", "two", "several", "times", "while", "like", "up",
    "down", "close", "short", "single", "this", "that", "being",
];

/// `buses` → `bus`, `bells` → `bell`: enough for keyword overlap, not a lemmatiser.
fn stem(word: &str) -> String {
    if let Some(s) = word.strip_suffix("ies")
        && s.len() > 2
    {
        return format!("{s}y");
    }
    if let Some(s) = word.strip_suffix("es")
        && ["sh", "ch", "x", "ss", "us"].iter().any(|e| s.ends_with(e))
    {
        return s.to_owned();
    }
    match word.strip_suffix('s') {
        Some(s) if s.len() > 2 && !s.ends_with(['s', 'u']) => s.to_owned(),
        _ => word.to_owned(),
    }
}

/// Content words of a description: normalised, stop words removed, plurals folded.
pub fn keywords(description: &str) -> BTreeSet<String> {
    crate::text::normalize(description)
        .split(' ')
        .filter(|w| w.len() > 1 && !STOPWORDS.contains(w))
        .map(stem)
        .collect()
}

/// What the relevance of one clip's captions to another clip is computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    pub recording: usize,
    pub category: Vec<String>,
    pub keywords: BTreeSet<String>,
}

/// Relevance of a segment of another recording sharing labels: `0.4 c + 0.4 k`, where `c` is
/// the length of the common category prefix over the longer category's depth and `k` the
/// Jaccard overlap of the keywords (so at most 0.8, below the own clip's 1).
pub const CATEGORY_WEIGHT: f32 = 0.4;
pub const KEYWORD_WEIGHT: f32 = 0.4;
/// Relevance to another segment of the same recording (same description, other moment).
pub const SAME_RECORDING: f32 = 0.9;

pub fn relevance(query: &Labels, clip: &Labels) -> f32 {
    if query.recording == clip.recording {
        return SAME_RECORDING;
    }
    let depth = query.category.len().max(clip.category.len()).max(1);
    let shared = query
        .category
        .iter()
        .zip(&clip.category)
        .take_while(|(a, b)| a == b)
        .count();
    let union = query.keywords.union(&clip.keywords).count();
    let common = query.keywords.intersection(&clip.keywords).count();
    let jaccard = if union == 0 {
        0.0
    } else {
        common as f32 / union as f32
    };
    CATEGORY_WEIGHT * shared as f32 / depth as f32 + KEYWORD_WEIGHT * jaccard
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn labels(recording: usize, category: &str, description: &str) -> Labels {
        Labels {
            recording,
            category: category.split('/').map(str::to_owned).collect(),
            keywords: keywords(description),
        }
    }

    #[test]
    fn captions_differ_and_carry_the_description() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cat = vec!["animal".to_owned(), "bird".to_owned()];
        let c = captions(&mut rng, "a crow", Phrase::Source, &cat, 5);
        assert_eq!(c.len(), 5);
        assert_eq!(c.iter().collect::<BTreeSet<_>>().len(), 5, "{c:?}");
        for caption in &c {
            assert!(
                caption.contains("crow") && caption.ends_with('.'),
                "{caption}"
            );
            assert!(caption.chars().next().unwrap().is_uppercase(), "{caption}");
        }
        // More captions than templates repeat rather than fail.
        let many = captions(&mut rng, "wind blowing", Phrase::Event, &[], 12);
        assert_eq!(many.len(), 12);
        assert_eq!(many.iter().collect::<BTreeSet<_>>().len(), ANY.len());
    }

    #[test]
    fn keywords_drop_stop_words_and_plurals() {
        let k = keywords("Two buses and the bells of a ferry!");
        assert_eq!(k.into_iter().collect::<Vec<_>>(), ["bell", "bus", "ferry"]);
    }

    #[test]
    fn relevance_grades_shared_labels() {
        let cow = labels(0, "animal/mammal/bovine", "a cow mooing");
        let cow2 = labels(1, "animal/mammal/bovine", "a cow");
        let dog = labels(2, "animal/mammal/dog", "a dog barking");
        let bird = labels(3, "animal/bird", "a crow");
        let bus = labels(4, "vehicle/road/bus", "a bus");
        let r = |a: &Labels, b: &Labels| relevance(a, b);
        assert_eq!(r(&cow, &cow), SAME_RECORDING);
        assert!((r(&cow, &cow2) - (0.4 + 0.4 * 0.5)).abs() < 1e-6);
        assert!((r(&cow, &dog) - 0.4 * 2.0 / 3.0).abs() < 1e-6);
        assert!((r(&cow, &bird) - 0.4 / 3.0).abs() < 1e-6);
        assert_eq!(r(&cow, &bus), 0.0);
        assert!(r(&cow, &cow2) > r(&cow, &dog) && r(&cow, &dog) > r(&cow, &bird));
    }
}
