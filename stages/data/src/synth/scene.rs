//! The generated world: a vocabulary of sound sources, scenes of one to four events with
//! attributes and temporal relations, the facts a caption can state, and the graded relevance
//! of a caption (a set of facts) to a scene.
//!
//! # Relevance
//! A caption states a set of facts `F` (see [`Fact`]). Its relevance to a clip is the weighted
//! fraction of those facts that hold in the clip:
//!
//! ```text
//! relevance(caption, clip) = Σ_{f ∈ F} w(f) · [f holds in clip] / Σ_{f ∈ F} w(f)
//! ```
//!
//! with `w = 3` for the identity of a source ("a bell"), `w = 1` for an attribute of a source
//! (its pitch, loudness, speed or count) and `w = 1.5` for a relation between two sources
//! (one after the other, at the same time, one over a background). A caption is generated
//! only from facts true of its own clip, so its relevance to its own clip is 1.
//!
//! A scene never holds two events of one source, so "the event of source `s`" is well defined.

use rand::RngExt;
use serde::Serialize;

/// Weight of a source-identity fact.
pub const W_SOURCE: f32 = 3.0;
/// Weight of an attribute fact.
pub const W_ATTRIBUTE: f32 = 1.0;
/// Weight of a relation fact.
pub const W_RELATION: f32 = 1.5;

/// The procedurally synthesised source types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    RisingTone,
    FallingTone,
    Bell,
    Flute,
    Pluck,
    Horn,
    Rain,
    Wind,
    Knock,
    Footsteps,
    Engine,
    Birds,
    Siren,
}

/// Which attributes a source type carries.
#[derive(Debug, Clone, Copy)]
pub struct SourceTraits {
    /// High or low.
    pub pitch: bool,
    /// Fast or slow.
    pub speed: bool,
    /// A number of repetitions (1..=4).
    pub count: bool,
    /// Can be the background of a scene (a texture spanning the clip).
    pub texture: bool,
}

impl Source {
    pub const ALL: [Source; 13] = [
        Source::RisingTone,
        Source::FallingTone,
        Source::Bell,
        Source::Flute,
        Source::Pluck,
        Source::Horn,
        Source::Rain,
        Source::Wind,
        Source::Knock,
        Source::Footsteps,
        Source::Engine,
        Source::Birds,
        Source::Siren,
    ];

    /// Sources that can serve as a background.
    pub const TEXTURES: [Source; 3] = [Source::Rain, Source::Wind, Source::Engine];

    pub fn traits(self) -> SourceTraits {
        use Source::*;
        let (pitch, speed, count, texture) = match self {
            RisingTone | FallingTone | Bell | Flute | Pluck | Horn | Birds | Knock => {
                (true, true, true, false)
            }
            Rain => (false, false, false, true),
            Wind | Engine => (true, true, false, true),
            Footsteps | Siren => (true, true, false, false),
        };
        SourceTraits {
            pitch,
            speed,
            count,
            texture,
        }
    }

    pub fn name(self) -> &'static str {
        use Source::*;
        match self {
            RisingTone => "rising-tone",
            FallingTone => "falling-tone",
            Bell => "bell",
            Flute => "flute",
            Pluck => "plucked-string",
            Horn => "horn",
            Rain => "rain",
            Wind => "wind",
            Knock => "knock",
            Footsteps => "footsteps",
            Engine => "engine",
            Birds => "birds",
            Siren => "siren",
        }
    }
}

/// The words captions use for the variants of a source type, one per audible timbre
/// ([`super::render`] applies them), in variant order.
pub const VARIANT_WORDS: [&str; 6] = [
    "clear",
    "muffled",
    "tinny",
    "distorted",
    "echoing",
    "wobbling",
];

/// What a caption names: a source type and, in a data set with several variants per type, the
/// variant (`None` with one variant, the default). Two variants of one source are as different
/// as two sources: no fact about one holds for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kind {
    pub source: Source,
    pub variant: Option<u8>,
}

