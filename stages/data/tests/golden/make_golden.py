"""Golden values of the PaSST log-mel front end (`docs/method.md`), computed independently with numpy.

Run once (numpy only):  python3 make_golden.py > passt_logmel.json
The Rust test `tests/golden_passt.rs` recomputes the same with `pipeline_data::mel` and compares.

The reference follows PaSST's AugmentMelSTFT in evaluation mode: conv1d pre-emphasis with kernel
[-0.97, 1] (no padding), torch.stft(n_fft=1024, hop=320, win_length=800,
window=hann_window(800, periodic=False), center=True, pad_mode="reflect"), power, Kaldi mel
banks (torchaudio.compliance.kaldi.get_mel_banks: 128 bins, 0-15 kHz, padded with a zero column
for the Nyquist bin), log(x + 1e-5), (x + 4.5) / 5.
"""
import json
import numpy as np

SR = 32000
N_FFT = 1024
WIN = 800
HOP = 320
N_MELS = 128
F_MIN, F_MAX = 0.0, 15000.0
N = 3200  # 0.1 s


def signal(n):
    """Deterministic test signal on the int16 grid: LCG noise plus two tones and a chirp."""
    state = 12345
    out = np.zeros(n, dtype=np.float64)
    for i in range(n):
        state = (1103515245 * state + 12345) % (1 << 31)
        noise = ((state >> 8) % 8192) - 4096  # [-4096, 4096)
        t = i / SR
        tone = 8000 * np.sin(2 * np.pi * 440 * t) + 4000 * np.sin(2 * np.pi * 5123.5 * t + 0.5)
        chirp = 2000 * np.sin(2 * np.pi * (1000 * t + 40000 * t * t))
        out[i] = np.round(tone + chirp) + noise
    return out / 32768.0


def mel_scale(f):
    return 1127.0 * np.log(1.0 + f / 700.0)


def kaldi_mel_banks(num_bins, window_length_padded, sample_freq, low_freq, high_freq):
    num_fft_bins = window_length_padded // 2
    fft_bin_width = sample_freq / window_length_padded
    mel_low = mel_scale(low_freq)
    mel_high = mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = np.arange(num_bins)[:, None]
    left = mel_low + b * delta
    center = mel_low + (b + 1.0) * delta
    right = mel_low + (b + 2.0) * delta
    mel = mel_scale(fft_bin_width * np.arange(num_fft_bins))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1)))  # PaSST: zero weight for the Nyquist bin


def passt_logmel(x):
    y = x[1:] - 0.97 * x[:-1]
    pad = N_FFT // 2
    y = np.pad(y, pad, mode="reflect")
    window = np.zeros(N_FFT)
    left = (N_FFT - WIN) // 2
    window[left:left + WIN] = np.hanning(WIN)  # symmetric Hann
    n_frames = 1 + (len(y) - N_FFT) // HOP
    frames = np.stack([y[f * HOP:f * HOP + N_FFT] * window for f in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # [frames, 513]
    mel = kaldi_mel_banks(N_MELS, N_FFT, SR, F_MIN, F_MAX) @ power.T  # [mels, frames]
    return (np.log(mel + 1e-5) + 4.5) / 5.0


if __name__ == "__main__":
    x = signal(N)
    out = passt_logmel(x)
    print(json.dumps({
        "sample_rate": SR, "n_samples": N, "n_mels": out.shape[0], "n_frames": out.shape[1],
        "signal_checksum": float(np.sum(np.abs(x))),
        "logmel": [float(f"{v:.9g}") for v in out.reshape(-1)],
    }))
