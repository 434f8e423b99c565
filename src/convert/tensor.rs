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
    /// One added to every value, in float32 (Gemma's norm weights are stored as `weight - 1`).
    pub add_one: bool,
    /// An FP8 weight's block scales (its values are `decode(byte) × scale`).
    pub(super) fp8: Option<fp8::Scales>,
    /// MXFP4 expert weights, regrouped into ggml blocks as they are written (`data` is empty).
    pub(super) mxfp4: Option<gpt_oss::Mxfp4Source<'f>>,
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
            add_one: false,
            fp8: None,
            mxfp4: None,
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
            add_one: false,
            fp8: None,
            mxfp4: Some(source),
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
        if !cols.is_multiple_of(2) || self.fp8.is_some() || self.mxfp4.is_some() {
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
            add_one: self.add_one,
            fp8: None,
            mxfp4: None,
        })
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
            add_one: false,
            fp8: None,
            mxfp4: None,
        }
    }

    /// Number of dimensions.
    pub fn dims(&self) -> usize {
        self.shape.len()
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
        !self.add_one
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
            // Only when asked: adding zero would turn -0.0 into +0.0.
            let value = if self.add_one { value + 1.0 } else { value };
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
            permute in proptest::bool::ANY,
            add_one in proptest::bool::ANY,
            seed in proptest::num::u64::ANY,
            cuts in proptest::collection::vec((0.0f64..1.0, 0.0f64..1.0), 1..6),
        ) {
            let (dtype, kind) = types;
            let rows = heads * half * 2;
            let n = (rows * cols) as usize;
            let data: Vec<u8> = (0..n * dtype.size() as usize)
                .map(|i| (seed.wrapping_mul(i as u64 + 1).wrapping_add(i as u64 * 131) >> 7) as u8)
                .collect();
            let t = Planned {
                name: "blk.0.attn_q.weight".into(),
                kind,
                dtype,
                shape: vec![rows, cols],
                data: Cow::Owned(data),
                permute_heads: permute.then_some(heads),
                add_one,
                fp8: None,
                mxfp4: None,
            };
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
}
