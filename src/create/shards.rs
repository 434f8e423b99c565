//! Split GGUF uploads (`NAME-0000i-of-0000N.gguf`): which shard a file is, as Ollama reads the
//! split keys and checks them against the file name, and the shards of one model merged into its
//! first shard's layer with the other parts' blobs in order.

use super::layers::Staged;
use super::{CreateError, Pending};
use crate::quantize::parse_split_file_name;

/// Shards of one split GGUF upload, in order of first appearance: (group key, split.count,
/// (split.no, layer) per shard).
pub(super) type ShardGroup = (String, u64, Vec<(u64, Pending)>);

/// The layers the shard groups make: each group complete (every index once, as many as
/// `split.count`), its first shard's layer carrying every part's blob in order (Ollama's
/// messages for a group that is not).
pub(super) fn merge_shards(groups: Vec<ShardGroup>) -> Result<Vec<Staged>, CreateError> {
    let mut out = Vec::new();
    for (_, count, shards) in groups {
        if shards.len() as u64 != count {
            return Err(CreateError::Split(format!(
                "split GGUF {:?} has {} shards, expected {count}",
                shards[0].1.layer.from,
                shards.len()
            )));
        }
        let mut by_index: Vec<Option<Pending>> = (0..count).map(|_| None).collect();
        for (no, pending) in shards {
            if no >= count {
                return Err(CreateError::Split(format!(
                    "split GGUF {:?} has invalid shard index {no}",
                    pending.layer.from
                )));
            }
            if by_index[no as usize].replace(pending).is_some() {
                return Err(CreateError::Split(format!(
                    "split GGUF has duplicate shard index {no}"
                )));
            }
        }
        let mut digests = Vec::new();
        for shard in by_index.iter() {
            let Some(shard) = shard else {
                return Err(CreateError::Split(
                    "split GGUF is missing first shard".into(),
                ));
            };
            digests.push(
                shard
                    .layer
                    .digest()
                    .map_err(|_| CreateError::InvalidDigest)?,
            );
        }
        let primary = by_index.swap_remove(0).expect("checked above");
        out.push(Staged {
            pending: primary,
            parts: digests,
            folder: None,
        });
    }
    Ok(out)
}

/// A split-GGUF key read as Ollama reads it: `split.KEY` or `ARCH.split.KEY`, any integer type
/// holding a `u16`.
pub(super) fn split_value(gguf: &kiln_gguf::Gguf<'_>, key: &str) -> Option<u64> {
    let md = gguf.metadata();
    let arch = md.architecture().unwrap_or("");
    [format!("split.{key}"), format!("{arch}.split.{key}")]
        .iter()
        .find_map(|k| md.get(k)?.as_u64())
        .filter(|&v| v <= u16::MAX as u64)
}

/// Whether an uploaded GGUF is one shard of a split model: `(name prefix, split.no, split.count)`,
/// with Ollama's checks that the file name (`NAME-0000i-of-0000N.gguf`) agrees with the metadata.
pub(super) fn split_shard(
    gguf: &kiln_gguf::Gguf<'_>,
    path: &str,
) -> Result<Option<(String, u64, u64)>, CreateError> {
    let Some(count) = split_value(gguf, "count").filter(|&c| c > 1) else {
        return Ok(None);
    };
    let base = path.rsplit('/').next().unwrap_or(path);
    let Some((prefix, index, name_count)) = parse_split_file_name(base) else {
        return Err(CreateError::Split(format!(
            "split GGUF {path:?} must use llama.cpp split filename pattern"
        )));
    };
    if name_count != count {
        return Err(CreateError::Split(format!(
            "split GGUF {path:?} filename count {name_count} does not match metadata count {count}"
        )));
    }
    let Some(no) = split_value(gguf, "no") else {
        return Err(CreateError::Split(format!(
            "split GGUF {path:?} is missing split.no metadata"
        )));
    };
    if no != index {
        return Err(CreateError::Split(format!(
            "split GGUF {path:?} filename index {index} does not match metadata index {no}"
        )));
    }
    Ok(Some((prefix.to_owned(), no, count)))
}
