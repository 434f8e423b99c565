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

qwen35v (from f32, --no-mtp) is the qwen35 folder with a Qwen 3.5 vision tower, which Ollama's
create splits in two: the text model (TextKV, TextTensors) into the model layer and the tower
into a separate projector GGUF (ProjectorKV, ProjectorTensors of convert/convert_qwen3next.go at
ollama fb30760). The text part is recorded like qwen35's, from llama.cpp, whose text conversion
skips the model.visual.* tensors (checked: no v./mm. tensors, and the tensors equal qwen35's).
The projector part, golden["qwen35v"]["projector"], is computed here from Ollama's Go rules
with numpy from the folder's own safetensors (qwen35v_projector): "tensors" (names after
Ollama's replacer and ProjectorTensors' renames, its kinds: the patch embedding split into two
F32 frames, v.position_embd.weight F32, 1-D and .bias F32, other 2-D F16; GGUF dims and SHA-256),
"metadata" (ProjectorKV: each key's GGUF value type as gguf-py names it, its value, and for
arrays the item type; float32 values as the nearest Python float) and "text_keys_removed" (the
keys KV writes for this config that TextKV deletes, so the model layer must not hold
qwen35.<key>). llama.cpp's own --mmproj conversion (run at f16 and at f32) is the cross-check:
every tensor it writes under the same name and type must be byte-identical ("source":
"llama.cpp", else "numpy"); metadata agreement is printed, not recorded (llama.cpp also writes
general.name and general.size_label, which Ollama does not).

