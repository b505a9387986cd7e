//! The three stage kinds run end to end on generated artifacts.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Int64Type};
use parquet::file::reader::{FileReader, SerializedFileReader};
use pipeline_api::{InputCounts, Registry, StageKind};
use pipeline_eval::evaluate::{EvaluationMetrics, TOP_K, read_metrics, read_top};
use pipeline_eval::{Correspondences, Evaluate, Report, Sweep, metrics, statistics};
use pipeline_formats::{
    Embeddings, FeatureSet, Split, TeacherEmbeddings, batch, f64_column, i64_column, read_parquet,
    write_parquet,
};

mod common;

use common::{run_stage, synthetic_embeddings, synthetic_features};

const TOPICS: usize = 3;

struct Setup {
    dir: tempfile::TempDir,
    features: FeatureSet,
    fdir: PathBuf,
}

fn setup(relevance: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let features = synthetic_features([8, 3, 6], 2, TOPICS, relevance);
    let fdir = dir.path().join("features");
    std::fs::create_dir_all(&fdir).unwrap();
    features.save(&fdir).unwrap();
    Setup {
        dir,
        features,
        fdir,
    }
}

fn save_embeddings(s: &Setup, name: &str, e: &Embeddings) -> PathBuf {
    let d = s.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    e.save(&d).unwrap();
    d
}

fn read_all(path: &Path) -> RecordBatch {
    read_parquet(path).unwrap()
}

fn f32s(b: &RecordBatch, name: &str) -> Vec<f32> {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_primitive::<Float32Type>()
        .values()
        .to_vec()
}

