//! The small file formats the packaged sounds come in: OpenTTD's sound bank (`.cat`), Qt's
//! binary resource files (`.rcc`), and the Debian metadata of a package (version from
//! `changelog.Debian.gz`, licence from a machine-readable `copyright` file).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail, ensure};

fn slice(bytes: &[u8], at: usize, len: usize) -> anyhow::Result<&[u8]> {
    at.checked_add(len)
        .and_then(|end| bytes.get(at..end))
        .with_context(|| format!("truncated: {len} bytes at offset {at} past the end"))
}

fn le_u32(bytes: &[u8], at: usize) -> anyhow::Result<u32> {
    Ok(u32::from_le_bytes(slice(bytes, at, 4)?.try_into()?))
}

fn be_u32(bytes: &[u8], at: usize) -> anyhow::Result<u32> {
    Ok(u32::from_be_bytes(slice(bytes, at, 4)?.try_into()?))
}

fn be_u16(bytes: &[u8], at: usize) -> anyhow::Result<u16> {
    Ok(u16::from_be_bytes(slice(bytes, at, 2)?.try_into()?))
}

/// One sound of an OpenTTD `.cat` bank.
#[derive(Debug, Clone, PartialEq)]
pub struct CatEntry<'a> {
    /// The entry's name; OpenSFX puts the title, credits and licence there.
    pub name: String,
    /// A complete RIFF/WAVE file.
    pub wav: &'a [u8],
}

/// Parses an OpenTTD sound bank: a table of `(offset, size)` little-endian u32 pairs (the
/// first offset, bit 31 cleared, is the table's length; bit 31 set marks the "new" format),
/// each pointing at a length-prefixed, NUL-terminated name followed by `size` bytes of WAV.
pub fn parse_cat(bytes: &[u8]) -> anyhow::Result<Vec<CatEntry<'_>>> {
    let table_len = (le_u32(bytes, 0)? & 0x7fff_ffff) as usize;
    ensure!(
        table_len >= 8 && table_len.is_multiple_of(8),
        "not a sound bank: table length {table_len}"
    );
    (0..table_len / 8)
        .map(|i| {
            let offset = (le_u32(bytes, 8 * i)? & 0x7fff_ffff) as usize;
            let size = le_u32(bytes, 8 * i + 4)? as usize;
            let name_len = *bytes
                .get(offset)
                .with_context(|| format!("entry {i}: offset {offset} past the end"))?
                as usize;
            let name = slice(bytes, offset + 1, name_len)?;
            let name = String::from_utf8_lossy(name)
                .trim_end_matches('\0')
                .to_owned();
            let wav = slice(bytes, offset + 1 + name_len, size)
                .with_context(|| format!("entry {i} ({name})"))?;
            Ok(CatEntry { name, wav })
        })
        .collect()
}

/// One file of a Qt resource bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct RccFile {
    /// Resource path, `/`-separated, starting with `/` (`/gcompris/src/core/resource/x.wav`).
    pub path: String,
    pub data: Vec<u8>,
}

const RCC_COMPRESSED: u16 = 0x01;
const RCC_DIRECTORY: u16 = 0x02;
const RCC_COMPRESSED_ZSTD: u16 = 0x04;

struct Rcc<'a> {
    bytes: &'a [u8],
    tree: usize,
    data: usize,
    names: usize,
    node_size: usize,
}

impl Rcc<'_> {
    /// A name: u16 length in UTF-16 units, u32 hash, then big-endian UTF-16.
    fn name(&self, offset: usize) -> anyhow::Result<String> {
        let at = self.names + offset;
        let units = be_u16(self.bytes, at)? as usize;
        let raw = slice(self.bytes, at + 6, 2 * units)?;
        let utf16: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        Ok(String::from_utf16_lossy(&utf16))
    }

    /// A file's contents: u32 length, then the bytes; zlib-compressed ones start with the
    /// big-endian uncompressed length (`qCompress`).
    fn contents(&self, offset: usize, flags: u16) -> anyhow::Result<Vec<u8>> {
        let at = self.data + offset;
        let len = be_u32(self.bytes, at)? as usize;
        let raw = slice(self.bytes, at + 4, len)?;
        if flags & RCC_COMPRESSED_ZSTD != 0 {
            bail!("zstd-compressed resources are not supported");
        }
        if flags & RCC_COMPRESSED == 0 {
            return Ok(raw.to_vec());
        }
        let expected = be_u32(raw, 0)? as usize;
        let mut out = Vec::with_capacity(expected);
        flate2::read::ZlibDecoder::new(&raw[4..])
            .read_to_end(&mut out)
            .context("inflating a compressed resource")?;
        ensure!(
            out.len() == expected,
            "compressed resource inflates to {} bytes, header says {expected}",
            out.len()
        );
        Ok(out)
    }

    fn walk(
        &self,
        node: usize,
        prefix: &str,
        depth: usize,
        out: &mut Vec<RccFile>,
    ) -> anyhow::Result<()> {
        ensure!(depth < 64, "directory tree too deep (a cycle?)");
        let at = self.tree + node * self.node_size;
        let name_offset = be_u32(self.bytes, at)? as usize;
        let flags = be_u16(self.bytes, at + 4)?;
        // The root node's name is not used.
        let path = if node == 0 {
            String::new()
        } else {
            format!("{prefix}/{}", self.name(name_offset)?)
        };
        if flags & RCC_DIRECTORY != 0 {
            let count = be_u32(self.bytes, at + 6)? as usize;
            let first = be_u32(self.bytes, at + 10)? as usize;
            ensure!(first > node, "child nodes must follow their directory");
            for child in first..first + count {
                self.walk(child, &path, depth + 1, out)?;
            }
        } else {
            let offset = be_u32(self.bytes, at + 10)? as usize;
            let data = self
                .contents(offset, flags)
                .with_context(|| format!("resource `{path}`"))?;
            out.push(RccFile { path, data });
        }
        Ok(())
    }
}

