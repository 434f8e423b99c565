//! The content type Go's `http.DetectContentType` gives a file's first 512 bytes (the WHATWG
//! sniffing rules), without parameters: Ollama uses it to tell a text `config.json` or a Git LFS
//! pointer from real binary weights.

/// The media type of `head` (at most its first 512 bytes are looked at), `;` parameters dropped.
pub fn content_type(head: &[u8]) -> &'static str {
    let data = &head[..head.len().min(512)];
    let trimmed = {
        let start = data
            .iter()
            .position(|b| !matches!(b, b'\t' | b'\n' | 0x0C | b'\r' | b' '))
            .unwrap_or(data.len());
        &data[start..]
    };
    const HTML: &[&[u8]] = &[
        b"<!DOCTYPE HTML",
        b"<HTML",
        b"<HEAD",
        b"<SCRIPT",
        b"<IFRAME",
        b"<H1",
        b"<DIV",
        b"<FONT",
        b"<TABLE",
        b"<A",
        b"<STYLE",
        b"<TITLE",
        b"<B",
        b"<BODY",
        b"<BR",
        b"<P",
        b"<!--",
    ];
    for sig in HTML {
        if trimmed.len() > sig.len()
            && trimmed[..sig.len()].eq_ignore_ascii_case(sig)
            && matches!(trimmed[sig.len()], b' ' | b'>')
        {
            return "text/html";
        }
    }
    if trimmed.starts_with(b"<?xml") {
        return "text/xml";
    }
    let exact: &[(&[u8], &str)] = &[
        (b"%PDF-", "application/pdf"),
        (b"%!PS-Adobe-", "application/postscript"),
        (b"\xFE\xFF", "text/plain"),
        (b"\xFF\xFE", "text/plain"),
        (b"\xEF\xBB\xBF", "text/plain"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"\x89PNG\x0D\x0A\x1A\x0A", "image/png"),
        (b"\xFF\xD8\xFF", "image/jpeg"),
        (b"BM", "image/bmp"),
        (b"\x00\x00\x01\x00", "image/x-icon"),
        (b"\x00\x00\x02\x00", "image/x-icon"),
        (b"ID3", "audio/mpeg"),
        (b"OggS\x00", "application/ogg"),
        (b"MThd\x00\x00\x00\x06", "audio/midi"),
        (b"\x1A\x45\xDF\xA3", "video/webm"),
        (b"OTTO", "font/otf"),
        (b"ttcf", "font/collection"),
        (b"\x00\x01\x00\x00", "font/ttf"),
        (b"wOFF", "font/woff"),
        (b"wOF2", "font/woff2"),
        (b"\x1F\x8B\x08", "application/x-gzip"),
        (b"PK\x03\x04", "application/zip"),
        (b"Rar!\x1A\x07\x00", "application/x-rar-compressed"),
        (b"Rar!\x1A\x07\x01\x00", "application/x-rar-compressed"),
        (b"\x00asm", "application/wasm"),
    ];
    for (sig, kind) in exact {
        if data.starts_with(sig) {
            return kind;
        }
    }
    if data.len() >= 12 && &data[..4] == b"RIFF" {
        match &data[8..12] {
            b"WEBP" if data.len() >= 14 && &data[12..14] == b"VP" => return "image/webp",
            b"AVI " => return "video/avi",
            b"WAVE" => return "audio/wave",
            _ => {}
        }
    }
    if data.len() >= 12 && &data[..4] == b"FORM" && &data[8..12] == b"AIFF" {
        return "audio/aiff";
    }
    if is_mp4(data) {
        return "video/mp4";
    }
    let binary = data
        .iter()
        .any(|b| matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F));
    if binary {
        "application/octet-stream"
    } else {
        "text/plain"
    }
}

/// An ISO base media file: an `ftyp` box whose major or a compatible brand is `mp4`.
fn is_mp4(data: &[u8]) -> bool {
    if data.len() < 12 {
        return false;
    }
    let size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if data.len() < size || !size.is_multiple_of(4) || &data[4..8] != b"ftyp" {
        return false;
    }
    let mut at = 8;
    while at + 3 <= size {
        if at != 12 && &data[at..at + 3] == b"mp4" {
            return true;
        }
        at += 4;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn what_ollama_checks_for() {
        assert_eq!(content_type(br#"{"config": true}"#), "text/plain");
        assert_eq!(content_type(b""), "text/plain");
        assert_eq!(content_type(b"PK\x03\x04rest"), "application/zip");
        assert_eq!(
            content_type(b"GGUF\x03\x00\x00\x00"),
            "application/octet-stream"
        );
        assert_eq!(
            content_type(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n"),
            "text/plain"
        );
        assert_eq!(content_type(b"  <html>"), "text/html");
    }
}
