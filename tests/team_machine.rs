//! The team machine, pure: each strategy driven input by input (asserting the commands it
//! emits), then recorded as JSON under `tests/histories/team/` and replayed, so a change that
//! breaks team executions already in a database fails here. Record new scenarios with
//! `CAIRN_RECORD_HISTORIES=1 cargo test --test team_machine`; existing files are never rewritten.

use std::path::{Path, PathBuf};

use cairn::domain::{
    AgentSpec, ExecutionStatus, Failure, HistoryEvent, MemberSlot, MemberSpec, RetryPolicy,
    ReusedChild, TeamSpec, TeamStrategy, Timeouts, Usage,
};
use cairn::machine::{ExecutionState, MachineContext, ReplayError, replay_any, step_any};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

const EXECUTION: Uuid = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0042);

fn ctx() -> MachineContext {
    MachineContext {
        execution_id: EXECUTION,
    }
}

fn agent(name: &str, runtime: &str) -> MemberSpec {
    MemberSpec {
        agent: AgentSpec {
            id: Uuid::from_u128(name.len() as u128),
            name: name.into(),
            runtime: runtime.into(),
            model_id: String::new(),
            configuration: json!({}),
        },
        role: format!("the {name}"),
    }
}

fn team(strategy: TeamStrategy) -> TeamSpec {
    TeamSpec {
        id: Uuid::from_u128(7),
        name: "crew".into(),
        strategy,
        members: vec![
            agent("scout", "echo"),
            agent("analyst", "default"),
            agent("coder", "claude_code"),
        ],
        aggregator: (strategy == TeamStrategy::Parallel).then(|| agent("editor", "echo")),
        leader: (strategy == TeamStrategy::Supervisor).then(|| agent("boss", "default")),
        continue_on_failure: false,
        max_rounds: 3,
        max_parallel: 2,
    }
}

fn started(team: TeamSpec) -> HistoryEvent {
    HistoryEvent::TeamStarted {
        team: Box::new(team),
        prompt: "build it".into(),
        retry_policy: RetryPolicy::default(),
        timeouts: Timeouts::default(),
        reused: vec![],
        queue: "default".into(),
        execution_timeout_ms: None,
    }
}

fn completed(key: &str, text: &str) -> HistoryEvent {
    HistoryEvent::ChildClosed {
        key: key.into(),
        status: ExecutionStatus::Completed,
        result: Some(json!({ "text": text })),
        failure: None,
        usage: Usage {
            input_tokens: 1,
            output_tokens: 2,
            cost_usd: 0.0,
            tool_calls: 0,
        },
    }
}

/// A history under construction: inputs go in, the commands the machine answers with are
/// recorded after them, as the engine does.
struct Run {
    events: Vec<HistoryEvent>,
    state: Option<ExecutionState>,
}

impl Run {
    fn new() -> Self {
        Run {
            events: Vec::new(),
            state: None,
        }
    }

    /// Applies an input and returns the commands' types and child keys.
    fn input(&mut self, input: HistoryEvent) -> Vec<String> {
        let (state, commands) = step_any(ctx(), self.state.take(), &input).expect("a valid input");
        self.state = Some(state);
        self.events.push(input);
        let described = commands
            .iter()
            .map(|c| match c {
                HistoryEvent::ChildScheduled { key, .. } => format!("start {key}"),
                HistoryEvent::ChildCancelRequested { key } => format!("cancel {key}"),
                other => other.event_type().to_string(),
            })
            .collect();
        self.events.extend(commands);
        described
    }

    fn status(&self) -> ExecutionStatus {
        self.state.as_ref().unwrap().status()
    }

    fn prompt_of(&self, key: &str) -> String {
        self.events
            .iter()
            .find_map(|e| match e {
                HistoryEvent::ChildScheduled { key: k, prompt, .. } if k == key => {
                    Some(prompt.clone())
                }
                _ => None,
            })
            .unwrap()
    }
}

fn sequential() -> Run {
    let mut run = Run::new();
    assert_eq!(
        run.input(started(team(TeamStrategy::Sequential))),
        ["start 1-scout"]
    );
    assert_eq!(
        run.input(completed("1-scout", "found it")),
        ["start 2-analyst"]
    );
    assert!(
        run.prompt_of("2-analyst")
            .contains("The previous member (scout, the scout) answered:\nfound it")
    );
    assert_eq!(
        run.input(completed("2-analyst", "it is sound")),
        ["start 3-coder"]
    );
    assert_eq!(
        run.input(completed("3-coder", "shipped")),
        ["ExecutionCompleted"]
    );
    assert_eq!(run.status(), ExecutionStatus::Completed);
    run
}

