#!/usr/bin/env python3
"""A small synthetic Hugging Face Llama folder, and llama.cpp's own conversion of it.

  hf_llama.py make DIR DTYPE [spm|qwen2|gemma|gemma2|gemma3|gemma3v|phi3|olmo3|ministral3|cohere|
                             wide|gptoss|qwen35|qwen35mtp|qwen35moe|qwen35v|qwen3vl]
      writes DIR/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
      generation_config.json[, preprocessor_config.json]}: a 2-layer GQA Llama (Llama 3 rope scaling, byte-level BPE tokenizer
      with Llama 3's pre-tokenizer regex) whose weights are DTYPE ("f32" or "bf16"). With "spm", a
      Llama 2 style SentencePiece tokenizer.model (unigram, byte fallback) replaces tokenizer.json;
      with "qwen2", the model is a Qwen2ForCausalLM (q/k/v biases, no rope scaling); "gemma",
      "gemma2" and "gemma3" make Gemma, Gemma 2 and Gemma 3 text models with the SentencePiece
      tokenizer (tied embeddings, head size 24, Gemma's norm layout; Gemma 3 with q/k norms and
      16 embedding rows past the vocabulary; "gemma3v" the same text model inside a
      Gemma3ForConditionalGeneration with a one-layer SigLIP vision tower); "phi3" a Phi3ForCausalLM with the SentencePiece
      tokenizer, fused qkv and gate_up weights and longrope factors; "olmo3" an Olmo3ForCausalLM
      (post-norms, whole-projection q/k norms, sliding-window layer types, yarn rope scaling);
      "ministral3" a Ministral3ForCausalLM (head size 24, yarn rope_parameters with Llama 4 scaling);
      "wide" the Llama with hidden size 256 and feed-forward size 512 (rows every k-quant fits);
      "cohere" a CohereForCausalLM (Command-R: one layer norm per layer, tied embeddings, logit scale);
      "gptoss" a GptOssForCausalLM (4 experts of which 2 are used, their weights in OpenAI's MXFP4
      form: U8 blocks and E8M0 scales, gate and up interleaved by row; attention biases and sinks,
      a router with a bias, yarn rope scaling, a sliding window); "qwen35" a
      Qwen3_5ForConditionalGeneration's text model, as the official checkpoints nest it
      (text_config, model.language_model.* names, no vision tower, no multi-token prediction): a
      gated delta-net (linear attention) layer then a full-attention layer with a gated query,
      2 key heads and 4 value heads in the linear layer (so the value heads are reordered),
      zero-centred norm weights and interleaved MRoPE sections; "qwen35mtp" the same with a
      multi-token-prediction layer (mtp.*, a full-attention layer behind a projection of the
      embedding and the hidden state), as the published checkpoints carry one; "qwen35moe" a
      Qwen3_5MoeForConditionalGeneration's text model: the same two layers with a mixture of 4
      experts (2 used) and a shared expert with its sigmoid gate in place of the dense MLP, layer
      0's experts one tensor per expert and projection (experts.E.gate_proj.weight, …), layer
      1's fused as the official checkpoints store them (experts.gate_up_proj, experts.down_proj);
      "qwen35v" the "qwen35" folder (the same text tensors and text_config) plus a two-block Qwen 3.5
      vision tower and patch merger under the official names and shapes (model.visual.*: a 5-D
      Conv3d patch embedding over 2 frames, learned position embeddings for a 4 x 4 grid,
      LayerNorms, fused qkv, GELU MLPs, all with biases; the merger's norm over the tower's
      hidden size 16, linear_fc1 [64, 64] and linear_fc2 [64 = text hidden, 64]; no deepstack
      mergers, as in every published Qwen 3.5), config.json's vision_config (QWEN35_VISION: no
      layer_norm_epsilon, a field transformers' Qwen3-VL vision config does not have, so Ollama's
      1e-6 default applies) and a preprocessor_config.json
      (QWEN35_PREPROCESSOR) that alone has size, image_mean and image_std, and whose patch_size
      (the published 16) disagrees with the tower's 4, so that which file wins is visible;
      "qwen3vl" a dense Qwen3VLForConditionalGeneration (model_type qwen3_vl) as the published
      Qwen3-VL checkpoints nest it: a 2-layer Qwen 3 text model (q_norm/k_norm, explicit head_dim
      32 = 2 x hidden / heads, GQA, untied lm_head) under model.language_model.*, text_config with
      rope_theta 5000000 (an integer, as published) and rope_scaling {rope_type default,
      mrope_section [6, 5, 5], mrope_interleaved}; the qwen35v tower (QWEN3VL_VISION: the same
      blocks and merger) plus one deepstack merger (deepstack_visual_indexes [1];
      model.visual.deepstack_merger_list.0.*: its norm over the merged width 64, linear_fc1
      [64, 64], linear_fc2 [64 = text hidden, 64], as transformers' Qwen3VLVisionPatchMerger with
      use_postshuffle_norm); a preprocessor_config.json (QWEN3VL_PREPROCESSOR) whose patch_size is
      the tower's 4 and which alone has size, image_mean and image_std (vision_config, as
      published, has none of them).
      Deterministic: weights come from integer hashing, not a random generator, so every numpy
      gives the same bytes.

  hf_llama.py reference DIR OUT.gguf OUTTYPE CONVERT_HF_TO_GGUF.py [EXTRA_ARG...]
      runs llama.cpp's convert_hf_to_gguf.py (from the llama-cpp-python 0.3.36 sdist, with torch and
      transformers installed) on DIR. Its BPE pre-tokenizer check (a hash of how the tokenizer splits
      a sample text) cannot know a synthetic tokenizer, so it is told "llama-bpe"; nothing else is
      changed; EXTRA_ARGs (e.g. --no-mtp, or --mmproj for the vision tower's own GGUF) are passed on. Used by gen_convert_golden.py, not by the tests (torch is too large for CI).
"""
import json
import os
import struct
import sys

