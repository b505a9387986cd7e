//! Log-mel throughput of the `passt` front end against librosa on the same files.
//!
//! `cargo bench -p pipeline-data --bench logmel` (env `BENCH_FILES`, default 16 files of 30 s;
//! `BENCH_ROUNDS`, default 5: rounds alternating this crate and the references, medians shown).
//! Writes 32 kHz mono 16-bit WAV files under `target/bench-logmel/`, then times, on one thread:
//! decode + crop/pad to 30 s + three 10 s windows + log-mel (`FrontEnd::file`, what the
//! `features` stage runs per clip), and the same in two Python references in a venv at
//! `target/pyref-venv` (the pinned `benches/requirements.txt`): librosa (`librosa.load`,
//! `librosa.stft` with the same window, centre/reflect padding, the same Kaldi mel matrix, log
//! and normalisation), and plain numpy with one `scipy.fft.rfft` call over all frames and the
//! mel projection as one matrix product. Prints a table of audio seconds per second against the
//! faster Python, also the Rust figure with all cores, and the
//! largest difference between the outputs on the first file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pipeline_api::parse_params;
use pipeline_api::testing::median_and_range;
use pipeline_data::features::{FeaturesParams, FrontEnd};
use pipeline_data::mel::MelConfig;
use rayon::prelude::*;

// As the `pipeline` binary allocates.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PY: &str = r#"
import json, sys, time
import numpy as np, librosa, scipy.fft, scipy.signal

SR, N_FFT, WIN, HOP, N_MELS, F_MIN, F_MAX = 32000, 1024, 800, 320, 128, 0.0, 15000.0
MAX_S, WIN_S = 30, 10

def mel_scale(f):
    return 1127.0 * np.log(1.0 + f / 700.0)

def kaldi_banks():
    n_bins = N_FFT // 2
    width = SR / N_FFT
    lo, hi = mel_scale(F_MIN), mel_scale(F_MAX)
    d = (hi - lo) / (N_MELS + 1)
    b = np.arange(N_MELS)[:, None]
    left, center, right = lo + b * d, lo + (b + 1) * d, lo + (b + 2) * d
    mel = mel_scale(width * np.arange(n_bins))[None, :]
    banks = np.maximum(0.0, np.minimum((mel - left) / (center - left), (right - mel) / (right - center)))
    return np.pad(banks, ((0, 0), (0, 1)))

BANKS = kaldi_banks()
WINDOW = scipy.signal.windows.hann(WIN, sym=True)

def load(path):
    y, sr = librosa.load(path, sr=None, mono=True)
    assert sr == SR
    y = y[: MAX_S * SR]
    return np.pad(y, (0, MAX_S * SR - len(y)))

