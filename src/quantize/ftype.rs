//! llama.cpp's file types (`enum llama_ftype`): the number stored in `general.file_type`.

use std::fmt;
use std::str::FromStr;

use kiln_gguf::GgmlType;

/// A whole-model quantization target, numbered as llama.cpp's `llama_ftype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs, non_camel_case_types)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
    TQ1_0,
    TQ2_0,
    /// Expert (3-D) tensors MXFP4, the other weights Q8_0: how llama.cpp ships GPT-OSS.
    MXFP4_MOE,
    /// Rewrite the file without changing any tensor type.
    Copy,
}

/// (file type, llama_ftype number, llama-quantize name, `llama_ftype_name`, default tensor type)
const TABLE: &[(FileType, u32, &str, &str, GgmlType)] = &[
    (FileType::F32, 0, "F32", "all F32", GgmlType::F32),
    (FileType::F16, 1, "F16", "F16", GgmlType::F16),
    (FileType::Q4_0, 2, "Q4_0", "Q4_0", GgmlType::Q4_0),
    (FileType::Q4_1, 3, "Q4_1", "Q4_1", GgmlType::Q4_1),
    (FileType::Q8_0, 7, "Q8_0", "Q8_0", GgmlType::Q8_0),
    (FileType::Q5_0, 8, "Q5_0", "Q5_0", GgmlType::Q5_0),
    (FileType::Q5_1, 9, "Q5_1", "Q5_1", GgmlType::Q5_1),
    (FileType::Q2_K, 10, "Q2_K", "Q2_K - Medium", GgmlType::Q2_K),
    (
        FileType::Q3_K_S,
        11,
        "Q3_K_S",
        "Q3_K - Small",
        GgmlType::Q3_K,
    ),
    (
        FileType::Q3_K_M,
        12,
        "Q3_K_M",
        "Q3_K - Medium",
        GgmlType::Q3_K,
    ),
    (
        FileType::Q3_K_L,
        13,
        "Q3_K_L",
        "Q3_K - Large",
        GgmlType::Q3_K,
    ),
    (
        FileType::Q4_K_S,
        14,
        "Q4_K_S",
        "Q4_K - Small",
        GgmlType::Q4_K,
    ),
    (
        FileType::Q4_K_M,
        15,
        "Q4_K_M",
        "Q4_K - Medium",
        GgmlType::Q4_K,
    ),
    (
        FileType::Q5_K_S,
        16,
        "Q5_K_S",
        "Q5_K - Small",
        GgmlType::Q5_K,
    ),
    (
        FileType::Q5_K_M,
        17,
        "Q5_K_M",
        "Q5_K - Medium",
        GgmlType::Q5_K,
    ),
    (FileType::Q6_K, 18, "Q6_K", "Q6_K", GgmlType::Q6_K),
    (
        FileType::IQ4_NL,
        25,
        "IQ4_NL",
        "IQ4_NL - 4.5 bpw",
        GgmlType::IQ4_NL,
    ),
    (
        FileType::IQ4_XS,
        30,
        "IQ4_XS",
        "IQ4_XS - 4.25 bpw",
        GgmlType::IQ4_XS,
    ),
    (FileType::BF16, 32, "BF16", "BF16", GgmlType::BF16),
    (
        FileType::TQ1_0,
        36,
        "TQ1_0",
        "TQ1_0 - 1.69 bpw ternary",
        GgmlType::TQ1_0,
    ),
    (
        FileType::TQ2_0,
        37,
        "TQ2_0",
        "TQ2_0 - 2.06 bpw ternary",
        GgmlType::TQ2_0,
    ),
    (
        FileType::MXFP4_MOE,
        38,
        "MXFP4_MOE",
        "MXFP4 MoE",
        GgmlType::MXFP4,
    ),
];

/// llama-quantize's aliases (a name without size suffix means the medium variant).
const ALIASES: &[(&str, FileType)] = &[
    ("Q4_K", FileType::Q4_K_M),
    ("Q5_K", FileType::Q5_K_M),
    ("Q3_K", FileType::Q3_K_M),
];

impl FileType {
    fn row(self) -> Option<&'static (FileType, u32, &'static str, &'static str, GgmlType)> {
        TABLE.iter().find(|r| r.0 == self)
    }

    /// Every file type kiln can produce (COPY last).
    pub fn all() -> impl Iterator<Item = FileType> {
        TABLE
            .iter()
            .map(|r| r.0)
            .chain(std::iter::once(FileType::Copy))
    }

    /// The `llama_ftype` number written to `general.file_type` (`None` for COPY, which keeps the
    /// input's).
    pub fn llama_ftype(self) -> Option<u32> {
        self.row().map(|r| r.1)
    }

    /// The file type with this `llama_ftype` number.
    pub fn from_llama_ftype(n: u32) -> Option<FileType> {
        TABLE.iter().find(|r| r.1 == n).map(|r| r.0)
    }

    /// The name llama-quantize and Ollama use ("Q4_K_M", "COPY", …).
    pub fn name(self) -> &'static str {
        self.row().map_or("COPY", |r| r.2)
    }

    /// llama.cpp's description (`llama_ftype_name`, e.g. "Q4_K - Medium").
    pub fn description(self) -> &'static str {
        self.row().map_or("COPY", |r| r.3)
    }

    /// The type most tensors get (`None` for COPY).
    pub fn default_tensor_type(self) -> Option<GgmlType> {
        self.row().map(|r| r.4)
    }

    /// The names accepted by [`FromStr`], for error messages.
    pub fn supported_names() -> String {
        FileType::all()
            .map(FileType::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A quantization name kiln does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported quantization type {name} - supported types are {}",
    FileType::supported_names()
)]
pub struct UnknownFileType {
    /// The name as given (upper-cased, as Ollama reports it).
    pub name: String,
}

impl FromStr for FileType {
    type Err = UnknownFileType;

    /// Case-insensitive, with llama-quantize's aliases (`q4_k` = Q4_K_M).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        if upper == "COPY" {
            return Ok(FileType::Copy);
        }
        TABLE
            .iter()
            .find(|r| r.2 == upper)
            .map(|r| r.0)
            .or_else(|| ALIASES.iter().find(|a| a.0 == upper).map(|a| a.1))
            .ok_or(UnknownFileType { name: upper })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_with_aliases() {
        assert_eq!("q4_K_M".parse(), Ok(FileType::Q4_K_M));
        assert_eq!("Q4_K".parse(), Ok(FileType::Q4_K_M));
        assert_eq!("q5_k".parse(), Ok(FileType::Q5_K_M));
        assert_eq!("q3_k".parse(), Ok(FileType::Q3_K_M));
        assert_eq!("bf16".parse(), Ok(FileType::BF16));
        assert_eq!("copy".parse(), Ok(FileType::Copy));
        let err = "q9_x".parse::<FileType>().unwrap_err();
        assert!(err.to_string().starts_with(
            "unsupported quantization type Q9_X - supported types are F32, F16, Q4_0"
        ));
        for ft in FileType::all() {
            assert_eq!(ft.name().parse(), Ok(ft));
        }
    }
}
