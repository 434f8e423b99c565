//! The output's tensors ([`Planned`]): GGUF names and storage types, head regrouping, Ollama's
//! tensor order, and the conversion of their values (streamed whole or produced by range).

use std::borrow::Cow;
use std::io::Write;

use kiln_gguf::{GgmlType, TensorSpec, Writer};

use super::arch::gpt_oss;
use super::{ConvertError, Dtype, TensorView, fp8};

/// GGUF storage Ollama picks for a converted tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    F32,
    F16,
    BF16,
}

impl Kind {
    fn ggml(self) -> GgmlType {
        match self {
            Kind::F32 => GgmlType::F32,
            Kind::F16 => GgmlType::F16,
            Kind::BF16 => GgmlType::BF16,
        }
    }

    /// Bytes per value.
    fn ggml_size(self) -> usize {
        match self {
            Kind::F32 => 4,
            Kind::F16 | Kind::BF16 => 2,
        }
    }

    /// Ollama's `tensorBase.Kind` and `safetensor.Kind`: biases, norms and other 1-D tensors
    /// (and a few named ones) stay F32, other tensors are F16, or BF16 when they were BF16.
    fn for_tensor(name: &str, dims: usize, dtype: Dtype) -> Kind {
        const F32_SUFFIXES: [&str; 6] = [
            ".ffn_gate_inp.weight",
            ".bias",
            ".shortconv.conv.weight",
            ".ssm_conv1d.weight",
            "rel_pos_h",
            "rel_pos_w",
        ];
        const F32_PREFIXES: [&str; 3] = ["a.feature_extractor.", "a.conv1d.", "a.subsampling."];
        const F32_NAMES: [&str; 7] = [
            "token_types.weight",
            "v.positional_embedding_vlm",
            "v.position_embd.weight",
            "v.tile_position_embd.weight",
            "v.pre_tile_position_embd.weight",
            "v.post_tile_position_embd.weight",
            "s.position_embd",
        ];
        let always_f32 = F32_SUFFIXES.iter().any(|s| name.ends_with(s))
            || F32_PREFIXES.iter().any(|p| name.starts_with(p))
            || name.contains(".conv_dw.")
            || F32_NAMES.contains(&name);
        if always_f32 || dims <= 1 {
            return Kind::F32;
        }
        if dtype == Dtype::F8E4M3 {
            return Kind::BF16;
        }
        let keeps_bf16 = !["v.", "s.", "mm."].iter().any(|p| name.starts_with(p))
            && !name.contains("ffn_gate_inp_shexp.weight");
        if dtype == Dtype::BF16 && keeps_bf16 {
            Kind::BF16
        } else {
            Kind::F16
        }
    }
}

/// A function applied to every value (in float32, before it is stored in the output type), for
/// parameters Hugging Face stores in another form than llama.cpp computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ValueMap {
    /// The value itself.
    #[default]
    AsIs,
    /// `value + 1` (Gemma's and Qwen 3.5's norm weights are stored as `weight - 1`).
    AddOne,
    /// `-exp(value)`, computed in float64 and rounded once as Ollama does (a gated delta-net's
    /// `A_log` becomes the decay `A` itself).
    NegExp,
}

impl ValueMap {
    fn apply(self, value: f32) -> f32 {
        match self {
            // Only when asked: adding zero would turn -0.0 into +0.0.
            ValueMap::AsIs => value,
            ValueMap::AddOne => value + 1.0,
            ValueMap::NegExp => -(f64::from(value).exp() as f32),
        }
    }
}

/// Which dimension of a tensor [`HeadTiling`] reorders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Axis {
    /// The outermost dimension (Hugging Face's output features).
    Rows,
    /// The second of a 2-D tensor (input features).
    Columns,
}

/// Value heads moved from Hugging Face's order, grouped by key head (`k0v0 k0v1 … k1v0 k1v1 …`),
/// to the tiled order ggml broadcasts over (`k0v0 k1v0 … k0v1 k1v1 …`), as Ollama and llama.cpp
/// store Qwen 3.5's linear-attention weights: ggml then repeats the key heads instead of
/// interleaving them. Along `axis`, the `start` entries before the value block stay in place;
/// the block is `key_heads × per_key` heads of `head_len` entries each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadTiling {
    /// The dimension reordered.
    pub axis: Axis,
    /// Entries (rows or columns) before the value heads, kept where they are.
    pub start: u64,
    /// Key heads (value-head groups).
    pub key_heads: u64,
    /// Value heads per key head.
    pub per_key: u64,
    /// Entries per value head.
    pub head_len: u64,
}

