//! Tux Paint stamps: `<stamp>.ogg` (the sound) next to `<stamp>.txt` (English description on
//! the first line, translations after). `<stamp>_desc*.ogg` and `<stamp>_<locale>.ogg` are
//! spoken and have no `.txt` of their own, which is how they are told apart. The directories
//! that are used, with their categories: `sounds/tuxpaint-categories.tsv`; stamps whose
//! description does not say what is heard: `sounds/tuxpaint-overrides.tsv`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use anyhow::Context;

use super::catalog::{
    AudioData, Phrase, Recording, TUXPAINT, licence_of, read_copyright, relative, sorted_files,
};
use super::table::{self, DataFile, Lazy, data_file};

pub(super) const CATEGORIES_DATA: DataFile = data_file!("tuxpaint-categories.tsv");
pub(super) const OVERRIDES_DATA: DataFile = data_file!("tuxpaint-overrides.tsv");

/// The two tables of `sounds/tuxpaint-*.tsv`.
#[derive(Debug)]
pub(super) struct Tables {
    /// Stamp directory → category prefix, longest directory first, so that the most specific
    /// listed directory wins (`hobbies/music` over `hobbies`).
    categories: Vec<(&'static str, Vec<String>)>,
    /// Stamp path under the stamps root → description and its line in the file.
    pub(super) overrides: BTreeMap<&'static str, (&'static str, usize)>,
}

fn parse_tables() -> Result<Tables, String> {
    let file = CATEGORIES_DATA;
    let rows = file.rows(&["directory", "category"])?;
    file.index(&rows)?;
    let mut categories = rows
        .iter()
        .map(|row| {
            let dir = row.fields[0];
            if dir.split('/').any(str::is_empty) {
                let what = format!("directory `{dir}` has an empty part");
                return Err(file.error(row.line, what));
            }
            Ok((dir, file.category(row.line, row.fields[1])?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    categories.sort_by_key(|(dir, _)| std::cmp::Reverse(dir.len()));
    let file = OVERRIDES_DATA;
    let rows = file.rows(&["stamp", "description"])?;
    let overrides = file
        .index(&rows)?
        .into_iter()
        .map(|(stamp, i)| (stamp, (rows[i].fields[1], rows[i].line)))
        .collect();
    Ok(Tables {
        categories,
        overrides,
    })
}

static TABLES: Lazy<Tables> = LazyLock::new(parse_tables);

pub(super) fn tables() -> anyhow::Result<&'static Tables> {
    table::loaded(&TABLES)
}

const DIR: &str = "usr/share/tuxpaint/stamps";

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

impl Tables {
    /// Category of a stamp directory (relative to the stamps root), if it is used.
    pub(super) fn category(&self, rel_dir: &str) -> Option<Vec<String>> {
        let (prefix, category) = self
            .categories
            .iter()
            .find(|(p, _)| rel_dir == *p || rel_dir.starts_with(&format!("{p}/")))?;
        let mut out = category.clone();
        out.extend(
            rel_dir[prefix.len()..]
                .split('/')
                .filter(|s| !s.is_empty() && *s != "cartoon")
                .map(singular),
        );
        Some(out)
    }
}

/// `A Great Blue Heron, flying.` → `a Great Blue Heron, flying`.
pub fn description(text: &str) -> Option<String> {
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

pub fn collect(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let tables = tables()?;
    let copyright = read_copyright(dir, TUXPAINT)?;
    let root = dir.join(DIR);
    let files = sorted_files(&root)?;
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
        let rel = relative(&root, &file)?;
        let rel_dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
        let Some(category) = tables.category(rel_dir) else {
            continue;
        };
        let description = match tables.overrides.get(rel.as_str()) {
            Some((description, _)) => (*description).to_owned(),
            None => {
                let text = std::fs::read_to_string(&txt)
                    .with_context(|| format!("reading `{}`", txt.display()))?;
                let Some(description) = description(&text) else {
                    continue;
                };
                description
            }
        };
        out.push(Recording {
            package: TUXPAINT,
            path: format!("{DIR}/{rel}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuxpaint_categories_and_descriptions() {
        let tables = tables().unwrap();
        assert_eq!(
            tables.category("animals/mammals/bovines").unwrap(),
            ["animal", "mammal", "bovine"]
        );
        assert_eq!(
            tables.category("hobbies/music/string").unwrap(),
            ["instrument", "string"]
        );
        assert_eq!(
            tables.category("household/dishes").unwrap(),
            ["household", "dish"]
        );
        assert!(tables.category("symbols/math").is_none());
        assert!(tables.category("animalsx").is_none());
        assert_eq!(
            description("A crow.\nfr.utf8=Un corbeau.").unwrap(),
            "a crow"
        );
        assert_eq!(description("Happy!\n").unwrap(), "happy");
        assert_eq!(description("UFO.").unwrap(), "UFO");
        assert!(description("").is_none());
    }
}
