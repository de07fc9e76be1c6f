//! One enum for a request to any RPC, so a table of hostile requests can name them all.

use cairn::api::pb;
use cairn::api::pb::team_service_client::TeamServiceClient;
use tonic::Status;

use crate::common::TestClient;

/// A request to one RPC of the client or the worker side.
#[derive(Clone)]
pub enum Call {
    CreateAgent(pb::CreateAgentRequest),
    GetAgent(pb::GetAgentRequest),
    ListAgents(pb::ListAgentsRequest),
    UpdateAgent(pb::UpdateAgentRequest),
    ArchiveAgent(pb::ArchiveAgentRequest),
    CreateTeam(pb::CreateTeamRequest),
    GetTeam(pb::GetTeamRequest),
    ListTeams(pb::ListTeamsRequest),
    UpdateTeam(pb::UpdateTeamRequest),
    ArchiveTeam(pb::ArchiveTeamRequest),
    Start(pb::StartExecutionRequest),
    Get(pb::GetExecutionRequest),
    List(pb::ListExecutionsRequest),
    Cancel(pb::CancelExecutionRequest),
    Stream(pb::StreamExecutionRequest),
    History(pb::GetHistoryRequest),
    Replay(pb::ReplayExecutionRequest),
    Retry(pb::RetryExecutionRequest),
    Stats(pb::GetStatsRequest),
    Delete(pb::DeleteExecutionRequest),
    Send(pb::SendMessageRequest),
    Close(pb::CloseExecutionRequest),
    Resolve(pb::ResolveApprovalRequest),
    Poll(pb::PollTasksRequest),
    Progress(pb::ReportProgressRequest),
    Complete(pb::CompleteTaskRequest),
    Fail(pb::FailTaskRequest),
    CancelTask(pb::CancelTaskRequest),
    Release(pb::ReleaseTaskRequest),
    Register(pb::RegisterRuntimesRequest),
    Deregister(pb::DeregisterWorkerRequest),
}

/// Sends `call`; the reply's content does not matter here, only whether it was refused.
pub async fn send(c: &mut TestClient, call: Call) -> Result<(), Status> {
    let mut teams = TeamServiceClient::new(c.channel.clone());
    let (a, e, w) = (&mut c.agents, &mut c.executions, &mut c.workers);
    match call {
        Call::CreateAgent(r) => a.create_agent(r).await.map(drop),
        Call::GetAgent(r) => a.get_agent(r).await.map(drop),
        Call::ListAgents(r) => a.list_agents(r).await.map(drop),
        Call::UpdateAgent(r) => a.update_agent(r).await.map(drop),
        Call::ArchiveAgent(r) => a.archive_agent(r).await.map(drop),
        Call::CreateTeam(r) => teams.create_team(r).await.map(drop),
        Call::GetTeam(r) => teams.get_team(r).await.map(drop),
        Call::ListTeams(r) => teams.list_teams(r).await.map(drop),
        Call::UpdateTeam(r) => teams.update_team(r).await.map(drop),
        Call::ArchiveTeam(r) => teams.archive_team(r).await.map(drop),
        Call::Start(r) => e.start_execution(r).await.map(drop),
        Call::Get(r) => e.get_execution(r).await.map(drop),
        Call::List(r) => e.list_executions(r).await.map(drop),
        Call::Cancel(r) => e.cancel_execution(r).await.map(drop),
        // A stream that opens is read to its first message, so a refusal sent on the stream
        // counts as well as one sent instead of it.
        Call::Stream(r) => {
            let mut stream = e.stream_execution(r).await?.into_inner();
            stream.message().await.map(drop)
        }
        Call::History(r) => e.get_history(r).await.map(drop),
        Call::Replay(r) => e.replay_execution(r).await.map(drop),
        Call::Retry(r) => e.retry_execution(r).await.map(drop),
        Call::Stats(r) => e.get_stats(r).await.map(drop),
        Call::Delete(r) => e.delete_execution(r).await.map(drop),
        Call::Send(r) => e.send_message(r).await.map(drop),
        Call::Close(r) => e.close_execution(r).await.map(drop),
        Call::Resolve(r) => e.resolve_approval(r).await.map(drop),
        Call::Poll(r) => w.poll_tasks(r).await.map(drop),
        Call::Progress(r) => w.report_progress(r).await.map(drop),
        Call::Complete(r) => w.complete_task(r).await.map(drop),
        Call::Fail(r) => w.fail_task(r).await.map(drop),
        Call::CancelTask(r) => w.cancel_task(r).await.map(drop),
        Call::Release(r) => w.release_task(r).await.map(drop),
        Call::Register(r) => w.register_runtimes(r).await.map(drop),
        Call::Deregister(r) => w.deregister_worker(r).await.map(drop),
    }
}