import numpy as np

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
HIDDEN, FF, HEADS, KV_HEADS, LAYERS = 64, 160, 4, 2, 2
WORDS = ["the", "and", "ing", "kiln", "fire", "clay", "Ollama", "model"]


def byte_chars():
    """GPT-2's byte-to-unicode table (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def tokenizer():
    vocab = {c: i for i, c in enumerate(byte_chars())}
    merges = []
    for word in WORDS:
        for prefix in ("", "Ġ"):
            pieces = list(prefix + word) if not prefix else ["Ġ"] + list(word)
            while len(pieces) > 1:
                a, b = pieces[0], pieces[1]
                if a + b not in vocab:
                    vocab[a + b] = len(vocab)
                    merges.append([a, b])
                pieces = [a + b] + pieces[2:]
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    added = []
    for s in specials:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
        vocab[s] = len(vocab)
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }


def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7
    return out + bytes([v])


def field(number, wire, payload):
    key = varint(number << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


def spm_model():
    """A SentencePiece ModelProto written by hand: <unk>, <s>, </s>, 256 byte pieces, some words."""
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    words = ["\u2581" + w for w in WORDS] + ["\u2581" + w[:2] for w in WORDS] + list("abcdefghijklmnopqrstuvwxyz")
    seen = set()
    for i, w in enumerate(words):
        if w not in seen:
            seen.add(w)
            pieces.append((w, -1.0 - i * 0.25, 1))
    body = b""
    for piece, score, kind in pieces:
        m = field(1, 2, piece.encode()) + field(2, 5, struct.pack("<f", score))
        if kind != 1:
            m += field(3, 0, varint(kind))
        body += field(1, 2, m)
    # trainer_spec: unigram, vocab size, byte fallback, unk/bos/eos/pad ids
    trainer = (field(3, 0, varint(1)) + field(4, 0, varint(len(pieces))) + field(35, 0, varint(1))
               + field(40, 0, varint(0)) + field(41, 0, varint(1)) + field(42, 0, varint(2))
               + field(43, 0, varint((1 << 64) - 1)))
    normalizer = field(1, 2, b"identity") + field(3, 0, varint(1)) + field(4, 0, varint(0))
    return body + field(2, 2, trainer) + field(3, 2, normalizer), len(pieces)


def values(name, shape, scale):
    """Deterministic pseudo-random values in [-scale, scale): a multiplicative hash of the index."""
    n = int(np.prod(shape))
    seed = sum(ord(c) * 131 ** i for i, c in enumerate(name)) % (1 << 32)
    i = np.arange(n, dtype=np.uint64) + np.uint64(seed)
    h = (i * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return ((h.astype(np.float64) / float(1 << 24)) * 2 - 1).astype(np.float32).reshape(shape) * np.float32(scale)


VISION = {"model_type": "siglip_vision_model", "hidden_size": 16, "intermediate_size": 32,
          "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 28, "patch_size": 14,
          "num_channels": 3, "layer_norm_eps": 1e-6, "vision_use_head": False}


def vision_tensors():
    """A one-layer SigLIP tower and Gemma 3's projector, under the official checkpoints' names."""
    h, ff, p = VISION["hidden_size"], VISION["intermediate_size"], "vision_tower.vision_model."
    n_pos = (VISION["image_size"] // VISION["patch_size"]) ** 2
    t = {p + "embeddings.patch_embedding.weight": values("patch", (h, 3, 14, 14), 0.2),
         p + "embeddings.patch_embedding.bias": values("patchb", (h,), 0.1),
         p + "embeddings.position_embedding.weight": values("pos", (n_pos, h), 0.2),
         p + "post_layernorm.weight": 1 + values("post", (h,), 0.1),
         p + "post_layernorm.bias": values("postb", (h,), 0.1),
         "multi_modal_projector.mm_input_projection_weight": values("proj", (h, HIDDEN), 0.2),
         "multi_modal_projector.mm_soft_emb_norm.weight": values("soft", (h,), 0.1)}
    l = p + "encoder.layers.0."
    for n in ("layer_norm1", "layer_norm2"):
        t[l + n + ".weight"] = 1 + values(l + n, (h,), 0.1)
        t[l + n + ".bias"] = values(l + n + "b", (h,), 0.1)
    for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
        t[l + "self_attn." + n + ".weight"] = values(l + n, (h, h), 0.2)
        t[l + "self_attn." + n + ".bias"] = values(l + n + "b", (h,), 0.1)
    t[l + "mlp.fc1.weight"] = values(l + "fc1", (ff, h), 0.2)
    t[l + "mlp.fc1.bias"] = values(l + "fc1b", (ff,), 0.1)
    t[l + "mlp.fc2.weight"] = values(l + "fc2", (h, ff), 0.2)
    t[l + "mlp.fc2.bias"] = values(l + "fc2b", (h,), 0.1)
    return t


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        if a.dtype == np.uint8:
            # Packed quantized data (MXFP4 blocks and scales) is stored as it is.
            raw, st = a.tobytes(), "U8"
        elif dtype == "bf16":
            raw = (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
            st = "BF16"
        else:
            raw = a.astype(np.float32).tobytes()
            st = "F32"
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


GPTOSS_EXPERTS, GPTOSS_USED, GPTOSS_FF = 4, 2, 64


def mxfp4(name, experts, rows, cols):
    """OpenAI's MXFP4 form of an expert weight [experts, rows, cols]: blocks [experts, rows,
    cols/32, 16] (values 2k and 2k+1 of a block in the low and high nibble of byte k) and scales
    [experts, rows, cols/32] (E8M0 exponents near 2^-4, so activations stay moderate)."""
    groups = cols // 32
    h = (values(name, (experts, rows, groups, 16), 1.0) * 1e6).astype(np.int64)
    blocks = (h % 256).astype(np.uint8)
    s = (values(name + "s", (experts, rows, groups), 1.0) * 1e6).astype(np.int64)
    scales = (120 + s % 4).astype(np.uint8)
    return blocks, scales


def gptoss_tensors():
    """A GPT-OSS text model under Hugging Face's names."""
    e, ff, hd = GPTOSS_EXPERTS, GPTOSS_FF, HIDDEN // HEADS
    t = {"model.embed_tokens.weight": values("embed", (len(tokenizer()["model"]["vocab"]), HIDDEN), 1.0),
         "model.norm.weight": 1 + values("norm", (HIDDEN,), 0.1),
         "lm_head.weight": values("head", (len(tokenizer()["model"]["vocab"]), HIDDEN), 0.2)}
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = 1 + values(p + "n1", (HIDDEN,), 0.1)
        t[p + "post_attention_layernorm.weight"] = 1 + values(p + "n2", (HIDDEN,), 0.1)
        for n, rows in (("q", HEADS * hd), ("k", KV_HEADS * hd), ("v", KV_HEADS * hd)):
            t[p + f"self_attn.{n}_proj.weight"] = values(p + n, (rows, HIDDEN), 0.3)
            t[p + f"self_attn.{n}_proj.bias"] = values(p + n + "b", (rows,), 0.1)
        t[p + "self_attn.o_proj.weight"] = values(p + "o", (HIDDEN, HEADS * hd), 0.3)
        t[p + "self_attn.o_proj.bias"] = values(p + "ob", (HIDDEN,), 0.1)
        t[p + "self_attn.sinks"] = values(p + "sinks", (HEADS,), 1.0)
        t[p + "mlp.router.weight"] = values(p + "r", (e, HIDDEN), 0.5)
        t[p + "mlp.router.bias"] = values(p + "rb", (e,), 0.1)
        blocks, scales = mxfp4(p + "gu", e, 2 * ff, HIDDEN)
        t[p + "mlp.experts.gate_up_proj_blocks"], t[p + "mlp.experts.gate_up_proj_scales"] = blocks, scales
        t[p + "mlp.experts.gate_up_proj_bias"] = values(p + "gub", (e, 2 * ff), 0.1)
        blocks, scales = mxfp4(p + "d", e, HIDDEN, ff)
        t[p + "mlp.experts.down_proj_blocks"], t[p + "mlp.experts.down_proj_scales"] = blocks, scales
        t[p + "mlp.experts.down_proj_bias"] = values(p + "db", (e, HIDDEN), 0.1)
    return t


