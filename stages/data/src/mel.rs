//! Log-mel spectrograms with the `passt`, `light` and `yamnet` presets; below, the Kaldi style of
//! `passt`/`light` ([`MelStyle::Kaldi`]), see [`MelStyle::Yamnet`] for YAMNet's.
//!
//! For one window of `n` samples: optional pre-emphasis `y[t] = x[t+1] - 0.97 x[t]` (a
//! convolution with kernel [-0.97, 1] without padding: `n - 1` samples); STFT with `n_fft`
//! points, a symmetric Hann window of `win_length` zero-padded centred to `n_fft`, hop
//! `hop_length`, centred with reflect padding of `n_fft / 2` (`1 + len / hop` frames); power
//! spectrum; `n_mels` triangular filters in the mel domain (mel = 1127 ln(1 + f / 700)) from
//! `f_min` to `f_max` as `torchaudio.compliance.kaldi.get_mel_banks` (the Nyquist bin has weight
//! 0); `log(x + 1e-5)`, then `(x + 4.5) / 5`. Computed in f64, stored as f32. Two frames share
//! one complex FFT (one as the real, one as the imaginary part).

use std::borrow::Cow;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

/// Framing, spectrum, filter bank and log scaling conventions of a front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelStyle {
    /// PaSST (see the module docs): centred frames with reflect padding, symmetric Hann, power
    /// spectrum, Kaldi mel banks, `(log(x + 1e-5) + 4.5) / 5`.
    #[default]
    Kaldi,
    /// YAMNet (`features.py` of tensorflow/models `research/audioset/yamnet`): frames not
    /// centred (`1 + (n - win_length) / hop` of them), periodic Hann, magnitude spectrum,
    /// TensorFlow's `linear_to_mel_weight_matrix`, `log(x + 0.001)`.
    Yamnet,
}

impl MelStyle {
    /// The stored value of a mel band energy `e`.
    fn log_scale(self, e: f64) -> f64 {
        match self {
            MelStyle::Kaldi => ((e + 1e-5).ln() + 4.5) / 5.0,
            MelStyle::Yamnet => (e + 1e-3).ln(),
        }
    }

    /// The stored value of silence (padding-only windows).
    pub fn silence(self) -> f32 {
        self.log_scale(0.0) as f32
    }
}

/// Front-end parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MelConfig {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub win_length: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    pub f_min: f64,
    pub f_max: f64,
    /// Pre-emphasis coefficient (0 = none).
    pub preemphasis: f64,
    /// Crop/pad length in seconds.
    pub max_seconds: f64,
    /// Window length in seconds.
    pub window_seconds: f64,
    /// Step between window starts in seconds (`None`: `window_seconds`, windows do not overlap).
    #[serde(default)]
    pub window_hop_seconds: Option<f64>,
    #[serde(default)]
    pub style: MelStyle,
}

impl MelConfig {
    /// PaSST's front end, as in `docs/method.md`: 32 kHz, 30 s in 10 s windows, 128 mels
    /// 0-15 kHz.
    pub fn passt() -> Self {
        Self {
            sample_rate: 32000,
            n_fft: 1024,
            win_length: 800,
            hop_length: 320,
            n_mels: 128,
            f_min: 0.0,
            f_max: 15000.0,
            preemphasis: 0.97,
            max_seconds: 30.0,
            window_seconds: 10.0,
            window_hop_seconds: None,
            style: MelStyle::Kaldi,
        }
    }

    /// The CPU default: 16 kHz, 25 ms windows (400 of 512 points), 20 ms hop, 64 mels 0-8 kHz,
    /// one window of 4 s (the default `synth-dataset` clip length).
    pub fn light() -> Self {
        Self {
            sample_rate: 16000,
            n_fft: 512,
            win_length: 400,
            hop_length: 320,
            n_mels: 64,
            f_min: 0.0,
            f_max: 8000.0,
            preemphasis: 0.97,
            max_seconds: 4.0,
            window_seconds: 4.0,
            window_hop_seconds: None,
            style: MelStyle::Kaldi,
        }
    }