def logmel(path):
    y = load(path)
    out = []
    for w in range(MAX_S // WIN_S):
        x = y[w * WIN_S * SR:(w + 1) * WIN_S * SR].astype(np.float64)
        x = x[1:] - 0.97 * x[:-1]
        S = librosa.stft(x, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window=WINDOW, center=True, pad_mode="reflect")
        P = np.abs(S) ** 2
        out.append((np.log(BANKS @ P + 1e-5) + 4.5) / 5.0)
    return np.stack(out)

FRAME_WINDOW = np.zeros(N_FFT)
FRAME_WINDOW[(N_FFT - WIN) // 2:(N_FFT - WIN) // 2 + WIN] = WINDOW
BANKS_T = np.ascontiguousarray(BANKS.T)

def logmel_scipy(path):
    # The fastest plain-numpy form: frames as a strided view, one real FFT call over all of
    # them (scipy.fft, pocketfft), the mel projection as one matrix product.
    y = load(path)
    out = []
    for w in range(MAX_S // WIN_S):
        x = y[w * WIN_S * SR:(w + 1) * WIN_S * SR].astype(np.float64)
        x = x[1:] - 0.97 * x[:-1]
        x = np.pad(x, N_FFT // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
        spec = scipy.fft.rfft(frames * FRAME_WINDOW, axis=1)
        power = spec.real ** 2 + spec.imag ** 2
        out.append(((np.log(power @ BANKS_T + 1e-5) + 4.5) / 5.0).T)
    return np.stack(out)

def timed(f, files):
    f(files[0])  # warm-up
    t = time.perf_counter()
    for path in files:
        f(path)
    return time.perf_counter() - t

files = sys.argv[1:]
first = logmel(files[0])  # the output compared with Rust
scipy_first = logmel_scipy(files[0])
librosa_s = timed(logmel, files)
scipy_s = timed(logmel_scipy, files)
np.save(sys.stdin.readline().strip(), first.astype(np.float32))
print(json.dumps({"librosa_seconds": librosa_s, "scipy_seconds": scipy_s,
                  "scipy_vs_librosa": float(np.abs(scipy_first - first).max()),
                  "librosa": librosa.__version__, "numpy": np.__version__, "scipy": scipy.__version__}))
"#;

/// Reads a .npy of float32 written by numpy (little-endian, C order).
fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// One round's seconds over all files: this crate on one thread and on all, the references.
struct Round {
    rust_1: f64,
    rust_all: f64,
    librosa: f64,
    scipy: f64,
}

/// Runs the Python references once over `files` (one thread each); their JSON report. The
/// output of file 0 by librosa is saved to `npy`.
fn python_reference(py: &Path, files: &[PathBuf], npy: &Path) -> serde_json::Value {
    let mut child = Command::new(py)
        .arg("-c")
        .arg(PY)
        .args(files)
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{}", npy.display()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python reference failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn main() {
    let env_count = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
            .max(1)
    };
    let n_files = env_count("BENCH_FILES", 16);
    let n_rounds = env_count("BENCH_ROUNDS", 5);
    let dir = pipeline_api::testing::target_dir(env!("CARGO_MANIFEST_DIR")).join("bench-logmel");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = MelConfig::passt();
    let sr = cfg.sample_rate;
    // 30 s files of tones, chirps and noise.
    let files: Vec<PathBuf> = (0..n_files)
        .map(|k| {
            let path = dir.join(format!("clip-{k:03}.wav"));
            if !path.exists() {
                let spec = hound::WavSpec {
                    channels: 1,
                    sample_rate: sr,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                let mut w = hound::WavWriter::create(&path, spec).unwrap();
                let mut state = 1u64 + k as u64;
                for i in 0..30 * sr as usize {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let noise = ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.1;
                    let t = i as f64 / sr as f64;
                    let x = 0.3 * (std::f64::consts::TAU * (200.0 + 50.0 * k as f64) * t).sin()
                        + 0.2 * (std::f64::consts::TAU * (500.0 * t + 100.0 * t * t)).sin()
                        + noise;
                    w.write_sample((x * 32767.0) as i16).unwrap();
                }
                w.finalize().unwrap();
            }
            path
        })
        .collect();
    let audio_seconds = 30.0 * n_files as f64;

    // What the `features` stage runs per clip.
    let params: FeaturesParams = parse_params(&toml::toml! { preset = "passt" }).unwrap();
    assert_eq!(params.mel_config(), cfg);
    let stage = FrontEnd::new(&params);
    let front_end = |path: &Path| -> Vec<f32> { stage.file(path).unwrap().mel };
    let first = front_end(&files[0]);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let py = pipeline_api::testing::python_venv(
        &pipeline_api::testing::target_dir(env!("CARGO_MANIFEST_DIR")).join("pyref-venv"),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/requirements.txt"),
    )
    .expect("the Python reference's venv");
    let npy = dir.join("librosa_first.npy");
    // Rounds alternate the two sides, so that a burst of load on this shared machine slows
    // both of one round rather than one side of the comparison; medians are reported.
    let mut rounds = Vec::new();
    let mut report = serde_json::Value::Null;
    for _ in 0..n_rounds {
        let t = Instant::now();
        for f in &files {
            std::hint::black_box(front_end(f));
        }
        let rust_1 = t.elapsed().as_secs_f64();
        let t = Instant::now();
        files.par_iter().for_each(|f| {
            std::hint::black_box(front_end(f));
        });
        let rust_all = t.elapsed().as_secs_f64();
        report = python_reference(&py, &files, &npy);
        let seconds = |k: &str| report[k].as_f64().expect("the reference's seconds");
        rounds.push(Round {
            rust_1,
            rust_all,
            librosa: seconds("librosa_seconds"),
            scipy: seconds("scipy_seconds"),
        });
    }
    let reference = read_npy_f32(&npy);
    assert!(
        first.iter().chain(&reference).all(|x| x.is_finite()),
        "non-finite log-mel values"
    );
    assert_eq!(first.len(), reference.len(), "output shapes differ");
    let max_diff = first
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);

    let version = |k: &str| report[k].as_str().unwrap_or("?").to_owned();
    println!(
        "log-mel, passt preset (32 kHz, n_fft 1024, win 800, hop 320, 128 mels), {n_files} files x 30 s, decode included; machine threads: {threads}; median of {n_rounds} alternating rounds"
    );
    println!(
        "load average during the run: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();
    println!(
        "| implementation | threads | s audio / s | speed vs the fastest Python (median; range over rounds) |"
    );
    println!("|---|---|---|---|");
    let fastest_python = |r: &Round| r.librosa.min(r.scipy);
    let row = |name: String, threads: usize, secs: fn(&Round) -> f64| {
        let ratios: Vec<f64> = rounds.iter().map(|r| fastest_python(r) / secs(r)).collect();
        let ratios = median_and_range(&ratios);
        println!(
            "| {name} | {threads} | {:.1} | {:.2}x ({:.2}–{:.2}) |",
            audio_seconds / median_and_range(&rounds.iter().map(secs).collect::<Vec<_>>()).0,
            ratios.0,
            ratios.1,
            ratios.2
        );
    };
    row("this crate".into(), 1, |r| r.rust_1);
    row("this crate".into(), threads, |r| r.rust_all);
    row(format!("librosa {}", version("librosa")), 1, |r| r.librosa);
    row(
        format!(
            "numpy {} + scipy.fft {}",
            version("numpy"),
            version("scipy")
        ),
        1,
        |r| r.scipy,
    );
    println!();
    println!(
        "max |this - librosa| on file 0: {max_diff:.2e} ({} values); max |scipy.fft - librosa|: {:.2e}",
        first.len().min(reference.len()),
        report["scipy_vs_librosa"].as_f64().unwrap_or(f64::NAN)
    );
}
