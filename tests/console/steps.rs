//! The steps of the console walk-through, each as a user would take it in the browser, checked
//! against what the server then holds (over gRPC).

use std::time::Duration;

use cairn::api::pb;
use cairn::api::pb::team_service_client::TeamServiceClient;
use fantoccini::key::Key;
use serde_json::{Value, json};

use super::browser::{Browser, WAIT};
use super::common::TestClient;
use super::common::client::{fast_retries, kinds, start_request};

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
async fn text(b: &Browser, css: &str) -> String {
    b.find(css).await.text().await.expect("element text")
}

/// Waits until the status badge of the execution page reads `status`.
async fn wait_status(b: &Browser, status: &str) {
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
async fn current_execution(b: &Browser) -> String {
    b.until(
        "an execution page",
        "const m = location.hash.match(/^#\\/executions\\/([0-9a-f-]{36})$/); return m && m[1];",
    )
    .await
    .as_str()
    .unwrap()
    .to_string()
}

async fn nav(b: &Browser, page: &str, heading: &str) {
    b.click(&format!("a[data-nav={page}]")).await;
    b.until(
        &format!("the {page} page"),
        &format!("const h = document.querySelector('main h1'); return h && h.textContent === '{heading}';"),
    )
    .await;
}

/// New agent → name, the `echo` runtime in the selector, its `delay_ms` key → saved.
pub async fn create_an_agent_with_the_runtime_selector(b: &mut Browser, c: &mut TestClient) {
    nav(b, "agents", "Agents").await;
    b.click("#new-agent").await;
    b.fill("#agent-name", "writer").await;
    b.click("label[for=runtime-echo]").await;
    // The selector shows each runtime's workers and, once chosen, its configuration keys.
    assert_eq!(
        text(b, "label[for=runtime-echo] .workers").await,
        "1 worker",
        "cairn dev's in-process worker offers echo"
    );
    let keys = b
        .js(
            "return [...document.querySelectorAll('#config-keys code')].map(c => c.textContent);",
            vec![],
        )
        .await;
    for key in ["chunks", "delay_ms", "fail_attempts", "fail_retryable"] {
        assert!(
            keys.as_array().unwrap().contains(&json!(key)),
            "echo's key {key} is offered: {keys}"
        );
    }
    b.fill("#cfg-delay_ms", "250").await;
    b.screenshot("agent-new").await;
    b.click("#save-agent").await;
    b.find("tr[data-agent=writer]").await;
    b.screenshot("agents").await;

    let agent = c
        .agents
        .get_agent(pb::GetAgentRequest {
            agent: "writer".into(),
            ..Default::default()
        })
        .await
        .expect("the console created the agent")
        .into_inner();
    assert_eq!(agent.runtime, "echo");
    let configuration: Value = serde_json::from_str(&agent.configuration_json).unwrap();
    assert_eq!(
        configuration,
        json!({ "runtime_config": { "delay_ms": 250 } })
    );
}

/// New run → the agent, a prompt → the execution page, where the output arrives chunk by chunk
/// (a MutationObserver records every text the output box showed).
pub async fn run_it_and_watch_the_output_arrive(b: &mut Browser, c: &mut TestClient) {
    nav(b, "executions", "Executions").await;
    b.click("#new-run").await;
    b.find("#start-target")
        .await
        .select_by_value("agent:writer")
        .await
        .expect("choose the agent");
    let prompt = "alpha beta gamma delta epsilon zeta eta theta";
    b.fill("#start-prompt", prompt).await;
    b.fill("#start-labels", "suite=console").await;
    // `main` stays while the page changes, so the observer sees the execution page's output.
    b.js(
        "window.__seen = []; \
         new MutationObserver(() => { \
           const t = [...document.querySelectorAll('#output .out-text')].map(e => e.textContent).join(''); \
           if (t && window.__seen[window.__seen.length - 1] !== t) window.__seen.push(t); \
         }).observe(document.getElementById('main'), {subtree: true, childList: true, characterData: true}); \
         return null;",
        vec![],
    )
    .await;
    b.click("#start-panel button[type=submit]").await;
    let id = current_execution(b).await;
    b.until(
        "some of the output, not all",
        &format!(
            "const t = document.querySelector('#output .out-text'); \
             return t && t.textContent.length > 0 && t.textContent.length < {};",
            prompt.len()
        ),
    )
    .await;
    b.screenshot("execution-live").await;
    wait_status(b, "completed").await;
    assert_eq!(text(b, "#output .out-text").await, prompt);
    let seen: Vec<String> = serde_json::from_value(b.js("return window.__seen;", vec![]).await)
        .expect("the texts the output showed");
    for shown in &seen {
        assert!(
            prompt.starts_with(shown.as_str()),
            "{shown:?} is a prefix of the output"
        );
    }
    let partial = seen.iter().filter(|s| s.len() < prompt.len()).count();
    assert!(
        partial >= 3,
        "the output arrived in steps, not at once: {seen:?}"
    );
    b.screenshot("execution-completed").await;

    let execution = c.get(&id).await;
    assert_eq!(execution.status, "COMPLETED");
    assert_eq!(
        execution.labels.get("suite").map(String::as_str),
        Some("console")
    );

    // The list, filtered by the label and the runtime, holds that run alone; another label, none.
    // A conversation from the same form: one turn per line.
    nav(b, "executions", "Executions").await;
    b.click("#new-run").await;
    b.find("#start-target")
        .await
        .select_by_value("agent:writer")
        .await
        .expect("choose the agent");
    b.fill("#start-prompt", "first turn\nsecond turn").await;
    b.click("#start-turns").await;
    b.screenshot("executions-new-run").await;
    b.click("#start-panel button[type=submit]").await;
    b.until(
        "the conversation's page",
        &format!(
            "return location.hash.startsWith('#/executions/') && !location.hash.endsWith('{id}');"
        ),
    )
    .await;
    let conversation = current_execution(b).await;
    wait_status(b, "completed").await;
    let history = c.history(&conversation).await;
    assert_eq!(
        history[0].payload["prompts"],
        json!(["first turn", "second turn"]),
        "two turns"
    );
    nav(b, "executions", "Executions").await;
    b.fill("#filter-label", &format!("suite=console{}", Key::Enter))
        .await;
    b.find("#filter-runtime")
        .await
        .select_by_value("echo")
        .await
        .expect("filter by runtime");
    b.until(
        "the labelled run alone",
        &format!(
            "const rows = [...document.querySelectorAll('tr[data-execution]')]; \
             return location.hash.includes('runtime=echo') && rows.length === 1 && rows[0].dataset.execution === '{id}';"
        ),
    )
    .await;
    b.fill("#filter-label", &format!("suite=other{}", Key::Enter))
        .await;
    b.find("main .empty").await;
}

/// The output stream breaks mid-run (the test cuts the response the page reads); the page
/// reconnects with `Last-Event-ID` and shows every chunk once.
pub async fn the_output_resumes_after_a_broken_stream(b: &mut Browser, c: &mut TestClient) {
    b.js(
        "window.__cuts = 0; window.__resumedFrom = null; \
         const realFetch = window.fetch; \
         window.fetch = async (input, init) => { \
           const events = String(input).includes('/events'); \
           if (events && window.__cuts > 0 && init && init.headers) { \
             window.__resumedFrom = init.headers['Last-Event-ID'] ?? null; \
           } \
           const res = await realFetch(input, init); \
           if (!events || window.__cuts > 0) return res; \
           window.__cuts += 1; \
           const reader = res.body.getReader(); \
           let reads = 0; \
           const body = new ReadableStream({ async pull(ctrl) { \
             const { value, done } = await reader.read(); \
             if (done) { ctrl.close(); return; } \
             ctrl.enqueue(value); \
             if (++reads >= 3) { reader.cancel(); ctrl.error(new TypeError('cut by the test')); } \
           } }); \
           return new Response(body, { status: res.status, headers: res.headers }); \
         }; \
         return null;",
        vec![],
    )
    .await;
    let prompt = "one two three four five six seven eight nine";
    let id = c.start_simple("writer", prompt).await;
    b.goto(&format!("{}#/executions/{id}", base(b).await)).await;
    wait_status(b, "completed").await;
    b.until(
        "the whole output",
        &format!("return document.querySelector('#output .out-text')?.textContent === '{prompt}';"),
    )
    .await;
    let cut = b
        .js("return [window.__cuts, window.__resumedFrom];", vec![])
        .await;
    assert_eq!(cut[0], json!(1), "the stream was cut once");
    let resumed: u64 = cut[1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the page reconnected with Last-Event-ID: {cut}"));
    assert!(resumed >= 1, "it resumed after a chunk it had: {resumed}");
    b.client
        .refresh()
        .await
        .expect("reload, which restores fetch");
    b.find("#exec-status .badge").await;
}

/// A slow execution, found in the list filtered to RUNNING, cancelled from its page.
pub async fn cancel_a_running_execution(b: &mut Browser, c: &mut TestClient) {
    c.create_agent(
        "slow",
        "echo",
        json!({ "delay_ms": 400, "chunks": (1..=60).map(|i| format!("part {i} ")).collect::<Vec<_>>() }),
    )
    .await;
    let id = c.start_simple("slow", "take your time").await;
    c.wait_until(&id, "it to run", |e| e.status == "RUNNING")
        .await;

    nav(b, "executions", "Executions").await;
    b.find(&format!("tr[data-execution='{id}']")).await;
    b.screenshot("executions").await;
    b.find("#filter-status")
        .await
        .select_by_value("RUNNING")
        .await
        .expect("filter by status");
    let row = format!("tr[data-execution='{id}']");
    b.find(&row).await;
    b.until(
        "only running executions listed",
        "const rows = [...document.querySelectorAll('tr[data-execution]')]; \
         return rows.length > 0 && rows.every(r => r.dataset.status === 'RUNNING');",
    )
    .await;
    b.screenshot("executions-running").await;
    b.click(&format!("{row} a")).await;
    b.until(
        "output of the slow run",
        "const t = document.querySelector('#output .out-text'); return t && t.textContent.length > 0;",
    )
    .await;
    b.click("#cancel").await;
    wait_status(b, "canceled").await;
    b.find("li[data-type=ExecutionCanceled]").await;
    b.screenshot("execution-canceled").await;

    let history = c.history(&id).await;
    let kinds = kinds(&history);
    assert!(kinds.contains(&"CancelRequested"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"ExecutionCanceled"));
}

/// An agent that fails its attempts fails its execution (attempt, back-off, attempt); the user
/// clears `fail_attempts` in the agent form and presses Retry, and the retry completes.
pub async fn fix_an_agent_and_retry_its_failed_execution(b: &mut Browser, c: &mut TestClient) {
    c.create_agent(
        "flaky",
        "echo",
        json!({ "fail_attempts": [1, 2], "fail_after_chunks": 1 }),
    )
    .await;
    let mut request = start_request("flaky", &["try this"]);
    request.retry_policy = Some(fast_retries(2));
    let failed = c.start(request).await;
    c.wait_until(&failed, "it to fail", |e| e.status == "FAILED")
        .await;

    nav(b, "agents", "Agents").await;
    b.click("tr[data-agent=flaky] a").await;
    let field = b.find("#cfg-fail_attempts").await;
    assert_eq!(field.prop("value").await.unwrap().as_deref(), Some("[1,2]"));
    b.fill("#cfg-fail_attempts", "").await;
    b.screenshot("agent-edit").await;
    b.click("#save-agent").await;
    b.find("tr[data-agent=flaky]").await;
    let agent = c
        .agents
        .get_agent(pb::GetAgentRequest {
            agent: "flaky".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(agent.version, 2, "the edit saved once");
    let configuration: Value = serde_json::from_str(&agent.configuration_json).unwrap();
    assert_eq!(
        configuration,
        json!({ "runtime_config": { "fail_after_chunks": 1 } })
    );

    b.goto(&format!("{}#/executions/{failed}", base(b).await))
        .await;
    wait_status(b, "failed").await;
    // The timeline: two attempts with a back-off between them.
    b.find(".gantt .span-backoff").await;
    let attempts = b
        .js(
            "return document.querySelectorAll('.gantt .span-attempt').length;",
            vec![],
        )
        .await;
    assert_eq!(attempts, json!(2));
    b.find("li[data-type=TimerStarted]").await;
    b.screenshot("execution-failed").await;
    b.click("#retry").await;
    b.until(
        "the retry's page",
        &format!("return location.hash.startsWith('#/executions/') && !location.hash.endsWith('{failed}');"),
    )
    .await;
    let retry = current_execution(b).await;
    wait_status(b, "completed").await;
    b.find(&format!("a[href='#/executions/{failed}']")).await;
    b.click("#replay").await;
    b.until(
        "the replay's verdict",
        "return document.querySelector('.alert-ok')?.textContent.startsWith('Replay OK');",
    )
    .await;
    b.screenshot("execution-retried").await;
    assert_eq!(c.get(&retry).await.retry_of, failed);
}

/// A team's execution shows its children as a tree.
pub async fn open_a_team_execution(b: &mut Browser, c: &mut TestClient) {
    let member = |agent: &str, role: &str| pb::TeamMember {
        agent: agent.into(),
        role: role.into(),
        ..Default::default()
    };
    TeamServiceClient::new(c.channel.clone())
        .create_team(pb::CreateTeamRequest {
            name: "pair".into(),
            strategy: "sequential".into(),
            members: vec![member("writer", "draft"), member("flaky", "review")],
            ..Default::default()
        })
        .await
        .expect("create team");
    let id = c
        .start(pb::StartExecutionRequest {
            team: "pair".into(),
            prompt: "write and review".into(),
            ..Default::default()
        })
        .await;
    b.goto(&format!("{}#/executions/{id}", base(b).await)).await;
    wait_status(b, "completed").await;
    b.until(
        "both children in the tree",
        "return document.querySelectorAll('.tree li[data-child]').length === 2;",
    )
    .await;
    b.find(".out-child").await;
    b.screenshot("execution-team").await;

    // A team made in the form: two members in order, the second with a role.
    nav(b, "teams", "Teams").await;
    b.click("a[href='#/teams/new']").await;
    b.fill("#team-name", "duo").await;
    b.find("#member-agent-1")
        .await
        .select_by_value("writer")
        .await
        .expect("first member");
    b.click("#add-member").await;
    b.find("#member-agent-2")
        .await
        .select_by_value("flaky")
        .await
        .expect("second member");
    b.fill("#member-role-2", "review").await;
    b.screenshot("team-new").await;
    b.click("#save-team").await;
    b.until(
        "the new team's page",
        "const h = document.querySelector('main h1'); return h && h.textContent === 'duo';",
    )
    .await;
    b.screenshot("team").await;
    let duo = TeamServiceClient::new(c.channel.clone())
        .get_team(pb::GetTeamRequest {
            team: "duo".into(),
            ..Default::default()
        })
        .await
        .expect("the console created the team")
        .into_inner();
    let members: Vec<(&str, &str)> = duo
        .members
        .iter()
        .map(|m| (m.agent.as_str(), m.role.as_str()))
        .collect();
    assert_eq!(members, [("writer", ""), ("flaky", "review")]);
    // Run opens the start form with the team chosen.
    b.click("main .actions a.btn-primary").await;
    b.until(
        "the start form with the team",
        "return document.querySelector('#start-target')?.value === 'team:duo';",
    )
    .await;
    nav(b, "teams", "Teams").await;
    b.screenshot("teams").await;
}

/// The dashboard charts the runs by runtime; the workers page lists the in-process worker.
pub async fn open_the_dashboard_and_workers(b: &mut Browser) {
    nav(b, "dashboard", "Dashboard").await;
    b.find(".chart-grid svg").await;
    let figures = text(b, "#dashboard").await;
    assert!(
        figures.contains("echo"),
        "the echo runtime is charted: {figures}"
    );
    assert!(
        figures.contains("Executions by runtime and status"),
        "{figures}"
    );
    b.screenshot("dashboard").await;
    nav(b, "workers", "Workers").await;
    b.find("td.mono").await;
    assert!(text(b, "main table").await.contains("inproc"));
    b.screenshot("workers").await;
}

/// The namespace box switches every list and form to another namespace: the agents there are
/// not the default's, and an agent created there lands there.
pub async fn work_in_another_namespace(b: &mut Browser, c: &mut TestClient) {
    nav(b, "agents", "Agents").await;
    b.fill("#namespace", &format!("team-b{}", Key::Enter)).await;
    b.find("main .empty").await;
    b.click("main .empty a").await;
    b.fill("#agent-name", "writer").await;
    b.click("label[for=runtime-echo]").await;
    b.click("#save-agent").await;
    b.find("tr[data-agent=writer]").await;
    let get = |namespace: &str| pb::GetAgentRequest {
        namespace: namespace.into(),
        agent: "writer".into(),
    };
    let there = c
        .agents
        .get_agent(get("team-b"))
        .await
        .unwrap()
        .into_inner();
    let here = c.agents.get_agent(get("")).await.unwrap().into_inner();
    assert_eq!(there.namespace, "team-b");
    assert_ne!(
        there.id, here.id,
        "the default namespace's writer is another agent"
    );
    b.fill("#namespace", &format!("default{}", Key::Enter))
        .await;
    b.until(
        "the default namespace's agents",
        "return document.querySelectorAll('tr[data-agent]').length === 3;",
    )
    .await;
}

/// The navigation is made of real links a keyboard can reach and follow; after following one,
/// the next Tab goes into the new page; on a fresh page the skip link comes first; focus shows.
pub async fn keyboard_reaches_the_pages(b: &mut Browser) {
    let link = b.find("a[data-nav=executions]").await;
    link.send_keys(&String::from(char::from(Key::Enter)))
        .await
        .expect("press Enter on a link");
    b.until(
        "the executions page, reached by keyboard",
        "const h = document.querySelector('main h1'); return h && h.textContent === 'Executions';",
    )
    .await;
    press_tab(b).await;
    let inside = b
        .js(
            "return document.querySelector('main').contains(document.activeElement);",
            vec![],
        )
        .await;
    assert_eq!(
        inside,
        json!(true),
        "Tab after following a link goes into the page"
    );

    b.client.refresh().await.expect("reload the page");
    b.find("tr[data-execution]").await;
    press_tab(b).await;
    let focused = b
        .js(
            "const a = document.activeElement; \
             return [a.className, getComputedStyle(a).outlineStyle];",
            vec![],
        )
        .await;
    assert_eq!(
        focused[0],
        json!("skip"),
        "the first Tab stop is the skip link"
    );
    assert_ne!(focused[1], json!("none"), "the focused link is outlined");

    // The executions list refreshes itself; a row link the keyboard is on keeps the focus.
    nav(b, "executions", "Executions").await;
    b.find("tr[data-execution] a").await;
    let key = b
        .js(
            "const a = document.querySelector('tr[data-execution] a'); a.focus(); \
             window.__live = document.querySelector('.live').textContent; return a.dataset.key;",
            vec![],
        )
        .await;
    b.until(
        "the list to refresh",
        "return document.querySelector('.live').textContent !== window.__live;",
    )
    .await;
    let still = b
        .js("return document.activeElement.dataset.key ?? null;", vec![])
        .await;
    assert_eq!(
        still, key,
        "the focused row link keeps the focus through a refresh"
    );
}

/// Presses Tab where the keyboard focus is.
async fn press_tab(b: &Browser) {
    b.client
        .active_element()
        .await
        .expect("the focused element")
        .send_keys(&String::from(char::from(Key::Tab)))
        .await
        .expect("press Tab");
}

/// On a phone's screen every page fits its width (no sideways scrolling).
pub async fn on_a_phone(b: &mut Browser, url: &str) {
    b.resize(390, 844).await;
    let mut execution = Value::Null;
    for (page, name) in [
        ("#/executions", "phone-executions"),
        ("#/agents/new", "phone-agent-new"),
        ("#/dashboard", "phone-dashboard"),
    ] {
        b.goto(&format!("{url}/{page}")).await;
        b.find("main h1").await;
        b.find("main .card, main table, main .empty").await;
        let overflow = b
            .js(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await;
        assert_eq!(overflow, json!(0), "{page} fits a phone's width");
        b.screenshot(name).await;
        if name == "phone-executions" {
            execution = b
                .js(
                    "return document.querySelector('tr[data-status=FAILED] a')?.getAttribute('href');",
                    vec![],
                )
                .await;
        }
    }
    let href = execution.as_str().expect("a failed execution in the list");
    b.goto(&format!("{url}/{href}")).await;
    b.find(".gantt").await;
    let overflow = b
        .js(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await;
    assert_eq!(overflow, json!(0), "an execution fits a phone's width");
    b.screenshot("phone-execution").await;
    b.resize(1366, 900).await;
}

/// The server's base URL, from the page's own location.
async fn base(b: &Browser) -> String {
    b.js("return location.origin + '/';", vec![])
        .await
        .as_str()
        .unwrap()
        .to_string()
}

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
