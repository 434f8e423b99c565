#!/usr/bin/env python3
"""Golden vectors for kiln's Llama converter, from llama.cpp's own converter.

  gen_convert_golden.py TORCH_PYTHON CONVERT_HF_TO_GGUF.py ORACLE_PYTHON OUT.json [CASE...]

With CASEs, only those cases are (re)generated and merged into the existing OUT.json.

TORCH_PYTHON: a Python with torch, transformers 4.57.6 and llama.cpp's gguf-py (the converter's own
requirements; too large for CI, so this runs by hand). CONVERT_HF_TO_GGUF.py: from the
llama-cpp-python 0.3.36 sdist (vendor/llama.cpp/). ORACLE_PYTHON: the test venv's Python
(target/oracle-venv), which makes the synthetic folders and runs llama.cpp for logits.

For each case (f32 weights → llama.cpp --outtype f16, bf16 → --outtype bf16, and f32 with a
SentencePiece tokenizer.model instead of tokenizer.json, a Qwen2 from bf16, and Gemma, Gemma 2 and
Gemma 3 text models from f32, a Phi-3 from bf16, and a Gemma3ForConditionalGeneration from f32 whose
text tensors come from llama.cpp and vision tensors from numpy, see vision_golden, and an OLMo 3, a
Ministral 3 and a Command-R from bf16, and a GPT-OSS from bf16 with MXFP4 experts, and a Qwen 3.5
text model from f32 (converted with --no-mtp: the folder has no multi-token-prediction layers,
which llama.cpp otherwise requires) and with one (qwen35mtp, converted as it is), and a Qwen 3.5
mixture of experts (qwen35moe, from f32, --no-mtp; its shared-expert gate [1, hidden], which
llama.cpp stores F32 and Ollama F16 as it stores every 2-D weight, also recorded as Ollama stores
it: "ollama", llama.cpp's values rounded to F16); f32 because llama.cpp computes -exp(A_log) and the norm
offset in the source dtype, Ollama in float32 and float64): llama.cpp adds Gemma's norm offset in the source dtype, Ollama in
float32, so only f32 sources can agree bit for bit) it records what
llama.cpp's converter writes for the synthetic Llama of hf_llama.py: every tensor's type, shape
and SHA-256 (rope_freqs also as values: Ollama computes them partly in float32, llama.cpp in
float64), the SHA-256 of the tokens, scores, token types and merges (one per line; null when absent), and llama.cpp's logits
of that file for a fixed token sequence. tests/kiln/convert.rs compares kiln's conversion against all of it.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENS = [300, 5, 77, 261, 263, 40, 290, 120, 265, 299]


def main():
    torch_python, script, oracle_python, out = sys.argv[1:5]
    only = set(sys.argv[5:])
    golden = {"tokens_for_logits": TOKENS}
    if only:
        with open(out) as f:
            golden = json.load(f)
    with tempfile.TemporaryDirectory() as tmp:
        for case, dtype, outtype, extra in (("f32", "f32", "f16", []), ("bf16", "bf16", "bf16", []),
                                             ("spm", "f32", "f16", ["spm"]), ("qwen2", "bf16", "bf16", ["qwen2"]),
                                             ("gemma", "f32", "f16", ["gemma"]), ("gemma2", "f32", "f16", ["gemma2"]),
                                             ("gemma3", "f32", "f16", ["gemma3"]), ("phi3", "bf16", "bf16", ["phi3"]),
                                             ("gemma3v", "f32", "f16", ["gemma3v"]), ("olmo3", "bf16", "bf16", ["olmo3"]),
                                             ("ministral3", "bf16", "bf16", ["ministral3"]),
                                             ("cohere", "bf16", "bf16", ["cohere"]),
                                             ("gptoss", "bf16", "bf16", ["gptoss"]),
                                             ("qwen35", "f32", "f16", ["qwen35"]),
                                             ("qwen35mtp", "f32", "f16", ["qwen35mtp"]),
                                             ("qwen35moe", "f32", "f16", ["qwen35moe"])):
            if only and case not in only:
                continue
            folder = os.path.join(tmp, case)
            gguf_path = os.path.join(tmp, f"llama-{case}.gguf")
            subprocess.run([oracle_python, os.path.join(HERE, "hf_llama.py"), "make", folder, dtype] + extra,
                           check=True)
            reference_args = ["--no-mtp"] if case in ("qwen35", "qwen35moe") else []
            subprocess.run([torch_python, os.path.join(HERE, "hf_llama.py"), "reference", folder, gguf_path,
                            outtype, script] + reference_args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if case == "gemma3v":
                # llama.cpp converts only the text model here (the tower goes to a separate
                # mmproj file under its own names), and cannot load a file holding both, so the
                # text tensors come from it and the vision tensors from vision_golden().
                golden[case] = describe(oracle_python, gguf_path)
                golden[case]["logits"] = None
                golden[case]["vision"] = vision_golden()
                continue
            logits_path = os.path.join(tmp, f"logits-{case}.f32")
            jobs = os.path.join(tmp, "jobs.json")
            json.dump([{"op": "logits", "model": gguf_path, "output": logits_path, "tokens": TOKENS}], open(jobs, "w"))
            subprocess.run([oracle_python, os.path.join(HERE, "llama_oracle.py"), "batch", jobs], check=True)
            golden[case] = describe(oracle_python, gguf_path)
            golden[case]["logits"] = [round(float(x), 6) for x in np.fromfile(logits_path, dtype=np.float32)]
    with open(out, "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)
        f.write("\n")


def vision_golden():
    """The vision tower and projector as Ollama's Gemma 3 converter stores them, computed here
    with numpy from the same deterministic values: its tensor names (the Go replacer's output for
    the official checkpoint names), F32 for 1-D tensors and F16 for the rest, and one added to
    the projector's soft-embedding norm (a Gemma norm; the SigLIP norms are not)."""
    sys.path.insert(0, HERE)
    import hf_llama
    names = {"embeddings.patch_embedding": "patch_embedding", "embeddings.position_embedding": "position_embedding",
             "post_layernorm": "post_layernorm", "encoder.layers.0.layer_norm1": "blk.0.layer_norm1",
             "encoder.layers.0.layer_norm2": "blk.0.layer_norm2", "encoder.layers.0.self_attn.q_proj": "blk.0.attn_q",
             "encoder.layers.0.self_attn.k_proj": "blk.0.attn_k", "encoder.layers.0.self_attn.v_proj": "blk.0.attn_v",
             "encoder.layers.0.self_attn.out_proj": "blk.0.attn_output", "encoder.layers.0.mlp.fc1": "blk.0.mlp.fc1",
             "encoder.layers.0.mlp.fc2": "blk.0.mlp.fc2"}
    out = {}
    for name, a in hf_llama.vision_tensors().items():
        a = a.astype(np.float32)
        if name == "multi_modal_projector.mm_input_projection_weight":
            gguf_name = "mm.mm_input_projection.weight"
        elif name == "multi_modal_projector.mm_soft_emb_norm.weight":
            gguf_name, a = "mm.mm_soft_emb_norm.weight", a + np.float32(1)
        else:
            stem, _, suffix = name[len("vision_tower.vision_model."):].rpartition(".")
            gguf_name = f"v.{names[stem]}.{suffix}"
        data = a if a.ndim == 1 else a.astype(np.float16)
        out[gguf_name] = {"type": "F32" if a.ndim == 1 else "F16", "shape": list(reversed(a.shape)),
                          "sha256": hashlib.sha256(data.tobytes()).hexdigest()}
    return out


