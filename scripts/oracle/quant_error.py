#!/usr/bin/env python3
"""Quantization error, computed independently of kiln: numpy over llama.cpp's own decoding.

  quant_error.py JOB.json

JOB.json: {"source": GGUF path, "quantized": GGUF path, "output": JSON path,
           "imatrix": {"index": JSON path, "data": f32 path} or null}
For every tensor of the quantized file, both files' tensors are decoded to f32 by ggml's type
traits (libggml-base.so from llama-cpp-python 0.3.36, F32 as stored) and compared in float64:
  rmse = sqrt(mean(e^2)), max_abs = max |e|, snr_db = 10 log10(sum x^2 / sum e^2) (null if exact),
  weighted_rmse = sqrt(sum w e^2 / sum w), w the tensor's imatrix column weights repeated per row.
Writes {name: {"rmse", "max_abs", "snr_db", "weighted_rmse"}}.
"""
import ctypes
import json
import math
import os
import sys

import numpy as np
from gguf import GGUFReader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ggml_oracle import ROW_FN, ggml  # noqa: E402  (loads libggml-base.so)


def decode(tensor):
    raw = tensor.data.tobytes()
    ty = int(tensor.tensor_type)
    n = int(tensor.n_elements)
    if ty == 0:
        return np.frombuffer(raw, dtype=np.float32).astype(np.float64)
    traits = ggml.ggml_get_type_traits(ty).contents
    dst = ctypes.create_string_buffer(4 * n)
    ROW_FN(traits.to_float)(ctypes.create_string_buffer(raw, len(raw)), dst, n)
    return np.frombuffer(dst.raw, dtype=np.float32).astype(np.float64)


def main():
    job = json.load(open(sys.argv[1]))
    source = {t.name: t for t in GGUFReader(job["source"]).tensors}
    weights = {}
    if job.get("imatrix"):
        index = json.load(open(job["imatrix"]["index"]))
        data = np.fromfile(job["imatrix"]["data"], dtype=np.float32).astype(np.float64)
        weights = {name: data[off:off + n] for name, (off, n) in index.items()}
    out = {}
    for t in GGUFReader(job["quantized"]).tensors:
        x = decode(source[t.name])
        y = decode(t)
        e = y - x
        sq = float(np.sum(e * e))
        entry = {
            "rmse": math.sqrt(sq / len(x)),
            "max_abs": float(np.max(np.abs(e))) if len(e) else 0.0,
            "snr_db": None if sq == 0 else 10 * math.log10(float(np.sum(x * x)) / sq),
            "weighted_rmse": None,
        }
        w = weights.get(t.name)
        if w is not None:
            # ne[0] * ne[2] weights: one set per expert, each repeated over its ne[1] rows.
            ne = [int(d) for d in t.shape] + [1] * (4 - len(t.shape))
            per_expert = np.repeat(w.reshape(ne[2], 1, ne[0]), ne[1], axis=1).reshape(-1)
            full = np.tile(per_expert, ne[3])
            entry["weighted_rmse"] = math.sqrt(float(np.sum(full * e * e)) / float(np.sum(full)))
        out[t.name] = entry
    json.dump(out, open(job["output"], "w"))


if __name__ == "__main__":
    main()
