#!/usr/bin/env python3
"""Generates kiln-quant's committed golden vectors from the real ggml (libggml-base.so of
llama-cpp-python 0.3.36), so the kernels are checked even where the oracle is not installed.

  gen_quant_golden.py OUT_DIR      (crates/quant/tests/golden)

For each dataset DIR/<dataset>/: input.f32 (ROWS x 512 little-endian f32), imatrix.f32 (512),
and per ggml type name T: T.q (ggml_quantize_chunk without imatrix), T.imatrix.q (with it) and,
where ggml has a to_float, T.deq.f32 (dequantization of T.q).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import ggml_oracle as G  # noqa: E402

N_PER_ROW = 512
ROWS = 2
TYPES = {0: "f32", 1: "f16", 30: "bf16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 9: "q8_1",
         10: "q2_K", 11: "q3_K", 12: "q4_K", 13: "q5_K", 14: "q6_K", 15: "q8_K", 20: "iq4_nl", 23: "iq4_xs",
         34: "tq1_0", 35: "tq2_0", 39: "mxfp4"}


def datasets():
    rng = np.random.default_rng(20261125)
    n = ROWS * N_PER_ROW
    gauss = (rng.standard_normal(n) * 0.02).astype(np.float32)
    edge = rng.standard_normal(n).astype(np.float32)
    blocks = edge.reshape(-1, 32)
    blocks[0] = 0.0
    blocks[1] = 0.75
    blocks[2] *= np.float32(1e-30)
    blocks[3] = np.frombuffer(np.arange(1, 33, dtype=np.uint32).tobytes(), dtype=np.float32)  # subnormals
    blocks[4] *= np.float32(1e30)
    blocks[5] = 0.0
    blocks[5][5] = 3.0
    blocks[6] = (np.arange(32, dtype=np.float32) - 16) * 0.5  # exact ties
    blocks[7][3] = np.nan
    blocks[8][31] = np.nan
    blocks[9][0] = np.inf
    blocks[10][7] = -np.inf
    imatrix = (rng.random(N_PER_ROW) * 4 + 0.01).astype(np.float32)
    return {"gauss": (gauss, imatrix), "edge": (edge, imatrix)}


def main():
    out = sys.argv[1]
    for name, (data, imatrix) in datasets().items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        data.tofile(os.path.join(d, "input.f32"))
        imatrix.tofile(os.path.join(d, "imatrix.f32"))
        for ty, tname in TYPES.items():
            for with_im in (False, True):
                q = os.path.join(d, f"{tname}.imatrix.q" if with_im else f"{tname}.q")
                G.quantize({"op": "quantize", "type": ty, "n_per_row": N_PER_ROW, "input": os.path.join(d, "input.f32"),
                            "imatrix": os.path.join(d, "imatrix.f32") if with_im else None, "output": q})
            if ty not in (9, 15):  # ggml-base has no to_float for Q8_1 / Q8_K
                G.dequantize({"type": ty, "n": ROWS * N_PER_ROW, "input": os.path.join(d, f"{tname}.q"),
                              "output": os.path.join(d, f"{tname}.deq.f32")})


if __name__ == "__main__":
    main()
