//! The streaming quantizer behind every entry point: tensor data read a chunk of rows at a time
//! ([`TensorData`]), converted on several threads, written as produced, with progress events and
//! cancellation between chunks.

use std::io::Write;

use kiln_gguf::{GgmlType, WriteError, Writer};
use kiln_quant::QuantType;

use super::layout::{output_file_type, output_layout, output_specs};
use super::{
    ErrorSums, FileType, QuantizeError, QuantizeEvent, QuantizeOptions, QuantizeReport,
    QuantizeSink, SourceModel, TensorReport, validate,
};

/// Where the quantizer reads a tensor's data from: the bytes of a parsed (often memory-mapped)
/// GGUF, or a conversion producing them on demand, so that a converted model is never written
/// out in full before it is quantized.
pub(crate) trait TensorData {
    /// Bytes `range` of tensor `index`'s data (in its stored type), borrowed from `self` or
    /// produced into `buf`.
    fn read<'s>(
        &'s self,
        index: usize,
        range: std::ops::Range<usize>,
        buf: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], QuantizeError>;
    /// Tensor `index` is no longer needed (a mapping can give its pages back).
    fn release(&self, _index: usize) {}
}

/// A parsed model's own bytes, reporting each tensor's bytes to `consumed` when it is done.
pub(super) struct Parsed<'m, 'g, 'a> {
    pub(super) model: &'m SourceModel<'g, 'a>,
    pub(super) consumed: &'m dyn Fn(&[u8]),
}

impl TensorData for Parsed<'_, '_, '_> {
    fn read<'s>(
        &'s self,
        index: usize,
        range: std::ops::Range<usize>,
        _buf: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], QuantizeError> {
        Ok(&self.model.tensors()[index].data()[range])
    }

    fn release(&self, index: usize) {
        (self.consumed)(self.model.tensors()[index].data());
    }
}

/// The size of a tensor's data: known from its type, or (for a type kiln cannot size, only ever
/// copied) the span the file gives it.
pub(super) fn data_len(t: &kiln_gguf::TensorInfo<'_>) -> usize {
    t.n_bytes().map_or(t.data().len(), |n| n as usize)
}

pub(super) fn kernel_type(name: &str, ty: GgmlType) -> Result<QuantType, QuantizeError> {
    QuantType::from_ggml_id(ty.0).ok_or_else(|| QuantizeError::UnsupportedType {
        name: name.to_owned(),
        ty,
    })
}

/// Elements per conversion chunk: large enough to amortize thread start-up, small enough to keep
/// memory flat (16 MiB of f32).
const CHUNK_ELEMENTS: usize = 4 << 20;

