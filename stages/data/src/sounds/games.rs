//! Sources from the data packages of two strategy games: Battle for Wesnoth's unit and
//! weapon sounds and Widelands' animal and work sounds. Both keep one sound per file with a
//! file name that says what is heard (`wolf-growl-2.ogg`, `woodcutting/tree_falling_00.ogg`);
//! the descriptions below are hand-written from those names (and, for Widelands, from the
//! original recording's name in the upstream sound list). Names that say nothing about the
//! sound (UI clicks, jingles, status effects of the game, fantasy creatures without a
//! real-world counterpart) are not listed and so not used.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

use super::catalog::{
    AudioData, Phrase, Recording, WESNOTH, WIDELANDS, licence_of, read_copyright, split_category,
    walk_files,
};

/// Relative path under `root` with `/` separators.
fn relative(root: &Path, file: &Path) -> anyhow::Result<String> {
    Ok(file
        .strip_prefix(root)?
        .to_string_lossy()
        .replace('\\', "/"))
}

/// `dir/name-2.ogg` → `dir/name`, `magic-missile-1-miss.wav` → `magic-missile-miss`,
/// `ambient/birds1.ogg` → `ambient/birds`, `tree_falling_00.ogg` → `tree_falling`: the
/// variant numbers dropped, so that every take of a sound shares one description.
pub fn sound_stem(rel: &str) -> Option<String> {
    let (stem, ext) = rel.rsplit_once('.')?;
    if !matches!(ext, "ogg" | "wav") {
        return None;
    }
    let (dir, name) = stem.rsplit_once('/').map_or(("", stem), |(d, n)| (d, n));
    let parts: Vec<&str> = name
        .split(['-', '_'])
        .filter(|p| !p.is_empty() && !p.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let sep = if name.contains('_') { "_" } else { "-" };
    let name = parts.join(sep);
    let name = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if name.is_empty() {
        return None;
    }
    Some(if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    })
}

// ---------------------------------------------------------------------------------------------
// Battle for Wesnoth 1.16: `data/core/sounds/<name>[-<n>].{ogg,wav}`, plus `ambient/` and
// `horn-signals/`. The package's `copyright` is not machine-readable; it puts all of Wesnoth
// under GPL-2+.

pub const WESNOTH_DIR: &str = "usr/share/games/wesnoth/1.16/data/core/sounds";

const WESNOTH_LICENCE: &str = "GPL-2+";

