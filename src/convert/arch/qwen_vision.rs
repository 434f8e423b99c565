//! The vision towers of Qwen 3.5 and Qwen3-VL (`model.visual.*`), as Ollama converts them
//! (`convert/convert_qwen3next.go` and `convert_qwen3vl.go`, both `MultimodalConverter`s): not in
//! the model GGUF but in a separate projector GGUF (`general.architecture` `clip`, projector type
//! `qwen3vl_merger`), which a create stores as an `application/vnd.ollama.image.projector` layer
//! and never quantizes.
//!
//! The tower's tensors keep their Hugging Face layout; only names change (`blocks` → `blk`,
//! `norm1` → `ln1`, the merger's MLP → `mm.0`/`mm.2`, …), the position embedding is stored F32,
//! BF16 weights stay BF16, and the 3-D patch convolution `[out, in, 2, h, w]` is stored as its
//! two frames, `v.patch_embd.weight` and `v.patch_embd.weight.1`, in F32. The two converters
//! differ in where the preprocessor's values go (Qwen 3.5 fills gaps, Qwen3-VL overrides and
//! requires the file), in their defaults and keys, and in how deepstack mergers are named.

use kiln_gguf::{Array, Value, ValueType};

use super::{Metadata, Parameters, Projector};
use crate::convert::{Config, ConvertError, ModelFolder, Planned};

/// Which of Ollama's converters reads the tower.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    /// `qwen3NextModel` (Qwen 3.5).
    Qwen35,
    /// `qwen3VLModel` (Qwen3-VL).
    Qwen3Vl,
}

/// Ollama's `vision_config` structs, completed (Qwen 3.5) or overridden (Qwen3-VL) from
/// `preprocessor_config.json`.
pub(super) struct Vision {
    flavor: Flavor,
    pub(super) depth: u32,
    hidden: u32,
    feed_forward: u32,
    heads: u32,
    position_embeddings: u32,
    in_channels: u32,
    out_hidden: u32,
    patch_size: u32,
    spatial_merge_size: u32,
    layer_norm_eps: f32,
    rope_theta: f32,
    temporal_patch_size: u32,
    deepstack_indexes: Vec<i32>,
    shortest_edge: u32,
    longest_edge: u32,
    image_mean: Vec<f32>,
    image_std: Vec<f32>,
}

/// The tower's keys in the model GGUF, which both converters' `TextKV` deletes when the tower
/// goes to a projector.
const VISION_KEYS: [&str; 15] = [
    "vision.block_count",
    "vision.embedding_length",
    "vision.feed_forward_length",
    "vision.attention.head_count",
    "vision.num_channels",
    "vision.patch_size",
    "vision.spatial_merge_size",
    "vision.attention.layer_norm_epsilon",
    "vision.rope.freq_base",
    "vision.temporal_patch_size",
    "vision.deepstack_visual_indexes",
    "vision.shortest_edge",
    "vision.longest_edge",
    "vision.image_mean",
    "vision.image_std",
];

/// What Qwen 3.5's `TextKV` deletes besides the tower's keys.
const QWEN35_TEXT_KEYS_REMOVED: [&str; 7] = [
    "image_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
    "mrope_sections",
    "rope.mrope_section",
    "rope.mrope_interleaved",
    "ssm.v_head_reordered",
];

/// What Qwen3-VL's `TextKV` deletes besides the tower's keys.
const QWEN3VL_TEXT_KEYS_REMOVED: [&str; 1] = ["rope.mrope_section"];

/// Ollama's Qwen 3.5 renames of the tower's tensors (after the model's own replacements), in
/// its order.
const PROJECTOR_NAMES: [(&str, &str); 9] = [
    ("v.pos_embed", "v.position_embd"),
    ("v.patch_embed", "v.patch_embd"),
    ("v.merger.norm", "v.post_ln"),
    ("v.merger.linear_fc1", "mm.0"),
    ("v.merger.linear_fc2", "mm.2"),
    (".mlp.linear_fc1", ".ffn_up"),
    (".mlp.linear_fc2", ".ffn_down"),
    (".norm1", ".ln1"),
    (".norm2", ".ln2"),
];

