//! The other pages: agents with the runtime selector, teams, the dashboard and workers, the
//! namespace box, the keyboard, and a phone's screen.

use cairn::api::pb;
use cairn::api::pb::team_service_client::TeamServiceClient;
use fantoccini::key::Key;
use serde_json::{Value, json};

use super::browser::Browser;
use super::common::TestClient;
use super::steps::{base, nav, press_tab, text, wait_status};

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
    b.dark(true).await;
    b.screenshot("dashboard-dark").await;
    b.dark(false).await;
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
        // writer, slow, flaky and asker.
        "return document.querySelectorAll('tr[data-agent]').length === 4;",
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

/// Every form control on the pages with forms has a label a screen reader announces (a
/// `<label>`, `aria-label` or `aria-labelledby`).
pub async fn every_control_has_a_label(b: &mut Browser) {
    let url = base(b).await;
    for page in [
        "#/executions?new=1",
        "#/agents/new",
        "#/teams/new",
        "#/dashboard",
    ] {
        b.goto(&format!("{url}{page}")).await;
        b.find("main h1").await;
        b.find("main form").await;
        let unlabelled = b
            .js(
                "return [...document.querySelectorAll('input, select, textarea')] \
                   .filter(c => c.type !== 'hidden' && !(c.labels && c.labels.length) \
                     && !c.getAttribute('aria-label') && !c.getAttribute('aria-labelledby')) \
                   .map(c => c.outerHTML.slice(0, 120));",
                vec![],
            )
            .await;
        assert_eq!(unlabelled, json!([]), "controls without a label on {page}");
    }
}

/// On a phone's screen every page fits its width (no sideways scrolling).
pub async fn on_a_phone(b: &mut Browser, url: &str) {
    b.resize(390, 844).await;
    let mut execution = Value::Null;
    for (page, name) in [
        ("#/executions", "phone-executions"),
        ("#/agents", "phone-agents"),
        ("#/agents/new", "phone-agent-new"),
        ("#/teams", "phone-teams"),
        ("#/workers", "phone-workers"),
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
    b.dark(true).await;
    b.screenshot("phone-execution-dark").await;
    b.dark(false).await;
    b.resize(1366, 900).await;
}
