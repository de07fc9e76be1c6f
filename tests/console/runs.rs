//! Runs from the console: start one and watch its output arrive, a broken stream resumed,
//! cancel, and fix-then-retry.

use cairn::api::pb;
use fantoccini::key::Key;
use serde_json::{Value, json};

use super::browser::Browser;
use super::common::TestClient;
use super::common::client::{fast_retries, kinds, start_request};
use super::steps::{base, current_execution, nav, new_run, text, wait_status};

/// New run → the agent, a prompt → the execution page, where the output arrives chunk by chunk
/// (a MutationObserver records every text the output box showed).
pub async fn run_it_and_watch_the_output_arrive(b: &mut Browser, c: &mut TestClient) {
    new_run(b, "agent:writer").await;
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
    new_run(b, "agent:writer").await;
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
    // The filter redrew the page in place; the keyboard is still in the field it typed in.
    b.until(
        "the focus back in the label filter",
        "return document.activeElement && document.activeElement.id === 'filter-label';",
    )
    .await;
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
    // The first press asks again; only the second cancels.
    assert_eq!(text(b, "#cancel").await, "Confirm cancel");
    b.screenshot("execution-confirm-cancel").await;
    assert_eq!(c.get(&id).await.status, "RUNNING");
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

/// A chat from the console: a run kept open waits for the next message, which the message box
/// sends (its answer streams into the same output), and the close button completes it.
pub async fn chat_from_the_console(b: &mut Browser, c: &mut TestClient) {
    new_run(b, "agent:writer").await;
    b.fill("#start-prompt", "hello there").await;
    b.click("#start-interactive").await;
    b.click("#start-panel button[type=submit]").await;
    let id = current_execution(b).await;
    wait_status(b, "waiting").await;
    b.find("#message-text").await;
    b.fill("#message-text", "second question").await;
    b.click("#send-message").await;
    b.until(
        "the answer to the message in the output",
        "const t = [...document.querySelectorAll('#output .out-text')].map(e => e.textContent).join(''); \
         return t.includes('hello there') && t.includes('second question');",
    )
    .await;
    wait_status(b, "waiting").await;
    assert_eq!(
        b.js(
            "return [...document.querySelectorAll('#output .out-prompt')].map(e => e.textContent);",
            vec![],
        )
        .await,
        json!(["› hello there", "› second question"]),
        "each turn's output under the message it answers"
    );
    b.screenshot("execution-conversation").await;
    b.click("#close-conversation").await;
    wait_status(b, "completed").await;
    let messages: Vec<Value> = c
        .history(&id)
        .await
        .into_iter()
        .filter(|e| e.kind == "MessageReceived")
        .map(|e| e.payload)
        .collect();
    assert_eq!(messages.len(), 1, "one message sent: {messages:?}");
    assert_eq!(messages[0]["text"], "second question");
    assert_eq!(c.get(&id).await.status, "COMPLETED");
}

/// Approvals from the console: a turn that asks before a tool runs waits with the ask shown;
/// Allow answers it and the turn goes on; Deny sends the person's reason to the agent.
pub async fn answer_approvals(b: &mut Browser, c: &mut TestClient) {
    c.create_agent("asker", "echo", json!({ "ask_tool": "Bash" }))
        .await;
    let origin = base(b).await;
    for (allow, reason) in [(true, ""), (false, "not on a Sunday")] {
        let id = c.start(start_request("asker", &["go on"])).await;
        b.goto(&format!("{origin}#/executions/{id}")).await;
        wait_status(b, "waiting").await;
        b.find("[data-approval] [data-approve]").await;
        assert!(
            text(b, "[data-approval] .approval-head")
                .await
                .contains("Bash"),
            "the ask names its tool"
        );
        if allow {
            b.screenshot("execution-approval").await;
            b.click("[data-approve]").await;
        } else {
            b.fill("[data-approval] input", reason).await;
            b.click("[data-deny]").await;
        }
        wait_status(b, "completed").await;
        let answers: Vec<Value> = c
            .history(&id)
            .await
            .into_iter()
            .filter(|e| e.kind == "ApprovalResolved")
            .map(|e| e.payload)
            .collect();
        assert_eq!(answers.len(), 1, "answered once: {answers:?}");
        let decision = &answers[0]["decision"];
        if allow {
            assert_eq!(decision["decision"], "allow", "{decision}");
        } else {
            assert_eq!(decision["decision"], "deny", "{decision}");
            assert_eq!(decision["message"], reason, "{decision}");
        }
    }
}
