//! A gRPC client with the helpers tests use most.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn::api::pb;
use cairn::api::pb::agent_service_client::AgentServiceClient;
use cairn::api::pb::execution_service_client::ExecutionServiceClient;
use cairn::api::pb::worker_service_client::WorkerServiceClient;
use tonic::transport::Channel;

/// Clients of every service over one channel.
#[derive(Clone)]
pub struct TestClient {
    /// Agents.
    pub agents: AgentServiceClient<Channel>,
    /// Executions.
    pub executions: ExecutionServiceClient<Channel>,
    /// Workers.
    pub workers: WorkerServiceClient<Channel>,
    /// The channel, for other clients (health, reflection).
    pub channel: Channel,
}

/// What a subscriber saw: the chunks in order, and the closed execution.
#[derive(Debug, Clone)]
pub struct Watched {
    /// Every chunk received.
    pub chunks: Vec<pb::OutputChunk>,
    /// The execution as it closed.
    pub closed: pb::Execution,
}

impl Watched {
    /// The `text` of every text chunk, concatenated.
    pub fn text(&self) -> String {
        text_of(&self.chunks)
    }
}

/// The concatenated `text` of text chunks.
pub fn text_of(chunks: &[pb::OutputChunk]) -> String {
    chunks
        .iter()
        .filter(|c| c.kind == "text")
        .map(|c| {
            let data: serde_json::Value = serde_json::from_str(&c.data_json).unwrap();
            data["text"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// A history event with its payload parsed.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its seq.
    pub seq: u64,
    /// Its type.
    pub kind: String,
    /// Its payload.
    pub payload: serde_json::Value,
}

impl TestClient {
    /// Connects to `url`.
    pub async fn connect(url: &str) -> TestClient {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .expect("connect to the server");
        TestClient {
            agents: AgentServiceClient::new(channel.clone()),
            executions: ExecutionServiceClient::new(channel.clone()),
            workers: WorkerServiceClient::new(channel.clone()),
            channel,
        }
    }

    /// Creates an agent with `runtime` and `runtime_config`.
    pub async fn create_agent(
        &mut self,
        name: &str,
        runtime: &str,
        runtime_config: serde_json::Value,
    ) -> pb::Agent {
        self.agents
            .create_agent(pb::CreateAgentRequest {
                name: name.into(),
                runtime: runtime.into(),
                configuration_json: serde_json::json!({ "runtime_config": runtime_config })
                    .to_string(),
                ..Default::default()
            })
            .await
            .expect("create agent")
            .into_inner()
    }

    /// Creates an agent on the `default` runtime with `model_id` and `runtime_config`.
    pub async fn create_model_agent(
        &mut self,
        name: &str,
        model_id: &str,
        runtime_config: serde_json::Value,
    ) -> pb::Agent {
        self.agents
            .create_agent(pb::CreateAgentRequest {
                name: name.into(),
                runtime: "default".into(),
                model_id: model_id.into(),
                configuration_json: serde_json::json!({ "runtime_config": runtime_config })
                    .to_string(),
                ..Default::default()
            })
            .await
            .expect("create agent")
            .into_inner()
    }

    /// Starts `agent` with one prompt per turn and the given options; returns the id.
    pub async fn start(&mut self, request: pb::StartExecutionRequest) -> String {
        self.executions
            .start_execution(request)
            .await
            .expect("start execution")
            .into_inner()
            .execution_id
    }

    /// Starts `agent` with `prompt` and default options.
    pub async fn start_simple(&mut self, agent: &str, prompt: &str) -> String {
        self.start(start_request(agent, &[prompt])).await
    }

    /// Streams the output after `after_seq` until the execution closes (60 s at most).
    pub async fn watch(&mut self, id: &str, after_seq: u64) -> Watched {
        self.watch_within(id, after_seq, Duration::from_secs(60))
            .await
    }

    /// Opens `StreamExecution` after `after_seq` (superseded chunks left out, as readers see it).
    pub async fn output_stream(
        &mut self,
        id: &str,
        after_seq: u64,
    ) -> tonic::Streaming<pb::StreamExecutionResponse> {
        let request = pb::StreamExecutionRequest {
            id: id.into(),
            after_seq,
            include_superseded: false,
        };
        self.executions
            .stream_execution(request)
            .await
            .expect("stream")
            .into_inner()
    }

    /// Like `watch`, with a deadline.
    pub async fn watch_within(&mut self, id: &str, after_seq: u64, limit: Duration) -> Watched {
        use pb::stream_execution_response::Event;
        let mut stream = self.output_stream(id, after_seq).await;
        let mut chunks = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let message = tokio::time::timeout_at(deadline, stream.message())
                .await
                .unwrap_or_else(|_| panic!("execution {id} did not close within {limit:?}"))
                .expect("stream error")
                .expect("the stream ended before the execution closed");
            match message.event {
                Some(Event::Chunk(chunk)) => chunks.push(chunk),
                Some(Event::Closed(closed)) => return Watched { chunks, closed },
                Some(Event::Waiting(_)) => {}
                None => {}
            }
        }
    }

    /// The execution.
    pub async fn get(&mut self, id: &str) -> pb::Execution {
        self.executions
            .get_execution(pb::GetExecutionRequest { id: id.into() })
            .await
            .expect("get")
            .into_inner()
    }

    /// Its history.
    pub async fn history(&mut self, id: &str) -> Vec<Event> {
        self.executions
            .get_history(pb::GetHistoryRequest {
                id: id.into(),
                after_seq: 0,
            })
            .await
            .expect("history")
            .into_inner()
            .events
            .into_iter()
            .map(|e| Event {
                seq: e.seq,
                kind: e.r#type,
                payload: serde_json::from_str(&e.payload_json).unwrap(),
            })
            .collect()
    }

    /// Waits (polling GetExecution, 60 s at most) until `check` holds.
    pub async fn wait_until(
        &mut self,
        id: &str,
        what: &str,
        check: impl Fn(&pb::Execution) -> bool,
    ) -> pb::Execution {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let execution = self.get(id).await;
            if check(&execution) {
                return execution;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last seen: {execution:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A start request for `agent` with one turn per prompt.
pub fn start_request(agent: &str, prompts: &[&str]) -> pb::StartExecutionRequest {
    pb::StartExecutionRequest {
        agent: agent.into(),
        prompts: prompts.iter().map(|p| p.to_string()).collect(),
        labels: BTreeMap::<String, String>::new().into_iter().collect(),
        ..Default::default()
    }
}

/// A retry policy with short intervals for tests.
pub fn fast_retries(maximum_attempts: u32) -> pb::RetryPolicy {
    pb::RetryPolicy {
        initial_interval_ms: 50,
        backoff_coefficient: 2.0,
        maximum_interval_ms: 200,
        maximum_attempts,
        non_retryable_codes: vec![],
    }
}

/// Event types of a history, in order.
pub fn kinds(history: &[Event]) -> Vec<&str> {
    history.iter().map(|e| e.kind.as_str()).collect()
}

/// Asserts chunk seqs are exactly `first..first+n` in order: no gap, no duplicate.
pub fn assert_gapless(chunks: &[pb::OutputChunk], first: u64) {
    let seqs: Vec<u64> = chunks.iter().map(|c| c.seq).collect();
    let expected: Vec<u64> = (first..first + chunks.len() as u64).collect();
    assert_eq!(seqs, expected, "output seqs must be gapless and unique");
}

/// Polls as a test's own worker (`test-worker`, runtime `echo`), waiting up to 20 s for one task:
/// for tests that act as the worker over gRPC.
pub async fn poll_one(c: &mut TestClient) -> pb::Task {
    let request = pb::PollTasksRequest {
        worker_id: "test-worker".into(),
        runtimes: vec!["echo".into()],
        queue: String::new(),
        max_tasks: 1,
        wait_ms: 20_000,
        policy_json: String::new(),
    };
    let mut tasks = c
        .workers
        .poll_tasks(request)
        .await
        .expect("poll")
        .into_inner()
        .tasks;
    assert_eq!(tasks.len(), 1, "a task within the poll's wait");
    tasks.remove(0)
}

/// The lease a report about `task` carries.
pub fn lease_of(task: &pb::Task) -> pb::Lease {
    pb::Lease {
        task_id: task.task_id.clone(),
        attempt: task.attempt,
        lease_token: task.lease_token.clone(),
    }
}

/// A `text` chunk as a worker sends it.
pub fn text_chunk(text: &str) -> pb::ChunkIn {
    pb::ChunkIn {
        kind: "text".into(),
        data_json: serde_json::json!({ "text": text }).to_string(),
    }
}