QWEN35 = {"head_dim": 32, "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_num_key_heads": 2,
          "linear_num_value_heads": 4, "linear_conv_kernel_dim": 4}


def qwen35_tensors(vocab_size):
    """A Qwen 3.5 text model under the official checkpoints' names: layer 0 gated delta-net
    (linear attention), layer 1 full attention with an output gate folded into q_proj."""
    q = QWEN35
    hd, hk, hv, nk, nv = q["head_dim"], q["linear_key_head_dim"], q["linear_value_head_dim"], \
        q["linear_num_key_heads"], q["linear_num_value_heads"]
    m = "model.language_model."
    # Qwen 3.5's RMS norms scale by (1 + weight): weights are stored near zero.
    t = {m + "embed_tokens.weight": values("embed", (vocab_size, HIDDEN), 1.0),
         m + "norm.weight": values("norm", (HIDDEN,), 0.1),
         "lm_head.weight": values("head", (vocab_size, HIDDEN), 0.2)}
    for l in range(LAYERS):
        p = f"{m}layers.{l}."
        t[p + "input_layernorm.weight"] = values(p + "n1", (HIDDEN,), 0.1)
        t[p + "post_attention_layernorm.weight"] = values(p + "n2", (HIDDEN,), 0.1)
        t[p + "mlp.gate_proj.weight"] = values(p + "g", (FF, HIDDEN), 0.3)
        t[p + "mlp.up_proj.weight"] = values(p + "u", (FF, HIDDEN), 0.3)
        t[p + "mlp.down_proj.weight"] = values(p + "d", (HIDDEN, FF), 0.3)
        if l % 2 == 0:
            a = p + "linear_attn."
            conv = 2 * nk * hk + nv * hv
            t[a + "in_proj_qkv.weight"] = values(a + "qkv", (conv, HIDDEN), 0.3)
            t[a + "in_proj_z.weight"] = values(a + "z", (nv * hv, HIDDEN), 0.3)
            t[a + "in_proj_b.weight"] = values(a + "b", (nv, HIDDEN), 0.3)
            t[a + "in_proj_a.weight"] = values(a + "a", (nv, HIDDEN), 0.3)
            t[a + "A_log"] = values(a + "A", (nv,), 1.0)
            t[a + "dt_bias"] = values(a + "dt", (nv,), 0.5)
            t[a + "conv1d.weight"] = values(a + "conv", (conv, 1, q["linear_conv_kernel_dim"]), 0.4)
            t[a + "norm.weight"] = 1 + values(a + "norm", (hv,), 0.1)
            t[a + "out_proj.weight"] = values(a + "out", (HIDDEN, nv * hv), 0.3)
        else:
            s = p + "self_attn."
            t[s + "q_proj.weight"] = values(s + "q", (2 * HEADS * hd, HIDDEN), 0.3)
            t[s + "k_proj.weight"] = values(s + "k", (KV_HEADS * hd, HIDDEN), 0.3)
            t[s + "v_proj.weight"] = values(s + "v", (KV_HEADS * hd, HIDDEN), 0.3)
            t[s + "o_proj.weight"] = values(s + "o", (HIDDEN, HEADS * hd), 0.3)
            t[s + "q_norm.weight"] = values(s + "qn", (hd,), 0.1)
            t[s + "k_norm.weight"] = values(s + "kn", (hd,), 0.1)
    return t


