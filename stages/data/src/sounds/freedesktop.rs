//! The freedesktop sound theme: `usr/share/sounds/freedesktop/stereo/<event>.oga`. The events
//! that are used, and their descriptions: `sounds/freedesktop.tsv`.

use std::path::Path;
use std::sync::LazyLock;

use super::catalog::{AudioData, FREEDESKTOP, Recording, licence_of, read_copyright};
use super::table::{self, DataFile, Lazy, SoundTable, data_file};

pub(super) const DATA: DataFile = data_file!("freedesktop.tsv");
static SOUNDS: Lazy<SoundTable> = LazyLock::new(|| SoundTable::parse(DATA, "event"));

/// Event name → description, in the order the recordings are collected.
pub(super) fn sounds() -> anyhow::Result<&'static SoundTable> {
    table::loaded(&SOUNDS)
}

const DIR: &str = "usr/share/sounds/freedesktop";

pub fn collect(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let sounds = sounds()?;
    let copyright = read_copyright(dir, FREEDESKTOP)?;
    let mut out = Vec::new();
    for sound in sounds.rows() {
        let rel = format!("stereo/{}.oga", sound.key);
        let file = dir.join(DIR).join(&rel);
        if !file.is_file() {
            continue;
        }
        out.push(Recording {
            package: FREEDESKTOP,
            path: format!("{DIR}/{rel}"),
            description: sound.description.to_owned(),
            phrase: sound.phrase,
            category: sound.category.clone(),
            licence: licence_of(&copyright, &rel, FREEDESKTOP),
            credit: None,
            group: None,
            audio: AudioData::File(file),
        });
    }
    Ok(out)
}
