//! How kiln's long jobs report and stop: one [`Sink`] trait for every kind of progress event
//! (a conversion's [`ConvertProgress`](crate::convert::ConvertProgress), a quantization's
//! [`QuantizeEvent`](crate::quantize::QuantizeEvent), a create's
//! [`Event`](crate::create::Event)), in the spirit of ripgrep's `Sink`, and one [`Cancel`] token.
//! Closures `FnMut(&E) -> ControlFlow<()>` are sinks; [`NoProgress`] ignores everything.

use std::ops::ControlFlow;

pub use crate::cancel::Cancel;

/// Receives a job's events of type `E`; returning `ControlFlow::Break` stops the job at its next
/// chunk (it then cleans up and fails as cancelled).
pub trait Sink<E: ?Sized> {
    /// Called for every event.
    fn event(&mut self, event: &E) -> ControlFlow<()>;
}

impl<E: ?Sized, F: FnMut(&E) -> ControlFlow<()>> Sink<E> for F {
    fn event(&mut self, event: &E) -> ControlFlow<()> {
        self(event)
    }
}

/// A sink that ignores every event and never stops the job.
pub struct NoProgress;

impl<E: ?Sized> Sink<E> for NoProgress {
    fn event(&mut self, _: &E) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}