impl HeadTiling {
    /// Entries along the axis the tiling covers (the prefix and the value heads).
    fn len(&self) -> Option<u64> {
        self.key_heads
            .checked_mul(self.per_key)?
            .checked_mul(self.head_len)?
            .checked_add(self.start)
    }

    /// Source head (in Hugging Face's grouped order) of output head `i`.
    fn source_head(&self, i: u64) -> u64 {
        let (v, k) = (i / self.key_heads, i % self.key_heads);
        k * self.per_key + v
    }

    /// `data` (shape `shape`, already checked by [`Planned::tile_value_heads`]) as slices in
    /// output order.
    fn pieces<'d>(&self, data: &'d [u8], shape: &[u64]) -> Vec<&'d [u8]> {
        let rows = shape[0] as usize;
        if rows == 0 || data.is_empty() {
            return Vec::new();
        }
        let row_bytes = data.len() / rows;
        let heads = self.key_heads * self.per_key;
        match self.axis {
            Axis::Rows => {
                let head_bytes = self.head_len as usize * row_bytes;
                let prefix = self.start as usize * row_bytes;
                let mut pieces = Vec::with_capacity(heads as usize + 1);
                pieces.push(&data[..prefix]);
                for i in 0..heads {
                    let at = prefix + self.source_head(i) as usize * head_bytes;
                    pieces.push(&data[at..at + head_bytes]);
                }
                pieces
            }
            Axis::Columns => {
                let cols = shape[1] as usize;
                let width = row_bytes / cols;
                let head_bytes = self.head_len as usize * width;
                let prefix = self.start as usize * width;
                let mut pieces = Vec::with_capacity(rows * (heads as usize + 1));
                for row in data.chunks_exact(row_bytes) {
                    pieces.push(&row[..prefix]);
                    for i in 0..heads {
                        let at = prefix + self.source_head(i) as usize * head_bytes;
                        pieces.push(&row[at..at + head_bytes]);
                    }
                }
                pieces
            }
        }
    }
}

/// A tensor of the output: its GGUF name and storage, and where its values come from.
pub(crate) struct Planned<'f> {
    pub name: String,
    kind: Kind,
    dtype: Dtype,
    /// Source shape, outermost first.
    shape: Vec<u64>,
    pub(super) data: Cow<'f, [u8]>,
    /// Rows regrouped per attention head (`Some(heads)`): llama.cpp's rotary layout for the
    /// interleaved halves Hugging Face stores.
    pub permute_heads: Option<u64>,
    /// What is done to every value before it is stored.
    pub values: ValueMap,
    /// Value heads reordered (rows or columns moved as whole heads).
    tiling: Option<HeadTiling>,
    /// An FP8 weight's block scales (its values are `decode(byte) × scale`).
    pub(super) fp8: Option<fp8::Scales>,
    /// MXFP4 expert weights, regrouped into ggml blocks as they are written (`data` is empty).
    pub(super) mxfp4: Option<gpt_oss::Mxfp4Source<'f>>,
    /// The stored bytes as slices, in output order, when they are not one slice (`data` is then
    /// empty): stacked experts, or one half of each expert's fused projection.
    pub(super) segments: Vec<&'f [u8]>,
}