qwen3vl (from f32) is a dense Qwen3VLForConditionalGeneration (Qwen 3 text model, the qwen35v
tower plus one deepstack merger), split the same way by Ollama's convert/convert_qwen3vl.go (at
ollama fb30760). Its text tensors and logits come from llama.cpp's Qwen3VLTextModel conversion
(checked: no v./mm. tensors). golden["qwen3vl"]["projector"] is built like qwen35v's (same
helpers, same --mmproj cross-check at f16 and f32, same "source" marks) from Qwen3-VL's own
rules: qwen3's replacements then Qwen3-VL's, every v./mm. tensor, qwen3VLProjectorRename (the
merger to mm.0/mm.2/v.post_ln, v.deepstack.K.* to v.deepstack.<deepstack_visual_indexes[K]>.*
with linear_fc1/2 to fc1/fc2), the patch embedding as two F32 frames, v.position_embd.weight
F32; ProjectorKV with its cmp.Or defaults, num_channels, temporal_patch_size, rope.freq_base,
image_min_pixels/image_max_pixels and image_mean/image_std (only when exactly 3), all from
vision_config decoded and then preprocessor_config.json decoded over it (the preprocessor's
fields override; it is required). "text_keys_removed": the 15 vision.* keys and
rope.mrope_section, those that KV writes for this config. golden["qwen3vl"]["text_metadata"]:
every qwen3vl.* key (full name) that TextKV leaves and the GGUF writer prefixes, {type, value[,
item_type]}, from qwen3Model.KV decoded from text_config alone plus rope.dimension_sections and
n_deepstack_layers; compared (printed, not recorded) with llama.cpp's text GGUF.
"""
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
from decimal import Decimal
from fractions import Fraction

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
                                             ("qwen35moe", "f32", "f16", ["qwen35moe"]),
                                             ("qwen35v", "f32", "f16", ["qwen35v"]),
                                             ("qwen3vl", "f32", "f16", ["qwen3vl"])):
            if only and case not in only:
                continue
            folder = os.path.join(tmp, case)
            gguf_path = os.path.join(tmp, f"llama-{case}.gguf")
            subprocess.run([oracle_python, os.path.join(HERE, "hf_llama.py"), "make", folder, dtype] + extra,
                           check=True)
            reference_args = ["--no-mtp"] if case in ("qwen35", "qwen35moe", "qwen35v") else []
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
            if case == "qwen35v":
                golden[case]["projector"] = qwen35v_projector(torch_python, script, oracle_python, folder, tmp,
                                                              golden[case], golden.get("qwen35"))
            if case == "qwen3vl":
                golden[case]["projector"], golden[case]["text_metadata"] = qwen3vl_golden(
                    torch_python, script, oracle_python, folder, tmp, gguf_path, golden[case])
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


# Ollama's qwen3next converter (convert/convert_qwen3next.go at fb30760): the tensor-name
# replacements, in order (a Go strings.Replacer: at each position the first pair in argument
# order that matches wins, and scanning resumes after the replaced text).
QWEN3NEXT_REPLACEMENTS = [
    ("lm_head", "output"), ("model.language_model.embed_tokens", "token_embd"),
    ("model.language_model.norm", "output_norm"), ("model.language_model.layers", "blk"),
    ("model.embed_tokens", "token_embd"), ("model.norm", "output_norm"), ("model.layers", "blk"),
    ("model.visual", "v"), ("patch_embed.proj", "patch_embed"), ("blocks", "blk"), ("attn.qkv", "attn_qkv"),
    ("attn.proj", "attn_out"), ("deepstack_merger_list", "deepstack_merger"),
    ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "post_attention_norm"),
    ("self_attn.q_proj", "attn_q"), ("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_proj", "attn_k"),
    ("self_attn.k_norm", "attn_k_norm"), ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
    ("linear_attn.in_proj_qkvz", "ssm_in"), ("linear_attn.in_proj_ba", "ssm_ba"),
    ("linear_attn.in_proj_qkv", "attn_qkv"), ("linear_attn.in_proj_z", "attn_gate"),
    ("linear_attn.in_proj_a", "ssm_alpha"), ("linear_attn.in_proj_b", "ssm_beta"),
    ("linear_attn.conv1d", "ssm_conv1d"), ("linear_attn.dt_bias", "ssm_dt.bias"), ("linear_attn.dt_proj", "ssm_dt"),
    ("linear_attn.A_log", "ssm_a"), ("linear_attn.norm", "ssm_norm"), ("linear_attn.out_proj", "ssm_out"),
    ("mlp.gate.weight", "ffn_gate_inp.weight"), ("mlp.shared_expert.down_proj", "ffn_down_shexp"),
    ("mlp.shared_expert.gate_proj", "ffn_gate_shexp"), ("mlp.shared_expert.up_proj", "ffn_up_shexp"),
    ("mlp.shared_expert_gate", "ffn_gate_inp_shexp"), ("mlp.down_proj", "ffn_down"), ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up")]
# ProjectorTensors' second replacer, applied to the vision tensors' names.
QWEN3NEXT_PROJECTOR_RENAMES = [
    ("v.pos_embed", "v.position_embd"), ("v.patch_embed", "v.patch_embd"), ("v.merger.norm", "v.post_ln"),
    ("v.merger.linear_fc1", "mm.0"), ("v.merger.linear_fc2", "mm.2"), (".mlp.linear_fc1", ".ffn_up"),
    (".mlp.linear_fc2", ".ffn_down"), (".norm1", ".ln1"), (".norm2", ".ln2")]
# The keys TextKV deletes from KV's output, in its order.
QWEN3NEXT_TEXT_KV_REMOVED = [
    "vision.block_count", "vision.embedding_length", "vision.feed_forward_length", "vision.attention.head_count",
    "vision.num_channels", "vision.patch_size", "vision.spatial_merge_size", "vision.attention.layer_norm_epsilon",
    "vision.rope.freq_base", "vision.temporal_patch_size", "vision.deepstack_visual_indexes", "vision.shortest_edge",
    "vision.longest_edge", "vision.image_mean", "vision.image_std", "image_token_id", "vision_start_token_id",
    "vision_end_token_id", "mrope_sections", "rope.mrope_section", "rope.mrope_interleaved", "ssm.v_head_reordered"]


def go_replace(pairs, s):
    """Go's strings.NewReplacer(pairs...).Replace(s) (the generic replacer)."""
    out, i = [], 0
    while i < len(s):
        for old, new in pairs:
            if s.startswith(old, i):
                out.append(new)
                i += len(old)
                break
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def go_float32(text):
    """strconv.ParseFloat(text, 32), which is how encoding/json fills a float32: the float32
    nearest the decimal (ties to even), not the float64 nearest it rounded again."""
    exact = Fraction(Decimal(text))
    c = np.float32(float(exact))
    candidates = [c, np.nextafter(c, np.float32(np.inf)), np.nextafter(c, np.float32(-np.inf))]
    return min(candidates, key=lambda x: (abs(Fraction(float(x)) - exact), int(np.float32(x).view(np.uint32)) & 1))