fn i64s(b: &RecordBatch, name: &str) -> Vec<i64> {
    b.column_by_name(name)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

#[test]
fn registry_has_the_four_kinds() {
    let mut r = Registry::default();
    pipeline_eval::register(&mut r);
    assert_eq!(
        r.names().collect::<Vec<_>>(),
        vec!["correspondences", "evaluate", "report", "sweep"]
    );
    assert!(
        r.iter()
            .all(|k| k.version() >= 1 && !k.summary().is_empty())
    );
}

#[test]
fn plans_validate_parameters_and_inputs() {
    let one = |names: &[(&str, usize)]| {
        InputCounts(names.iter().map(|(n, c)| (n.to_string(), *c)).collect())
    };
    let inputs = one(&[("teachers", 2), ("features", 1)]);
    let t = |s: &str| toml::from_str::<toml::Table>(s).unwrap();
    let plan = Correspondences.plan(&t(""), &inputs).unwrap();
    assert_eq!(plan.params["split"], "train");
    assert_eq!(plan.params["tau"], 0.05);
    assert_eq!(plan.params["with_probabilities"], true);
    let err = Correspondences.plan(&t("taux = 1.0"), &inputs).unwrap_err();
    assert!(err.message.contains("unknown field"), "{err}");
    assert_eq!(
        Correspondences
            .plan(&t("tau = 0.0"), &inputs)
            .unwrap_err()
            .key
            .as_deref(),
        Some("tau")
    );
    assert_eq!(
        Correspondences
            .plan(&t("split = \"dev\""), &inputs)
            .unwrap_err()
            .key
            .as_deref(),
        Some("split")
    );
    assert!(
        Correspondences
            .plan(&t(""), &one(&[("teachers", 1)]))
            .is_err()
    );
    let ev = Evaluate
        .plan(&t("seed = 3"), &one(&[("embeddings", 1), ("features", 1)]))
        .unwrap();
    assert_eq!(ev.params["split"], "test");
    assert_eq!(ev.params["bootstrap"], 1000);
    // Several embeddings are an ensemble; none is refused.
    assert!(
        Evaluate
            .plan(&t(""), &one(&[("embeddings", 2), ("features", 1)]))
            .is_ok()
    );
    assert!(Evaluate.plan(&t(""), &one(&[("features", 1)])).is_err());
    let rp = Report
        .plan(
            &t("baseline = [\"evaluate.\", \"*-s1\"]"),
            &one(&[("evaluations", 3)]),
        )
        .unwrap();
    assert_eq!(rp.params["bootstrap"], 1000);
    let rp = Report.plan(&t(""), &one(&[("evaluations", 3)])).unwrap();
    assert_eq!(rp.params["baseline"], "evaluate.");
    assert!(
        Report
            .plan(&t("baseline = 3"), &one(&[("evaluations", 3)]))
            .is_err()
    );
    let refused = |params: &str| {
        Report
            .plan(&t(params), &one(&[("evaluations", 3)]))
            .unwrap_err()
            .key
    };
    assert_eq!(
        refused("[[comparisons]]\nstudents = \"evaluate-*\"").as_deref(),
        Some("comparisons[0].students")
    );
    assert_eq!(
        refused("[[comparisons]]\nstudents = \"s\"\n[[comparisons]]\nstudents = \"d\"\nstart_chosen_by = \"train\"")
            .as_deref(),
        Some("comparisons[1].start_chosen_by")
    );
    assert!(
        refused("[[comparisons]]\nstudents = \"s\"\ncontrol = \"c\"")
            .is_some_and(|k| k.starts_with("comparisons")),
        "a misspelt key of a comparison is refused"
    );
    assert!(pipeline_eval::report::pattern_matches(
        "evaluate.",
        "evaluate.seed-1"
    ));
    assert!(pipeline_eval::report::pattern_matches(
        "eval*seed-*",
        "evaluate.seed-1"
    ));
    assert!(!pipeline_eval::report::pattern_matches(
        "evaluate.",
        "evaluate-distill.seed-1"
    ));
    assert!(!pipeline_eval::report::pattern_matches("*-s1", "x-s12"));
}

/// At `tau = 0.1` every block's scores span at most `SHARED_EXP_RANGE` (600) and the probability
/// columns share one exponential per pair; at `tau = 0.001` some span more and take two.
#[test]
fn correspondences_table_is_exact_and_streamed_in_row_groups() {
    for (tau, some_block_spans_more_than_600) in [(0.1, false), (0.001, true)] {
        let est = check_exact_table(tau);
        // 2 clips x 16 captions per row group.
        let widest = est
            .chunks(32)
            .map(|b| {
                let (lo, hi) = b
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                (hi - lo) as f64 / tau
            })
            .fold(0.0, f64::max);
        assert_eq!(
            widest > 600.0,
            some_block_spans_more_than_600,
            "tau {tau}: {widest}"
        );
    }
}

/// Checks every cell of a full table against brute force; returns its `estimate` column.
fn check_exact_table(tau: f64) -> Vec<f32> {
    let s = setup(true);
    let e0 = synthetic_embeddings(&s.features, 12, TOPICS, 0.5, 1);
    let e1 = synthetic_embeddings(&s.features, 12, TOPICS, 0.9, 2);
    let t0 = save_embeddings(&s, "t0", &e0);
    let t1 = save_embeddings(&s, "t1", &e1);
    let out = s.dir.path().join("corr");
    run_stage(
        &Correspondences,
        "correspondences",
        &format!("tau = {tau}\nrow_group_rows = 40"),
        &[
            (
                "teachers",
                vec![(Some("embed.s1"), t0), (Some("embed.s2"), t1)],
            ),
            ("features", vec![(None, s.fdir.clone())]),
        ],
        &out,
        2,
    )
    .unwrap();

    let clips = s.features.split_clips(Split::Train);
    let caps = s.features.split_captions(Split::Train);
    let (n_a, n_c) = (clips.len(), caps.len());
    let path = out.join("correspondences.parquet");
    // 40 rows per group / 16 captions -> 2 clips per row group.
    let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), n_a.div_ceil(2));
    assert_eq!(
        pipeline_eval::correspondences::teacher_names(&path).unwrap(),
        vec!["embed.s1", "embed.s2"]
    );

    let b = read_all(&path);
    assert_eq!(b.num_rows(), n_a * n_c);
    let names: Vec<String> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "audio_index",
            "audio_id",
            "audio_file",
            "caption_index",
            "caption_id",
            "caption",
            "is_match",
            "teacher_0",
            "teacher_1",
            "estimate",
            "p_caption_given_audio",
            "p_audio_given_caption",
            "relevance"
        ]
    );
    let ai = i64s(&b, "audio_index");
    let ci = i64s(&b, "caption_index");
    let est = f32s(&b, "estimate");
    let t0v = f32s(&b, "teacher_0");
    let pca = f32s(&b, "p_caption_given_audio");
    let pac = f32s(&b, "p_audio_given_caption");
    let rel = f32s(&b, "relevance");
    let is_match = b.column_by_name("is_match").unwrap().as_boolean().clone();
    let audio_id = b
        .column_by_name("audio_id")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let caption = b
        .column_by_name("caption")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let truth: HashMap<(usize, usize), f32> = s
        .features
        .relevance
        .as_ref()
        .unwrap()
        .iter()
        .map(|r| ((r.caption_index, r.clip_index), r.relevance))
        .collect();
    let dot = |e: &Embeddings, i: usize, j: usize| -> f64 {
        e.audio_row(i)
            .iter()
            .zip(e.text_row(j))
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum()
    };
    let c_hat = |i: usize, j: usize| (dot(&e0, i, j) + dot(&e1, i, j)) / 2.0;
    for (r, (&i, &j)) in ai.iter().zip(&ci).enumerate() {
        let (i, j) = (i as usize, j as usize);
        // Clip-major row order.
        assert_eq!(i, clips[r / n_c]);
        assert_eq!(j, caps[r % n_c]);
        assert_eq!(audio_id.value(r), s.features.clips[i].clip_id);
        assert_eq!(caption.value(r), s.features.captions[j].text);
        assert_eq!(is_match.value(r), s.features.captions[j].clip_index == i);
        assert!((t0v[r] as f64 - dot(&e0, i, j)).abs() < 1e-5);
        assert!((est[r] as f64 - c_hat(i, j)).abs() < 1e-5);
        assert_eq!(rel[r], truth.get(&(j, i)).copied().unwrap_or(0.0));
        // Brute-force softmaxes over the whole split (relative to this pair: no overflow at
        // small tau but an infinite sum, whose probability is 0).
        let c = c_hat(i, j);
        let z_row: f64 = caps
            .iter()
            .map(|&jj| ((c_hat(i, jj) - c) / tau).exp())
            .sum();
        let z_col: f64 = clips
            .iter()
            .map(|&ii| ((c_hat(ii, j) - c) / tau).exp())
            .sum();
        assert!((pca[r] as f64 - 1.0 / z_row).abs() < 1e-5);
        assert!((pac[r] as f64 - 1.0 / z_col).abs() < 1e-5);
    }

    // teachers.safetensors reproduces the estimate.
    let t = TeacherEmbeddings::load(&out).unwrap();
    assert_eq!(
        (
            t.teachers,
            t.dim,
            t.clip_index.clone(),
            t.caption_index.clone()
        ),
        (2, 12, clips.clone(), caps.clone())
    );
    assert!((t.estimate(3, 5) - est[3 * n_c + 5]).abs() < 1e-5);

    // metrics.json: agreement with the ground truth, for each teacher, the ensemble and the annotation.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["pairs"], n_a * n_c);
    for key in ["teacher_0", "teacher_1", "ensemble", "annotation"] {
        let sp = m[key]["spearman"].as_f64().unwrap();
        let nd = m[key]["ndcg10"].as_f64().unwrap();
        assert!(
            (-1.0..=1.0).contains(&sp) && (0.0..=1.0).contains(&nd),
            "{key}: {sp} {nd}"
        );
    }
    // Brute-force Spearman of the ensemble over all pairs.
    let sp = statistics::spearman(&est, &rel).unwrap();
    assert!((m["ensemble"]["spearman"].as_f64().unwrap() - sp).abs() < 1e-6);
    // The annotation finds every annotated clip.
    assert_eq!(m["annotation"]["t2a_r1"], 1.0);
    // Topic structure: the teachers, unlike the binary annotation, see the same-topic relevance.
    assert!(
        m["ensemble"]["spearman"].as_f64().unwrap() > m["annotation"]["spearman"].as_f64().unwrap()
    );
    est
}

