//! What each supported package holds, and the description of every sound that is used.
//!
//! Descriptions are noun phrases (`a steam train departing from a station`, `a cello`). For
//! OpenSFX, GCompris and the freedesktop theme they are hand-written from each sound's title,
//! file name and credits (the original recording's name); sounds whose names say nothing about
//! what is heard (jingles, "weird" sounds, spoken words, UI blips named after their use) are
//! not listed and so not used. For Tux Paint they are the English description of the stamp
//! that the sound belongs to, and the category is the stamp's directory.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::container;

/// How a description reads, which decides the caption templates that fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phrase {
    /// Something happening (`a horse neighing`).
    Event,
    /// A sound source only (`a crow`, `a cello`).
    Source,
}

/// Where a recording's bytes are.
#[derive(Debug, Clone)]
pub enum AudioData {
    File(PathBuf),
    /// Extracted from a container; `ext` tells the decoder the format.
    Bytes {
        ext: String,
        data: Vec<u8>,
    },
}

/// One source recording of a package.
#[derive(Debug, Clone)]
pub struct Recording {
    pub package: &'static str,
    /// Path inside the package (`usr/share/...`), `#entry` added for a container's member.
    pub path: String,
    pub description: String,
    pub phrase: Phrase,
    /// Category hierarchy, most general first (`["animal", "bird"]`).
    pub category: Vec<String>,
    pub licence: String,
    /// Author credits where the package gives them per sound.
    pub credit: Option<String>,
    /// Recordings of one package with the same group go to the same split (takes of one
    /// sound, which may be cut from one original); `None`: a group of its own.
    pub group: Option<String>,
    pub audio: AudioData,
}

pub const OPENSFX: &str = "openttd-opensfx";
pub const GCOMPRIS: &str = "gcompris-qt-data";
pub const TUXPAINT: &str = "tuxpaint-stamps-default";
pub const FREEDESKTOP: &str = "sound-theme-freedesktop";
pub const WESNOTH: &str = "wesnoth-1.16-data";
pub const WIDELANDS: &str = "widelands-data";

/// A supported package, with the `fetch` entry of the version the tables were written for.
pub struct Package {
    pub name: &'static str,
    pub version: &'static str,
    pub sha256: &'static str,
    pub download_mb: f64,
}

pub const PACKAGES: [Package; 6] = [
    Package {
        name: OPENSFX,
        version: "1.0.3-2",
        sha256: "2898b4677a3caccc4abc08fb4cf83319047b5a04729291deb5c77a8cd713c006",
        download_mb: 9.9,
    },
    Package {
        name: GCOMPRIS,
        version: "3.1-2",
        sha256: "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f",
        download_mb: 44.2,
    },
    Package {
        name: TUXPAINT,
        version: "2022.06.04-1",
        sha256: "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
        download_mb: 160.9,
    },
    Package {
        name: FREEDESKTOP,
        version: "0.8-2",
        sha256: "135cc4893ba590d428577bc3bf42df756a165c05a2a43f84311ad7db779a70ea",
        download_mb: 0.4,
    },
    Package {
        name: WESNOTH,
        version: "1:1.16.9-1",
        sha256: "1012b964bd412a6770685e3324ae3b61e176caff7846192d1ee63d55cd621e26",
        download_mb: 146.2,
    },
    Package {
        name: WIDELANDS,
        version: "2:1.1-3",
        sha256: "0e23d645b15bcfb9e3bcae0de9bc1bdfa75a6ecb36b2e449759d6eb0b4bbd8fb",
        download_mb: 381.4,
    },
];

pub fn package(name: &str) -> Option<&'static Package> {
    PACKAGES.iter().find(|p| p.name == name)
}

/// The package's recordings that have a description, in a fixed order.
pub fn collect(package: &'static str, dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let recordings = match package {
        OPENSFX => opensfx(dir),
        GCOMPRIS => gcompris(dir),
        TUXPAINT => tuxpaint(dir),
        FREEDESKTOP => freedesktop(dir),
        WESNOTH => super::games::wesnoth(dir),
        WIDELANDS => super::games::widelands(dir),
        other => anyhow::bail!("unsupported package `{other}`"),
    };
    recordings.with_context(|| format!("reading package `{package}` in `{}`", dir.display()))
}

pub(super) fn split_category(category: &str) -> Vec<String> {
    category.split('/').map(str::to_owned).collect()
}

pub(super) fn read_copyright(dir: &Path, package: &str) -> anyhow::Result<String> {
    let path = dir.join(format!("usr/share/doc/{package}/copyright"));
    std::fs::read_to_string(&path).with_context(|| format!("reading `{}`", path.display()))
}

/// Licence of `path` per the package's DEP-5 `copyright`, or the package-wide statement.
pub(super) fn licence_of(copyright: &str, path: &str, package: &str) -> String {
    container::dep5_licence(copyright, path)
        .unwrap_or_else(|| format!("see /usr/share/doc/{package}/copyright"))
}