/// [`quantize_gguf`] over `model`'s tensor infos, reading their bytes from `source`.
///
/// [`quantize_gguf`]: super::quantize_gguf
pub(super) fn quantize_streaming<W: Write>(
    model: &SourceModel<'_, '_>,
    out: W,
    ftype: FileType,
    options: &QuantizeOptions,
    sink: &mut dyn QuantizeSink,
    source: &dyn TensorData,
) -> Result<QuantizeReport, QuantizeError> {
    let file_type = output_file_type(model, ftype);
    let (metadata, plans) = output_layout(model, ftype, options)?;
    if let Some(im) = &options.imatrix {
        for (name, values) in im {
            if values.iter().any(|v| !v.is_finite()) {
                return Err(QuantizeError::BadImatrix {
                    name: name.clone(),
                    problem: "contains a non-finite value".into(),
                });
            }
        }
    }
    let specs = output_specs(&plans);
    let mut writer = Writer::new(out, &metadata, &specs)?;
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.threads
    };
    let total: u64 = model.tensors().iter().map(|t| data_len(t) as u64).sum();
    let mut done = 0u64;
    let mut report = Vec::with_capacity(plans.len());
    let mut rows_f32: Vec<f32> = Vec::new();
    let mut round_trip: Vec<f32> = Vec::new();
    let mut quantized: Vec<u8> = Vec::new();
    let mut read_buf: Vec<u8> = Vec::new();
    for (index, p) in plans.iter().enumerate() {
        let t = &model.tensors()[p.input_index];
        let event = QuantizeEvent::Tensor {
            index,
            count: plans.len(),
            name: &p.name,
            from: p.from,
            to: p.to,
        };
        if sink.event(&event).is_break() {
            return Err(QuantizeError::Cancelled);
        }
        let len = data_len(t);
        let ne = t.ne();
        let mut sums = ErrorSums::default();
        let mut weighted = false;
        let bytes_out = if p.to == p.from {
            let mut at = 0;
            while at < len {
                let end = (at + CHUNK_ELEMENTS).min(len);
                let piece = source.read(p.input_index, at..end, &mut read_buf)?;
                writer.write_tensor_data(piece)?;
                done += piece.len() as u64;
                if sink.event(&QuantizeEvent::Bytes { done, total }).is_break() {
                    return Err(QuantizeError::Cancelled);
                }
                at = end;
            }
            len as u64
        } else {
            let from = kernel_type(&p.name, p.from)?;
            let to = kernel_type(&p.name, p.to)?;
            if from.block_size() > 1 && !options.allow_requantize {
                return Err(QuantizeError::RequantizeNotAllowed {
                    name: p.name.clone(),
                    ty: p.from,
                });
            }
            let n_per_row = ne[0] as usize;
            let rows_per_expert = (ne[1] * ne[3]) as usize;
            let experts = ne[2] as usize;
            let imatrix = imatrix_for(options, &p.name, ne)?;
            weighted = imatrix.is_some();
            let in_row = len / (rows_per_expert * experts).max(1);
            let out_row = kiln_quant::row_size(to, n_per_row).map_err(|_| {
                QuantizeError::UnsupportedType {
                    name: p.name.clone(),
                    ty: p.to,
                }
            })?;
            let chunk_rows = (CHUNK_ELEMENTS / n_per_row.max(1)).max(1);
            let mut written = 0u64;
            for e in 0..experts {
                let weights = imatrix.map(|im| &im[e * n_per_row..(e + 1) * n_per_row]);
                let mut row = 0;
                while row < rows_per_expert {
                    let rows = chunk_rows.min(rows_per_expert - row);
                    let first = e * rows_per_expert + row;
                    let src = source.read(
                        p.input_index,
                        first * in_row..(first + rows) * in_row,
                        &mut read_buf,
                    )?;
                    rows_f32.resize(rows * n_per_row, 0.0);
                    if options.measure_error {
                        round_trip.resize(rows * n_per_row, 0.0);
                    }
                    quantized.resize(rows * out_row, 0);
                    let rows_io = RowsIo {
                        from,
                        to,
                        in_row,
                        n_per_row,
                        out_row,
                    };
                    let check = if options.measure_error {
                        Some(&mut round_trip[..rows * n_per_row])
                    } else {
                        None
                    };
                    let chunk_sums = convert_rows(
                        &rows_io,
                        src,
                        weights,
                        &mut rows_f32,
                        &mut quantized,
                        check,
                        threads,
                    )
                    .map_err(|e| QuantizeError::Kernel {
                        name: p.name.clone(),
                        source: e,
                    })?;
                    sums.merge(&chunk_sums);
                    if let Some(at) = validate::first_invalid(p.to, &quantized) {
                        return Err(QuantizeError::InvalidData {
                            name: p.name.clone(),
                            ty: p.to,
                            unit: at,
                        });
                    }
                    writer.write_tensor_data(&quantized)?;
                    written += quantized.len() as u64;
                    done += src.len() as u64;
                    if sink.event(&QuantizeEvent::Bytes { done, total }).is_break() {
                        return Err(QuantizeError::Cancelled);
                    }
                    row += rows;
                }
            }
            written
        };
        source.release(p.input_index);
        let error = options.measure_error.then(|| {
            if p.to == p.from {
                // Copied bit for bit.
                sums.n = t.n_elements();
            }
            sums.finish(weighted)
        });
        report.push(TensorReport {
            name: p.name.clone(),
            from: p.from,
            to: p.to,
            n_elements: t.n_elements(),
            bytes_in: len as u64,
            bytes_out,
            error,
        });
        let done_event = QuantizeEvent::TensorDone {
            index,
            report: report.last().expect("just pushed"),
        };
        if sink.event(&done_event).is_break() {
            return Err(QuantizeError::Cancelled);
        }
    }
    let file_len = writer.layout().file_len;
    let mut out = writer.finish()?;
    out.flush()
        .map_err(|e| QuantizeError::Write(WriteError::Io(e)))?;
    Ok(QuantizeReport {
        file_type,
        tensors: report,
        file_len,
    })
}

