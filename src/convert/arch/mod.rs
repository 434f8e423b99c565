//! What differs between architectures: the [`Architecture`] trait, the helpers its converters
//! share, and the table of the architectures kiln converts ([`CONVERTERS`]).

mod bert;
mod command_r;
mod gemma;
pub(super) mod gpt_oss;
mod llama;
mod mistral;
mod olmo;
mod phi3;
mod qwen2;
mod qwen35;
mod qwen3vl;
mod qwen_vision;

use std::collections::BTreeMap;

use kiln_gguf::Value;

use super::tokenizer::Tokenizer;
use super::{Config, ConvertError, ModelFolder, Planned, TensorView};

/// Architecture parameters by key (without the architecture prefix).
pub(crate) type Parameters = BTreeMap<&'static str, Value<'static>>;

/// The size keys most of Ollama's converters take from the same Hugging Face fields.
pub(crate) const SIZE_FIELDS: [(&str, &str); 5] = [
    ("block_count", "num_hidden_layers"),
    ("context_length", "max_position_embeddings"),
    ("embedding_length", "hidden_size"),
    ("feed_forward_length", "intermediate_size"),
    ("attention.head_count", "num_attention_heads"),
];

/// Writes each `(key, field)` as Ollama does for a struct field of that type: unconditionally,
/// zero when the config leaves the field out.
fn insert_fields<T>(
    p: &mut Parameters,
    fields: &[(&'static str, &str)],
    read: impl Fn(&str) -> Result<T, ConvertError>,
    value: fn(T) -> Value<'static>,
) -> Result<(), ConvertError> {
    for &(key, field) in fields {
        p.insert(key, value(read(field)?));
    }
    Ok(())
}

/// [`insert_fields`] for `uint32` fields.
pub(crate) fn insert_u32s(
    p: &mut Parameters,
    c: &Config,
    fields: &[(&'static str, &str)],
) -> Result<(), ConvertError> {
    insert_fields(p, fields, |f| c.u32(f), Value::U32)
}

/// [`insert_fields`] for `float32` fields.
pub(crate) fn insert_f32s(
    p: &mut Parameters,
    c: &Config,
    fields: &[(&'static str, &str)],
) -> Result<(), ConvertError> {
    insert_fields(p, fields, |f| c.f32(f), Value::F32)
}

/// Query and key-value head counts for regrouping rotary rows (no `num_key_value_heads` means
/// one key-value head per query head).
pub(crate) fn rotary_head_counts(c: &Config) -> Result<(u64, u64), ConvertError> {
    let heads = u64::from(c.u32("num_attention_heads")?);
    let kv_heads = match c.u32("num_key_value_heads")? {
        0 => heads,
        n => u64::from(n),
    };
    Ok((heads, kv_heads))
}

/// The keys Ollama's BERT and Llama converters read alike, field for field: block count, and
/// context, embedding and feed-forward lengths and layer-norm epsilon when set.
fn shared_parameters(c: &Config) -> Result<Parameters, ConvertError> {
    let mut p = Parameters::new();
    p.insert(
        "block_count",
        Value::U32(c.first_u32(&["n_layers", "num_hidden_layers", "n_layer"])?),
    );
    for (key, names) in [
        ("context_length", &["max_position_embeddings", "n_ctx"][..]),
        ("embedding_length", &["hidden_size", "n_embd"]),
        ("feed_forward_length", &["intermediate_size", "n_inner"]),
    ] {
        let v = c.first_u32(names)?;
        if v > 0 {
            p.insert(key, Value::U32(v));
        }
    }
    let eps = c.first_f32(&["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"])?;
    if eps > 0.0 {
        p.insert("attention.layer_norm_epsilon", Value::F32(eps));
    }
    Ok(p)
}

/// Metadata keys sorted as Ollama writes them.
pub(crate) type Metadata = BTreeMap<String, Value<'static>>;

/// A separate projector GGUF split off the model (Ollama's `MultimodalConverter`): a vision
/// tower and its projector, which a create stores as their own layer.
pub(crate) struct Projector<'f> {
    /// Its metadata, full keys (`general.architecture` included).
    pub metadata: Metadata,
    /// Its tensors, named and stored as they are written.
    pub tensors: Vec<Planned<'f>>,
    /// Parameter keys (without the architecture prefix) the model GGUF then leaves out, in
    /// groups.
    pub text_keys_removed: [&'static [&'static str]; 2],
}

/// What differs between architectures.
pub(crate) trait Architecture {
    /// Architecture parameters, from `config.json` and any other file the architecture reads.
    fn parameters(&self, config: &Config, folder: &ModelFolder)
    -> Result<Parameters, ConvertError>;
    /// Special tokens looked up in `tokenizer_config.json`, in key order.
    fn special_kinds(&self) -> &'static [&'static str] {
        &["bos", "eos", "unk", "sep", "pad", "cls", "mask"]
    }
    /// Hugging Face → GGUF tensor-name replacements, in priority order.
    fn replacements(&self) -> &'static [(&'static str, &'static str)];
    /// The replacements for this config (for architectures with more than one naming layout).
    fn replacements_for_config(
        &self,
        _config: &Config,
    ) -> Result<&'static [(&'static str, &'static str)], ConvertError> {
        Ok(self.replacements())
    }
    /// Takes over the tensors whose dtype is not a float (packed quantized blocks and their
    /// scales), by GGUF name in source order; by default the first is refused.
    fn adopt_packed<'f>(
        &self,
        packed: Vec<(String, TensorView<'f>)>,
        _tensors: &mut Vec<Planned<'f>>,
    ) -> Result<(), ConvertError> {
        match packed.into_iter().next() {
            Some((name, view)) => Err(ConvertError::UnsupportedDtype {
                name,
                dtype: view.dtype,
            }),
            None => Ok(()),
        }
    }
    /// Tensors the GGUF leaves out (by GGUF name).
    fn skip_tensor(&self, _name: &str) -> bool {
        false
    }
    /// Takes the tensors of a separate projector GGUF out of `tensors` (GGUF names, before
    /// [`adjust_tensors`](Self::adjust_tensors)) with its metadata; `None` keeps every tensor in
    /// the model.
    fn split_projector<'f>(
        &self,
        _config: &Config,
        _folder: &ModelFolder,
        _tensors: &mut Vec<Planned<'f>>,
    ) -> Result<Option<Projector<'f>>, ConvertError> {
        Ok(None)
    }
    /// Regroups or adds tensors once all are known.
    fn adjust_tensors(
        &self,
        _config: &Config,
        _vocab_len: usize,
        _tensors: &mut Vec<Planned<'_>>,
    ) -> Result<(), ConvertError> {
        Ok(())
    }
    /// The GGUF `general.architecture`, which prefixes the parameter keys.
    fn gguf_name(&self) -> &'static str;
    /// The GGUF architecture for this config (for converters that write more than one).
    fn gguf_name_for_config(&self, _config: &Config) -> Result<&'static str, ConvertError> {
        Ok(self.gguf_name())
    }
    /// Keys beyond the prefixed parameters (and adjustments to the tokenizer's), written over
    /// the rest.
    fn extra_metadata(&self, _tokenizer: &mut Tokenizer, _kv: &mut Metadata) {}
}
/// The architectures kiln converts (`config.json`'s first `architectures` entry), each with its
/// converter.
pub(super) static CONVERTERS: [(&str, &(dyn Architecture + Sync)); 15] = [
    ("BertModel", &bert::Bert),
    ("LlamaForCausalLM", &llama::Llama),
    ("Qwen2ForCausalLM", &qwen2::Qwen2),
    ("GemmaForCausalLM", &gemma::Gemma::One),
    ("Gemma2ForCausalLM", &gemma::Gemma::Two),
    ("Gemma3ForCausalLM", &gemma::Gemma::Three),
    ("Gemma3ForConditionalGeneration", &gemma::Gemma::ThreeVision),
    ("Phi3ForCausalLM", &phi3::Phi3),
    ("Olmo3ForCausalLM", &olmo::Olmo3),
    ("Ministral3ForCausalLM", &mistral::Ministral3),
    ("CohereForCausalLM", &command_r::CommandR),
    ("GptOssForCausalLM", &gpt_oss::GptOss),
    ("Qwen3_5ForConditionalGeneration", &qwen35::Qwen35),
    ("Qwen3_5MoeForConditionalGeneration", &qwen35::Qwen35),
    ("Qwen3VLForConditionalGeneration", &qwen3vl::Qwen3Vl),
];

