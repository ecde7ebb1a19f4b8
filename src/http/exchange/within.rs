//! A future bounded by a timeout that may not be set: one future type for both cases, so that
//! the caller's state holds the bounded future once (a `match` awaiting the future in one arm
//! and `monoio::time::timeout` of it in the other keeps a slot for each). The timers of a
//! request's path are boxed: monoio's is 640 bytes aligned to 128, which would size and align
//! every request's future for the waits few requests make.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::time::Sleep;

pin_project_lite::pin_project! {
    pub(super) struct Within<F> {
        #[pin]
        fut: F,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

/// `fut`'s output, or `None` once `limit` (if any) has passed first. As `monoio::time::timeout`,
/// the future is polled before the clock.
pub(super) fn within<F: Future>(limit: Option<Duration>, fut: F) -> Within<F> {
    Within { fut, sleep: limit.map(sleep) }
}

/// `monoio::time::sleep`, boxed (see the module's note).
pub(in crate::http) fn sleep(duration: Duration) -> Pin<Box<Sleep>> {
    Box::pin(monoio::time::sleep(duration))
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        match this.sleep {
            Some(sleep) => sleep.as_mut().poll(cx).map(|()| None),
            None => Poll::Pending,
        }
    }
}