    /// YAMNet's front end (`params.py`/`features.py`): 16 kHz, 25 ms periodic Hann windows
    /// (400 of 512 points), 10 ms hop, magnitude, 64 mels 125-7500 Hz, `log(x + 0.001)`.
    /// Windows are YAMNet's patches: 96 frames, i.e. 0.975 s of audio (0.96 s plus the last
    /// frame's tail), every 0.48 s; clips are cropped/padded to 10 s (AudioSet's length).
    pub fn yamnet() -> Self {
        Self {
            sample_rate: 16000,
            n_fft: 512,
            win_length: 400,
            hop_length: 160,
            n_mels: 64,
            f_min: 125.0,
            f_max: 7500.0,
            preemphasis: 0.0,
            max_seconds: 10.0,
            window_seconds: 0.975,
            window_hop_seconds: Some(0.48),
            style: MelStyle::Yamnet,
        }
    }

    pub fn layout(&self) -> crate::audio::WindowLayout {
        crate::audio::WindowLayout::new(self.sample_rate, self.max_seconds, self.window_seconds)
    }

    /// The layout with the step between windows.
    pub fn windows(&self) -> Windows {
        let layout = self.layout();
        let hop_samples = self.window_hop_seconds.map_or(layout.window_samples, |s| {
            ((s * self.sample_rate as f64).round().max(1.0) as usize).min(layout.window_samples)
        });
        Windows {
            layout,
            hop_samples,
        }
    }

    /// Checks internal consistency; the error names the offending key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(4000..=96000).contains(&self.sample_rate) {
            return Err(("sample_rate", "must be between 4000 and 96000".into()));
        }
        if self.n_fft < 16 || !self.n_fft.is_multiple_of(2) || self.n_fft > 16384 {
            return Err(("n_fft", "must be even, between 16 and 16384".into()));
        }
        if self.win_length < 2 || self.win_length > self.n_fft {
            return Err((
                "win_length",
                format!("must be between 2 and n_fft ({})", self.n_fft),
            ));
        }
        if self.hop_length == 0 || self.hop_length > self.n_fft {
            return Err((
                "hop_length",
                format!("must be between 1 and n_fft ({})", self.n_fft),
            ));
        }
        if !(1..=512).contains(&self.n_mels) {
            return Err(("n_mels", "must be between 1 and 512".into()));
        }
        let nyquist = self.sample_rate as f64 / 2.0;
        if !(self.f_max > 0.0 && self.f_max <= nyquist) {
            return Err((
                "f_max",
                format!("must be in (0, {nyquist}] (the Nyquist frequency)"),
            ));
        }
        if !(self.f_min >= 0.0 && self.f_min < self.f_max) {
            return Err(("f_min", "must be >= 0 and below f_max".into()));
        }
        if !(0.0..1.0).contains(&self.preemphasis) {
            return Err(("preemphasis", "must be in [0, 1)".into()));
        }
        if !(self.max_seconds > 0.0 && self.max_seconds <= 600.0) {
            return Err(("max_seconds", "must be in (0, 600]".into()));
        }
        if !(self.window_seconds > 0.0 && self.window_seconds <= self.max_seconds) {
            return Err(("window_seconds", "must be in (0, max_seconds]".into()));
        }
        let window_samples = (self.window_seconds * self.sample_rate as f64).round() as usize;
        if window_samples <= self.n_fft / 2 {
            return Err((
                "window_seconds",
                "a window must be longer than n_fft / 2 samples".into(),
            ));
        }
        if self.style == MelStyle::Yamnet && window_samples < self.win_length {
            return Err((
                "window_seconds",
                "a window must hold at least win_length samples".into(),
            ));
        }
        if let Some(hop) = self.window_hop_seconds
            && !(hop > 0.0 && hop <= self.window_seconds)
        {
            return Err((
                "window_hop_seconds",
                "must be in (0, window_seconds]".into(),
            ));
        }
        Ok(())
    }
}

fn mel_scale(f: f64) -> f64 {
    1127.0 * (1.0 + f / 700.0).ln()
}

/// How a clip is cut into possibly overlapping windows: `layout` gives the crop/pad length and
/// the window length, `hop_samples` the step between window starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub layout: crate::audio::WindowLayout,
    pub hop_samples: usize,
}

impl Windows {
    pub fn window_samples(&self) -> usize {
        self.layout.window_samples
    }

    /// Windows covering `max_samples` (the last one zero-padded).
    pub fn n_windows(&self) -> usize {
        let (max, win) = (self.layout.max_samples, self.layout.window_samples);
        1 + max.saturating_sub(win).div_ceil(self.hop_samples)
    }