QWEN35_MOE = {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
              "shared_expert_intermediate_size": 48, "norm_topk_prob": True}


def qwen35_moe_mlp(t):
    """Replaces each layer's dense MLP of a qwen35_tensors() model by a mixture of experts."""
    e, ff, sff = QWEN35_MOE["num_experts"], QWEN35_MOE["moe_intermediate_size"], \
        QWEN35_MOE["shared_expert_intermediate_size"]
    for l in range(LAYERS):
        p = f"model.language_model.layers.{l}.mlp."
        for n in ("gate_proj", "up_proj", "down_proj"):
            del t[p + n + ".weight"]
        t[p + "gate.weight"] = values(p + "router", (e, HIDDEN), 0.5)
        t[p + "shared_expert.gate_proj.weight"] = values(p + "sg", (sff, HIDDEN), 0.3)
        t[p + "shared_expert.up_proj.weight"] = values(p + "su", (sff, HIDDEN), 0.3)
        t[p + "shared_expert.down_proj.weight"] = values(p + "sd", (HIDDEN, sff), 0.3)
        t[p + "shared_expert_gate.weight"] = values(p + "sgate", (1, HIDDEN), 0.5)
        if l == 0:
            for x in range(e):
                t[p + f"experts.{x}.gate_proj.weight"] = values(p + f"e{x}g", (ff, HIDDEN), 0.3)
                t[p + f"experts.{x}.up_proj.weight"] = values(p + f"e{x}u", (ff, HIDDEN), 0.3)
                t[p + f"experts.{x}.down_proj.weight"] = values(p + f"e{x}d", (HIDDEN, ff), 0.3)
        else:
            t[p + "experts.gate_up_proj"] = values(p + "egu", (e, 2 * ff, HIDDEN), 0.3)
            t[p + "experts.down_proj"] = values(p + "ed", (e, HIDDEN, ff), 0.3)
    return t


def qwen35_mtp_tensors():
    """One multi-token-prediction layer under the official checkpoints' names."""
    hd = QWEN35["head_dim"]
    t = {"mtp.fc.weight": values("mtp.fc", (HIDDEN, 2 * HIDDEN), 0.2),
         "mtp.pre_fc_norm_embedding.weight": values("mtp.enorm", (HIDDEN,), 0.1),
         "mtp.pre_fc_norm_hidden.weight": values("mtp.hnorm", (HIDDEN,), 0.1),
         "mtp.norm.weight": values("mtp.norm", (HIDDEN,), 0.1)}
    p = "mtp.layers.0."
    t[p + "input_layernorm.weight"] = values(p + "n1", (HIDDEN,), 0.1)
    t[p + "post_attention_layernorm.weight"] = values(p + "n2", (HIDDEN,), 0.1)
    t[p + "self_attn.q_proj.weight"] = values(p + "q", (2 * HEADS * hd, HIDDEN), 0.3)
    t[p + "self_attn.k_proj.weight"] = values(p + "k", (KV_HEADS * hd, HIDDEN), 0.3)
    t[p + "self_attn.v_proj.weight"] = values(p + "v", (KV_HEADS * hd, HIDDEN), 0.3)
    t[p + "self_attn.o_proj.weight"] = values(p + "o", (HIDDEN, HEADS * hd), 0.3)
    t[p + "self_attn.q_norm.weight"] = values(p + "qn", (hd,), 0.1)
    t[p + "self_attn.k_norm.weight"] = values(p + "kn", (hd,), 0.1)
    t[p + "mlp.gate_proj.weight"] = values(p + "g", (FF, HIDDEN), 0.3)
    t[p + "mlp.up_proj.weight"] = values(p + "u", (FF, HIDDEN), 0.3)
    t[p + "mlp.down_proj.weight"] = values(p + "d", (HIDDEN, FF), 0.3)
    return t


