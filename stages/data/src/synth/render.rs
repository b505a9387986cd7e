//! Procedural synthesis of a scene's audio.

use std::f32::consts::TAU;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::scene::{Event, Scene, Source};

/// Renders `scene` as mono samples in [-1, 1] at `sr` Hz. `seed` drives the clip-level noise.
pub fn render(scene: &Scene, clip_seconds: f32, sr: u32, seed: u64) -> Vec<f32> {
    let n = (clip_seconds * sr as f32).round() as usize;
    let mut out = vec![0.0f32; n];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for e in &scene.events {
        let mut ev_rng = ChaCha8Rng::seed_from_u64(e.seed);
        let start = ((e.start * sr as f32) as usize).min(n);
        let end = ((e.end * sr as f32) as usize).min(n);
        if end <= start {
            continue;
        }
        let mut buf = vec![0.0f32; end - start];
        synth_event(e, sr as f32, &mut ev_rng, &mut buf);
        if let Some(v) = e.variant {
            timbre(v, sr as f32, &mut buf);
        }
        // Short fades at the borders, peak normalisation, then the event's gain.
        fade(&mut buf, (0.005 * sr as f32) as usize);
        let peak = buf.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-9);
        let db: f32 = if e.loud {
            ev_rng.random_range(-3.0..0.0)
        } else {
            ev_rng.random_range(-20.0..-15.0)
        };
        let mut gain = 10f32.powf(db / 20.0) * 0.6 / peak;
        if e.background {
            gain *= 0.5;
        }
        for (o, x) in out[start..end].iter_mut().zip(&buf) {
            *o += gain * x;
        }
    }
    // Background noise floor (lightly low-passed white noise) and a random overall gain.
    let floor = 10f32.powf(rng.random_range(-55.0..-38.0) / 20.0);
    let mut lp = 0.0f32;
    for o in out.iter_mut() {
        let w: f32 = rng.random_range(-1.0..1.0);
        lp = 0.7 * lp + 0.3 * w;
        *o += floor * lp * 1.7;
    }
    let gain = 10f32.powf(rng.random_range(-6.0..0.0) / 20.0);
    let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let gain = if peak * gain > 0.98 {
        0.98 / peak
    } else {
        gain
    };
    for o in out.iter_mut() {
        *o *= gain;
    }
    out
}

/// Applies the timbre of variant `v` (`scene::VARIANT_WORDS[v]`) to an event's samples: clear
/// (unchanged), muffled (low-passed), tinny (high-passed), distorted (saturated), echoing (a
/// feedback echo) or wobbling (a deep 7 Hz tremolo).
fn timbre(v: u8, sr: f32, buf: &mut [f32]) {
    // One-pole smoothing coefficient of a cut-off frequency.
    let coefficient = |hz: f32| 1.0 - (-TAU * hz / sr).exp();
    match v {
        1 => {
            let a = coefficient(500.0);
            for _ in 0..2 {
                let mut y = 0.0f32;
                for x in buf.iter_mut() {
                    y += a * (*x - y);
                    *x = y;
                }
            }
        }
        2 => {
            let a = coefficient(2500.0);
            for _ in 0..2 {
                let mut low = 0.0f32;
                for x in buf.iter_mut() {
                    low += a * (*x - low);
                    *x -= low;
                }
            }
        }
        3 => {
            let peak = buf.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-9);
            for x in buf.iter_mut() {
                *x = (8.0 * *x / peak).tanh();
            }
        }
        4 => {
            let delay = (0.11 * sr) as usize;
            for i in delay..buf.len() {
                buf[i] += 0.6 * buf[i - delay];
            }
        }
        5 => {
            for (i, x) in buf.iter_mut().enumerate() {
                let phase = TAU * 7.0 * i as f32 / sr;
                *x *= 1.0 - 0.85 * (0.5 + 0.5 * phase.sin());
            }
        }
        _ => {}
    }
}