    /// The windows and the mask: a window counts (1) when it holds audio that no earlier window
    /// holds, so a clip gives as many windows as YAMNet makes patches of it.
    pub fn split<'a>(&self, samples: &'a [f32]) -> (Vec<Cow<'a, [f32]>>, Vec<u8>) {
        let (win, hop) = (self.layout.window_samples, self.hop_samples);
        if hop == win {
            return self.layout.split(samples);
        }
        let n = samples.len().min(self.layout.max_samples);
        (0..self.n_windows())
            .map(|w| {
                let start = w * hop;
                let fresh = if w == 0 { 0 } else { start + win - hop };
                (
                    crate::audio::window(samples, n, start, win),
                    u8::from(fresh < n),
                )
            })
            .unzip()
    }
}

/// TensorFlow's `linear_to_mel_weight_matrix` (transposed: `n_mels` rows of `n_fft / 2 + 1`
/// weights): triangles in the HTK mel domain over the bins `k · sr / n_fft` including Nyquist,
/// with the DC bin's weight 0.
pub fn tf_mel_banks(
    n_mels: usize,
    n_fft: usize,
    sample_rate: f64,
    f_min: f64,
    f_max: f64,
) -> Vec<Vec<f64>> {
    let n_bins = n_fft / 2 + 1;
    let nyquist = sample_rate / 2.0;
    let (mel_low, mel_high) = (mel_scale(f_min), mel_scale(f_max));
    // Band edges: `n_mels + 2` points evenly spaced in mel (tf.linspace).
    let edge = |i: usize| mel_low + (mel_high - mel_low) * i as f64 / (n_mels + 1) as f64;
    (0..n_mels)
        .map(|m| {
            let (left, center, right) = (edge(m), edge(m + 1), edge(m + 2));
            (0..n_bins)
                .map(|k| {
                    if k == 0 {
                        return 0.0;
                    }
                    let mel = mel_scale(nyquist * k as f64 / (n_bins - 1) as f64);
                    let up = (mel - left) / (center - left);
                    let down = (right - mel) / (right - center);
                    up.min(down).max(0.0)
                })
                .collect()
        })
        .collect()
}

/// Kaldi mel banks (`torchaudio.compliance.kaldi.get_mel_banks`, no VTLN), padded with a zero
/// weight for the Nyquist bin: `n_mels` rows of `n_fft / 2 + 1` weights.
pub fn kaldi_mel_banks(
    n_mels: usize,
    n_fft: usize,
    sample_rate: f64,
    f_min: f64,
    f_max: f64,
) -> Vec<Vec<f64>> {
    let n_bins = n_fft / 2;
    let bin_width = sample_rate / n_fft as f64;
    let mel_low = mel_scale(f_min);
    let mel_high = mel_scale(f_max);
    let delta = (mel_high - mel_low) / (n_mels + 1) as f64;
    (0..n_mels)
        .map(|m| {
            let left = mel_low + m as f64 * delta;
            let center = mel_low + (m as f64 + 1.0) * delta;
            let right = mel_low + (m as f64 + 2.0) * delta;
            let mut row: Vec<f64> = (0..n_bins)
                .map(|k| {
                    let mel = mel_scale(bin_width * k as f64);
                    let up = (mel - left) / (center - left);
                    let down = (right - mel) / (right - center);
                    up.min(down).max(0.0)
                })
                .collect();
            row.push(0.0);
            row
        })
        .collect()
}

/// A symmetric Hann window of `win_length`, zero-padded centred to `n_fft`.
pub fn padded_hann(win_length: usize, n_fft: usize) -> Vec<f64> {
    let mut w = vec![0.0; n_fft];
    let left = (n_fft - win_length) / 2;
    let denom = (win_length - 1).max(1) as f64;
    for i in 0..win_length {
        w[left + i] = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / denom).cos();
    }
    w
}

/// A periodic Hann window of `win_length` (`tf.signal.hann_window`), zero-padded at the end to
/// `n_fft` as `tf.signal.stft` pads its frames.
pub fn periodic_hann(win_length: usize, n_fft: usize) -> Vec<f64> {
    let mut w = vec![0.0; n_fft];
    for (i, v) in w.iter_mut().take(win_length).enumerate() {
        *v = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / win_length as f64).cos();
    }
    w
}