/// Sound stem ([`sound_stem`]) → (description, category). Every take of a stem is used.
/// Left out: status effects (`poison`, `slowed`, `petrified`, `entangle`, `potion`), sounds of
/// fantasy creatures without a real-world counterpart (wose, naga, lich, tusker), `ugg`,
/// `tail`, `melee-fire`, `dragonstick`, the `fanfare` jingle, the ambient loops whose content
/// the name does not give (`morning`, `night`, `ship`) and the UI sounds in `sounds/`.
const WESNOTH_SOUNDS: &[(&str, &str, &str)] = &[
    ("ambient/birds", "birds chirping and singing", "animal/bird"),
    ("ambient/campfire", "a campfire crackling", "fire/campfire"),
    (
        "ambient/wardrums",
        "war drums beating",
        "instrument/percussion/drum",
    ),
    (
        "horn-signals/horn",
        "a horn sounding a signal",
        "signal/horn",
    ),
    ("axe", "an axe striking a blow", "weapon/blade/axe"),
    (
        "bat-flapping",
        "a bat flapping its wings",
        "animal/mammal/bat",
    ),
    ("bat-hit", "a bat squeaking in pain", "animal/mammal/bat"),
    ("bite", "an animal biting down hard", "animal/attack/bite"),
    ("bite-small", "a small animal biting", "animal/attack/bite"),
    (
        "bow",
        "an arrow shot from a bow hitting its target",
        "weapon/bow",
    ),
    (
        "bow-miss",
        "an arrow shot from a bow whizzing past",
        "weapon/bow",
    ),
    ("bow-puny", "an arrow shot from a small bow", "weapon/bow"),
    (
        "bow-puny-miss",
        "an arrow from a small bow whizzing past",
        "weapon/bow",
    ),
    (
        "bow-puny-fire",
        "a flaming arrow shot from a small bow",
        "weapon/bow/fire",
    ),
    (
        "bow-puny-fire-miss",
        "a flaming arrow from a small bow whooshing past",
        "weapon/bow/fire",
    ),
    (
        "cave-in",
        "rocks collapsing in a cave-in",
        "impact/rockfall",
    ),
    ("claws", "claws slashing", "animal/attack/claw"),
    (
        "club",
        "a wooden club hitting with a thud",
        "weapon/blunt/club",
    ),
    (
        "club-miss",
        "a wooden club swung through the air",
        "weapon/blunt/club",
    ),
    (
        "crossbow",
        "a crossbow bolt fired and hitting",
        "weapon/crossbow",
    ),
    (
        "crossbow-miss",
        "a crossbow bolt fired and missing",
        "weapon/crossbow",
    ),
    (
        "crossbow-fire",
        "a flaming crossbow bolt fired",
        "weapon/crossbow",
    ),
    (
        "crossbow-fire-miss",
        "a flaming crossbow bolt whooshing past",
        "weapon/crossbow",
    ),
    (
        "dagger-swish",
        "a dagger swishing through the air",
        "weapon/blade/knife",
    ),
    ("dart", "a dart thrown through the air", "weapon/throw"),
    (
        "drake-hit",
        "a dragon roaring in pain",
        "creature/dragon/pain",
    ),
    (
        "drake-die",
        "a dragon roaring as it dies",
        "creature/dragon/death",
    ),
    ("dwarf-hit", "a man grunting in pain", "voice/man/pain"),
    (
        "dwarf-die",
        "a man crying out as he dies",
        "voice/man/death",
    ),
    ("dwarf-laugh", "a man laughing heartily", "voice/man/laugh"),
    ("elf-hit", "a man grunting in pain", "voice/man/pain"),
    ("explosion", "an explosion", "impact/explosion"),
    ("fire", "a fire roaring", "fire/blaze"),
    ("fist", "a punch landing with a thump", "impact/punch"),
    ("flail", "a spiked flail striking", "weapon/blunt/flail"),
    (
        "flail-miss",
        "a flail swung through the air",
        "weapon/blunt/flail",
    ),
    ("flame-big", "a big burst of flame", "fire/blast"),
    (
        "flame-big-miss",
        "a big burst of flame whooshing past",
        "fire/blast",
    ),
    ("fuse", "a fuse fizzing as it burns", "fire/fuse"),
    (
        "ghoul-hit",
        "a ghoul snarling in pain",
        "creature/undead/pain",
    ),
    (
        "goblin-hit",
        "a goblin squealing in pain",
        "creature/monster/pain",
    ),
    (
        "goblin-die",
        "a goblin squealing as it dies",
        "creature/monster/death",
    ),
    ("gold", "gold coins jingling", "household/money"),
    ("groan", "a man groaning", "voice/man/pain"),
    (
        "gryphon-hit",
        "a gryphon screeching in pain",
        "creature/gryphon",
    ),
    (
        "gryphon-die",
        "a gryphon screeching as it dies",
        "creature/gryphon",
    ),
    (
        "gryphon-shriek",
        "a gryphon shrieking like an eagle",
        "creature/gryphon",
    ),
    ("gunshot", "a gunshot", "weapon/gun"),
    ("hatchet", "a hatchet chopping", "weapon/blade/axe"),
    (
        "hatchet-miss",
        "a hatchet swung through the air",
        "weapon/blade/axe",
    ),
    ("heal", "a shimmering magical healing sound", "magic/heal"),
    ("hiss", "a snake hissing", "animal/reptile/snake"),
    (
        "hiss-big",
        "a big snake hissing loudly",
        "animal/reptile/snake",
    ),
    (
        "hiss-hit",
        "a snake hissing in pain",
        "animal/reptile/snake",
    ),
    (
        "hiss-die",
        "a snake hissing as it dies",
        "animal/reptile/snake",
    ),
    ("horse-canter", "a horse cantering", "animal/mammal/equine"),
    (
        "horse-elf-canter",
        "a horse cantering lightly",
        "animal/mammal/equine",
    ),
    (
        "horse-hit",
        "a horse whinnying in pain",
        "animal/mammal/equine",
    ),
    (
        "horse-die",
        "a horse neighing as it dies",
        "animal/mammal/equine",
    ),
    ("human-hit", "a man grunting in pain", "voice/man/pain"),
    (
        "human-die",
        "a man crying out as he dies",
        "voice/man/death",
    ),
    (
        "human-female-hit",
        "a woman crying out in pain",
        "voice/woman/pain",
    ),
    (
        "human-female-die",
        "a woman screaming as she dies",
        "voice/woman/death",
    ),
    (
        "human-old-hit",
        "an old man groaning in pain",
        "voice/man/pain",
    ),
    (
        "human-old-die",
        "an old man crying out as he dies",
        "voice/man/death",
    ),
    ("ink", "a squirt of ink hitting", "water/squirt"),
    ("ink-miss", "a squirt of ink splashing past", "water/squirt"),
    ("knife", "a knife slashing", "weapon/blade/knife"),
    (
        "lightning",
        "a crackling bolt of lightning",
        "magic/lightning",
    ),
    (
        "lightning-miss",
        "a bolt of lightning crackling past",
        "magic/lightning",
    ),
    ("mace", "a mace striking a heavy blow", "weapon/blunt/mace"),
    (
        "mace-miss",
        "a mace swung through the air",
        "weapon/blunt/mace",
    ),
    ("magic-dark", "a dark, ominous spell", "magic/dark"),
    (
        "magic-dark-miss",
        "a dark spell missing its target",
        "magic/dark",
    ),
    ("magic-dark-big", "a big, dark, ominous spell", "magic/dark"),
    (
        "magic-dark-big-miss",
        "a big dark spell missing its target",
        "magic/dark",
    ),
    ("magic-faeriefire", "a sparkling fairy spell", "magic/fairy"),
    (
        "magic-faeriefire-miss",
        "a sparkling fairy spell missing",
        "magic/fairy",
    ),
    ("magic-holy", "a shimmering holy spell", "magic/holy"),
    (
        "magic-holy-miss",
        "a shimmering holy spell missing",
        "magic/holy",
    ),
    (
        "magic-missile",
        "a magic missile whooshing and hitting",
        "magic/missile",
    ),
    (
        "magic-missile-miss",
        "a magic missile whooshing past",
        "magic/missile",
    ),
    ("magicmissile", "a magic missile whooshing", "magic/missile"),
    (
        "magic-thorns",
        "a magic spell of lashing thorns",
        "magic/thorns",
    ),
    (
        "magic-thorns-miss",
        "a magic spell of thorns missing",
        "magic/thorns",
    ),
    (
        "mermaid-hit",
        "a woman crying out in pain",
        "voice/woman/pain",
    ),
    (
        "mermaid-die",
        "a woman screaming as she dies",
        "voice/woman/death",
    ),
    ("mermen-hit", "a man grunting in pain", "voice/man/pain"),
    (
        "mermen-die",
        "a man crying out as he dies",
        "voice/man/death",
    ),
    ("miss", "a weapon swishing through the air", "weapon/swing"),
    ("mud-fist", "a fist of mud slapping wetly", "impact/splat"),
    (
        "mud-fist-miss",
        "a wet swipe of mud missing",
        "impact/splat",
    ),
    ("mud-glob", "a glob of mud splatting", "impact/splat"),
    ("mud-glob-miss", "a glob of mud flying past", "impact/splat"),
    ("net", "a net being thrown", "weapon/throw"),
    (
        "ogre-hit",
        "an ogre roaring in pain",
        "creature/monster/pain",
    ),
    (
        "ogre-die",
        "an ogre groaning as it dies",
        "creature/monster/death",
    ),
    (
        "open-chest",
        "a wooden chest creaking open",
        "household/chest",
    ),
    (
        "orc-hit",
        "an orc grunting in pain",
        "creature/monster/pain",
    ),
    (
        "orc-die",
        "an orc crying out as it dies",
        "creature/monster/death",
    ),
    (
        "orc-small-hit",
        "a small orc grunting in pain",
        "creature/monster/pain",
    ),
    (
        "orc-small-die",
        "a small orc crying out as it dies",
        "creature/monster/death",
    ),
    ("pincers", "pincers snapping", "animal/attack/pincer"),
    ("rumble", "a deep rumble", "impact/rumble"),
    (
        "skeleton-hit",
        "bones rattling as a skeleton is hit",
        "creature/undead/bones",
    ),
    (
        "skeleton-die",
        "a skeleton collapsing in a clatter of bones",
        "creature/undead/bones",
    ),
    (
        "skeleton-big-hit",
        "big bones rattling as a skeleton is hit",
        "creature/undead/bones",
    ),
    (
        "skeleton-big-die",
        "a big skeleton collapsing in a clatter of bones",
        "creature/undead/bones",
    ),
    ("sling", "a stone hurled from a sling", "weapon/sling"),
    (
        "sling-miss",
        "a stone from a sling whizzing past",
        "weapon/sling",
    ),
    (
        "sling-big",
        "a big stone hurled from a sling",
        "weapon/sling",
    ),
    (
        "sling-big-miss",
        "a big stone from a sling whizzing past",
        "weapon/sling",
    ),
    ("spear", "a spear thrust hitting", "weapon/spear"),
    ("spear-miss", "a spear thrust missing", "weapon/spear"),
    ("squishy-hit", "a squishy, wet hit", "impact/splat"),
    (
        "squishy-miss",
        "a squishy, wet swipe missing",
        "impact/splat",
    ),
    ("squishy-strike", "a squishy, wet strike", "impact/splat"),
    ("staff", "a wooden staff striking", "weapon/blunt/staff"),
    (
        "staff-miss",
        "a wooden staff swung through the air",
        "weapon/blunt/staff",
    ),
    ("sword", "a sword striking", "weapon/blade/sword"),
    ("throw", "something thrown with a whoosh", "weapon/throw"),
    (
        "throwing-knife",
        "a throwing knife hitting",
        "weapon/blade/knife",
    ),
    (
        "throwing-knife-miss",
        "a throwing knife whizzing past",
        "weapon/blade/knife",
    ),
    ("thunderstick", "a musket firing", "weapon/gun"),
    (
        "thunderstick-miss",
        "a musket firing and missing",
        "weapon/gun",
    ),
    ("torch", "a burning torch swung with a whoosh", "fire/torch"),
    ("torch-miss", "a burning torch whooshing past", "fire/torch"),
    (
        "troll-hit",
        "a troll roaring in pain",
        "creature/monster/pain",
    ),
    (
        "troll-die",
        "a troll groaning as it dies",
        "creature/monster/death",
    ),
    ("wail", "a ghost wailing", "creature/undead/ghost"),
    (
        "wail-long",
        "a ghost wailing for a long time",
        "creature/undead/ghost",
    ),
    (
        "wail-sml",
        "a ghost wailing briefly",
        "creature/undead/ghost",
    ),
    ("water-blast", "a blast of water splashing", "water/splash"),
    ("wolf-hit", "a wolf yelping in pain", "animal/mammal/dog"),
    ("wolf-die", "a wolf howling as it dies", "animal/mammal/dog"),
    ("wolf-growl", "a wolf growling", "animal/mammal/dog"),
    (
        "yeti-hit",
        "a yeti roaring in pain",
        "creature/monster/pain",
    ),
    (
        "yeti-die",
        "a yeti roaring as it dies",
        "creature/monster/death",
    ),
    (
        "zombie-attack",
        "a zombie growling as it attacks",
        "creature/undead/zombie",
    ),
    (
        "zombie-hit",
        "a zombie groaning in pain",
        "creature/undead/zombie",
    ),
];

