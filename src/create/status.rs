//! The one table from every error the Ollama API answers to its HTTP status: creates, model
//! management (list, show, copy, delete), pulls and pushes, request bodies and blob uploads.
//! A server asks [`HttpStatus::status`]; nothing else decides a code.

use kiln_api::DecodeError;
use kiln_store::StoreError;

use super::{CreateError, ManageError, TransferError};

/// The HTTP status Ollama answers an error with (for a streamed response: when the error comes
/// before the first line, or with `stream: false`).
pub trait HttpStatus {
    /// The status code.
    fn status(&self) -> u16;
}

impl HttpStatus for CreateError {
    fn status(&self) -> u16 {
        match self {
            CreateError::FilePath
            | CreateError::InvalidDigest
            | CreateError::DraftQuantizeWithoutDraft
            | CreateError::InvalidModelName
            | CreateError::NeitherFromNorFiles
            | CreateError::UnknownType
            | CreateError::NotGguf
            | CreateError::OnlyOneAdapter
            | CreateError::Draft(_)
            | CreateError::Info(_)
            | CreateError::BadRemote
            | CreateError::RemoteDraft
            | CreateError::BadTemplate(_)
            | CreateError::Unsupported(_) => 400,
            CreateError::Pull(e) => e.status(),
            // nginx's "client closed request": nobody reads it, but logs say what happened.
            CreateError::Cancelled => 499,
            _ => 500,
        }
    }
}

impl HttpStatus for ManageError {
    fn status(&self) -> u16 {
        match self {
            ManageError::NotFound(_)
            | ManageError::SourceNotFound(_)
            | ManageError::MissingBlob { .. } => 404,
            ManageError::Store(_) | ManageError::CorruptBlob { .. } => 500,
            _ => 400,
        }
    }
}

impl HttpStatus for TransferError {
    fn status(&self) -> u16 {
        match self {
            TransferError::InvalidModelName | TransferError::ModelRequired => 400,
            // The registry layer's own table (its HTTP answers, auth, digests).
            TransferError::Registry(e) => e.status(),
        }
    }
}

/// A request body Ollama's handler could not decode: always `400 Bad Request`.
impl HttpStatus for DecodeError {
    fn status(&self) -> u16 {
        400
    }
}

/// A blob request (`HEAD`/`POST /api/blobs/:digest`): a malformed digest or a body that does
/// not hash to its digest is the client's fault (400), anything else the server's (500).
impl HttpStatus for StoreError {
    fn status(&self) -> u16 {
        match self {
            StoreError::InvalidDigest(_) | StoreError::DigestMismatch { .. } => 400,
            _ => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_answers_as_ollama() {
        assert_eq!(CreateError::InvalidModelName.status(), 400);
        assert_eq!(CreateError::Cancelled.status(), 499);
        assert_eq!(CreateError::AlreadyQuantized.status(), 500);
        assert_eq!(ManageError::NotFound("m".into()).status(), 404);
        assert_eq!(TransferError::ModelRequired.status(), 400);
        assert_eq!(DecodeError::Empty.status(), 400);
        let digest =
            |b: &str| kiln_store::Digest::parse(&format!("sha256:{}", b.repeat(32))).unwrap();
        let mismatch = StoreError::DigestMismatch {
            expected: digest("00"),
            actual: digest("11"),
        };
        assert_eq!(mismatch.status(), 400);
        let malformed = StoreError::from(kiln_store::Digest::parse("sha256:zz").unwrap_err());
        assert_eq!(
            (malformed.status(), malformed.to_string()),
            (400, "invalid digest format".to_owned())
        );
    }
}
