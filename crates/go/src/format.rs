//! Ollama's `format` package (github.com/ollama/ollama/format): how Ollama prints sizes.

/// Ollama's `format.HumanNumber` (parameter sizes such as "8.0B", "494.03M").
pub fn human_number(n: u64) -> String {
    let f = n as f64;
    if n >= 1_000_000_000 {
        let v = f / 1e9;
        if v == v.floor() {
            format!("{v:.0}B")
        } else {
            format!("{v:.1}B")
        }
    } else if n >= 1_000_000 {
        let v = f / 1e6;
        if v == v.floor() {
            format!("{v:.0}M")
        } else {
            format!("{v:.2}M")
        }
    } else if n >= 1_000 {
        format!("{:.0}K", f / 1e3)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_numbers() {
        assert_eq!(human_number(0), "0");
        assert_eq!(human_number(8_030_261_248), "8.0B");
        assert_eq!(human_number(7_000_000_000), "7B");
        assert_eq!(human_number(494_032_768), "494.03M");
        assert_eq!(human_number(1_500), "2K");
    }
}