fn fade(buf: &mut [f32], len: usize) {
    let len = len.min(buf.len() / 2);
    let n = buf.len();
    for i in 0..len {
        let g = i as f32 / len as f32;
        buf[i] *= g;
        buf[n - 1 - i] *= g;
    }
}

/// Attack-release envelope of a note of `len` seconds at time `t` seconds.
fn note_env(t: f32, len: f32, attack: f32, release: f32) -> f32 {
    if t < 0.0 || t >= len {
        0.0
    } else if t < attack {
        t / attack
    } else if t > len - release {
        ((len - t) / release).max(0.0)
    } else {
        1.0
    }
}

/// A resonant two-pole band-pass filter (RBJ biquad, constant 0 dB peak gain).
struct BandPass {
    b0: f32,
    b2: f32,
    a1: f32,
    a2: f32,
    x1: f32,
    x2: f32,
    y1: f32,
    y2: f32,
}

impl BandPass {
    fn new(sr: f32, f0: f32, q: f32) -> Self {
        let mut bp = Self {
            b0: 0.0,
            b2: 0.0,
            a1: 0.0,
            a2: 0.0,
            x1: 0.0,
            x2: 0.0,
            y1: 0.0,
            y2: 0.0,
        };
        bp.set(sr, f0, q);
        bp
    }

    fn set(&mut self, sr: f32, f0: f32, q: f32) {
        let w = TAU * f0.min(0.45 * sr) / sr;
        let alpha = w.sin() / (2.0 * q);
        let a0 = 1.0 + alpha;
        self.b0 = alpha / a0;
        self.b2 = -alpha / a0;
        self.a1 = -2.0 * w.cos() / a0;
        self.a2 = (1.0 - alpha) / a0;
    }

