//! The `yamnet` front end against golden values from an independent numpy implementation of
//! YAMNet's features.py (`tests/golden/make_yamnet_golden.py`, output committed as
//! `tests/golden/yamnet_logmel.json`).

use pipeline_data::features::{FeaturesParams, Preset};
use pipeline_data::mel::{MelConfig, MelExtractor, MelStyle, golden_signal, tf_mel_banks};

/// Tolerance: 1e-4 relative, as an absolute 1e-4 below magnitude 1 (log values cross 0).
#[test]
fn yamnet_patches_match_numpy_golden_values() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/yamnet_logmel.json")).unwrap();
    let n = golden["n_samples"].as_u64().unwrap() as usize;
    let x = golden_signal(n, 16000.0);
    let checksum: f64 = x.iter().map(|v| v.abs() as f64).sum();
    assert!(
        (checksum - golden["signal_checksum"].as_f64().unwrap()).abs() < 1e-6,
        "signal differs"
    );
    // The clip length of the golden signal: YAMNet pads it to two patches, so do the windows.
    let cfg = MelConfig {
        max_seconds: n as f64 / 16000.0,
        ..MelConfig::yamnet()
    };
    cfg.check().unwrap();
    let windows = cfg.windows();
    let (parts, mask) = windows.split(&x);
    assert_eq!(
        mask,
        vec![1; golden["n_patches"].as_u64().unwrap() as usize]
    );
    let ex = MelExtractor::new(cfg);
    let want: Vec<f64> = golden["logmel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let (frames, bands) = (96, 64);
    let mut worst = 0.0f64;
    for (p, part) in parts.iter().enumerate() {
        assert_eq!(ex.n_frames(part.len()), frames);
        // Ours: [n_mels, n_frames]; golden: [patch, frame, band].
        let got = ex.compute(part);
        for t in 0..frames {
            for m in 0..bands {
                let g = got[m * frames + t] as f64;
                let w = want[(p * frames + t) * bands + m];
                worst = worst.max((g - w).abs() / w.abs().max(1.0));
            }
        }
    }
    eprintln!("yamnet front end: worst relative error {worst:.3e}");
    assert!(worst < 1e-4, "worst relative error {worst}");
}

#[test]
fn tf_banks_exclude_dc_and_peak_at_the_band_centres() {
    let banks = tf_mel_banks(64, 512, 16000.0, 125.0, 7500.0);
    assert_eq!(banks.len(), 64);
    assert!(banks.iter().all(|row| row.len() == 257 && row[0] == 0.0));
    // No weight outside 125-7500 Hz (bins 4..=240 at 31.25 Hz).
    for row in &banks {
        assert!(row[..4].iter().chain(&row[241..]).all(|&w| w == 0.0));
        assert!(row.iter().all(|&w| (0.0..=1.0).contains(&w)));
    }
}

#[test]
fn the_yamnet_preset_cuts_overlapping_patches() {
    let params = FeaturesParams {
        preset: Preset::Yamnet,
        ..Default::default()
    };
    let cfg = params.mel_config();
    assert_eq!(cfg.style, MelStyle::Yamnet);
    assert_eq!(
        (cfg.sample_rate, cfg.n_mels, cfg.hop_length),
        (16000, 64, 160)
    );
    let windows = cfg.windows();
    assert_eq!(windows.layout.window_samples, 15600);
    assert_eq!(windows.hop_samples, 7680);
    // 10 s: 1 + ceil((160000 - 15600) / 7680) = 20 patches, as YAMNet makes of a 10 s clip.
    assert_eq!(windows.n_windows(), 20);
    let ex = MelExtractor::new(cfg);
    assert_eq!(ex.n_frames(15600), 96);
    // 2 s of audio: YAMNet gives 1 + ceil((32000 - 15600) / 7680) = 4 patches.
    let samples = vec![0.1; 32000];
    let (parts, mask) = windows.split(&samples);
    assert_eq!(parts.len(), 20);
    assert_eq!(&mask[..5], &[1, 1, 1, 1, 0]);
    assert_eq!(parts[1][0], 0.1);
    assert_eq!(parts[3][32000 - 3 * 7680 - 1], 0.1);
    assert_eq!(parts[3][32000 - 3 * 7680], 0.0);
    assert!((MelStyle::Yamnet.silence() - 0.001f32.ln()).abs() < 1e-6);
}