impl Vision {
    /// Qwen 3.5's tower: every field of `vision_config` (Go decodes them all, so a mistyped one
    /// fails even for a text-only model), with the preprocessor's values where the config
    /// leaves them out.
    pub(super) fn read(c: &Config, folder: &ModelFolder) -> Result<Vision, ConvertError> {
        let v = c.object("vision_config")?;
        let mut vision = Vision::fields(Flavor::Qwen35, &v, None)?;
        if vision.depth > 0 {
            // Ollama takes the preprocessor's values only when the whole file decodes.
            if let Some(pre) = preprocessor(folder)? {
                vision.fill_from(&pre);
            }
        }
        Ok(vision)
    }

    /// Qwen3-VL's tower: `vision_config` with every field `preprocessor_config.json` sets
    /// decoded over it (Go's `json.Unmarshal` into the same struct); the file is required, and
    /// a field of the wrong type in either is an error.
    pub(super) fn read_qwen3vl(c: &Config, folder: &ModelFolder) -> Result<Vision, ConvertError> {
        let v = c.object("vision_config")?;
        let bytes = folder.require("preprocessor_config.json")?;
        let pre = Config::parse(bytes, &folder.limits).map_err(in_preprocessor)?;
        Vision::fields(Flavor::Qwen3Vl, &v, Some(&pre))
    }

    /// The fields, each from `over` when it sets it, else from `v`.
    fn fields(flavor: Flavor, v: &Config, over: Option<&Config>) -> Result<Vision, ConvertError> {
        let size = v.object("size")?;
        let over_size = match over {
            Some(o) => Some(o.object("size").map_err(in_preprocessor)?),
            None => None,
        };
        // The value of `key` from the first of `over`, `own` that sets it.
        fn read<T>(
            own: &Config,
            over: Option<&Config>,
            key: &str,
            get: fn(&Config, &str) -> Result<T, ConvertError>,
        ) -> Result<T, ConvertError> {
            match over {
                Some(o) if o.contains(key) => get(o, key).map_err(in_preprocessor),
                _ => get(own, key),
            }
        }
        let u = |key: &str| read(v, over, key, Config::u32);
        let f = |key: &str| read(v, over, key, Config::f32);
        let edge = |key: &str| read(&size, over_size.as_ref(), key, Config::u32);
        let vision = Vision {
            flavor,
            depth: u("depth")?,
            hidden: u("hidden_size")?,
            feed_forward: u("intermediate_size")?,
            heads: u("num_heads")?,
            position_embeddings: u("num_position_embeddings")?,
            in_channels: u("in_channels")?,
            out_hidden: u("out_hidden_size")?,
            patch_size: u("patch_size")?,
            spatial_merge_size: u("spatial_merge_size")?,
            layer_norm_eps: f("layer_norm_epsilon")?,
            rope_theta: f("rope_theta")?,
            temporal_patch_size: u("temporal_patch_size")?,
            deepstack_indexes: read(v, over, "deepstack_visual_indexes", Config::i32s)?,
            shortest_edge: edge("shortest_edge")?,
            longest_edge: edge("longest_edge")?,
            image_mean: read(v, over, "image_mean", Config::f32s)?,
            image_std: read(v, over, "image_std", Config::f32s)?,
        };
        if flavor == Flavor::Qwen3Vl {
            // Decoded (and so checked) by Ollama, used by neither.
            u("window_size")?;
        }
        Ok(vision)
    }

    fn fill_from(&mut self, pre: &Preprocessor) {
        let fill = |own: &mut u32, from: u32| {
            if *own == 0 {
                *own = from;
            }
        };
        fill(&mut self.patch_size, pre.patch_size);
        fill(&mut self.temporal_patch_size, pre.temporal_patch_size);
        fill(&mut self.spatial_merge_size, pre.merge_size);
        fill(&mut self.shortest_edge, pre.shortest_edge);
        fill(&mut self.longest_edge, pre.longest_edge);
        if self.image_mean.is_empty() {
            self.image_mean = pre.image_mean.clone();
        }
        if self.image_std.is_empty() {
            self.image_std = pre.image_std.clone();
        }
    }

