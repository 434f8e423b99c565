//! [`Conversion`]: a model folder planned into a GGUF (metadata and tensors) and written.

use std::borrow::Cow;
use std::io::Write;
use std::ops::ControlFlow;

use kiln_gguf::{TensorSpec, Value, Writer};

use crate::progress::Sink;

use super::arch::{Architecture, CONVERTERS, Metadata, OLLAMA_ARCHITECTURES};
use super::tokenizer::{self, Tokenizer};
use super::{
    Config, ConvertError, Dtype, ModelFolder, Planned, Safetensors, fp8, ollama_tensor_order,
};

/// Bytes between two progress reports inside one tensor while a conversion is written.
pub const PROGRESS_STEP: u64 = 16 << 20;

/// How far [`Conversion::write_with_progress`] is: bytes of the GGUF written, of its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvertProgress {
    /// Bytes written.
    pub written: u64,
    /// The whole file's size.
    pub total: u64,
}
/// A planned conversion: the metadata and tensors of the output, ready to be written.
pub struct Conversion<'f> {
    folder: &'f ModelFolder,
    architecture: String,
    metadata: Vec<(String, Value<'static>)>,
    tensors: Vec<Planned<'f>>,
    /// The separate projector GGUF Ollama writes beside the model (a vision tower).
    projector: Option<Box<Conversion<'f>>>,
}

