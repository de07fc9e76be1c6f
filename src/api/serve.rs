//! One port, two protocols: gRPC calls (`content-type: application/grpc...`) go to the tonic
//! services behind their trace and auth layers; every other request goes to the HTTP router
//! (the JSON API and whatever is merged beside it). Routing by content type rather than path
//! means no path of one can shadow the other, and a JSON request to a gRPC method's path never
//! reaches a gRPC service without its auth layer.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response, header};

/// The service the server runs: gRPC or plain HTTP, by the request's content type.
#[derive(Clone)]
pub(super) struct ByContentType<G> {
    pub(super) grpc: G,
    pub(super) http: axum::Router,
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

impl<G> tower::Service<Request<Body>> for ByContentType<G>
where
    G: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    G::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both sides are routers that are always ready (tonic's `Routes` and axum's `Router`
        // answer `Ready` unconditionally), so each call runs on a clone of the side it needs.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if is_grpc(&request) {
            let mut grpc = self.grpc.clone();
            Box::pin(async move { grpc.call(request).await })
        } else {
            let mut http = self.http.clone();
            Box::pin(async move {
                let response = tower::Service::call(&mut http, request).await?;
                Ok(response.map(Body::new))
            })
        }
    }
}
