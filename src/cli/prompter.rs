//! Answering approvals on the terminal while `cairn run` or `cairn exec watch` streams: the
//! stream hands each wait for an approval to a task of its own, which asks the person and sends
//! the answer while the output goes on printing.

use std::collections::HashSet;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use super::ask::{offer, pending};
use super::client::Servers;
use super::output::Output;
use super::terminal;
use crate::api::pb;

/// The task that asks about approvals; dropping it stops the asking.
pub(super) struct Prompter {
    /// Waits for an approval, as the stream announced them (the same one again after a
    /// reconnect, or after anything else about the execution changed).
    asks: mpsc::UnboundedSender<pb::Execution>,
    task: JoinHandle<()>,
}

impl Prompter {
    /// Starts asking when `wanted` and a person can be asked (stdin and stderr are terminals,
    /// and the output is not `--json`); `None` otherwise, and the stream only prints each ask
    /// with the commands that answer it.
    pub(super) fn start(servers: &Servers, out: &Output, wanted: bool) -> Option<Prompter> {
        if !wanted || out.json || !terminal::interactive() {
            return None;
        }
        let (asks, received) = mpsc::unbounded_channel();
        let task = tokio::spawn(offer_each(servers.clone(), *out, received));
        Some(Prompter { asks, task })
    }

    /// Hands over a wait for approvals; returns at once, so the stream goes on. False once the
    /// asking stopped: the stream then prints the ask instead.
    pub(super) fn offer(&self, execution: &pb::Execution) -> bool {
        self.asks.send(execution.clone()).is_ok()
    }

    /// A handle that stops the asking (`cairn run`'s Ctrl-C asks its own question on stdin).
    pub(super) fn stopper(&self) -> AbortHandle {
        self.task.abort_handle()
    }
}

impl Drop for Prompter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Offers each approval once: a stream that resumed after a break announces the wait again, and
/// an approval asked about (answered or skipped) is not asked about twice.
async fn offer_each(
    servers: Servers,
    out: Output,
    mut asks: mpsc::UnboundedReceiver<pb::Execution>,
) {
    let mut offered = HashSet::new();
    while let Some(execution) = asks.recv().await {
        for approval in pending(&execution) {
            if !offered.insert(approval.approval_id.clone()) {
                continue;
            }
            if let Err(e) = offer(&servers, &out, &execution.id, approval).await {
                let note = format!(
                    "[could not answer approval {}: {e:#}; answer with `cairn exec approve` or `cairn exec deny`]",
                    approval.approval_id
                );
                eprintln!("{}", out.paint("31", &note));
            }
        }
    }
}
