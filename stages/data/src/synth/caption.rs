//! Captions written from a scene by a small grammar with synonyms: each caption mentions part or
//! all of the scene and returns the facts it states (every one true of its own scene).

use rand::RngExt;

use super::scene::{Event, Fact, Scene, Source, VARIANT_WORDS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    /// "a bell"
    Count,
    /// "rain"
    Mass,
    /// "footsteps"
    Plural,
}

struct Lexicon {
    nouns: &'static [(&'static str, Number)],
    /// Verb phrases agreeing with a singular or mass subject.
    verbs: &'static [&'static str],
    /// Verb phrases agreeing with a plural subject.
    verbs_plural: &'static [&'static str],
}

fn lexicon(source: Source) -> Lexicon {
    use Number::*;
    const NONE: &[&str] = &[];
    let (nouns, verbs, verbs_plural): (
        &'static [(&'static str, Number)],
        &'static [&'static str],
        &'static [&'static str],
    ) = match source {
        Source::RisingTone => (
            &[
                ("rising tone", Count),
                ("rising beep", Count),
                ("upward sweep", Count),
                ("ascending tone", Count),
            ],
            &["sounds", "rises", "sweeps upward", "beeps"],
            NONE,
        ),
        Source::FallingTone => (
            &[
                ("falling tone", Count),
                ("falling beep", Count),
                ("downward sweep", Count),
                ("descending tone", Count),
            ],
            &["sounds", "drops", "sweeps downward", "beeps"],
            NONE,
        ),
        Source::Bell => (
            &[
                ("bell", Count),
                ("chime", Count),
                ("small bell", Count),
                ("metal bell", Count),
            ],
            &["rings", "chimes", "is struck", "dings"],
            NONE,
        ),
        Source::Flute => (
            &[
                ("flute", Count),
                ("recorder", Count),
                ("wooden flute", Count),
                ("pipe", Count),
            ],
            &["plays", "toots", "sounds", "plays a note"],
            NONE,
        ),
        Source::Pluck => (
            &[
                ("guitar", Count),
                ("plucked string", Count),
                ("harp", Count),
                ("string instrument", Count),
            ],
            &["is plucked", "twangs", "plays", "rings out"],
            NONE,
        ),
        Source::Horn => (
            &[
                ("horn", Count),
                ("trumpet", Count),
                ("brass horn", Count),
                ("bugle", Count),
            ],
            &["blares", "honks", "plays", "blows"],
            NONE,
        ),
        Source::Rain => (
            &[
                ("rain", Mass),
                ("rainfall", Mass),
                ("pouring rain", Mass),
                ("drizzle", Mass),
            ],
            &["falls", "patters", "pours down", "drips"],
            NONE,
        ),
        Source::Wind => (
            &[
                ("wind", Mass),
                ("gusty wind", Mass),
                ("breeze", Count),
                ("howling wind", Mass),
            ],
            &["blows", "howls", "whooshes", "gusts"],
            NONE,
        ),
        Source::Knock => (
            &[
                ("knocking", Mass),
                ("knock", Count),
                ("tapping", Mass),
                ("rapping on wood", Mass),
            ],
            &["is heard", "sounds", "comes from a door", "repeats"],
            NONE,
        ),
        Source::Footsteps => (
            &[
                ("footsteps", Plural),
                ("steps", Plural),
                ("footfalls", Plural),
                ("shuffling feet", Plural),
            ],
            NONE,
            &["are heard", "echo", "approach", "clack", "pass by"],
        ),
        Source::Engine => (
            &[
                ("engine", Count),
                ("motor", Count),
                ("car engine", Count),
                ("generator", Count),
            ],
            &["hums", "rumbles", "idles", "runs"],
            NONE,
        ),
        Source::Birds => (
            &[
                ("bird", Count),
                ("songbird", Count),
                ("small bird", Count),
                ("sparrow", Count),
            ],
            &["chirps", "tweets", "sings", "calls out"],
            NONE,
        ),
        Source::Siren => (
            &[
                ("siren", Count),
                ("alarm", Count),
                ("police siren", Count),
                ("warning siren", Count),
            ],
            &["wails", "sounds", "blares", "howls"],
            NONE,
        ),
    };
    Lexicon {
        nouns,
        verbs,
        verbs_plural,
    }
}

const LOUD: &[&str] = &["loud", "strong", "powerful", "noisy"];
const SOFT: &[&str] = &["soft", "quiet", "faint", "gentle"];
const LOUDLY: &[&str] = &["loudly", "noisily"];
const SOFTLY: &[&str] = &["softly", "quietly", "faintly"];
const HIGH: &[&str] = &["high", "high-pitched", "shrill"];
const LOW: &[&str] = &["low", "low-pitched", "deep"];
const FAST: &[&str] = &["fast", "rapid", "quick"];
const SLOW: &[&str] = &["slow", "unhurried", "leisurely"];
const FASTLY: &[&str] = &["quickly", "rapidly", "fast"];
const SLOWLY: &[&str] = &["slowly", "at a slow pace"];
const COUNTS: [&[&str]; 4] = [
    &["once", "a single time"],
    &["twice", "two times"],
    &["three times", "thrice"],
    &["four times", "several times"],
];