impl Kind {
    /// `bell`, or with a variant `muffled-bell`.
    pub fn name(self) -> String {
        match self.variant {
            None => self.source.name().to_owned(),
            Some(v) => format!("{}-{}", VARIANT_WORDS[v as usize], self.source.name()),
        }
    }
}

impl From<Source> for Kind {
    fn from(source: Source) -> Self {
        Self {
            source,
            variant: None,
        }
    }
}

/// Source pairs that never occur together in a training or validation clip; some test clips
/// hold one of them (compositional generalisation).
pub const HELD_OUT_PAIRS: [(Source, Source); 5] = [
    (Source::Bell, Source::Rain),
    (Source::Horn, Source::Wind),
    (Source::Birds, Source::Engine),
    (Source::Siren, Source::Footsteps),
    (Source::Flute, Source::Knock),
];

pub fn is_held_out_pair(a: Source, b: Source) -> bool {
    HELD_OUT_PAIRS
        .iter()
        .any(|&(x, y)| (x == a && y == b) || (x == b && y == a))
}

/// One sound event of a scene.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub source: Source,
    /// `Some(true)` = high, for sources with a pitch.
    pub high: Option<bool>,
    pub loud: bool,
    /// `Some(true)` = fast, for sources with a speed.
    pub fast: Option<bool>,
    /// Repetitions, for countable sources.
    pub count: Option<u8>,
    /// Seconds from the clip start.
    pub start: f32,
    pub end: f32,
    /// The background texture spanning the clip.
    pub background: bool,
    /// Seconds between repetitions (countable and stepped sources).
    pub interval: f32,
    /// Seed of the event's synthesis (pitch variation, noise).
    #[serde(skip)]
    pub seed: u64,
    /// The variant of the source type (an index into [`VARIANT_WORDS`]), in data sets with
    /// several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<u8>,
}

impl Event {
    /// What a caption names this event by.
    pub fn kind(&self) -> Kind {
        Kind {
            source: self.source,
            variant: self.variant,
        }
    }

    fn duration(&self) -> f32 {
        self.end - self.start
    }
}

/// A generated clip's content.
#[derive(Debug, Clone, Serialize)]
pub struct Scene {
    pub events: Vec<Event>,
}

/// Something a caption says about a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fact {
    Source(Kind),
    High(Kind, bool),
    Loud(Kind, bool),
    Fast(Kind, bool),
    Count(Kind, u8),
    /// The first source ends before the second starts.
    Then(Kind, Kind),
    /// The two overlap for at least half of the shorter one.
    Together(Kind, Kind),
    /// The first is in the foreground over the second as the background.
    Over(Kind, Kind),
}

impl Fact {
    pub fn weight(self) -> f32 {
        match self {
            Fact::Source(_) => W_SOURCE,
            Fact::High(..) | Fact::Loud(..) | Fact::Fast(..) | Fact::Count(..) => W_ATTRIBUTE,
            Fact::Then(..) | Fact::Together(..) | Fact::Over(..) => W_RELATION,
        }
    }
}

/// Tolerance (seconds) of the "one after the other" relation.
const THEN_TOLERANCE: f32 = 0.02;

impl Scene {
    pub fn event(&self, source: Source) -> Option<&Event> {
        self.events.iter().find(|e| e.source == source)
    }

    /// The event of `kind`: of its source type and variant.
    pub fn event_of(&self, kind: Kind) -> Option<&Event> {
        self.event(kind.source)
            .filter(|e| e.variant == kind.variant)
    }