fn parallel_with_aggregator() -> Run {
    let mut run = Run::new();
    // max_parallel 2: the third member waits for a slot.
    assert_eq!(
        run.input(started(team(TeamStrategy::Parallel))),
        ["start 1-scout", "start 2-analyst"]
    );
    assert_eq!(run.input(completed("2-analyst", "B")), ["start 3-coder"]);
    assert!(run.input(completed("1-scout", "A")).is_empty());
    assert_eq!(run.input(completed("3-coder", "C")), ["start aggregator"]);
    let prompt = run.prompt_of("aggregator");
    assert!(
        prompt.find("[1] scout").unwrap() < prompt.find("[2] analyst").unwrap(),
        "member order: {prompt}"
    );
    assert_eq!(
        run.input(completed("aggregator", "ABC")),
        ["ExecutionCompleted"]
    );
    run
}

fn supervisor() -> Run {
    let mut run = Run::new();
    assert_eq!(
        run.input(started(team(TeamStrategy::Supervisor))),
        ["start leader-1"]
    );
    assert_eq!(
        run.input(completed(
            "leader-1",
            r#"{"next":"scout","instruction":"look"}"#
        )),
        ["start step-1-scout"]
    );
    assert_eq!(run.prompt_of("step-1-scout"), "look");
    assert_eq!(
        run.input(completed("step-1-scout", "seen")),
        ["start leader-2"]
    );
    assert_eq!(
        run.input(completed("leader-2", "garbled")),
        ["start leader-3"],
        "an unparseable reply is retried"
    );
    assert_eq!(
        run.input(completed("leader-3", r#"{"answer":"done"}"#)),
        ["ExecutionCompleted"]
    );
    run
}

fn member_failure_cancels_the_rest() -> Run {
    let mut run = Run::new();
    assert_eq!(
        run.input(started(team(TeamStrategy::Parallel))),
        ["start 1-scout", "start 2-analyst"]
    );
    let failed = HistoryEvent::ChildClosed {
        key: "1-scout".into(),
        status: ExecutionStatus::Failed,
        result: None,
        failure: Some(Failure::new("tool_misconfigured", "no such tool", false)),
        usage: Usage::default(),
    };
    assert_eq!(run.input(failed), ["cancel 2-analyst"]);
    let canceled = HistoryEvent::ChildClosed {
        key: "2-analyst".into(),
        status: ExecutionStatus::Canceled,
        result: None,
        failure: None,
        usage: Usage::default(),
    };
    assert_eq!(
        run.input(canceled),
        ["ExecutionFailed"],
        "the team fails once no child runs"
    );
    run
}

fn canceled_mid_run() -> Run {
    let mut run = Run::new();
    run.input(started(team(TeamStrategy::Sequential)));
    assert_eq!(
        run.input(HistoryEvent::CancelRequested {
            reason: "stop".into()
        }),
        ["cancel 1-scout"]
    );
    let canceled = HistoryEvent::ChildClosed {
        key: "1-scout".into(),
        status: ExecutionStatus::Canceled,
        result: None,
        failure: None,
        usage: Usage::default(),
    };
    assert_eq!(run.input(canceled), ["ExecutionCanceled"]);
    run
}

fn retried_sequential_reuses_the_completed_prefix() -> Run {
    let mut run = Run::new();
    let HistoryEvent::TeamStarted {
        team,
        prompt,
        retry_policy,
        timeouts,
        ..
    } = started(team(TeamStrategy::Sequential))
    else {
        unreachable!()
    };
    let reused = vec![ReusedChild {
        key: "1-scout".into(),
        slot: MemberSlot::Member { index: 0 },
        prompt: "build it".into(),
        result: json!({ "text": "found it" }),
        execution_id: Uuid::from_u128(99),
    }];
    let retry = HistoryEvent::TeamStarted {
        team,
        prompt,
        retry_policy,
        timeouts,
        reused,
        queue: "default".into(),
        execution_timeout_ms: None,
    };
    assert_eq!(
        run.input(retry),
        ["start 2-analyst"],
        "the reused child is not run again"
    );
    assert!(
        run.prompt_of("2-analyst").contains("found it"),
        "its result is handed on"
    );
    assert_eq!(run.input(completed("2-analyst", "ok")), ["start 3-coder"]);
    assert_eq!(
        run.input(completed("3-coder", "done")),
        ["ExecutionCompleted"]
    );
    run
}

/// The team's `execution_timeout` passes with two children running: both are asked to stop and
/// the team fails at once, naming the limit, without waiting for them.
fn timed_out_mid_run() -> Run {
    let mut run = Run::new();
    let HistoryEvent::TeamStarted {
        team,
        prompt,
        retry_policy,
        timeouts,
        reused,
        queue,
        ..
    } = started(team(TeamStrategy::Parallel))
    else {
        unreachable!("started() is a TeamStarted")
    };
    let started = HistoryEvent::TeamStarted {
        team,
        prompt,
        retry_policy,
        timeouts,
        reused,
        queue,
        execution_timeout_ms: Some(60_000),
    };
    assert_eq!(run.input(started), ["start 1-scout", "start 2-analyst"]);
    assert_eq!(run.input(completed("1-scout", "A")), ["start 3-coder"]);
    assert_eq!(
        run.input(HistoryEvent::ExecutionTimedOut {
            execution_timeout_ms: 60_000
        }),
        ["cancel 2-analyst", "cancel 3-coder", "ExecutionFailed"]
    );
    assert_eq!(run.status(), ExecutionStatus::Failed);
    let Some(HistoryEvent::ExecutionFailed { failure }) = run.events.last() else {
        unreachable!("the last command closes the team")
    };
    assert_eq!(failure.code, "execution_timeout");
    run
}

fn scenarios() -> Vec<(&'static str, Run)> {
    vec![
        ("sequential", sequential()),
        ("parallel_with_aggregator", parallel_with_aggregator()),
        ("supervisor_with_a_retried_reply", supervisor()),
        (
            "member_failure_cancels_the_rest",
            member_failure_cancels_the_rest(),
        ),
        ("canceled_mid_run", canceled_mid_run()),
        (
            "retried_sequential_reuses_the_completed_prefix",
            retried_sequential_reuses_the_completed_prefix(),
        ),
        ("timed_out_mid_run", timed_out_mid_run()),
    ]
}

#[test]
fn every_strategy_emits_the_expected_commands_and_replays() {
    for (name, run) in scenarios() {
        let replayed = replay_any(ctx(), &run.events).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            replayed, run.state,
            "{name}: replay rebuilds the same state"
        );
    }
}

#[test]
fn a_changed_child_key_is_reported_at_its_seq() {
    let mut events = sequential().events;
    let seq = events
        .iter()
        .position(|e| matches!(e, HistoryEvent::ChildScheduled { key, .. } if key == "2-analyst"))
        .unwrap();
    if let HistoryEvent::ChildScheduled { key, .. } = &mut events[seq] {
        *key = "2-someone-else".into();
    }
    match replay_any(ctx(), &events) {
        Err(ReplayError::Nondeterminism(n)) => {
            assert_eq!(n.seq, seq as u64 + 1);
            assert!(
                n.expected.contains("2-analyst") && n.found.contains("2-someone-else"),
                "{n}"
            );
        }
        other => panic!("expected nondeterminism, got {other:?}"),
    }
}

#[test]
fn a_child_slot_that_names_no_member_is_refused() {
    let mut run = Run::new();
    run.input(started(team(TeamStrategy::Sequential)));
    let bogus = HistoryEvent::ChildScheduled {
        key: "x".into(),
        slot: MemberSlot::Member { index: 9 },
        prompt: String::new(),
    };
    assert!(step_any(ctx(), run.state.take(), &bogus).is_err());
}

#[derive(Debug, Serialize, Deserialize)]
struct Recorded {
    execution_id: Uuid,
    status: ExecutionStatus,
    events: Vec<Numbered>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Numbered {
    seq: u64,
    #[serde(flatten)]
    event: HistoryEvent,
}

fn directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories/team")
}

#[test]
fn every_recorded_team_history_replays() {
    let recording = std::env::var_os("CAIRN_RECORD_HISTORIES").is_some();
    for (name, run) in scenarios() {
        let path = directory().join(format!("{name}.json"));
        if !path.exists() {
            assert!(
                recording,
                "{} is missing: run with CAIRN_RECORD_HISTORIES=1 to record it",
                path.display()
            );
            let recorded = Recorded {
                execution_id: EXECUTION,
                status: run.status(),
                events: (1..)
                    .zip(run.events)
                    .map(|(seq, event)| Numbered { seq, event })
                    .collect(),
            };
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&recorded).unwrap() + "\n",
            )
            .unwrap();
        }
    }
    let mut replayed = 0;
    for entry in std::fs::read_dir(directory()).unwrap() {
        let path = entry.unwrap().path();
        let recorded: Recorded =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let events: Vec<HistoryEvent> = recorded.events.into_iter().map(|n| n.event).collect();
        let ctx = MachineContext {
            execution_id: recorded.execution_id,
        };
        let state = replay_any(ctx, &events).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            state.unwrap().status(),
            recorded.status,
            "{}",
            path.display()
        );
        replayed += 1;
    }
    assert!(replayed >= 5);
}