/// The top-k table holds exactly the pairs brute force selects from the full table, with the
/// full table's values; `table = "none"` writes no table and the same teachers.
#[test]
fn correspondences_top_k_is_the_full_table_filtered_and_none_writes_none() {
    let s = setup(true);
    let e0 = synthetic_embeddings(&s.features, 12, TOPICS, 0.5, 1);
    let e1 = synthetic_embeddings(&s.features, 12, TOPICS, 0.9, 2);
    let t0 = save_embeddings(&s, "t0", &e0);
    let t1 = save_embeddings(&s, "t1", &e1);
    let run = |name: &str, params: &str| -> PathBuf {
        let out = s.dir.path().join(name);
        run_stage(
            &Correspondences,
            "correspondences",
            &format!("tau = 0.1\nrow_group_rows = 40\n{params}"),
            &[
                (
                    "teachers",
                    vec![
                        (Some("embed.s1"), t0.clone()),
                        (Some("embed.s2"), t1.clone()),
                    ],
                ),
                ("features", vec![(None, s.fdir.clone())]),
            ],
            &out,
            2,
        )
        .unwrap();
        out
    };
    let full_dir = run("full", "");
    let top_dir = run("top", "table = \"top_k\"\ntop_k = 2");
    let none_dir = run("none", "table = \"none\"");

    let full = read_all(&full_dir.join("correspondences.parquet"));
    let top = read_all(&top_dir.join("correspondences.parquet"));
    assert_eq!(full.schema(), top.schema());
    let (fa, fc, fe) = (
        i64s(&full, "audio_index"),
        i64s(&full, "caption_index"),
        f32s(&full, "estimate"),
    );
    let is_match = full
        .column_by_name("is_match")
        .unwrap()
        .as_boolean()
        .clone();
    let clips = s.features.split_clips(Split::Train);
    let caps = s.features.split_captions(Split::Train);
    let n_c = caps.len();
    // Brute force: rank by estimate (ties: the lower row), per clip and per caption.
    let rank = |mut items: Vec<(f32, i64)>| -> Vec<i64> {
        items.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        items.into_iter().take(2).map(|(_, x)| x).collect()
    };
    let mut expected = Vec::new();
    for (r, (&a, &c)) in fa.iter().zip(&fc).enumerate() {
        let row_of_clip = r / n_c * n_c;
        let clip_top = rank(
            (0..n_c)
                .map(|k| (fe[row_of_clip + k], fc[row_of_clip + k]))
                .collect(),
        );
        let col = r % n_c;
        let caption_top = rank(
            (0..clips.len())
                .map(|i| (fe[i * n_c + col], fa[i * n_c + col]))
                .collect(),
        );
        if is_match.value(r) || clip_top.contains(&c) || caption_top.contains(&a) {
            expected.push(r);
        }
    }
    assert!(expected.len() < fa.len() && expected.len() >= clips.len() * 2);
    assert_eq!(top.num_rows(), expected.len());
    for (column, field) in full.columns().iter().zip(full.schema().fields()) {
        let picked = arrow::compute::take(
            column,
            &arrow::array::UInt32Array::from_iter_values(expected.iter().map(|&r| r as u32)),
            None,
        )
        .unwrap();
        let written = top.column_by_name(field.name()).unwrap();
        assert_eq!(
            arrow::compute::cast(&picked, written.data_type())
                .unwrap()
                .as_ref(),
            written.as_ref(),
            "column {}",
            field.name()
        );
    }
    let metrics = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap()
    };
    let (mf, mt, mn) = (metrics(&full_dir), metrics(&top_dir), metrics(&none_dir));
    // The sums are over every pair in either form; `rows` says what the top-k table holds.
    assert_eq!(mt["rows"], expected.len());
    assert_eq!(mf["estimate_mean_match"], mt["estimate_mean_match"]);
    assert_eq!(mf["estimate_mean_nonmatch"], mt["estimate_mean_nonmatch"]);
    assert_eq!(
        mf["p_caption_given_audio_on_matches"],
        mt["p_caption_given_audio_on_matches"]
    );
    assert_eq!(mf["ensemble"], mn["ensemble"]);

    assert!(!none_dir.join("correspondences.parquet").exists());
    assert_eq!(
        std::fs::read(none_dir.join("teachers.safetensors")).unwrap(),
        std::fs::read(full_dir.join("teachers.safetensors")).unwrap()
    );
}

#[test]
fn correspondences_top_k_is_checked() {
    let inputs = InputCounts([("teachers".to_owned(), 1), ("features".to_owned(), 1)].into());
    let plan = |t: &str| Correspondences.plan(&toml::from_str(t).unwrap(), &inputs);
    assert_eq!(plan("table = \"top_k\"").unwrap().params["top_k"], 10);
    assert!(
        plan("").unwrap().params.get("table").is_none(),
        "the default keeps its hash"
    );
    assert_eq!(plan("top_k = 3").unwrap_err().key.as_deref(), Some("top_k"));
    assert_eq!(
        plan("table = \"top_k\"\ntop_k = 0")
            .unwrap_err()
            .key
            .as_deref(),
        Some("top_k")
    );
    assert_eq!(
        plan("table = \"some\"").unwrap_err().key.as_deref(),
        Some("table")
    );
}