impl<'f> Planned<'f> {
    pub(super) fn from_view(name: String, view: TensorView<'f>) -> Planned<'f> {
        Planned {
            kind: Kind::for_tensor(&name, view.shape.len(), view.dtype),
            name,
            dtype: view.dtype,
            shape: view.shape,
            data: Cow::Borrowed(view.data),
            permute_heads: None,
            values: ValueMap::AsIs,
            tiling: None,
            fp8: None,
            mxfp4: None,
            segments: Vec::new(),
        }
    }

    /// An FP8 weight with its scales (stored BF16 unless its name makes it F32).
    pub(super) fn from_fp8(name: String, view: TensorView<'f>, scales: fp8::Scales) -> Planned<'f> {
        let mut planned = Planned::from_view(name, view);
        planned.fp8 = Some(scales);
        planned
    }

    /// MXFP4 expert weights, written as ggml's MXFP4 blocks.
    pub(super) fn from_mxfp4(name: String, source: gpt_oss::Mxfp4Source<'f>) -> Planned<'f> {
        Planned {
            name,
            // Not a value conversion: `spec`, `write` and `convert_range` take the MXFP4 path.
            kind: Kind::F16,
            dtype: Dtype::U8,
            shape: source.shape(),
            data: Cow::Borrowed(&[]),
            permute_heads: None,
            values: ValueMap::AsIs,
            tiling: None,
            fp8: None,
            mxfp4: Some(source),
            segments: Vec::new(),
        }
    }

    /// Every other column (`first`, `first + 2`, …) of a 2-D tensor, as a new tensor `name`
    /// (its storage decided by the new name). Used for interleaved fused biases, which are small:
    /// the selected values are copied.
    pub(super) fn every_other_column(
        &self,
        name: String,
        first: u64,
    ) -> Result<Planned<'f>, ConvertError> {
        let &[rows, cols] = &self.shape[..] else {
            return Err(ConvertError::Split {
                name: self.name.clone(),
                shape: self.shape.clone(),
            });
        };
        if !cols.is_multiple_of(2)
            || self.fp8.is_some()
            || self.mxfp4.is_some()
            || self.tiling.is_some()
            || !self.segments.is_empty()
        {
            return Err(ConvertError::Split {
                name: self.name.clone(),
                shape: self.shape.clone(),
            });
        }
        let width = self.dtype.size() as usize;
        let row_bytes = cols as usize * width;
        let data: Vec<u8> = self
            .data
            .chunks_exact(row_bytes.max(1))
            .take(rows as usize)
            .flat_map(|row| {
                row.chunks_exact(width)
                    .skip(first as usize)
                    .step_by(2)
                    .flatten()
                    .copied()
            })
            .collect();
        Ok(Planned {
            kind: Kind::for_tensor(&name, 2, self.dtype),
            name,
            dtype: self.dtype,
            shape: vec![rows, cols / 2],
            data: Cow::Owned(data),
            permute_heads: None,
            values: self.values,
            tiling: None,
            fp8: None,
            mxfp4: None,
            segments: Vec::new(),
        })
    }

    /// The source bytes, when they are one borrowed slice of the folder and are stored with no
    /// reordering or decoding (what stacking and splitting experts can slice).
    fn plain_source(&self) -> Option<&'f [u8]> {
        let plain = self.tiling.is_none()
            && self.permute_heads.is_none()
            && self.fp8.is_none()
            && self.mxfp4.is_none()
            && self.segments.is_empty()
            && self.values == ValueMap::AsIs;
        match self.data {
            Cow::Borrowed(data) if plain => Some(data),
            _ => None,
        }
    }

    /// One tensor `name` of `parts` stacked along a new outermost dimension, in their order (as
    /// Ollama merges a layer's per-expert weights): every part must have the first's shape and
    /// dtype, and it decides the storage, as in Ollama.
    pub(crate) fn stack(
        name: String,
        parts: Vec<Planned<'f>>,
    ) -> Result<Planned<'f>, ConvertError> {
        let refuse = |reason: String| ConvertError::Experts {
            name: name.clone(),
            reason,
        };
        let Some(first) = parts.first() else {
            return Err(refuse("no tensors to stack".into()));
        };
        let mut segments = Vec::with_capacity(parts.len());
        for part in &parts {
            if part.shape != first.shape || part.dtype != first.dtype {
                return Err(refuse(format!(
                    "{:?} is {} {:?}, {:?} {} {:?}",
                    part.name, part.dtype, part.shape, first.name, first.dtype, first.shape
                )));
            }
            let data = part
                .plain_source()
                .ok_or_else(|| refuse(format!("{:?} is not stored as it is", part.name)))?;
            segments.push(data);
        }
        let mut shape = Vec::with_capacity(first.shape.len() + 1);
        shape.push(parts.len() as u64);
        shape.extend_from_slice(&first.shape);
        Ok(first.segmented(name, shape, segments))
    }