# A tiny Qwen 3.5 vision tower (Qwen3_5VisionConfig, which is Qwen3-VL's vision config; that has
# no layer_norm_epsilon, so none is written and Ollama's 1e-6 default applies, and
# deepstack_visual_indexes is empty as in the published Qwen 3.5 configs). out_hidden_size is the text
# model's hidden size; num_position_embeddings a perfect square (a 4 x 4 grid).
QWEN35_VISION = {"model_type": "qwen3_5", "depth": 2, "hidden_size": 16, "hidden_act": "gelu_pytorch_tanh",
                 "intermediate_size": 32, "num_heads": 2, "in_channels": 3, "patch_size": 4,
                 "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": HIDDEN,
                 "num_position_embeddings": 16, "deepstack_visual_indexes": [], "initializer_range": 0.02}
# preprocessor_config.json as the published checkpoints ship it (Qwen2VLImageProcessorFast):
# size and the normalisation constants are only here, not in config.json. patch_size is the
# published 16, not the tower's 4: config.json's vision_config wins wherever it has a field, so
# a converter that read the preprocessor's instead would write image_size 64 and patch_size 16.
QWEN35_PREPROCESSOR = {"size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16,
                       "temporal_patch_size": 2, "merge_size": 2,
                       "image_mean": [0.48145466, 0.4578275, 0.40821073],
                       "image_std": [0.26862954, 0.26130258, 0.27577711],
                       "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor"}


# Qwen3-VL: the same tower with a deepstack merger after block 1, and a preprocessor whose patch
# size agrees with the tower's (Ollama's Qwen3-VL converter lets the preprocessor's fields
# override vision_config's, so equal values keep llama.cpp's --mmproj, which reads vision_config,
# comparable).
QWEN3VL_VISION = {**QWEN35_VISION, "model_type": "qwen3_vl", "deepstack_visual_indexes": [1]}
QWEN3VL_PREPROCESSOR = {**QWEN35_PREPROCESSOR, "patch_size": 4}
QWEN3VL_HEAD_DIM = 32
QWEN3VL_MROPE_SECTION = [6, 5, 5]


def qwen35_vision_tensors(v=None):
    """The Qwen 3.5 (Qwen3-VL) vision tower and its patch merger under the official checkpoints'
    names and shapes (transformers' Qwen3VLVisionModel): a Conv3d patch embedding over 2 frames,
    learned position embeddings, pre-norm blocks with LayerNorms (weights near one), a fused qkv
    projection and a GELU MLP, all with biases; the merger norms each patch's hidden state, then
    projects merge_size^2 neighbouring patches to the text model's hidden size. Each deepstack
    merger (one per deepstack_visual_indexes entry) is a merger whose norm is over the merged
    width (Qwen3VLVisionPatchMerger with use_postshuffle_norm)."""
    v = v or QWEN35_VISION
    h, ff, p, tp = v["hidden_size"], v["intermediate_size"], v["patch_size"], v["temporal_patch_size"]
    merged = h * v["spatial_merge_size"] ** 2
    m = "model.visual."
    t = {m + "patch_embed.proj.weight": values(m + "patch", (h, v["in_channels"], tp, p, p), 0.2),
         m + "patch_embed.proj.bias": values(m + "patchb", (h,), 0.1),
         m + "pos_embed.weight": values(m + "pos", (v["num_position_embeddings"], h), 0.2),
         m + "merger.norm.weight": 1 + values(m + "mnorm", (h,), 0.1),
         m + "merger.norm.bias": values(m + "mnormb", (h,), 0.1),
         m + "merger.linear_fc1.weight": values(m + "mfc1", (merged, merged), 0.2),
         m + "merger.linear_fc1.bias": values(m + "mfc1b", (merged,), 0.1),
         m + "merger.linear_fc2.weight": values(m + "mfc2", (v["out_hidden_size"], merged), 0.2),
         m + "merger.linear_fc2.bias": values(m + "mfc2b", (v["out_hidden_size"],), 0.1)}
    for k in range(len(v["deepstack_visual_indexes"])):
        d = f"{m}deepstack_merger_list.{k}."
        t[d + "norm.weight"] = 1 + values(d + "norm", (merged,), 0.1)
        t[d + "norm.bias"] = values(d + "normb", (merged,), 0.1)
        t[d + "linear_fc1.weight"] = values(d + "fc1", (merged, merged), 0.2)
        t[d + "linear_fc1.bias"] = values(d + "fc1b", (merged,), 0.1)
        t[d + "linear_fc2.weight"] = values(d + "fc2", (v["out_hidden_size"], merged), 0.2)
        t[d + "linear_fc2.bias"] = values(d + "fc2b", (v["out_hidden_size"],), 0.1)
    for l in range(v["depth"]):
        b = f"{m}blocks.{l}."
        for n in ("norm1", "norm2"):
            t[b + n + ".weight"] = 1 + values(b + n, (h,), 0.1)
            t[b + n + ".bias"] = values(b + n + "b", (h,), 0.1)
        for n, rows, cols in (("attn.qkv", 3 * h, h), ("attn.proj", h, h), ("mlp.linear_fc1", ff, h),
                              ("mlp.linear_fc2", h, ff)):
            t[b + n + ".weight"] = values(b + n, (rows, cols), 0.2)
            t[b + n + ".bias"] = values(b + n + "b", (rows,), 0.1)
    return t