def read_safetensors(path):
    """{name: (dtype, shape, float32 array)} from a safetensors file, read here with numpy."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise NotImplementedError(f"{name}: only F32 sources are modelled here, not {meta['dtype']}")
        start, end = meta["data_offsets"]
        out[name] = (meta["dtype"], list(meta["shape"]),
                     np.frombuffer(body[start:end], dtype="<f4").reshape(meta["shape"]))
    return out


def ollama_tensor_kind(name, shape, dtype):
    """tensorBase.Kind and safetensor.Kind (convert/reader.go, reader_safetensors.go) of a tensor
    whose name is already replaced: "F32", "F16" or "BF16"."""
    always_f32 = (name.endswith((".ffn_gate_inp.weight", ".bias", ".shortconv.conv.weight", ".ssm_conv1d.weight",
                                 "rel_pos_h", "rel_pos_w"))
                  or name.startswith(("a.feature_extractor.", "a.conv1d.", "a.subsampling."))
                  or ".conv_dw." in name
                  or name in ("token_types.weight", "v.positional_embedding_vlm", "v.position_embd.weight",
                              "v.tile_position_embd.weight", "v.pre_tile_position_embd.weight",
                              "v.post_tile_position_embd.weight", "s.position_embd"))
    kind = "F32" if always_f32 or len(shape) == 1 else "F16"
    if dtype == "BF16" and not name.startswith(("v.", "s.", "mm.")) and "ffn_gate_inp_shexp.weight" not in name \
            and kind != "F32":
        kind = "BF16"
    if dtype == "F8_E4M3" and kind != "F32":
        kind = "BF16"
    return kind


def tensor_entry(kind, shape, data, source):
    data = data.astype({"F32": np.float32, "F16": np.float16}[kind])
    return {"type": kind, "shape": list(reversed(shape)), "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
            "source": source}


def qwen3next_vision_config(folder):
    """The vision fields of Ollama's qwen3NextModel after json.Unmarshal and parseMore: float32
    fields parsed as Go parses them, zero-valued fields filled from preprocessor_config.json."""
    keep = lambda s: s  # noqa: E731 (numbers stay text, so float32 fields can be parsed as Go does)
    cfg = json.load(open(os.path.join(folder, "config.json")), parse_float=keep)
    vc = dict(cfg.get("vision_config") or {})
    v = {k: int(vc.get(k, 0)) for k in ("depth", "hidden_size", "intermediate_size", "num_heads",
                                        "num_position_embeddings", "in_channels", "out_hidden_size", "patch_size",
                                        "spatial_merge_size", "temporal_patch_size")}
    v["layer_norm_epsilon"] = go_float32(str(vc["layer_norm_epsilon"])) if "layer_norm_epsilon" in vc else np.float32(0)
    v["rope_theta"] = go_float32(str(vc["rope_theta"])) if "rope_theta" in vc else np.float32(0)
    v["deepstack_visual_indexes"] = [int(x) for x in vc.get("deepstack_visual_indexes") or []]
    size = vc.get("size") or {}
    v["shortest_edge"], v["longest_edge"] = int(size.get("shortest_edge", 0)), int(size.get("longest_edge", 0))
    v["image_mean"] = [go_float32(str(x)) for x in vc.get("image_mean") or []]
    v["image_std"] = [go_float32(str(x)) for x in vc.get("image_std") or []]
    pre_path = os.path.join(folder, "preprocessor_config.json")
    if v["depth"] > 0 and os.path.exists(pre_path):
        pre = json.load(open(pre_path), parse_float=keep)
        for field, key in (("patch_size", "patch_size"), ("temporal_patch_size", "temporal_patch_size"),
                           ("spatial_merge_size", "merge_size")):
            if v[field] == 0:
                v[field] = int(pre.get(key, 0))
        psize = pre.get("size") or {}
        for field in ("shortest_edge", "longest_edge"):
            if v[field] == 0:
                v[field] = int(psize.get(field, 0))
        for field in ("image_mean", "image_std"):
            if not v[field]:
                v[field] = [go_float32(str(x)) for x in pre.get(field) or []]
    return cfg, v


def clip_projector_base(depth, v, image_size):
    """What both of Ollama's Qwen ProjectorKVs write alike: the clip header and the deepstack
    flags (indexes outside the `depth` layers ignored), with the image size given."""
    deepstack = [False] * depth
    for idx in v["deepstack_visual_indexes"]:
        if 0 <= idx < depth:
            deepstack[idx] = True
    return {"general.architecture": {"type": "STRING", "value": "clip"},
            "general.type": {"type": "STRING", "value": "mmproj"},
            "general.file_type": {"type": "UINT32", "value": 1},
            "general.quantization_version": {"type": "UINT32", "value": 2},
            "clip.has_vision_encoder": {"type": "BOOL", "value": True},
            "clip.projector_type": {"type": "STRING", "value": "qwen3vl_merger"},
            "clip.use_gelu": {"type": "BOOL", "value": True},
            "clip.vision.image_size": {"type": "UINT32", "value": image_size},
            "clip.vision.is_deepstack_layers": {"type": "ARRAY", "item_type": "BOOL", "value": deepstack}}


def square_image_size(v):
    """sqrt(num_position_embeddings) patches of patch_size when the embeddings are a square
    (Go's uint32(math.Sqrt(float64(n)))), else 768."""
    if v["num_position_embeddings"] > 0 and v["patch_size"] > 0:
        root = int(np.sqrt(np.float64(v["num_position_embeddings"])))
        if root * root == v["num_position_embeddings"]:
            return root * v["patch_size"]
    return 768


def qwen3next_projector_kv(cfg, v):
    """ProjectorKV: {key: {"type", "value"[, "item_type"]}} (keys unprefixed: the
    architecture is clip, and every key starts with clip. or general.)."""
    u32 = lambda x: {"type": "UINT32", "value": int(x)}  # noqa: E731
    f32s = lambda xs: {"type": "ARRAY", "item_type": "FLOAT32", "value": [float(np.float32(x)) for x in xs]}  # noqa: E731
    depth = v["depth"]
    text = cfg.get("text_config") or cfg
    projection_dim = v["out_hidden_size"] or int(text.get("hidden_size", 0))
    eps = v["layer_norm_epsilon"] if v["layer_norm_epsilon"] != 0 else go_float32("1e-6")
    kv = clip_projector_base(depth, v, square_image_size(v))
    kv.update({"clip.vision.block_count": u32(depth), "clip.vision.embedding_length": u32(v["hidden_size"]),
               "clip.vision.feed_forward_length": u32(v["intermediate_size"]),
               "clip.vision.attention.head_count": u32(v["num_heads"]),
               "clip.vision.patch_size": u32(v["patch_size"]), "clip.vision.projection_dim": u32(projection_dim),
               "clip.vision.spatial_merge_size": u32(v["spatial_merge_size"]),
               "clip.vision.attention.layer_norm_epsilon": {"type": "FLOAT32", "value": float(eps)}})
    if v["image_mean"]:
        kv["clip.vision.image_mean"] = f32s(v["image_mean"])
    if v["image_std"]:
        kv["clip.vision.image_std"] = f32s(v["image_std"])
    return kv


def qwen3next_text_keys_removed(cfg, v):
    """The keys of QWEN3NEXT_TEXT_KV_REMOVED that KV writes for this config (so that TextKV's
    deletion is visible): the model layer must have none of them (as qwen35.<key>)."""
    text = cfg.get("text_config") or cfg
    rope_params, rope_scaling = text.get("rope_parameters") or {}, text.get("rope_scaling") or {}
    sections = rope_params.get("mrope_section") or rope_scaling.get("mrope_section") or []
    names = [cfg.get("model_type", "")] + list(cfg.get("architectures") or [])
    reorder = not any(x in n.lower() for n in names for x in ("qwen3_next", "qwen3next"))
    written = set()
    if v["depth"] > 0:
        written |= {"vision.block_count", "vision.embedding_length", "vision.attention.head_count",
                    "vision.num_channels", "vision.deepstack_visual_indexes"}
        for key, field in (("vision.feed_forward_length", "intermediate_size"), ("vision.patch_size", "patch_size"),
                           ("vision.spatial_merge_size", "spatial_merge_size"),
                           ("vision.attention.layer_norm_epsilon", "layer_norm_epsilon"),
                           ("vision.rope.freq_base", "rope_theta"), ("vision.temporal_patch_size", "temporal_patch_size"),
                           ("vision.shortest_edge", "shortest_edge"), ("vision.longest_edge", "longest_edge")):
            if v[field] > 0:
                written.add(key)
        for key, field in (("vision.image_mean", "image_mean"), ("vision.image_std", "image_std")):
            if v[field]:
                written.add(key)
    for key in ("image_token_id", "vision_start_token_id", "vision_end_token_id"):
        if int(cfg.get(key, 0)) > 0:
            written.add(key)
    if sections:
        written |= {"mrope_sections", "rope.mrope_section"}
    if rope_params.get("mrope_interleaved"):
        written.add("rope.mrope_interleaved")
    if reorder:
        written.add("ssm.v_head_reordered")
    return [k for k in QWEN3NEXT_TEXT_KV_REMOVED if k in written]


def qwen3next_projector_tensors(folder):
    """ProjectorTensors, computed with numpy from the folder's safetensors: every tensor whose
    replaced name starts with v., renamed; the 5-D patch embedding split into its two frames
    (v.patch_embd.weight, v.patch_embd.weight.1, F32), v.position_embd.weight F32, the rest of the
    kind Ollama gives them (1-D and .bias F32, other 2-D F16). Sources are F32."""
    return projector_tensors(folder, QWEN3NEXT_REPLACEMENTS, ("v.",),
                             lambda gname: go_replace(QWEN3NEXT_PROJECTOR_RENAMES, gname),
                             lambda gname, out_name: gname == "v.patch_embed.weight")


def projector_tensors(folder, replacements, prefixes, rename, is_patch):
    """The projector tensors of a converter: names replaced, kept if they start with one of
    prefixes, renamed; is_patch(replaced, renamed) picks the 5-D patch embedding, split in two F32
    frames."""
    out = {}
    for name, (dtype, shape, a) in sorted(read_safetensors(os.path.join(folder, "model.safetensors")).items()):
        gname = go_replace(replacements, name)
        if not gname.startswith(prefixes):
            continue
        out_name = rename(gname)
        if is_patch(gname, out_name):
            assert len(shape) == 5 and shape[2] == 2, shape
            frame_shape = [shape[0], shape[1], shape[3], shape[4]]
            out["v.patch_embd.weight"] = tensor_entry("F32", frame_shape, a[:, :, 0], "numpy")
            out["v.patch_embd.weight.1"] = tensor_entry("F32", frame_shape, a[:, :, 1], "numpy")
            continue
        kind = ollama_tensor_kind(gname, shape, dtype)
        if out_name == "v.position_embd.weight":
            kind = "F32"
        out[out_name] = tensor_entry(kind, shape, a, "numpy")
    return out


# Ollama's Qwen3-VL converter (convert/convert_qwen3vl.go, convert_qwen3.go at fb30760):
# qwen3Model.Replacements() then qwen3VLModel's, as one Go strings.Replacer.
QWEN3_REPLACEMENTS = [
    ("lm_head", "output"), ("model.embed_tokens", "token_embd"), ("model.layers", "blk"),
    ("input_layernorm", "attn_norm"), ("self_attn.k_proj", "attn_k"), ("self_attn.k_norm", "attn_k_norm"),
    ("self_attn.v_proj", "attn_v"), ("self_attn.q_proj", "attn_q"), ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.o_proj", "attn_output"), ("mlp.down_proj", "ffn_down"), ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"), ("mlp.gate.weight", "ffn_gate_inp.weight"),
    ("mlp.experts.down_proj", "ffn_down_exps.weight"), ("mlp.experts.gate_up_proj", "ffn_gate_up_exps.weight"),
    ("post_attention_layernorm", "ffn_norm"), ("model.norm", "output_norm")]