    /// The `vision.*` keys Ollama's `KV` writes into the model for a tower (which `TextKV`
    /// deletes again when the tower goes to a projector).
    pub(super) fn insert_model_keys(&self, p: &mut Parameters) {
        if self.flavor == Flavor::Qwen3Vl {
            return self.insert_qwen3vl_model_keys(p);
        }
        let nonzero = |p: &mut Parameters, key: &'static str, value: u32| {
            if value > 0 {
                p.insert(key, Value::U32(value));
            }
        };
        p.insert("vision.block_count", Value::U32(self.depth));
        p.insert("vision.embedding_length", Value::U32(self.hidden));
        nonzero(p, "vision.feed_forward_length", self.feed_forward);
        p.insert("vision.attention.head_count", Value::U32(self.heads));
        p.insert("vision.num_channels", Value::U32(self.in_channels));
        nonzero(p, "vision.patch_size", self.patch_size);
        nonzero(p, "vision.spatial_merge_size", self.spatial_merge_size);
        if self.layer_norm_eps > 0.0 {
            let eps = Value::F32(self.layer_norm_eps);
            p.insert("vision.attention.layer_norm_epsilon", eps);
        }
        if self.rope_theta > 0.0 {
            p.insert("vision.rope.freq_base", Value::F32(self.rope_theta));
        }
        nonzero(p, "vision.temporal_patch_size", self.temporal_patch_size);
        let indexes = self.deepstack_indexes.iter().map(|&i| Value::I32(i));
        p.insert(
            "vision.deepstack_visual_indexes",
            array(ValueType::I32, indexes),
        );
        nonzero(p, "vision.shortest_edge", self.shortest_edge);
        nonzero(p, "vision.longest_edge", self.longest_edge);
        if !self.image_mean.is_empty() {
            p.insert("vision.image_mean", f32_array(&self.image_mean));
        }
        if !self.image_std.is_empty() {
            p.insert("vision.image_std", f32_array(&self.image_std));
        }
    }

    /// Qwen3-VL's `vision.*` keys, with its defaults (`cmp.Or`).
    fn insert_qwen3vl_model_keys(&self, p: &mut Parameters) {
        let or = |v: u32, default: u32| if v == 0 { default } else { v };
        p.insert("vision.block_count", Value::U32(or(self.depth, 32)));
        p.insert("vision.embedding_length", Value::U32(self.hidden));
        if self.feed_forward > 0 {
            p.insert("vision.feed_forward_length", Value::U32(self.feed_forward));
        }
        p.insert(
            "vision.attention.head_count",
            Value::U32(or(self.heads, 16)),
        );
        p.insert("vision.num_channels", Value::U32(self.in_channels));
        p.insert("vision.patch_size", Value::U32(or(self.patch_size, 14)));
        let merge = or(self.spatial_merge_size, 2);
        p.insert("vision.spatial_merge_size", Value::U32(merge));
        p.insert(
            "vision.attention.layer_norm_epsilon",
            Value::F32(or_f32(self.layer_norm_eps, 1e-6)),
        );
        p.insert(
            "vision.rope.freq_base",
            Value::F32(or_f32(self.rope_theta, 1e4)),
        );
        let temporal = or(self.temporal_patch_size, 2);
        p.insert("vision.temporal_patch_size", Value::U32(temporal));
        let indexes = self.deepstack_indexes.iter().map(|&i| Value::I32(i));
        p.insert(
            "vision.deepstack_visual_indexes",
            array(ValueType::I32, indexes),
        );
        p.insert("vision.shortest_edge", Value::U32(self.shortest_edge));
        p.insert("vision.longest_edge", Value::U32(self.longest_edge));
        p.insert("vision.image_mean", f32_array(&self.image_mean));
        p.insert("vision.image_std", f32_array(&self.image_std));
    }

    /// Deepstack layer count (Qwen3-VL's `n_deepstack_layers`).
    pub(super) fn deepstack_layers(&self) -> u32 {
        self.deepstack_indexes.len() as u32
    }

    /// Ollama's `ProjectorKV`; `text_hidden` is the projection width when the tower does not
    /// name one.
    fn projector_metadata(&self, c: &Config, text_hidden: u32) -> Result<Metadata, ConvertError> {
        let qwen3vl = self.flavor == Flavor::Qwen3Vl;
        // Qwen3-VL's defaults (`cmp.Or`); Qwen 3.5 writes what the config says.
        let or = |v: u32, default: u32| if v == 0 && qwen3vl { default } else { v };
        let depth = or(self.depth, 32);
        let flags = c.generated("deepstack layer flags", u64::from(depth))?;
        let mut deepstack = vec![false; flags];
        for &i in &self.deepstack_indexes {
            if let Some(flag) = usize::try_from(i).ok().and_then(|i| deepstack.get_mut(i)) {
                *flag = true;
            }
        }
        // The image side whose patch grid the position embeddings cover, when they are square
        // (from the patch size as given, not its default).
        let mut image_size = 768u32;
        if self.position_embeddings > 0 && self.patch_size > 0 {
            // Go's uint32(math.Sqrt(float64(n))): exact for every uint32 square.
            let root = f64::from(self.position_embeddings).sqrt() as u32;
            if root.wrapping_mul(root) == self.position_embeddings {
                image_size = root.wrapping_mul(self.patch_size);
            }
        }
        let projection_dim = match self.out_hidden {
            0 => text_hidden,
            n => n,
        };
        let mut kv = Metadata::new();
        let mut put = |key: &str, value: Value<'static>| {
            kv.insert(key.to_owned(), value);
        };
        put("general.architecture", Value::string("clip"));
        put("general.type", Value::string("mmproj"));
        put("general.file_type", Value::U32(1));
        put("general.quantization_version", Value::U32(2));
        put("clip.has_vision_encoder", Value::Bool(true));
        put("clip.projector_type", Value::string("qwen3vl_merger"));
        put("clip.use_gelu", Value::Bool(true));
        put("clip.vision.block_count", Value::U32(depth));
        put("clip.vision.embedding_length", Value::U32(self.hidden));
        let feed_forward = match self.feed_forward {
            0 if qwen3vl => self.hidden.wrapping_mul(4),
            n => n,
        };
        put("clip.vision.feed_forward_length", Value::U32(feed_forward));
        put(
            "clip.vision.attention.head_count",
            Value::U32(or(self.heads, 16)),
        );
        put("clip.vision.image_size", Value::U32(image_size));
        put(
            "clip.vision.patch_size",
            Value::U32(or(self.patch_size, 14)),
        );
        put("clip.vision.projection_dim", Value::U32(projection_dim));
        put(
            "clip.vision.spatial_merge_size",
            Value::U32(or(self.spatial_merge_size, 2)),
        );
        put(
            "clip.vision.attention.layer_norm_epsilon",
            Value::F32(or_f32(self.layer_norm_eps, 1e-6)),
        );
        put(
            "clip.vision.is_deepstack_layers",
            array(ValueType::Bool, deepstack.into_iter().map(Value::Bool)),
        );
        if qwen3vl {
            put("clip.vision.num_channels", Value::U32(self.in_channels));
            put(
                "clip.vision.temporal_patch_size",
                Value::U32(or(self.temporal_patch_size, 2)),
            );
            put(
                "clip.vision.rope.freq_base",
                Value::F32(or_f32(self.rope_theta, 1e4)),
            );
            if self.shortest_edge > 0 {
                put(
                    "clip.vision.image_min_pixels",
                    Value::U32(self.shortest_edge),
                );
            }
            if self.longest_edge > 0 {
                put(
                    "clip.vision.image_max_pixels",
                    Value::U32(self.longest_edge),
                );
            }
        }
        // Qwen3-VL writes the normalisation only per colour channel.
        let written = |v: &[f32]| if qwen3vl { v.len() == 3 } else { !v.is_empty() };
        if written(&self.image_mean) {
            put("clip.vision.image_mean", f32_array(&self.image_mean));
        }
        if written(&self.image_std) {
            put("clip.vision.image_std", f32_array(&self.image_std));
        }
        Ok(kv)
    }

    /// Whether a tensor (by its GGUF name) belongs to the tower.
    fn is_tower(&self, name: &str) -> bool {
        name.starts_with("v.") || (self.flavor == Flavor::Qwen3Vl && name.starts_with("mm."))
    }

    /// The projector name of a tower tensor (Ollama's renames after its replacements).
    fn projector_name(&self, name: &str) -> String {
        match self.flavor {
            Flavor::Qwen35 => kiln_go::strings::Replacer::new(&PROJECTOR_NAMES).replace(name),
            Flavor::Qwen3Vl => self.qwen3vl_name(name),
        }
    }

    /// Ollama's `qwen3VLProjectorRename`: the merger's MLP and norm, and each deepstack merger
    /// numbered by the tower layer it follows.
    fn qwen3vl_name(&self, name: &str) -> String {
        if name.starts_with("v.merger.") {
            return name
                .replacen("v.merger.linear_fc1", "mm.0", 1)
                .replacen("v.merger.linear_fc2", "mm.2", 1)
                .replacen("v.merger.norm", "v.post_ln", 1);
        }
        let Some(rest) = name.strip_prefix("v.deepstack.") else {
            return name.to_owned();
        };
        // `^v\.deepstack\.(\d+)\.(.+)$`, the number read by Go's strconv.Atoi.
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, suffix) = rest.split_at(digits);
        let Some(suffix) = suffix.strip_prefix('.').filter(|s| !s.is_empty()) else {
            return name.to_owned();
        };
        let layer = number
            .parse::<i64>()
            .ok()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.deepstack_indexes.get(i));
        match layer {
            Some(layer) => {
                let suffix =
                    suffix
                        .replacen("linear_fc1", "fc1", 1)
                        .replacen("linear_fc2", "fc2", 1);
                format!("v.deepstack.{layer}.{suffix}")
            }
            None => name.to_owned(),
        }
    }

    /// Ollama's `ProjectorTensors`: takes the tower's tensors (`v.*`) out of `tensors` into a
    /// projector, or leaves everything where it is when there is no tower (depth 0) or nothing
    /// of it would be written.
    pub(super) fn split<'f>(
        &self,
        c: &Config,
        text_hidden: u32,
        tensors: &mut Vec<Planned<'f>>,
    ) -> Result<Option<Projector<'f>>, ConvertError> {
        // Qwen 3.5 splits only a tower its config has; Qwen3-VL whatever `v.`/`mm.` tensors exist.
        if self.depth == 0 && self.flavor == Flavor::Qwen35 {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut rest = Vec::with_capacity(tensors.len());
        let mut dropped_patch_embed = false;
        for t in tensors.drain(..) {
            if !self.is_tower(&t.name) {
                rest.push(t);
                continue;
            }
            let patch_embed = match self.flavor {
                Flavor::Qwen35 => t.name == "v.patch_embed.weight",
                Flavor::Qwen3Vl => self.projector_name(&t.name) == "v.patch_embd.weight",
            };
            if patch_embed {
                match patch_embed_frames(&t)? {
                    Some(frames) => out.extend(frames),
                    // Ollama leaves out a patch convolution of another shape.
                    None => dropped_patch_embed = true,
                }
                continue;
            }
            let mut t = t;
            // The storage was decided by the name before these renames, as in Ollama.
            t.name = self.projector_name(&t.name);
            if t.name == "v.position_embd.weight" {
                t.store_f32();
            } else {
                t.keep_bf16();
            }
            out.push(t);
        }
        if out.is_empty() {
            // Ollama then writes the whole checkpoint into one GGUF, tower included.
            *tensors = rest;
            if dropped_patch_embed {
                return Err(ConvertError::NotYet(
                    "a Qwen vision tower whose only tensor is a patch convolution that is not \
                     [out, in, 2, height, width]"
                        .into(),
                ));
            }
            return Ok(None);
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &out {
            if !names.insert(t.name.as_str()) {
                return Err(ConvertError::DuplicateTensor(t.name.clone()));
            }
        }
        *tensors = rest;
        Ok(Some(Projector {
            metadata: self.projector_metadata(c, text_hidden)?,
            tensors: out,
            text_keys_removed: [
                &VISION_KEYS[..],
                match self.flavor {
                    Flavor::Qwen35 => &QWEN35_TEXT_KEYS_REMOVED,
                    Flavor::Qwen3Vl => &QWEN3VL_TEXT_KEYS_REMOVED,
                },
            ],
        }))
    }
}

