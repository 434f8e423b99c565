//! What `show` reads from a safetensors ("experimental", MLX) model, as Ollama's x/server/show.go
//! reads it: Ollama's x/create stores such a model as one `application/vnd.ollama.image.tensor`
//! layer per tensor (or per packed group of tensors), each blob a small safetensors file, plus
//! `application/vnd.ollama.image.json` layers for `config.json` and the tokenizer files. There
//! is no GGUF: `model_info` comes from `config.json` and the tensor blobs' headers.
//!
//! Where Ollama skips a tensor blob it cannot open or parse (and answers with what is left), kiln
//! reports the blob instead (kiln's show never answers a damaged model with partial fields); a
//! model that simply has no `config.json` layer is answered as Ollama answers it, without
//! `model_info`.

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use kiln_go::json::match_field;
use kiln_go::strings::to_lower;

/// Ollama's `quant.Canonical`: the canonical name of a quantization type, aliases resolved, `""`
/// for one it does not know. (Only ASCII names can match, so Rust's case mapping gives Go's
/// answers.)
fn canonical_quant(quant_type: &str) -> &'static str {
    match quant_type.trim().to_uppercase().as_str() {
        "NVFP4" => "nvfp4",
        "MXFP4" => "mxfp4",
        "MXFP8" => "mxfp8",
        "INT4" | "FP4" | "Q4" => "int4",
        "INT8" | "FP8" | "Q8" => "int8",
        _ => "",
    }
}

/// Ollama's `quant.Bits`: 0 for an empty or unknown type.
fn quant_bits(quant_type: &str) -> i64 {
    match canonical_quant(quant_type) {
        "nvfp4" | "mxfp4" | "int4" => 4,
        "mxfp8" | "int8" => 8,
        _ => 0,
    }
}

/// Ollama's `quant.PackFactor`: how many quantized values one U32 word holds, 0 when unknown.
fn pack_factor(quant_type: &str) -> i64 {
    match quant_bits(quant_type) {
        0 => 0,
        bits => 32 / bits,
    }
}

/// x/server/show.go `canonicalQuantType`: trimmed and lower-cased, as `show` prints it.
fn display_quant(quant_type: &str) -> String {
    to_lower(quant_type.trim())
}

/// A Go struct as `encoding/json` fills one: keys matched to fields exactly, else by Go's case
/// folding; unknown keys skipped; entries applied in document order (a repeated key's last value
/// wins); `null` leaves a value field as it was.
trait GoStruct {
    /// The JSON names, in field order.
    const FIELDS: &'static [&'static str];
    /// Decodes the value of field `index` into `self`.
    fn field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error>;
}

struct Fill<'a, T>(&'a mut T);

impl<'de, T: GoStruct> DeserializeSeed<'de> for Fill<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: GoStruct> Visitor<'de> for Fill<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match match_field(T::FIELDS.iter().copied(), &key) {
                Some(i) => self.0.field(i, &mut map)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A Go pointer-to-struct field: `null` sets it to nil, an object fills the struct it points to
/// (a new one when nil).
struct FillPointer<'a, T>(&'a mut Option<T>);

impl<'de, T: GoStruct + Default> DeserializeSeed<'de> for FillPointer<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T: GoStruct + Default> Visitor<'de> for FillPointer<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or null")
    }
    fn visit_none<E>(self) -> Result<(), E> {
        *self.0 = None;
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        *self.0 = None;
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        Fill(self.0.get_or_insert_with(T::default)).deserialize(d)
    }
}

/// A Go value field: `null` keeps it.
fn set<'de, A: MapAccess<'de>, V: de::Deserialize<'de>>(
    map: &mut A,
    slot: &mut V,
) -> Result<(), A::Error> {
    if let Some(v) = map.next_value::<Option<V>>()? {
        *slot = v;
    }
    Ok(())
}

/// A Go slice field: `null` makes it nil; an array replaces it, a `null` element keeping the
/// element that was at its index.
fn set_slice<'de, A: MapAccess<'de>, V: de::Deserialize<'de> + Default + Clone>(
    map: &mut A,
    slot: &mut Vec<V>,
) -> Result<(), A::Error> {
    let items = map
        .next_value::<Option<Vec<Option<V>>>>()?
        .unwrap_or_default();
    *slot = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.unwrap_or_else(|| slot.get(i).cloned().unwrap_or_default()))
        .collect();
    Ok(())
}

/// Decodes `json` into `target` as Go's `json.Unmarshal` would (invalid UTF-8 becomes U+FFFD).
fn unmarshal<T: GoStruct>(json: &[u8], target: &mut T) -> Result<(), String> {
    let text = kiln_go::json::lossy_utf8(json);
    let mut d = serde_json::Deserializer::from_str(&text);
    Fill(target)
        .deserialize(&mut d)
        .and_then(|()| d.end())
        .map_err(|e| e.to_string())
}

