#!/usr/bin/env python3
"""Drives a server with the official Ollama Python client (ollama==0.6.3), unchanged.

  ollama_client.py HOST MODEL.gguf [SAFETENSORS_DIR]
      prints one JSON document with everything observed; with a Hugging Face folder, also uploads
      its files and creates a quantized model from them, as `ollama create` does for a directory
"""
import json
import os
import sys

import httpx
import ollama


def statuses(stream):
    out = []
    for p in stream:
        d = p.model_dump(exclude_none=True) if hasattr(p, "model_dump") else dict(p)
        out.append({k: v for k, v in d.items() if v not in (None, "")})
    return out


def main():
    host, path = sys.argv[1], sys.argv[2]
    c = ollama.Client(host=host)
    r = {}
    digest = c.create_blob(path)
    r["blob_digest"] = digest
    r["create_files"] = statuses(c.create(model="llama3.1:8b-instruct-fp16", files={"model.gguf": digest}, stream=True))
    r["create_quantized"] = statuses(
        c.create(model="llama3.1:quantized", from_="llama3.1:8b-instruct-fp16", quantize="q4_K_M", stream=True))
    final = c.create(model="llama3.1:with-system", from_="llama3.1:quantized", system="You are kiln.",
                     parameters={"temperature": 0.6, "stop": ["<|end|>"]}, stream=False)
    r["create_nostream"] = final.model_dump(exclude_none=True)
    try:
        c.create(model="bad", from_="llama3.1:quantized", quantize="q9_x")
        r["bad_quantize"] = None
    except ollama.ResponseError as e:
        r["bad_quantize"] = {"status": e.status_code, "error": e.error}
    try:
        list(c.create(model="again", from_="llama3.1:quantized", quantize="q4_K_M", stream=True))
        r["requantize"] = None
    except ollama.ResponseError as e:
        r["requantize"] = {"status": e.status_code, "error": e.error}
    try:
        list(c.create(model="bad-template", from_="llama3.1:quantized", template="{{ .Prompt", stream=True))
        r["bad_template"] = None
    except ollama.ResponseError as e:
        r["bad_template"] = {"status": e.status_code, "error": e.error}
    r["list"] = [{"model": m.model, "size": m.size, "digest": m.digest,
                  "quantization_level": m.details.quantization_level, "format": m.details.format,
                  "family": m.details.family} for m in c.list().models]
    show = c.show("llama3.1:with-system")
    r["show"] = {"system": show.get("system"), "modelfile_has_system": "You are kiln." in (show.modelfile or ""), "parameters": show.parameters, "quantization_level": show.details.quantization_level,
                 "arch": (show.modelinfo or {}).get("general.architecture"), "capabilities": show.capabilities}
    c.copy("llama3.1:quantized", "kiln/copy:v1")
    r["after_copy"] = sorted(m.model for m in c.list().models)
    c.delete("kiln/copy:v1")
    c.delete("llama3.1:with-system")
    r["after_delete"] = sorted(m.model for m in c.list().models)
    try:
        c.delete("does-not-exist")
        r["delete_missing"] = None
    except ollama.ResponseError as e:
        r["delete_missing"] = {"status": e.status_code, "error": e.error}
    r["ps"] = [m.model for m in c.ps().models]
    raw = httpx.get(host + "/api/version")
    r["version"] = {"status": raw.status_code, "body": raw.text, "content_type": raw.headers.get("content-type")}
    # The documented curl request, verbatim, as raw NDJSON.
    doc = httpx.post(host + "/api/create", content=b'{"model": "llama3.1:quantized2", "from": "llama3.1:8b-instruct-fp16", "quantize": "q4_K_M"}', timeout=120)
    r["documented"] = {"status": doc.status_code, "content_type": doc.headers.get("content-type"),
                       "lines": [json.loads(l) for l in doc.text.splitlines() if l.strip()]}
    r["head_missing_blob"] = httpx.head(host + "/api/blobs/sha256:" + "0" * 64).status_code
    r["bad_digest_upload"] = httpx.post(host + "/api/blobs/sha256:" + "1" * 64, content=b"abc").json()
    r["chat"] = httpx.post(host + "/api/chat", json={"model": "x"}).status_code
    if len(sys.argv) > 3:
        folder = sys.argv[3]
        files = {}
        for root, _, names in os.walk(folder):
            for name in names:
                full = os.path.join(root, name)
                files[os.path.relpath(full, folder).replace(os.sep, "/")] = c.create_blob(full)
        r["create_safetensors"] = statuses(c.create(model="minilm:q8_0", files=files, quantize="q8_0", stream=True))
        show = c.show("minilm:q8_0")
        r["show_safetensors"] = {"arch": (show.modelinfo or {}).get("general.architecture"),
                                 "quantization_level": show.details.quantization_level,
                                 "family": show.details.family, "capabilities": show.capabilities}
    print(json.dumps(r))


if __name__ == "__main__":
    main()
