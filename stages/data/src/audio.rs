//! Audio decoding (symphonia: WAV, FLAC, OGG/Vorbis, MP3), downmix to mono, resampling
//! (rubato's FFT resampler) and the crop/pad/window layout of `docs/method.md`.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, bail};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Mono audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Audio {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

/// Decodes a whole file and averages its channels. Fails on unreadable, undecodable, truncated
/// or empty audio, naming the file.
pub fn decode(path: &Path) -> anyhow::Result<Audio> {
    try_decode(path).with_context(|| format!("decoding `{}`", path.display()))
}

/// [`decode`] without the file in the error, for callers that report the file themselves (the
/// message is then the same wherever the file lives).
///
/// A file is refused, besides when it cannot be read or decoded at all, when it ends before the
/// end its header promises (a WAV whose data chunk, or a FLAC whose STREAMINFO sample count, is
/// longer than what the file holds; an Ogg stream without its last page) and when a packet
/// fails to decode.
pub fn try_decode(path: &Path) -> anyhow::Result<Audio> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() == 0 {
        bail!("the file is empty");
    }
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| anyhow::anyhow!("unsupported or corrupt audio: {e}"))?;
    // Containers whose header states the exact number of samples.
    let exact_length = matches!(format.format_info().short_name, "wave" | "flac");
    let track = format
        .default_track(TrackType::Audio)
        .context("no audio track")?;
    let track_id = track.id;
    let promised = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .context("no audio codec parameters")?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| anyhow::anyhow!("unsupported codec: {e}"))?;
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    // The header's length, where it has one (capped: a lying header must not allocate much).
    let mut mono: Vec<f32> = Vec::with_capacity(promised.map_or(0, |n| n.min(1 << 26) as usize));
    let mut scratch: Vec<f32> = Vec::new();
    let truncated = |promised: u64, read: usize| {
        anyhow::anyhow!(
            "truncated: the header promises {promised} samples per channel, {read} could be read"
        )
    };
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymError::ResetRequired) => break,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // The demuxers report the end of a stream of unknown length as the end of the
                // stream; an end before the promised one is this error.
                match promised {
                    Some(n) => return Err(truncated(n, mono.len())),
                    None if exact_length => break,
                    None => bail!("truncated: the stream ends after {} samples", mono.len()),
                }
            }
            Err(e) => bail!("reading packets after {} samples: {e}", mono.len()),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(e) => bail!("corrupt audio after {} samples: {e}", mono.len()),
        };
        let channels = buf.spec().channels().count().max(1);
        sample_rate = buf.spec().rate();
        scratch.clear();
        buf.copy_to_vec_interleaved(&mut scratch);
        if channels == 1 {
            mono.extend_from_slice(&scratch);
        } else {
            let scale = 1.0 / channels as f32;
            mono.extend(
                scratch
                    .chunks_exact(channels)
                    .map(|f| f.iter().sum::<f32>() * scale),
            );
        }
    }
    if exact_length && let Some(n) = promised.filter(|&n| (mono.len() as u64) < n) {
        return Err(truncated(n, mono.len()));
    }
    if mono.is_empty() {
        bail!("no audio samples");
    }
    if sample_rate == 0 {
        bail!("unknown sample rate");
    }
    Ok(Audio {
        samples: mono,
        sample_rate,
    })
}

/// Resamples mono audio with rubato's synchronous FFT resampler (delay trimmed, length
/// `ceil(n * to / from)` up to rounding by rubato).
pub fn resample(samples: &[f32], from: u32, to: u32) -> anyhow::Result<Vec<f32>> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| anyhow::anyhow!("resampler {from} Hz -> {to} Hz: {e}"))?;
    let input =
        InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| anyhow::anyhow!("resampling: {e}"))?;
    Ok(out.take_data())
}

/// Decodes, downmixes and resamples to `sample_rate`.
pub fn load(path: &Path, sample_rate: u32) -> anyhow::Result<Audio> {
    let audio = decode(path)?;
    let samples = if audio.sample_rate == sample_rate {
        audio.samples
    } else {
        resample(&audio.samples, audio.sample_rate, sample_rate)
            .with_context(|| format!("resampling `{}`", path.display()))?
    };
    Ok(Audio {
        samples,
        sample_rate,
    })
}

/// How a clip is cut into windows: crop or zero-pad to `max_samples`, split into windows of
/// `window_samples` (the last one zero-padded); windows made only of padding are masked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLayout {
    pub max_samples: usize,
    pub window_samples: usize,
}

impl WindowLayout {
    pub fn new(sample_rate: u32, max_seconds: f64, window_seconds: f64) -> Self {
        let max_samples = (max_seconds * sample_rate as f64).round().max(1.0) as usize;
        let window_samples =
            ((window_seconds * sample_rate as f64).round().max(1.0) as usize).min(max_samples);
        Self {
            max_samples,
            window_samples,
        }
    }

    pub fn n_windows(&self) -> usize {
        self.max_samples.div_ceil(self.window_samples)
    }

