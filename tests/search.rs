//! Listening to the models, through the real binary on the tiny generated data set.
//!
//! `pipeline search`: its ranking is the brute-force ranking of the `embed` node's embeddings
//! of the same model, a second query reads the cache, bad input is a clear error, and a folder
//! of the user's audio (with a broken file in it) is searched and cached by content.
//! `report.html`: every file it refers to is in its folder, and headless Chromium renders it
//! without console messages, decodes every `<audio>` source and saves a screenshot under
//! `target/`. Needs the domain kinds (feature `stages`).

#![cfg(feature = "stages")]

mod common;

use std::path::Path;
use std::process::Command;

use common::TestProject;
use pipeline_formats::{Embeddings, FeatureTables, Split};
use serde_json::Value;

const TINY: &str = include_str!("data/tiny.toml");

fn search(p: &TestProject, args: &[&str]) -> common::Run {
    p.run(&[&["search"], args].concat())
}

fn json_of(run: common::Run) -> Value {
    serde_json::from_str(&run.ok().stdout).unwrap()
}

/// `(clip id, score)` of a model's hits.
fn hits(answer: &Value, model: usize) -> Vec<(String, f64)> {
    answer["models"][model]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["clip_id"].as_str().unwrap().to_owned(),
                h["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum()
}

#[test]
fn search_before_anything_is_built_names_the_command_that_builds_it() {
    let p = TestProject::new(TINY);
    let early = search(&p, &["a dog"]);
    assert_eq!(early.code, 2, "{}", early.stderr);
    assert!(early.stderr.contains("`pipeline run`"), "{}", early.stderr);
    let named = search(&p, &["a dog", "--model", "continued"]);
    assert_eq!(named.code, 2, "{}", named.stderr);
    assert!(
        named.stderr.contains("`pipeline run continued`"),
        "{}",
        named.stderr
    );
}

#[test]
fn search_and_the_html_report_of_a_built_pipeline() {
    let p = TestProject::new(TINY);
    p.run(&["run", "-q"]).ok();
    search_ranks_like_brute_force_caches_and_explains_bad_input(&p);
    the_html_report_renders_in_a_browser_and_every_player_decodes(&p);
}

fn search_ranks_like_brute_force_caches_and_explains_bad_input(p: &TestProject) {
    let features = FeatureTables::load(&p.latest("features")).unwrap();
    let embeddings = Embeddings::load(&p.latest("embed-distill")).unwrap();
    let test_clips: Vec<usize> = (0..features.clips.len())
        .filter(|&i| features.clips[i].split == Split::Test)
        .collect();
    let query_caption = features.clips[test_clips[0]].caption_indices[0];
    let query = features.captions[query_caption].text.clone();

    // The default model is the Stage-2 student; its ranking is the brute-force one.
    let first = search(p, &[&query, "-k", "5"]).ok();
    assert!(
        first.stderr.contains("clips embedded and cached"),
        "{}",
        first.stderr
    );
    let answer = json_of(search(p, &[&query, "-k", "5", "--json"]));
    for hit in answer["models"][0]["hits"].as_array().unwrap() {
        // The table shows each hit's file and captions.
        assert!(
            first.stdout.contains(hit["file"].as_str().unwrap()),
            "{}",
            first.stdout
        );
        assert!(
            first.stdout.contains(hit["captions"][0].as_str().unwrap()),
            "{}",
            first.stdout
        );
    }
    assert_eq!(answer["models"][0]["model"], "distill");
    assert_eq!(answer["models"][0]["clips_searched"], test_clips.len());
    let mut expected: Vec<(String, f64)> = test_clips
        .iter()
        .map(|&i| {
            let score = dot(embeddings.audio_row(i), embeddings.text_row(query_caption));
            (features.clips[i].clip_id.clone(), score)
        })
        .collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    let got = hits(&answer, 0);
    assert_eq!(got.len(), 5);
    for (rank, ((got_id, got_score), (want_id, want_score))) in
        got.iter().zip(&expected).enumerate()
    {
        assert!(
            (got_score - want_score).abs() < 1e-4,
            "{got:?}\n{expected:?}"
        );
        // Scores within float noise of another may come in either order; the rest may not.
        let tied = expected
            .iter()
            .filter(|(_, s)| (s - want_score).abs() < 1e-4)
            .count()
            > 1;
        if !tied {
            assert_eq!(got_id, want_id, "rank {}", rank + 1);
        }
    }
    for hit in answer["models"][0]["hits"].as_array().unwrap() {
        let clip = features
            .clips
            .iter()
            .find(|c| c.clip_id == hit["clip_id"].as_str().unwrap())
            .unwrap();
        let captions: Vec<&str> = clip
            .caption_indices
            .iter()
            .map(|&j| features.captions[j].text.as_str())
            .collect();
        assert_eq!(hit["captions"], serde_json::json!(captions));
        assert!(hit["file"].as_str().unwrap().ends_with(&clip.file), "{hit}");
    }

    // The second query reads the cached clip embeddings.
    let again = search(p, &[&query]).ok();
    assert!(
        again.stderr.contains("embeddings from the cache"),
        "{}",
        again.stderr
    );

    // Another model side by side, chosen by stage name.
    let both = json_of(search(
        p,
        &[&query, "--compare", "train", "--json", "-k", "3"],
    ));
    assert!(
        both["models"][1]["model"]
            .as_str()
            .unwrap()
            .starts_with("train.seed-"),
        "{both}"
    );
    assert_eq!(hits(&both, 1).len(), 3);

    // Bad input.
    let known_word = features.captions[query_caption]
        .normalized
        .split(' ')
        .next()
        .unwrap();
    let partly = search(p, &[&format!("{known_word} zzzqx"), "--json"]);
    let partly = json_of(partly);
    assert!(
        partly["notes"][0].as_str().unwrap().contains("\"zzzqx\""),
        "{partly}"
    );
    for (args, needle) in [
        (vec!["zzzqx qqqzz"], "none of its words"),
        (vec!["  "], "empty"),
        (vec![&query, "--model", "features"], "not a model"),
        (vec![&query, "--model", "nosuch"], "no model `nosuch`"),
    ] {
        let run = search(p, &args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }

    // A folder of the user's audio: two clips of the test split and a broken file.
    let folder = p.path().join("my-sounds");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    let data = p.latest("data");
    let copied: Vec<&str> = test_clips[..2]
        .iter()
        .map(|&i| features.clips[i].file.as_str())
        .collect();
    std::fs::copy(data.join(copied[0]), folder.join("one.wav")).unwrap();
    std::fs::copy(data.join(copied[1]), folder.join("sub/two.wav")).unwrap();
    std::fs::write(folder.join("broken.wav"), b"not audio at all").unwrap();
    let folder_arg = folder.to_str().unwrap();
    let mine = search(p, &[&query, "--audio", folder_arg, "--json"]);
    assert!(
        mine.stderr.contains("skipped") && mine.stderr.contains("broken.wav"),
        "{}",
        mine.stderr
    );
    let mine = json_of(mine);
    let found = hits(&mine, 0);
    let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(found.len(), 2, "{mine}");
    assert!(
        ids.contains(&"one.wav")
            && ids.contains(&Path::new("sub").join("two.wav").to_str().unwrap())
    );
    assert_eq!(mine["models"][0]["skipped"].as_array().unwrap().len(), 1);
    // The same audio scores as the split's clip does: the model's own front end ran on it.
    let split_scores = json_of(search(p, &[&query, "--json", "-k", "100"]));
    for (id, score) in &found {
        let clip = if id == "one.wav" {
            test_clips[0]
        } else {
            test_clips[1]
        };
        let want = hits(&split_scores, 0)
            .into_iter()
            .find(|(c, _)| *c == features.clips[clip].clip_id)
            .unwrap()
            .1;
        assert!((score - want).abs() < 1e-4, "{id}: {score} vs {want}");
    }
    let broken_only = p.path().join("broken-only");
    std::fs::create_dir_all(&broken_only).unwrap();
    std::fs::write(broken_only.join("x.wav"), b"RIFF nonsense").unwrap();
    let none = search(p, &[&query, "--audio", broken_only.to_str().unwrap()]);
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(
        none.stderr.contains("1 file(s) could not be read") && none.stderr.contains("x.wav"),
        "{}",
        none.stderr
    );
    let cached = search(p, &[&query, "--audio", folder_arg]).ok();
    assert!(
        cached.stderr.contains("embeddings from the cache"),
        "{}",
        cached.stderr
    );
}

/// The `src` attribute values of `html`.
fn sources(html: &str) -> Vec<&str> {
    html.split("src=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect()
}

fn the_html_report_renders_in_a_browser_and_every_player_decodes(p: &TestProject) {
    let dir = p.latest("report").canonicalize().unwrap();
    let page = dir.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for heading in [
        "Listen: test queries",
        "Listen: what the teachers estimate",
        "<table>",
    ] {
        assert!(html.contains(heading), "{heading}");
    }
    assert!(
        html.contains("<img src=\"training_curves.png\" alt=\"training curves\""),
        "{html}"
    );
    let sources = sources(&html);
    let players = html.matches("<audio ").count();
    assert!(players >= 5, "{players} players");
    for src in &sources {
        assert!(
            dir.join(src).is_file(),
            "`{src}` is not in the report's folder"
        );
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/chromium.sh");
    let found = Command::new(&script).output().unwrap();
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let browser = String::from_utf8(found.stdout).unwrap().trim().to_owned();
    let url = format!("file://{}", page.display());
    let headless = |extra: &[&str]| {
        let out = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--allow-file-access-from-files",
            ])
            .args([
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=10000",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let dom = headless(&["--dump-dom"]);
    let logs = String::from_utf8_lossy(&dom.stderr);
    let console: Vec<&str> = logs.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let dom = String::from_utf8_lossy(&dom.stdout);
    let body = dom
        .split("<body")
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap();
    assert!(
        body.contains(&format!("data-audio-ok=\"{players}\""))
            && body.contains("data-audio-failed=\"0\""),
        "every player decodes its audio: <body{body}>"
    );
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-html.png");
    let _ = std::fs::remove_file(&screenshot);
    headless(&[
        "--window-size=1280,2400",
        &format!("--screenshot={}", screenshot.display()),
    ]);
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(
        &png[..8],
        b"\x89PNG\r\n\x1a\n",
        "a PNG at {}",
        screenshot.display()
    );
}
