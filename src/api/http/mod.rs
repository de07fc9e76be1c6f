//! The HTTP/JSON API under `/api/v1`, served on the gRPC port (see [`super::serve`]).
//!
//! One implementation behind both protocols: every handler turns its JSON into the protobuf
//! request of the matching RPC and calls the same tonic service method the gRPC server calls, so
//! validation, error messages, namespaces and limits cannot drift apart. Authentication is the
//! gRPC layer's own check ([`super::auth::Tokens`]), asked with the name of that RPC, so a token
//! opens exactly the HTTP routes whose RPCs it opens, with the same refusals.
//!
//! A file per resource; each handler carries its `utoipa::path`, and the routes are registered
//! only through `utoipa_axum::routes!`, so the OpenAPI document at `/api/v1/openapi.json` is
//! generated from the same list the router serves.

mod agents;
mod body;
mod conversation;
mod error;
mod events;
mod executions;
mod operators;
mod teams;

use std::sync::{Arc, OnceLock};

use axum::http::HeaderMap;
use tonic::metadata::MetadataMap;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Agents, ApiState, Executions, Teams, Tokens, Workers};

pub use error::{ApiError, ErrorBody, ErrorDetail, http_status};

/// The path prefix of every route of this API.
pub const PREFIX: &str = "/api/v1";

/// The largest request body: tonic's default largest decoded message, so a request too large
/// for gRPC is too large here as well.
const MAX_BODY_BYTES: usize = 4 << 20;

/// What the handlers share: the gRPC services they call, and the tokens they check.
pub(crate) struct Http {
    agents: Agents,
    teams: Teams,
    executions: Executions,
    workers: Workers,
    tokens: Tokens,
    openapi: OnceLock<utoipa::openapi::OpenApi>,
}

type Shared = Arc<Http>;

impl Http {
    /// A tonic request for the RPC `method` (`/cairn.v1.AgentService/CreateAgent`), after the
    /// same token check the gRPC layer makes for that method. The HTTP headers become the
    /// call's metadata, so what the services read from it (`traceparent`) arrives as over gRPC.
    /// The check comes first, as over gRPC, where a refused call's body is never read.
    fn request<T>(
        &self,
        headers: &HeaderMap,
        method: &str,
        message: Result<T, ApiError>,
    ) -> Result<tonic::Request<T>, ApiError> {
        let caller = self.authorize(headers, method)?;
        let mut extensions = tonic::Extensions::new();
        extensions.insert(caller);
        Ok(tonic::Request::from_parts(
            MetadataMap::from_headers(headers.clone()),
            extensions,
            message?,
        ))
    }

    fn authorize(&self, headers: &HeaderMap, method: &str) -> Result<super::Caller, ApiError> {
        self.tokens
            .check(method, headers.get(axum::http::header::AUTHORIZATION))
            .map_err(ApiError)
    }
}

/// Runs the request in its server span ([`super::trace::http_span`]).
async fn traced(
    route: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let route = route.map_or_else(|| "(no route)".to_string(), |r| r.as_str().to_string());
    let span = super::trace::http_span(request.method().as_str(), &route, request.headers());
    next.run(request).instrument(span).await
}

/// Refuses a request that changes something (not GET or HEAD) when a browser says it comes from
/// another origin. Bodies are read whatever their Content-Type (as `curl -d` sends them), so a
/// page elsewhere could otherwise make a visitor's browser post a "simple" cross-origin form to a
/// server with authentication off (`cairn dev` on loopback) without any preflight. Browsers send
/// `Origin` with such requests; curl and scripts send none, and the console is same-origin.
async fn same_origin(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{Method, header};
    use axum::response::IntoResponse;
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if let (true, Some(origin)) = (writes, request.headers().get(header::ORIGIN)) {
        // The names the server is reached by: `Host` (HTTP/1.1), `:authority` (HTTP/2), and
        // `X-Forwarded-Host` from a reverse proxy that rewrites `Host`.
        let headers = request.headers();
        let text = |name| headers.get(name).and_then(|h| h.to_str().ok());
        let hosts = [
            text(header::HOST),
            request.uri().authority().map(|a| a.as_str()),
            text(header::HeaderName::from_static("x-forwarded-host")),
        ];
        let from = origin.to_str().unwrap_or("");
        let same = from.split_once("://").is_some_and(|(_, authority)| {
            hosts
                .iter()
                .flatten()
                .any(|host| authority.eq_ignore_ascii_case(host))
        });
        if !same {
            return ApiError(tonic::Status::permission_denied(format!(
                "a request from another origin ({}) may not change anything here; call the API \
                 from the server's own origin or from outside a browser",
                crate::api::validate::quote(from)
            )))
            .into_response();
        }
    }
    next.run(request).await
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn HTTP/JSON API",
        description = "The operations of Cairn's gRPC services over HTTP/JSON, with the same \
                       validation, errors and tokens. Errors are `{\"error\": {\"code\", \
                       \"message\"}}` with the gRPC code's name and the matching HTTP status."
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// `Authorization: Bearer <token>`, when the server has tokens.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http as Scheme, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Scheme::new(HttpAuthScheme::Bearer)),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// Every route, each registered with its OpenAPI description (paths relative to [`PREFIX`]).
fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(agents::create, agents::list))
        .routes(routes!(agents::get, agents::update, agents::archive))
        .routes(routes!(agents::runtimes))
        .routes(routes!(teams::create, teams::list))
        .routes(routes!(teams::get, teams::update, teams::archive))
        .routes(routes!(executions::start, executions::list))
        .routes(routes!(executions::get, executions::delete))
        .routes(routes!(executions::history))
        .routes(routes!(executions::cancel))
        .routes(routes!(executions::retry))
        .routes(routes!(executions::replay))
        .routes(routes!(conversation::send))
        .routes(routes!(conversation::close))
        .routes(routes!(conversation::resolve))
        .routes(routes!(events::events))
        .routes(routes!(operators::stats))
        .routes(routes!(operators::workers))
        .routes(routes!(operators::openapi))
}

/// The OpenAPI document of the routes [`router`] serves, generated from their definitions.
pub fn openapi() -> utoipa::openapi::OpenApi {
    OpenApiRouter::<Shared>::new()
        .nest(PREFIX, routes())
        .into_openapi()
}

/// The HTTP/JSON API, every route under [`PREFIX`], over the services of `state` and checking
/// `tokens` as the gRPC server does.
pub fn router(state: Arc<ApiState>, tokens: Tokens) -> axum::Router {
    let shared = Arc::new(Http {
        agents: Agents::new(state.clone()),
        teams: Teams::new(state.clone()),
        executions: Executions::new(state.clone()),
        workers: Workers::new(state.clone()),
        tokens,
        openapi: OnceLock::new(),
    });
    let (router, doc) = OpenApiRouter::new()
        .nest(PREFIX, routes())
        .split_for_parts();
    let _ = shared.openapi.set(doc);
    router
        // Anything else under the prefix is a JSON 404, not an empty page.
        .route(
            &format!("{PREFIX}/{{*rest}}"),
            axum::routing::any(error::no_route),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::from_fn(same_origin))
        .layer(axum::middleware::from_fn(traced))
        .with_state(shared)
}