QWEN3VL_REPLACEMENTS = QWEN3_REPLACEMENTS + [
    ("model.language_", ""), ("model.visual", "v"), ("patch_embed.proj", "patch_embd"), ("pos_embed", "position_embd"),
    ("blocks", "blk"), ("attn.qkv", "attn_qkv"), ("attn.proj", "attn_out"), ("norm1", "ln1"), ("norm2", "ln2"),
    ("mlp.linear_fc1", "ffn_up"), ("mlp.linear_fc2", "ffn_down"), ("deepstack_merger_list", "deepstack")]
# The keys qwen3VLModel.TextKV deletes from KV's output, in its order.
QWEN3VL_TEXT_KV_REMOVED = [
    "vision.block_count", "vision.embedding_length", "vision.feed_forward_length", "vision.attention.head_count",
    "vision.num_channels", "vision.patch_size", "vision.spatial_merge_size", "vision.attention.layer_norm_epsilon",
    "vision.rope.freq_base", "vision.temporal_patch_size", "vision.deepstack_visual_indexes", "vision.shortest_edge",
    "vision.longest_edge", "vision.image_mean", "vision.image_std", "rope.mrope_section"]


def qwen3vl_vision_config(folder):
    """qwen3VLModel's VisionModel after json.Unmarshal of config.json (vision_config) and parseMore,
    which requires preprocessor_config.json and unmarshals it over the same struct: every field it
    has overrides vision_config's (its merge_size matches no field; spatial_merge_size is
    vision_config's). Keys are matched exactly here (Go also matches them case-insensitively)."""
    keep = lambda s: s  # noqa: E731
    cfg = json.load(open(os.path.join(folder, "config.json")), parse_float=keep)
    v = {k: 0 for k in ("depth", "hidden_size", "num_heads", "in_channels", "patch_size", "spatial_merge_size",
                        "window_size", "temporal_patch_size", "intermediate_size", "out_hidden_size",
                        "num_position_embeddings", "shortest_edge", "longest_edge")}
    v.update({"layer_norm_epsilon": np.float32(0), "rope_theta": np.float32(0), "deepstack_visual_indexes": [],
              "image_mean": [], "image_std": []})

    def decode(d):
        for k in v:
            if k in d and d[k] is not None and k not in ("shortest_edge", "longest_edge"):
                if k in ("layer_norm_epsilon", "rope_theta"):
                    v[k] = go_float32(str(d[k]))
                elif k in ("image_mean", "image_std"):
                    v[k] = [go_float32(str(x)) for x in d[k]]
                elif k == "deepstack_visual_indexes":
                    v[k] = [int(x) for x in d[k]]
                else:
                    v[k] = int(d[k])
        for k in ("shortest_edge", "longest_edge"):
            if k in (d.get("size") or {}):
                v[k] = int(d["size"][k])

    decode(cfg.get("vision_config") or {})
    decode(json.load(open(os.path.join(folder, "preprocessor_config.json")), parse_float=keep))
    return cfg, v


