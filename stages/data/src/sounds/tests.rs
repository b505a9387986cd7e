//! `packaged-sounds` on tiny fake package trees that mimic each supported layout.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use pipeline_api::SilentReporter;

use super::container::tests::{cat_bytes, rcc_bytes};
use super::*;

/// A mono 16-bit WAV of a tone, `seconds` long at 16 kHz.
fn wav(seconds: f64, freq: f32) -> Vec<u8> {
    let sr = 16000u32;
    let mut cursor = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: sr,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for i in 0..(seconds * sr as f64) as usize {
        let x = (std::f32::consts::TAU * freq * i as f32 / sr as f32).sin();
        w.write_sample((x * 8000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    cursor.into_inner()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `usr/share/doc/<pkg>/` with a changelog (version) and a DEP-5 copyright.
fn doc(root: &Path, pkg: &str, version: &str, copyright: &str) -> std::path::PathBuf {
    let dir = root.join("debian").join(pkg);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
    writeln!(gz, "{pkg} ({version}) unstable; urgency=medium").unwrap();
    let doc = dir.join(format!("usr/share/doc/{pkg}"));
    write(&doc.join("changelog.Debian.gz"), &gz.finish().unwrap());
    write(&doc.join("copyright"), copyright.as_bytes());
    dir
}

/// A fetch artifact with all four packages; returns the number of clips it must give.
fn fake_packages(root: &Path) {
    let dir = doc(
        root,
        catalog::OPENSFX,
        "1.0.3-2",
        "Files: *\nLicense: GPL-2\n",
    );
    let bank = cat_bytes(&[
        (
            "\"Cow\". By A. License: Creative Commons Zero 1.0.",
            &wav(1.5, 200.0),
        ),
        ("\"Unused/Nothing\". License: CC0.", &wav(0.0, 0.0)),
        (
            "\"Horse\". Original by B. License: CC BY 3.0.",
            &wav(25.0, 300.0),
        ),
        ("\"Sheep\". License: CC0.", &wav(2.0, 400.0)),
    ]);
    write(&dir.join(opensfx::BANK_PATH), &bank);

    let dir = doc(
        root,
        catalog::GCOMPRIS,
        "3.1-2",
        "Files: *\nLicense: GPL-3+\n\nFiles: src/activities/money/*\nLicense: CC0-1.0\n",
    );
    let rcc = dir.join("usr/share/gcompris-qt/rcc");
    let res = |name: &str| format!("gcompris/src/activities/{name}/resource");
    let melody = rcc_bytes(
        &res("melody"),
        &[
            ("xylofon_son1.wav", &wav(0.5, 800.0), false),
            ("knock.wav", &wav(0.3, 100.0), true),
            ("unlisted.wav", &wav(0.3, 100.0), false),
        ],
    );
    write(&rcc.join("melody.rcc"), &melody);
    write(
        &rcc.join("money.rcc"),
        &rcc_bytes(&res("money"), &[("money1.wav", &wav(1.0, 900.0), true)]),
    );

    let dir = doc(
        root,
        catalog::TUXPAINT,
        "2022.06.04-1",
        "Files: *\nLicense: GPL-2\n",
    );
    let stamps = dir.join("usr/share/tuxpaint/stamps");
    write(&stamps.join("animals/birds/crow.wav"), &wav(1.0, 1000.0));
    write(
        &stamps.join("animals/birds/crow.txt"),
        b"A crow.\nfr.utf8=Un corbeau.\n",
    );
    write(
        &stamps.join("animals/birds/crow_desc.wav"),
        &wav(1.0, 500.0),
    );
    write(&stamps.join("animals/birds/crow_fr.wav"), &wav(1.0, 500.0));
    write(&stamps.join("animals/birds/duck.wav"), &wav(1.2, 1100.0));
    write(&stamps.join("animals/birds/duck.txt"), b"A duck.\n");
    write(&stamps.join("symbols/math/7.wav"), &wav(1.0, 500.0));
    write(&stamps.join("symbols/math/7.txt"), b"Seven.\n");

    let dir = doc(
        root,
        catalog::FREEDESKTOP,
        "0.8-2",
        "Files: stereo/bell.oga\nLicense: CC-BY-3.0\n",
    );
    // A WAV under the theme's name: the decoder probes the content, not the extension.
    write(
        &dir.join("usr/share/sounds/freedesktop/stereo/bell.oga"),
        &wav(0.8, 1200.0),
    );

    // Wesnoth: takes numbered `-<n>`, both `.ogg` and `.wav`; a copyright that is not DEP-5.
    let dir = doc(
        root,
        catalog::WESNOTH,
        "1:1.16.9-1",
        "Upstream Author: David White\n\nLicense:\n    GNU General Public License version 2\n",
    );
    let sounds = dir.join(wesnoth::DIR);
    write(&sounds.join("wolf-growl-1.ogg"), &wav(0.7, 210.0));
    write(&sounds.join("wolf-growl-2.wav"), &wav(0.6, 220.0));
    write(&sounds.join("magic-missile-1-miss.ogg"), &wav(0.5, 1300.0));
    write(&sounds.join("ambient/birds1.ogg"), &wav(1.5, 2000.0));
    write(&sounds.join("poison.wav"), &wav(0.5, 100.0));
    write(
        &dir.join("usr/share/games/wesnoth/1.16/sounds/button.wav"),
        &wav(0.2, 100.0),
    );

    // Widelands: `_<nn>` takes, a DEP-5 copyright and the upstream sound sheet.
    let dir = doc(
        root,
        catalog::WIDELANDS,
        "2:1.1-3",
        "Files: *\nLicense: GPL-2+\n\nFiles: data/sound/animals/*\nLicense: CC0-1.0\n",
    );
    let sounds = dir.join(widelands::DIR);
    write(&sounds.join("animals/wolf_00.ogg"), &wav(1.0, 230.0));
    write(&sounds.join("animals/wolf_01.ogg"), &wav(1.1, 240.0));
    write(&sounds.join("farm/sheep_00.ogg"), &wav(0.9, 450.0));
    write(
        &sounds.join("barbarians/taverns/tavern_01.ogg"),
        &wav(0.9, 450.0),
    );
    write(&sounds.join("click.ogg"), &wav(0.1, 450.0));
    write(
        &sounds.join("wl-sound-docu.csv"),
        b"Widelands Sound Documentation,,,,,,,,,,\n\
          File Name,Format,Location,Usage,Author,License,reworked,Original File Name,Source,Orig. Format,BZR\n\
          wolf_00.ogg,11025,data/sound/animals,,Someone,PD,yes,Howl-5.wav,http://x/howl,11025,8019\n\
          tavern_01.ogg,,sound/barbarians/taverns,,DUPLICATE to tavern_00.ogg,,,,,,8145\n",
    );
}

fn all_train() -> SoundsParams {
    SoundsParams {
        sample_rate: 16000,
        train_fraction: 1.0,
        val_fraction: 0.0,
        ..Default::default()
    }
}

fn run(params: &SoundsParams, root: &Path) -> (tempfile::TempDir, serde_json::Value) {
    let out = tempfile::tempdir().unwrap();
    let scratch = out.path().join("scratch");
    let metrics = write_dataset(params, root, out.path(), &scratch, &SilentReporter).unwrap();
    (out, metrics)
}

#[test]
fn fake_packages_give_clips_captions_and_graded_relevance() {
    let root = tempfile::tempdir().unwrap();
    fake_packages(root.path());
    let (out, metrics) = run(&all_train(), root.path());
    let index = DatasetIndex::load(out.path()).unwrap();

    // 3 OpenSFX (horse: 25 s in three parts), 3 GCompris, 2 Tux Paint, 1 freedesktop,
    // 4 Wesnoth, 3 Widelands (the duplicate, the click and the unlisted sounds left out).
    assert_eq!(metrics["recordings"], 16, "{metrics}");
    assert_eq!(metrics["recordings_skipped"], 0);
    assert_eq!(metrics["recordings_wesnoth-1.16-data"], 4);
    assert_eq!(metrics["recordings_widelands-data"], 3);
    assert_eq!(index.clips.len(), 18);
    assert_eq!(index.captions.len(), 18 * 5);
    let horse: Vec<&DatasetClip> = index
        .clips
        .iter()
        .filter(|c| c.clip_id.starts_with("opensfx-001-"))
        .collect();
    assert_eq!(horse.len(), 3);
    assert!(
        horse
            .iter()
            .all(|c| (c.duration_s - 25.0 / 3.0).abs() < 0.01)
    );
    let reader = hound::WavReader::open(out.path().join(&horse[0].file)).unwrap();
    assert_eq!(reader.spec().sample_rate, 16000);
    assert_eq!(reader.spec().channels, 1);

    // Captions: five different ones per clip, each naming what the description says.
    let mut by_clip: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in &index.captions {
        by_clip.entry(&c.clip_id).or_default().push(&c.text);
    }
    let must_mention = [
        ("opensfx-000-0", "cow"),
        ("opensfx-001-2", "horse"),
        ("gcompris-000-0", "xylophone"),
        ("gcompris-002-0", "coins"),
        ("tuxpaint-000-0", "crow"),
        ("freedesktop-000-0", "bell"),
        ("wesnoth-000-0", "birds"),
        ("wesnoth-001-0", "magic missile"),
        ("wesnoth-002-0", "wolf growling"),
        ("wesnoth-003-0", "wolf growling"),
        ("widelands-000-0", "wolf howling"),
        ("widelands-002-0", "sheep"),
    ];
    for (clip, word) in must_mention {
        let texts = &by_clip[clip];
        assert_eq!(texts.iter().collect::<BTreeSet<_>>().len(), 5, "{texts:?}");
        assert!(
            texts.iter().all(|t| t.to_lowercase().contains(word)),
            "{texts:?}"
        );
    }

    // Relevance: 1 for the own clip, 0.9 for another part of the same recording, graded by
    // labels otherwise, nothing for unrelated clips.
    let rel: BTreeMap<(&str, &str), f32> = index
        .relevance
        .as_ref()
        .unwrap()
        .iter()
        .map(|r| ((r.caption_id.as_str(), r.clip_id.as_str()), r.relevance))
        .collect();
    assert!(
        index
            .captions
            .iter()
            .all(|c| rel[&(c.caption_id.as_str(), c.clip_id.as_str())] == 1.0)
    );
    assert_eq!(
        rel[&("opensfx-001-0#3", "opensfx-001-2")],
        caption::SAME_RECORDING
    );
    // Cow and sheep: same category, no shared keyword.
    assert!((rel[&("opensfx-000-0#0", "opensfx-002-0")] - 0.4).abs() < 1e-6);
    // Cow and horse: two of three category levels.
    assert!((rel[&("opensfx-000-0#0", "opensfx-001-1")] - 0.4 * 2.0 / 3.0).abs() < 1e-6);
    // Crow and duck: same category `animal/bird`.
    assert!((rel[&("tuxpaint-000-0#1", "tuxpaint-001-0")] - 0.4).abs() < 1e-6);
    assert!(!rel.contains_key(&("opensfx-000-0#0", "freedesktop-000-0")));
    // Wolf growling (Wesnoth) and wolf howling (Widelands): same category, one of three words.
    assert!((rel[&("wesnoth-002-0#0", "widelands-000-0")] - (0.4 + 0.4 / 3.0)).abs() < 1e-6);
    // Two takes of the same Wesnoth sound share every label but are different recordings.
    assert!((rel[&("wesnoth-002-0#0", "wesnoth-003-0")] - 0.8).abs() < 1e-6);

    // Provenance names package, version, path and licence of every recording.
    let prov: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("provenance.json")).unwrap())
            .unwrap();
    let recs = prov["recordings"].as_array().unwrap();
    assert_eq!(recs.len(), 16);
    let money = recs
        .iter()
        .find(|r| r["recording_id"] == "gcompris-002")
        .unwrap();
    assert_eq!(money["version"], "3.1-2");
    assert_eq!(money["licence"], "CC0-1.0");
    assert!(
        money["path"]
            .as_str()
            .unwrap()
            .ends_with("money.rcc#/gcompris/src/activities/money/resource/money1.wav")
    );
    let cow = &recs[0];
    assert_eq!(cow["licence"], "Creative Commons Zero 1.0");
    assert_eq!(cow["category"], "animal/mammal/bovine");
    assert_eq!(
        recs.iter()
            .find(|r| r["package"] == catalog::FREEDESKTOP)
            .unwrap()["licence"],
        "CC-BY-3.0"
    );
    let rec = |id: &str| recs.iter().find(|r| r["recording_id"] == id).unwrap();
    let growl = rec("wesnoth-003");
    assert_eq!(growl["licence"], "GPL-2+");
    assert_eq!(growl["version"], "1:1.16.9-1");
    assert_eq!(
        growl["path"],
        "usr/share/games/wesnoth/1.16/data/core/sounds/wolf-growl-2.wav"
    );
    assert_eq!(growl["category"], "animal/mammal/dog");
    let wolf = rec("widelands-000");
    assert_eq!(wolf["licence"], "CC0-1.0");
    assert_eq!(
        wolf["credit"],
        "Original \"Howl-5.wav\", from http://x/howl, by Someone, upstream licence PD"
    );
    assert!(rec("widelands-001")["credit"].is_null());
    assert_eq!(rec("widelands-002")["licence"], "GPL-2+");
    assert_eq!(rec("widelands-002")["description"], "sheep bleating");
}

#[test]
fn splits_keep_recordings_together_and_runs_are_deterministic() {
    let root = tempfile::tempdir().unwrap();
    fake_packages(root.path());
    let params = SoundsParams {
        sample_rate: 16000,
        max_seconds: 2.0,
        train_fraction: 0.5,
        val_fraction: 0.2,
        ..Default::default()
    };
    let (a, _) = run(&params, root.path());
    let (b, _) = run(&params, root.path());
    let ia = DatasetIndex::load(a.path()).unwrap();
    assert_eq!(ia, DatasetIndex::load(b.path()).unwrap());
    // Horse is cut into 13 parts of at most 2 s, all in one split.
    let mut split_of: BTreeMap<String, BTreeSet<Split>> = BTreeMap::new();
    for c in &ia.clips {
        let recording = c.clip_id.rsplit_once('-').unwrap().0.to_owned();
        split_of.entry(recording).or_default().insert(c.split);
    }
    assert_eq!(
        ia.clips
            .iter()
            .filter(|c| c.clip_id.starts_with("opensfx-001-"))
            .count(),
        13
    );
    assert!(split_of.values().all(|s| s.len() == 1), "{split_of:?}");
    // The two takes of Wesnoth's `wolf-growl` are one group.
    assert_eq!(split_of["wesnoth-002"], split_of["wesnoth-003"]);
    // Relevance never crosses splits.
    let split: BTreeMap<&str, Split> = ia
        .clips
        .iter()
        .map(|c| (c.clip_id.as_str(), c.split))
        .collect();
    for r in ia.relevance.as_ref().unwrap() {
        let own = r.caption_id.split('#').next().unwrap();
        assert_eq!(split[own], split[r.clip_id.as_str()]);
    }
    let other = SoundsParams { seed: 7, ..params };
    let (c, _) = run(&other, root.path());
    assert_ne!(ia.captions, DatasetIndex::load(c.path()).unwrap().captions);
}

#[test]
fn takes_of_one_sound_share_a_split() {
    let rec = |group: Option<&str>| catalog::Recording {
        package: catalog::WESNOTH,
        path: String::new(),
        description: "a wolf growling".into(),
        phrase: catalog::Phrase::Event,
        category: vec!["animal".into()],
        licence: String::new(),
        credit: None,
        group: group.map(str::to_owned),
        audio: catalog::AudioData::File("x".into()),
    };
    let params = SoundsParams::default();
    // Without groups: exactly the per-recording assignment.
    let single: Vec<_> = (0..40).map(|_| rec(None)).collect();
    assert_eq!(
        grouped_splits(&single, &params, "p"),
        assign_splits(40, &params, "p")
    );
    // Groups of four takes: the assignment of ten groups, each group in one split.
    let keys: Vec<String> = (0..40).map(|i| format!("g{}", i % 10)).collect();
    let takes: Vec<_> = keys.iter().map(|k| rec(Some(k))).collect();
    let splits = grouped_splits(&takes, &params, "p");
    let by_group = assign_splits(10, &params, "p");
    for (i, split) in splits.iter().enumerate() {
        assert_eq!(*split, by_group[i % 10]);
    }
}

#[test]
fn missing_package_names_the_fetch_entry() {
    let root = tempfile::tempdir().unwrap();
    fake_packages(root.path());
    std::fs::remove_dir_all(root.path().join("debian").join(catalog::TUXPAINT)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = write_dataset(
        &all_train(),
        root.path(),
        out.path(),
        &out.path().join("s"),
        &SilentReporter,
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("tuxpaint-stamps-default") && msg.contains("fetch"),
        "{msg}"
    );
    assert!(
        msg.contains("2022.06.04-1") && msg.contains("6db6c1bf"),
        "{msg}"
    );
    // Only the listed sources are needed.
    let params = SoundsParams {
        sources: vec![catalog::OPENSFX.into()],
        ..all_train()
    };
    let (_, metrics) = run(&params, root.path());
    assert_eq!(metrics["recordings"], 3);
}

#[test]
fn plan_is_strict() {
    let inputs = InputCounts([("packages".to_owned(), 1)].into());
    let plan = PackagedSounds.plan(&toml::Table::new(), &inputs).unwrap();
    assert_eq!(plan.params["captions_per_clip"], 5);
    assert_eq!(plan.params["sources"].as_array().unwrap().len(), 6);
    let bad = |text: &str| {
        let t: toml::Table = toml::from_str(text).unwrap();
        PackagedSounds.plan(&t, &inputs).unwrap_err()
    };
    let err = bad("source = [\"x\"]");
    assert!(err.message.contains("unknown field `source`"), "{err}");
    let err = bad("sources = [\"wesnoth-data\"]");
    assert_eq!(err.key.as_deref(), Some("sources"));
    assert!(err.message.contains("openttd-opensfx"), "{err}");
    assert_eq!(
        bad("train_fraction = 0.9\nval_fraction = 0.2")
            .key
            .as_deref(),
        Some("val_fraction")
    );
    assert_eq!(bad("max_seconds = 0.5").key.as_deref(), Some("max_seconds"));
    assert!(
        PackagedSounds
            .plan(&toml::Table::new(), &InputCounts::default())
            .is_err()
    );
}

/// On the real packages: `SOUNDS_ROOT=<dir with debian/<pkg>/> cargo test -p pipeline-data
/// --lib -- --ignored --nocapture real_packages` (prints metrics and sample captions).
#[test]
#[ignore]
fn real_packages() {
    let root = std::path::PathBuf::from(std::env::var("SOUNDS_ROOT").expect("SOUNDS_ROOT"));
    let out = std::env::temp_dir().join("packaged-sounds");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let started = std::time::Instant::now();
    let metrics = crate::synth::pool(2)
        .unwrap()
        .install(|| {
            write_dataset(
                &SoundsParams::default(),
                &root,
                &out,
                &out.join("scratch"),
                &SilentReporter,
            )
        })
        .unwrap();
    eprintln!(
        "{:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        serde_json::to_string_pretty(&metrics).unwrap()
    );
    let index = DatasetIndex::load(&out).unwrap();
    for c in index.captions.iter().step_by(53) {
        eprintln!("{}: {}", c.caption_id, c.text);
    }
}

#[test]
fn the_kind_runs_on_its_input_artifact() {
    let root = tempfile::tempdir().unwrap();
    fake_packages(root.path());
    let out = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let table: toml::Table =
        toml::from_str("sample_rate = 16000\nsources = [\"openttd-opensfx\"]").unwrap();
    let inputs = InputCounts([("packages".to_owned(), 1)].into());
    let plan = PackagedSounds.plan(&table, &inputs).unwrap();
    let bound = [(
        "packages".to_owned(),
        vec![pipeline_api::InputArtifact {
            node: Some("packages".into()),
            path: root.path().to_owned(),
        }],
    )]
    .into();
    let ctx = RunContext {
        node: "data",
        params: &plan.params,
        inputs: &bound,
        out_dir: out.path(),
        scratch_dir: scratch.path(),
        threads: 1,
        gpu: None,
        reporter: &SilentReporter,
    };
    PackagedSounds.run(&ctx).unwrap();
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["recordings_openttd-opensfx"], 3);
    assert_eq!(DatasetIndex::load(out.path()).unwrap().clips.len(), 5);
}

/// The same packages in two places, one recording truncated: the outputs are the same bytes
/// (no path of the input or the scratch directory in `provenance.json`), the truncated
/// recording is skipped with a warning, and the time is a measurement, not a metric.
#[test]
fn outputs_do_not_depend_on_where_the_packages_live() {
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let root = tempfile::tempdir().unwrap();
            fake_packages(root.path());
            let duck = root
                .path()
                .join("debian")
                .join(catalog::TUXPAINT)
                .join("usr/share/tuxpaint/stamps/animals/birds/duck.wav");
            let len = std::fs::metadata(&duck).unwrap().len();
            let file = std::fs::OpenOptions::new().write(true).open(&duck).unwrap();
            file.set_len(len - 2000).unwrap();
            let out = tempfile::tempdir().unwrap();
            let scratch = tempfile::tempdir().unwrap();
            let recorder = crate::testing::Recorder::default();
            let metrics = write_dataset(
                &all_train(),
                root.path(),
                out.path(),
                scratch.path(),
                &recorder,
            )
            .unwrap();
            assert_eq!(metrics["recordings_skipped"], 1);
            assert!(metrics.get("generation_seconds").is_none(), "{metrics}");
            assert_eq!(recorder.measured(), ["generation_seconds"]);
            let warnings = recorder.warnings();
            assert!(
                warnings.len() == 1
                    && warnings[0].contains("animals/birds/duck.wav")
                    && warnings[0].contains("truncated"),
                "{warnings:?}"
            );
            let files = crate::testing::content(out.path());
            crate::testing::assert_no_path_in(&files, root.path());
            crate::testing::assert_no_path_in(&files, scratch.path());
            files
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
    let provenance: serde_json::Value =
        serde_json::from_slice(&runs[0]["provenance.json"]).unwrap();
    let reason = provenance["skipped"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("truncated: the header promises"),
        "{reason}"
    );
}

/// Every data file under `stages/data/sounds/` is compiled in, parses (a header, one field per
/// column, valid phrases and categories, no key twice), reads the same with the csv crate, and
/// holds what its reader relies on.
#[test]
fn data_files_parse_and_fit_their_readers() {
    use super::table::DataFile;
    let files = [
        opensfx::DATA,
        gcompris::DATA,
        tuxpaint::CATEGORIES_DATA,
        tuxpaint::OVERRIDES_DATA,
        freedesktop::DATA,
        wesnoth::DATA,
        widelands::DATA,
    ];
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("sounds");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let compiled: BTreeSet<String> = files.iter().map(|f| f.name.to_owned()).collect();
    assert_eq!(on_disk, compiled, "files in `{}`", folder.display());
    for file in files {
        let records: Vec<Vec<String>> = csv::ReaderBuilder::new()
            .delimiter(b'\t')
            .quoting(false)
            .comment(Some(b'#'))
            .has_headers(false)
            .from_reader(file.text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        let columns: Vec<&str> = records[0].iter().map(String::as_str).collect();
        let rows: Vec<Vec<&str>> = file
            .rows(&columns)
            .unwrap()
            .into_iter()
            .map(|r| r.fields)
            .collect();
        assert_eq!(rows, records[1..], "{}", file.name);
    }

    let mut problems = Vec::new();
    let mut check = |ok: bool, file: DataFile, line: usize, what: String| {
        if !ok {
            problems.push(file.error(line, what));
        }
    };
    // Captions put the description after "the sound of" and end it with a full stop.
    let description_ok = |d: &str| {
        d.starts_with(|c: char| c.is_ascii_lowercase())
            && !d.ends_with(['.', '!', ','])
            && !d.contains("  ")
    };
    let description =
        |d: &str| format!("description `{d}` must start in lower case and not end in punctuation");
    let sound_tables = [
        opensfx::sounds(),
        gcompris::sounds(),
        freedesktop::sounds(),
        wesnoth::sounds(),
        widelands::sounds(),
    ];
    for table in sound_tables.map(Result::unwrap) {
        for s in table.rows() {
            let d = s.description;
            check(description_ok(d), table.file, s.line, description(d));
        }
    }
    let tux = tuxpaint::tables().unwrap();
    for (d, line) in tux.overrides.values() {
        check(
            description_ok(d),
            tuxpaint::OVERRIDES_DATA,
            *line,
            description(d),
        );
    }
    for s in opensfx::sounds().unwrap().rows() {
        // The bank's entry names quote the title.
        let ok = !s.key.contains('"');
        check(
            ok,
            opensfx::DATA,
            s.line,
            format!("title `{}` holds `\"`", s.key),
        );
    }
    for s in gcompris::sounds().unwrap().rows() {
        // The activity names the bundle; the extension tells the decoder the format.
        let ok = s
            .key
            .strip_prefix("src/activities/")
            .is_some_and(|r| r.contains('/'))
            && (s.key.ends_with(".ogg") || s.key.ends_with(".wav"));
        let what = format!("`{}` is not `src/activities/<activity>/....ogg|wav`", s.key);
        check(ok, gcompris::DATA, s.line, what);
    }
    for s in freedesktop::sounds().unwrap().rows() {
        let ok = !s.key.contains(['/', '.']);
        let what = format!("`{}` is not an event name (`stereo/<event>.oga`)", s.key);
        check(ok, freedesktop::DATA, s.line, what);
    }
    for s in wesnoth::sounds().unwrap().rows() {
        // Files are looked up by their stem only, so another key would never match.
        let ok = catalog::sound_stem(&format!("{}.ogg", s.key)).as_deref() == Some(s.key);
        let what = format!(
            "`{}` is not a sound stem (no extension, no take number)",
            s.key
        );
        check(ok, wesnoth::DATA, s.line, what);
    }
    for s in widelands::sounds().unwrap().rows() {
        let extension = s.key.ends_with(".ogg") || s.key.ends_with(".wav");
        let ok = !extension && catalog::sound_stem(&format!("{}.ogg", s.key)).is_some();
        let what = format!(
            "`{}` is not a path under `data/sound/` without extension",
            s.key
        );
        check(ok, widelands::DATA, s.line, what);
    }
    for (stamp, (_, line)) in &tux.overrides {
        // An override only applies to a stamp in a directory that is used.
        let dir = stamp.rsplit_once('/').map_or("", |(d, _)| d);
        let ok =
            (stamp.ends_with(".ogg") || stamp.ends_with(".wav")) && tux.category(dir).is_some();
        let what = format!("`{stamp}` is not a sound in a directory of `tuxpaint-categories.tsv`");
        check(ok, tuxpaint::OVERRIDES_DATA, *line, what);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
