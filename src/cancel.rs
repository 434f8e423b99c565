//! [`Cancel`]: one way to stop a create, a conversion or a quantization, checked between chunks
//! of rows, so a client that goes away or a shutdown stops work within one chunk.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cancellation token: clones share one flag; [`cancel`](Self::cancel) sets it, and an optional
/// probe (a closed connection, a shutdown flag) can set it when asked.
#[derive(Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    probe: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Cancel {
    /// A token nothing has cancelled yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// A token that also counts as cancelled once `probe` answers true (asked at each check,
    /// so keep it cheap: an atomic load, a channel's `is_closed`).
    pub fn with_probe(probe: impl Fn() -> bool + Send + Sync + 'static) -> Cancel {
        Cancel {
            flag: Arc::default(),
            probe: Some(Arc::new(probe)),
        }
    }

    /// Cancels every holder of this token (and its clones).
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Whether the work should stop; once true, stays true.
    pub fn is_cancelled(&self) -> bool {
        if self.flag.load(Ordering::Relaxed) {
            return true;
        }
        if self.probe.as_ref().is_some_and(|p| p()) {
            self.cancel();
            return true;
        }
        false
    }
}

impl fmt::Debug for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.flag.load(Ordering::Relaxed))
            .field("probe", &self.probe.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_a_probe_latches_it() {
        let token = Cancel::new();
        let clone = token.clone();
        assert!(!clone.is_cancelled());
        token.cancel();
        assert!(clone.is_cancelled());

        let fired = Arc::new(AtomicBool::new(false));
        let seen = fired.clone();
        let probed = Cancel::with_probe(move || seen.load(Ordering::Relaxed));
        assert!(!probed.is_cancelled());
        fired.store(true, Ordering::Relaxed);
        assert!(probed.is_cancelled());
        fired.store(false, Ordering::Relaxed);
        assert!(probed.is_cancelled(), "a cancellation does not come undone");
    }
}