    pub fn sources(&self) -> impl Iterator<Item = Source> + '_ {
        self.events.iter().map(|e| e.source)
    }

    pub fn holds(&self, fact: Fact) -> bool {
        match fact {
            Fact::Source(s) => self.event_of(s).is_some(),
            Fact::High(s, v) => self.event_of(s).is_some_and(|e| e.high == Some(v)),
            Fact::Loud(s, v) => self.event_of(s).is_some_and(|e| e.loud == v),
            Fact::Fast(s, v) => self.event_of(s).is_some_and(|e| e.fast == Some(v)),
            Fact::Count(s, n) => self.event_of(s).is_some_and(|e| e.count == Some(n)),
            Fact::Then(a, b) => match (self.event_of(a), self.event_of(b)) {
                (Some(a), Some(b)) => a.end <= b.start + THEN_TOLERANCE,
                _ => false,
            },
            Fact::Together(a, b) => match (self.event_of(a), self.event_of(b)) {
                (Some(a), Some(b)) => {
                    let overlap = a.end.min(b.end) - a.start.max(b.start);
                    overlap >= 0.5 * a.duration().min(b.duration())
                }
                _ => false,
            },
            Fact::Over(fg, bg) => match (self.event_of(fg), self.event_of(bg)) {
                (Some(f), Some(b)) => !f.background && b.background,
                _ => false,
            },
        }
    }

    /// Weighted fraction of `facts` that hold in this scene (0 for no facts).
    pub fn relevance(&self, facts: &[Fact]) -> f32 {
        let total: f32 = facts.iter().map(|f| f.weight()).sum();
        if total == 0.0 {
            return 0.0;
        }
        let held: f32 = facts
            .iter()
            .filter(|f| self.holds(**f))
            .map(|f| f.weight())
            .sum();
        held / total
    }

    /// Foreground events in order of onset.
    pub fn foreground(&self) -> Vec<&Event> {
        let mut fg: Vec<&Event> = self.events.iter().filter(|e| !e.background).collect();
        fg.sort_by(|a, b| a.start.total_cmp(&b.start));
        fg
    }

    pub fn background(&self) -> Option<&Event> {
        self.events.iter().find(|e| e.background)
    }
}

