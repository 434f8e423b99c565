//! Ctrl-C for the long local commands (create, quantize): the first interrupt cancels the work,
//! which then stops at its next chunk of rows and removes what it had written (partial output,
//! blobs no manifest references); a second one exits at once, as an impatient user expects.

use kiln::Cancel;

/// The exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
pub(crate) const INTERRUPTED_EXIT: u8 = 130;

/// A token the first Ctrl-C cancels. The handler is in place when this returns, so an interrupt
/// that comes at once is not lost; until then (and without a handler) Ctrl-C ends the process
/// as usual. `None` when no handler could be installed: the default behaviour then stays.
pub(crate) fn ctrl_c_token() -> Option<Cancel> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .ok()?;
    let mut interrupts = runtime.block_on(async { Interrupts::install() }).ok()?;
    let cancel = Cancel::new();
    let token = cancel.clone();
    std::thread::Builder::new()
        .name("kiln-ctrl-c".into())
        .spawn(move || {
            runtime.block_on(async move {
                if interrupts.next().await {
                    token.cancel();
                    eprintln!("\ninterrupted: stopping and cleaning up (Ctrl-C again to quit now)");
                }
                if interrupts.next().await {
                    std::process::exit(i32::from(INTERRUPTED_EXIT));
                }
            });
        })
        .ok()?;
    Some(cancel)
}

/// The interrupt signal, registered when made (tokio's `ctrl_c()` registers only when first
/// polled, too late for an interrupt that arrives before the thread runs).
struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    #[cfg(unix)]
    fn install() -> std::io::Result<Interrupts> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Interrupts {
            signal: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Interrupts> {
        Ok(Interrupts {})
    }

    /// Waits for the next interrupt; false when none can come any more.
    async fn next(&mut self) -> bool {
        #[cfg(unix)]
        {
            self.signal.recv().await.is_some()
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.is_ok()
        }
    }
}