#[test]
fn correspondences_threads_set_the_resources_and_default_to_all_cores() {
    let inputs = InputCounts([("teachers".to_owned(), 1), ("features".to_owned(), 1)].into());
    let plan = |t: &str| Correspondences.plan(&toml::from_str(t).unwrap(), &inputs);
    let default = plan("").unwrap();
    assert_eq!(default.resources.threads, usize::MAX);
    assert!(
        default.params.get("threads").is_none(),
        "the default keeps its hash"
    );
    let one = plan("threads = 1").unwrap();
    assert_eq!(one.resources.threads, 1);
    assert_eq!(one.params["threads"], 1);
    assert_eq!(
        plan("threads = 0").unwrap_err().key.as_deref(),
        Some("threads")
    );
}

#[test]
fn correspondences_without_probabilities_or_ground_truth() {
    let s = setup(false);
    let e = synthetic_embeddings(&s.features, 8, TOPICS, 0.5, 1);
    let t = save_embeddings(&s, "t", &e);
    let out = s.dir.path().join("corr");
    run_stage(
        &Correspondences,
        "c",
        "with_probabilities = false\nsplit = \"test\"",
        &[
            ("teachers", vec![(None, t)]),
            ("features", vec![(None, s.fdir.clone())]),
        ],
        &out,
        1,
    )
    .unwrap();
    let b = read_all(&out.join("correspondences.parquet"));
    assert_eq!(b.num_rows(), 6 * 12);
    assert!(b.column_by_name("p_caption_given_audio").is_none());
    assert!(b.column_by_name("relevance").is_none());
    assert_eq!(f32s(&b, "estimate"), f32s(&b, "teacher_0"));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert!(m.get("annotation").is_none() && m["ensemble"].get("spearman").is_none());
}

fn evaluate(
    s: &Setup,
    name: &str,
    emb: &Embeddings,
    bootstrap: usize,
) -> (PathBuf, EvaluationMetrics) {
    evaluate_ensemble(s, name, std::slice::from_ref(emb), bootstrap)
}

/// Evaluates the mean cosine of several embedding sets (one: a single model).
fn evaluate_ensemble(
    s: &Setup,
    name: &str,
    members: &[Embeddings],
    bootstrap: usize,
) -> (PathBuf, EvaluationMetrics) {
    let dirs = members
        .iter()
        .enumerate()
        .map(|(k, e)| (None, save_embeddings(s, &format!("emb-{name}-{k}"), e)))
        .collect();
    let out = s.dir.path().join(name);
    run_stage(
        &Evaluate,
        name,
        &format!("bootstrap = {bootstrap}\nseed = 1"),
        &[
            ("embeddings", dirs),
            ("features", vec![(None, s.fdir.clone())]),
        ],
        &out,
        2,
    )
    .unwrap();
    let m = read_metrics(&out).unwrap();
    (out, m)
}

/// The split-local position of each test caption's annotated clip.
fn test_annotated_clips(s: &Setup) -> Vec<usize> {
    let clips = s.features.split_clips(Split::Test);
    s.features
        .split_captions(Split::Test)
        .iter()
        .map(|&j| {
            clips
                .iter()
                .position(|&i| i == s.features.captions[j].clip_index)
                .unwrap()
        })
        .collect()
}

/// The test split's text × audio cosines of `emb` (captions × clips), by brute force.
fn test_cosines(s: &Setup, emb: &Embeddings) -> Vec<f32> {
    let mut sim = Vec::new();
    for &j in &s.features.split_captions(Split::Test) {
        for &i in &s.features.split_clips(Split::Test) {
            sim.push(
                emb.text_row(j)
                    .iter()
                    .zip(emb.audio_row(i))
                    .map(|(a, b)| a * b)
                    .sum::<f32>(),
            );
        }
    }
    sim
}

