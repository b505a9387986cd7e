//! OpenTTD's OpenSFX: one `.cat` bank; each entry's name is `"Title". Original ... by ...
//! License: ...`. The titles that are used, and their descriptions: `sounds/opensfx.tsv`.

use std::path::Path;
use std::sync::LazyLock;

use anyhow::Context;

use super::catalog::{AudioData, OPENSFX, Recording};
use super::container;
use super::table::{self, DataFile, Lazy, SoundTable, data_file};

pub(super) const DATA: DataFile = data_file!("opensfx.tsv");
static SOUNDS: Lazy<SoundTable> = LazyLock::new(|| SoundTable::parse(DATA, "title"));

/// Title in the bank → description. Titles missing here are not used.
pub(super) fn sounds() -> anyhow::Result<&'static SoundTable> {
    table::loaded(&SOUNDS)
}

pub const BANK_PATH: &str = "usr/share/games/openttd/baseset/opensfx/opensfx.cat";

/// `"Title". Original ... License: X.` → (title, credit, licence).
fn parse_name(name: &str) -> Option<(&str, &str, &str)> {
    let rest = name.strip_prefix('"')?;
    let (title, credit) = rest.split_once('"')?;
    let credit = credit.trim_start_matches('.').trim();
    let licence = credit
        .split_once("License:")
        .map_or("", |(_, l)| l.trim().trim_end_matches('.'));
    Some((title, credit, licence))
}

pub fn collect(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let sounds = sounds()?;
    let path = dir.join(BANK_PATH);
    let bytes = std::fs::read(&path).with_context(|| format!("reading `{}`", path.display()))?;
    let entries = container::parse_cat(&bytes).with_context(|| format!("`{}`", path.display()))?;
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some((title, credit, licence)) = parse_name(&entry.name) else {
            continue;
        };
        let Some(sound) = sounds.get(title) else {
            continue;
        };
        out.push(Recording {
            package: OPENSFX,
            path: format!("{BANK_PATH}#{i}"),
            description: sound.description.to_owned(),
            phrase: sound.phrase,
            category: sound.category.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opensfx_names_split_into_title_credit_and_licence() {
        let (title, credit, licence) = parse_name(
            "\"Cow\". Original \"moo.wav\" by \"x\". License: Creative Commons Zero 1.0.",
        )
        .unwrap();
        assert_eq!(title, "Cow");
        assert!(credit.starts_with("Original"));
        assert_eq!(licence, "Creative Commons Zero 1.0");
        assert!(parse_name("no quotes").is_none());
    }
}