/// The two frames of a `[out, in, 2, h, w]` patch convolution as 4-D F32 tensors, or `None`
/// for any other shape.
fn patch_embed_frames<'f>(t: &Planned<'f>) -> Result<Option<[Planned<'f>; 2]>, ConvertError> {
    if !matches!(t.shape(), [_, _, 2, _, _]) {
        return Ok(None);
    }
    let frame = |index: u64, name: &str| {
        t.select(2, index, name.to_owned())
            .map(|mut f| {
                f.store_f32();
                f
            })
            .ok_or_else(|| {
                ConvertError::NotYet(format!(
                    "a Qwen patch convolution stored as {} with a value transform",
                    t.name
                ))
            })
    };
    Ok(Some([
        frame(0, "v.patch_embd.weight")?,
        frame(1, "v.patch_embd.weight.1")?,
    ]))
}

/// The fields of `preprocessor_config.json` Ollama reads; `None` when the file is absent or
/// does not decode as Go would decode it (Ollama then ignores it).
struct Preprocessor {
    patch_size: u32,
    temporal_patch_size: u32,
    merge_size: u32,
    shortest_edge: u32,
    longest_edge: u32,
    image_mean: Vec<f32>,
    image_std: Vec<f32>,
}

fn preprocessor(folder: &ModelFolder) -> Result<Option<Preprocessor>, ConvertError> {
    let Some(bytes) = folder.read("preprocessor_config.json")? else {
        return Ok(None);
    };
    // Strict JSON first: Go's decoder refuses NaN and the like, which config.json's reader allows.
    if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
        return Ok(None);
    }
    let read = || -> Result<Preprocessor, ConvertError> {
        let pre = Config::parse(bytes, &folder.limits)?;
        let size = pre.object("size")?;
        Ok(Preprocessor {
            patch_size: pre.u32("patch_size")?,
            temporal_patch_size: pre.u32("temporal_patch_size")?,
            merge_size: pre.u32("merge_size")?,
            shortest_edge: size.u32("shortest_edge")?,
            longest_edge: size.u32("longest_edge")?,
            image_mean: pre.f32s("image_mean")?,
            image_std: pre.f32s("image_std")?,
        })
    };
    Ok(read().ok())
}

fn array(ty: ValueType, values: impl Iterator<Item = Value<'static>>) -> Value<'static> {
    Value::Array(Array::new(ty, values.collect()))
}

fn f32_array(values: &[f32]) -> Value<'static> {
    array(ValueType::F32, values.iter().map(|&v| Value::F32(v)))
}

/// A JSON error of `preprocessor_config.json` (the reader names `config.json`).
fn in_preprocessor(e: ConvertError) -> ConvertError {
    match e {
        ConvertError::Json { message, .. } => ConvertError::Json {
            file: "preprocessor_config.json".into(),
            message,
        },
        other => other,
    }
}

/// Go's `cmp.Or` for a float.
fn or_f32(v: f32, default: f32) -> f32 {
    if v == 0.0 { default } else { v }
}