/// The `config.json` fields Ollama reads (x/server/show.go `modelConfig`, a Hugging Face
/// config). The floats are decoded only so that a value of the wrong type fails as in Go.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct HfConfig {
    architectures: Vec<String>,
    model_type: String,
    hidden_size: i64,
    num_hidden_layers: i64,
    max_position_embeddings: i64,
    intermediate_size: i64,
    num_attention_heads: i64,
    num_key_value_heads: i64,
    vocab_size: i64,
    rms_norm_eps: f64,
    rope_theta: f64,
    /// `torch_dtype`.
    pub(crate) torch_dtype: String,
    text_config: Option<TextConfig>,
}

/// `modelConfig.TextConfig`, a multimodal model's language model.
#[derive(Debug, Default, Clone, PartialEq)]
struct TextConfig {
    hidden_size: i64,
    max_position_embeddings: i64,
    num_hidden_layers: i64,
}

impl GoStruct for HfConfig {
    const FIELDS: &'static [&'static str] = &[
        "architectures",
        "model_type",
        "hidden_size",
        "num_hidden_layers",
        "max_position_embeddings",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "rms_norm_eps",
        "rope_theta",
        "torch_dtype",
        "text_config",
    ];
    fn field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => set_slice(map, &mut self.architectures),
            1 => set(map, &mut self.model_type),
            2 => set(map, &mut self.hidden_size),
            3 => set(map, &mut self.num_hidden_layers),
            4 => set(map, &mut self.max_position_embeddings),
            5 => set(map, &mut self.intermediate_size),
            6 => set(map, &mut self.num_attention_heads),
            7 => set(map, &mut self.num_key_value_heads),
            8 => set(map, &mut self.vocab_size),
            9 => set(map, &mut self.rms_norm_eps),
            10 => set(map, &mut self.rope_theta),
            11 => set(map, &mut self.torch_dtype),
            _ => map.next_value_seed(FillPointer(&mut self.text_config)),
        }
    }
}

impl GoStruct for TextConfig {
    const FIELDS: &'static [&'static str] = &[
        "hidden_size",
        "max_position_embeddings",
        "num_hidden_layers",
    ];
    fn field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => set(map, &mut self.hidden_size),
            1 => set(map, &mut self.max_position_embeddings),
            _ => set(map, &mut self.num_hidden_layers),
        }
    }
}

impl HfConfig {
    /// Decodes a `config.json` blob; the error is Go's decode failing.
    pub(crate) fn parse(json: &[u8]) -> Result<HfConfig, String> {
        let mut config = HfConfig::default();
        unmarshal(json, &mut config)?;
        Ok(config)
    }

    /// x/server/show.go `buildModelInfo`: `model_info` from the config and the tensor layers'
    /// total size and count. The architecture is `model_type`, else the first of `architectures`
    /// lower-cased without its `ForCausalLM`/`ForConditionalGeneration` suffix; `text_config`'s
    /// sizes win when positive; each size appears only when positive. The parameter count is
    /// estimated from the bytes (150 bytes of header per tensor blob, bytes per parameter from
    /// `torch_dtype`, 2 when unknown); [`parameter_count`] replaces it when it can.
    pub(crate) fn model_info(&self, tensor_bytes: i64, tensor_count: i64) -> kiln_api::AnyMap {
        let mut arch = self.model_type.clone();
        if arch.is_empty()
            && let Some(first) = self.architectures.first()
        {
            let lower = to_lower(first);
            let lower = lower.strip_suffix("forcausallm").unwrap_or(&lower);
            arch = lower
                .strip_suffix("forconditionalgeneration")
                .unwrap_or(lower)
                .to_owned();
        }
        let (mut hidden, mut context, mut layers) = (
            self.hidden_size,
            self.max_position_embeddings,
            self.num_hidden_layers,
        );
        if let Some(text) = &self.text_config {
            for (slot, value) in [
                (&mut hidden, text.hidden_size),
                (&mut context, text.max_position_embeddings),
                (&mut layers, text.num_hidden_layers),
            ] {
                if value > 0 {
                    *slot = value;
                }
            }
        }
        let bytes_per_parameter = match to_lower(&self.torch_dtype).as_str() {
            "float32" => 4,
            "int8" | "uint8" => 1,
            _ => 2,
        };
        let parameters =
            tensor_bytes.wrapping_sub(tensor_count.wrapping_mul(150)) / bytes_per_parameter;
        let mut info = kiln_api::AnyMap::new();
        info.insert("general.architecture".into(), arch.clone().into());
        for (key, value) in [
            ("context_length", context),
            ("embedding_length", hidden),
            ("block_count", layers),
            ("attention.head_count", self.num_attention_heads),
            ("attention.head_count_kv", self.num_key_value_heads),
            ("feed_forward_length", self.intermediate_size),
            ("vocab_size", self.vocab_size),
        ] {
            if value > 0 {
                info.insert(format!("{arch}.{key}"), value.into());
            }
        }
        if parameters > 0 {
            info.insert("general.parameter_count".into(), parameters.into());
        }
        info
    }
}