impl<'f> Conversion<'f> {
    /// Reads the folder's configuration, tokenizer and safetensors headers and decides every
    /// output tensor; no tensor data is read yet.
    pub fn plan(folder: &'f ModelFolder) -> Result<Conversion<'f>, ConvertError> {
        let config = Config::parse(folder.require("config.json")?, &folder.limits)?;
        let architectures = config.strings("architectures")?;
        let Some(architecture) = architectures.first() else {
            return Err(ConvertError::UnknownArchitecture);
        };
        let arch: &dyn Architecture = match CONVERTERS.iter().find(|(n, _)| n == architecture) {
            Some((_, arch)) => *arch,
            None if OLLAMA_ARCHITECTURES.contains(&architecture.as_str()) => {
                return Err(ConvertError::ArchitectureNotYet(architecture.clone()));
            }
            None => return Err(ConvertError::UnsupportedArchitecture(architecture.clone())),
        };
        let params = arch.parameters(&config, folder)?;
        let mut tokenizer = tokenizer::parse(folder, arch.special_kinds())?;
        let vocab_size = config.vocab_size()? as usize;
        let have = tokenizer.vocab.tokens.len();
        if vocab_size > have {
            config.generated("vocabulary entries", vocab_size as u64)?;
            for i in 0..vocab_size - have {
                tokenizer.vocab.tokens.push(format!("[PAD{i}]"));
                tokenizer.vocab.scores.push(-1.0);
                tokenizer.vocab.types.push(tokenizer::TOKEN_USER_DEFINED);
            }
        }

        let fp8_block = fp8::block_size(&config)?;
        let names = arch.replacements_for_config(&config)?;
        let mut sources = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (file, bytes) in folder.top_level(".safetensors") {
            let max_header = folder.limits.max_safetensors_header_bytes;
            let parsed = Safetensors::parse_with_limit(bytes, max_header).map_err(|source| {
                ConvertError::Safetensors {
                    file: file.to_owned(),
                    source: Box::new(source),
                }
            })?;
            // FP8 weights take their scales from the same file; the scales are not tensors.
            let (scales, consumed) = fp8::scale_companions(&parsed.tensors)?;
            for (i, tensor) in parsed.tensors.iter().enumerate() {
                if consumed.contains(&i) {
                    continue;
                }
                let name = kiln_go::strings::Replacer::new(names).replace(&tensor.name);
                if !seen.insert(name.clone()) {
                    return Err(ConvertError::DuplicateTensor(name));
                }
                let fp8 = if tensor.dtype == Dtype::F8E4M3 {
                    let Some(block) = fp8_block else {
                        return Err(ConvertError::Fp8(format!(
                            "missing fp8 block size metadata for tensor {:?}",
                            tensor.name
                        )));
                    };
                    let Some(&scale) = scales.get(&i) else {
                        return Err(ConvertError::Fp8(format!(
                            "missing fp8 scale companion for tensor {:?}",
                            tensor.name
                        )));
                    };
                    Some(fp8::Scales::new(
                        &name,
                        tensor,
                        &parsed.tensors[scale],
                        block,
                    )?)
                } else {
                    None
                };
                sources.push((name, tensor.clone(), fp8));
            }
        }
        if sources.is_empty() && folder.top_level(".safetensors").next().is_none() {
            return Err(ConvertError::UnknownTensorFormat);
        }
        let mut tensors = Vec::new();
        let mut packed = Vec::new();
        for (name, source, fp8) in sources {
            if arch.skip_tensor(&name) {
                continue;
            }
            if let Some(scales) = fp8 {
                tensors.push(Planned::from_fp8(name, source, scales));
                continue;
            }
            if !matches!(source.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                packed.push((name, source));
                continue;
            }
            tensors.push(Planned::from_view(name, source));
        }
        arch.adopt_packed(packed, &mut tensors)?;
        let projector = arch.split_projector(&config, folder, &mut tensors)?;
        arch.adjust_tensors(&config, tokenizer.vocab.tokens.len(), &mut tensors)?;

        let mut kv = base_metadata(&tokenizer);
        let name = arch.gguf_name_for_config(&config)?;
        kv.insert("general.architecture".into(), Value::string(name));
        for (key, value) in &params {
            kv.insert(format!("{name}.{key}"), value.clone());
        }
        arch.extra_metadata(&mut tokenizer, &mut kv);
        let projector = match projector {
            None => None,
            Some(p) => {
                // Ollama's `TextKV`: the model's keys without the tower's.
                for key in p.text_keys_removed.iter().flat_map(|group| group.iter()) {
                    kv.remove(&format!("{name}.{key}"));
                }
                let arch_name = match p.metadata.get("general.architecture") {
                    Some(Value::String(s)) => s.to_string(),
                    _ => String::new(),
                };
                let projector =
                    Conversion::assemble(folder, architecture, &arch_name, p.metadata, p.tensors);
                Some(Box::new(projector))
            }
        };
        let mut conversion = Conversion::assemble(folder, architecture, name, kv, tensors);
        conversion.projector = projector;
        Ok(conversion)
    }

    /// A GGUF of these keys and tensors as Ollama's `writeFile` writes it: tensors in its order,
    /// and the names of those decoded from FP8 recorded (`sourceTensorKV`) under `gguf_arch`.
    fn assemble(
        folder: &'f ModelFolder,
        architecture: &str,
        gguf_arch: &str,
        mut kv: Metadata,
        mut tensors: Vec<Planned<'f>>,
    ) -> Conversion<'f> {
        tensors.sort_by(|a, b| ollama_tensor_order(&a.name, &b.name));
        // Ollama records which tensors came from FP8 (`sourceTensorKV`): a create without a
        // quantize type then makes them Q8_0 rather than keep the BF16 it decoded them to.
        let mut from_fp8: Vec<String> = tensors
            .iter()
            .filter(|t| t.fp8.is_some())
            .map(|t| t.name.clone())
            .collect();
        from_fp8.sort_unstable();
        if !from_fp8.is_empty() {
            kv.insert(
                format!("{gguf_arch}.source_quantization"),
                Value::string("hf_fp8"),
            );
            kv.insert(
                format!("{gguf_arch}.source_fp8_tensors"),
                strings(&from_fp8),
            );
        }
        Conversion {
            folder,
            architecture: architecture.to_owned(),
            metadata: kv.into_iter().collect(),
            tensors,
            projector: None,
        }
    }

