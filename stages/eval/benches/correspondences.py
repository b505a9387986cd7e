"""The correspondence table in numpy + pyarrow: the reference `bench correspondences` times.

The same computation and file as the `correspondences` kind (schema version 1): per block of
whole clips, one matrix product per teacher, the ensemble mean, and the two softmax columns
from normalisers of a first pass; dictionary-encoded strings, snappy, one row group per block,
no embedded Arrow schema. Inputs are the kind's own `teachers.safetensors` (the teachers'
normalised split rows) and a JSON of the split's ids, files and captions, so both sides start
from the same numbers. Prints one JSON line: seconds (the two passes and the write), peak RSS.
"""

import argparse
import json
import struct
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from peak import peak_mib


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def logsumexp(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teachers", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tau", type=float, default=0.05)
    ap.add_argument("--row-group-rows", type=int, default=1 << 20)
    args = ap.parse_args()

    t = load_safetensors(args.teachers)
    audio, text = t["audio"], t["text"]  # [M, n_a, d], [M, n_c, d]
    with open(args.index) as f:
        index = json.load(f)
    n_m, n_a, _ = audio.shape
    n_c = text.shape[1]
    caption_clip = np.asarray(index["caption_clip"], dtype=np.int64)
    clip_rows = np.asarray(index["clip_rows"], dtype=np.int64)
    caption_rows = np.asarray(index["caption_rows"], dtype=np.int64)
    dictionaries = {
        name: pa.array(index[key], type=pa.string())
        for name, key in [
            ("audio_id", "clip_ids"),
            ("audio_file", "clip_files"),
            ("caption_id", "caption_ids"),
            ("caption", "captions"),
        ]
    }
    tau = args.tau
    block = max(args.row_group_rows // n_c, 1)

    start = time.perf_counter()

    def scores(lo, hi):
        per_teacher = [audio[m, lo:hi] @ text[m].T for m in range(n_m)]
        est = per_teacher[0].copy()
        for other in per_teacher[1:]:
            est += other
        est *= np.float32(1.0 / n_m)
        return per_teacher, est

    # First pass: log-normalisers per clip (row) and per caption (column), in float64.
    lse_row = np.empty(n_a)
    col_max = np.full(n_c, -np.inf)
    col_sum = np.zeros(n_c)
    for lo in range(0, n_a, block):
        hi = min(lo + block, n_a)
        _, est = scores(lo, hi)
        x = est.astype(np.float64) / tau
        lse_row[lo:hi] = logsumexp(x, 1)
        m = np.maximum(col_max, x.max(axis=0))
        col_sum = col_sum * np.exp(col_max - m) + np.exp(x - m).sum(axis=0)
        col_max = m
    lse_col = col_max + np.log(col_sum)

    fields = [
        pa.field("audio_index", pa.int64(), False),
        pa.field("audio_id", pa.dictionary(pa.int32(), pa.string()), False),
        pa.field("audio_file", pa.dictionary(pa.int32(), pa.string()), False),
        pa.field("caption_index", pa.int64(), False),
        pa.field("caption_id", pa.dictionary(pa.int32(), pa.string()), False),
        pa.field("caption", pa.dictionary(pa.int32(), pa.string()), False),
        pa.field("is_match", pa.bool_(), False),
    ]
    fields += [pa.field(f"teacher_{m}", pa.float32(), False) for m in range(n_m)]
    fields += [
        pa.field(name, pa.float32(), False)
        for name in ["estimate", "p_caption_given_audio", "p_audio_given_caption"]
    ]
    schema = pa.schema(fields)
    dictionary_columns = [
        "audio_index",
        "audio_id",
        "audio_file",
        "caption_index",
        "caption_id",
        "caption",
    ]
    writer = pq.ParquetWriter(
        args.out,
        schema,
        compression="snappy",
        use_dictionary=dictionary_columns,
        dictionary_pagesize_limit=8 << 20,
        store_schema=False,
    )
    caption_keys_row = np.arange(n_c, dtype=np.int32)
    for lo in range(0, n_a, block):
        hi = min(lo + block, n_a)
        b = hi - lo
        per_teacher, est = scores(lo, hi)
        x = est.astype(np.float64) / tau
        pca = np.exp(x - lse_row[lo:hi, None]).astype(np.float32)
        pac = np.exp(x - lse_col[None, :]).astype(np.float32)
        clips = np.arange(lo, hi)
        audio_keys = np.repeat(clips.astype(np.int32), n_c)
        caption_keys = np.tile(caption_keys_row, b)
        columns = [
            pa.array(np.repeat(clip_rows[lo:hi], n_c)),
            pa.DictionaryArray.from_arrays(audio_keys, dictionaries["audio_id"]),
            pa.DictionaryArray.from_arrays(audio_keys, dictionaries["audio_file"]),
            pa.array(np.tile(caption_rows, b)),
            pa.DictionaryArray.from_arrays(caption_keys, dictionaries["caption_id"]),
            pa.DictionaryArray.from_arrays(caption_keys, dictionaries["caption"]),
            pa.array((caption_clip[None, :] == clips[:, None]).ravel()),
        ]
        columns += [pa.array(s.ravel()) for s in per_teacher]
        columns += [pa.array(est.ravel()), pa.array(pca.ravel()), pa.array(pac.ravel())]
        writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=b * n_c)
    writer.close()
    seconds = time.perf_counter() - start
    peak = peak_mib()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mib": peak,
                "numpy": np.__version__,
                "pyarrow": pa.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
