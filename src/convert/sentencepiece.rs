//! The pieces of a SentencePiece `tokenizer.model` (a `ModelProto` protobuf), read with a
//! minimal bounds-checked decoder: only `pieces` (field 1) and, in each, `piece` (1), `score` (2)
//! and `type` (3) are read; everything else is skipped by wire type.

use super::ConvertError;

/// SentencePiece's piece types (`ModelProto.SentencePiece.Type`).
pub(crate) const NORMAL: i32 = 1;

/// One vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: i32,
}

fn bad(reason: &str) -> ConvertError {
    ConvertError::Json {
        file: "tokenizer.model".into(),
        message: format!("not a SentencePiece model: {reason}"),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ConvertError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .bytes
                .split_first()
                .ok_or_else(|| bad("truncated varint"))?;
            self.bytes = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], ConvertError> {
        if n > self.bytes.len() as u64 {
            return Err(bad("field runs past the end"));
        }
        let (head, rest) = self.bytes.split_at(n as usize);
        self.bytes = rest;
        Ok(head)
    }

    /// The next field: its number, wire type and payload (varints as their value).
    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, ConvertError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed(self.take(8)?),
            2 => {
                let len = self.varint()?;
                Field::Bytes(self.take(len)?)
            }
            5 => Field::Fixed(self.take(4)?),
            other => return Err(bad(&format!("unsupported wire type {other}"))),
        };
        Ok(Some((key >> 3, field)))
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed(&'a [u8]),
    Bytes(&'a [u8]),
}

/// The model's pieces, in id order.
pub(crate) fn pieces(bytes: &[u8]) -> Result<Vec<Piece>, ConvertError> {
    let mut out = Vec::new();
    let mut model = Reader { bytes };
    while let Some((number, field)) = model.field()? {
        let (1, Field::Bytes(message)) = (number, field) else {
            continue;
        };
        let mut piece = Piece {
            piece: String::new(),
            score: 0.0,
            kind: NORMAL,
        };
        let mut reader = Reader { bytes: message };
        while let Some((number, field)) = reader.field()? {
            match (number, field) {
                (1, Field::Bytes(b)) => {
                    piece.piece =
                        String::from_utf8(b.to_vec()).map_err(|_| bad("a piece is not UTF-8"))?;
                }
                (2, Field::Fixed(b)) if b.len() == 4 => {
                    piece.score = f32::from_le_bytes(b.try_into().expect("4 bytes"));
                }
                (3, Field::Varint(v)) => piece.kind = v as i32,
                _ => {}
            }
        }
        out.push(piece);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) fn encode(pieces: &[(&str, f32, i32)]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    for (piece, score, kind) in pieces {
        let mut m = vec![0x0a];
        varint(&mut m, piece.len() as u64);
        m.extend_from_slice(piece.as_bytes());
        m.push(0x15);
        m.extend_from_slice(&score.to_le_bytes());
        if *kind != NORMAL {
            m.push(0x18);
            varint(&mut m, *kind as u64);
        }
        out.push(0x0a);
        varint(&mut out, m.len() as u64);
        out.extend(m);
    }
    // A trainer_spec (field 2) the reader must skip.
    out.extend([0x12, 0x02, 0x08, 0x01]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pieces_scores_and_types_in_order() {
        let bytes = encode(&[("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("▁the", -1.5, 1)]);
        let p = pieces(&bytes).unwrap();
        assert_eq!(
            p,
            [
                Piece {
                    piece: "<unk>".into(),
                    score: 0.0,
                    kind: 2
                },
                Piece {
                    piece: "<s>".into(),
                    score: 0.0,
                    kind: 3
                },
                Piece {
                    piece: "▁the".into(),
                    score: -1.5,
                    kind: 1
                },
            ]
        );
    }

    #[test]
    fn malformed_models_are_refused() {
        assert!(pieces(&[0x0a, 0x05, 0x0a]).is_err(), "length past the end");
        assert!(pieces(&[0x0b]).is_err(), "wire type 3");
        assert!(
            pieces(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ])
            .is_err()
        );
        assert!(
            pieces(&[0x0a, 0x03, 0x0a, 0x01, 0xff]).is_err(),
            "piece not UTF-8"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = pieces(&bytes);
        }
    }
}
