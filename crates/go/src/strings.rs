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

/// Go's `strings.NewReplacer(pairs...)`: old/new string pairs, applied by [`Replacer::replace`].
#[derive(Clone, Copy, Debug)]
pub struct Replacer<'p, 's> {
    pairs: &'p [(&'s str, &'s str)],
}

impl<'p, 's> Replacer<'p, 's> {
    /// The replacer for these `(old, new)` pairs, in priority order.
    pub fn new(pairs: &'p [(&'s str, &'s str)]) -> Self {
        Replacer { pairs }
    }

    /// Go's `Replacer.Replace`: left to right, at each position the earliest listed old string that
    /// matches there is replaced, and scanning resumes after it. Empty old strings are ignored (Go
    /// would insert their replacement at every position).
    pub fn replace(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            match self
                .pairs
                .iter()
                .find(|(old, _)| !old.is_empty() && rest.starts_with(old))
            {
                Some((old, new)) => {
                    out.push_str(new);
                    rest = &rest[old.len()..];
                }
                None => {
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        out
    }
}

/// Go's `strings.EqualFold` for ASCII text: equal up to ASCII case. Go also folds non-ASCII runes
/// (U+212A KELVIN SIGN equals `k`, U+017F `ſ` equals `s`); this does not (see [`crate::json::match_field`] for
/// that folding against ASCII names).
pub fn equal_fold_ascii(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_lower() {
        assert_eq!(to_lower("USER"), "user");
        assert_eq!(to_lower("ΟΔΟΣ"), "οδοσ");
    }

    #[test]
    fn go_replacer_semantics() {
        let pairs = [
            ("encoder.layer", "blk"),
            ("encoder.layers", "blk"),
            ("attention.output.dense", "attn_output"),
            ("output.dense", "ffn_down"),
        ];
        assert_eq!(
            Replacer::new(&pairs).replace("encoder.layer.3.attention.output.dense.weight"),
            "blk.3.attn_output.weight"
        );
        assert_eq!(
            Replacer::new(&pairs).replace("encoder.layer.3.output.dense.bias"),
            "blk.3.ffn_down.bias"
        );
        // The earlier pair wins at a position even when a later one is longer (Go's priority).
        assert_eq!(Replacer::new(&pairs).replace("encoder.layers.0"), "blks.0");
        assert_eq!(Replacer::new(&pairs).replace("héllo"), "héllo");
    }
}
