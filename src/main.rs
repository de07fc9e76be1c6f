//! The `cairn` binary.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    cairn::cli::main(cairn::cli::Cli::parse()).await
}