def qwen3vl_projector_kv(cfg, v):
    """qwen3VLModel.ProjectorKV: {key: {"type", "value"[, "item_type"]}}."""
    u32 = lambda x: {"type": "UINT32", "value": int(x) & 0xFFFFFFFF}  # noqa: E731
    f32 = lambda x: {"type": "FLOAT32", "value": float(np.float32(x))}  # noqa: E731
    f32s = lambda xs: {"type": "ARRAY", "item_type": "FLOAT32", "value": [float(np.float32(x)) for x in xs]}  # noqa: E731
    depth = v["depth"] or 32
    text = cfg.get("text_config") or {}
    kv = clip_projector_base(depth, v, square_image_size(v))
    kv.update({"clip.vision.block_count": u32(depth), "clip.vision.embedding_length": u32(v["hidden_size"]),
               "clip.vision.feed_forward_length": u32(v["intermediate_size"] or v["hidden_size"] * 4),
               "clip.vision.attention.head_count": u32(v["num_heads"] or 16),
               "clip.vision.attention.layer_norm_epsilon": f32(v["layer_norm_epsilon"] or go_float32("1e-6")),
               "clip.vision.num_channels": u32(v["in_channels"]),
               "clip.vision.patch_size": u32(v["patch_size"] or 14),
               "clip.vision.spatial_merge_size": u32(v["spatial_merge_size"] or 2),
               "clip.vision.projection_dim": u32(v["out_hidden_size"] or int(text.get("hidden_size", 0))),
               "clip.vision.temporal_patch_size": u32(v["temporal_patch_size"] or 2),
               "clip.vision.rope.freq_base": f32(v["rope_theta"] or np.float32(1e4))})
    if v["shortest_edge"] > 0:
        kv["clip.vision.image_min_pixels"] = u32(v["shortest_edge"])
    if v["longest_edge"] > 0:
        kv["clip.vision.image_max_pixels"] = u32(v["longest_edge"])
    if len(v["image_mean"]) == 3:
        kv["clip.vision.image_mean"] = f32s(v["image_mean"])
    if len(v["image_std"]) == 3:
        kv["clip.vision.image_std"] = f32s(v["image_std"])
    return kv