/// Parses a Qt binary resource file (`rcc -binary`, format versions 1 to 3): header `qres`,
/// version, offsets of the node tree, the data and the names (version 3 adds a flags word);
/// tree nodes are 14 bytes, 22 from version 2 on (a modification time is appended).
pub fn parse_rcc(bytes: &[u8]) -> anyhow::Result<Vec<RccFile>> {
    ensure!(bytes.starts_with(b"qres"), "not a Qt resource file");
    let version = be_u32(bytes, 4)?;
    ensure!(
        (1..=3).contains(&version),
        "unsupported resource format version {version}"
    );
    let rcc = Rcc {
        bytes,
        tree: be_u32(bytes, 8)? as usize,
        data: be_u32(bytes, 12)? as usize,
        names: be_u32(bytes, 16)? as usize,
        node_size: if version >= 2 { 22 } else { 14 },
    };
    let mut out = Vec::new();
    rcc.walk(0, "", 0, &mut out)?;
    Ok(out)
}

/// The version in the first line of a package's `changelog.Debian.gz`
/// (`openttd-opensfx (1.0.3-2) unstable; urgency=medium`).
pub fn changelog_version(package_dir: &Path, package: &str) -> anyhow::Result<String> {
    let path = package_dir.join(format!("usr/share/doc/{package}/changelog.Debian.gz"));
    let file =
        std::fs::File::open(&path).with_context(|| format!("opening `{}`", path.display()))?;
    let mut text = String::new();
    // The first line is all that is needed; the rest of the changelog can be long.
    flate2::read::GzDecoder::new(file)
        .take(4096)
        .read_to_string(&mut text)
        .with_context(|| format!("reading `{}`", path.display()))?;
    let first = text.lines().next().unwrap_or_default();
    first
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(v, _)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .with_context(|| format!("`{}`: no version in `{first}`", path.display()))
}

/// Shell-style glob as machine-readable `copyright` files use it: `*` matches any run of
/// characters (slashes included), `?` one character.
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((&p, rest)) => text
            .split_first()
            .is_some_and(|(&t, tail)| (p == '?' || p == t) && glob_match(rest, tail)),
    }
}

