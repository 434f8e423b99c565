#!/usr/bin/env python3
"""The ggml oracle: runs the real ggml (libggml-base.so from llama-cpp-python 0.3.36) through ctypes.

  ggml_oracle.py batch JOBS.json

JOBS.json is a list of jobs; all paths are raw little-endian files:
  {"op": "quantize",   "type": <ggml type id>, "n_per_row": N, "input": f32 path, "imatrix": f32 path or null,
   "output": path}          -> ggml_quantize_chunk (Q8_1 / Q8_K: quantize_row_*_ref, which the chunk API lacks)
  {"op": "dequantize", "type": <ggml type id>, "n": elements, "input": path, "output": f32 path}
                            -> the type traits' to_float
  {"op": "time_quantize", ...quantize fields..., "repeat": R} -> also writes {"seconds": best of R} to output + ".json"
One Python start serves many jobs (starting Python and loading ggml costs far more than one job).
"""
import ctypes
import glob
import json
import os
import sys
import time

import llama_cpp

LIB_DIR = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
ggml = ctypes.CDLL(glob.glob(os.path.join(LIB_DIR, "libggml-base.so"))[0])


class TypeTraits(ctypes.Structure):
    # struct ggml_type_traits in the vendored include/ggml.h
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


ggml.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
ggml.ggml_get_type_traits.argtypes = [ctypes.c_int]
ggml.ggml_quantize_chunk.restype = ctypes.c_size_t
ggml.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
ggml.ggml_row_size.restype = ctypes.c_size_t
ggml.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
ROW_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
ROW_REF = {9: ggml.quantize_row_q8_1_ref, 15: ggml.quantize_row_q8_K_ref}
for fn in ROW_REF.values():
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def quantize(job):
    ty, n = job["type"], job["n_per_row"]
    src = read(job["input"])
    nrows = len(src) // 4 // n
    src_buf = ctypes.create_string_buffer(src, len(src))
    size = ggml.ggml_row_size(ty, n) * nrows
    dst = ctypes.create_string_buffer(size)  # zero-filled: bytes ggml leaves unwritten are 0
    im = None
    if job.get("imatrix"):
        im_bytes = read(job["imatrix"])
        im = ctypes.create_string_buffer(im_bytes, len(im_bytes))

    def run():
        if ty in ROW_REF:
            ROW_REF[ty](src_buf, dst, nrows * n)
        else:
            written = ggml.ggml_quantize_chunk(ty, src_buf, dst, 0, nrows, n, im)
            assert written == size, (written, size)

    seconds = None
    for _ in range(job.get("repeat", 1)):
        t0 = time.perf_counter()
        run()
        t = time.perf_counter() - t0
        seconds = t if seconds is None else min(seconds, t)
    with open(job["output"], "wb") as f:
        f.write(dst.raw)
    if job["op"] == "time_quantize":
        with open(job["output"] + ".json", "w") as f:
            json.dump({"seconds": seconds}, f)


def dequantize(job):
    traits = ggml.ggml_get_type_traits(job["type"]).contents
    src = read(job["input"])
    if job["type"] == 0 and not traits.to_float:  # F32 is its own float representation
        with open(job["output"], "wb") as f:
            f.write(src)
        return
    if not traits.to_float:
        raise SystemExit(f"type {job['type']} has no to_float")
    n = job["n"]
    dst = ctypes.create_string_buffer(4 * n)
    ROW_FN(traits.to_float)(ctypes.create_string_buffer(src, len(src)), dst, n)
    with open(job["output"], "wb") as f:
        f.write(dst.raw)


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "batch":
        raise SystemExit(__doc__)
    jobs = json.loads(read(sys.argv[2]))
    for job in jobs:
        if job["op"] in ("quantize", "time_quantize"):
            quantize(job)
        elif job["op"] == "dequantize":
            dequantize(job)
        else:
            raise SystemExit(f"unknown op {job['op']}")


if __name__ == "__main__":
    main()
