//! Signing in with a client token, and the headers the console's files are served with.

use serde_json::{Value, json};

use super::browser::Browser;

/// Signing in: asked for a token, a wrong one refused, the right one kept for the tab.
pub async fn sign_in(b: &mut Browser, url: &str, token: &str) {
    b.goto(&format!("{url}/#/executions")).await;
    b.find("#token").await;
    b.screenshot("signin").await;
    b.fill("#token", "not-the-token").await;
    b.click("form.signin button[type=submit]").await;
    b.until(
        "the refusal",
        "return document.querySelector('[role=alert]')?.textContent.includes('refused this token');",
    )
    .await;
    b.fill("#token", token).await;
    b.click("form.signin button[type=submit]").await;
    b.until(
        "the executions page after signing in",
        "const h = document.querySelector('main h1'); return h && h.textContent === 'Executions';",
    )
    .await;
    let kept = b
        .js("return sessionStorage.getItem('cairn.token');", vec![])
        .await;
    assert_eq!(kept, json!(token));
    // A reload keeps the tab signed in.
    b.goto(&format!("{url}/#/dashboard")).await;
    b.find(".stat-grid").await;
    // No worker offers any runtime: the selector counts none and the form says what follows.
    b.goto(&format!("{url}/#/agents/new")).await;
    b.click("label[for=runtime-echo]").await;
    assert_eq!(
        b.find("label[for=runtime-echo] .workers")
            .await
            .text()
            .await
            .unwrap(),
        "0 workers"
    );
    let warning = b
        .find("#config-keys .alert-warn")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        warning.contains("No connected worker offers echo"),
        "{warning}"
    );
    b.screenshot("agent-new-no-workers").await;
    b.click("#session button").await;
    b.find("#token").await;
    assert_eq!(
        b.js("return sessionStorage.getItem('cairn.token');", vec![])
            .await,
        Value::Null,
        "signing out forgets the token"
    );
    // The only errors are the API's 401 answers to calls without a (valid) token, which
    // Chromium logs as failed loads; a script error or any other failure still fails the test.
    let errors: Vec<_> = b
        .errors()
        .await
        .into_iter()
        .filter(|e| !(e.source == "network" && e.message.contains(" 401 ")))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// The page is never cached without asking, assets are cached for good under a versioned path,
/// each with its content type; the API keeps its own paths.
pub async fn headers(url: &str) {
    let http = reqwest::Client::new();
    let page = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert!(header(&page, "content-security-policy").contains("script-src 'self'"));
    let etag = header(&page, "etag");
    let html = page.text().await.unwrap();
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page loads a script")
        .to_string();
    assert!(
        script.starts_with("/assets/") && script.ends_with("/app.js"),
        "{script}"
    );

    let again = http
        .get(format!("{url}/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304, "an unchanged page is not sent again");

    for (path, kind) in [
        (script.clone(), "text/javascript; charset=utf-8"),
        (
            script.replace("app.js", "style.css"),
            "text/css; charset=utf-8",
        ),
        (script.replace("app.js", "favicon.svg"), "image/svg+xml"),
        (
            script.replace("app.js", "pages/execution.js"),
            "text/javascript; charset=utf-8",
        ),
    ] {
        let r = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), kind, "{path}");
        assert_eq!(
            header(&r, "cache-control"),
            "public, max-age=31536000, immutable",
            "{path}"
        );
    }
    let stale = script.replacen(script.split('/').nth(2).unwrap(), "0000000000000000", 1);
    let r = http.get(format!("{url}{stale}")).send().await.unwrap();
    assert_eq!(r.status(), 200, "an old page's asset URL still loads");
    assert_eq!(header(&r, "cache-control"), "no-cache");
    let missing = script.replace("app.js", "missing.js");
    let r = http.get(format!("{url}{missing}")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let api = http
        .get(format!("{url}/api/v1/runtimes"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200, "the API answers beside the console");
    assert!(header(&api, "content-type").starts_with("application/json"));
}
