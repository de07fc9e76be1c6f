//! `cairn bench`: throughput and latency workloads W1-W3 (filled in below).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(super) struct BenchArgs {}

pub(super) async fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cairn bench is not built yet")
}
