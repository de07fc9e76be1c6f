//! The `cairn` binary.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: a `perf` profile of the server under W3 spent ~19% of
/// its CPU in glibc's malloc and free (the server allocates and frees JSON values and protobuf
/// buffers on many threads). Built without transparent huge pages (the `no_thp` feature): with
/// them its peak RSS doubled.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    cairn::cli::main(cairn::cli::Cli::parse()).await
}
