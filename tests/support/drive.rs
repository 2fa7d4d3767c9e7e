//! Driving a service by hand for one request, with a no-op waker: for the
//! allocation test and the benches, whose services all complete on the first
//! poll (no runtime, no `block_on`, nothing counted or timed but the service).

use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::Response;
use tower::Service;

/// `poll_ready` + `call` + one poll of the response future. Panics when the
/// service is not ready, fails, or does not answer on the first poll.
pub fn drive<S, R, RB>(svc: &mut S, req: R) -> Response<RB>
where
    S: Service<R, Response = Response<RB>>,
    S::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => panic!("service failed: {e:?}"),
        Poll::Pending => panic!("service not ready on first poll"),
    }
    match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        Poll::Ready(Err(e)) => panic!("service failed: {e:?}"),
        Poll::Pending => panic!("response future not ready on first poll"),
    }
}