def qwen3vl_text_kv(cfg, v):
    """qwen3VLModel.KV without ModelParameters' general./tokenizer. keys (qwen3Model decoded from
    text_config alone), keys unprefixed: {key: entry}. The vision.* entries only say that the key
    is written (their values are not modelled: TextKV deletes them all)."""
    keep = lambda s: s  # noqa: E731
    text = json.loads(json.dumps(cfg.get("text_config") or {}), parse_float=keep)
    u32 = lambda k: {"type": "UINT32", "value": int(text.get(k) or 0) & 0xFFFFFFFF}  # noqa: E731
    f32 = lambda k: {"type": "FLOAT32", "value": float(go_float32(str(text[k])) if text.get(k) is not None  # noqa: E731
                                                       else np.float32(0))}
    kv = {"block_count": u32("num_hidden_layers"), "context_length": u32("max_position_embeddings"),
          "embedding_length": u32("hidden_size"), "feed_forward_length": u32("intermediate_size"),
          "attention.head_count": u32("num_attention_heads"), "attention.head_count_kv": u32("num_key_value_heads"),
          "attention.key_length": u32("head_dim"), "attention.value_length": u32("head_dim"),
          "rope.freq_base": f32("rope_theta"), "attention.layer_norm_rms_epsilon": f32("rms_norm_eps")}
    if int(text.get("num_experts") or 0) > 0:
        kv.update({"expert_count": u32("num_experts"), "expert_used_count": u32("num_experts_per_tok"),
                   "norm_top_k_prob": {"type": "BOOL", "value": bool(text.get("norm_topk_prob"))}})
    scaling = text.get("rope_scaling") or {}
    sections = [int(x) for x in scaling.get("mrope_section") or []]
    kind = scaling.get("type") or ""
    if kind == "yarn":
        raise NotImplementedError("yarn rope scaling (rope.scaling.type/factor) is not modelled")
    if kind in ("mrope", "default"):
        kv["rope.mrope_section"] = {"type": "ARRAY", "item_type": "INT32", "value": sections}
    elif kind:
        raise ValueError(f"Ollama panics: unknown rope scaling type {kind!r}")
    if sections:
        kv["rope.dimension_sections"] = {"type": "ARRAY", "item_type": "INT32",
                                         "value": sections + [0] if len(sections) == 3 else sections}
    kv["n_deepstack_layers"] = {"type": "UINT32", "value": len(v["deepstack_visual_indexes"])}
    for key in QWEN3VL_TEXT_KV_REMOVED[:15]:
        if key != "vision.feed_forward_length" or v["intermediate_size"] > 0:
            kv[key] = {"type": "(vision, not modelled)"}
    return kv


