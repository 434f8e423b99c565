//! The config blob's fields as Ollama fills them: from the model layer (format, family,
//! parameter size, file type), the architecture's renderer, parser and stop words, the `info`
//! overrides, and the parameters layer merged with the source's.

use std::collections::BTreeMap;

use kiln_api::AnyMap;
use kiln_go::format::human_number;
use kiln_store::{Digest, MEDIA_TYPE_PARAMS, Manifest, ModelConfig, StoreError};

use super::{CreateError, Engine, Pending};
use crate::quantize::FileType;

/// The file types Ollama names (`fs/ggml.FileType.String`) that kiln does not write, by
/// `general.file_type` number; the others are named as [`FileType::name`] names them.
const OTHER_OLLAMA_FILE_TYPES: [(u32, &str); 13] = [
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (31, "IQ1_M"),
    (39, "NVFP4"),
    (40, "Q1_0"),
];

/// Ollama's `FileType.String()` for a `general.file_type` value (0 reads as unknown, as in
/// Ollama, and so do numbers it has no name for, such as 4, GPT-OSS's).
pub(super) fn file_type_name(ft: Option<u32>) -> String {
    let Some(n) = ft.filter(|&n| n > 0) else {
        return "unknown".to_owned();
    };
    FileType::from_llama_ftype(n)
        .map(FileType::name)
        .or_else(|| {
            OTHER_OLLAMA_FILE_TYPES
                .iter()
                .find(|(number, _)| *number == n)
                .map(|(_, name)| *name)
        })
        .unwrap_or("unknown")
        .to_owned()
}

impl Engine {
    pub(super) fn read_config(&self, manifest: &Manifest) -> Result<ModelConfig, CreateError> {
        let digest = manifest
            .config
            .digest()
            .map_err(|_| CreateError::InvalidDigest)?;
        let bytes = std::fs::read(self.store.blob_path(&digest)).map_err(|e| StoreError::Io {
            path: self.store.blob_path(&digest),
            source: e,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| CreateError::License(e.to_string()))
    }

    /// Fills the config fields Ollama derives from the model layer, and the renderer, parser
    /// and stop words it picks by architecture when the request names none.
    pub(super) fn describe_model(
        &self,
        config: &mut ModelConfig,
        index: usize,
        layers: &[Pending],
        parameters: &mut AnyMap,
    ) -> Result<(), CreateError> {
        let digest = layers[index]
            .layer
            .digest()
            .map_err(|_| CreateError::InvalidDigest)?;
        let file = self.map_blob(&digest)?;
        let gguf = file.parse(&self.limits)?;
        let md = gguf.metadata();
        let arch = md.architecture().unwrap_or("").to_owned();
        // Ollama's GGUF decoder sets general.parameter_count to the tensors' element count.
        let params: u64 = gguf.tensors().iter().map(|t| t.n_elements()).sum();
        config.model_format = or(&config.model_format, "gguf");
        config.model_family = or(&config.model_family, &arch);
        config.model_type = or(&config.model_type, &human_number(params));
        config.file_type = or(
            &config.file_type,
            &file_type_name(md.file_type().ok().flatten()),
        );
        if (config.renderer.is_empty() || config.parser.is_empty())
            && let Some((renderer, parser, stop)) = architecture_defaults(&arch)
        {
            config.renderer = or(&config.renderer, renderer);
            config.parser = or(&config.parser, parser);
            if let Some(stop) = stop {
                parameters
                    .entry("stop".to_owned())
                    .or_insert_with(|| serde_json::json!(stop));
            }
        }
        config
            .model_families
            .get_or_insert_with(Vec::new)
            .push(arch);
        Ok(())
    }

    /// Ollama's `setParameters`: request values win, existing ones fill in, re-encoded as one
    /// params layer at the end.
    pub(super) fn set_parameters(
        &self,
        layers: &mut Vec<Pending>,
        mut params: AnyMap,
        created: &mut Vec<Digest>,
    ) -> Result<(), CreateError> {
        for p in layers
            .iter()
            .filter(|p| p.layer.media_type == MEDIA_TYPE_PARAMS)
        {
            let digest = p.layer.digest().map_err(|_| CreateError::InvalidDigest)?;
            let bytes =
                std::fs::read(self.store.blob_path(&digest)).map_err(|e| StoreError::Io {
                    path: self.store.blob_path(&digest),
                    source: e,
                })?;
            let existing: BTreeMap<String, serde_json::Value> =
                serde_json::from_slice(&bytes).map_err(|e| CreateError::License(e.to_string()))?;
            for (k, v) in existing {
                params.entry(k).or_insert(v);
            }
        }
        if params.is_empty() {
            return Ok(());
        }
        layers.retain(|p| p.layer.media_type != MEDIA_TYPE_PARAMS);
        let bytes = kiln_api::try_to_go_json_line(&params)
            .map_err(|e| CreateError::License(e.to_string()))?;
        layers.push(self.new_layer(&bytes, MEDIA_TYPE_PARAMS, created)?);
        Ok(())
    }
}

/// The renderer, parser and stop words Ollama's create gives a model of this architecture when
/// the request does not name them (server/create.go's architecture switch).
fn architecture_defaults(
    arch: &str,
) -> Option<(&'static str, &'static str, Option<&'static [&'static str]>)> {
    match arch {
        // Stored as the legacy name; Ollama resolves it to gemma4-small or -large at run time.
        "gemma4" => Some(("gemma4", "gemma4", Some(&["<turn|>"]))),
        "laguna" => Some(("laguna", "laguna", None)),
        "nemotron_h" | "nemotron_h_moe" | "nemotron_h_omni" => {
            Some(("nemotron-3-nano", "nemotron-3-nano", None))
        }
        _ => None,
    }
}

