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

/// A token is itself a sink: it lets every event through until it is cancelled, then stops the
/// job (so `&mut cancel.clone()` makes any conversion or quantization cancellable).
impl<E: ?Sized> Sink<E> for Cancel {
    fn event(&mut self, _: &E) -> ControlFlow<()> {
        if self.is_cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// A sink that stops the job once its token is cancelled and forwards every event until then;
/// made by [`Cancel::guard`].
pub struct Guarded<'a, S: ?Sized> {
    sink: &'a mut S,
    cancel: &'a Cancel,
}

impl<E: ?Sized, S: Sink<E> + ?Sized> Sink<E> for Guarded<'_, S> {
    fn event(&mut self, event: &E) -> ControlFlow<()> {
        if self.cancel.is_cancelled() {
            return ControlFlow::Break(());
        }
        self.sink.event(event)
    }
}

impl Cancel {
    /// `sink`, stopped at its next event once this token is cancelled (checked before each
    /// event is forwarded).
    pub fn guard<'a, S: ?Sized>(&'a self, sink: &'a mut S) -> Guarded<'a, S> {
        Guarded { sink, cancel: self }
    }
}

/// A sink that ignores every event and never stops the job.
pub struct NoProgress;

impl<E: ?Sized> Sink<E> for NoProgress {
    fn event(&mut self, _: &E) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_sink_forwards_until_the_token_fires() {
        let cancel = Cancel::new();
        let mut seen = Vec::new();
        let mut collect = |e: &u32| {
            seen.push(*e);
            ControlFlow::Continue(())
        };
        let mut guarded = cancel.guard(&mut collect);
        assert_eq!(guarded.event(&1), ControlFlow::Continue(()));
        cancel.cancel();
        assert_eq!(guarded.event(&2), ControlFlow::Break(()));
        assert_eq!(seen, [1]);
        let mut token = cancel.clone();
        assert_eq!(Sink::<u32>::event(&mut token, &3), ControlFlow::Break(()));
        assert_eq!(
            Sink::<u32>::event(&mut Cancel::new(), &3),
            ControlFlow::Continue(())
        );
    }
}