fn pick<T: Copy>(rng: &mut impl RngExt, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Number of events: 1 (20 %), 2 (35 %), 3 (30 %), 4 (15 %).
fn sample_event_count(rng: &mut impl RngExt) -> usize {
    let u: f32 = rng.random();
    if u < 0.2 {
        1
    } else if u < 0.55 {
        2
    } else if u < 0.85 {
        3
    } else {
        4
    }
}

/// Seconds between repetitions of a countable or stepped source.
fn sample_interval(rng: &mut impl RngExt, source: Source, fast: bool) -> f32 {
    match (source, fast) {
        (Source::Footsteps, true) => rng.random_range(0.24..0.32),
        (Source::Footsteps, false) => rng.random_range(0.5..0.65),
        (Source::Knock | Source::Birds, true) => rng.random_range(0.11..0.17),
        (Source::Knock | Source::Birds, false) => rng.random_range(0.3..0.42),
        (_, true) => rng.random_range(0.16..0.24),
        (_, false) => rng.random_range(0.38..0.52),
    }
}

/// Draws a scene of `clip_seconds`. Scenes holding a pair in `forbidden` are redrawn; with
/// `force`, both sources of that pair are in the scene. With `variants > 1`, each event is one
/// of that many variants of its source type, fixed by its synthesis seed (so that the rest of
/// the scene is the same for every number of variants).
pub fn sample_scene(
    rng: &mut impl RngExt,
    clip_seconds: f32,
    forbid_held_out: bool,
    force: Option<(Source, Source)>,
    variants: u8,
) -> Scene {
    loop {
        if let Some(mut scene) = try_sample_scene(rng, clip_seconds, force) {
            if variants > 1 {
                for e in &mut scene.events {
                    e.variant = Some((e.seed % u64::from(variants)) as u8);
                }
            }
            let sources: Vec<Source> = scene.sources().collect();
            let bad = forbid_held_out
                && sources
                    .iter()
                    .enumerate()
                    .any(|(i, &a)| sources[i + 1..].iter().any(|&b| is_held_out_pair(a, b)));
            if !bad {
                return scene;
            }
        }
    }
}

fn try_sample_scene(
    rng: &mut impl RngExt,
    clip_seconds: f32,
    force: Option<(Source, Source)>,
) -> Option<Scene> {
    let mut n = sample_event_count(rng);
    if force.is_some() {
        n = n.max(2);
    }
    let mut sources: Vec<Source> = Vec::with_capacity(n);
    if let Some((a, b)) = force {
        sources.push(a);
        sources.push(b);
    }
    while sources.len() < n {
        let s = pick(rng, &Source::ALL);
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    // A background: a texture among the scene's sources, in about 40 % of multi-event scenes.
    let mut background = None;
    if n >= 2 && rng.random_bool(0.4) {
        let textures: Vec<usize> = (0..n).filter(|&i| sources[i].traits().texture).collect();
        if textures.is_empty() {
            // Replace a random non-forced source by a texture not already present.
            let first_free = if force.is_some() { 2 } else { 0 };
            if first_free < n {
                let t = pick(rng, &Source::TEXTURES);
                if !sources.contains(&t) {
                    let i = rng.random_range(first_free..n);
                    sources[i] = t;
                    background = Some(i);
                }
            }
        } else {
            background = Some(pick(rng, &textures));
        }
    }

    // Attributes and intrinsic durations.
    let mut events: Vec<Event> = sources
        .iter()
        .enumerate()
        .map(|(i, &source)| {
            let t = source.traits();
            let high = t.pitch.then(|| rng.random_bool(0.5));
            let loud = rng.random_bool(0.5);
            let fast = t.speed.then(|| rng.random_bool(0.5));
            let count = t.count.then(|| rng.random_range(1..=4u8));
            let interval = sample_interval(rng, source, fast.unwrap_or(false));
            let duration = match count {
                Some(c) => {
                    c as f32 * interval
                        + if source == Source::Bell || source == Source::Pluck {
                            0.25
                        } else {
                            0.05
                        }
                }
                None => rng.random_range(1.0..2.0),
            };
            Event {
                source,
                high,
                loud,
                fast,
                count,
                start: 0.0,
                end: duration,
                background: background == Some(i),
                interval,
                seed: rng.random(),
                variant: None,
            }
        })
        .collect();

    // Layout of the foreground: a sequence of groups of one or two simultaneous events.
    let mut fg: Vec<usize> = (0..n).filter(|&i| !events[i].background).collect();
    for i in (1..fg.len()).rev() {
        let j = rng.random_range(0..=i);
        fg.swap(i, j);
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &i in &fg {
        match groups.last_mut() {
            Some(g) if g.len() == 1 && rng.random_bool(0.35) => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    // Offsets inside each group and the group's length.
    let mut group_len = Vec::with_capacity(groups.len());
    for g in &groups {
        let d0 = events[g[0]].duration();
        events[g[0]].end = d0;
        events[g[0]].start = 0.0;
        let mut len = d0;
        if let Some(&second) = g.get(1) {
            let d1 = events[second].duration();
            // Overlap of at least 60 % of the shorter event keeps "together" true.
            let max_offset = (d0 - 0.6 * d0.min(d1)).max(0.0);
            let offset = rng.random_range(0.0..=max_offset.min(0.3 * d0));
            events[second].start = offset;
            events[second].end = offset + d1;
            len = len.max(offset + d1);
        }
        group_len.push(len);
    }
    let gaps: Vec<f32> = (0..groups.len().saturating_sub(1))
        .map(|_| rng.random_range(0.1..0.4))
        .collect();
    let total: f32 = group_len.iter().sum::<f32>() + gaps.iter().sum::<f32>();
    let margin = 0.1;
    if total > clip_seconds - 2.0 * margin {
        return None;
    }
    let mut t = margin + rng.random_range(0.0..=(clip_seconds - 2.0 * margin - total));
    for (k, g) in groups.iter().enumerate() {
        for &i in g {
            events[i].start += t;
            events[i].end += t;
        }
        t += group_len[k] + gaps.get(k).copied().unwrap_or(0.0);
    }
    for e in events.iter_mut().filter(|e| e.background) {
        e.start = 0.0;
        e.end = clip_seconds;
    }
    Some(Scene { events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn scenes_respect_layout_and_held_out_pairs() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..500 {
            let scene = sample_scene(&mut rng, 4.0, true, None, 1);
            assert!((1..=4).contains(&scene.events.len()));
            assert!(scene.events.iter().filter(|e| e.background).count() <= 1);
            let sources: Vec<Source> = scene.sources().collect();
            for (i, a) in sources.iter().enumerate() {
                for b in &sources[i + 1..] {
                    assert_ne!(a, b);
                    assert!(!is_held_out_pair(*a, *b));
                }
            }
            for e in &scene.events {
                assert!(e.start >= 0.0 && e.end <= 4.0 && e.start < e.end, "{e:?}");
            }
        }
        let scene = sample_scene(&mut rng, 4.0, false, Some((Source::Bell, Source::Rain)), 1);
        assert!(
            scene.holds(Fact::Source(Source::Bell.into()))
                && scene.holds(Fact::Source(Source::Rain.into()))
        );
    }

    #[test]
    fn relevance_is_the_weighted_fraction_of_true_facts() {
        let ev = |source, start, end, background| Event {
            source,
            high: Some(true),
            loud: true,
            fast: Some(false),
            count: Some(2),
            start,
            end,
            background,
            interval: 0.4,
            seed: 0,
            variant: None,
        };
        let scene = Scene {
            events: vec![
                ev(Source::Bell, 0.5, 1.5, false),
                ev(Source::Horn, 2.0, 3.0, false),
            ],
        };
        assert!(scene.holds(Fact::Then(Source::Bell.into(), Source::Horn.into())));
        assert!(!scene.holds(Fact::Then(Source::Horn.into(), Source::Bell.into())));
        assert!(!scene.holds(Fact::Together(Source::Horn.into(), Source::Bell.into())));
        let facts = [
            Fact::Source(Source::Bell.into()),
            Fact::High(Source::Bell.into(), false),
            Fact::Source(Source::Siren.into()),
        ];
        // 3 of 3 + 1 + 3 hold.
        assert!((scene.relevance(&facts) - 3.0 / 7.0).abs() < 1e-6);
        assert_eq!(
            scene.relevance(&[
                Fact::Source(Source::Horn.into()),
                Fact::Count(Source::Horn.into(), 2)
            ]),
            1.0
        );
    }

    #[test]
    fn variants_of_one_source_share_no_fact() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let plain = sample_scene(&mut rng.clone(), 4.0, true, None, 1);
        let varied = sample_scene(&mut rng, 4.0, true, None, 4);
        // The same scene, only with variants.
        assert_eq!(plain.events.len(), varied.events.len());
        for (a, b) in plain.events.iter().zip(&varied.events) {
            assert_eq!(
                (a.source, a.start, a.end, a.variant),
                (b.source, b.start, b.end, None)
            );
            assert!(b.variant.is_some_and(|v| v < 4));
        }
        let e = &varied.events[0];
        let own = e.kind();
        let other = Kind {
            variant: Some((own.variant.unwrap() + 1) % 4),
            ..own
        };
        assert!(varied.holds(Fact::Source(own)) && !varied.holds(Fact::Source(other)));
        assert!(!varied.holds(Fact::Loud(other, e.loud)));
        assert!(
            !varied.holds(Fact::Source(e.source.into())),
            "no variant is not a variant"
        );
        assert_eq!(
            other.name(),
            format!(
                "{}-{}",
                VARIANT_WORDS[other.variant.unwrap() as usize],
                e.source.name()
            )
        );
    }
}