/// One main tensor of a tensor blob's header (x/server/show.go `safetensorsTensorInfo`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct HeaderTensor {
    /// The header key.
    pub(crate) name: String,
    /// `dtype` as stored (`BF16`, `U32`).
    pub(crate) dtype: String,
    /// `shape` as stored (packed, for a quantized tensor).
    pub(crate) shape: Vec<i64>,
    /// The quantization type: the header's `__metadata__.quant_type`, else inferred from the
    /// `.scale` companion's shape, else `""`.
    pub(crate) quant_type: String,
    /// Go's struct has untagged `Name` and `GroupSize` fields too, which a header entry can fill
    /// (and so fail on a value of the wrong type); kiln only checks them.
    ignored: String,
}

impl GoStruct for HeaderTensor {
    const FIELDS: &'static [&'static str] = &["Name", "dtype", "shape", "QuantType", "GroupSize"];
    fn field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            1 => set(map, &mut self.dtype),
            2 => set_slice(map, &mut self.shape),
            3 => set(map, &mut self.quant_type),
            _ => set(map, &mut self.ignored),
        }
    }
}

/// `struct{ Shape []int64 }`, what the quantization inference decodes.
#[derive(Default)]
struct ShapeOnly(Vec<i64>);

impl GoStruct for ShapeOnly {
    const FIELDS: &'static [&'static str] = &["shape"];
    fn field<'de, A: MapAccess<'de>>(&mut self, _: usize, map: &mut A) -> Result<(), A::Error> {
        set_slice(map, &mut self.0)
    }
}

/// The largest header Ollama reads (100 MiB, for packed blobs).
const MAX_HEADER: u64 = 100 * 1024 * 1024;

/// x/server/show.go `isSafetensorsCompanionTensor`: entries that belong to a main tensor.
fn is_companion(name: &str) -> bool {
    name == "__metadata__"
        || name.ends_with(".scale")
        || name.ends_with(".bias")
        || name.ends_with(".global_scale")
}

/// x/server/show.go `parseSafetensorsAllHeaders`: the main tensors of a tensor blob's header,
/// sorted by name, with their quantization type (the header's `__metadata__.quant_type` for all
/// when there is one, else inferred per tensor from its `.scale` entry). Errors carry Ollama's
/// texts.
pub(crate) fn parse_header(mut blob: impl Read) -> Result<Vec<HeaderTensor>, String> {
    let size = read_full(&mut blob, 8).map_err(|e| format!("failed to read header size: {e}"))?;
    let size = u64::from_le_bytes(size.try_into().unwrap_or_default());
    if size > MAX_HEADER {
        return Err(format!("header size too large: {size}"));
    }
    let header = read_full(&mut blob, size).map_err(|e| format!("failed to read header: {e}"))?;
    let text = kiln_go::json::lossy_utf8(&header);
    // Go's map[string]json.RawMessage: `null` is an empty map, a repeated key's last value wins.
    let entries: std::collections::HashMap<String, Box<RawValue>> =
        serde_json::from_str::<Option<_>>(&text)
            .map_err(|e| format!("failed to parse header: {e}"))?
            .unwrap_or_default();
    // `__metadata__` as map[string]string; any decoding error means no metadata.
    let metadata = entries
        .get("__metadata__")
        .and_then(|raw| {
            serde_json::from_str::<Option<std::collections::HashMap<String, Option<String>>>>(
                raw.get(),
            )
            .ok()
        })
        .flatten()
        .unwrap_or_default();
    let global_quant = metadata
        .get("quant_type")
        .cloned()
        .flatten()
        .unwrap_or_default();
    let mut names: Vec<&String> = entries.keys().filter(|k| !is_companion(k)).collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let mut tensor = HeaderTensor::default();
        unmarshal(entries[name].get().as_bytes(), &mut tensor)
            .map_err(|e| format!("failed to parse tensor info for {name}: {e}"))?;
        tensor.name = name.clone();
        if !global_quant.is_empty() {
            tensor.quant_type = global_quant.clone();
        } else if let Some(scale) = entries.get(&format!("{name}.scale")) {
            tensor.quant_type = infer_quant(&tensor.shape, scale.get()).to_owned();
        }
        tensors.push(tensor);
    }
    if tensors.is_empty() {
        return Err("no tensor found in header".into());
    }
    Ok(tensors)
}

/// Go's `io.ReadFull` of `n` bytes: `EOF` when nothing could be read, `unexpected EOF` when only
/// part of it. Reads as it goes, so a header length that lies allocates nothing up front.
fn read_full(blob: &mut impl Read, n: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    blob.take(n)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    match bytes.len() as u64 {
        got if got == n => Ok(bytes),
        0 => Err("EOF".into()),
        _ => Err("unexpected EOF".into()),
    }
}