    /// The separate projector GGUF Ollama writes beside the model for this folder (a vision
    /// tower and its projector, `general.architecture` `clip`), which a create stores as an
    /// `application/vnd.ollama.image.projector` layer and never quantizes; `None` for most
    /// models, whose every tensor is in the model GGUF.
    pub fn projector(&self) -> Option<&Conversion<'f>> {
        self.projector.as_deref()
    }

    /// The Hugging Face architecture (`config.json`'s first `architectures` entry).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The metadata that will be written, in file order.
    pub fn metadata(&self) -> &[(String, Value<'static>)] {
        &self.metadata
    }

    /// The output tensors' names, in file order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    fn specs(&self) -> Vec<TensorSpec<'_>> {
        self.tensors.iter().map(Planned::spec).collect()
    }

    /// The header of the GGUF [`write`](Self::write) produces (everything before the tensor
    /// data), which [`kiln_gguf::Gguf::parse_header`] reads: the model as a quantizer sees it
    /// before any value is converted.
    pub fn header(&self) -> Result<Vec<u8>, ConvertError> {
        Ok(kiln_gguf::Layout::header(&self.metadata, &self.specs())?.0)
    }

    /// Exact size of the GGUF [`write`](Self::write) produces.
    pub fn output_len(&self) -> Result<u64, ConvertError> {
        Ok(kiln_gguf::Layout::compute(&self.metadata, &self.specs())?.file_len)
    }

    /// Writes the GGUF, converting tensor data chunk by chunk.
    pub fn write<W: Write>(&self, out: W) -> Result<W, ConvertError> {
        self.write_with_progress(out, &mut crate::progress::NoProgress)
    }

    /// [`write`](Self::write), reporting [`ConvertProgress`] after the header, after each tensor,
    /// and within a large tensor every [`PROGRESS_STEP`] bytes (so a cancellation never waits for
    /// a whole tensor); `ControlFlow::Break` stops with [`ConvertError::Cancelled`].
    pub fn write_with_progress<W: Write>(
        &self,
        out: W,
        progress: &mut dyn Sink<ConvertProgress>,
    ) -> Result<W, ConvertError> {
        let specs = self.specs();
        let mut writer = Writer::new(out, &self.metadata, &specs)?;
        let layout = writer.layout().clone();
        let mut report = |written: u64| match progress.event(&ConvertProgress {
            written,
            total: layout.file_len,
        }) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(ConvertError::Cancelled),
        };
        report(layout.data_offset)?;
        for (i, tensor) in self.tensors.iter().enumerate() {
            let start = layout.data_offset + layout.offsets[i];
            let mut reported = 0u64;
            tensor.write(&mut writer, &mut |done| {
                if done - reported < PROGRESS_STEP || done == layout.sizes[i] {
                    return Ok(());
                }
                reported = done;
                report(start + done)
            })?;
            let end = start + layout.sizes[i];
            report(end.next_multiple_of(layout.alignment).min(layout.file_len))?;
        }
        Ok(writer.finish()?)
    }
}
/// A GGUF array of strings.
fn strings(v: &[String]) -> Value<'static> {
    Value::Array(kiln_gguf::Array::new(
        kiln_gguf::ValueType::String,
        v.iter().map(|s| Value::string(s.clone())).collect(),
    ))
}

