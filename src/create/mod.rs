//! The `/api/create` flow: resolve the source, quantize, write blobs, then the manifest.