/// Index into a signal of length `n` with numpy/torch "reflect" padding.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let mut j = i.rem_euclid(period);
    if j >= n as isize {
        j = period - j;
    }
    j as usize
}

/// A reusable log-mel extractor: FFT plan, window and filters computed once.
pub struct MelExtractor {
    cfg: MelConfig,
    fft: Arc<dyn Fft<f64>>,
    window: Vec<f64>,
    /// `[first, last + 1)` of the window's non-zero values.
    window_span: (usize, usize),
    /// Per mel band: first non-zero bin and weights.
    filters: Vec<(usize, Vec<f64>)>,
}

impl std::fmt::Debug for MelExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelExtractor")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl MelExtractor {
    pub fn new(cfg: MelConfig) -> Self {
        let fft = FftPlanner::new().plan_fft_forward(cfg.n_fft);
        type Banks = fn(usize, usize, f64, f64, f64) -> Vec<Vec<f64>>;
        let (window, banks): (_, Banks) = match cfg.style {
            MelStyle::Kaldi => (padded_hann(cfg.win_length, cfg.n_fft), kaldi_mel_banks),
            MelStyle::Yamnet => (periodic_hann(cfg.win_length, cfg.n_fft), tf_mel_banks),
        };
        let banks = banks(
            cfg.n_mels,
            cfg.n_fft,
            cfg.sample_rate as f64,
            cfg.f_min,
            cfg.f_max,
        );
        let filters = banks
            .into_iter()
            .map(|row| {
                let first = row.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w > 0.0).map_or(first, |l| l + 1);
                (first, row[first..last].to_vec())
            })
            .collect();
        let first = window.iter().position(|&w| w != 0.0).unwrap_or(0);
        let last = window
            .iter()
            .rposition(|&w| w != 0.0)
            .map_or(first, |l| l + 1);
        Self {
            cfg,
            fft,
            window,
            window_span: (first, last),
            filters,
        }
    }

    pub fn config(&self) -> &MelConfig {
        &self.cfg
    }

    /// Frames produced for a window of `n_samples` samples.
    pub fn n_frames(&self, n_samples: usize) -> usize {
        let n = if self.cfg.preemphasis > 0.0 {
            n_samples.saturating_sub(1)
        } else {
            n_samples
        };
        self.frames_of(n)
    }

    /// Frames of a (pre-emphasised) signal of `n` samples.
    fn frames_of(&self, n: usize) -> usize {
        match self.cfg.style {
            MelStyle::Kaldi => 1 + n / self.cfg.hop_length,
            MelStyle::Yamnet if n < self.cfg.win_length => 0,
            MelStyle::Yamnet => 1 + (n - self.cfg.win_length) / self.cfg.hop_length,
        }
    }

    /// Log-mel of one window: `[n_mels, n_frames]`, row-major.
    pub fn compute(&self, samples: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; self.cfg.n_mels * self.n_frames(samples.len())];
        self.compute_into(samples, &mut out);
        out
    }

    /// [`Self::compute`] into `out` (`n_mels × n_frames(samples.len())` values), such as a
    /// window's part of a clip's features: no buffer of the output's size per window.
    pub fn compute_into(&self, samples: &[f32], out: &mut [f32]) {
        let n_fft = self.cfg.n_fft;
        let hop = self.cfg.hop_length;
        let n = if self.cfg.preemphasis > 0.0 {
            samples.len().saturating_sub(1)
        } else {
            samples.len()
        };
        let n_frames = self.frames_of(n);
        let n_mels = self.cfg.n_mels;
        let half = n_fft / 2;
        assert_eq!(
            out.len(),
            n_mels * n_frames,
            "output size of a log-mel window"
        );
        if n_frames == 0 {
            return;
        }
        // Only the window's non-zero span is read; frames are read from `samples` as needed
        // (the padded signal is never built: no allocation of the window's size per call).
        let (lo, hi) = self.window_span;
        let window = &self.window[lo..hi];
        let mut a = vec![0.0f64; hi - lo];
        let mut b = vec![0.0f64; hi - lo];
        let mut buf = vec![Complex::new(0.0f64, 0.0); n_fft];
        let mut scratch = vec![Complex::new(0.0f64, 0.0); self.fft.get_inplace_scratch_len()];
        let mut power_a = vec![0.0f64; half + 1];
        let mut power_b = vec![0.0f64; half + 1];
        let magnitude = self.cfg.style == MelStyle::Yamnet;
        let spectrum = |z: Complex<f64>| if magnitude { z.norm() } else { z.norm_sqr() };
        let mut f = 0;
        while f < n_frames {
            let pair = f + 1 < n_frames;
            self.frame_span(samples, n, f * hop + lo, &mut a);
            let span = &mut buf[lo..hi];
            if pair {
                self.frame_span(samples, n, (f + 1) * hop + lo, &mut b);
                for (((z, w), x), y) in span.iter_mut().zip(window).zip(&a).zip(&b) {
                    *z = Complex::new(w * x, w * y);
                }
            } else {
                for ((z, w), x) in span.iter_mut().zip(window).zip(&a) {
                    *z = Complex::new(w * x, 0.0);
                }
            }
            buf[..lo].fill(Complex::new(0.0, 0.0));
            buf[hi..].fill(Complex::new(0.0, 0.0));
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            for k in 0..=half {
                let z = buf[k];
                let zc = buf[(n_fft - k) % n_fft].conj();
                // X_a = (z + zc) / 2, X_b = (z - zc) / (2i).
                let a = (z + zc) * 0.5;
                let d = z - zc;
                let b = Complex::new(d.im * 0.5, -d.re * 0.5);
                power_a[k] = spectrum(a);
                power_b[k] = spectrum(b);
            }
            self.write_frame(&power_a, f, n_frames, out);
            if pair {
                self.write_frame(&power_b, f + 1, n_frames, out);
            }
            f += 2;
        }
    }

    /// Samples `[start, start + out.len())` of the (pre-emphasised) signal of `n` samples laid
    /// out so that frame `f` is `[f * hop, f * hop + n_fft)`: Kaldi style reflect-pads
    /// `n_fft / 2` samples on both sides (centred frames); YAMNet's frames start at 0 and read
    /// zeros past the end (only where the window is 0).
    fn frame_span(&self, samples: &[f32], n: usize, start: usize, out: &mut [f64]) {
        if n == 0 {
            out.fill(0.0);
            return;
        }
        let c = self.cfg.preemphasis;
        let signal = |j: usize| -> f64 {
            if c > 0.0 {
                samples[j + 1] as f64 - c * samples[j] as f64
            } else {
                samples[j] as f64
            }
        };
        let pad = match self.cfg.style {
            MelStyle::Kaldi => self.cfg.n_fft / 2,
            MelStyle::Yamnet => 0,
        };
        // Most frames lie inside the signal: no index checks there.
        if start >= pad && start - pad + out.len() <= n {
            for (o, j) in out.iter_mut().zip(start - pad..) {
                *o = signal(j);
            }
            return;
        }
        for (o, t) in out.iter_mut().zip(start..) {
            let j = t as isize - pad as isize;
            *o = match self.cfg.style {
                MelStyle::Kaldi => signal(reflect(j, n)),
                MelStyle::Yamnet if (j as usize) < n => signal(j as usize),
                MelStyle::Yamnet => 0.0,
            };
        }
    }

    fn write_frame(&self, power: &[f64], frame: usize, n_frames: usize, out: &mut [f32]) {
        for (m, (first, weights)) in self.filters.iter().enumerate() {
            let e: f64 = weights
                .iter()
                .zip(&power[*first..])
                .map(|(w, p)| w * p)
                .sum();
            out[m * n_frames + frame] = self.cfg.style.log_scale(e) as f32;
        }
    }
}