def qwen3vl_projector_rename(name, indexes):
    """qwen3VLModel.qwen3VLProjectorRename."""
    if name.startswith("v.merger."):
        for old, new in (("v.merger.linear_fc1", "mm.0"), ("v.merger.linear_fc2", "mm.2"), ("v.merger.norm", "v.post_ln")):
            name = name.replace(old, new, 1)
        return name
    if name.startswith("v.deepstack."):
        m = re.match(r"v\.deepstack\.([0-9]+)\.([^\n]+)\Z", name)
        if m and int(m.group(1)) < len(indexes):
            suffix = m.group(2).replace("linear_fc1", "fc1", 1).replace("linear_fc2", "fc2", 1)
            return f"v.deepstack.{indexes[int(m.group(1))]}.{suffix}"
    return name


def qwen3vl_golden(torch_python, script, oracle_python, folder, tmp, gguf_path, text_golden):
    """golden["qwen3vl"]["projector"] (Ollama's Qwen3-VL ProjectorTensors/ProjectorKV, numpy,
    cross-checked with llama.cpp's --mmproj) and golden["qwen3vl"]["text_metadata"] (the full
    qwen3vl.* keys of TextKV, compared with llama.cpp's text GGUF, printed)."""
    assert not any(n.startswith(("v.", "mm.")) for n in text_golden["tensors"]), \
        "llama.cpp's text file holds vision tensors"
    cfg, v = qwen3vl_vision_config(folder)
    indexes = v["deepstack_visual_indexes"]
    tensors = projector_tensors(folder, QWEN3VL_REPLACEMENTS, ("v.", "mm."),
                                lambda gname: qwen3vl_projector_rename(gname, indexes),
                                lambda gname, out_name: out_name == "v.patch_embd.weight")
    metadata = qwen3vl_projector_kv(cfg, v)
    mmproj_cross_check("qwen3vl", torch_python, script, oracle_python, folder, tmp, tensors, metadata)
    kv = qwen3vl_text_kv(cfg, v)
    removed = [k for k in QWEN3VL_TEXT_KV_REMOVED if k in kv]
    text_metadata = {"qwen3vl." + k: e for k, e in sorted(kv.items()) if k not in QWEN3VL_TEXT_KV_REMOVED}
    theirs = {k: e for k, e in gguf_dump(oracle_python, gguf_path)["metadata"].items() if k.startswith("qwen3vl.")}
    for key, e in sorted(text_metadata.items()):
        t = theirs.get(key)
        print(f"qwen3vl text: {key} = {e['value']!r} ({e['type']}{'/' + e['item_type'] if 'item_type' in e else ''})"
              + (": llama.cpp agrees" if t == e else f": llama.cpp writes {t!r}"))
    for key in sorted(set(theirs) - set(text_metadata)):
        print(f"qwen3vl text: llama.cpp also writes {key} = {theirs[key]['value']!r}, Ollama does not")
    return {"tensors": tensors, "metadata": metadata, "text_keys_removed": removed}, text_metadata


