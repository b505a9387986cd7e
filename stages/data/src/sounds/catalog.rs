//! What the package readers share: the recording type, the supported packages, and helpers
//! for package trees.
//!
//! Descriptions are noun phrases (`a steam train departing from a station`, `a cello`),
//! hand-written per package in the data files under `stages/data/sounds/` ([`super::table`]),
//! except Tux Paint's, which are the English description of the stamp a sound belongs to.
//! Sounds whose names say nothing about what is heard are not listed and so not used.

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

impl std::str::FromStr for Phrase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "event" => Ok(Self::Event),
            "source" => Ok(Self::Source),
            _ => Err(format!("phrase `{s}` is neither `event` nor `source`")),
        }
    }
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

pub(super) fn read_copyright(dir: &Path, package: &str) -> anyhow::Result<String> {
    let path = dir.join(format!("usr/share/doc/{package}/copyright"));
    std::fs::read_to_string(&path).with_context(|| format!("reading `{}`", path.display()))
}

/// Licence of `path` per the package's DEP-5 `copyright`, or the package-wide statement.
pub(super) fn licence_of(copyright: &str, path: &str, package: &str) -> String {
    container::dep5_licence(copyright, path)
        .unwrap_or_else(|| format!("see /usr/share/doc/{package}/copyright"))
}

/// Every file under `root`, sorted, so that the recordings come in the same order everywhere.
pub(super) fn sorted_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    walk_files(root, &mut files)?;
    files.sort();
    Ok(files)
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
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

/// Relative path under `root` with `/` separators.
pub(super) fn relative(root: &Path, file: &Path) -> anyhow::Result<String> {
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