pub fn wesnoth(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let root = dir.join(WESNOTH_DIR);
    let mut files = Vec::new();
    walk_files(&root, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = relative(&root, &file)?;
        let Some(stem) = sound_stem(&rel) else {
            continue;
        };
        let Some(&(_, description, category)) = WESNOTH_SOUNDS.iter().find(|s| s.0 == stem) else {
            continue;
        };
        out.push(Recording {
            package: WESNOTH,
            path: format!("{WESNOTH_DIR}/{rel}"),
            description: description.to_owned(),
            phrase: Phrase::Event,
            category: split_category(category),
            licence: WESNOTH_LICENCE.to_owned(),
            credit: None,
            group: Some(stem),
            audio: AudioData::File(file),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Widelands 1.1: `data/sound/<dir>/<name>[_<nn>].ogg`. The DEP-5 `copyright` gives the
// licence (`data/*`: GPL-2+); `wl-sound-docu.csv` names, for part of the sounds, the author,
// the original recording's name, its source and licence (kept as the credit), and marks
// files that duplicate another one (`DUPLICATE to inn_01.ogg`; left out). Sounds cut from one
// original (`goldping`, `ironping`: "metal-ping1.aiff") and the takes `_<nn>` of a sound the
// sheet does not list share a split.

pub const WIDELANDS_DIR: &str = "usr/share/games/widelands/data/sound";
const WIDELANDS_DOC: &str = "wl-sound-docu.csv";

/// Path under `data/sound/` without extension, either with the take's number (a take with a
/// description of its own) or its stem ([`sound_stem`]) → (description, phrase, category).
/// Left out: UI and message sounds (`click`, `lobby_*`, `message`, `military/*`,
/// `create_construction_site`) and `farm/farm_animal`, which the name does not identify.
const WIDELANDS_SOUNDS: &[(&str, &str, Phrase, &str)] = &[
    (
        "animals/bird",
        "a bird singing",
        Phrase::Event,
        "animal/bird",
    ),
    (
        "animals/boar",
        "a pig grunting",
        Phrase::Event,
        "animal/mammal/pig",
    ),
    (
        "animals/coyote",
        "a coyote howling",
        Phrase::Event,
        "animal/mammal/dog",
    ),
    (
        "animals/crickets",
        "crickets chirping",
        Phrase::Event,
        "animal/insect",
    ),
    (
        "animals/frog",
        "a frog croaking",
        Phrase::Event,
        "animal/amphibian",
    ),
    (
        "animals/moose",
        "an elk bellowing in a forest",
        Phrase::Event,
        "animal/mammal/deer",
    ),
    (
        "animals/stag",
        "a red stag roaring",
        Phrase::Event,
        "animal/mammal/deer",
    ),
    (
        "animals/wolf",
        "a wolf howling",
        Phrase::Event,
        "animal/mammal/dog",
    ),
    (
        "atlanteans/cutting/stonecutter",
        "a pickaxe striking rock",
        Phrase::Event,
        "tool/pickaxe",
    ),
    (
        "atlanteans/goldspin",
        "metal debris clattering as it falls",
        Phrase::Event,
        "impact/metal",
    ),
    (
        "atlanteans/saw/benchsaw",
        "a bench saw cutting wood",
        Phrase::Event,
        "tool/saw",
    ),
    (
        "atlanteans/saw/sawing",
        "someone sawing wood with a hand saw",
        Phrase::Event,
        "tool/saw",
    ),
    (
        "barbarians/blackwood",
        "water trickling in a creek",
        Phrase::Event,
        "water/stream",
    ),
    (
        "barbarians/mortar",
        "stones being gathered and clattering together",
        Phrase::Event,
        "impact/stone",
    ),
    (
        "barbarians/stonegrind",
        "stone grinding against stone",
        Phrase::Event,
        "industry/mill",
    ),
    (
        "barbarians/taverns/biginn_00",
        "dishes clinking as a meal is prepared",
        Phrase::Event,
        "household/dishes",
    ),
    (
        "barbarians/taverns/biginn_01",
        "the glass lid of a cookie jar clinking",
        Phrase::Event,
        "household/glass",
    ),
    (
        "barbarians/taverns/inn_00",
        "dishes clinking as a meal is prepared",
        Phrase::Event,
        "household/dishes",
    ),
    (
        "barbarians/taverns/inn_01",
        "food sizzling in a frying pan",
        Phrase::Event,
        "household/cooking",
    ),
    (
        "barbarians/taverns/tavern",
        "dishes clattering",
        Phrase::Event,
        "household/dishes",
    ),
    (
        "barbarians/weaver",
        "an old wooden loom weaving",
        Phrase::Event,
        "industry/loom",
    ),
    (
        "empire/beerbubble",
        "liquid gurgling and bubbling in a fermenter",
        Phrase::Event,
        "water/bubble",
    ),
    (
        "empire/winebubble",
        "big bubbles rising in water",
        Phrase::Event,
        "water/bubble",
    ),
    (
        "empire/taverns/meal_01",
        "glass bottles clinking",
        Phrase::Event,
        "household/glass",
    ),
    (
        "farm/donkey",
        "a donkey braying",
        Phrase::Event,
        "animal/mammal/equine",
    ),
    (
        "farm/horse",
        "a horse neighing",
        Phrase::Event,
        "animal/mammal/equine",
    ),
    (
        "farm/ox",
        "an ox lowing",
        Phrase::Event,
        "animal/mammal/bovine",
    ),
    (
        "farm/scythe",
        "a scythe cutting grass",
        Phrase::Event,
        "tool/scythe",
    ),
    (
        "farm/sheep",
        "sheep bleating",
        Phrase::Event,
        "animal/mammal/bovine",
    ),
    (
        "fisher/fisher_pull_net",
        "a fishing net pulled out of the water",
        Phrase::Event,
        "water/splash",
    ),
    (
        "fisher/fisher_throw_net",
        "a fishing net thrown into the water",
        Phrase::Event,
        "water/splash",
    ),
    (
        "hammering/geologist_hammer",
        "a hammer tapping on rock",
        Phrase::Event,
        "tool/hammer",
    ),
    (
        "hammering/hammering",
        "someone hammering",
        Phrase::Event,
        "tool/hammer",
    ),
    (
        "metal/fizzle",
        "a hot fire fizzling",
        Phrase::Event,
        "fire/blaze",
    ),
    (
        "metal/furnace",
        "a fire roaring in a furnace",
        Phrase::Event,
        "fire/blaze",
    ),
    (
        "metal/goldping",
        "a metal ping",
        Phrase::Event,
        "impact/metal",
    ),
    (
        "metal/ironping",
        "a metal ping",
        Phrase::Event,
        "impact/metal",
    ),
    (
        "mill/mill_turning",
        "the wheel of a mill turning",
        Phrase::Event,
        "industry/mill",
    ),
    (
        "mill/weaving",
        "the looms of a weaving mill clattering",
        Phrase::Event,
        "industry/loom",
    ),
    (
        "other/falling_tools",
        "tools clattering as they fall",
        Phrase::Event,
        "impact/metal",
    ),
    (
        "sawmill/sawmill",
        "a sawmill cutting wood",
        Phrase::Event,
        "tool/saw",
    ),
    (
        "smiths/sharpening",
        "a blade being sharpened on a grindstone",
        Phrase::Event,
        "tool/grindstone",
    ),
    (
        "smiths/smith",
        "a blacksmith hammering on an anvil",
        Phrase::Event,
        "tool/hammer",
    ),
    (
        "smiths/toolsmith",
        "a toolsmith hammering metal",
        Phrase::Event,
        "tool/hammer",
    ),
    (
        "stonecutting/stonecutter",
        "stone being cut with a chisel",
        Phrase::Event,
        "tool/chisel",
    ),
    (
        "stonecutting/stonemason",
        "a stonemason chiselling stone",
        Phrase::Event,
        "tool/chisel",
    ),
    (
        "woodcutting/fast_woodcutting",
        "an axe chopping wood quickly",
        Phrase::Event,
        "tool/axe",
    ),
    (
        "woodcutting/tree_falling",
        "a tree falling",
        Phrase::Event,
        "nature/tree",
    ),
    (
        "woodcutting/woodcutting",
        "an axe chopping wood",
        Phrase::Event,
        "tool/axe",
    ),
];

/// Fields of one CSV line (`"..."` quoting with `""` escapes).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("one field").push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// What `wl-sound-docu.csv` says about one file.
#[derive(Debug, Clone, PartialEq)]
pub struct WidelandsDoc {
    /// `sound/empire`, `data/sound/animals`.
    pub location: String,
    pub author: String,
    pub licence: String,
    pub original: String,
    pub source: String,
}

/// A field of the sheet that says something (not empty, not `UNKNOWN`).
fn known(field: &str) -> bool {
    !field.is_empty() && field != "UNKNOWN"
}

impl WidelandsDoc {
    /// `DUPLICATE to inn_01.ogg` in the author column.
    pub fn is_duplicate(&self) -> bool {
        self.author.starts_with("DUPLICATE")
    }

    /// `Original "x.wav" (source) by Author, licence L` from the fields that are known.
    pub fn credit(&self) -> Option<String> {
        let mut parts = Vec::new();
        if known(&self.original) {
            parts.push(format!("Original \"{}\"", self.original));
        }
        if known(&self.source) {
            parts.push(format!("from {}", self.source));
        }
        if known(&self.author) {
            parts.push(format!("by {}", self.author));
        }
        if known(&self.licence) {
            parts.push(format!("upstream licence {}", self.licence));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// `wl-sound-docu.csv`: file name → its row (`File Name,Format,Location,Usage,Author,License,
/// reworked,Original File Name,Source,...`; title and note lines before the header).
pub fn parse_widelands_doc(text: &str) -> BTreeMap<String, WidelandsDoc> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f = csv_fields(line.trim_end_matches('\r'));
        if f.len() < 9 || !f[0].ends_with(".ogg") {
            continue;
        }
        out.insert(
            f[0].trim().to_owned(),
            WidelandsDoc {
                location: f[2].trim().to_owned(),
                author: f[4].trim().to_owned(),
                licence: f[5].trim().to_owned(),
                original: f[7].trim().to_owned(),
                source: f[8].trim().to_owned(),
            },
        );
    }
    out
}

/// `animals/bird1_02.ogg` → `animals/bird1`: the takes `_<nn>` of one sound, which upstream
/// often cut from one original recording (`stag_00`, `stag_01`: "Red_stag_roar").
fn take_group(rel: &str) -> String {
    let stem = rel.rsplit_once('.').map_or(rel, |(s, _)| s);
    match stem.rsplit_once('_') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            head.to_owned()
        }
        _ => stem.to_owned(),
    }
}

pub fn widelands(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let copyright = read_copyright(dir, WIDELANDS)?;
    let root = dir.join(WIDELANDS_DIR);
    let doc_path = root.join(WIDELANDS_DOC);
    let docs = match std::fs::read_to_string(&doc_path) {
        Ok(text) => parse_widelands_doc(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("reading `{}`", doc_path.display())),
    };
    let mut files = Vec::new();
    walk_files(&root, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = relative(&root, &file)?;
        let Some(stem) = sound_stem(&rel) else {
            continue;
        };
        let exact = rel.rsplit_once('.').map_or(rel.as_str(), |(s, _)| s);
        let Some(&(_, description, phrase, category)) = WIDELANDS_SOUNDS
            .iter()
            .find(|s| s.0 == exact)
            .or_else(|| WIDELANDS_SOUNDS.iter().find(|s| s.0 == stem))
        else {
            continue;
        };
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        let parent = rel.rsplit_once('/').map_or("", |(d, _)| d);
        // The sheet names files by name; its location column tells same-named files apart.
        let doc = docs
            .get(name)
            .filter(|d| parent.is_empty() || d.location.ends_with(parent));
        if doc.is_some_and(WidelandsDoc::is_duplicate) {
            continue;
        }
        out.push(Recording {
            package: WIDELANDS,
            path: format!("{WIDELANDS_DIR}/{rel}"),
            description: description.to_owned(),
            phrase,
            category: split_category(category),
            licence: licence_of(&copyright, &format!("data/sound/{rel}"), WIDELANDS),
            credit: doc.and_then(WidelandsDoc::credit),
            group: Some(match doc.filter(|d| known(&d.original)) {
                Some(d) => format!("original:{}", d.original),
                None => take_group(&rel),
            }),
            audio: AudioData::File(file),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_drop_take_numbers() {
        assert_eq!(sound_stem("wolf-growl-2.ogg").unwrap(), "wolf-growl");
        assert_eq!(
            sound_stem("magic-missile-1-miss.ogg").unwrap(),
            "magic-missile-miss"
        );
        assert_eq!(sound_stem("ambient/birds1.ogg").unwrap(), "ambient/birds");
        assert_eq!(
            sound_stem("horn-signals/horn-8.ogg").unwrap(),
            "horn-signals/horn"
        );
        assert_eq!(
            sound_stem("woodcutting/tree_falling_00.ogg").unwrap(),
            "woodcutting/tree_falling"
        );
        assert_eq!(sound_stem("animals/bird1_02.ogg").unwrap(), "animals/bird");
        assert_eq!(sound_stem("mace.wav").unwrap(), "mace");
        assert!(sound_stem("README.md").is_none());
        assert!(sound_stem("wl-sound-docu.csv").is_none());
        assert_eq!(take_group("animals/bird1_02.ogg"), "animals/bird1");
        assert_eq!(take_group("farm/donkey.ogg"), "farm/donkey");
        assert_eq!(
            take_group("hammering/geologist_hammer.ogg"),
            "hammering/geologist_hammer"
        );
    }

    #[test]
    fn every_table_stem_is_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for s in WESNOTH_SOUNDS {
            assert!(seen.insert(s.0), "{}", s.0);
        }
        seen.clear();
        for s in WIDELANDS_SOUNDS {
            assert!(seen.insert(s.0), "{}", s.0);
        }
    }

    #[test]
    fn widelands_sound_sheet_rows() {
        let text = "Widelands Sound Documentation,,,,,,,,,,\n,,,,,,,,,,\n\
            File Name,Format,Location,Usage,Author,License,reworked,Original File Name,Source,Orig. Format,BZR\n\
            weaving.ogg,22050,sound/mill,\"empire.weavingmill, atlanteans.weavingmill\",Xavier Serra,CC-3,yes,320510__xserra__kerala-1.wav,http://x/320510/,44100,8251\n\
            meal_00.ogg,,sound/empire/taverns,empire.biginn,DUPLICATE to inn_01.ogg,,,,,,8145\n\
            wolf_00.ogg,11025,data/sound/animals,,UNKNOWN,,,Howl-5.wav,UNKNOWN,11025,8019\n";
        let docs = parse_widelands_doc(text);
        assert_eq!(docs.len(), 3);
        let weaving = &docs["weaving.ogg"];
        assert_eq!(weaving.location, "sound/mill");
        assert_eq!(
            weaving.credit().unwrap(),
            "Original \"320510__xserra__kerala-1.wav\", from http://x/320510/, by Xavier Serra, \
             upstream licence CC-3"
        );
        assert!(docs["meal_00.ogg"].is_duplicate());
        assert_eq!(
            docs["wolf_00.ogg"].credit().unwrap(),
            "Original \"Howl-5.wav\""
        );
    }
}