// ---------------------------------------------------------------------------------------------
// OpenSFX: one `.cat` bank; each entry's name is `"Title". Original ... by ... License: ...`.

/// Title in the bank → (description, category). Titles missing here are not used.
const OPENSFX_SOUNDS: &[(&str, &str, &str)] = &[
    (
        "Splat (building docks/canals/river)",
        "a wet splat of mud and water",
        "impact/splat",
    ),
    (
        "Factory Whistle",
        "a factory whistle blowing",
        "industry/whistle",
    ),
    (
        "Steam train station departure",
        "a steam train whistling as it departs from a station",
        "vehicle/train/steam",
    ),
    (
        "Steam engine going in tunnel",
        "a steam engine whistling as it goes into a tunnel",
        "vehicle/train/steam",
    ),
    ("Ship horn", "the deep horn of a ship", "vehicle/ship"),
    ("Ferry horn", "the horn of a ferry blowing", "vehicle/ship"),
    (
        "Propeller plane start",
        "a small propeller plane starting its engine",
        "vehicle/aircraft/propeller",
    ),
    (
        "Early jet take off",
        "a passenger jet taking off",
        "vehicle/aircraft/jet",
    ),
    (
        "Diesel/electric train station departure",
        "a diesel locomotive sounding its horn as it departs",
        "vehicle/train/diesel",
    ),
    (
        "Mining machinery",
        "heavy machinery rumbling like a lift",
        "industry/machine",
    ),
    (
        "Electric sparking",
        "electric sparks crackling and buzzing",
        "electricity/spark",
    ),
    (
        "Steam (of steam engine)",
        "steam hissing from a steam engine",
        "vehicle/train/steam",
    ),
    (
        "Level crossing",
        "the bell of a railway level crossing ringing",
        "signal/bell",
    ),
    (
        "Road vehicle breakdown",
        "a heavy metal object dropped with a clank",
        "impact/metal",
    ),
    (
        "Train/ship breakdown",
        "metal clattering and banging in a dumpster",
        "impact/metal",
    ),
    ("Crash", "a loud crash", "impact/crash"),
    ("Explosion", "an explosion", "impact/explosion"),
    ("Big crash", "a big crash of breaking metal", "impact/crash"),
    (
        "Cash till",
        "a cash register ringing up a sale",
        "household/money",
    ),
    ("Beep", "a short electronic beep", "ui/beep"),
    ("Morse", "morse code beeping", "signal/morse"),
    (
        "Plane wheels touching ground",
        "tyres screeching as a plane touches the ground",
        "vehicle/aircraft/landing",
    ),
    (
        "Helicopter",
        "a helicopter flying with its rotor whirring",
        "vehicle/aircraft/helicopter",
    ),
    (
        "Truck/old bus start, pull away",
        "an old truck starting its engine and pulling away",
        "vehicle/road/truck",
    ),
    (
        "Truck/old bus start, pull away with horn",
        "an old truck pulling away with a blast of an air horn",
        "vehicle/road/truck",
    ),
    (
        "Modern bus start",
        "a modern bus pulling away",
        "vehicle/road/bus",
    ),
    (
        "Old bus start",
        "an old bus starting its engine",
        "vehicle/road/bus",
    ),
    (
        "Applause",
        "an enthusiastic audience applauding",
        "people/applause",
    ),
    ("Oooh sound", "a crowd going oooh", "people/crowd"),
    (
        "Splat (terraform/non-rail builds",
        "a dull splat of earth",
        "impact/splat",
    ),
    ("Splat (rail builds)", "a short low thud", "impact/thud"),
    ("Jackhammer", "a jackhammer pounding", "tool/jackhammer"),
    ("Modern car horn", "a car horn honking", "vehicle/road/car"),
    ("Sheep", "sheep bleating in a field", "animal/mammal/bovine"),
    ("Cow", "a cow mooing", "animal/mammal/bovine"),
    ("Horse", "a horse neighing", "animal/mammal/equine"),
    (
        "Building bridge",
        "hammering on metal in a smithy",
        "tool/hammer",
    ),
    ("Sawmill", "a circular saw cutting through wood", "tool/saw"),
    (
        "Toyland: Sugar mine (1)",
        "a shaker rattling briefly",
        "instrument/percussion",
    ),
    (
        "Toyland: Sugar mine (2)",
        "a quick rattle of a shaker",
        "instrument/percussion",
    ),
    (
        "Toyland: Bubble generated",
        "bubbles being blown in water",
        "water/bubble",
    ),
    (
        "Toyland: Bubble plop",
        "a bubble popping with a plop",
        "water/bubble",
    ),
    (
        "Toyland: Toffee quarry",
        "metal clanging and a slide whistle going down",
        "impact/metal",
    ),
    (
        "Toyland: Bubble slurped",
        "a cartoon slurp of a bubbling drink",
        "water/bubble",
    ),
    ("Toyland: Plastic mine", "water bubbling", "water/bubble"),
    ("Wind", "wind blowing", "nature/wind"),
    (
        "Toyland: Road vehicle breakdown",
        "a cartoon crash with a snare drum",
        "impact/crash",
    ),
    (
        "Lumber mill: Crashing tree",
        "a tree falling down with a crash",
        "nature/tree",
    ),
    (
        "Lumber mill: Falling tree",
        "a tree being cut down and falling",
        "nature/tree",
    ),
    (
        "Lumber mill: Chainsaw",
        "a chainsaw cutting wood",
        "tool/saw",
    ),
    ("Heavy wind", "a strong wind howling", "nature/wind"),
    (
        "Toyland: Train breakdown",
        "a snap followed by a crash",
        "impact/crash",
    ),
    (
        "Mach 1+ Jet take off",
        "a jet roaring close by as it takes off",
        "vehicle/aircraft/jet",
    ),
    (
        "Toyland: Comedy bus start (1)",
        "an old bus starting with a comic boing",
        "vehicle/road/bus",
    ),
    (
        "Modern jet take off",
        "military jets roaring past",
        "vehicle/aircraft/jet",
    ),
    (
        "Toyland: Comedy bus start (2)",
        "an old bus starting with a bicycle horn tooting twice",
        "vehicle/road/bus",
    ),
    (
        "Toyland: Comedy truck start (1)",
        "an old truck starting with a squeaky toy",
        "vehicle/road/truck",
    ),
    (
        "Toyland: Comedy truck start (2)",
        "a bus passing by with a cartoon boink",
        "vehicle/road/bus",
    ),
    (
        "Maglev train station departure",
        "a metro train departing from a station",
        "vehicle/train/electric",
    ),
    (
        "Tropical: Bird (1)",
        "a tropical bird calling",
        "animal/bird",
    ),
    (
        "Tropical: Lion roar",
        "a big cat growling and roaring",
        "animal/mammal/cat",
    ),
    (
        "Tropical: Monkeys",
        "monkeys screaming",
        "animal/mammal/ape",
    ),
    (
        "Toyland: Propeller plane take off",
        "a propeller plane taking off",
        "vehicle/aircraft/propeller",
    ),
    (
        "Toyland: Jet take off",
        "a jet departing with a whoosh",
        "vehicle/aircraft/jet",
    ),
    (
        "Monorail train station departure",
        "a train passing by",
        "vehicle/train/electric",
    ),
    (
        "Tropical: Bird (2)",
        "a tropical bird calling",
        "animal/bird",
    ),
];