/// Shapes of one conversion: source and target types and their row sizes.
struct RowsIo {
    from: QuantType,
    to: QuantType,
    in_row: usize,
    n_per_row: usize,
    out_row: usize,
}

/// Converts whole rows `src` (type `from`) to `out` (type `to`), each thread taking a contiguous
/// share of the rows through both steps (dequantize into `scratch`, then quantize), so conversion
/// scales with the threads too. Rows are independent, so the bytes never depend on `threads`.
/// With `check`, each share is dequantized again into it and compared with `scratch`: the error
/// sums of the rows are returned (else empty sums).
fn convert_rows(
    io: &RowsIo,
    src: &[u8],
    weights: Option<&[f32]>,
    scratch: &mut [f32],
    out: &mut [u8],
    check: Option<&mut [f32]>,
    threads: usize,
) -> Result<ErrorSums, kiln_quant::QuantError> {
    let one = |src: &[u8], f32s: &mut [f32], out: &mut [u8], back: Option<&mut [f32]>| {
        kiln_quant::dequantize(io.from, src, f32s)?;
        kiln_quant::quantize(io.to, f32s, io.n_per_row, weights, out)?;
        let mut sums = ErrorSums::default();
        if let Some(back) = back {
            kiln_quant::dequantize(io.to, out, back)?;
            sums.add_rows(f32s, back, io.n_per_row, weights);
        }
        Ok(sums)
    };
    let rows = src.len() / io.in_row.max(1);
    if threads <= 1 || rows < 2 {
        return one(src, scratch, out, check);
    }
    let per = rows.div_ceil(threads);
    let mut backs: Vec<Option<&mut [f32]>> = match check {
        Some(back) => back.chunks_mut(per * io.n_per_row).map(Some).collect(),
        None => Vec::new(),
    };
    backs.resize_with(rows.div_ceil(per), || None);
    std::thread::scope(|scope| {
        let workers: Vec<_> = src
            .chunks(per * io.in_row)
            .zip(scratch.chunks_mut(per * io.n_per_row))
            .zip(out.chunks_mut(per * io.out_row))
            .zip(backs)
            .map(|(((s, f), o), b)| scope.spawn(move || one(s, f, o, b)))
            .collect();
        let mut total = ErrorSums::default();
        for w in workers {
            let sums = w
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            total.merge(&sums);
        }
        Ok(total)
    })
}

/// The imatrix slice for a tensor, checked as llama.cpp checks it (`ne[0] * ne[2]` values; a
/// mismatch is an error except for token_embd, which is then quantized without one).
pub(super) fn imatrix_for<'o>(
    options: &'o QuantizeOptions,
    name: &str,
    ne: [u64; 4],
) -> Result<Option<&'o [f32]>, QuantizeError> {
    let Some(values) = options.imatrix.as_ref().and_then(|m| m.get(name)) else {
        return Ok(None);
    };
    let expected = (ne[0] * ne[2]) as usize;
    if values.len() == expected {
        Ok(Some(values))
    } else if name == "token_embd.weight" {
        Ok(None)
    } else {
        Err(QuantizeError::BadImatrix {
            name: name.to_owned(),
            problem: format!("has {} values, expected {expected}", values.len()),
        })
    }
}
