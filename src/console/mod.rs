//! The web console: a single page of plain HTML, CSS and JavaScript modules, embedded in the
//! binary and served at `/` beside the HTTP API.
//!
//! The console holds no logic of its own about executions: every page reads and writes through
//! `/api/v1`, as any other client does, with the token the user signs in with. So this module only
//! serves files. Assets are served under `/assets/<version>/`, where the version is a hash of
//! every asset computed at compile time: a browser may keep them forever (`immutable`), and a new
//! build changes every URL at once. The page itself (`/`) is `no-cache` with that version as its
//! ETag, so a reload after an upgrade fetches the new page and, through it, the new assets.

mod assets;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use assets::{ASSETS, Asset, VERSION};

/// What the page may load and run: only its own scripts, styles and API (no inline script, no
/// CDN), and no framing by other sites.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The console's routes: `/` (also `/index.html`) and `/assets/<version>/<file>`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{version}/{*file}", get(asset))
}

/// The page, with the current asset version written into its asset URLs.
async fn index(headers: HeaderMap) -> Response {
    let etag = format!("\"{VERSION}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, common_headers(&etag, "no-cache")).into_response();
    }
    let page = assets::index_html().replace("{{version}}", VERSION);
    let mut response = (common_headers(&etag, "no-cache"), page).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// One asset. The current version is cached for good; an old version's URL (a page loaded
/// before an upgrade) gets today's file, revalidated, rather than a broken page.
async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    let Some(Asset { bytes, .. }) = ASSETS.iter().find(|a| a.path == file) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no console asset `{file}`"),
        )
            .into_response();
    };
    let cache = if version == VERSION {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = (common_headers(&format!("\"{VERSION}\""), cache), *bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file)),
    );
    response
}

/// Headers every console response carries.
fn common_headers(etag: &str, cache: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
}

/// The `Content-Type` of an asset, by its extension (every asset has one of these).
fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_known_content_type() {
        for asset in ASSETS {
            assert_ne!(
                content_type(asset.path),
                "application/octet-stream",
                "{}",
                asset.path
            );
        }
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        let files = ASSETS
            .iter()
            .map(|a| (a.path, std::str::from_utf8(a.bytes).unwrap()))
            .chain([("index.html", assets::index_html())]);
        for (path, text) in files {
            // The SVG namespace is a name, not a URL anything fetches.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
                "{path} names another site; the console serves everything itself"
            );
        }
    }

    #[test]
    fn the_page_names_only_assets_that_exist() {
        let page = assets::index_html();
        for part in page.split("/assets/{{version}}/").skip(1) {
            let file = part.split('"').next().unwrap();
            assert!(
                ASSETS.iter().any(|a| a.path == file),
                "index.html names `{file}`, which is not embedded"
            );
        }
    }
}
