//! Namespaces that isolate: a token bound to namespace `a` can read, stream, cancel, retry,
//! replay or list nothing of namespace `b`, over gRPC and over HTTP, on every RPC. The RPCs are
//! read from the descriptor set (and the HTTP routes from the OpenAPI document), and each must
//! have a row in `tenancy/grpc.rs` (`tenancy/http.rs`), so a new RPC without one fails here.
//! Every refusal of an id is `NOT_FOUND` in the words a missing id gets, and every row that
//! reads something has a control: the same call with `b`'s own token succeeds.

mod common;

#[path = "tenancy/fixture.rs"]
mod fixture;
#[path = "tenancy/grpc.rs"]
mod grpc;
#[path = "tenancy/http.rs"]
mod http;

use common::Db;

async fn a_token_bound_to_a_namespace_sees_nothing_of_another(db: Db) {
    let fx = fixture::Fixture::start(&db).await;
    let before = db.row_counts().await;
    grpc::every_rpc_keeps_b_from_a(&fx).await;
    http::every_route_keeps_b_from_a(&fx).await;
    assert_eq!(
        db.row_counts().await,
        before,
        "nothing a token bound to `a` sent changed anything"
    );
}

async fn a_bound_token_works_in_its_own_namespace(db: Db) {
    let fx = fixture::Fixture::start(&db).await;
    grpc::a_bound_token_works_in_its_own_namespace(&fx).await;
}

on_both_stores!(
    a_token_bound_to_a_namespace_sees_nothing_of_another,
    a_bound_token_works_in_its_own_namespace,
);
