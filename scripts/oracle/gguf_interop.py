#!/usr/bin/env python3
"""Interop oracle for kiln-gguf: llama.cpp's own Python GGUF package (gguf==0.19.0).

  gguf_interop.py write OUT.gguf ALIGNMENT   write a file exercising every value type with gguf's
                                             GGUFWriter; print a JSON description of what was written
  gguf_interop.py read FILE.gguf             print what gguf's GGUFReader sees in FILE as JSON

JSON: {"version", "alignment", "kv": [{"key","type","value"} | arrays: {"key","type":"array","elem","value"}],
       "tensors": [{"name","type","dims","offset","n_bytes","sha256"}]}
Tensor "offset" is relative to the data section.
"""
import hashlib
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFValueType as V, GGUFWriter

NAMES = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32", V.INT32: "i32",
         V.FLOAT32: "f32", V.BOOL: "bool", V.STRING: "string", V.ARRAY: "array", V.UINT64: "u64",
         V.INT64: "i64", V.FLOAT64: "f64"}


def f32(x):
    return float(np.float32(x))


def write(path, alignment):
    w = GGUFWriter(path, "llama")
    if alignment != 32:
        w.add_custom_alignment(alignment)
    kv = [("general.architecture", "string", "llama")]
    if alignment != 32:
        kv.append(("general.alignment", "u32", alignment))
    scalars = [
        ("t.u8", V.UINT8, 255), ("t.i8", V.INT8, -128), ("t.u16", V.UINT16, 65535), ("t.i16", V.INT16, -32768),
        ("t.u32", V.UINT32, 4294967295), ("t.i32", V.INT32, -2147483648), ("t.f32", V.FLOAT32, f32(3.14159)),
        ("t.bool", V.BOOL, True), ("t.string", V.STRING, "héllo <wörld> & \u0000 \U0001F600"),
        ("t.u64", V.UINT64, 18446744073709551615), ("t.i64", V.INT64, -9223372036854775808),
        ("t.f64", V.FLOAT64, -2.718281828459045), ("t.bool_false", V.BOOL, False),
    ]
    for key, ty, val in scalars:
        w.add_key_value(key, val, ty)
        kv.append((key, NAMES[ty], val))
    arrays = [
        ("t.arr_u8", V.UINT8, [0, 1, 255]), ("t.arr_i32", V.INT32, [-1, 0, 7]),
        ("t.arr_f32", V.FLOAT32, [f32(0.5), f32(-1e-20), f32(1e30)]), ("t.arr_bool", V.BOOL, [True, False]),
        ("t.arr_str", V.STRING, ["a", "", "ĠThe", "\n"]), ("t.arr_u64", V.UINT64, [1, 2**63]),
        ("t.arr_f64", V.FLOAT64, [1.5, -0.0]), ("t.arr_i16", V.INT16, [-5]),
    ]
    for key, sub, val in arrays:
        w.add_key_value(key, val, V.ARRAY, sub_type=sub)
        kv.append((key, "array", {"elem": NAMES[sub], "value": val}))
    nested = [[1, 2, 3], [4], [-5, 6]]  # inner arrays: GGUFWriter infers INT32 elements
    w.add_key_value("t.nested", nested, V.ARRAY, sub_type=V.ARRAY)
    kv.append(("t.nested", "array", {"elem": "array", "value": [{"elem": "i32", "value": v} for v in nested]}))

    rng = np.random.default_rng(1234)
    tensors = []

    def add(name, arr, raw_dtype=None, raw_shape=None):
        w.add_tensor(name, arr, raw_shape=raw_shape, raw_dtype=raw_dtype)
        tensors.append((name, arr))

    add("token_embd.weight", rng.standard_normal((3, 64)).astype(np.float32))
    add("blk.0.attn_q.weight", rng.standard_normal((5, 32)).astype(np.float16))
    add("blk.0.q8", rng.integers(0, 256, (2, 34 * 2), dtype=np.uint8), raw_dtype=Q.Q8_0)
    add("blk.0.q4k", rng.integers(0, 256, (1, 144), dtype=np.uint8), raw_dtype=Q.Q4_K)
    add("blk.0.i32", rng.integers(-9, 9, (7,), dtype=np.int32))
    add("odd.bias", rng.standard_normal((13,)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return kv


def dump_value(field):
    main = field.types[0]
    if main != V.ARRAY:
        return NAMES[main], field.contents()
    if len(field.types) > 1 and field.types[1] == V.ARRAY:
        return "array", {"elem": "array", "value": None}  # GGUFReader does not decode nested arrays
    sub = field.types[-1] if len(field.types) > 1 else V.UINT8
    return "array", {"elem": NAMES[sub], "value": field.contents()}


def read(path):
    r = GGUFReader(path)
    kv = []
    version = None
    for field in r.fields.values():
        if field.name.startswith("GGUF."):
            if field.name == "GGUF.version":
                version = int(field.parts[-1][0])
            continue
        ty, val = dump_value(field)
        kv.append({"key": field.name, "type": ty, "value": val})
    tensors = []
    for t in r.tensors:
        tensors.append({
            "name": t.name, "type": int(t.tensor_type), "dims": [int(d) for d in t.shape],
            "offset": int(t.data_offset) - int(r.data_offset), "n_bytes": int(t.n_bytes),
            "sha256": hashlib.sha256(t.data.tobytes()).hexdigest(),
        })
    return {"version": version, "alignment": int(r.alignment), "kv": kv, "tensors": tensors}


def main():
    cmd = sys.argv[1]
    if cmd == "write":
        kv = write(sys.argv[2], int(sys.argv[3]))
        print(json.dumps({"kv": [{"key": k, "type": t, "value": v} for k, t, v in kv]}))
    elif cmd == "read":
        print(json.dumps(read(sys.argv[2])))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
