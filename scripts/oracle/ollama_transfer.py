#!/usr/bin/env python3
"""Drives pull and push through servers with the official Ollama Python client (ollama==0.6.3).

  ollama_transfer.py SOURCE_HOST DEST_HOST FROM_HOST REGISTRY MODEL.gguf
      SOURCE_HOST holds the model and pushes it to REGISTRY (host:port, plain HTTP);
      DEST_HOST starts empty and pulls it back; FROM_HOST starts empty and creates a quantized
      model `from` the registry name, which it must pull first. Prints one JSON document with
      everything observed.
"""
import json
import sys

import httpx

import ollama


def lines(stream):
    out = []
    for p in stream:
        d = p.model_dump(exclude_none=True)
        out.append({k: v for k, v in d.items() if v not in (None, "")})
    return out


def failure(call):
    try:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "model_dump"):
            list(result)
        return None
    except ollama.ResponseError as e:
        return {"status": e.status_code, "error": e.error}


def main():
    source_host, dest_host, from_host, registry, path = sys.argv[1:6]
    src = ollama.Client(host=source_host)
    dst = ollama.Client(host=dest_host)
    via_from = ollama.Client(host=from_host)
    name = f"{registry}/kiln/tiny:f16"
    r = {"name": name}
    digest = src.create_blob(path)
    r["create"] = lines(src.create(model=name, files={"model.gguf": digest}, stream=True))
    r["push"] = lines(src.push(name, insecure=True, stream=True))
    r["push_again"] = src.push(name, insecure=True, stream=False).model_dump(exclude_none=True)
    r["pull"] = lines(dst.pull(name, insecure=True, stream=True))
    r["pull_again"] = dst.pull(name, insecure=True, stream=False).model_dump(exclude_none=True)
    r["list"] = sorted(m.model for m in dst.list().models)
    r["pull_missing_tag"] = failure(lambda: dst.pull(f"{registry}/kiln/tiny:nope", insecure=True, stream=True))
    r["pull_missing_nostream"] = failure(lambda: dst.pull(f"{registry}/kiln/tiny:nope", insecure=True))
    r["pull_bad_name"] = failure(lambda: dst.pull("bad name!", insecure=True))
    # The client refuses an empty model itself; the server's answer is seen on the wire.
    raw = httpx.post(f"{dest_host}/api/push", json={"insecure": True})
    r["push_no_model"] = {"status": raw.status_code, "body": raw.json()}
    r["push_missing_local"] = failure(lambda: dst.push(f"{registry}/kiln/absent:v1", insecure=True, stream=True))
    r["create_from_registry"] = lines(
        via_from.create(model="kiln/derived:q8", from_=name, quantize="q8_0", stream=True))
    r["from_list"] = sorted(m.model for m in via_from.list().models)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