/// Keys every converted model has (Ollama's `ModelParameters.KV`).
fn base_metadata(t: &Tokenizer) -> Metadata {
    let mut kv = Metadata::new();
    kv.insert("general.file_type".into(), Value::U32(1));
    kv.insert("general.quantization_version".into(), Value::U32(2));
    kv.insert("tokenizer.ggml.pre".into(), Value::string(t.pre.clone()));
    kv.insert(
        "tokenizer.ggml.model".into(),
        Value::string(t.vocab.model.clone()),
    );
    kv.insert("tokenizer.ggml.tokens".into(), strings(&t.vocab.tokens));
    kv.insert(
        "tokenizer.ggml.scores".into(),
        Value::Array(kiln_gguf::Array::new(
            kiln_gguf::ValueType::F32,
            t.vocab.scores.iter().map(|&s| Value::F32(s)).collect(),
        )),
    );
    kv.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(kiln_gguf::Array::new(
            kiln_gguf::ValueType::I32,
            t.vocab.types.iter().map(|&s| Value::I32(s)).collect(),
        )),
    );
    if !t.merges.is_empty() {
        kv.insert("tokenizer.ggml.merges".into(), strings(&t.merges));
    }
    if !t.template.is_empty() {
        kv.insert(
            "tokenizer.chat_template".into(),
            Value::string(t.template.clone()),
        );
    }
    for s in &t.special {
        if let Some(add) = s.add_token {
            kv.insert(
                format!("tokenizer.ggml.add_{}_token", s.key()),
                Value::Bool(add),
            );
        }
        kv.insert(
            format!("tokenizer.ggml.{}_token_id", s.key()),
            Value::U32(s.id as u32),
        );
        if !s.ids.is_empty() {
            kv.insert(
                format!("tokenizer.ggml.{}_token_ids", s.key()),
                Value::Array(kiln_gguf::Array::new(
                    kiln_gguf::ValueType::I32,
                    s.ids.iter().map(|&i| Value::I32(i)).collect(),
                )),
            );
        }
    }
    kv
}
/// Tensor `index` of the output, produced on demand a range at a time (the one-pass quantizer's
/// input, [`crate::quantize::quantize_conversion`]).
impl crate::quantize::TensorData for Conversion<'_> {
    fn read<'s>(
        &'s self,
        index: usize,
        range: std::ops::Range<usize>,
        buf: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], crate::quantize::QuantizeError> {
        self.tensors[index].convert_range(range, buf)?;
        Ok(buf)
    }

    fn release(&self, index: usize) {
        let tensor = &self.tensors[index];
        if let Cow::Borrowed(data) = &tensor.data {
            self.folder.release(data);
        }
        for data in &tensor.segments {
            self.folder.release(data);
        }
        if let Some(source) = &tensor.mxfp4 {
            for data in source.sources() {
                self.folder.release(data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::test_folder;
    use kiln_gguf::GgmlType;

    /// An FP8 checkpoint as Ollama reads one: each weight times its block's factor (from its
    /// `_scale_inv` companion and config.json's `weight_block_size`), stored BF16 (truncated, as
    /// Go's encoder does), with the scales left out and the FP8 tensors named in the metadata;
    /// and Ollama's refusals when the pieces do not fit.
    #[test]
    fn fp8_weights_decode_with_their_block_scales() {
        let config = |extra: &str| {
            format!(
                r#"{{"architectures": ["Ministral3ForCausalLM"], "hidden_size": 8,
                    "num_attention_heads": 2{extra}}}"#
            )
        };
        let with_blocks = config(
            r#", "quantization_config": {"quant_method": "fp8", "weight_block_size": [2, 4]}"#,
        );
        // A 3 × 6 weight in 2 × 4 blocks: 2 × 2 factors; every byte value somewhere.
        let weight: Vec<u8> = (0..18u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(5))
            .collect();
        let factors = [0.5f32, -2.0, 0.125, 3.0];
        let factor_bytes: Vec<u8> = factors.iter().flat_map(|f| f.to_le_bytes()).collect();
        let norm = [0u8; 32];
        let tensors: [(&str, &str, &[u64], &[u8]); 3] = [
            (
                "model.layers.0.mlp.down_proj.weight",
                "F8_E4M3",
                &[3, 6],
                &weight,
            ),
            (
                "model.layers.0.mlp.down_proj.weight_scale_inv",
                "F32",
                &[2, 2],
                &factor_bytes,
            ),
            ("model.norm.weight", "F32", &[8], &norm),
        ];
        let folder = test_folder(&with_blocks, &tensors);
        let out = Conversion::plan(&folder)
            .unwrap()
            .write(Vec::new())
            .unwrap();
        let g = kiln_gguf::Gguf::parse(&out, &kiln_gguf::Limits::default()).unwrap();
        let names: Vec<&str> = g.tensors().iter().map(|t| t.name()).collect();
        assert_eq!(names, ["blk.0.ffn_down.weight", "output_norm.weight"]);
        let t = g.tensor("blk.0.ffn_down.weight").unwrap();
        assert_eq!(t.ggml_type(), GgmlType::BF16);
        for (i, pair) in t.data().chunks_exact(2).enumerate() {
            let (row, col) = (i / 6, i % 6);
            let byte = weight[i];
            let e = i32::from((byte >> 3) & 15);
            let m = f64::from(byte & 7);
            let sign = if byte & 0x80 != 0 { -1.0 } else { 1.0 };
            let decoded = if e == 0 {
                sign * m / 8.0 * 2f64.powi(-6)
            } else {
                sign * (1.0 + m / 8.0) * 2f64.powi(e - 7)
            } as f32;
            let want = decoded * factors[(row / 2) * 2 + col / 4];
            let want_bits = (want.to_bits() >> 16) as u16;
            assert_eq!(
                u16::from_le_bytes([pair[0], pair[1]]),
                want_bits,
                "element {i}"
            );
        }
        let md = g.metadata();
        assert_eq!(
            md.get_str("mistral3.source_quantization").unwrap(),
            "hf_fp8"
        );
        let listed: Vec<String> = md
            .get_array("mistral3.source_fp8_tensors")
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, ["blk.0.ffn_down.weight"]);

        let refusal = |config: &str, tensors: &[(&str, &str, &[u64], &[u8])]| match Conversion::plan(
            &test_folder(config, tensors),
        ) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(
            refusal(&config(""), &tensors),
            "missing fp8 block size metadata for tensor \"model.layers.0.mlp.down_proj.weight\""
        );
        assert_eq!(
            refusal(&with_blocks, &[tensors[0], tensors[2]]),
            "missing fp8 scale companion for tensor \"model.layers.0.mlp.down_proj.weight\""
        );
        let wrong = [
            tensors[0],
            (
                "model.layers.0.mlp.down_proj.weight_scale_inv",
                "F32",
                &[1, 4],
                &factor_bytes,
            ),
            tensors[2],
        ];
        assert_eq!(
            refusal(&with_blocks, &wrong),
            "unexpected fp8 scale shape [1 4] for tensor \"blk.0.ffn_down.weight\" shape [3 6]; want [2 2]"
        );
        let two = [
            tensors[0],
            tensors[1],
            (
                "model.layers.0.mlp.down_proj.weight.scale",
                "F32",
                &[2, 2],
                &factor_bytes,
            ),
            tensors[2],
        ];
        assert!(
            refusal(&with_blocks, &two).starts_with("multiple fp8 scale companions for tensor")
        );
        let disagree = config(
            r#", "quantization_config": {"quant_method": "fp8", "weight_block_size": [2, 4]},
                "text_config": {"quantization": {"quant_method": "FP8", "weight_block_size": [128, 128]}}"#,
        );
        assert_eq!(
            refusal(&disagree, &tensors),
            "multiple fp8 block sizes in config.json: 2x4 and 128x128"
        );
    }

    /// A cancellation asked for inside a large tensor stops its write there, not at its end.
    #[test]
    fn progress_and_cancellation_reach_inside_a_large_tensor() {
        let rows = 4096u64;
        let data = vec![0u8; (rows * 4096 * 2) as usize];
        let folder = test_folder(
            r#"{"architectures": ["Ministral3ForCausalLM"], "hidden_size": 4096,
                "num_attention_heads": 32}"#,
            &[("model.embed_tokens.weight", "F16", &[rows, 4096], &data)],
        );
        let conversion = Conversion::plan(&folder).unwrap();
        let total = conversion.output_len().unwrap();
        let mut seen = Vec::new();
        let result = conversion.write_with_progress(std::io::sink(), &mut |p: &ConvertProgress| {
            assert_eq!(p.total, total);
            seen.push(p.written);
            // The header, then the first report inside the 32 MiB tensor: stop there.
            if seen.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(matches!(result, Err(ConvertError::Cancelled)));
        assert_eq!(seen.len(), 2);
        assert!(
            seen[1] > seen[0] && seen[1] < total - data.len() as u64 / 4,
            "{seen:?} of {total}"
        );
    }
}
