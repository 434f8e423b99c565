//! NDJSON streams: Ollama's `application/x-ndjson` progress responses.
//!
//! Encoding is [`crate::to_ndjson_line`]. Decoding is [`NdjsonDecoder`], which takes the body in
//! whatever chunks the transport delivers — a chunk may end mid-object, mid-UTF-8 sequence, or carry
//! several objects — and yields each complete line once.

use std::collections::VecDeque;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

/// Default cap on one line's length: far above any progress line, small enough to bound memory.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// Why a stream line could not be turned into a value.
#[derive(Debug, thiserror::Error)]
pub enum NdjsonError {
    /// The line is not valid JSON for the expected type.
    #[error("invalid NDJSON line {line}: {source}")]
    Json {
        /// 1-based line number within the stream.
        line: usize,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The server reported a failure in-stream (`{"error":"…"}`), which ends Ollama streams.
    #[error("{0}")]
    Remote(String),
    /// A line grew beyond the configured limit without a newline.
    #[error("NDJSON line {line} exceeds {limit} bytes")]
    LineTooLong {
        /// 1-based line number within the stream.
        line: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

/// Incremental decoder for a stream of `T` lines.
///
/// Empty lines are skipped and a trailing `\r` is ignored. A line whose object has a non-empty string
/// `error` field yields [`NdjsonError::Remote`], as the official clients raise on it. After
/// [`NdjsonError::LineTooLong`] the decoder discards input up to the next newline and carries on.
#[derive(Debug)]
pub struct NdjsonDecoder<T> {
    /// The current incomplete line (never contains a newline).
    buf: Vec<u8>,
    max_line: usize,
    line: usize,
    skipping: bool,
    ready: VecDeque<Result<T, NdjsonError>>,
    _marker: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Default for NdjsonDecoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned> NdjsonDecoder<T> {
    /// A decoder with the [`DEFAULT_MAX_LINE`] limit.
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A decoder that rejects lines longer than `max_line` bytes.
    pub fn with_max_line(max_line: usize) -> Self {
        NdjsonDecoder {
            buf: Vec::new(),
            max_line,
            line: 0,
            skipping: false,
            ready: VecDeque::new(),
            _marker: PhantomData,
        }
    }

    /// Feeds the next chunk; returns the values completed by it, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<T, NdjsonError>> {
        let mut rest = chunk;
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    let (head, tail) = (&rest[..nl], &rest[nl + 1..]);
                    if self.skipping {
                        self.skipping = false;
                    } else if self.buf.len() + head.len() > self.max_line {
                        self.overflow();
                        self.skipping = false;
                    } else {
                        self.buf.extend_from_slice(head);
                        self.emit_line();
                    }
                    self.buf.clear();
                    rest = tail;
                }
                None => {
                    if !self.skipping {
                        if self.buf.len() + rest.len() > self.max_line {
                            self.overflow();
                            self.buf.clear();
                        } else {
                            self.buf.extend_from_slice(rest);
                        }
                    }
                    rest = &[];
                }
            }
        }
        self.ready.drain(..).collect()
    }

    /// Ends the stream, decoding a final line that had no trailing newline.
    pub fn finish(mut self) -> Option<Result<T, NdjsonError>> {
        if self.skipping || self.buf.is_empty() {
            return None;
        }
        self.emit_line();
        self.ready.pop_front()
    }

    fn overflow(&mut self) {
        self.line += 1;
        self.skipping = true;
        self.ready.push_back(Err(NdjsonError::LineTooLong {
            line: self.line,
            limit: self.max_line,
        }));
    }

    fn emit_line(&mut self) {
        let mut line: &[u8] = &self.buf;
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.line += 1;
        self.ready.push_back(decode_line(line, self.line));
    }
}

/// Decodes one NDJSON line (without its newline), turning an `{"error":"…"}` line into
/// [`NdjsonError::Remote`].
pub fn decode_line<T: DeserializeOwned>(line: &[u8], line_no: usize) -> Result<T, NdjsonError> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|source| NdjsonError::Json {
            line: line_no,
            source,
        })?;
    if let Some(serde_json::Value::String(msg)) = value.get("error")
        && !msg.is_empty()
    {
        return Err(NdjsonError::Remote(msg.clone()));
    }
    serde_json::from_value(value).map_err(|source| NdjsonError::Json {
        line: line_no,
        source,
    })
}