/// x/server/show.go `inferQuantType`: the packed last dimension over the scale's is 4 for int4
/// (8 values a word, groups of 32), 16 for int8 (4 a word, groups of 64).
fn infer_quant(shape: &[i64], scale: &str) -> &'static str {
    let mut scale_shape = ShapeOnly::default();
    if shape.len() < 2 || unmarshal(scale.as_bytes(), &mut scale_shape).is_err() {
        return "";
    }
    let scale_shape = scale_shape.0;
    if scale_shape.len() < 2 {
        return "";
    }
    let (main, scale) = (shape[shape.len() - 1], scale_shape[scale_shape.len() - 1]);
    if scale == 0 {
        return "";
    }
    match main.wrapping_div(scale) {
        4 => "int4",
        16 => "int8",
        _ => "",
    }
}

/// x/server/show.go `getTensorInfoFromManifest`: every main tensor of the tensor layers, named by
/// its layer (or by its header key, in a blob that packs several), a quantized one with its
/// quantization type and its logical (unpacked) shape, sorted by name. `layers` are the tensor
/// layers' names and parsed headers, in manifest order.
pub(crate) fn tensor_list<'a>(
    layers: impl IntoIterator<Item = (&'a str, &'a [HeaderTensor])>,
) -> Vec<kiln_api::Tensor> {
    let mut tensors = Vec::new();
    for (layer_name, header) in layers {
        let packed = header.len() > 1;
        for t in header {
            let name = if packed { t.name.as_str() } else { layer_name };
            let mut shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
            let tensor_type = if t.quant_type.is_empty() {
                t.dtype.clone()
            } else {
                let factor = pack_factor(&t.quant_type);
                if factor > 0 && shape.len() >= 2 {
                    let last = shape.len() - 1;
                    shape[last] = t.shape[last].wrapping_mul(factor) as u64;
                }
                display_quant(&t.quant_type)
            };
            tensors.push(kiln_api::Tensor {
                name: name.to_owned(),
                tensor_type,
                shape,
            });
        }
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    tensors
}

/// x/server/show.go `getParameterCountFromManifest`: the elements of every listed tensor (a
/// tensor without dimensions, or with a zero one, counts nothing); `None` when a dimension or
/// the sum overflows an int64 (Ollama then keeps its estimate).
pub(crate) fn parameter_count(tensors: &[kiln_api::Tensor]) -> Option<i64> {
    let mut total: i64 = 0;
    for t in tensors.iter().filter(|t| !t.shape.is_empty()) {
        let mut elements: i64 = 1;
        for &d in &t.shape {
            if d == 0 {
                elements = 0;
                break;
            }
            elements = elements.checked_mul(i64::try_from(d).ok()?)?;
        }
        total = total.checked_add(elements)?;
    }
    Some(total)
}

/// x/server/show.go `GetSafetensorsDtype`'s choice among the tensors' quantization types: the
/// lowest precision known, else the first type seen; `None` when nothing is quantized (Ollama
/// then answers `torch_dtype`).
pub(crate) fn lowest_precision_quant<'a>(
    headers: impl IntoIterator<Item = &'a HeaderTensor>,
) -> Option<String> {
    let mut best: Option<(String, i64)> = None;
    for t in headers {
        let quant = display_quant(&t.quant_type);
        if quant.is_empty() {
            continue;
        }
        let bits = quant_bits(&quant);
        let better = match &best {
            None => true,
            Some((_, best_bits)) => bits > 0 && (*best_bits == 0 || bits < *best_bits),
        };
        if better {
            best = Some((quant, bits));
        }
    }
    best.map(|(quant, _)| quant)
}