#[test]
fn evaluate_matches_the_metric_functions() {
    let s = setup(true);
    let emb = synthetic_embeddings(&s.features, 10, TOPICS, 1.5, 4);
    let (out, m) = evaluate(&s, "evaluate.x", &emb, 200);
    let clips = s.features.split_clips(Split::Test);
    let caps = s.features.split_captions(Split::Test);
    let sim = test_cosines(&s, &emb);
    let relevant = test_annotated_clips(&s);
    let direct = metrics::text_to_audio(&sim, clips.len(), &relevant);
    assert!((m.t2a.map10 - direct.map10).abs() < 1e-9 && (m.t2a.r1 - direct.r1).abs() < 1e-9);
    let a2t = metrics::audio_to_text(&sim, clips.len(), &relevant);
    assert!(
        (m.a2t_any.r1 - a2t.any.r1).abs() < 1e-9
            && (m.a2t_fraction.r5 - a2t.fraction.r5).abs() < 1e-9
    );
    assert!(m.t2a_ci.map10.low <= m.t2a.map10 && m.t2a.map10 <= m.t2a_ci.map10.high);
    // The interval resamples clips with all their captions (seed 1, salt 0 for t2a).
    let per_query = metrics::text_to_audio_per_query(&metrics::text_to_audio_ranks(
        &sim,
        clips.len(),
        &relevant,
    ));
    let by_clip = statistics::Clusters::by_label(&relevant);
    assert_eq!(by_clip.len(), clips.len());
    assert_eq!(
        m.t2a_ci,
        per_query.bootstrap(&by_clip, 200, 1, 0.95),
        "t2a intervals resample clips"
    );
    assert_ne!(
        m.t2a_ci,
        per_query.bootstrap(&statistics::Clusters::singletons(caps.len()), 200, 1, 0.95),
        "not caption queries one by one"
    );
    assert_eq!(
        (m.queries, m.clips, m.members),
        (caps.len(), clips.len(), 1)
    );
    let g = m.t2a_graded.unwrap();
    // Brute force: relevant = annotated or relevance > 0 (the fixture gives 1 to the own clip,
    // 0.5 to same-topic clips), walking the full ranking.
    let mut ap_sum = 0.0;
    let mut ap_full_sum = 0.0;
    for (q, &j) in caps.iter().enumerate() {
        let row = &sim[q * clips.len()..(q + 1) * clips.len()];
        let order = metrics::ranking(row);
        let own = relevant[q];
        let rel: Vec<usize> = (0..clips.len())
            .filter(|&i| {
                i == own || clips[i] % TOPICS == s.features.captions[j].clip_index % TOPICS
            })
            .collect();
        let ap = |set: &[usize]| {
            let (mut hits, mut sum) = (0, 0.0);
            for (p, i) in order.iter().take(10).enumerate() {
                if set.contains(i) {
                    hits += 1;
                    sum += hits as f64 / (p + 1) as f64;
                }
            }
            sum / set.len() as f64
        };
        ap_sum += ap(&rel);
        ap_full_sum += ap(&[own]);
    }
    assert!((g.map10 - ap_sum / caps.len() as f64).abs() < 1e-9);
    assert!((g.map10_full - ap_full_sum / caps.len() as f64).abs() < 1e-9);
    assert!(
        (g.map10_full - m.t2a.map10).abs() < 1e-9,
        "only the own clip is fully relevant"
    );
    assert!((0.0..=1.0).contains(&g.map10) && (0.0..=1.0).contains(&g.ndcg10));

    let ranks = read_all(&out.join("ranks.parquet"));
    assert_eq!(
        i64s(&ranks, "caption_index"),
        caps.iter().map(|&c| c as i64).collect::<Vec<_>>()
    );
    assert_eq!(
        i64s(&ranks, "clip_index"),
        caps.iter()
            .map(|&c| s.features.captions[c].clip_index as i64)
            .collect::<Vec<_>>()
    );
    let r: Vec<usize> = i64s(&ranks, "rank")
        .into_iter()
        .map(|r| r as usize)
        .collect();
    assert_eq!(
        r,
        metrics::text_to_audio_ranks(&sim, clips.len(), &relevant)
    );
    // Each query's best clips: the brute-force ranking's first ten, with their cosines.
    let top = read_top(&out).unwrap();
    assert_eq!(top.len(), caps.len());
    for (q, &j) in caps.iter().enumerate() {
        let row = &sim[q * clips.len()..(q + 1) * clips.len()];
        let want: Vec<(i64, f32)> = metrics::ranking(row)
            .into_iter()
            .take(TOP_K)
            .map(|i| (clips[i] as i64, row[i]))
            .collect();
        let got = &top[&(j as i64)];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.clip_index, w.0, "query {j}: {got:?} vs {want:?}");
            assert!(
                (g.score - w.1).abs() < 1e-5,
                "query {j}: {got:?} vs {want:?}"
            );
        }
    }

    let table = read_all(&out.join("metrics.parquet"));
    assert_eq!(table.num_rows(), 15);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert!(json["t2a_ci"]["map10"]["low"].is_number());

    // Perfect embeddings (captions = their clip's vector) rank every annotated clip first.
    let perfect = synthetic_embeddings(&s.features, 10, TOPICS, 0.0, 4);
    let (_, m) = evaluate(&s, "evaluate.perfect", &perfect, 0);
    assert_eq!((m.t2a.r1, m.t2a.map10, m.a2t_any.r1), (1.0, 1.0, 1.0));
    assert_eq!(
        m.a2t_fraction.r1, 0.5,
        "two captions per clip, one can be first"
    );
}

#[test]
fn an_ensemble_is_evaluated_by_its_members_mean_cosine() {
    let s = setup(true);
    let a = synthetic_embeddings(&s.features, 10, TOPICS, 1.5, 4);
    let b = synthetic_embeddings(&s.features, 10, TOPICS, 1.5, 5);
    let (out, m) = evaluate_ensemble(&s, "evaluate-ensemble", &[a.clone(), b.clone()], 50);
    assert_eq!(m.members, 2);
    let mean: Vec<f32> = test_cosines(&s, &a)
        .iter()
        .zip(test_cosines(&s, &b))
        .map(|(x, y)| (x + y) * 0.5)
        .collect();
    let clips = s.features.split_clips(Split::Test);
    let relevant = test_annotated_clips(&s);
    let ranks: Vec<usize> = i64s(&read_all(&out.join("ranks.parquet")), "rank")
        .into_iter()
        .map(|r| r as usize)
        .collect();
    assert_eq!(
        ranks,
        metrics::text_to_audio_ranks(&mean, clips.len(), &relevant)
    );
    let direct = metrics::text_to_audio(&mean, clips.len(), &relevant);
    assert!((m.t2a.map10 - direct.map10).abs() < 1e-9);
    let (_, single) = evaluate(&s, "evaluate.a", &a, 50);
    assert_ne!(single.t2a, m.t2a, "the ensemble is not its first member");
}

