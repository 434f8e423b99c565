//! Go's `strings` package.

/// Go's `strings.ToLower`: each character's simple lower case, one rune to one rune, no context
/// rules. Rust's per-character mapping is the same except for U+0130 (its full mapping adds a
/// combining dot), and it never applies the word-final sigma rule that `str::to_lowercase` does.
pub fn to_lower(s: &str) -> String {
    let mut lower = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            lower.push('i');
        } else {
            lower.extend(c.to_lowercase());
        }
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_lower() {
        assert_eq!(to_lower("USER"), "user");
        assert_eq!(to_lower("ΟΔΟΣ"), "οδοσ");
    }
}