def make(out, dtype, variant=None):
    # "gemma3v": Gemma3ForConditionalGeneration, the Gemma 3 text model with a SigLIP vision tower.
    vision = variant == "gemma3v"
    gemma = "gemma3" if vision else variant if variant in ("gemma", "gemma2", "gemma3") else None
    phi3, olmo3, ministral3 = variant == "phi3", variant == "olmo3", variant == "ministral3"
    cohere = variant == "cohere"
    qwen3vl = variant == "qwen3vl"
    spm, qwen2 = variant in ("spm", "phi3") or gemma is not None, variant == "qwen2"
    os.makedirs(out, exist_ok=True)
    tok = tokenizer()
    vocab_size = len(tok["model"]["vocab"])
    if spm:
        model, vocab_size = spm_model()
        with open(os.path.join(out, "tokenizer.model"), "wb") as f:
            f.write(model)
    if phi3:
        # Phi-3's end-of-text token comes from added_tokens.json (llama.cpp also requires it of
        # any model named phi3).
        with open(os.path.join(out, "added_tokens.json"), "w") as f:
            json.dump({"<|endoftext|>": vocab_size}, f)
        vocab_size += 1
    # Gemma: a head size that is not hidden / heads, embeddings tied to the output, norm weights
    # stored as (weight - 1); Gemma 3 also with embedding rows past the vocabulary.
    head_dim = 24 if gemma or ministral3 else QWEN3VL_HEAD_DIM if qwen3vl else HIDDEN // HEADS
    norm_base = 0 if gemma else 1
    embed_rows = vocab_size + 16 if gemma == "gemma3" else vocab_size
    t = {"model.embed_tokens.weight": values("embed", (embed_rows, HIDDEN), 1.0),
         "model.norm.weight": norm_base + values("norm", (HIDDEN,), 0.1)}
    if not gemma:
        t["lm_head.weight"] = values("head", (vocab_size, HIDDEN), 0.2)
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = norm_base + values(p + "n1", (HIDDEN,), 0.1)
        t[p + "post_attention_layernorm.weight"] = norm_base + values(p + "n2", (HIDDEN,), 0.1)
        if gemma in ("gemma2", "gemma3"):
            t[p + "pre_feedforward_layernorm.weight"] = values(p + "n3", (HIDDEN,), 0.1)
            t[p + "post_feedforward_layernorm.weight"] = values(p + "n4", (HIDDEN,), 0.1)
        if gemma == "gemma3" or qwen3vl:
            t[p + "self_attn.q_norm.weight"] = norm_base + values(p + "qn", (head_dim,), 0.1)
            t[p + "self_attn.k_norm.weight"] = norm_base + values(p + "kn", (head_dim,), 0.1)
        t[p + "self_attn.q_proj.weight"] = values(p + "q", (HEADS * head_dim, HIDDEN), 0.3)
        t[p + "self_attn.k_proj.weight"] = values(p + "k", (KV_HEADS * head_dim, HIDDEN), 0.3)
        t[p + "self_attn.v_proj.weight"] = values(p + "v", (KV_HEADS * head_dim, HIDDEN), 0.3)
        t[p + "self_attn.o_proj.weight"] = values(p + "o", (HIDDEN, HEADS * head_dim), 0.3)
        t[p + "mlp.gate_proj.weight"] = values(p + "g", (FF, HIDDEN), 0.3)
        t[p + "mlp.up_proj.weight"] = values(p + "u", (FF, HIDDEN), 0.3)
        t[p + "mlp.down_proj.weight"] = values(p + "d", (HIDDEN, FF), 0.3)
        if qwen2:
            t[p + "self_attn.q_proj.bias"] = values(p + "qb", (HEADS * head_dim,), 0.1)
            t[p + "self_attn.k_proj.bias"] = values(p + "kb", (KV_HEADS * head_dim,), 0.1)
            t[p + "self_attn.v_proj.bias"] = values(p + "vb", (KV_HEADS * head_dim,), 0.1)
    if cohere:
        # Command-R: one layer norm per layer (attention and MLP run in parallel on it), tied
        # embeddings.
        del t["lm_head.weight"]
        for l in range(LAYERS):
            del t[f"model.layers.{l}.post_attention_layernorm.weight"]
    if olmo3:
        # OLMo 2/3: norms after attention and feed-forward, q/k norms over whole projections.
        for l in range(LAYERS):
            p = f"model.layers.{l}."
            del t[p + "input_layernorm.weight"]
            t[p + "post_feedforward_layernorm.weight"] = 1 + values(p + "n4", (HIDDEN,), 0.1)
            t[p + "self_attn.q_norm.weight"] = 1 + values(p + "qn", (HEADS * head_dim,), 0.1)
            t[p + "self_attn.k_norm.weight"] = 1 + values(p + "kn", (KV_HEADS * head_dim,), 0.1)
    if vision:
        t = {"language_model." + k: v for k, v in t.items()}
        t.update(vision_tensors())
    if phi3:
        # Phi-3 stores q, k and v as one matrix, and gate and up as another.
        for l in range(LAYERS):
            p = f"model.layers.{l}."
            t[p + "self_attn.qkv_proj.weight"] = np.concatenate(
                [t.pop(p + f"self_attn.{x}_proj.weight") for x in "qkv"])
            t[p + "mlp.gate_up_proj.weight"] = np.concatenate(
                [t.pop(p + "mlp.gate_proj.weight"), t.pop(p + "mlp.up_proj.weight")])
    if qwen3vl:
        t = {k.replace("model.", "model.language_model.", 1): v for k, v in t.items()}
        t.update(qwen35_vision_tensors(QWEN3VL_VISION))
    if variant == "gptoss":
        t = gptoss_tensors()
    if variant in ("qwen35", "qwen35mtp", "qwen35moe", "qwen35v"):
        t = qwen35_tensors(vocab_size)
    if variant == "qwen35v":
        t.update(qwen35_vision_tensors())
    if variant == "qwen35moe":
        t = qwen35_moe_mlp(t)
    if variant == "qwen35mtp":
        t.update(qwen35_mtp_tensors())
    write_safetensors(os.path.join(out, "model.safetensors"), t, dtype)
    bos, eos, eot = (1, 2, 2) if spm else (vocab_size - 3, vocab_size - 2, vocab_size - 1)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
              "intermediate_size": FF, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
              "num_hidden_layers": LAYERS, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
              "rope_theta": 500000.0, "vocab_size": vocab_size, "tie_word_embeddings": False,
              "bos_token_id": bos, "eos_token_id": eos, "hidden_act": "silu",
              "torch_dtype": "bfloat16" if dtype == "bf16" else "float32",
              "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}
    if qwen2:
        config.update({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "rope_theta": 1000000.0,
                       "use_sliding_window": False, "sliding_window": 2048, "max_window_layers": LAYERS})
        del config["rope_scaling"]
    if gemma:
        config.update({"architectures": [{"gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM",
                                          "gemma3": "Gemma3ForCausalLM"}[gemma]],
                       "model_type": {"gemma3": "gemma3_text"}.get(gemma, gemma), "head_dim": head_dim,
                       "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
                       "hidden_activation": "gelu_pytorch_tanh", "hidden_act": "gelu_pytorch_tanh",
                       "pad_token_id": 0, "attention_bias": False})
        del config["rope_scaling"]
        if gemma in ("gemma2", "gemma3"):
            config.update({"sliding_window": 512, "query_pre_attn_scalar": head_dim,
                           "final_logit_softcapping": 30.0})
        if gemma == "gemma2":
            config["attn_logit_softcapping"] = 50.0
        if gemma == "gemma3":
            config.update({"rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
                           "sliding_window_pattern": 6, "attn_logit_softcapping": None,
                           "final_logit_softcapping": None})
    if vision:
        text = {k: v for k, v in config.items() if k not in ("architectures", "torch_dtype")}
        text["model_type"] = "gemma3_text"
        config = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                  "torch_dtype": config["torch_dtype"], "text_config": text, "vision_config": VISION,
                  "mm_tokens_per_image": 4, "boi_token_index": 3, "eoi_token_index": 4,
                  "image_token_index": 5, "initializer_range": 0.02}
    if cohere:
        del config["rope_scaling"]
        del config["rms_norm_eps"]
        config.update({"architectures": ["CohereForCausalLM"], "model_type": "cohere", "layer_norm_eps": 1e-5,
                       "logit_scale": 0.0625, "rope_theta": 8000000.0, "use_qk_norm": False,
                       "tie_word_embeddings": True, "attention_bias": False})
    if ministral3:
        del config["rope_scaling"]
        del config["rope_theta"]
        config.update({"architectures": ["Ministral3ForCausalLM"], "model_type": "ministral3", "head_dim": head_dim,
                       "sliding_window": None, "rope_parameters": {
                           "rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 64,
                           "llama_4_scaling_beta": 0.1, "mscale": 1.0, "mscale_all_dim": 1.0,
                           "beta_fast": 32.0, "beta_slow": 1.0, "rope_theta": 1000000.0}})
    if olmo3:
        config.update({"architectures": ["Olmo3ForCausalLM"], "model_type": "olmo3", "rms_norm_eps": 1e-6,
                       "sliding_window": 4096, "layer_types": ["sliding_attention", "full_attention"],
                       "attention_bias": False, "pad_token_id": vocab_size - 1,
                       "rope_scaling": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 64,
                                        "beta_fast": 32.0, "beta_slow": 1.0}})
    if phi3:
        half = head_dim // 2
        config.update({"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "rope_theta": 10000.0,
                       "max_position_embeddings": 4096, "original_max_position_embeddings": 256,
                       "sliding_window": 2047, "attention_bias": False, "resid_pdrop": 0.0,
                       "rope_scaling": {"type": "longrope",
                                        "long_factor": [1.0 + 0.5 * i for i in range(half)],
                                        "short_factor": [1.0 + 0.125 * i for i in range(half)]}})
    if variant == "gptoss":
        config = {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": HIDDEN,
                  "intermediate_size": GPTOSS_FF, "num_attention_heads": HEADS,
                  "num_key_value_heads": KV_HEADS, "head_dim": HIDDEN // HEADS, "num_hidden_layers": LAYERS,
                  "num_local_experts": GPTOSS_EXPERTS, "experts_per_token": GPTOSS_USED,
                  "num_experts_per_tok": GPTOSS_USED, "max_position_embeddings": 131072,
                  "initial_context_length": 4096, "rms_norm_eps": 1e-5, "rope_theta": 150000,
                  "sliding_window": 128, "attention_bias": True, "swiglu_limit": 7.0,
                  "layer_types": ["sliding_attention", "full_attention"], "vocab_size": vocab_size,
                  "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "bfloat16",
                  "eos_token_id": eos, "pad_token_id": eot,
                  "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                                   "original_max_position_embeddings": 4096, "rope_type": "yarn",
                                   "truncate": False},
                  "quantization_config": {"quant_method": "mxfp4",
                                          "modules_to_not_convert": ["model.layers.*.self_attn",
                                                                     "model.layers.*.mlp.router",
                                                                     "model.embed_tokens", "lm_head"]}}
    if variant in ("qwen35", "qwen35mtp", "qwen35moe", "qwen35v"):
        text = {"model_type": "qwen3_5_text", "hidden_size": HIDDEN, "intermediate_size": FF,
                "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
                "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "vocab_size": vocab_size,
                "tie_word_embeddings": False, "hidden_act": "silu", "attn_output_gate": True,
                "layer_types": ["linear_attention", "full_attention"], "full_attention_interval": 2,
                "mtp_num_hidden_layers": 1 if variant == "qwen35mtp" else 0, "bos_token_id": bos, "eos_token_id": eos,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                                    "mrope_interleaved": True, "mrope_section": [2, 1, 1]}, **QWEN35}
        arch, model_type = "Qwen3_5ForConditionalGeneration", "qwen3_5"
        if variant == "qwen35moe":
            del text["intermediate_size"]
            text.update({"model_type": "qwen3_5_moe_text", **QWEN35_MOE})
            arch, model_type = "Qwen3_5MoeForConditionalGeneration", "qwen3_5_moe"
        config = {"architectures": [arch], "model_type": model_type,
                  "torch_dtype": config["torch_dtype"], "tie_word_embeddings": False, "text_config": text,
                  "image_token_id": vocab_size + 10, "vision_start_token_id": vocab_size + 11,
                  "vision_end_token_id": vocab_size + 12}
        if variant == "qwen35v":
            config["vision_config"] = QWEN35_VISION
    if qwen3vl:
        text = {"model_type": "qwen3_vl_text", "hidden_size": HIDDEN, "intermediate_size": FF,
                "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
                "head_dim": head_dim, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
                "vocab_size": vocab_size, "tie_word_embeddings": False, "hidden_act": "silu",
                "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": bos, "eos_token_id": eos,
                "rope_theta": 5000000, "rope_scaling": {"rope_type": "default", "mrope_section": QWEN3VL_MROPE_SECTION,
                                                        "mrope_interleaved": True},
                "dtype": config["torch_dtype"]}
        config = {"architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
                  "torch_dtype": config["torch_dtype"], "tie_word_embeddings": False, "text_config": text,
                  "vision_config": QWEN3VL_VISION, "image_token_id": vocab_size + 10,
                  "video_token_id": vocab_size + 13, "vision_start_token_id": vocab_size + 11,
                  "vision_end_token_id": vocab_size + 12}
    template = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
    tok_config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "add_bos_token": True,
                  "add_eos_token": False, "chat_template": template, "model_max_length": 2048,
                  "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": True}
    files = {"config.json": config, "tokenizer.json": tok, "tokenizer_config.json": tok_config,
             "generation_config.json": {"bos_token_id": bos, "eos_token_id": [eos, eot]}}
    if variant == "qwen35v":
        files["preprocessor_config.json"] = QWEN35_PREPROCESSOR
    if qwen3vl:
        files["preprocessor_config.json"] = QWEN3VL_PREPROCESSOR
    if spm:
        del files["tokenizer.json"]
        tok_config.update({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                           "tokenizer_class": "LlamaTokenizer", "legacy": False})
    for name, value in files.items():
        with open(os.path.join(out, name), "w") as f:
            json.dump(value, f, indent=1)


def reference(folder, out, outtype, script, *extra):
    sys.path.insert(0, os.path.dirname(script))
    sys.argv = [script, folder, "--outfile", out, "--outtype", outtype, *extra]
    import importlib.util
    spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import conversion.base
    model_type = json.load(open(os.path.join(folder, "config.json")))["model_type"]
    pre = {"qwen2": "qwen2", "qwen3_5": "qwen35", "qwen3_5_moe": "qwen35", "qwen3_vl": "qwen2"}.get(model_type, "llama-bpe")
    conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
    mod.main()


if __name__ == "__main__":
    if sys.argv[1] == "make":
        variant = sys.argv[4] if len(sys.argv) > 4 else None
        if variant == "wide":
            # The Llama with rows of 256 and 512 values, so that every k-quant fits them.
            HIDDEN, FF, variant = 256, 512, None
        make(sys.argv[2], sys.argv[3], variant)
    elif sys.argv[1] == "reference":
        reference(*sys.argv[2:])
    else:
        sys.exit(__doc__)