/// A `train` artifact with curves and a validation score, as the report reads them.
fn training_artifact(s: &Setup, name: &str, val_map10: f64) -> PathBuf {
    let dir = s.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    write_parquet(
        &dir.join("curves.parquet"),
        &batch(vec![
            ("epoch", i64_column([1i64, 1, 2, 2, 3, 3])),
            ("step", i64_column(1..=6)),
            ("train_loss", f64_column([3.0, 2.8, 2.2, 2.0, 1.7, 1.6])),
            ("lr", f64_column([1e-5; 6])),
            (
                "val_map10",
                f64_column([f64::NAN, 0.2, f64::NAN, 0.3, f64::NAN, val_map10]),
            ),
        ])
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("metrics.json"),
        serde_json::json!({ "val": { "map10": val_map10 } }).to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn report_compares_students_with_their_controls_starts_and_teachers_over_seeds() {
    let s = setup(true);
    let emb = |noise: f32, seed: u64| synthetic_embeddings(&s.features, 10, TOPICS, noise, seed);
    // Stage 1: `s2` is far better on test, but `s1` is better on validation, so `s1` is the start.
    let (start1, start2) = (emb(2.5, 4), emb(0.3, 5));
    let mut evaluations = Vec::new();
    let mut measured = HashMap::new();
    let mut add = |name: &'static str, members: &[Embeddings]| {
        let (dir, m) = evaluate_ensemble(&s, name, members, 100);
        measured.insert(name, m);
        evaluations.push((Some(name), dir));
    };
    add("evaluate.s1", std::slice::from_ref(&start1));
    add("evaluate.s2", std::slice::from_ref(&start2));
    add("evaluate-ensemble", &[start1.clone(), start2.clone()]);
    add("evaluate-distill.s1", &[emb(0.8, 6)]);
    add("evaluate-distill.s2", &[emb(1.0, 7)]);
    add("evaluate-continued.s1", &[emb(1.6, 8)]);
    add("evaluate-continued.s2", &[emb(1.4, 9)]);
    let training = vec![
        (Some("train.s1"), training_artifact(&s, "train.s1", 0.5)),
        (Some("train.s2"), training_artifact(&s, "train.s2", 0.3)),
    ];
    // Correspondences for the report's table and plot.
    let t = save_embeddings(&s, "teacher", &start1);
    let corr = s.dir.path().join("corr");
    run_stage(
        &Correspondences,
        "correspondences",
        "",
        &[
            ("teachers", vec![(Some("embed.s1"), t)]),
            ("features", vec![(None, s.fdir.clone())]),
        ],
        &corr,
        2,
    )
    .unwrap();
    let (loss, val) =
        pipeline_eval::report::read_curves(&training[0].1.join("curves.parquet")).unwrap();
    assert_eq!(loss, vec![(1.0, 2.9), (2.0, 2.1), (3.0, 1.65)]);
    assert_eq!(val, vec![(1.0, 0.2), (2.0, 0.3), (3.0, 0.5)]);

    let comparison = "baseline = [\"evaluate.\", \"evaluate-continued\"]\nbootstrap = 300\n\
        [[comparisons]]\ntitle = \"Stage 2\"\nstudents = \"evaluate-distill\"\n\
        controls = \"evaluate-continued\"\nstart = \"evaluate\"\nstart_chosen_by = \"train\"\n\
        teachers = \"evaluate-ensemble\"";
    let report = |params: &str, out: &Path| {
        run_stage(
            &Report,
            "report",
            params,
            &[
                ("evaluations", evaluations.clone()),
                ("training", training.clone()),
                (
                    "correspondences",
                    vec![(Some("correspondences"), corr.clone())],
                ),
                ("features", vec![(Some("features"), s.fdir.clone())]),
            ],
            out,
            1,
        )
    };
    let out = s.dir.path().join("report");
    report(comparison, &out).unwrap();
    if let Ok(keep) = std::env::var("PIPELINE_EVAL_KEEP_REPORT") {
        // For looking at the report by hand.
        std::fs::create_dir_all(&keep).unwrap();
        for f in [
            "report.md",
            "metrics.json",
            "training_curves.png",
            "correspondences.png",
        ] {
            std::fs::copy(out.join(f), Path::new(&keep).join(f)).unwrap();
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for row in [
        "| `evaluate.s1` | 1 |",
        "| `evaluate-continued.s2` | 1 |",
        "| `evaluate-distill.s1` | 2 |",
        "| `evaluate-ensemble` | ensemble |",
    ] {
        assert!(md.contains(row), "{row} in {md}");
    }
    assert!(
        md.contains("starts from `train.s1`") && md.contains("`evaluate.s1`"),
        "{md}"
    );
    assert!(md.contains("| mean ± sd (2 seeds) |"), "{md}");
    assert!(
        md.contains("Estimated correspondences") && md.contains("ensemble (C_hat)"),
        "{md}"
    );
    for png in ["training_curves.png", "correspondences.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }

    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["headline"], m["comparisons"]["evaluate-distill"]);
    let c = &m["headline"];
    assert_eq!(c["start_chosen_on_validation"]["node"], "train.s1");
    let map10 = |name: &str| measured[name].t2a.map10;
    let mut minus_control = Vec::new();
    for seed in ["s1", "s2"] {
        let row = &c["per_seed"][format!("evaluate-distill.{seed}")];
        let student = map10(&format!("evaluate-distill.{seed}"));
        for (key, reference) in [
            ("minus_control_map10", format!("evaluate-continued.{seed}")),
            ("minus_start_map10", "evaluate.s1".to_owned()),
            ("minus_teachers_map10", "evaluate-ensemble".to_owned()),
        ] {
            let v = row[key]["value"].as_f64().unwrap();
            assert!((v - (student - map10(&reference))).abs() < 1e-12, "{key}");
            assert!(row[key]["ci_low"].as_f64().unwrap() <= v + 1e-12);
            assert!(v <= row[key]["ci_high"].as_f64().unwrap() + 1e-12);
        }
        minus_control.push(student - map10(&format!("evaluate-continued.{seed}")));
    }
    let over = &c["minus_control_map10"];
    assert_eq!(over["n"], 2);
    let mean = (minus_control[0] + minus_control[1]) / 2.0;
    let sd = (minus_control[0] - minus_control[1]).abs() / 2f64.sqrt();
    assert!((over["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!((over["sd"].as_f64().unwrap() - sd).abs() < 1e-12);
    // t_{0.975, 1} = 12.706204736174698.
    let half = 12.706204736174698 * sd / 2f64.sqrt();
    assert!((over["ci_high"].as_f64().unwrap() - (mean + half)).abs() < 1e-9);
    assert_eq!(m["stage1_models"], 4);
    assert_eq!(m["stage2_models"], 2);

    // A reference that was not evaluated is named.
    let err = report(
        &comparison.replace(
            "controls = \"evaluate-continued\"",
            "controls = \"evaluate-absent\"",
        ),
        &s.dir.path().join("report-2"),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("`evaluate-absent.s1` is not among"),
        "{err:#}"
    );
}

/// Every string value (plain or dictionary-encoded) and every key-value metadata entry of a
/// Parquet file.
fn parquet_strings(path: &Path) -> Vec<String> {
    use arrow::datatypes::DataType;
    let mut out = Vec::new();
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    for kv in reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
    {
        out.push(kv.key.clone());
        out.extend(kv.value.clone());
    }
    let b = read_all(path);
    for column in b.columns() {
        let column = match column.data_type() {
            DataType::Utf8 => column.clone(),
            DataType::Dictionary(_, _) => arrow::compute::cast(column, &DataType::Utf8).unwrap(),
            _ => continue,
        };
        out.extend(
            column
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_owned),
        );
    }
    out
}

/// Files (name → bytes) of an output directory.
fn files_of(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The correspondences, evaluations and report of one project whose inputs are all bound by
/// external paths under `root` (no producing node, as `{ path = ... }` references), computed
/// with `threads` threads: returns the `correspondences` and `report` output directories.
fn project_in(root: &Path, threads: usize) -> (PathBuf, PathBuf) {
    let features = synthetic_features([8, 3, 6], 2, TOPICS, true);
    let fdir = root.join("features");
    std::fs::create_dir_all(&fdir).unwrap();
    features.save(&fdir).unwrap();
    let emb = |name: &str, noise: f32, seed: u64| {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        synthetic_embeddings(&features, 12, TOPICS, noise, seed)
            .save(&d)
            .unwrap();
        d
    };
    let (t0, t1) = (emb("teacher-a", 0.5, 1), emb("teacher-b", 0.9, 2));
    let corr = root.join("corr");
    run_stage(
        &Correspondences,
        "correspondences",
        "",
        &[
            ("teachers", vec![(None, t0.clone()), (None, t1.clone())]),
            ("features", vec![(None, fdir.clone())]),
        ],
        &corr,
        threads,
    )
    .unwrap();
    let mut evaluations = Vec::new();
    for (name, t) in [("eval-a", &t0), ("eval-b", &t1)] {
        let out = root.join(name);
        run_stage(
            &Evaluate,
            "evaluate",
            "bootstrap = 50",
            &[
                ("embeddings", vec![(None, t.clone())]),
                ("features", vec![(None, fdir.clone())]),
            ],
            &out,
            threads,
        )
        .unwrap();
        evaluations.push((None, out));
    }
    let train = root.join("train");
    std::fs::create_dir_all(&train).unwrap();
    write_parquet(
        &train.join("curves.parquet"),
        &batch(vec![
            ("epoch", i64_column([1i64, 2])),
            ("step", i64_column([4i64, 8])),
            ("train_loss", f64_column([2.0, 1.5])),
            ("lr", f64_column([1e-3, 1e-5])),
            ("val_map10", f64_column([0.2, 0.3])),
        ])
        .unwrap(),
    )
    .unwrap();
    let report = root.join("report");
    run_stage(
        &Report,
        "report",
        "baseline = \"eval-a\"\nbootstrap = 50",
        &[
            ("evaluations", evaluations),
            ("training", vec![(None, train)]),
            ("correspondences", vec![(None, corr.clone())]),
            ("features", vec![(None, fdir)]),
        ],
        &report,
        1,
    )
    .unwrap();
    (corr, report)
}

#[test]
fn outputs_hold_no_absolute_path_and_relocate_byte_for_byte() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (corr_a, report_a) = project_in(a.path(), 2);
    let (corr_b, report_b) = project_in(b.path(), 1);
    // The same inputs in another directory, and with other thread counts (neither is part of a
    // node's key), give the same bytes, for every file of the three kinds.
    let same = |x: &Path, y: &Path| {
        let (fx, fy) = (files_of(x), files_of(y));
        assert_eq!(fx.keys().collect::<Vec<_>>(), fy.keys().collect::<Vec<_>>());
        for (name, bytes) in &fx {
            assert!(
                *bytes == fy[name],
                "`{name}` of `{}` differs when the project lives elsewhere",
                x.file_name().unwrap().to_string_lossy()
            );
        }
    };
    same(&corr_a, &corr_b);
    same(&report_a, &report_b);
    for name in ["eval-a", "eval-b"] {
        same(&a.path().join(name), &b.path().join(name));
    }

    let root = a.path().to_string_lossy().into_owned();
    let strings = parquet_strings(&corr_a.join("correspondences.parquet"));
    assert!(strings.iter().any(|s| s.ends_with(".wav")), "{strings:?}");
    let absolute: Vec<&String> = strings
        .iter()
        .filter(|s| s.starts_with('/') || s.contains(&root))
        .collect();
    assert!(absolute.is_empty(), "absolute paths: {absolute:?}");
    // The audio files exactly as the features index holds them.
    let index =
        pipeline_eval::index::SplitIndex::load(&a.path().join("features"), Split::Train).unwrap();
    let b = read_all(&corr_a.join("correspondences.parquet"));
    let files = arrow::compute::cast(
        b.column_by_name("audio_file").unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let n_c = index.n_captions();
    for (i, file) in index.clip_files.iter().enumerate() {
        assert_eq!(files.as_string::<i32>().value(i * n_c), file);
    }
    assert_eq!(
        pipeline_eval::correspondences::teacher_names(&corr_a.join("correspondences.parquet"))
            .unwrap(),
        vec!["teacher-a", "teacher-b"]
    );
    for dir in [&corr_a, &report_a] {
        for (name, bytes) in files_of(dir) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(&root),
                "`{name}` names the project directory"
            );
        }
    }
    let md = std::fs::read_to_string(report_a.join("report.md")).unwrap();
    assert!(
        md.contains("| `eval-a` | 1 |") && md.contains("| `eval-b` | 2 |"),
        "{md}"
    );
}

#[test]
fn correspondences_tau_outside_a_sane_range_is_refused() {
    let inputs = InputCounts([("teachers".to_owned(), 1), ("features".to_owned(), 1)].into());
    for tau in ["1e-30", "0.0", "-1.0", "100.0"] {
        let err = Correspondences
            .plan(&toml::from_str(&format!("tau = {tau}")).unwrap(), &inputs)
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("tau"), "{tau}: {err}");
        assert!(err.message.contains("must be in [0.001, 10]"), "{err}");
    }
    for tau in ["0.001", "0.05", "10.0"] {
        Correspondences
            .plan(&toml::from_str(&format!("tau = {tau}")).unwrap(), &inputs)
            .unwrap();
    }
}

/// The data set and features kinds of `pipeline-data`, then `correspondences`: the audio files
/// in the table are relative (to the data set's artifact directory) and name files there.
#[test]
fn correspondences_of_generated_features_name_files_relative_to_the_data_set() {
    let mut registry = Registry::default();
    pipeline_data::register(&mut registry);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    run_stage(
        registry.get("synth-dataset").unwrap().as_ref(),
        "data",
        "seed = 3\ntrain_clips = 6\nval_clips = 2\ntest_clips = 2\nclip_seconds = 2.5\ncaptions_per_clip = 2",
        &[],
        &data,
        1,
    )
    .unwrap();
    let fdir = root.path().join("features");
    run_stage(
        registry.get("features").unwrap().as_ref(),
        "features",
        "preset = \"light\"\nmax_seconds = 2.5\nwindow_seconds = 2.5",
        &[("dataset", vec![(Some("data"), data.clone())])],
        &fdir,
        1,
    )
    .unwrap();
    let features = FeatureSet::load(&fdir).unwrap();
    let t = root.path().join("teacher");
    std::fs::create_dir_all(&t).unwrap();
    synthetic_embeddings(&features, 8, TOPICS, 0.5, 1)
        .save(&t)
        .unwrap();
    let corr = root.path().join("corr");
    run_stage(
        &Correspondences,
        "correspondences",
        "",
        &[
            ("teachers", vec![(Some("embed"), t)]),
            ("features", vec![(Some("features"), fdir)]),
        ],
        &corr,
        1,
    )
    .unwrap();
    let table = read_all(&corr.join("correspondences.parquet"));
    let files = arrow::compute::cast(
        table.column_by_name("audio_file").unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let files: std::collections::BTreeSet<&str> =
        files.as_string::<i32>().iter().flatten().collect();
    assert_eq!(files.len(), 6);
    for file in files {
        assert!(
            !Path::new(file).is_absolute(),
            "absolute audio path `{file}`"
        );
        assert!(data.join(file).is_file(), "`{file}` is not in the data set");
    }
    let strings = parquet_strings(&corr.join("correspondences.parquet"));
    let root = root.path().to_string_lossy().into_owned();
    assert!(!strings.iter().any(|s| s.contains(&root)));
}

#[test]
fn a_sweep_pairs_reports_with_their_data_sets_by_label_and_orders_them_by_rate() {
    let dir = tempfile::tempdir().unwrap();
    let json_dir = |name: &str, value: serde_json::Value| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("metrics.json"), value.to_string()).unwrap();
        d
    };
    let over = |mean: f64| serde_json::json!({"n": 3, "mean": mean, "sd": 0.01, "ci_low": mean - 0.02, "ci_high": mean + 0.02});
    let headline = |gain: f64| {
        serde_json::json!({"headline": {
            "student_map10": over(0.3), "control_map10": over(0.3 - gain),
            "minus_control_map10": over(gain)
        }})
    };
    let reports = vec![
        (Some("report.variants-1"), json_dir("r1", headline(0.03))),
        (Some("report.variants-4"), json_dir("r4", headline(0.005))),
    ];
    let datasets = vec![
        (
            Some("data.variants-4"),
            json_dir("d4", serde_json::json!({"partial_match_fraction": 0.05})),
        ),
        (
            Some("data.variants-1"),
            json_dir("d1", serde_json::json!({"partial_match_fraction": 0.4})),
        ),
    ];
    let out = dir.path().join("sweep");
    run_stage(
        &Sweep,
        "sweep",
        "",
        &[("reports", reports.clone()), ("datasets", datasets.clone())],
        &out,
        1,
    )
    .unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    let points = m["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    // In increasing rate of partial matches, each with its own data set's rate.
    assert_eq!(points[0]["dataset"], "data.variants-4");
    assert_eq!(points[0]["x"], 0.05);
    assert_eq!(points[0]["minus_control_map10"]["mean"], 0.005);
    assert_eq!(points[1]["report"], "report.variants-1");
    let md = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    let (low, high) = (
        md.find("| `data.variants-4` | 5.00 |"),
        md.find("| `data.variants-1` | 40.00 |"),
    );
    assert!(low.is_some() && high.is_some() && low < high, "{md}");
    assert!(md.contains("+3.00 ± 1.00 [+1.00, +5.00]"), "{md}");
    assert_eq!(&std::fs::read(out.join("sweep.png")).unwrap()[1..4], b"PNG");

    // A report without its data set is named.
    let err = run_stage(
        &Sweep,
        "sweep",
        "",
        &[("reports", reports), ("datasets", datasets[..1].to_vec())],
        &dir.path().join("sweep-2"),
        1,
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("`report.variants-1` has no data set"),
        "{err:#}"
    );
}
