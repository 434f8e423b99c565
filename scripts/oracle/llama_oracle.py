#!/usr/bin/env python3
"""The llama.cpp oracle for whole-model quantization (libllama.so from llama-cpp-python 0.3.36).

  llama_oracle.py batch JOBS.json

Jobs:
  {"op": "make_model", "output": path, "kind": "llama"|"tied"|"moe", "dtype": "f32"|"f16"|"bf16",
   "n_embd": E, "n_ff": F, "n_layer": L, "n_head": H, "n_head_kv": K, "n_vocab": V, "seed": S,
   "poison": bool (optional: one +Inf weight in blk.0.attn_q.weight),
   "shexp_gate": bool (optional, moe: a shared-expert gate per layer stored 2-D as [n_embd, 1], as
                 Qwen MoE checkpoints have it; ggml counts it 1-D, so llama.cpp leaves it unquantized),
   "split_max_tensors": N (optional: write a split model, OUTPUT-00001-of-0000K.gguf, ... as gguf-py does)}
      writes a small synthetic model with gguf-py (llama.cpp's own GGUF writer)
  {"op": "quantize", "input": path, "output": path, "ftype": llama_ftype number, "threads": N,
   "imatrix": null | {"index": json path {name: [offset, count]}, "data": raw f32 path},
   "pure": bool, "leave_output": bool, "allow_requantize": bool,
   "output_tensor_type": ggml id | null, "token_embedding_type": ggml id | null,
   "tensor_types": [[regex, ggml id], ...], "repeat": R (optional; best time goes to output + ".json"),
   "expect_failure": bool (optional: a failure writes output + ".failed" instead of aborting)}
      runs llama_model_quantize
  {"op": "make_imatrix", "model": path, "output": imatrix GGUF path, "index": json path, "data": f32 path,
   "seed": S}
      writes an imatrix GGUF in llama-imatrix's format (<tensor>.in_sum2, <tensor>.counts, one matrix
      with count 0) and the values llama-quantize derives from it (sums / count in float32, or 1)
      as {name: [offset, count]} + raw f32, the form the "quantize" job takes
  {"op": "logits", "model": path, "output": raw f32 path, "tokens": [ids], "threads": N}
      loads the model in llama.cpp and writes the logits of every position (n_tokens x n_vocab f32).
      Extra buffer types (AMX repacking) are switched off: on AMX CPUs under some kernels that path
      segfaults in llama_decode for every quantized model, llama.cpp's own output included.
"""
import ctypes
import json
import os
import resource
import sys
import time

import numpy as np
import gguf
import llama_cpp
from llama_cpp import llama_cpp as L

GGML_TYPE_COUNT = 43


def make_model(job):
    rng = np.random.default_rng(job["seed"])
    E, F, NL, H, K, V = (job[k] for k in ("n_embd", "n_ff", "n_layer", "n_head", "n_head_kv", "n_vocab"))
    hd = E // H
    kind, dtype = job["kind"], job["dtype"]
    w = gguf.GGUFWriter(job["output"], "llama", split_max_tensors=job.get("split_max_tensors", 0))
    w.add_name("kiln-synthetic-" + kind)
    w.add_context_length(256)
    w.add_embedding_length(E)
    w.add_block_count(NL)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(K)
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(V)
    w.add_file_type({"f32": 0, "f16": 1, "bf16": 32}[dtype])
    if kind == "moe":
        w.add_expert_count(8)
        w.add_expert_used_count(2)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>" for i in range(V)])
    w.add_token_scores([float(-i) for i in range(V)])
    w.add_token_types([1] * V)

    def weight(shape, scale=0.05):
        a = (rng.standard_normal(shape) * scale).astype(np.float32)
        if dtype == "f16":
            return a.astype(np.float16), None
        if dtype == "bf16":
            bits = (a.view(np.uint32) + 0x7FFF + ((a.view(np.uint32) >> 16) & 1)) >> 16
            return bits.astype(np.uint16).view(np.uint8).reshape(*shape[:-1], shape[-1] * 2), gguf.GGMLQuantizationType.BF16
        return a, None

    def add(name, shape):
        arr, raw = weight(shape)
        if job.get("poison") and name == "blk.0.attn_q.weight":
            arr.reshape(-1)[77] = np.inf if raw is None else arr.reshape(-1)[77]
        w.add_tensor(name, arr, raw_dtype=raw)

    def norm(name, n):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    add("token_embd.weight", (V, E))
    norm("output_norm.weight", E)
    if kind != "tied":
        add("output.weight", (V, E))
    for i in range(NL):
        p = f"blk.{i}."
        norm(p + "attn_norm.weight", E)
        add(p + "attn_q.weight", (E, E))
        add(p + "attn_k.weight", (K * hd, E))
        add(p + "attn_v.weight", (K * hd, E))
        add(p + "attn_output.weight", (E, E))
        norm(p + "ffn_norm.weight", E)
        if kind == "moe":
            w.add_tensor(p + "ffn_gate_inp.weight", (rng.standard_normal((8, E)) * 0.05).astype(np.float32))
            add(p + "ffn_gate_exps.weight", (8, F, E))
            add(p + "ffn_up_exps.weight", (8, F, E))
            add(p + "ffn_down_exps.weight", (8, E, F))
            if job.get("shexp_gate"):
                add(p + "ffn_gate_inp_shexp.weight", (1, E))
        else:
            add(p + "ffn_gate.weight", (F, E))
            add(p + "ffn_up.weight", (F, E))
            add(p + "ffn_down.weight", (E, F))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_imatrix(job):
    rng = np.random.default_rng(job["seed"])
    model = gguf.GGUFReader(job["model"])
    w = gguf.GGUFWriter(job["output"], arch="")
    w.add_array("imatrix.datasets", ["kiln-synthetic.txt"])
    w.add_uint32("imatrix.chunk_count", 17)
    w.add_uint32("imatrix.chunk_size", 512)
    index, chunks, offset = {}, [], 0
    for k, t in enumerate(model.tensors):
        dims = [int(d) for d in t.shape]
        if len(dims) < 2 or not t.name.endswith("weight"):
            continue
        ne0 = dims[0]
        n_mat = dims[2] if len(dims) > 2 else 1
        sums = (rng.random((n_mat, ne0)) * 50).astype(np.float32)
        counts = np.full((n_mat, 1), 8704.0, dtype=np.float32)
        if k % 7 == 3:
            counts[0, 0] = 0.0
        w.add_tensor(t.name + ".in_sum2", sums)
        w.add_tensor(t.name + ".counts", counts)
        values = np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.float32(1)).astype(np.float32).reshape(-1)
        index[t.name] = [offset, int(values.size)]
        chunks.append(values)
        offset += values.size
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    json.dump(index, open(job["index"], "w"))
    np.concatenate(chunks).astype(np.float32).tofile(job["data"])


