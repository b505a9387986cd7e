//! Widelands 1.1: `data/sound/<dir>/<name>[_<nn>].ogg`, one sound per file, named after what
//! is heard (`woodcutting/tree_falling_00.ogg`). The sounds that are used, and their
//! descriptions: `sounds/widelands.tsv`. The DEP-5 `copyright` gives the licence (`data/*`:
//! GPL-2+); `wl-sound-docu.csv` names, for part of the sounds, the author, the original
//! recording's name, its source and licence (kept as the credit), and marks files that
//! duplicate another one (`DUPLICATE to inn_01.ogg`; left out). Sounds cut from one original
//! (`goldping`, `ironping`: "metal-ping1.aiff") and the takes `_<nn>` of a sound the sheet does
//! not list share a split.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use anyhow::Context;

use super::catalog::{
    AudioData, Recording, WIDELANDS, licence_of, read_copyright, relative, sorted_files, sound_stem,
};
use super::table::{self, DataFile, Lazy, SoundTable, data_file};

pub(super) const DATA: DataFile = data_file!("widelands.tsv");
static SOUNDS: Lazy<SoundTable> = LazyLock::new(|| SoundTable::parse(DATA, "sound"));

/// Path under `data/sound/` without extension, either with the take's number (a take with a
/// description of its own) or its stem ([`sound_stem`]) → description.
pub(super) fn sounds() -> anyhow::Result<&'static SoundTable> {
    table::loaded(&SOUNDS)
}

pub const DIR: &str = "usr/share/games/widelands/data/sound";
const DOC: &str = "wl-sound-docu.csv";

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

pub fn collect(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let sounds = sounds()?;
    let copyright = read_copyright(dir, WIDELANDS)?;
    let root = dir.join(DIR);
    let doc_path = root.join(DOC);
    let docs = match std::fs::read_to_string(&doc_path) {
        Ok(text) => parse_widelands_doc(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("reading `{}`", doc_path.display())),
    };
    let files = sorted_files(&root)?;
    let mut out = Vec::new();
    for file in files {
        let rel = relative(&root, &file)?;
        let Some(stem) = sound_stem(&rel) else {
            continue;
        };
        let exact = rel.rsplit_once('.').map_or(rel.as_str(), |(s, _)| s);
        let Some(sound) = sounds.get(exact).or_else(|| sounds.get(&stem)) else {
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
            path: format!("{DIR}/{rel}"),
            description: sound.description.to_owned(),
            phrase: sound.phrase,
            category: sound.category.clone(),
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