def gguf_dump(oracle_python, path):
    """Every tensor ({type, shape, sha256}) and metadata key ({type, value[, item_type]}) of a GGUF."""
    code = r"""
import gguf, hashlib, json, sys
r = gguf.GGUFReader(sys.argv[1])
out = {"tensors": {}, "metadata": {}}
for t in r.tensors:
    out["tensors"][t.name] = {"type": t.tensor_type.name, "shape": [int(x) for x in t.shape],
                              "sha256": hashlib.sha256(bytes(t.data.tobytes())).hexdigest()}
for k, f in r.fields.items():
    if k.startswith("GGUF."):
        continue
    e = {"type": f.types[0].name, "value": f.contents()}
    if len(f.types) > 1:
        e["item_type"] = f.types[1].name
    out["metadata"][k] = e
print(json.dumps(out))
"""
    return json.loads(subprocess.run([oracle_python, "-c", code, path], check=True, capture_output=True,
                                     text=True).stdout)


def qwen35v_projector(torch_python, script, oracle_python, folder, tmp, text_golden, qwen35_golden):
    """The projector GGUF Ollama's create writes for a Qwen 3.5 with a vision tower (ProjectorKV,
    ProjectorTensors), computed from Ollama's Go rules with numpy; each tensor that llama.cpp's
    --mmproj conversion (at f16 and at f32) writes under the same name and type is checked to be
    byte-identical and marked "llama.cpp". Also the text keys TextKV removes."""
    text_names = set(text_golden["tensors"])
    assert not any(n.startswith(("v.", "mm.")) for n in text_names), "llama.cpp's text file holds vision tensors"
    if qwen35_golden is not None:
        same = text_golden["tensors"] == qwen35_golden["tensors"]
        print(f"qwen35v: llama.cpp's text tensors {'equal' if same else 'DIFFER FROM'} qwen35's")
        assert same
    cfg, v = qwen3next_vision_config(folder)
    tensors = qwen3next_projector_tensors(folder)
    metadata = qwen3next_projector_kv(cfg, v)
    mmproj_cross_check("qwen35v", torch_python, script, oracle_python, folder, tmp, tensors, metadata)
    return {"tensors": tensors, "metadata": metadata, "text_keys_removed": qwen3next_text_keys_removed(cfg, v)}


def mmproj_cross_check(case, torch_python, script, oracle_python, folder, tmp, tensors, metadata):
    """Runs llama.cpp's --mmproj conversion at f16 and f32; every tensor it writes under the same
    name and type as Ollama's rules must be byte-identical, and is then marked "llama.cpp" in
    tensors (in place). Metadata agreement is printed only."""
    mm = {}
    for outtype in ("f16", "f32"):
        path = os.path.join(tmp, f"mmproj-{case}-{outtype}.gguf")
        subprocess.run([torch_python, os.path.join(HERE, "hf_llama.py"), "reference", folder, path, outtype, script,
                        "--mmproj"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mm[outtype] = gguf_dump(oracle_python, path)
    for name, e in sorted(tensors.items()):
        for outtype, dump in mm.items():
            theirs = dump["tensors"].get(name)
            if theirs is not None and theirs["type"] == e["type"]:
                assert theirs["shape"] == e["shape"] and theirs["sha256"] == e["sha256"], \
                    f"{name}: llama.cpp --outtype {outtype} writes {theirs}, Ollama's rules give {e}"
                e["source"] = "llama.cpp"
                print(f"{case} projector: {name} {e['type']} {e['shape']} agrees with llama.cpp --outtype {outtype}")
                break
        else:
            print(f"{case} projector: {name} {e['type']} {e['shape']} from numpy only (llama.cpp: "
                  + ", ".join(f"{o} {d['tensors'][name]['type'] if name in d['tensors'] else 'absent'}"
                              for o, d in mm.items()) + ")")
    for outtype, dump in mm.items():
        for name in sorted(set(dump["tensors"]) - set(tensors)):
            print(f"{case} projector: llama.cpp --outtype {outtype} also writes {name}, Ollama does not")
    theirs = mm["f16"]["metadata"]
    for key, e in sorted(metadata.items()):
        t = theirs.get(key)
        print(f"{case} projector: {key} = {e['value']!r} ({e['type']}{'/' + e['item_type'] if 'item_type' in e else ''})"
              + (": llama.cpp (f16) agrees" if t == e else f": llama.cpp (f16) writes {t!r}"))
    for key in sorted(set(theirs) - set(metadata)):
        print(f"{case} projector: llama.cpp (f16) also writes {key} = {theirs[key]['value']!r}, Ollama does not")


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