def quantize(job):
    params = L.llama_model_quantize_default_params()
    params.nthread = job.get("threads", 1)
    params.ftype = job["ftype"]
    params.allow_requantize = job.get("allow_requantize", False)
    params.quantize_output_tensor = not job.get("leave_output", False)
    params.pure = job.get("pure", False)
    params.only_copy = job.get("only_copy", False)
    if job.get("output_tensor_type") is not None:
        params.output_tensor_type = job["output_tensor_type"]
    if job.get("token_embedding_type") is not None:
        params.token_embedding_type = job["token_embedding_type"]
    keep = []
    if job.get("imatrix"):
        index = json.load(open(job["imatrix"]["index"]))
        data = np.fromfile(job["imatrix"]["data"], dtype=np.float32)
        entries = (L.llama_model_imatrix_data * (len(index) + 1))()
        for k, (name, (off, count)) in enumerate(index.items()):
            arr = np.ascontiguousarray(data[off:off + count])
            keep.append(arr)
            name_b = name.encode()
            keep.append(name_b)
            entries[k].name = name_b
            entries[k].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[k].size = count
        entries[len(index)].name = None
        keep.append(entries)
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(L.llama_model_imatrix_data))
    if job.get("tensor_types"):
        tts = (L.llama_model_tensor_override * (len(job["tensor_types"]) + 1))()
        for k, (pattern, ty) in enumerate(job["tensor_types"]):
            pb = pattern.encode()
            keep.append(pb)
            tts[k].pattern = pb
            tts[k].type = ty
        tts[len(job["tensor_types"])].pattern = None
        keep.append(tts)
        params.tt_overrides = ctypes.cast(tts, ctypes.POINTER(L.llama_model_tensor_override))
    best = None
    for _ in range(job.get("repeat", 1)):
        t0 = time.perf_counter()
        rc = L.llama_model_quantize(job["input"].encode(), job["output"].encode(), ctypes.byref(params))
        t = time.perf_counter() - t0
        best = t if best is None else min(best, t)
        if rc != 0:
            if job.get("expect_failure"):
                open(job["output"] + ".failed", "w").write(str(rc))
                return
            raise SystemExit(f"llama_model_quantize failed ({rc}) for {job}")
    if "repeat" in job:
        with open(job["output"] + ".json", "w") as f:
            json.dump({"seconds": best, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, f)


def logits(job):
    mp = L.llama_model_default_params()
    mp.use_extra_bufts = False
    model = L.llama_model_load_from_file(job["model"].encode(), mp)
    if not model:
        raise SystemExit(f"llama.cpp could not load {job['model']}")
    tokens = job["tokens"]
    cp = L.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = max(32, len(tokens))
    cp.n_threads = cp.n_threads_batch = job.get("threads", 1)
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit("llama_init_from_model failed")
    batch = L.llama_batch_init(len(tokens), 0, 1)
    for i, t in enumerate(tokens):
        batch.token[i] = t
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1
    batch.n_tokens = len(tokens)
    rc = L.llama_decode(ctx, batch)
    if rc != 0:
        raise SystemExit(f"llama_decode failed ({rc}) for {job['model']}")
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    out = np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(len(tokens) * n_vocab,)).copy()
    out.astype(np.float32).tofile(job["output"])
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "batch":
        raise SystemExit(__doc__)
    llama_cpp.llama_backend_init()
    for job in json.load(open(sys.argv[2])):
        {"make_model": make_model, "make_imatrix": make_imatrix, "quantize": quantize, "logits": logits}[job["op"]](job)


if __name__ == "__main__":
    main()