def describe(oracle_python, path):
    code = r'''
import gguf, hashlib, json, sys
r = gguf.GGUFReader(sys.argv[1])
out = {"tensors": {}}
for t in r.tensors:
    entry = {"type": t.tensor_type.name, "shape": [int(x) for x in t.shape],
             "sha256": hashlib.sha256(bytes(t.data.tobytes())).hexdigest()}
    if t.name == "rope_freqs.weight":
        entry["values"] = [float(x) for x in t.data]
    if t.name.endswith(".ffn_gate_inp_shexp.weight") and t.tensor_type.name == "F32":
        entry["ollama"] = {"type": "F16", "shape": entry["shape"], "sha256": hashlib.sha256(t.data.astype("float16").tobytes()).hexdigest()}
    out["tensors"][t.name] = entry
for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
    f = r.fields.get(key)
    if f is None:
        out[key] = None
        continue
    vals = f.contents()
    if key == "tokenizer.ggml.scores":
        vals = [repr(float(v)) for v in vals]
    out[key] = hashlib.sha256("\n".join(str(v) for v in vals).encode()).hexdigest()
print(json.dumps(out))
'''
    return json.loads(subprocess.run([oracle_python, "-c", code, path], check=True, capture_output=True, text=True).stdout)


if __name__ == "__main__":
    main()