    /// A tensor `name` of this one's kind and dtype whose bytes are `segments` of the folder, in
    /// order, stored as they are (a stacked or split expert projection).
    fn segmented(&self, name: String, shape: Vec<u64>, segments: Vec<&'f [u8]>) -> Planned<'f> {
        Planned {
            name,
            kind: self.kind,
            dtype: self.dtype,
            shape,
            data: Cow::Borrowed(&[]),
            permute_heads: None,
            values: ValueMap::AsIs,
            tiling: None,
            fp8: None,
            mxfp4: None,
            segments,
        }
    }

    /// The two halves of the second dimension (for each index of the first, its first and its
    /// last half), as tensors `names` stored like this one: a fused `[experts, 2 × ff, hidden]`
    /// gate/up projection split into its gate and up parts, as Ollama and llama.cpp split it.
    pub(crate) fn halves(&self, names: [String; 2]) -> Result<[Planned<'f>; 2], ConvertError> {
        let refuse = |reason: &str| ConvertError::Experts {
            name: self.name.clone(),
            reason: format!("{reason} (shape {:?})", self.shape),
        };
        let data = self
            .plain_source()
            .ok_or_else(|| refuse("it is not stored as it is"))?;
        let (&outer, &split) = match &self.shape[..] {
            [outer, split, _, ..] => (outer, split),
            _ => {
                return Err(refuse(
                    "a fused projection to split has at least 3 dimensions",
                ));
            }
        };
        if !split.is_multiple_of(2) {
            return Err(refuse("an odd second dimension does not split into halves"));
        }
        let mut shape = self.shape.clone();
        shape[1] = split / 2;
        let len = usize::try_from(outer).ok().filter(|&n| n > 0);
        let outer_bytes = len.map_or(0, |n| data.len() / n);
        let half = outer_bytes / 2;
        let part = |which: usize, name: String| {
            let segments = data
                .chunks_exact(outer_bytes.max(1))
                .filter(|_| outer_bytes > 0)
                .map(|chunk| &chunk[which * half..(which + 1) * half])
                .collect();
            self.segmented(name, shape.clone(), segments)
        };
        let [gate, up] = names;
        Ok([part(0, gate), part(1, up)])
    }

    /// Index `index` of dimension `axis`, as a tensor `name` of one dimension fewer stored like
    /// this one (a frame of a 3-D convolution); `None` when the values are not stored as they
    /// are or the index is out of range.
    pub(crate) fn select(&self, axis: usize, index: u64, name: String) -> Option<Planned<'f>> {
        let data = self.plain_source()?;
        let &along = self.shape.get(axis)?;
        if index >= along {
            return None;
        }
        let outer: u64 = self.shape[..axis].iter().product();
        let inner: u64 = self.shape[axis + 1..].iter().product();
        let width = self.dtype.size();
        let inner_bytes = usize::try_from(inner.checked_mul(width)?).ok()?;
        let outer_bytes = inner_bytes.checked_mul(usize::try_from(along).ok()?)?;
        let expected = usize::try_from(outer).ok()?.checked_mul(outer_bytes)?;
        if expected != data.len() {
            return None;
        }
        let start = usize::try_from(index).ok()? * inner_bytes;
        let segments = if inner_bytes == 0 {
            Vec::new()
        } else {
            data.chunks_exact(outer_bytes)
                .map(|chunk| &chunk[start..start + inner_bytes])
                .collect()
        };
        let mut shape = self.shape.clone();
        shape.remove(axis);
        Some(self.segmented(name, shape, segments))
    }

    /// Stores the values as F32 whatever the name and source decided (Ollama's F32 writers).
    pub(crate) fn store_f32(&mut self) {
        self.kind = Kind::F32;
    }

    /// Keeps a BF16 source BF16 where it would have been stored F16 (Ollama's BF16 writer for
    /// vision towers, whose names otherwise make them F16).
    pub(crate) fn keep_bf16(&mut self) {
        if self.dtype == Dtype::BF16 && self.kind == Kind::F16 {
            self.kind = Kind::BF16;
        }
    }