    /// The windows (each `window_samples` long) and the mask (1 = holds audio). A window
    /// inside the samples is borrowed; one that runs past their end is a zero-padded copy.
    pub fn split<'a>(&self, samples: &'a [f32]) -> (Vec<Cow<'a, [f32]>>, Vec<u8>) {
        let n = samples.len().min(self.max_samples);
        (0..self.n_windows())
            .map(|w| {
                let start = w * self.window_samples;
                (
                    window(samples, n, start, self.window_samples),
                    u8::from(start < n),
                )
            })
            .unzip()
    }
}

/// Samples `[start, start + len)` of the first `n` of `samples`, zero-padded past `n`: borrowed
/// where they lie inside.
pub(crate) fn window(samples: &[f32], n: usize, start: usize, len: usize) -> Cow<'_, [f32]> {
    if start + len <= n {
        return Cow::Borrowed(&samples[start..start + len]);
    }
    let mut padded = vec![0.0f32; len];
    if start < n {
        padded[..n - start].copy_from_slice(&samples[start..n]);
    }
    Cow::Owned(padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, sr: u32, channels: u16, frames: &[Vec<i16>]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: sr,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for f in frames {
            for &s in f {
                w.write_sample(s).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn decodes_stereo_wav_to_mono_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a b, c.wav");
        let frames: Vec<Vec<i16>> = (0..1000).map(|i| vec![(i * 10) as i16, 0]).collect();
        write_wav(&path, 22050, 2, &frames);
        let audio = decode(&path).unwrap();
        assert_eq!(audio.sample_rate, 22050);
        assert_eq!(audio.samples.len(), 1000);
        assert!((audio.samples[500] - 5000.0 / 32768.0 / 2.0).abs() < 1e-4);

        let empty = dir.path().join("empty.wav");
        std::fs::write(&empty, b"").unwrap();
        let err = format!("{:#}", decode(&empty).unwrap_err());
        assert!(err.contains("empty.wav") && err.contains("empty"), "{err}");
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"this is not audio at all, not even close").unwrap();
        assert!(format!("{:#}", decode(&junk).unwrap_err()).contains("junk.wav"));
        assert!(decode(&dir.path().join("missing.wav")).is_err());
    }

    #[test]
    fn a_wav_truncated_after_its_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.wav");
        let frames: Vec<Vec<i16>> = (0..8000).map(|i| vec![(i % 300) as i16, 7]).collect();
        write_wav(&path, 16000, 2, &frames);
        let full = std::fs::metadata(&path).unwrap().len();
        // Still a valid header and most of the data: only the end is missing.
        for keep in [full - 1, full - 4 * 3000, 44 + 4] {
            let bytes = std::fs::read(&path).unwrap();
            let cut = dir.path().join(format!("cut-{keep}.wav"));
            std::fs::write(&cut, &bytes[..keep as usize]).unwrap();
            let err = format!("{:#}", try_decode(&cut).unwrap_err());
            assert!(
                err.starts_with("truncated: the header promises 8000 samples per channel"),
                "{keep}: {err}"
            );
            let named = format!("{:#}", decode(&cut).unwrap_err());
            assert!(named.contains(&format!("cut-{keep}.wav")), "{named}");
        }
        // The whole file is fine.
        assert_eq!(try_decode(&path).unwrap().samples.len(), 8000);
    }

    #[test]
    fn resampling_keeps_a_tone_and_the_length() {
        let sr = 44100;
        let x: Vec<f32> = (0..sr)
            .map(|i| (std::f32::consts::TAU * 440.0 * i as f32 / sr as f32).sin())
            .collect();
        let y = resample(&x, sr as u32, 32000).unwrap();
        assert!((y.len() as i64 - 32000).abs() <= 2, "{}", y.len());
        // Compare with the ideal tone away from the edges: correlation and level.
        let ideal: Vec<f32> = (0..32000)
            .map(|i| (std::f32::consts::TAU * 440.0 * i as f32 / 32000.0).sin())
            .collect();
        let r = 2000..30000;
        let dot: f32 = r.clone().map(|i| y[i] * ideal[i]).sum();
        let ny: f32 = r.clone().map(|i| y[i] * y[i]).sum::<f32>().sqrt();
        let ni: f32 = r.clone().map(|i| ideal[i] * ideal[i]).sum::<f32>().sqrt();
        assert!(dot / (ny * ni) > 0.999, "correlation {}", dot / (ny * ni));
        assert!((ny / ni - 1.0).abs() < 0.01, "level {}", ny / ni);
    }

    #[test]
    fn windows_crop_pad_and_mask() {
        let layout = WindowLayout::new(10, 3.0, 1.0);
        assert_eq!(layout.n_windows(), 3);
        let (w, mask) = layout.split(&[1.0; 15]);
        assert_eq!(mask, vec![1, 1, 0]);
        assert_eq!(w[1][..5], [1.0; 5]);
        assert_eq!(w[1][5..], [0.0; 5]);
        assert!(matches!(w[0], Cow::Borrowed(_)) && matches!(w[1], Cow::Owned(_)));
        let (w, mask) = layout.split(&[2.0; 50]);
        assert_eq!(mask, vec![1, 1, 1]);
        assert_eq!(*w[2], [2.0; 10]);
        // Windows inside the samples are not copied.
        assert!(w.iter().all(|w| matches!(w, Cow::Borrowed(_))));
    }
}
