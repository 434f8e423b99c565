// Drives pull and push through servers with the official Ollama JavaScript client (npm ollama,
// pinned by scripts/setup-js.sh), unchanged. It sends the deprecated `name` field, as it does.
//
//   node ollama_transfer.mjs CLIENT_DIR SOURCE_HOST DEST_HOST MODEL
//       SOURCE_HOST holds MODEL (a registry name, plain HTTP) and pushes it; DEST_HOST starts
//       empty and pulls it. Prints one JSON document with everything observed.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [clientDir, sourceHost, destHost, name] = process.argv.slice(2);
const { Ollama } = await import(
  pathToFileURL(join(clientDir, "node_modules/ollama/dist/index.mjs")).href
);

const clean = (p) =>
  Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined && v !== "" && v !== null));

async function lines(stream) {
  const out = [];
  for await (const p of stream) out.push(clean(p));
  return out;
}

async function failure(call) {
  try {
    const result = await call();
    if (result && typeof result[Symbol.asyncIterator] === "function") {
      for await (const p of result) {
        if (p.error) return { streamed: p.error };
      }
    }
    return null;
  } catch (e) {
    return { status: e.status_code ?? null, error: e.error ?? e.message };
  }
}

const src = new Ollama({ host: sourceHost });
const dst = new Ollama({ host: destHost });
const r = {};
r.push = await lines(await src.push({ model: name, insecure: true, stream: true }));
r.push_again = clean(await src.push({ model: name, insecure: true }));
r.pull = await lines(await dst.pull({ model: name, insecure: true, stream: true }));
r.pull_again = clean(await dst.pull({ model: name, insecure: true }));
r.list = (await dst.list()).models.map((m) => m.model).sort();
const missing = name.replace(/:[^:/]+$/, ":nope");
r.pull_missing_tag = await failure(() => dst.pull({ model: missing, insecure: true, stream: true }));
r.pull_missing_nostream = await failure(() => dst.pull({ model: missing, insecure: true }));
r.pull_bad_name = await failure(() => dst.pull({ model: "bad name!", insecure: true }));
console.log(JSON.stringify(r));
