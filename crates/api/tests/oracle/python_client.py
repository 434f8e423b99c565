"""Drive the official ollama Python client (ollama 0.6.3) against kiln-encoded responses.

Reads {"responses": {"<METHOD> <path>": {"status": int, "content_type": str, "body": str}}} on stdin.
Every client call goes through httpx.MockTransport, so the real client code builds the requests and
parses the responses, with no sockets. Prints {"requests": [...], "results": {...}} on stdout.
"""

import json
import sys

import httpx
import ollama

spec = json.load(sys.stdin)
responses = spec["responses"]
requests = []


def handler(request: httpx.Request) -> httpx.Response:
    key = f"{request.method} {request.url.path}"
    requests.append(
        {
            "method": request.method,
            "path": request.url.path,
            "content_type": request.headers.get("content-type"),
            "body": request.content.decode("utf-8"),
        }
    )
    r = responses[key]
    # A request may be answered differently the second time (stream vs. single object).
    if isinstance(r, list):
        r = r.pop(0)
    return httpx.Response(
        r["status"], headers={"content-type": r["content_type"]}, content=r["body"].encode("utf-8")
    )


client = ollama.Client(host="http://kiln.test:11434", transport=httpx.MockTransport(handler))
results = {}

create_args = dict(
    model="mario",
    quantize="q4_K_M",
    from_="llama3.2",
    files={"model.gguf": "sha256:" + "ab" * 32},
    adapters={"lora.gguf": "sha256:" + "cd" * 32},
    template="{{ .System }}<|user|>{{ .Prompt }}",
    license=["MIT", "Apache-2.0"],
    system="You are Mario & <Luigi>.",
    parameters={"temperature": 0.7, "num_ctx": 4096, "stop": ["<|eot_id|>"]},
    messages=[
        {"role": "user", "content": "hi", "images": ["Zm9vYg=="]},
        {"role": "assistant", "content": "hello"},
    ],
)
results["create_stream"] = [p.model_dump() for p in client.create(stream=True, **create_args)]
results["create_single"] = client.create(model="m2", from_="mario", stream=False).model_dump()

show = client.show("llava")
results["show"] = {
    "modified_at": show.modified_at.isoformat(),
    "template": show.template,
    "license": show.license,
    "modelfile": show.modelfile,
    "parameters": show.parameters,
    "capabilities": show.capabilities,
    "modelinfo": show.modelinfo,
    "details": show.details.model_dump(),
}

listed = client.list()
results["list"] = [
    {
        "model": m.model,
        "modified_at": m.modified_at.isoformat(),
        "size": int(m.size),
        "digest": m.digest,
        "details": m.details.model_dump(),
    }
    for m in listed.models
]

ps = client.ps()
results["ps"] = [
    {
        "model": m.model,
        "name": m.name,
        "expires_at": m.expires_at.isoformat(),
        "size": int(m.size),
        "size_vram": int(m.size_vram),
        "context_length": m.context_length,
        "details": m.details.model_dump(),
    }
    for m in ps.models
]

results["copy"] = client.copy("llama3.2", "llama3-backup").status
results["delete"] = client.delete("llama3:13b").status

errors = {}
try:
    client.show("missing")
except ollama.ResponseError as e:
    errors["show_404"] = {"error": e.error, "status_code": e.status_code}
try:
    for _ in client.create(model="bad", from_="x", stream=True):
        pass
except ollama.ResponseError as e:
    errors["stream_error"] = {"error": e.error, "status_code": e.status_code}
results["errors"] = errors

json.dump({"requests": requests, "results": results}, sys.stdout)
