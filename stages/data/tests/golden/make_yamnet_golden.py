"""Golden values of the `yamnet` front end, computed independently with numpy.

Run:  python3 make_yamnet_golden.py > yamnet_logmel.json
(If numpy is missing the script creates a venv in <workspace>/target/golden-venv, installs it
there and runs itself again.) The Rust test `stages/data/tests/yamnet_frontend.rs` recomputes
the patches with `pipeline_data::mel` and compares.

The reference follows YAMNet's features.py (tensorflow/models research/audioset/yamnet) with
params.py's defaults: pad_waveform (zero-pad to one patch plus an integral number of patch
hops), tf.signal.stft(frame_length=400, frame_step=160, fft_length=512, periodic Hann window,
frames not centred, each frame zero-padded at the end), magnitude, tf.signal.
linear_to_mel_weight_matrix(64 bands, 125-7500 Hz; HTK mel; the DC bin gets weight 0),
log(mel + 0.001), tf.signal.frame into patches of 96 frames every 48 frames. In float64 (TF
computes in float32).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

SR = 16000
WIN = 400
HOP = 160
N_FFT = 512
N_MELS = 64
F_MIN, F_MAX = 125.0, 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96
PATCH_HOP = 48
N = 19200  # 1.2 s: two patches, the second zero-padded


def ensure(*packages):
    """Re-runs this script in a venv with `packages` when one of them cannot be imported."""
    try:
        for p in packages:
            __import__(p)
        return
    except ImportError:
        if os.environ.get("GOLDEN_VENV_ACTIVE"):
            raise
    root = Path(__file__).resolve().parents[4]
    venv = Path(os.environ.get("GOLDEN_VENV", root / "target" / "golden-venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
    subprocess.check_call([str(python), "-m", "pip", "install", "-q", *packages],
                          stdout=sys.stderr)
    env = dict(os.environ, GOLDEN_VENV_ACTIVE="1")
    sys.exit(subprocess.call([str(python), *sys.argv], env=env))


def signal(n, sr=SR):
    """Deterministic test signal on the int16 grid: LCG noise plus two tones and a chirp
    (the same generator as make_golden.py, at `sr`)."""
    import numpy as np
    state = 12345
    out = np.zeros(n, dtype=np.float64)
    for i in range(n):
        state = (1103515245 * state + 12345) % (1 << 31)
        noise = ((state >> 8) % 8192) - 4096  # [-4096, 4096)
        t = i / sr
        tone = 8000 * np.sin(2 * np.pi * 440 * t) + 4000 * np.sin(2 * np.pi * 5123.5 * t + 0.5)
        chirp = 2000 * np.sin(2 * np.pi * (1000 * t + 40000 * t * t))
        out[i] = np.round(tone + chirp) + noise
    return out / 32768.0


def hertz_to_mel(f):
    import numpy as np
    return 1127.0 * np.log(1.0 + f / 700.0)


def linear_to_mel_weight_matrix(num_mel_bins, num_spectrogram_bins, sample_rate, lower, upper):
    """tf.signal.linear_to_mel_weight_matrix: [num_spectrogram_bins, num_mel_bins]."""
    import numpy as np
    nyquist = sample_rate / 2.0
    freqs = np.linspace(0.0, nyquist, num_spectrogram_bins)[1:]  # the DC bin is dropped
    bins_mel = hertz_to_mel(freqs)[:, None]
    edges = np.linspace(hertz_to_mel(lower), hertz_to_mel(upper), num_mel_bins + 2)
    lower_mel, center_mel, upper_mel = edges[:-2], edges[1:-1], edges[2:]
    lower_slopes = (bins_mel - lower_mel) / (center_mel - lower_mel)
    upper_slopes = (upper_mel - bins_mel) / (upper_mel - center_mel)
    weights = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    return np.pad(weights, [[1, 0], [0, 0]])


def pad_waveform(x):
    """features.pad_waveform: at least one patch, then whole patch hops."""
    import numpy as np
    min_samples = int((0.96 + 0.025 - 0.010) * SR)  # 15600
    hop_samples = int(0.48 * SR)  # 7680
    n = max(len(x), min_samples)
    after_first = n - min_samples
    hops = int(np.ceil(after_first / hop_samples))
    padding = max(0, min_samples - len(x)) + hops * hop_samples - after_first
    return np.pad(x, [0, padding])


def yamnet_patches(x):
    """features.waveform_to_log_mel_spectrogram_patches: [patches, 96 frames, 64 bands]."""
    import numpy as np
    x = pad_waveform(np.asarray(x, dtype=np.float64))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)  # periodic Hann
    n_frames = 1 + (len(x) - WIN) // HOP
    frames = np.stack([x[f * HOP:f * HOP + WIN] * window for f in range(n_frames)])
    magnitude = np.abs(np.fft.rfft(frames, n=N_FFT, axis=-1))  # [frames, 257]
    mel = magnitude @ linear_to_mel_weight_matrix(N_MELS, N_FFT // 2 + 1, SR, F_MIN, F_MAX)
    log_mel = np.log(mel + LOG_OFFSET)  # [frames, 64]
    n_patches = 1 + (n_frames - PATCH_FRAMES) // PATCH_HOP
    return np.stack([log_mel[p * PATCH_HOP:p * PATCH_HOP + PATCH_FRAMES]
                     for p in range(n_patches)])


if __name__ == "__main__":
    ensure("numpy")
    import numpy as np
    x = signal(N)
    patches = yamnet_patches(x)
    print(json.dumps({
        "sample_rate": SR, "n_samples": N, "n_patches": patches.shape[0],
        "patch_frames": patches.shape[1], "n_mels": patches.shape[2],
        "signal_checksum": float(np.sum(np.abs(x))),
        "layout": "[patch, frame, band]",
        "logmel": [float(f"{v:.7g}") for v in patches.reshape(-1)],
    }))