    /// A computed F32 vector (e.g. rope frequency factors).
    pub fn f32_vector(name: &str, values: &[f32]) -> Planned<'static> {
        Planned {
            name: name.to_owned(),
            kind: Kind::F32,
            dtype: Dtype::F32,
            shape: vec![values.len() as u64],
            data: Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            permute_heads: None,
            values: ValueMap::AsIs,
            tiling: None,
            fp8: None,
            mxfp4: None,
            segments: Vec::new(),
        }
    }

    /// Number of dimensions.
    pub fn dims(&self) -> usize {
        self.shape.len()
    }

    /// The source shape, outermost first.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// Gives the tensor another shape of the same number of values (dropping a dimension of
    /// one, say); its storage type follows the new number of dimensions, as Ollama decides it
    /// from the shape it writes.
    pub fn reshape(&mut self, shape: Vec<u64>) -> Result<(), ConvertError> {
        let count = |s: &[u64]| s.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        if count(&shape).is_none() || count(&shape) != count(&self.shape) || self.mxfp4.is_some() {
            return Err(ConvertError::Reshape {
                name: self.name.clone(),
                shape: self.shape.clone(),
                to: shape,
            });
        }
        self.kind = Kind::for_tensor(&self.name, shape.len(), self.dtype);
        self.shape = shape;
        Ok(())
    }

    /// Reorders the tensor's value heads as `tiling` says, after checking that its shape is the
    /// one the tiling covers exactly (a checkpoint whose linear-attention weights disagree with
    /// its `config.json` is an error, not a silently scrambled model). A tiling of one value
    /// head per key head changes nothing and is not recorded.
    pub fn tile_value_heads(&mut self, tiling: HeadTiling) -> Result<(), ConvertError> {
        let dim = match tiling.axis {
            Axis::Rows => 0,
            Axis::Columns => 1,
        };
        let fits = tiling.key_heads > 0
            && tiling.per_key > 0
            && tiling.head_len > 0
            && self.shape.len() > dim
            && (tiling.axis == Axis::Rows || self.shape.len() == 2)
            && tiling.len() == Some(self.shape[dim])
            && self.fp8.is_none()
            && self.mxfp4.is_none()
            && self.segments.is_empty()
            && self.permute_heads.is_none();
        if !fits {
            let axis = match tiling.axis {
                Axis::Rows => "rows",
                Axis::Columns => "columns of a 2-D tensor",
            };
            return Err(ConvertError::HeadLayout {
                name: self.name.clone(),
                shape: self.shape.clone(),
                expected: format!(
                    "{} leading {axis}, then {} key heads × {} value heads × {}",
                    tiling.start, tiling.key_heads, tiling.per_key, tiling.head_len
                ),
            });
        }
        if tiling.per_key > 1 {
            self.tiling = Some(tiling);
        }
        Ok(())
    }

    /// Keeps only the first `rows` rows (outermost dimension) when there are more.
    pub fn truncate_rows(&mut self, rows: u64) {
        let Some(&have) = self.shape.first() else {
            return;
        };
        if have > rows {
            let row_bytes = self.data.len() as u64 / have;
            self.data = match std::mem::take(&mut self.data) {
                Cow::Borrowed(d) => Cow::Borrowed(&d[..(rows * row_bytes) as usize]),
                Cow::Owned(mut d) => {
                    d.truncate((rows * row_bytes) as usize);
                    Cow::Owned(d)
                }
            };
            self.shape[0] = rows;
        }
    }

    pub(super) fn spec(&self) -> TensorSpec<'_> {
        TensorSpec::new(
            self.name.as_str(),
            if self.mxfp4.is_some() {
                GgmlType::MXFP4
            } else {
                self.kind.ggml()
            },
            self.shape.iter().rev().copied().collect::<Vec<_>>(),
        )
    }

    /// The source bytes in output order: whole, or row by row when heads are regrouped.
    fn pieces(&self) -> Result<Vec<&[u8]>, ConvertError> {
        if !self.segments.is_empty() {
            return Ok(self.segments.clone());
        }
        if let Some(tiling) = &self.tiling {
            return Ok(tiling.pieces(&self.data, &self.shape));
        }
        let Some(heads) = self.permute_heads else {
            return Ok(vec![&self.data[..]]);
        };
        let rows = self.shape[0];
        // No bytes, no rows to regroup (however many the shape claims).
        if rows == 0 || self.data.is_empty() {
            return Ok(Vec::new());
        }
        if heads == 0 || !rows.is_multiple_of(heads * 2) {
            return Err(ConvertError::Permute {
                name: self.name.clone(),
                rows,
                heads,
            });
        }
        let row_bytes = self.data.len() / rows as usize;
        let half = rows / heads / 2;
        let mut pieces = Vec::with_capacity(rows as usize);
        for head in 0..heads {
            for i in 0..half {
                for j in 0..2 {
                    let row = (head * 2 * half + j * half + i) as usize;
                    pieces.push(&self.data[row * row_bytes..(row + 1) * row_bytes]);
                }
            }
        }
        Ok(pieces)
    }

    /// Whether the stored bytes are the output bytes (no conversion of values).
    fn stored_as_is(&self) -> bool {
        self.values == ValueMap::AsIs
            && matches!(
                (self.dtype, self.kind),
                (Dtype::F32, Kind::F32) | (Dtype::F16, Kind::F16) | (Dtype::BF16, Kind::BF16)
            )
    }

    /// Streams the converted bytes to `writer`, a bounded chunk at a time, calling `written`
    /// with the tensor's bytes written so far after each chunk (an error stops the write).
    pub(super) fn write<W: Write>(
        &self,
        writer: &mut Writer<W>,
        written: &mut dyn FnMut(u64) -> Result<(), ConvertError>,
    ) -> Result<(), ConvertError> {
        let same = self.stored_as_is();
        let width = self.dtype.size() as usize;
        let mut out = Vec::with_capacity(CHUNK * 4);
        let mut done = 0u64;
        if let Some(source) = &self.mxfp4 {
            let blocks = source.block_count();
            let step = (CHUNK as u64 / 16).max(1);
            for first in (0..blocks).step_by(step as usize) {
                out.clear();
                source.write_blocks(first..(first + step).min(blocks), &mut out);
                writer.write_tensor_data(&out)?;
                done += out.len() as u64;
                written(done)?;
            }
            return Ok(());
        }
        for piece in self.pieces()? {
            if same {
                for chunk in piece.chunks(1 << 20) {
                    writer.write_tensor_data(chunk)?;
                    done += chunk.len() as u64;
                    written(done)?;
                }
                continue;
            }
            for chunk in piece.chunks(CHUNK * width) {
                out.clear();
                self.convert_values(chunk, &mut out);
                writer.write_tensor_data(&out)?;
                done += out.len() as u64;
                written(done)?;
            }
        }
        Ok(())
    }

    /// Bytes `range` of the converted tensor (in its output type) into `out`, converting only
    /// the values the range covers.
    pub(super) fn convert_range(
        &self,
        range: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) -> Result<(), ConvertError> {
        out.clear();
        if let Some(source) = &self.mxfp4 {
            const BLOCK: usize = 17;
            let (first, last) = (range.start / BLOCK, range.end.div_ceil(BLOCK));
            source.write_blocks(first as u64..last as u64, out);
            out.drain(..range.start - first * BLOCK);
            out.truncate(range.len());
            return Ok(());
        }
        let (from, to) = (self.dtype.size() as usize, self.kind.ggml_size());
        // Whole output values covering the range, trimmed to it afterwards.
        let (first, last) = (range.start / to, range.end.div_ceil(to));
        let mut at = 0usize;
        for piece in self.pieces()? {
            let values = piece.len() / from;
            let (lo, hi) = (first.max(at), last.min(at + values));
            if lo < hi {
                let src = &piece[(lo - at) * from..(hi - at) * from];
                if self.stored_as_is() {
                    out.extend_from_slice(src);
                } else {
                    self.convert_values(src, out);
                }
            }
            at += values;
            if at >= last {
                break;
            }
        }
        let skip = range.start - first * to;
        out.drain(..skip.min(out.len()));
        out.truncate(range.len());
        Ok(())
    }

    /// Appends the output values of stored values `chunk` to `out`.
    fn convert_values(&self, chunk: &[u8], out: &mut Vec<u8>) {
        let width = self.dtype.size() as usize;
        // Where the chunk starts among the stored values (every chunk is a slice of `data`):
        // an FP8 value's scale depends on its row and column.
        let first = (chunk.as_ptr() as usize - self.data.as_ptr() as usize) / width;
        for (i, bytes) in chunk.chunks_exact(width).enumerate() {
            let value = match (&self.fp8, self.dtype) {
                (Some(scales), _) => scales.value((first + i) as u64, bytes[0]),
                (None, dtype) => match dtype {
                    Dtype::F32 => f32::from_le_bytes(bytes.try_into().expect("4 bytes")),
                    Dtype::F16 => {
                        kiln_quant::f16_bits_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]))
                    }
                    _ => kiln_quant::bf16_bits_to_f32(u16::from_le_bytes([bytes[0], bytes[1]])),
                },
            };
            let value = self.values.apply(value);
            match self.kind {
                Kind::F32 => out.extend_from_slice(&value.to_le_bytes()),
                Kind::F16 => {
                    out.extend_from_slice(&kiln_quant::f32_to_f16_bits(value).to_le_bytes())
                }
                // Go's bfloat16 encoder truncates (exact for BF16 sources; only 1-D
                // tensors, stored as F32, are shifted).
                Kind::BF16 => out.extend_from_slice(&value.to_le_bytes()[2..]),
            }
        }
    }
}