/// Ollama's x/server/show_test.go, case for case.
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tensor blob's header as Ollama's tests write one: the length, then the JSON.
    fn blob(header: serde_json::Value) -> Vec<u8> {
        let json = serde_json::to_vec(&header).unwrap();
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend(json);
        bytes
    }

    fn header(h: serde_json::Value) -> Vec<HeaderTensor> {
        parse_header(&blob(h)[..]).unwrap()
    }

    fn config(json: serde_json::Value) -> HfConfig {
        HfConfig::parse(json.to_string().as_bytes()).unwrap()
    }

    /// TestBuildModelInfo.
    #[test]
    fn model_info_from_config_and_tensor_bytes() {
        let cases = [
            (
                "gemma3 model with model_type",
                json!({"model_type": "gemma3", "hidden_size": 2560, "num_hidden_layers": 34,
                       "max_position_embeddings": 131072, "intermediate_size": 10240,
                       "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 262144,
                       "torch_dtype": "bfloat16"}),
                8_600_000_150,
                1,
                ("gemma3", 131072, 2560, 34, 4_300_000_000i64),
            ),
            (
                "llama model with architectures array",
                json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
                       "num_hidden_layers": 32, "max_position_embeddings": 4096,
                       "intermediate_size": 11008, "num_attention_heads": 32,
                       "num_key_value_heads": 32, "vocab_size": 32000, "torch_dtype": "float16"}),
                14_000_000_150,
                1,
                ("llama", 4096, 4096, 32, 7_000_000_000),
            ),
            (
                "multimodal model with text_config",
                json!({"architectures": ["Gemma3ForConditionalGeneration"], "hidden_size": 1152,
                       "text_config": {"hidden_size": 2560, "max_position_embeddings": 131072,
                                       "num_hidden_layers": 34},
                       "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 262144,
                       "torch_dtype": "bfloat16"}),
                8_600_000_150,
                1,
                ("gemma3", 131072, 2560, 34, 4_300_000_000),
            ),
            (
                "float32 model",
                json!({"model_type": "test", "hidden_size": 512, "num_hidden_layers": 6,
                       "max_position_embeddings": 2048, "torch_dtype": "float32"}),
                400_000_150,
                1,
                ("test", 2048, 512, 6, 100_000_000),
            ),
            (
                "multiple tensors with header overhead",
                json!({"model_type": "test", "hidden_size": 256, "num_hidden_layers": 4,
                       "max_position_embeddings": 1024, "torch_dtype": "bfloat16"}),
                2_001_500,
                10,
                ("test", 1024, 256, 4, 1_000_000),
            ),
        ];
        for (name, cfg, bytes, count, (arch, context, embedding, blocks, params)) in cases {
            let info = config(cfg).model_info(bytes, count);
            assert_eq!(info["general.architecture"], arch, "{name}");
            assert_eq!(info[&format!("{arch}.context_length")], context, "{name}");
            assert_eq!(
                info[&format!("{arch}.embedding_length")],
                embedding,
                "{name}"
            );
            assert_eq!(info[&format!("{arch}.block_count")], blocks, "{name}");
            assert_eq!(info["general.parameter_count"], params, "{name}");
        }
        // Only positive sizes appear (buildModelInfo's `> 0` checks).
        let info = config(json!({"model_type": "m", "vocab_size": 0})).model_info(0, 0);
        assert_eq!(
            info,
            kiln_api::AnyMap::from([("general.architecture".into(), "m".into())])
        );
    }

    /// TestBuildModelInfo_ArchitectureConversion.
    #[test]
    fn architecture_from_model_type_or_hugging_face_class() {
        for (architectures, model_type, want) in [
            (json!(["LlamaForCausalLM"]), "", "llama"),
            (json!(["Gemma3ForCausalLM"]), "", "gemma3"),
            (json!(["Gemma3ForConditionalGeneration"]), "", "gemma3"),
            (json!(["Qwen2ForCausalLM"]), "", "qwen2"),
            (json!(["LlamaForCausalLM"]), "custom", "custom"),
            (json!(null), "mymodel", "mymodel"),
        ] {
            let cfg = config(json!({"architectures": architectures, "model_type": model_type}));
            assert_eq!(cfg.model_info(0, 0)["general.architecture"], want);
        }
    }

    /// TestBuildModelInfo_BytesPerParam.
    #[test]
    fn bytes_per_parameter_follow_torch_dtype() {
        for (dtype, bytes, want) in [
            ("bfloat16", 2_000_150, 1_000_000),
            ("float16", 2_000_150, 1_000_000),
            ("float32", 4_000_150, 1_000_000),
            ("int8", 1_000_150, 1_000_000),
            ("unknown", 2_000_150, 1_000_000),
            ("", 2_000_150, 1_000_000),
        ] {
            let cfg = config(json!({"model_type": "test", "torch_dtype": dtype}));
            assert_eq!(
                cfg.model_info(bytes, 1)["general.parameter_count"],
                want,
                "{dtype}"
            );
        }
    }

    /// How Go's `json.Unmarshal` fills the config (encoding/json's documented rules): keys match
    /// fields case-insensitively, `null` leaves a field as it was and sets a pointer to nil, a
    /// repeated key's last value wins, and a value of the wrong type is an error.
    #[test]
    fn config_json_decodes_as_go_does() {
        let cfg = HfConfig::parse(
            br#"{"Model_Type": "a", "HIDDEN_SIZE": 8, "hidden_size": null, "vocab_size": 1,
                 "vocab_size": 2, "text_config": {"hidden_size": 3}, "rope_theta": 10000,
                 "unknown": [1, {"x": null}]}"#,
        )
        .unwrap();
        assert_eq!(
            (cfg.model_type.as_str(), cfg.hidden_size, cfg.vocab_size),
            ("a", 8, 2)
        );
        assert_eq!(cfg.text_config.as_ref().map(|t| t.hidden_size), Some(3));
        let cfg = HfConfig::parse(br#"{"text_config": {"hidden_size": 3}, "text_config": null}"#)
            .unwrap();
        assert_eq!(cfg.text_config, None);
        assert_eq!(HfConfig::parse(b"null").unwrap(), HfConfig::default());
        for bad in [
            &br#"{"hidden_size": 1.5}"#[..],
            br#"{"hidden_size": "8"}"#,
            br#"{"rope_theta": "x"}"#,
            br#"{"architectures": "Llama"}"#,
            br#"{"text_config": []}"#,
            br#"[]"#,
            br#"{"model_type": "a"} x"#,
        ] {
            assert!(
                HfConfig::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// TestParseSafetensorsAllHeaders_Errors.
    #[test]
    fn header_errors_carry_ollamas_texts() {
        let mut truncated = 100u64.to_le_bytes().to_vec();
        truncated.extend(b"short");
        let mut not_json = 10u64.to_le_bytes().to_vec();
        not_json.extend(b"not json!!");
        for (name, data, want) in [
            ("empty data", Vec::new(), "failed to read header size"),
            (
                "truncated header size",
                vec![1, 2, 3],
                "failed to read header size",
            ),
            (
                "header size too large",
                (200u64 * 1024 * 1024).to_le_bytes().to_vec(),
                "header size too large",
            ),
            ("truncated header", truncated, "failed to read header"),
            ("invalid JSON", not_json, "failed to parse header"),
            (
                "no tensors in header",
                blob(json!({"__metadata__": {"format": "pt"}})),
                "no tensor found in header",
            ),
        ] {
            let err = parse_header(&data[..]).unwrap_err();
            assert!(err.contains(want), "{name}: {err}");
        }
        // io.ReadFull's texts.
        assert_eq!(
            parse_header(&[][..]).unwrap_err(),
            "failed to read header size: EOF"
        );
        assert_eq!(
            parse_header(&[1, 2, 3][..]).unwrap_err(),
            "failed to read header size: unexpected EOF"
        );
    }

    /// TestParseSafetensorsAllHeaders.
    #[test]
    fn headers_list_main_tensors_with_their_quantization() {
        let int4_packed = json!({
            "__metadata__": {"quant_type": "int4", "group_size": "32"},
            "model.layers.0.mlp.experts.0.gate_proj.weight": {"dtype": "U32", "shape": [10240, 320], "data_offsets": [0, 13107200]},
            "model.layers.0.mlp.experts.0.gate_proj.weight.scale": {"dtype": "BF16", "shape": [10240, 80], "data_offsets": [13107200, 14745600]},
            "model.layers.0.mlp.experts.0.gate_proj.weight.bias": {"dtype": "BF16", "shape": [10240, 80], "data_offsets": [14745600, 16384000]},
            "model.layers.0.mlp.experts.0.up_proj.weight": {"dtype": "U32", "shape": [10240, 320], "data_offsets": [16384000, 29491200]},
            "model.layers.0.mlp.experts.0.up_proj.weight.scale": {"dtype": "BF16", "shape": [10240, 80], "data_offsets": [29491200, 31129600]},
            "model.layers.0.mlp.experts.0.up_proj.weight.bias": {"dtype": "BF16", "shape": [10240, 80], "data_offsets": [31129600, 32768000]},
        });
        let nvfp4 = json!({
            "__metadata__": {"quant_type": "nvfp4", "group_size": "16"},
            "model.layers.0.mlp.up_proj.weight": {"dtype": "U32", "shape": [2560, 320], "data_offsets": [0, 3276800]},
            "model.layers.0.mlp.up_proj.weight.scale": {"dtype": "U8", "shape": [2560, 160], "data_offsets": [3276800, 3686400]},
            "model.layers.0.mlp.up_proj.weight.global_scale": {"dtype": "F32", "shape": [1], "data_offsets": [3686400, 3686404]},
        });
        let cases = [
            (
                "single tensor blob",
                json!({"model.layers.0.weight": {"dtype": "BF16", "shape": [2560, 2560], "data_offsets": [0, 13107200]}}),
                vec![("model.layers.0.weight", "BF16", "")],
            ),
            (
                "packed unquantized blob",
                json!({
                    "model.layers.0.mlp.experts.0.down_proj.weight": {"dtype": "BF16", "shape": [2560, 10240], "data_offsets": [0, 52428800]},
                    "model.layers.0.mlp.experts.0.gate_proj.weight": {"dtype": "BF16", "shape": [10240, 2560], "data_offsets": [52428800, 104857600]},
                    "model.layers.0.mlp.experts.0.up_proj.weight": {"dtype": "BF16", "shape": [10240, 2560], "data_offsets": [104857600, 157286400]},
                }),
                vec![
                    ("model.layers.0.mlp.experts.0.down_proj.weight", "BF16", ""),
                    ("model.layers.0.mlp.experts.0.gate_proj.weight", "BF16", ""),
                    ("model.layers.0.mlp.experts.0.up_proj.weight", "BF16", ""),
                ],
            ),
            (
                "packed quantized blob with global metadata",
                int4_packed,
                vec![
                    (
                        "model.layers.0.mlp.experts.0.gate_proj.weight",
                        "U32",
                        "int4",
                    ),
                    ("model.layers.0.mlp.experts.0.up_proj.weight", "U32", "int4"),
                ],
            ),
            (
                "nvfp4 global scale is hidden",
                nvfp4,
                vec![("model.layers.0.mlp.up_proj.weight", "U32", "nvfp4")],
            ),
            (
                "packed mixed-precision blob (no global metadata)",
                mixed_packed(),
                vec![
                    (
                        "model.layers.0.mlp.experts.0.down_proj.weight",
                        "U32",
                        "int8",
                    ),
                    (
                        "model.layers.0.mlp.experts.0.gate_proj.weight",
                        "U32",
                        "int4",
                    ),
                ],
            ),
        ];
        for (name, h, want) in cases {
            let parsed = header(h);
            let got: Vec<(&str, &str, &str)> = parsed
                .iter()
                .map(|t| (t.name.as_str(), t.dtype.as_str(), t.quant_type.as_str()))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    /// The packed mixed-precision blob of TestParseSafetensorsAllHeaders and
    /// TestGetTensorInfoFromManifest_Packed.
    fn mixed_packed() -> serde_json::Value {
        json!({
            "model.layers.0.mlp.experts.0.gate_proj.weight": {"dtype": "U32", "shape": [10240, 320], "data_offsets": [0, 13107200]},
            "model.layers.0.mlp.experts.0.gate_proj.weight.scale": {"dtype": "BF16", "shape": [10240, 80], "data_offsets": [13107200, 14745600]},
            "model.layers.0.mlp.experts.0.gate_proj.weight.bias": {"dtype": "BF16", "shape": [10240, 80], "data_offsets": [14745600, 16384000]},
            "model.layers.0.mlp.experts.0.down_proj.weight": {"dtype": "U32", "shape": [2560, 2560], "data_offsets": [16384000, 42598400]},
            "model.layers.0.mlp.experts.0.down_proj.weight.scale": {"dtype": "BF16", "shape": [2560, 160], "data_offsets": [42598400, 43417600]},
        })
    }

    fn list(layers: &[(&str, serde_json::Value)]) -> Vec<kiln_api::Tensor> {
        let parsed: Vec<(&str, Vec<HeaderTensor>)> = layers
            .iter()
            .map(|(n, h)| (*n, header(h.clone())))
            .collect();
        tensor_list(parsed.iter().map(|(n, h)| (*n, h.as_slice())))
    }

    fn rows(tensors: &[kiln_api::Tensor]) -> Vec<(String, String, Vec<u64>)> {
        tensors
            .iter()
            .map(|t| (t.name.clone(), t.tensor_type.clone(), t.shape.clone()))
            .collect()
    }

    /// TestGetTensorInfoFromManifest, TestGetTensorInfoFromManifest_Quantized and
    /// TestGetTensorInfoFromManifest_Packed.
    #[test]
    fn tensors_are_named_typed_and_unpacked_as_ollama_lists_them() {
        let single = |name: &str, dtype: &str, shape: serde_json::Value| json!({name: {"dtype": dtype, "shape": shape, "data_offsets": [0, 1000]}});
        let plain = list(&[
            (
                "model.embed_tokens.weight",
                single("model.embed_tokens.weight", "BF16", json!([262144, 2560])),
            ),
            (
                "model.layers.0.self_attn.q_proj.weight",
                single(
                    "model.layers.0.self_attn.q_proj.weight",
                    "BF16",
                    json!([2560, 2560]),
                ),
            ),
            (
                "model.norm.weight",
                single("model.norm.weight", "F32", json!([2560])),
            ),
        ]);
        assert_eq!(
            rows(&plain),
            [
                (
                    "model.embed_tokens.weight".into(),
                    "BF16".into(),
                    vec![262144, 2560]
                ),
                (
                    "model.layers.0.self_attn.q_proj.weight".into(),
                    "BF16".into(),
                    vec![2560, 2560]
                ),
                ("model.norm.weight".into(), "F32".into(), vec![2560]),
            ]
        );
        let quantized = list(&[(
            "model.layers.0.mlp.up_proj.weight",
            json!({
                "__metadata__": {"quant_type": "int4", "group_size": "32"},
                "model.layers.0.mlp.up_proj.weight": {"dtype": "U32", "shape": [2560, 320], "data_offsets": [0, 3276800]},
                "model.layers.0.mlp.up_proj.weight.scale": {"dtype": "BF16", "shape": [2560, 80], "data_offsets": [3276800, 3686400]},
                "model.layers.0.mlp.up_proj.weight.bias": {"dtype": "BF16", "shape": [2560, 80], "data_offsets": [3686400, 4096000]},
            }),
        )]);
        assert_eq!(
            rows(&quantized),
            [(
                "model.layers.0.mlp.up_proj.weight".into(),
                "int4".into(),
                vec![2560, 2560]
            )]
        );
        let packed = list(&[
            (
                "model.embed_tokens.weight",
                single("model.embed_tokens.weight", "BF16", json!([262144, 2560])),
            ),
            ("model.layers.0.mlp.experts", mixed_packed()),
        ]);
        // int4 packs 8 values a word, int8 4.
        assert_eq!(
            rows(&packed),
            [
                (
                    "model.embed_tokens.weight".into(),
                    "BF16".into(),
                    vec![262144, 2560]
                ),
                (
                    "model.layers.0.mlp.experts.0.down_proj.weight".into(),
                    "int8".into(),
                    vec![2560, 10240]
                ),
                (
                    "model.layers.0.mlp.experts.0.gate_proj.weight".into(),
                    "int4".into(),
                    vec![10240, 2560]
                ),
            ]
        );
    }

    /// TestGetParameterCountFromManifest and TestGetParameterCountFromManifest_MixedQuantizedPacked.
    #[test]
    fn parameters_are_counted_from_unpacked_shapes() {
        let tensors = list(&[
            (
                "model.embed_tokens.weight",
                json!({"model.embed_tokens.weight": {"dtype": "BF16", "shape": [4, 5], "data_offsets": [0, 40]}}),
            ),
            (
                "model.layers.0.mlp.up_proj.weight",
                json!({
                    "__metadata__": {"quant_type": "int4", "group_size": "32"},
                    "model.layers.0.mlp.up_proj.weight": {"dtype": "U32", "shape": [10, 2], "data_offsets": [0, 80]},
                    "model.layers.0.mlp.up_proj.weight.scale": {"dtype": "BF16", "shape": [10, 1], "data_offsets": [80, 100]},
                    "model.layers.0.mlp.up_proj.weight.bias": {"dtype": "BF16", "shape": [10, 1], "data_offsets": [100, 120]},
                }),
            ),
        ]);
        assert_eq!(parameter_count(&tensors), Some(180));
        let mixed = list(&[(
            "model.layers.0.mlp.experts",
            json!({
                "model.layers.0.mlp.experts.0.gate_proj.weight": {"dtype": "U32", "shape": [5, 8], "data_offsets": [0, 160]},
                "model.layers.0.mlp.experts.0.gate_proj.weight.scale": {"dtype": "BF16", "shape": [5, 2], "data_offsets": [160, 180]},
                "model.layers.0.mlp.experts.0.gate_proj.weight.bias": {"dtype": "BF16", "shape": [5, 2], "data_offsets": [180, 200]},
                "model.layers.0.mlp.experts.0.down_proj.weight": {"dtype": "U32", "shape": [5, 16], "data_offsets": [200, 520]},
                "model.layers.0.mlp.experts.0.down_proj.weight.scale": {"dtype": "BF16", "shape": [5, 1], "data_offsets": [520, 530]},
                "model.layers.0.mlp.experts.0.down_proj.weight.bias": {"dtype": "BF16", "shape": [5, 1], "data_offsets": [530, 540]},
            }),
        )]);
        assert_eq!(parameter_count(&mixed), Some(640));
        // getParameterCountFromManifest's overflow checks: Ollama keeps its estimate.
        let huge = |shape: Vec<u64>| kiln_api::Tensor {
            name: "t".into(),
            tensor_type: "BF16".into(),
            shape,
        };
        assert_eq!(parameter_count(&[huge(vec![u64::MAX, 0])]), None);
        assert_eq!(parameter_count(&[huge(vec![0, u64::MAX])]), Some(0));
        assert_eq!(parameter_count(&[huge(vec![1 << 32, 1 << 32])]), None);
        assert_eq!(parameter_count(&[huge(vec![])]), Some(0));
    }

    /// TestGetSafetensorsDtypeChoosesLowestPrecisionQuantizedBlob's choice.
    #[test]
    fn the_lowest_precision_quantization_is_the_models() {
        let unquantized = header(
            json!({"model.embed_tokens.weight": {"dtype": "BF16", "shape": [16, 8], "data_offsets": [0, 256]}}),
        );
        let mxfp8 = header(json!({
            "__metadata__": {"quant_type": "mxfp8", "group_size": "32"},
            "model.layers.0.mlp.down_proj.weight": {"dtype": "U32", "shape": [16, 4], "data_offsets": [0, 256]},
            "model.layers.0.mlp.down_proj.weight.scale": {"dtype": "BF16", "shape": [16, 1], "data_offsets": [256, 288]},
        }));
        let nvfp4 = header(json!({
            "__metadata__": {"quant_type": "nvfp4", "group_size": "16"},
            "model.layers.0.mlp.up_proj.weight": {"dtype": "U32", "shape": [16, 2], "data_offsets": [0, 128]},
            "model.layers.0.mlp.up_proj.weight.scale": {"dtype": "U8", "shape": [16, 1], "data_offsets": [128, 144]},
        }));
        let all = [&unquantized, &mxfp8, &nvfp4];
        assert_eq!(
            lowest_precision_quant(all.iter().flat_map(|h| h.iter())).as_deref(),
            Some("nvfp4")
        );
        assert_eq!(lowest_precision_quant(unquantized.iter()), None);
        // An unknown type is kept only until a known one is seen.
        let odd = HeaderTensor {
            quant_type: " Q3 ".into(),
            ..HeaderTensor::default()
        };
        assert_eq!(lowest_precision_quant([&odd]).as_deref(), Some("q3"));
        assert_eq!(
            lowest_precision_quant([&odd, &mxfp8[0]]).as_deref(),
            Some("mxfp8")
        );
    }
}
