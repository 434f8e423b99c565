//! A models directory in a temporary folder for the engine's tests, removed when dropped.

use std::path::PathBuf;

use kiln_store::Store;

pub(crate) struct TempStore {
    pub(crate) dir: PathBuf,
    pub(crate) store: Store,
}

impl TempStore {
    /// An empty store under the system temp folder, unique per `tag` and process.
    pub(crate) fn new(tag: &str) -> TempStore {
        let dir = std::env::temp_dir().join(format!("kiln-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        TempStore { dir, store }
    }

    /// The file names in `blobs/` (`sha256-…`), sorted.
    pub(crate) fn blob_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("blobs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
