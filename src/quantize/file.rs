//! The whole-model entry points: parsed GGUF parts, a conversion, or files on disk (mapped, split
//! parts found, the output written atomically).

use std::io::Write;
use std::path::Path;

use kiln_gguf::{Gguf, Limits};

use super::stream::{Parsed, quantize_streaming};
use super::{
    FileType, QuantizeError, QuantizeOptions, QuantizeReport, QuantizeSink, SourceModel,
    SplitError, split_part_paths, split_position,
};

/// Quantizes a parsed GGUF into `out` (written sequentially, never seeked). One part of a split
/// model is refused: use [`quantize_parts`].
pub fn quantize_gguf<W: Write>(
    gguf: &Gguf<'_>,
    out: W,
    ftype: FileType,
    options: &QuantizeOptions,
    sink: &mut dyn QuantizeSink,
) -> Result<QuantizeReport, QuantizeError> {
    quantize_parts(std::slice::from_ref(gguf), out, ftype, options, sink)
}

/// Quantizes a split model (every part, in order; or one unsplit file) into one output file, as
/// llama-quantize does when given the first part.
pub fn quantize_parts<W: Write>(
    parts: &[Gguf<'_>],
    out: W,
    ftype: FileType,
    options: &QuantizeOptions,
    sink: &mut dyn QuantizeSink,
) -> Result<QuantizeReport, QuantizeError> {
    let model = SourceModel::new(parts)?;
    let data = Parsed {
        model: &model,
        consumed: &|_| {},
    };
    quantize_streaming(&model, out, ftype, options, sink, &data)
}

/// Quantizes a Hugging Face model folder in one pass: each tensor is converted (exactly as
/// [`Conversion::write`](crate::convert::Conversion::write) converts it) a chunk of rows at a
/// time, straight into the quantizer, so the F16/BF16 GGUF a two-step conversion writes never
/// exists, on disk or in memory. The output is byte for byte the two-step one (convert, then
/// [`quantize_gguf`]).
pub fn quantize_conversion<W: Write>(
    conversion: &crate::convert::Conversion<'_>,
    out: W,
    ftype: FileType,
    options: &QuantizeOptions,
    sink: &mut dyn QuantizeSink,
) -> Result<QuantizeReport, QuantizeError> {
    let header = conversion.header()?;
    let gguf = Gguf::parse_header(&header, &Limits::default())?;
    let model = SourceModel::new(std::slice::from_ref(&gguf))?;
    quantize_streaming(&model, out, ftype, options, sink, conversion)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> QuantizeError + '_ {
    move |source| QuantizeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Maps a GGUF file and, when it is the first part of a split model, the other parts beside it.
pub(crate) fn map_parts(input: &Path) -> Result<Vec<kiln_gguf::GgufFile>, QuantizeError> {
    let map = |path: &Path| {
        // SAFETY: the map is read-only; a caller that truncates the input while it is being
        // quantized gets a SIGBUS, which is the documented contract of quantizing a live file.
        unsafe { kiln_gguf::GgufFile::map(path) }.map_err(io_err(path))
    };
    let mut files = vec![map(input)?];
    let position = split_position(files[0].parse(&Limits::default())?.metadata());
    if let Some((no, count)) = position {
        if no != 0 {
            return Err(SplitError::NotFirstPart { no, count }.into());
        }
        for path in split_part_paths(input, count)?.iter().skip(1) {
            files.push(map(path).map_err(|e| SplitError::MissingPart {
                path: path.display().to_string(),
                message: match e {
                    QuantizeError::Io { source, .. } => source.to_string(),
                    other => other.to_string(),
                },
            })?);
        }
    }
    Ok(files)
}

/// Quantizes the GGUF file `input` into `output`. The output appears complete or not at all: it
/// is written to a temporary file beside it, fsynced, then renamed. When `input` is the first part
/// of a split model (`NAME-00001-of-0000N.gguf`), the other parts are read from beside it and the
/// output is one merged file, as llama-quantize writes it. When `input` is a directory, it is a
/// Hugging Face model folder, converted as Ollama converts it while it is quantized
/// ([`quantize_conversion`]: no converted file is written).
pub fn quantize_model(
    input: &Path,
    output: &Path,
    ftype: FileType,
    options: &QuantizeOptions,
    sink: &mut dyn QuantizeSink,
) -> Result<QuantizeReport, QuantizeError> {
    if input.is_dir() {
        // SAFETY: read-only maps of the user's input; like llama-quantize, this assumes nothing
        // rewrites the files while they are read (a truncation would be a SIGBUS).
        let folder = unsafe { crate::convert::ModelFolder::map_dir(input) }?;
        let conversion = crate::convert::Conversion::plan(&folder)?;
        return write_atomically(output, |out| {
            quantize_conversion(&conversion, out, ftype, options, sink)
        });
    }
    let files = map_parts(input)?;
    let parts = files
        .iter()
        .map(|f| f.parse(&Limits::default()))
        .collect::<Result<Vec<_>, _>>()?;
    let model = SourceModel::new(&parts)?;
    write_atomically(output, |out| {
        let release = |b: &[u8]| files.iter().for_each(|f| f.release(b));
        let data = Parsed {
            model: &model,
            consumed: &release,
        };
        quantize_streaming(&model, out, ftype, options, sink, &data)
    })
}

/// Runs `write` into a temporary file beside `output`, then fsyncs and renames it into place; on
/// any error the temporary file is removed and `output` is untouched (kiln-store's one helper).
fn write_atomically(
    output: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<QuantizeReport, QuantizeError>,
) -> Result<QuantizeReport, QuantizeError> {
    kiln_store::write_atomically(output, write, |path, source| QuantizeError::Io {
        path: path.display().to_string(),
        source,
    })
}
