//! GCompris: sounds inside per-activity Qt resource bundles (`<activity>.rcc`, `core.rcc`).
//! The resources that are used, and their descriptions: `sounds/gcompris.tsv`.

use std::path::Path;
use std::sync::LazyLock;

use anyhow::Context;

use super::catalog::{AudioData, GCOMPRIS, Recording, licence_of, read_copyright};
use super::container;
use super::table::{self, DataFile, Lazy, SoundTable, data_file};

pub(super) const DATA: DataFile = data_file!("gcompris.tsv");
static SOUNDS: Lazy<SoundTable> = LazyLock::new(|| SoundTable::parse(DATA, "resource"));

/// Resource path under `/gcompris/` → description.
pub(super) fn sounds() -> anyhow::Result<&'static SoundTable> {
    table::loaded(&SOUNDS)
}

const RCC_DIR: &str = "usr/share/gcompris-qt/rcc";

/// Bundle holding a GCompris resource: `src/activities/<name>/...` is in `<name>.rcc`.
fn bundle(resource: &str) -> &str {
    resource
        .strip_prefix("src/activities/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("core")
}

pub fn collect(dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let sounds = sounds()?;
    let copyright = read_copyright(dir, GCOMPRIS)?;
    let mut bundles: Vec<&str> = sounds.rows().iter().map(|s| bundle(s.key)).collect();
    bundles.sort_unstable();
    bundles.dedup();
    let mut out = Vec::new();
    for bundle in bundles {
        let rel = format!("{RCC_DIR}/{bundle}.rcc");
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
            let Some(sound) = sounds.get(resource) else {
                continue;
            };
            let ext = resource.rsplit('.').next().unwrap_or("ogg").to_owned();
            out.push(Recording {
                package: GCOMPRIS,
                path: format!("{rel}#{}", file.path),
                description: sound.description.to_owned(),
                phrase: sound.phrase,
                category: sound.category.clone(),
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