/// The Hugging Face architectures kiln converts, in the order its documentation lists them.
pub fn supported_architectures() -> impl Iterator<Item = &'static str> {
    CONVERTERS.iter().map(|(name, _)| *name)
}

pub(super) fn supported_list() -> String {
    supported_architectures().collect::<Vec<_>>().join(", ")
}

/// `config.json` architectures Ollama's converter handles (kiln refuses the ones it does not
/// convert yet with [`ConvertError::ArchitectureNotYet`] rather than calling them unsupported).
pub(super) const OLLAMA_ARCHITECTURES: [&str; 39] = [
    "BertModel",
    "LlamaForCausalLM",
    "MllamaForConditionalGeneration",
    "Llama4ForConditionalGeneration",
    "Mistral3ForConditionalGeneration",
    "Ministral3ForCausalLM",
    "MixtralForCausalLM",
    "GemmaForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
    "Gemma3ForConditionalGeneration",
    "Gemma3TextModel",
    "Gemma3nForConditionalGeneration",
    "Gemma4ForCausalLM",
    "Gemma4ForConditionalGeneration",
    "Phi3ForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen2_5_VLForConditionalGeneration",
    "Qwen3VLForConditionalGeneration",
    "Qwen3VLMoeForConditionalGeneration",
    "Olmo3ForCausalLM",
    "NomicBertModel",
    "NomicBertMoEModel",
    "CohereForCausalLM",
    "GptOssForCausalLM",
    "DeepseekOCRForCausalLM",
    "DeepseekV3ForCausalLM",
    "Glm4MoeLiteForCausalLM",
    "LagunaForCausalLM",
    "GlmOcrForConditionalGeneration",
    "Lfm2ForCausalLM",
    "Lfm2MoeForCausalLM",
    "Lfm2VlForConditionalGeneration",
    "Qwen3NextForCausalLM",
    "Qwen3_5ForConditionalGeneration",
    "Qwen3_5MoeForConditionalGeneration",
    "NemotronHForCausalLM",
    "NemotronH_Nano_VL_V2",
    "NemotronH_Nano_Omni_Reasoning_V3",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::Conversion;

    #[test]
    fn architectures_ollama_has_and_kiln_lacks_are_not_yet() {
        let folder = |arch: &str| {
            ModelFolder::from_bytes(BTreeMap::from([(
                "config.json".to_owned(),
                format!(r#"{{"architectures": ["{arch}"]}}"#).into_bytes(),
            )]))
        };
        let err = |arch: &str| Conversion::plan(&folder(arch)).err().unwrap().to_string();
        let mixtral = err("MixtralForCausalLM");
        assert!(
            mixtral.starts_with("kiln cannot convert MixtralForCausalLM models yet (it converts BertModel, LlamaForCausalLM, ")
                && mixtral.ends_with(", Qwen3VLForConditionalGeneration); convert it to GGUF with llama.cpp and upload that"),
            "{mixtral}"
        );
        // Every architecture kiln converts is one Ollama converts, and none is listed twice.
        let supported: Vec<&str> = supported_architectures().collect();
        for name in &supported {
            assert!(OLLAMA_ARCHITECTURES.contains(name), "{name}");
        }
        let unique: std::collections::BTreeSet<&&str> = supported.iter().collect();
        assert_eq!(unique.len(), supported.len());
        assert_eq!(
            err("Frobnicator"),
            "unsupported architecture \"Frobnicator\""
        );
        let empty =
            ModelFolder::from_bytes(BTreeMap::from([("config.json".to_owned(), b"{}".to_vec())]));
        assert_eq!(
            Conversion::plan(&empty).err().unwrap().to_string(),
            "unknown architecture"
        );
        let none = ModelFolder::from_bytes(BTreeMap::new());
        assert_eq!(
            Conversion::plan(&none).err().unwrap().to_string(),
            "open config.json: file does not exist"
        );
    }
}
