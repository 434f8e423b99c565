//! Go's `path` package (slash-separated paths, as in URLs and upload names), and `io/fs.ValidPath`.

/// Go's `path.Clean` for slash-separated paths: repeated slashes and `.` elements dropped, `..`
/// removing the element before it (never above the root of a rooted path), `.` for an empty result.
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for element in p.split('/') {
        match element {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            e => parts.push(e),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `io/fs.ValidPath`: relative, no empty, `.` or `..` elements (`.` alone is valid).
pub fn valid_path(p: &str) -> bool {
    p == "." || (!p.is_empty() && p.split('/').all(|e| !e.is_empty() && e != "." && e != ".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_paths() {
        assert!(valid_path("a.gguf") && valid_path("dir/a.gguf") && valid_path("."));
        assert!(
            !valid_path("/a")
                && !valid_path("a/")
                && !valid_path("../a")
                && !valid_path("a//b")
                && !valid_path("")
        );
    }
}
