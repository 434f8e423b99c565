//! Go's `path/filepath` package, for the local paths a Modelfile names.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Go's `filepath.Abs`: joined to the working directory when relative, then lexically cleaned. Fails
/// only when the working directory cannot be read.
pub fn abs(path: &Path) -> io::Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    };
    Ok(clean(&absolute))
}

/// Lexical cleaning: `.` dropped, `..` removes the previous part (never above the root). This is
/// `filepath.Clean` for the absolute paths [`abs`] cleans; a relative path is not cleaned as Go
/// would clean it (`a/..` gives an empty path).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Go's `filepath.Rel` for two clean absolute paths.
pub fn rel(base: &Path, target: &Path) -> PathBuf {
    let base: Vec<_> = base.components().collect();
    let target: Vec<_> = target.components().collect();
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for part in &target[common..] {
        out.push(part);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Go's `filepath.IsLocal`: relative, not empty, and never climbing above its start. For clean paths
/// (what [`rel`] returns): any `..` element counts as climbing, where Go would first clean `a/../b`.
pub fn is_local(rel: &Path) -> bool {
    !rel.as_os_str().is_empty()
        && rel.is_relative()
        && !rel.components().any(|c| c == Component::ParentDir)
}
