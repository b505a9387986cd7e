//! Battle for Wesnoth 1.16: `data/core/sounds/<name>[-<n>].{ogg,wav}`, plus `ambient/` and
//! `horn-signals/`; one sound per file, named after what is heard (`wolf-growl-2.ogg`). The
//! stems that are used, and their descriptions: `sounds/wesnoth.tsv`. The package's
//! `copyright` is not machine-readable; it puts all of Wesnoth under GPL-2+.

use std::path::Path;
use std::sync::LazyLock;

use super::catalog::{AudioData, Recording, WESNOTH, relative, sorted_files, sound_stem};
use super::table::{self, DataFile, Lazy, SoundTable, data_file};

pub(super) const DATA: DataFile = data_file!("wesnoth.tsv");
static SOUNDS: Lazy<SoundTable> = LazyLock::new(|| SoundTable::parse(DATA, "stem"));

/// Sound stem ([`sound_stem`]) → description. Every take of a stem is used.
pub(super) fn sounds() -> anyhow::Result<&'static SoundTable> {
    table::loaded(&SOUNDS)
}

pub const DIR: &str = "usr/share/games/wesnoth/1.16/data/core/sounds";

const LICENCE: &str = "GPL-2+";

pub fn collect(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let sounds = sounds()?;
    let root = dir.join(DIR);
    let files = sorted_files(&root)?;
    let mut out = Vec::new();
    for file in files {
        let rel = relative(&root, &file)?;
        let Some(stem) = sound_stem(&rel) else {
            continue;
        };
        let Some(sound) = sounds.get(&stem) else {
            continue;
        };
        out.push(Recording {
            package: WESNOTH,
            path: format!("{DIR}/{rel}"),
            description: sound.description.to_owned(),
            phrase: sound.phrase,
            category: sound.category.clone(),
            licence: LICENCE.to_owned(),
            credit: None,
            group: Some(stem),
            audio: AudioData::File(file),
        });
    }
    Ok(out)
}
