//! What a model layer's quantization writes: the file type Ollama picks for it (the asked type,
//! COPY to validate an upload, Q8_0 for a model converted from FP8 weights, or nothing), its
//! refusals, and the disk-space check before it starts.

use kiln_store::Store;

use super::config::file_type_name;
use super::flow::ModelSlot;
use super::{CreateError, Event, Quantize};
use crate::quantize::{FileType, SourceModel};

/// What a model slot's quantization writes: the file type, and how its progress reads.
pub(super) struct Step {
    /// The type to write.
    pub(super) to: FileType,
    /// The source's file type name, for the `quantizing … model to …` line.
    from: String,
    /// The type as the request spelled it, `None` for llama.cpp's COPY (`validating GGUF model`).
    spelled: Option<String>,
}

impl Step {
    /// The progress event at `completed` of `total`.
    pub(super) fn event(&self, completed: i64, total: i64) -> Event {
        match &self.spelled {
            None => Event::Validating { completed, total },
            Some(spelled) => Event::Quantizing {
                from: self.from.clone(),
                to: self.to,
                spelled: spelled.clone(),
                completed,
                total,
            },
        }
    }
}

/// What a model slot needs: a file type to write, or nothing (kept as uploaded). Errors are
/// Ollama's refusals of the `quantize` / `draft_quantize` value.
pub(super) fn plan_job(
    slot: &ModelSlot,
    model: &SourceModel<'_, '_>,
    wanted: Option<&Quantize>,
) -> Result<Option<Step>, CreateError> {
    let source_ft = model.metadata().file_type().ok().flatten();
    let source_name = file_type_name(source_ft);
    // Ollama makes a model converted from FP8 weights Q8_0 when no type is asked for, rather
    // than keep the BF16 they were decoded to.
    let fp8_default;
    let wanted = if wanted.is_none()
        && !slot.draft
        && from_fp8(model.metadata())
        && matches!(source_name.as_str(), "F16" | "BF16" | "F32")
    {
        fp8_default = Quantize::from(FileType::Q8_0);
        Some(&fp8_default)
    } else {
        wanted
    };
    let Some(wanted) = wanted else {
        // Ollama validates through llama-quantize's COPY only what llama.cpp's text loader
        // can read: a model with embedded (vision, audio, …) tensors is kept as it is.
        let embedded = model
            .tensors()
            .iter()
            .any(|t| crate::quantize::is_embedded_tensor(t.name()));
        return Ok((slot.rewrite && !embedded).then_some(Step {
            to: FileType::Copy,
            from: source_name,
            spelled: None,
        }));
    };
    let want = wanted.file_type()?;
    let source_quantized = source_ft
        .and_then(FileType::from_llama_ftype)
        .and_then(|f| f.default_tensor_type())
        .is_some_and(|t| t.is_quantized());
    if slot.draft && source_quantized {
        return Err(CreateError::DraftAlreadyQuantized(source_name));
    }
    if !matches!(source_name.as_str(), "F16" | "BF16" | "F32") {
        return Err(CreateError::AlreadyQuantized);
    }
    Ok((want.llama_ftype() != source_ft).then(|| Step {
        to: want,
        from: source_name,
        spelled: Some(wanted.spelled().to_owned()),
    }))
}

/// Ollama's `hasSourceFP8Tensors`: the model says it was converted from FP8 weights.
fn from_fp8(md: &kiln_gguf::Metadata<'_>) -> bool {
    let arch = md.architecture().unwrap_or("");
    md.get_str(&format!("{arch}.source_quantization")) == Ok("hf_fp8")
        && md
            .get_array(&format!("{arch}.source_fp8_tensors"))
            .is_ok_and(|a| !a.is_empty())
}

/// Refuses a write of `needed` bytes when fewer are `available` (Ollama starts anyway and fails
/// with ENOSPC part-way, after minutes of work).
pub(super) fn check_space(needed: u64, available: u64, store: &Store) -> Result<(), CreateError> {
    if needed > available {
        return Err(CreateError::NoSpace {
            dir: store.root().join("blobs").display().to_string(),
            needed,
            available,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::{HttpStatus, test_support};

    #[test]
    fn a_create_that_would_not_fit_is_refused_before_it_starts() {
        let tmp = test_support::TempStore::new("space");
        let store = &tmp.store;
        let available = store.available_bytes().unwrap();
        assert!(available > 0 && available < u64::MAX);
        assert!(check_space(10, 10, store).is_ok());
        let err = check_space(11, 10, store).unwrap_err();
        assert_eq!(err.status(), 500);
        assert_eq!(
            err.to_string(),
            format!(
                "not enough disk space in {}: the new model needs 11 bytes, 10 are available",
                tmp.dir.join("blobs").display()
            )
        );
    }
}