/// Ollama's undocumented `info` overrides of config fields, with its checks and messages.
pub(super) fn apply_info(config: &mut ModelConfig, info: &AnyMap) -> Result<(), CreateError> {
    use serde_json::Value as Json;
    if let Some(Json::Array(caps)) = info.get("capabilities") {
        // Go leaves a non-string entry as "" in the appended list.
        config
            .capabilities
            .extend(caps.iter().map(|c| c.as_str().unwrap_or("").to_owned()));
    }
    let string = |key: &str| match info.get(key) {
        None => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(_) => Err(CreateError::Info(format!(
            "info field {key:?} must be a string"
        ))),
    };
    let integer = |key: &str| match info.get(key) {
        None => Ok(0i64),
        Some(Json::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if v.is_nan() || v < 0.0 || v.trunc() != v || v > i64::MAX as f64 {
                Err(CreateError::Info(format!(
                    "info field {key:?} must be a non-negative integer"
                )))
            } else {
                Ok(v as i64)
            }
        }
        Some(_) => Err(CreateError::Info(format!(
            "info field {key:?} must be a number"
        ))),
    };
    config.model_family = string("model_family")?;
    if !config.model_family.is_empty() {
        config.model_families = Some(vec![config.model_family.clone()]);
    }
    config.base_name = string("base_name")?;
    config.file_type = string("quantization_level")?;
    config.model_type = string("parameter_size")?;
    config.context_length = integer("context_length")?;
    config.embedding_length = integer("embedding_length")?;
    Ok(())
}

/// Go's `cmp.Or` of two strings, owned.
pub(super) fn or(a: &str, b: &str) -> String {
    kiln_go::cmp::or(&[a, b]).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_helpers() {
        assert_eq!(file_type_name(Some(15)), "Q4_K_M");
        // Every name Ollama's fs/ggml/type.go gives, by its iota order (F32 = 0 … Q1_0 = 40,
        // with 4-6 and 33-35 removed from GGUF and unnamed).
        let ollama = [
            "F32",
            "F16",
            "Q4_0",
            "Q4_1",
            "",
            "",
            "",
            "Q8_0",
            "Q5_0",
            "Q5_1",
            "Q2_K",
            "Q3_K_S",
            "Q3_K_M",
            "Q3_K_L",
            "Q4_K_S",
            "Q4_K_M",
            "Q5_K_S",
            "Q5_K_M",
            "Q6_K",
            "IQ2_XXS",
            "IQ2_XS",
            "Q2_K_S",
            "IQ3_XS",
            "IQ3_XXS",
            "IQ1_S",
            "IQ4_NL",
            "IQ3_S",
            "IQ3_M",
            "IQ2_S",
            "IQ2_M",
            "IQ4_XS",
            "IQ1_M",
            "BF16",
            "",
            "",
            "",
            "TQ1_0",
            "TQ2_0",
            "MXFP4_MOE",
            "NVFP4",
            "Q1_0",
            "",
        ];
        for (n, name) in ollama.iter().enumerate().skip(1) {
            let want = if name.is_empty() { "unknown" } else { name };
            assert_eq!(file_type_name(Some(n as u32)), want, "file type {n}");
        }
        assert_eq!(file_type_name(Some(0)), "unknown");
        assert_eq!(file_type_name(None), "unknown");
    }
}
