//! `golang.org/x/mod/semver`, which Ollama uses to check a Modelfile's `REQUIRES` version.

/// `semver.IsValid`: `v` then `MAJOR[.MINOR[.PATCH[-PRE][+BUILD]]]`, numbers without leading zeros
/// (the `v1` and `v1.2` shorthands are valid).
pub fn is_valid(v: &str) -> bool {
    fn number(s: &str) -> Option<(&str, &str)> {
        let end = s.bytes().take_while(u8::is_ascii_digit).count();
        if end == 0 || (s.starts_with('0') && end != 1) {
            return None;
        }
        Some(s.split_at(end))
    }
    fn idents(s: &str, numeric_rule: bool) -> bool {
        s.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !(numeric_rule
                    && id.len() > 1
                    && id.starts_with('0')
                    && id.bytes().all(|b| b.is_ascii_digit()))
        })
    }
    let Some(version) = v.strip_prefix('v') else {
        return false;
    };
    let Some((_, mut rest)) = number(version) else {
        return false;
    };
    for _ in 0..2 {
        if rest.is_empty() {
            return true; // the v1 and v1.2 shorthands
        }
        let Some((_, after)) = rest.strip_prefix('.').and_then(number) else {
            return false;
        };
        rest = after;
    }
    let (pre_and_rest, build) = match rest.split_once('+') {
        Some((pre, build)) => (pre, Some(build)),
        None => (rest, None),
    };
    if let Some(pre) = pre_and_rest.strip_prefix('-') {
        if !idents(pre, true) {
            return false;
        }
    } else if !pre_and_rest.is_empty() {
        return false;
    }
    build.is_none_or(|b| idents(b, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_as_x_mod() {
        for ok in [
            "0.14.0",
            "1",
            "1.2",
            "1.2.3-rc.1+build.5",
            "1.2.3-0",
            "1.2.3+001",
        ] {
            assert!(is_valid(&format!("v{ok}")), "{ok}");
        }
        for bad in [
            "", "01.2.3", "1.2.3.4", "1.2-rc1", "1.2.3-01", "1.2.3-", "1.2.3+", "x",
        ] {
            assert!(!is_valid(&format!("v{bad}")), "{bad}");
        }
    }
}
