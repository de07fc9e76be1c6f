//! The HTTP/JSON API on the gRPC port, through the real `curl` binary against real `cairn dev`
//! processes: the curl lines verbatim, an execution's Server-Sent Events read with
//! `curl -N` and resumed with `Last-Event-ID`, the same errors and auth refusals as gRPC for the
//! same bad input, both HTTP versions (and gRPC) on one port, and the OpenAPI document covering
//! every route; and grpcurl 1.8 (reflection v1alpha) on the same port.

mod common;

#[path = "http_api/curl.rs"]
mod curl;
#[path = "http_api/events.rs"]
mod events;
#[path = "http_api/grpcurl.rs"]
mod grpcurl;
#[path = "http_api/openapi.rs"]
mod openapi;
#[path = "http_api/parity.rs"]
mod parity;
#[path = "http_api/python.rs"]
mod python;
#[path = "http_api/resume.rs"]
mod resume;
#[path = "http_api/transport.rs"]
mod transport;