/// The licence that a machine-readable (DEP-5) `copyright` file gives `path` (relative to the
/// upstream source): the `License:` of the last `Files:` paragraph with a matching pattern.
pub fn dep5_licence(copyright: &str, path: &str) -> Option<String> {
    let path: Vec<char> = path.chars().collect();
    let mut found = None;
    for paragraph in copyright.split("\n\n") {
        let mut files = String::new();
        let mut licence = None;
        let mut in_files = false;
        for line in paragraph.lines() {
            if let Some(rest) = line.strip_prefix("Files:") {
                files.push_str(rest);
                in_files = true;
            } else if in_files && line.starts_with([' ', '\t']) {
                files.push(' ');
                files.push_str(line);
            } else {
                in_files = false;
                if let Some(rest) = line.strip_prefix("License:") {
                    licence = Some(rest.trim().to_owned());
                }
            }
        }
        let matches = files.split_whitespace().any(|pattern| {
            let pattern: Vec<char> = pattern.chars().collect();
            glob_match(&pattern, &path)
        });
        if let (true, Some(licence)) = (matches, licence) {
            found = Some(licence);
        }
    }
    found
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A `.cat` bank holding `entries` (name, WAV bytes).
    pub fn cat_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut table = Vec::new();
        let mut body = Vec::new();
        let base = 8 * entries.len();
        for (i, (name, wav)) in entries.iter().enumerate() {
            let mut offset = (base + body.len()) as u32;
            if i == 0 {
                offset |= 0x8000_0000;
            }
            table.extend(offset.to_le_bytes());
            table.extend((wav.len() as u32).to_le_bytes());
            body.push(name.len() as u8 + 1);
            body.extend(name.as_bytes());
            body.push(0);
            body.extend(*wav);
        }
        table.extend(body);
        table
    }

    fn rcc_name(names: &mut Vec<u8>, name: &str) -> u32 {
        let offset = names.len() as u32;
        let units: Vec<u16> = name.encode_utf16().collect();
        names.extend((units.len() as u16).to_be_bytes());
        names.extend(0u32.to_be_bytes());
        for u in units {
            names.extend(u.to_be_bytes());
        }
        offset
    }

    /// A version-3 `.rcc` with one directory `dir` holding `files` (name, bytes, compress).
    pub fn rcc_bytes(dir: &str, files: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut names = Vec::new();
        let mut data = Vec::new();
        let mut tree = Vec::new();
        let node = |tree: &mut Vec<u8>, name: u32, flags: u16, a: u32, b: u32| {
            tree.extend(name.to_be_bytes());
            tree.extend(flags.to_be_bytes());
            tree.extend(a.to_be_bytes());
            tree.extend(b.to_be_bytes());
            tree.extend(0u64.to_be_bytes());
        };
        node(&mut tree, 0, RCC_DIRECTORY, 1, 1);
        let dir_name = rcc_name(&mut names, dir);
        node(&mut tree, dir_name, RCC_DIRECTORY, files.len() as u32, 2);
        for (name, bytes, compress) in files {
            let name = rcc_name(&mut names, name);
            let offset = data.len() as u32;
            let payload = if *compress {
                let mut z = flate2::write::ZlibEncoder::new(Vec::new(), Default::default());
                z.write_all(bytes).unwrap();
                let mut p = (bytes.len() as u32).to_be_bytes().to_vec();
                p.extend(z.finish().unwrap());
                p
            } else {
                bytes.to_vec()
            };
            data.extend((payload.len() as u32).to_be_bytes());
            data.extend(payload);
            // Country and language (0), then the data offset.
            node(&mut tree, name, u16::from(*compress), 0, offset);
        }
        let header = 24u32;
        let tree_at = header;
        let data_at = tree_at + tree.len() as u32;
        let names_at = data_at + data.len() as u32;
        let mut out = b"qres".to_vec();
        for v in [3, tree_at, data_at, names_at, 0] {
            out.extend(v.to_be_bytes());
        }
        out.extend(tree);
        out.extend(data);
        out.extend(names);
        out
    }

    #[test]
    fn cat_entries_are_read_with_names() {
        let bytes = cat_bytes(&[("\"Cow\". License: CC0.", b"RIFFabcd"), ("x", b"RIFF")]);
        let entries = parse_cat(&bytes).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "\"Cow\". License: CC0.");
        assert_eq!(entries[0].wav, b"RIFFabcd");
        assert_eq!(entries[1].wav, b"RIFF");
        assert!(parse_cat(&bytes[..bytes.len() - 1]).is_err());
        assert!(parse_cat(b"\x03\0\0\0").is_err());
    }

    #[test]
    fn rcc_files_are_read_and_inflated() {
        let bytes = rcc_bytes(
            "sounds",
            &[
                ("a.wav", b"plain bytes", false),
                ("b.ogg", &[7u8; 300], true),
            ],
        );
        let files = parse_rcc(&bytes).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "/sounds/a.wav");
        assert_eq!(files[0].data, b"plain bytes");
        assert_eq!(files[1].path, "/sounds/b.ogg");
        assert_eq!(files[1].data, vec![7u8; 300]);
        assert!(parse_rcc(b"qrez").is_err());
        assert!(parse_rcc(&bytes[..60]).is_err());
    }

    #[test]
    fn dep5_last_matching_paragraph_wins() {
        let text = "Format: x\n\nFiles: *\nCopyright: a\nLicense: GPL-3+\n text\n\n\
                    Files: src/core/sounds/win.wav\n src/other/*.ogg\nLicense: CC-BY-3.0\n";
        assert_eq!(dep5_licence(text, "src/a/b.wav").as_deref(), Some("GPL-3+"));
        assert_eq!(
            dep5_licence(text, "src/core/sounds/win.wav").as_deref(),
            Some("CC-BY-3.0")
        );
        assert_eq!(
            dep5_licence(text, "src/other/x/y.ogg").as_deref(),
            Some("CC-BY-3.0")
        );
        assert_eq!(dep5_licence("Files: a\nLicense: X", "b"), None);
    }

    #[test]
    fn changelog_gives_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("usr/share/doc/pkg");
        std::fs::create_dir_all(&doc).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
        gz.write_all(b"pkg (1.2-3) unstable; urgency=medium\n\n  * x\n")
            .unwrap();
        std::fs::write(doc.join("changelog.Debian.gz"), gz.finish().unwrap()).unwrap();
        assert_eq!(changelog_version(dir.path(), "pkg").unwrap(), "1.2-3");
        assert!(changelog_version(dir.path(), "other").is_err());
    }
}