fn pick<'a>(rng: &mut impl RngExt, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// A rendered mention of one event.
struct Mention {
    /// Noun phrase with determiner and adjectives.
    np: String,
    /// Verb phrase with adverbs and count ("rings loudly three times").
    vp: String,
    /// Whether the adverbs/count can be dropped when only the noun phrase is used: false when
    /// something was said after the verb.
    bare: bool,
}

impl Mention {
    fn clause(&self) -> String {
        format!("{} {}", self.np, self.vp)
    }
}

/// Renders an event, choosing which attributes to mention; pushes the stated facts.
fn mention(rng: &mut impl RngExt, e: &Event, facts: &mut Vec<Fact>, background: bool) -> Mention {
    let lex = lexicon(e.source);
    let (noun, number) = lex.nouns[rng.random_range(0..lex.nouns.len())];
    facts.push(Fact::Source(e.kind()));
    let mut adjectives: Vec<&str> = Vec::new();
    let mut adverbs: Vec<&str> = Vec::new();
    if rng.random_bool(0.35) {
        facts.push(Fact::Loud(e.kind(), e.loud));
        let as_adverb = !background && rng.random_bool(0.4);
        match (e.loud, as_adverb) {
            (true, false) => adjectives.push(pick(rng, LOUD)),
            (false, false) => adjectives.push(pick(rng, SOFT)),
            (true, true) => adverbs.push(pick(rng, LOUDLY)),
            (false, true) => adverbs.push(pick(rng, SOFTLY)),
        }
    }
    if let Some(fast) = e.fast
        && rng.random_bool(0.3)
    {
        facts.push(Fact::Fast(e.kind(), fast));
        let as_adverb = !background && rng.random_bool(0.5);
        match (fast, as_adverb) {
            (true, false) => adjectives.push(pick(rng, FAST)),
            (false, false) => adjectives.push(pick(rng, SLOW)),
            (true, true) => adverbs.push(pick(rng, FASTLY)),
            (false, true) => adverbs.push(pick(rng, SLOWLY)),
        }
    }
    if let Some(high) = e.high
        && rng.random_bool(0.4)
    {
        facts.push(Fact::High(e.kind(), high));
        adjectives.push(pick(rng, if high { HIGH } else { LOW }));
    }
    if let Some(count) = e.count
        && !background
        && rng.random_bool(0.4)
    {
        facts.push(Fact::Count(e.kind(), count));
        adverbs.push(pick(rng, COUNTS[(count as usize).clamp(1, 4) - 1]));
    }

    let mut words: Vec<&str> = adjectives;
    // The variant is part of what the source is, so it is always said (no draw: captions of a
    // data set without variants are unchanged).
    if let Some(v) = e.variant {
        words.push(VARIANT_WORDS[v as usize]);
    }
    words.push(noun);
    let body = words.join(" ");
    let np = match number {
        Number::Count => {
            if rng.random_bool(0.25) {
                format!("the {body}")
            } else {
                let article = if body.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                };
                format!("{article} {body}")
            }
        }
        Number::Mass | Number::Plural => match rng.random_range(0..4) {
            0 => format!("the {body}"),
            1 => format!("some {body}"),
            _ => body,
        },
    };
    let verbs = if number == Number::Plural {
        lex.verbs_plural
    } else {
        lex.verbs
    };
    let generic: &[&str] = if number == Number::Plural {
        &["can be heard", "are heard"]
    } else {
        &["can be heard", "is heard"]
    };
    let verb = if rng.random_bool(0.2) {
        pick(rng, generic)
    } else {
        pick(rng, verbs)
    };
    let bare = adverbs.is_empty();
    let mut vp = verb.to_owned();
    // Manner adverbs (all but a trailing count) joined with "and".
    let n_manner = adverbs
        .iter()
        .filter(|a| !COUNTS.iter().any(|c| c.contains(a)))
        .count();
    for (i, a) in adverbs.iter().enumerate() {
        vp.push_str(if i == 1 && n_manner == 2 {
            " and "
        } else {
            " "
        });
        vp.push_str(a);
    }
    Mention { np, vp, bare }
}

fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Writes one caption of `scene`: its text and the facts it states.
pub fn caption(rng: &mut impl RngExt, scene: &Scene) -> (String, Vec<Fact>) {
    let mut best: Option<(String, Vec<Fact>)> = None;
    for _ in 0..40 {
        let (text, facts) = caption_once(rng, scene);
        let n = word_count(&text);
        if (8..=20).contains(&n) {
            return (finish(rng, text), facts);
        }
        let better = match &best {
            None => true,
            Some((b, _)) => distance(word_count(b)) > distance(n),
        };
        if better {
            best = Some((text, facts));
        }
    }
    let (text, facts) = best.expect("at least one attempt");
    (finish(rng, text), facts)
}

fn distance(n: usize) -> usize {
    if n < 8 { 8 - n } else { n.saturating_sub(20) }
}