    fn tick(&mut self, x: f32) -> f32 {
        let y = self.b0 * x + self.b2 * self.x2 - self.a1 * self.y1 - self.a2 * self.y2;
        self.x2 = self.x1;
        self.x1 = x;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

fn noise(rng: &mut ChaCha8Rng) -> f32 {
    rng.random_range(-1.0f32..1.0)
}

/// Draws a base frequency in the low or high range, with variation within the source type.
fn base_freq(rng: &mut ChaCha8Rng, high: Option<bool>, low: (f32, f32), hi: (f32, f32)) -> f32 {
    let (a, b) = if high.unwrap_or(false) { hi } else { low };
    // Log-uniform.
    (a.ln() + rng.random::<f32>() * (b.ln() - a.ln())).exp()
}

/// Adds a sum of harmonics (`amps[k]` for harmonic k+1) at instantaneous frequency `f(t)`.
fn additive(
    buf: &mut [f32],
    sr: f32,
    start: usize,
    len: usize,
    amps: &[f32],
    mut f: impl FnMut(f32) -> f32,
    mut env: impl FnMut(f32) -> f32,
) {
    let mut phase = 0.0f32;
    let nyquist = 0.5 * sr;
    for i in 0..len.min(buf.len().saturating_sub(start)) {
        let t = i as f32 / sr;
        let freq = f(t);
        phase = (phase + TAU * freq / sr) % TAU;
        let e = env(t);
        if e == 0.0 {
            continue;
        }
        let mut s = 0.0;
        for (k, a) in amps.iter().enumerate() {
            let h = (k + 1) as f32;
            if h * freq < nyquist {
                s += a * (h * phase).sin();
            }
        }
        buf[start + i] += e * s;
    }
}

fn synth_event(e: &Event, sr: f32, rng: &mut ChaCha8Rng, buf: &mut [f32]) {
    let n = buf.len();
    let dur = n as f32 / sr;
    let count = e.count.unwrap_or(1) as usize;
    let interval = e.interval;
    let fast = e.fast.unwrap_or(false);
    let at = |t: f32| ((t * sr) as usize).min(n);
    match e.source {
        Source::RisingTone | Source::FallingTone => {
            let f0 = base_freq(rng, e.high, (250.0, 400.0), (900.0, 1400.0));
            let rising = e.source == Source::RisingTone;
            let span = rng.random_range(1.7..2.3f32);
            let len = 0.8 * interval;
            for k in 0..count {
                let s = at(k as f32 * interval);
                additive(
                    buf,
                    sr,
                    s,
                    at(len),
                    &[1.0, 0.15],
                    |t| {
                        let x = t / len;
                        let x = if rising { x } else { 1.0 - x };
                        f0 * span.powf(x)
                    },
                    |t| note_env(t, len, 0.01, 0.02),
                );
            }
        }
        Source::Bell => {
            let f0 = base_freq(rng, e.high, (250.0, 400.0), (900.0, 1400.0));
            let ratios = [1.0, 2.76, 5.40, 8.93];
            let amps = [1.0, 0.6, 0.3, 0.15];
            let tau = rng.random_range(0.2..0.35f32);
            for k in 0..count {
                let s = at(k as f32 * interval);
                for (r, a) in ratios.iter().zip(amps) {
                    let f = f0 * r;
                    if f >= 0.5 * sr {
                        continue;
                    }
                    let w = TAU * f / sr;
                    for (j, b) in buf[s..].iter_mut().enumerate() {
                        let t = j as f32 / sr;
                        *b += a * (w * j as f32).sin() * (-t / (tau / r.sqrt())).exp();
                    }
                }
            }
        }
        Source::Flute => {
            let f0 = base_freq(rng, e.high, (260.0, 400.0), (800.0, 1200.0));
            let vib = rng.random_range(4.5..6.0f32);
            let len = 0.85 * interval;
            for k in 0..count {
                let s = at(k as f32 * interval);
                additive(
                    buf,
                    sr,
                    s,
                    at(len),
                    &[1.0, 0.3, 0.1],
                    |t| f0 * (1.0 + 0.006 * (TAU * vib * t).sin()),
                    |t| note_env(t, len, 0.04, 0.05),
                );
                // Breath noise.
                for (j, b) in buf[s..(s + at(len)).min(n)].iter_mut().enumerate() {
                    *b += 0.03 * note_env(j as f32 / sr, len, 0.04, 0.05) * noise(rng);
                }
            }
        }
        Source::Pluck => {
            // Karplus-Strong.
            let f0 = base_freq(rng, e.high, (110.0, 170.0), (330.0, 520.0));
            for k in 0..count {
                let s = at(k as f32 * interval);
                let period = ((sr / f0) as usize).max(2);
                let mut line: Vec<f32> = (0..period).map(|_| noise(rng)).collect();
                let mut idx = 0;
                for b in buf[s..].iter_mut() {
                    let next = line[(idx + 1) % period];
                    let y = line[idx];
                    line[idx] = 0.996 * 0.5 * (y + next);
                    idx = (idx + 1) % period;
                    *b += y;
                }
            }
        }
        Source::Horn => {
            let f0 = base_freq(rng, e.high, (90.0, 150.0), (300.0, 450.0));
            let amps: Vec<f32> = (1..=12)
                .map(|k| 1.0 / k as f32 * if k <= 4 { 1.0 } else { 0.6 })
                .collect();
            let len = 0.85 * interval;
            for k in 0..count {
                let s = at(k as f32 * interval);
                additive(
                    buf,
                    sr,
                    s,
                    at(len),
                    &amps,
                    |t| f0 * (1.0 + 0.01 * (-t * 30.0).exp()),
                    |t| note_env(t, len, 0.03, 0.04),
                );
            }
        }
        Source::Rain => {
            let mut hp_prev_x = 0.0;
            let mut hp_y = 0.0;
            let density = rng.random_range(30.0..70.0f32);
            let mut drop_env = 0.0f32;
            let mut drop_bp = BandPass::new(sr, 3000.0, 2.0);
            for x in buf.iter_mut() {
                let w = noise(rng);
                // One-pole high-pass.
                hp_y = 0.9 * (hp_y + w - hp_prev_x);
                hp_prev_x = w;
                if rng.random::<f32>() < density / sr {
                    drop_env = rng.random_range(0.5..1.5);
                    drop_bp.set(sr, rng.random_range(1500.0..5000.0), 3.0);
                }
                drop_env *= 0.995;
                *x += 0.35 * hp_y + drop_env * drop_bp.tick(noise(rng)) * 2.0;
            }
        }
        Source::Wind => {
            let fc = base_freq(rng, e.high, (250.0, 450.0), (900.0, 1500.0));
            let rate = if fast {
                rng.random_range(1.5..2.5f32)
            } else {
                rng.random_range(0.3..0.5f32)
            };
            let phase = rng.random_range(0.0..TAU);
            let mut bp = BandPass::new(sr, fc, 2.0);
            for (i, x) in buf.iter_mut().enumerate() {
                let t = i as f32 / sr;
                let m = 0.5 + 0.5 * (TAU * rate * t + phase).sin();
                if i % 64 == 0 {
                    bp.set(sr, fc * (0.8 + 0.4 * m), 2.0);
                }
                *x += (0.2 + 0.8 * m) * bp.tick(noise(rng));
            }
        }
        Source::Knock => {
            let f = base_freq(rng, e.high, (120.0, 220.0), (500.0, 900.0));
            let w = TAU * f / sr;
            for k in 0..count {
                let s = at(k as f32 * interval);
                for (j, b) in buf[s..(s + at(0.15)).min(n)].iter_mut().enumerate() {
                    let t = j as f32 / sr;
                    *b += (w * j as f32).sin() * (-t / 0.03).exp()
                        + 0.5 * noise(rng) * (-t / 0.003).exp();
                }
            }
        }
        Source::Footsteps => {
            let fc = base_freq(rng, e.high, (250.0, 450.0), (1000.0, 1800.0));
            let mut bp = BandPass::new(sr, fc, 1.5);
            let mut t = rng.random_range(0.0..0.05f32);
            while t < dur {
                let s = at(t);
                for (hit, delay) in [(1.0f32, 0.0f32), (0.6, 0.05)] {
                    let s = (s + at(delay)).min(n);
                    for (j, b) in buf[s..(s + at(0.06)).min(n)].iter_mut().enumerate() {
                        let tt = j as f32 / sr;
                        *b += hit * bp.tick(noise(rng)) * (-tt / 0.015).exp() * 3.0;
                    }
                }
                t += interval * rng.random_range(0.92..1.08f32);
            }
        }
        Source::Engine => {
            let f0 = base_freq(rng, e.high, (35.0, 55.0), (90.0, 140.0));
            let rate = if fast {
                rng.random_range(12.0..18.0f32)
            } else {
                rng.random_range(3.0..5.0f32)
            };
            let amps: Vec<f32> = (1..=10).map(|k| 1.0 / k as f32).collect();
            additive(
                buf,
                sr,
                0,
                n,
                &amps,
                |_| f0,
                |t| 0.55 + 0.45 * (TAU * rate * t).sin(),
            );
            let mut bp = BandPass::new(sr, 4.0 * f0, 1.0);
            for (i, x) in buf.iter_mut().enumerate() {
                let t = i as f32 / sr;
                *x += 0.3 * (0.55 + 0.45 * (TAU * rate * t).sin()) * bp.tick(noise(rng));
            }
        }
        Source::Birds => {
            let f1 = base_freq(rng, e.high, (1500.0, 2200.0), (3000.0, 4500.0));
            let len = if fast { 0.07 } else { 0.14 };
            for k in 0..count {
                let s = at(k as f32 * interval);
                let jitter = rng.random_range(0.9..1.1f32);
                additive(
                    buf,
                    sr,
                    s,
                    at(len),
                    &[1.0, 0.1],
                    |t| f1 * jitter * (1.0 + 0.6 * t / len),
                    |t| (std::f32::consts::PI * t / len).sin().max(0.0),
                );
            }
        }
        Source::Siren => {
            let fc = base_freq(rng, e.high, (400.0, 600.0), (900.0, 1300.0));
            let rate = if fast {
                rng.random_range(2.5..3.5f32)
            } else {
                rng.random_range(0.4..0.7f32)
            };
            additive(
                buf,
                sr,
                0,
                n,
                &[1.0, 0.4, 0.2],
                |t| fc * (1.0 + 0.25 * (TAU * rate * t).sin()),
                |_| 1.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::scene::sample_scene;
    use super::*;

    #[test]
    fn every_source_renders_finite_nonsilent_audio() {
        let sr = 16000.0;
        for source in Source::ALL {
            for high in [false, true] {
                let t = source.traits();
                let e = Event {
                    source,
                    high: t.pitch.then_some(high),
                    loud: true,
                    fast: t.speed.then_some(high),
                    count: t.count.then_some(3),
                    start: 0.0,
                    end: 1.5,
                    background: false,
                    interval: 0.3,
                    seed: 11,
                    variant: None,
                };
                let mut buf = vec![0.0; 24000];
                synth_event(&e, sr, &mut ChaCha8Rng::seed_from_u64(1), &mut buf);
                let rms = (buf.iter().map(|x| x * x).sum::<f32>() / buf.len() as f32).sqrt();
                assert!(buf.iter().all(|x| x.is_finite()), "{source:?}");
                assert!(rms > 1e-3, "{source:?} is silent");
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let scene = sample_scene(&mut rng, 4.0, false, None, 1);
        let audio = render(&scene, 4.0, 16000, 9);
        assert_eq!(audio.len(), 64000);
        assert!(audio.iter().all(|x| x.abs() <= 1.0));
        assert_eq!(audio, render(&scene, 4.0, 16000, 9));
    }

    #[test]
    fn variants_sound_different() {
        let sr = 16000.0;
        // Share of the energy in the first difference: a measure of brightness.
        let brightness = |buf: &[f32]| {
            let diff: f32 = buf.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum();
            diff / buf.iter().map(|x| x * x).sum::<f32>().max(1e-12)
        };
        for source in [Source::Rain, Source::Bell, Source::Engine] {
            let e = Event {
                source,
                high: source.traits().pitch.then_some(true),
                loud: true,
                fast: source.traits().speed.then_some(false),
                count: source.traits().count.then_some(2),
                start: 0.0,
                end: 1.5,
                background: false,
                interval: 0.4,
                seed: 3,
                variant: None,
            };
            let mut clear = vec![0.0; 24000];
            synth_event(&e, sr, &mut ChaCha8Rng::seed_from_u64(1), &mut clear);
            let variant = |v: u8| {
                let mut buf = clear.clone();
                timbre(v, sr, &mut buf);
                assert!(buf.iter().all(|x| x.is_finite()), "{source:?} variant {v}");
                buf
            };
            assert_eq!(variant(0), clear);
            let b = brightness(&clear);
            assert!(
                brightness(&variant(1)) < 0.5 * b,
                "{source:?}: muffled is darker"
            );
            // Rain is near-white noise already (brightness 1.76 of at most 4; 2.36 tinny).
            assert!(
                brightness(&variant(2)) > 1.25 * b,
                "{source:?}: tinny is brighter"
            );
            for v in 3..6 {
                let other = variant(v);
                let change: f32 = other.iter().zip(&clear).map(|(a, b)| (a - b).abs()).sum();
                assert!(
                    change > 0.1 * clear.iter().map(|x| x.abs()).sum::<f32>(),
                    "{source:?} variant {v}"
                );
            }
        }
    }
}