pub const OPENSFX_BANK_PATH: &str = "usr/share/games/openttd/baseset/opensfx/opensfx.cat";

/// `"Title". Original ... License: X.` → (title, credit, licence).
fn opensfx_name(name: &str) -> Option<(&str, &str, &str)> {
    let rest = name.strip_prefix('"')?;
    let (title, credit) = rest.split_once('"')?;
    let credit = credit.trim_start_matches('.').trim();
    let licence = credit
        .split_once("License:")
        .map_or("", |(_, l)| l.trim().trim_end_matches('.'));
    Some((title, credit, licence))
}

fn opensfx(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let path = dir.join(OPENSFX_BANK_PATH);
    let bytes = std::fs::read(&path).with_context(|| format!("reading `{}`", path.display()))?;
    let entries = container::parse_cat(&bytes).with_context(|| format!("`{}`", path.display()))?;
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some((title, credit, licence)) = opensfx_name(&entry.name) else {
            continue;
        };
        let Some(&(_, description, category)) = OPENSFX_SOUNDS.iter().find(|s| s.0 == title) else {
            continue;
        };
        out.push(Recording {
            package: OPENSFX,
            path: format!("{OPENSFX_BANK_PATH}#{i}"),
            description: description.to_owned(),
            phrase: Phrase::Event,
            category: split_category(category),
            licence: licence.to_owned(),
            credit: Some(format!("\"{title}\". {credit}")),
            group: None,
            audio: AudioData::Bytes {
                ext: "wav".into(),
                data: entry.wav.to_vec(),
            },
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// GCompris: sounds inside per-activity `.rcc` bundles (`<activity>.rcc`, `core.rcc`).

const GCOMPRIS_RCC_DIR: &str = "usr/share/gcompris-qt/rcc";

/// Resource path under `/gcompris/` → (description, phrase, category).
const GCOMPRIS_SOUNDS: &[(&str, &str, Phrase, &str)] = &[
    (
        "src/activities/instruments/resource/accordion.ogg",
        "an accordion",
        Phrase::Source,
        "instrument/wind",
    ),
    (
        "src/activities/instruments/resource/banjo.ogg",
        "a banjo",
        Phrase::Source,
        "instrument/string",
    ),
    (
        "src/activities/instruments/resource/bongo.ogg",
        "bongo drums",
        Phrase::Source,
        "instrument/percussion",
    ),
    (
        "src/activities/instruments/resource/castanets.ogg",
        "castanets",
        Phrase::Source,
        "instrument/percussion",
    ),
    (
        "src/activities/instruments/resource/cello.ogg",
        "a cello",
        Phrase::Source,
        "instrument/string",
    ),
    (
        "src/activities/instruments/resource/clarinet.ogg",
        "a clarinet",
        Phrase::Source,
        "instrument/wind",
    ),
    (
        "src/activities/instruments/resource/cymbal.ogg",
        "a cymbal",
        Phrase::Source,
        "instrument/percussion",
    ),
    (
        "src/activities/instruments/resource/drum_kit.ogg",
        "a drum kit",
        Phrase::Source,
        "instrument/percussion",
    ),
    (
        "src/activities/instruments/resource/electric_guitar.ogg",
        "an electric guitar",
        Phrase::Source,
        "instrument/string",
    ),
    (
        "src/activities/instruments/resource/flute_traversiere.ogg",
        "a transverse flute",
        Phrase::Source,
        "instrument/wind",
    ),
    (
        "src/activities/instruments/resource/guitar.ogg",
        "an acoustic guitar",
        Phrase::Source,
        "instrument/string",
    ),
    (
        "src/activities/instruments/resource/harmonica.ogg",
        "a harmonica",
        Phrase::Source,
        "instrument/wind",
    ),
    (
        "src/activities/instruments/resource/harp.ogg",
        "a harp",
        Phrase::Source,
        "instrument/string",
    ),
    (
        "src/activities/instruments/resource/horn.ogg",
        "a french horn",
        Phrase::Source,
        "instrument/wind",
    ),
    (
        "src/activities/instruments/resource/maracas.ogg",
        "maracas",
        Phrase::Source,
        "instrument/percussion",
    ),
    (
        "src/activities/instruments/resource/organ.ogg",
        "an organ",
        Phrase::Source,
        "instrument/keyboard",
    ),
    (
        "src/activities/instruments/resource/piano.ogg",
        "a piano",
        Phrase::Source,
        "instrument/keyboard",
    ),
    (
        "src/activities/instruments/resource/saxophone.ogg",
        "a saxophone",
        Phrase::Source,
        "instrument/wind",
    ),
    (
        "src/activities/instruments/resource/snare_drum.ogg",
        "a snare drum",
        Phrase::Source,
        "instrument/percussion",
    ),
    (
        "src/activities/instruments/resource/tambourine.ogg",
        "a tambourine",
        Phrase::Source,
        "instrument/percussion",
    ),
    (
        "src/activities/instruments/resource/timpani.ogg",
        "timpani drums",
        Phrase::Source,
        "instrument/percussion",
    ),
    (
        "src/activities/instruments/resource/triangle.ogg",
        "a triangle",
        Phrase::Source,
        "instrument/percussion",
    ),
    (
        "src/activities/instruments/resource/trombone.ogg",
        "a trombone",
        Phrase::Source,
        "instrument/wind",
    ),
    (
        "src/activities/instruments/resource/trumpet.ogg",
        "a trumpet",
        Phrase::Source,
        "instrument/wind",
    ),
    (
        "src/activities/instruments/resource/tuba.ogg",
        "a tuba",
        Phrase::Source,
        "instrument/wind",
    ),
    (
        "src/activities/instruments/resource/violin.ogg",
        "a violin",
        Phrase::Source,
        "instrument/string",
    ),
    (
        "src/activities/explore_farm_animals/resource/animals/cat.ogg",
        "a cat meowing",
        Phrase::Event,
        "animal/mammal/cat",
    ),
    (
        "src/activities/explore_farm_animals/resource/animals/chickens.ogg",
        "chickens clucking",
        Phrase::Event,
        "animal/bird",
    ),
    (
        "src/activities/explore_farm_animals/resource/animals/cow.ogg",
        "a cow mooing",
        Phrase::Event,
        "animal/mammal/bovine",
    ),
    (
        "src/activities/explore_farm_animals/resource/animals/dog.ogg",
        "a dog barking",
        Phrase::Event,
        "animal/mammal/dog",
    ),
    (
        "src/activities/explore_farm_animals/resource/animals/duck.ogg",
        "a duck quacking",
        Phrase::Event,
        "animal/bird",
    ),
    (
        "src/activities/explore_farm_animals/resource/animals/horse.ogg",
        "a horse neighing",
        Phrase::Event,
        "animal/mammal/equine",
    ),
    (
        "src/activities/explore_farm_animals/resource/animals/owl.ogg",
        "an owl hooting",
        Phrase::Event,
        "animal/bird",
    ),
    (
        "src/activities/explore_farm_animals/resource/animals/pig.ogg",
        "a pig grunting",
        Phrase::Event,
        "animal/mammal",
    ),
    (
        "src/activities/explore_farm_animals/resource/animals/sheep.ogg",
        "a sheep bleating",
        Phrase::Event,
        "animal/mammal/bovine",
    ),
    (
        "src/activities/explore_world_music/resource/music/africa.ogg",
        "traditional music from Africa",
        Phrase::Event,
        "music/world",
    ),
    (
        "src/activities/explore_world_music/resource/music/america.ogg",
        "traditional music from America",
        Phrase::Event,
        "music/world",
    ),
    (
        "src/activities/explore_world_music/resource/music/australia.ogg",
        "traditional music from Australia",
        Phrase::Event,
        "music/world",
    ),
    (
        "src/activities/explore_world_music/resource/music/beethoven.ogg",
        "classical music by Beethoven",
        Phrase::Event,
        "music/classical",
    ),
    (
        "src/activities/explore_world_music/resource/music/ireland.ogg",
        "traditional Irish folk music",
        Phrase::Event,
        "music/world",
    ),
    (
        "src/activities/explore_world_music/resource/music/italy.ogg",
        "traditional music from Italy",
        Phrase::Event,
        "music/world",
    ),
    (
        "src/activities/explore_world_music/resource/music/japan.ogg",
        "traditional Japanese music",
        Phrase::Event,
        "music/world",
    ),
    (
        "src/activities/explore_world_music/resource/music/mexico.ogg",
        "traditional Mexican music",
        Phrase::Event,
        "music/world",
    ),
    (
        "src/activities/explore_world_music/resource/music/middleeast.ogg",
        "traditional music from the Middle East",
        Phrase::Event,
        "music/world",
    ),
    (
        "src/activities/memory-sound/resource/LRApplauses_1_LA_cut.ogg",
        "people applauding",
        Phrase::Event,
        "people/applause",
    ),
    (
        "src/activities/memory-sound/resource/LRBark_1_LA_cut.ogg",
        "a dog barking",
        Phrase::Event,
        "animal/mammal/dog",
    ),
    (
        "src/activities/memory-sound/resource/LRBark_3_LA_cut.ogg",
        "a dog barking several times",
        Phrase::Event,
        "animal/mammal/dog",
    ),
    (
        "src/activities/memory-sound/resource/LRBuddhist_gong_05_LA.ogg",
        "a buddhist gong ringing",
        Phrase::Event,
        "instrument/percussion",
    ),
    (
        "src/activities/memory-sound/resource/LRDoor_Open_2_LA.ogg",
        "a door opening",
        Phrase::Event,
        "household/door",
    ),
    (
        "src/activities/memory-sound/resource/LRFactory_noise_01_LA.ogg",
        "machines working in a factory",
        Phrase::Event,
        "industry/machine",
    ),
    (
        "src/activities/memory-sound/resource/LRFactory_noise_02_LA.ogg",
        "mechanical factory noise",
        Phrase::Event,
        "industry/machine",
    ),
    (
        "src/activities/memory-sound/resource/LRFactory_noise_03_LA.ogg",
        "a factory machine clanking",
        Phrase::Event,
        "industry/machine",
    ),
    (
        "src/activities/memory-sound/resource/LRFactory_noise_04_LA.ogg",
        "industrial machinery in a factory",
        Phrase::Event,
        "industry/machine",
    ),
    (
        "src/activities/memory-sound/resource/LRFactory_noise_05_LA.ogg",
        "a machine running in a factory",
        Phrase::Event,
        "industry/machine",
    ),
    (
        "src/activities/memory-sound/resource/LRFactory_noise_06_LA.ogg",
        "noise of factory machines",
        Phrase::Event,
        "industry/machine",
    ),
    (
        "src/activities/memory-sound/resource/LRFireballs_01_LA.ogg",
        "fireballs whooshing",
        Phrase::Event,
        "fire",
    ),
    (
        "src/activities/memory-sound/resource/LRFrogsInPondDuringStormLACut.ogg",
        "frogs croaking in a pond during a storm",
        Phrase::Event,
        "animal/amphibian",
    ),
    (
        "src/activities/memory-sound/resource/LRHeart_beat_01_LA.ogg",
        "a heart beating",
        Phrase::Event,
        "people/body",
    ),
    (
        "src/activities/memory-sound/resource/LRObject_falling_01_LA.ogg",
        "an object falling to the ground",
        Phrase::Event,
        "impact/fall",
    ),
    (
        "src/activities/memory-sound/resource/LRObject_falling_02_LA.ogg",
        "something falling and hitting the floor",
        Phrase::Event,
        "impact/fall",
    ),
    (
        "src/activities/memory-sound/resource/LRRain_in_garden_01_LA_cut.ogg",
        "rain falling in a garden",
        Phrase::Event,
        "nature/rain",
    ),
    (
        "src/activities/memory-sound/resource/LRStartAndStopCarEngine1LACut.ogg",
        "a car engine starting and stopping",
        Phrase::Event,
        "vehicle/road/car",
    ),
    (
        "src/activities/memory-sound/resource/LRTrain_slowing_down_01_LA_cut.ogg",
        "a train slowing down",
        Phrase::Event,
        "vehicle/train",
    ),
    (
        "src/activities/memory-sound/resource/guitar_melody.ogg",
        "a melody played on a guitar",
        Phrase::Event,
        "instrument/string",
    ),
    (
        "src/activities/memory-sound/resource/guitar_son1.ogg",
        "a single guitar note",
        Phrase::Event,
        "instrument/string",
    ),
    (
        "src/activities/memory-sound/resource/guitar_son2.ogg",
        "a guitar note ringing",
        Phrase::Event,
        "instrument/string",
    ),
    (
        "src/activities/memory-sound/resource/guitar_son3.ogg",
        "one note plucked on a guitar",
        Phrase::Event,
        "instrument/string",
    ),
    (
        "src/activities/memory-sound/resource/guitar_son4.ogg",
        "a plucked guitar note",
        Phrase::Event,
        "instrument/string",
    ),
    (
        "src/activities/melody/resource/xylofon_son1.wav",
        "a xylophone note",
        Phrase::Event,
        "instrument/percussion",
    ),
    (
        "src/activities/melody/resource/xylofon_son2.wav",
        "a single note struck on a xylophone",
        Phrase::Event,
        "instrument/percussion",
    ),
    (
        "src/activities/melody/resource/xylofon_son3.wav",
        "a xylophone bar being struck",
        Phrase::Event,
        "instrument/percussion",
    ),
    (
        "src/activities/melody/resource/xylofon_son4.wav",
        "one xylophone tone",
        Phrase::Event,
        "instrument/percussion",
    ),
    (
        "src/activities/melody/resource/knock.wav",
        "a knock on wood",
        Phrase::Event,
        "impact/knock",
    ),
    (
        "src/activities/canal_lock/resource/door_open.wav",
        "a canal lock gate opening",
        Phrase::Event,
        "water/canal",
    ),
    (
        "src/activities/canal_lock/resource/door_close.wav",
        "a canal lock gate closing",
        Phrase::Event,
        "water/canal",
    ),
    (
        "src/activities/canal_lock/resource/water_fill.wav",
        "water rushing into a canal lock",
        Phrase::Event,
        "water/canal",
    ),
    (
        "src/activities/clickgame/resource/drip.wav",
        "a drop of water dripping",
        Phrase::Event,
        "water/drip",
    ),
    (
        "src/activities/guessnumber/resource/helicopter.wav",
        "a helicopter flying",
        Phrase::Event,
        "vehicle/aircraft/helicopter",
    ),
    (
        "src/activities/railroad/resource/sounds/train.wav",
        "a train",
        Phrase::Source,
        "vehicle/train",
    ),
    (
        "src/activities/traffic/resource/car.wav",
        "a car",
        Phrase::Source,
        "vehicle/road/car",
    ),
    (
        "src/activities/mining/resource/pickaxe.wav",
        "a pickaxe striking rock",
        Phrase::Event,
        "tool/pickaxe",
    ),
    (
        "src/activities/money/resource/money1.wav",
        "coins jingling",
        Phrase::Event,
        "household/money",
    ),
    (
        "src/activities/money/resource/money2.wav",
        "coins clinking together",
        Phrase::Event,
        "household/money",
    ),
    (
        "src/activities/reversecount/resource/icy_walk.wav",
        "footsteps on ice",
        Phrase::Event,
        "people/footsteps",
    ),
    (
        "src/activities/scalesboard/resource/metal_hit.wav",
        "a piece of metal being hit",
        Phrase::Event,
        "impact/metal",
    ),
    (
        "src/activities/target/resource/arrow.wav",
        "an arrow hitting a target",
        Phrase::Event,
        "impact/arrow",
    ),
    (
        "src/activities/watercycle/resource/harbor1.wav",
        "sounds of a harbour",
        Phrase::Event,
        "water/harbour",
    ),
    (
        "src/activities/watercycle/resource/harbor2.wav",
        "ambience at a harbour by the sea",
        Phrase::Event,
        "water/harbour",
    ),
];

/// Bundle holding a GCompris resource: `src/activities/<name>/...` is in `<name>.rcc`.
fn gcompris_bundle(resource: &str) -> &str {
    resource
        .strip_prefix("src/activities/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("core")
}

fn gcompris(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let copyright = read_copyright(dir, GCOMPRIS)?;
    let mut bundles: Vec<&str> = GCOMPRIS_SOUNDS
        .iter()
        .map(|s| gcompris_bundle(s.0))
        .collect();
    bundles.sort_unstable();
    bundles.dedup();
    let mut out = Vec::new();
    for bundle in bundles {
        let rel = format!("{GCOMPRIS_RCC_DIR}/{bundle}.rcc");
        let path = dir.join(&rel);
        // Bundles come and go between releases; a missing one just contributes nothing.
        if !path.is_file() {
            continue;
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("reading `{}`", path.display()))?;
        let files =
            container::parse_rcc(&bytes).with_context(|| format!("`{}`", path.display()))?;
        for file in files {
            let resource = file.path.trim_start_matches("/gcompris/");
            let Some(&(_, description, phrase, category)) =
                GCOMPRIS_SOUNDS.iter().find(|s| s.0 == resource)
            else {
                continue;
            };
            let ext = resource.rsplit('.').next().unwrap_or("ogg").to_owned();
            out.push(Recording {
                package: GCOMPRIS,
                path: format!("{rel}#{}", file.path),
                description: description.to_owned(),
                phrase,
                category: split_category(category),
                licence: licence_of(&copyright, resource, GCOMPRIS),
                credit: None,
                group: None,
                audio: AudioData::Bytes {
                    ext,
                    data: file.data,
                },
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Tux Paint stamps: `<stamp>.ogg` (the sound) next to `<stamp>.txt` (English description on
// the first line, translations after). `<stamp>_desc*.ogg` and `<stamp>_<locale>.ogg` are
// spoken and have no `.txt` of their own, which is how they are told apart.

const TUXPAINT_DIR: &str = "usr/share/tuxpaint/stamps";

/// Stamp directory prefix → category prefix. Other directories hold spoken words (letters,
/// digits, road signs, faces) or sounds that the stamp's name does not describe (food, gifts).
const TUXPAINT_CATEGORIES: &[(&str, &str)] = &[
    ("animals", "animal"),
    ("hobbies/music", "instrument"),
    ("hobbies", "hobby"),
    ("household", "household"),
    ("naturalforces", "nature"),
    ("vehicles", "vehicle"),
    ("space", "vehicle/spacecraft"),
    ("seasonal/newyears", "celebration"),
];

/// Stamps whose description does not say what is heard, by path under the stamps root.
const TUXPAINT_OVERRIDES: &[(&str, &str)] = &[
    ("household/toilet.ogg", "a toilet flushing"),
    ("animals/insects/xanthia.ogg", "a moth"),
    (
        "animals/mammals/bovines/mountaingoat.ogg",
        "a mountain goat",
    ),
    (
        "vehicles/ship/cartoon/bathyscape.ogg",
        "a deep sea research vessel",
    ),
];

/// `birds` → `bird`, `dishes` → `dish` (the directory names are English plurals).
fn singular(word: &str) -> String {
    let w = word.to_lowercase();
    if let Some(stem) = w.strip_suffix("es")
        && ["sh", "ch", "x", "ss"].iter().any(|e| stem.ends_with(e))
    {
        return stem.to_owned();
    }
    match w.strip_suffix('s') {
        Some(stem) if !stem.ends_with('s') && stem.len() > 2 => stem.to_owned(),
        _ => w,
    }
}

/// Category of a stamp directory (relative to the stamps root), if it is used.
fn tuxpaint_category(rel_dir: &str) -> Option<Vec<String>> {
    let (prefix, category) = TUXPAINT_CATEGORIES
        .iter()
        .find(|(p, _)| rel_dir == *p || rel_dir.starts_with(&format!("{p}/")))?;
    let mut out = split_category(category);
    out.extend(
        rel_dir[prefix.len()..]
            .split('/')
            .filter(|s| !s.is_empty() && *s != "cartoon")
            .map(singular),
    );
    Some(out)
}

/// `A Great Blue Heron, flying.` → `a Great Blue Heron, flying`.
pub fn tuxpaint_description(text: &str) -> Option<String> {
    let line = text.lines().next()?.trim().trim_start_matches('\u{feff}');
    let line = line.trim_end_matches(['.', '!', ' ']);
    let mut chars = line.chars();
    let first = chars.next()?;
    let second_upper = chars.next().is_some_and(char::is_uppercase);
    Some(if second_upper {
        line.to_owned()
    } else {
        first.to_lowercase().chain(line.chars().skip(1)).collect()
    })
}

pub(super) fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing `{}`", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn tuxpaint(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let copyright = read_copyright(dir, TUXPAINT)?;
    let root = dir.join(TUXPAINT_DIR);
    let mut files = Vec::new();
    walk_files(&root, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let is_audio = matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("ogg" | "wav")
        );
        let txt = file.with_extension("txt");
        if !is_audio || !txt.is_file() {
            continue;
        }
        let rel = file
            .strip_prefix(&root)?
            .to_string_lossy()
            .replace('\\', "/");
        let rel_dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
        let Some(category) = tuxpaint_category(rel_dir) else {
            continue;
        };
        let description = match TUXPAINT_OVERRIDES.iter().find(|o| o.0 == rel) {
            Some(o) => o.1.to_owned(),
            None => {
                let text = std::fs::read_to_string(&txt)
                    .with_context(|| format!("reading `{}`", txt.display()))?;
                let Some(description) = tuxpaint_description(&text) else {
                    continue;
                };
                description
            }
        };
        out.push(Recording {
            package: TUXPAINT,
            path: format!("{TUXPAINT_DIR}/{rel}"),
            description,
            phrase: Phrase::Source,
            category,
            licence: licence_of(&copyright, &format!("stamps/{rel}"), TUXPAINT),
            credit: None,
            group: None,
            audio: AudioData::File(file),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// freedesktop sound theme: `usr/share/sounds/freedesktop/stereo/<event>.oga`.

const FREEDESKTOP_DIR: &str = "usr/share/sounds/freedesktop";

/// Event name → description, category. Spoken channel names and the test signal are left out.
const FREEDESKTOP_SOUNDS: &[(&str, &str, &str)] = &[
    ("alarm-clock-elapsed", "an alarm clock ringing", "ui/alarm"),
    ("bell", "a bell ringing once", "ui/bell"),
    (
        "camera-shutter",
        "a camera shutter clicking",
        "household/camera",
    ),
    (
        "complete",
        "a short chime signalling completion",
        "ui/chime",
    ),
    ("dialog-error", "an error alert sound", "ui/alert"),
    ("dialog-information", "a soft information chime", "ui/chime"),
    ("dialog-warning", "a warning alert sound", "ui/alert"),
    (
        "message-new-instant",
        "a notification sound for a new instant message",
        "ui/notification",
    ),
    ("message", "a message notification chime", "ui/notification"),
    (
        "phone-incoming-call",
        "a phone ringing for an incoming call",
        "ui/phone",
    ),
    ("phone-outgoing-busy", "a telephone busy tone", "ui/phone"),
    (
        "phone-outgoing-calling",
        "a telephone ringback tone while calling",
        "ui/phone",
    ),
    (
        "screen-capture",
        "a camera shutter sound for a screenshot",
        "household/camera",
    ),
    (
        "trash-empty",
        "crumpling paper as the trash is emptied",
        "household/paper",
    ),
];

fn freedesktop(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let copyright = read_copyright(dir, FREEDESKTOP)?;
    let mut out = Vec::new();
    for &(event, description, category) in FREEDESKTOP_SOUNDS {
        let rel = format!("stereo/{event}.oga");
        let file = dir.join(FREEDESKTOP_DIR).join(&rel);
        if !file.is_file() {
            continue;
        }
        out.push(Recording {
            package: FREEDESKTOP,
            path: format!("{FREEDESKTOP_DIR}/{rel}"),
            description: description.to_owned(),
            phrase: Phrase::Event,
            category: split_category(category),
            licence: licence_of(&copyright, &rel, FREEDESKTOP),
            credit: None,
            group: None,
            audio: AudioData::File(file),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opensfx_names_split_into_title_credit_and_licence() {
        let (title, credit, licence) = opensfx_name(
            "\"Cow\". Original \"moo.wav\" by \"x\". License: Creative Commons Zero 1.0.",
        )
        .unwrap();
        assert_eq!(title, "Cow");
        assert!(credit.starts_with("Original"));
        assert_eq!(licence, "Creative Commons Zero 1.0");
        assert!(opensfx_name("no quotes").is_none());
    }

    #[test]
    fn tuxpaint_categories_and_descriptions() {
        assert_eq!(
            tuxpaint_category("animals/mammals/bovines").unwrap(),
            ["animal", "mammal", "bovine"]
        );
        assert_eq!(
            tuxpaint_category("hobbies/music/string").unwrap(),
            ["instrument", "string"]
        );
        assert_eq!(
            tuxpaint_category("household/dishes").unwrap(),
            ["household", "dish"]
        );
        assert!(tuxpaint_category("symbols/math").is_none());
        assert!(tuxpaint_category("animalsx").is_none());
        assert_eq!(
            tuxpaint_description("A crow.\nfr.utf8=Un corbeau.").unwrap(),
            "a crow"
        );
        assert_eq!(tuxpaint_description("Happy!\n").unwrap(), "happy");
        assert_eq!(tuxpaint_description("UFO.").unwrap(), "UFO");
        assert!(tuxpaint_description("").is_none());
    }
}
