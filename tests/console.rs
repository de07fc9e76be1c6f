//! The web console in a real browser: headless Chromium (Debian's `chromium`, driven through its
//! `chromedriver` over WebDriver) against a real `cairn dev`. A user creates an agent with the
//! runtime selector, starts a run and watches its output arrive, cancels a running execution,
//! fixes a failing agent and retries its failed execution, chats with an agent (message box,
//! close), allows and denies a tool call a turn asks about, opens a team's tree, the dashboard and
//! the workers, on a laptop's window and a phone's; every page is saved as a screenshot under
//! `target/console-screenshots/`, and the browser's console must hold no error.
//!
//! Also, over plain HTTP: the console's content types and cache headers.

mod common;

#[path = "console/access.rs"]
mod access;
#[path = "console/browser.rs"]
mod browser;
#[path = "console/pages.rs"]
mod pages;
#[path = "console/runs.rs"]
mod runs;
#[path = "console/steps.rs"]
mod steps;

use browser::Browser;
use common::{Db, Server};

/// The whole walk through the console, on one server and one browser (starting Chromium is the
/// slow part, so the steps share it). The steps are in `console/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_runs_agents_from_the_console_in_a_real_browser() {
    let db = Db::sqlite().await;
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    let mut b = Browser::start().await;
    b.goto(&format!("{}/", server.url)).await;
    b.find("#main h1").await;
    steps::the_error_check_sees_errors(&mut b).await;

    pages::create_an_agent_with_the_runtime_selector(&mut b, &mut c).await;
    runs::run_it_and_watch_the_output_arrive(&mut b, &mut c).await;
    runs::the_output_resumes_after_a_broken_stream(&mut b, &mut c).await;
    runs::cancel_a_running_execution(&mut b, &mut c).await;
    runs::fix_an_agent_and_retry_its_failed_execution(&mut b, &mut c).await;
    runs::chat_from_the_console(&mut b, &mut c).await;
    runs::answer_approvals(&mut b, &mut c).await;
    pages::open_a_team_execution(&mut b, &mut c).await;
    pages::open_the_dashboard_and_workers(&mut b).await;
    pages::work_in_another_namespace(&mut b, &mut c).await;
    pages::keyboard_reaches_the_pages(&mut b).await;
    pages::every_control_has_a_label(&mut b).await;
    pages::on_a_phone(&mut b, &server.url).await;

    let errors = b.errors().await;
    assert!(
        errors.is_empty(),
        "the browser's console has errors:\n{errors:#?}"
    );
    b.close().await;
}

/// With client tokens on, the console asks for one, refuses a wrong one and works with the
/// right one, sending it as `Authorization: Bearer` (the API refuses every call without it).
/// The server has no worker, which the agent form says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_with_a_client_token() {
    let db = Db::sqlite().await;
    let server = Server::start_with_env(
        &db,
        "server",
        &[],
        &[("CAIRN_CLIENT_TOKENS".into(), "console-secret".into())],
    );
    let mut b = Browser::start().await;
    access::sign_in(&mut b, &server.url, "console-secret").await;
    b.close().await;
}

/// The page and its assets, as a browser and a cache see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_files_have_their_types_and_cache_headers() {
    let db = Db::sqlite().await;
    let server = Server::dev(&db, &[]);
    access::headers(&server.url).await;
}