/// The deterministic test signal of the golden-value scripts (`tests/golden/make_golden.py`,
/// `make_yamnet_golden.py`): LCG noise, two tones and a chirp, on the int16 grid, `n` samples at
/// `sample_rate`. Shared by the front-end and YAMNet reference tests.
pub fn golden_signal(n: usize, sample_rate: f64) -> Vec<f32> {
    let mut state: u64 = 12345;
    (0..n)
        .map(|i| {
            state = (1103515245 * state + 12345) % (1 << 31);
            let noise = ((state >> 8) % 8192) as f64 - 4096.0;
            let t = i as f64 / sample_rate;
            let tone = 8000.0 * (std::f64::consts::TAU * 440.0 * t).sin()
                + 4000.0 * (std::f64::consts::TAU * 5123.5 * t + 0.5).sin();
            let chirp = 2000.0 * (std::f64::consts::TAU * (1000.0 * t + 40000.0 * t * t)).sin();
            (((tone + chirp).round() + noise) / 32768.0) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct DFT reference for one frame.
    fn naive_power(frame: &[f64]) -> Vec<f64> {
        let n = frame.len();
        (0..=n / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for (t, x) in frame.iter().enumerate() {
                    let a = -std::f64::consts::TAU * (k * t) as f64 / n as f64;
                    re += x * a.cos();
                    im += x * a.sin();
                }
                re * re + im * im
            })
            .collect()
    }

    #[test]
    fn paired_fft_matches_a_direct_dft() {
        let cfg = MelConfig {
            n_fft: 64,
            win_length: 50,
            hop_length: 16,
            n_mels: 8,
            sample_rate: 8000,
            f_max: 4000.0,
            ..MelConfig::light()
        };
        let ex = MelExtractor::new(cfg.clone());
        let x: Vec<f32> = (0..200)
            .map(|i| ((i as f32 * 0.37).sin() + (i as f32 * 0.05).cos()) * 0.3)
            .collect();
        let mel = ex.compute(&x);
        let n_frames = ex.n_frames(x.len());
        assert_eq!(mel.len(), 8 * n_frames);
        let sig: Vec<f64> = x
            .windows(2)
            .map(|w| w[1] as f64 - 0.97 * w[0] as f64)
            .collect();
        let banks = kaldi_mel_banks(8, 64, 8000.0, 0.0, 4000.0);
        for f in [0, 1, 5, n_frames - 1] {
            let frame: Vec<f64> = (0..64)
                .map(|i| {
                    ex.window[i] * sig[reflect((f * 16) as isize + i as isize - 32, sig.len())]
                })
                .collect();
            let p = naive_power(&frame);
            for m in 0..8 {
                let e: f64 = banks[m].iter().zip(&p).map(|(w, p)| w * p).sum();
                let want = ((e + 1e-5).ln() + 4.5) / 5.0;
                assert!(
                    (mel[m * n_frames + f] as f64 - want).abs() < 1e-5,
                    "frame {f} mel {m}"
                );
            }
        }
    }

    #[test]
    fn reflect_matches_numpy() {
        // np.pad([0,1,2,3], 3, mode="reflect") = [3,2,1,0,1,2,3,2,1,0]
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }

    #[test]
    fn presets_are_consistent() {
        assert!(MelConfig::passt().check().is_ok());
        assert!(MelConfig::light().check().is_ok());
        assert!(MelConfig::yamnet().check().is_ok());
        assert_eq!(MelExtractor::new(MelConfig::yamnet()).n_frames(15600), 96);
        let ex = MelExtractor::new(MelConfig::passt());
        assert_eq!(ex.n_frames(320000), 1000);
    }
    /// Golden values from an independent numpy implementation (`tests/golden/make_golden.py`,
    /// output committed as `tests/golden/passt_logmel.json`). Tolerance: 1e-4 relative error,
    /// as an absolute 1e-4 for values of magnitude below 1 (the normalised log-mel crosses 0).
    #[test]
    fn passt_matches_numpy_golden_values() {
        let golden: serde_json::Value =
            serde_json::from_str(include_str!("../tests/golden/passt_logmel.json")).unwrap();
        let n = golden["n_samples"].as_u64().unwrap() as usize;
        let x = golden_signal(n, 32000.0);
        let checksum: f64 = x.iter().map(|v| v.abs() as f64).sum();
        assert!(
            (checksum - golden["signal_checksum"].as_f64().unwrap()).abs() < 1e-6,
            "signal differs"
        );
        let ex = MelExtractor::new(MelConfig::passt());
        let got = ex.compute(&x);
        let want: Vec<f64> = golden["logmel"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(
            ex.n_frames(n),
            golden["n_frames"].as_u64().unwrap() as usize
        );
        assert_eq!(got.len(), want.len());
        let mut worst = 0.0f64;
        for (g, w) in got.iter().zip(&want) {
            let err = (*g as f64 - w).abs() / w.abs().max(1.0);
            worst = worst.max(err);
        }
        assert!(worst < 1e-4, "worst relative error {worst}");
    }
}
