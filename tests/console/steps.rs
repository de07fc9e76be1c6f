//! What the console walk-through's steps share: finding the page's state, going to a page, and
//! the check that the browser log sees errors at all. The steps themselves, each as a user would
//! take it in the browser and checked against what the server then holds (over gRPC), are in
//! `runs.rs` (runs and their output), `pages.rs` (agents, teams, dashboard, namespaces, keyboard,
//! phone) and `access.rs` (sign-in and headers).

use std::time::Duration;

use fantoccini::key::Key;

use super::browser::{Browser, WAIT};

/// The browser log check catches both kinds of error a page can make: a `console.error` and an
/// uncaught exception. Without this, a check that read the wrong log would pass forever.
pub async fn the_error_check_sees_errors(b: &mut Browser) {
    let before = b.errors().await;
    assert!(
        before.is_empty(),
        "the first page load logged errors: {before:#?}"
    );
    b.js(
        "console.error('probe: console.error'); \
         setTimeout(() => { throw new Error('probe: uncaught'); }, 0); return null;",
        vec![],
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let errors = b.errors().await;
        let seen = |text: &str| errors.iter().any(|e| e.message.contains(text));
        if seen("probe: console.error") && seen("probe: uncaught") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the browser log did not show the probe errors: {errors:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.forget_log().await;
}

/// The text of the element `css` selects.
pub async fn text(b: &Browser, css: &str) -> String {
    b.find(css).await.text().await.expect("element text")
}

/// Waits until the status badge of the execution page reads `status`.
pub async fn wait_status(b: &Browser, status: &str) {
    b.until(
        &format!("the execution to be {status}"),
        &format!(
            "const s = document.querySelector('#exec-status .badge'); \
             return s && s.textContent === '{status}';"
        ),
    )
    .await;
}

/// The execution id the page shows (from `#/executions/<id>`).
pub async fn current_execution(b: &Browser) -> String {
    b.until(
        "an execution page",
        "const m = location.hash.match(/^#\\/executions\\/([0-9a-f-]{36})$/); return m && m[1];",
    )
    .await
    .as_str()
    .unwrap()
    .to_string()
}

pub async fn nav(b: &Browser, page: &str, heading: &str) {
    b.click(&format!("a[data-nav={page}]")).await;
    b.until(
        &format!("the {page} page"),
        &format!("const h = document.querySelector('main h1'); return h && h.textContent === '{heading}';"),
    )
    .await;
}

/// Opens the executions page's start form with `target` (`agent:NAME` or `team:NAME`) chosen.
pub async fn new_run(b: &Browser, target: &str) {
    nav(b, "executions", "Executions").await;
    b.click("#new-run").await;
    b.find("#start-target")
        .await
        .select_by_value(target)
        .await
        .expect("choose the agent or team");
}

/// The server's base URL, from the page's own location.
pub async fn base(b: &Browser) -> String {
    b.js("return location.origin + '/';", vec![])
        .await
        .as_str()
        .unwrap()
        .to_string()
}

/// Presses Tab where the keyboard focus is.
pub async fn press_tab(b: &Browser) {
    b.client
        .active_element()
        .await
        .expect("the focused element")
        .send_keys(&String::from(char::from(Key::Tab)))
        .await
        .expect("press Tab");
}