fn finish(rng: &mut impl RngExt, text: String) -> String {
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if rng.random_bool(0.7) {
        out.push('.');
    }
    out
}

const PREFIXES: &[&str] = &[
    "in this recording,",
    "in this clip,",
    "here",
    "outside,",
    "you can hear that",
];
const SUFFIXES: &[&str] = &["in the recording", "in this clip", "nearby", "for a while"];

fn caption_once(rng: &mut impl RngExt, scene: &Scene) -> (String, Vec<Fact>) {
    let fg = scene.foreground();
    let bg = scene.background();
    let mut facts = Vec::new();

    // Background alone, now and then.
    if let Some(bg) = bg
        && rng.random_bool(0.08)
    {
        let m = mention(rng, bg, &mut facts, true);
        let text = if rng.random_bool(0.5) {
            format!("{} {} in the background", m.np, m.vp)
        } else {
            format!("{} {} throughout the whole recording", m.np, m.vp)
        };
        return (pad(rng, text), facts);
    }

    // Which foreground events: all (up to three) about half of the time, else a subset.
    let chosen: Vec<&Event> = if fg.len() <= 3 && rng.random_bool(0.5) {
        fg.clone()
    } else {
        let k = rng.random_range(1..=fg.len().min(3));
        let mut idx: Vec<usize> = (0..fg.len()).collect();
        for i in (1..idx.len()).rev() {
            let j = rng.random_range(0..=i);
            idx.swap(i, j);
        }
        let mut idx = idx[..k].to_vec();
        idx.sort_unstable();
        idx.into_iter().map(|i| fg[i]).collect()
    };
    let mentions: Vec<Mention> = chosen
        .iter()
        .map(|e| mention(rng, e, &mut facts, false))
        .collect();

    let mut text = String::new();
    for (k, m) in mentions.iter().enumerate() {
        if k == 0 {
            text = m.clause();
            continue;
        }
        let (a, b) = (chosen[k - 1].kind(), chosen[k].kind());
        let relation = if scene.holds(Fact::Then(a, b)) {
            Some(Fact::Then(a, b))
        } else if scene.holds(Fact::Together(a, b)) {
            Some(Fact::Together(a, b))
        } else {
            None
        };
        let relation = relation.filter(|_| rng.random_bool(0.8));
        let c = m.clause();
        match relation {
            Some(Fact::Then(..)) => {
                facts.push(relation.unwrap());
                let choice = rng.random_range(0..6);
                text = match choice {
                    0 if k == 1 => format!("first {text}, then {c}"),
                    1 if k == 1 => format!("after {text}, {c}"),
                    2 if m.bare => format!("{text}, followed by {}", m.np),
                    3 => format!("{text} before {c}"),
                    4 => format!("{text}, and afterwards {c}"),
                    _ => format!("{text}, then {c}"),
                };
            }
            Some(Fact::Together(..)) => {
                facts.push(relation.unwrap());
                let choice = rng.random_range(0..5);
                text = match choice {
                    0 => format!("{text} while {c}"),
                    1 => format!("{text} as {c}"),
                    2 if m.bare => format!("{text} together with {}", m.np),
                    3 => format!("{text} and at the same time {c}"),
                    _ => format!("{text} while {c}"),
                };
            }
            _ => {
                text = format!("{text} and {c}");
            }
        }
    }

    if let Some(bg) = bg
        && rng.random_bool(0.6)
    {
        let fg0 = chosen[0].kind();
        let m = mention(rng, bg, &mut facts, true);
        facts.push(Fact::Over(fg0, bg.kind()));
        text = match rng.random_range(0..5) {
            0 => format!("{text} with {} in the background", m.np),
            1 => format!("{text} over the sound of {}", m.np),
            2 => format!("{text} while {} {} in the background", m.np, m.vp),
            3 => format!("{} {} in the background as {text}", m.np, m.vp),
            _ => format!("{text} against a background of {}", m.np),
        };
    }
    (pad(rng, text), facts)
}

/// Adds neutral words to short captions.
fn pad(rng: &mut impl RngExt, mut text: String) -> String {
    if word_count(&text) < 8 && rng.random_bool(0.8) {
        if rng.random_bool(0.5) {
            text = format!("{} {text}", pick(rng, PREFIXES));
        } else {
            text = format!("{text} {}", pick(rng, SUFFIXES));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::scene::sample_scene;
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn captions_are_true_of_their_scene_and_mostly_8_to_20_words() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut in_range = 0;
        let n = 2000;
        for _ in 0..n / 5 {
            let variants = 1 + rng.random::<u8>() % 6;
            let scene = sample_scene(&mut rng, 4.0, false, None, variants);
            for _ in 0..5 {
                let (text, facts) = caption(&mut rng, &scene);
                assert!(!facts.is_empty());
                assert_eq!(scene.relevance(&facts), 1.0, "{text} {facts:?} {scene:?}");
                if (8..=20).contains(&word_count(&text)) {
                    in_range += 1;
                }
            }
        }
        assert!(
            in_range as f64 > 0.95 * n as f64,
            "{in_range} of {n} captions have 8..=20 words"
        );
    }
}