const CHUNK: usize = 1 << 16;
/// The order Ollama's GGUF writer (`ggml.WriteGGUF`) puts tensors in: by layer number (tensors
/// outside `blk.N.` last), then by name.
pub(crate) fn ollama_tensor_order(a: &str, b: &str) -> std::cmp::Ordering {
    let block = |name: &str| block_of(name).unwrap_or(i64::MAX);
    block(a).cmp(&block(b)).then_with(|| a.cmp(b))
}

/// Ollama's `ggml.Tensor.block`: the layer number of a `blk.N.` name, `None` sorts last.
fn block_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?.trim_start_matches([' ', '\t']);
    let digits_end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '+' || c == '-'))))
        .map_or(rest.len(), |(i, _)| i);
    let (number, tail) = rest.split_at(digits_end);
    if !tail.starts_with('.') {
        return None;
    }
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_gguf::Value;

    #[test]
    fn block_numbers_as_gos_sscanf_reads_them() {
        assert_eq!(block_of("blk.0.attn_q.weight"), Some(0));
        assert_eq!(block_of("blk.12.ffn_up.bias"), Some(12));
        assert_eq!(block_of("blk.x.y"), None);
        assert_eq!(block_of("blk.3"), None);
        assert_eq!(block_of("token_embd.weight"), None);
    }

    #[test]
    fn storage_kinds_follow_ollamas_rules() {
        for (name, dims, dtype, kind) in [
            ("blk.0.attn_q.weight", 2, Dtype::F32, Kind::F16),
            ("blk.0.attn_q.weight", 2, Dtype::BF16, Kind::BF16),
            ("blk.0.attn_q.bias", 2, Dtype::BF16, Kind::F32),
            ("output_norm.weight", 1, Dtype::F16, Kind::F32),
            ("token_types.weight", 2, Dtype::F32, Kind::F32),
            ("v.blk.0.attn_q.weight", 2, Dtype::BF16, Kind::F16),
        ] {
            assert_eq!(Kind::for_tensor(name, dims, dtype), kind, "{name} {dtype}");
        }
    }

    #[test]
    fn head_regrouping_interleaves_each_heads_halves() {
        let rows: Vec<f32> = (0..6).map(|r| r as f32).collect();
        let mut t = Planned::f32_vector("blk.0.attn_q.weight", &rows);
        t.shape = vec![6, 1];
        t.permute_heads = Some(1);
        let values: Vec<f32> = t
            .pieces()
            .unwrap()
            .iter()
            .map(|p| f32::from_le_bytes((*p).try_into().unwrap()))
            .collect();
        assert_eq!(values, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        t.permute_heads = Some(4);
        assert!(matches!(
            t.pieces(),
            Err(ConvertError::Permute {
                rows: 6,
                heads: 4,
                ..
            })
        ));
        t.permute_heads = Some(0);
        assert!(t.pieces().is_err());
        let mut empty = Planned::f32_vector("blk.0.attn_k.weight", &[]);
        empty.permute_heads = Some(2);
        assert!(empty.pieces().unwrap().is_empty());
    }

    /// The converted bytes of tensor `t` as `write` streams them (the two-step path).
    fn written(t: &Planned<'_>) -> Vec<u8> {
        let spec = t.spec();
        let no_metadata: [(&str, Value<'_>); 0] = [];
        let mut w = Writer::new(Vec::new(), &no_metadata, std::slice::from_ref(&spec)).unwrap();
        let start = w.layout().data_offset as usize;
        let len = w.layout().sizes[0] as usize;
        t.write(&mut w, &mut |_| Ok(())).unwrap();
        w.finish().unwrap()[start..start + len].to_vec()
    }

    proptest::proptest! {
        /// Any byte range the one-pass quantizer asks for is that range of what the two-step
        /// conversion writes: regrouped heads, Gemma's `+ 1`, every source and output type.
        #[test]
        fn converted_ranges_are_slices_of_the_written_tensor(
            heads in 1u64..4,
            half in 1u64..4,
            cols in 1u64..24,
            types in proptest::sample::select(vec![
                (Dtype::F32, Kind::F32), (Dtype::F32, Kind::F16), (Dtype::F16, Kind::F16),
                (Dtype::F16, Kind::F32), (Dtype::BF16, Kind::BF16), (Dtype::BF16, Kind::F16),
                (Dtype::BF16, Kind::F32),
            ]),
            layout in 0u8..4,
            values in proptest::sample::select(vec![ValueMap::AsIs, ValueMap::AddOne, ValueMap::NegExp]),
            seed in proptest::num::u64::ANY,
            cuts in proptest::collection::vec((0.0f64..1.0, 0.0f64..1.0), 1..6),
        ) {
            let (dtype, kind) = types;
            // 0: as stored, 1: rotary halves regrouped, 2: value heads tiled by row (after a
            // prefix of rows), 3: by column (after a prefix of columns).
            let (start, per_key) = (cols % 3, heads + 1);
            let (rows, cols) = match layout {
                2 => (start + 2 * per_key * half, cols),
                3 => (heads * half * 2, start + 2 * per_key * half),
                _ => (heads * half * 2, cols),
            };
            let n = (rows * cols) as usize;
            let data: Vec<u8> = (0..n * dtype.size() as usize)
                .map(|i| (seed.wrapping_mul(i as u64 + 1).wrapping_add(i as u64 * 131) >> 7) as u8)
                .collect();
            let mut t = Planned {
                name: "blk.0.attn_q.weight".into(),
                kind,
                dtype,
                shape: vec![rows, cols],
                data: Cow::Owned(data),
                permute_heads: (layout == 1).then_some(heads),
                values,
                tiling: None,
                fp8: None,
                mxfp4: None,
                segments: Vec::new(),
            };
            if layout >= 2 {
                let axis = if layout == 2 { Axis::Rows } else { Axis::Columns };
                t.tile_value_heads(HeadTiling { axis, start, key_heads: 2, per_key, head_len: half })
                    .unwrap();
            }
            let whole = written(&t);
            let mut buf = Vec::new();
            t.convert_range(0..whole.len(), &mut buf).unwrap();
            proptest::prop_assert_eq!(&buf, &whole);
            for (a, b) in cuts {
                let (a, b) = ((a * whole.len() as f64) as usize, (b * whole.len() as f64) as usize);
                let range = a.min(b)..a.max(b);
                t.convert_range(range.clone(), &mut buf).unwrap();
                proptest::prop_assert_eq!(&buf[..], &whole[range]);
            }
        }
    }

    #[test]
    fn regrouping_an_empty_tensor_reads_nothing_whatever_its_shape() {
        let mut t = Planned::f32_vector("blk.0.attn_q.weight", &[]);
        t.shape = vec![1 << 40, 0];
        t.permute_heads = Some(2);
        assert!(t.pieces().unwrap().is_empty());
    }

    /// `values` (one per row) as an F32 tensor of `cols` columns per row.
    fn f32_matrix(values: &[f32], cols: u64) -> Planned<'static> {
        let mut t = Planned::f32_vector("blk.0.ssm_out.weight", values);
        t.shape = vec![values.len() as u64 / cols, cols];
        t
    }

    fn floats(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn value_heads_move_from_grouped_to_tiled_order() {
        // Two key heads with three value heads each: k0v0 k0v1 k0v2 k1v0 k1v1 k1v2 becomes
        // k0v0 k1v0 k0v1 k1v1 k0v2 k1v2, after one leading row kept in place.
        let mut rows = Planned::f32_vector("blk.0.ssm_a", &[9.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let by_row = |start| HeadTiling {
            axis: Axis::Rows,
            start,
            key_heads: 2,
            per_key: 3,
            head_len: 1,
        };
        rows.tile_value_heads(by_row(1)).unwrap();
        assert_eq!(floats(&written(&rows)), [9.0, 0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        // Heads of two columns, in each row.
        let mut cols = f32_matrix(&(0..16).map(|v| v as f32).collect::<Vec<_>>(), 8);
        cols.tile_value_heads(HeadTiling {
            axis: Axis::Columns,
            start: 0,
            key_heads: 2,
            per_key: 2,
            head_len: 2,
        })
        .unwrap();
        assert_eq!(
            floats(&written(&cols)),
            [
                0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 12.0, 13.0, 10.0, 11.0, 14.0,
                15.0
            ]
        );
        // A shape the tiling does not cover exactly is refused, naming the tensor.
        let mut short = Planned::f32_vector("blk.0.ssm_dt.bias", &[0.0; 5]);
        let err = short.tile_value_heads(by_row(0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reorder the value heads of \"blk.0.ssm_dt.bias\" of shape [5]: expected 0 \
             leading rows, then 2 key heads × 3 value heads × 1"
        );
        let mut vector = Planned::f32_vector("blk.0.ssm_out.weight", &[0.0; 8]);
        assert!(
            vector
                .tile_value_heads(HeadTiling {
                    axis: Axis::Columns,
                    ..by_row(0)
                })
                .is_err()
        );
        let mut overflow = Planned::f32_vector("blk.0.ssm_a", &[0.0; 4]);
        assert!(
            overflow
                .tile_value_heads(HeadTiling {
                    key_heads: u64::MAX,
                    ..by_row(0)
                })
                .is_err()
        );
    }

    #[test]
    fn a_log_becomes_minus_exp_in_float64_rounded_once() {
        let mut t = Planned::f32_vector("blk.0.ssm_a", &[0.0, 1.0, -2.5, 0.3]);
        t.values = ValueMap::NegExp;
        let want: Vec<f32> = [0.0f32, 1.0, -2.5, 0.3]
            .iter()
            .map(|&v| -(f64::from(v).exp() as f32))
            .collect();
        assert_eq!(floats(&written(&t)), want);
        assert_eq!(want[0], -1.0);
    }

    #[test]
    fn reshaping_keeps_the_value_count() {
        let mut t = f32_matrix(&[0.0; 12], 4);
        t.name = "blk.0.ssm_conv1d.weight".into();
        t.shape = vec![3, 1, 4];
        t.reshape(vec![3, 4]).unwrap();
        assert_eq!(t.shape(), [3, 4]);
        assert!(matches!(
            t.reshape(vec![5, 4]),
            Err(ConvertError::Reshape { .. })
        ));
        assert!(t.reshape(vec![u64::MAX, 2]).is_err());
    }
}
