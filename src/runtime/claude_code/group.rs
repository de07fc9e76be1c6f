//! The process group of one CLI run, and every tool process it started.
//!
//! The CLI runs in a process group of its own, so signalling that group reaches the CLI and
//! whatever stayed in it. Its Bash tool, though, starts each command in yet another process
//! group (seen with CLI 2.1.332: after a SIGKILL of the CLI, the tool's shell and its children
//! live on). So before signalling, this walks `/proc` for the CLI's descendants and signals
//! their groups too. The walk must happen while the CLI is alive: once it dies, its children are
//! re-parented and can no longer be told apart from anyone else's.

use std::collections::{BTreeSet, HashMap};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, getpgrp};

/// A guard over the process group led by the CLI. Dropping it SIGKILLs the group and the tool
/// groups below it, so a runtime future that the worker abandons leaves no process behind.
#[derive(Debug)]
pub(super) struct ProcessGroup {
    /// The CLI's pid, which is also the group id (it was spawned with `process_group(0)`).
    leader: Pid,
    /// Cleared once the group has been killed, so `Drop` does not signal a recycled id.
    armed: bool,
    /// Tool groups seen while the CLI was alive, so they can still be killed after it exits
    /// (its children are then re-parented and no longer found by the walk).
    seen: BTreeSet<Pid>,
}

impl ProcessGroup {
    /// The guard of the group led by `leader`.
    pub fn new(leader: u32) -> Self {
        let leader = Pid::from_raw(i32::try_from(leader).expect("a pid fits in i32"));
        ProcessGroup {
            leader,
            armed: true,
            seen: BTreeSet::new(),
        }
    }

    /// The process group id.
    pub fn id(&self) -> i32 {
        self.leader.as_raw()
    }

    /// Notes the groups of the CLI's current descendants, to kill them later.
    pub fn remember_descendants(&mut self) {
        self.seen.extend(descendant_groups(self.leader));
    }

    /// Sends `signal` to the CLI's group and to the groups of its descendants.
    pub fn signal_tree(&mut self, signal: Signal) {
        if !self.armed {
            return;
        }
        self.remember_descendants();
        for group in &self.seen {
            let _ = killpg(*group, signal);
        }
        let _ = killpg(self.leader, signal);
    }

    /// SIGKILLs the CLI's group and its descendants' groups, once.
    ///
    /// The CLI's group is stopped first, so the CLI cannot start a new tool between the walk of
    /// `/proc` and the kill.
    pub fn kill_tree(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        let _ = killpg(self.leader, Signal::SIGSTOP);
        self.remember_descendants();
        for group in &self.seen {
            let _ = killpg(*group, Signal::SIGKILL);
        }
        let _ = killpg(self.leader, Signal::SIGKILL);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill_tree();
    }
}

/// The process groups of every live descendant of `root`, other than root's own group and the
/// worker's group (which must never be signalled).
fn descendant_groups(root: Pid) -> BTreeSet<Pid> {
    let processes = read_process_table();
    let mut children: HashMap<i32, Vec<(i32, i32)>> = HashMap::new();
    for process in &processes {
        children
            .entry(process.ppid)
            .or_default()
            .push((process.pid, process.pgid));
    }
    let own = getpgrp().as_raw();
    let mut groups = BTreeSet::new();
    let mut pending = vec![root.as_raw()];
    while let Some(pid) = pending.pop() {
        for &(child, pgid) in children.get(&pid).into_iter().flatten() {
            if pgid > 1 && pgid != own && pgid != root.as_raw() {
                groups.insert(Pid::from_raw(pgid));
            }
            pending.push(child);
        }
    }
    groups
}

/// One row of the process table.
struct ProcessEntry {
    pid: i32,
    ppid: i32,
    pgid: i32,
}

/// Every process in `/proc`, skipping entries that vanish while being read.
fn read_process_table() -> Vec<ProcessEntry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_stat(pid, &stat)
        })
        .collect()
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid pgrp ...`. The command name may contain
/// spaces and parentheses, so the fields are read after the last `)`.
fn parse_stat(pid: i32, stat: &str) -> Option<ProcessEntry> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    // A zombie has already exited; only its parent's wait is missing.
    if state == "Z" || state == "X" {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(ProcessEntry { pid, ppid, pgid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let entry = parse_stat(42, "42 (my (odd) cmd) S 7 42 42 0 -1").expect("parses");
        assert_eq!((entry.pid, entry.ppid, entry.pgid), (42, 7, 42));
        assert!(parse_stat(43, "43 (gone) Z 7 43 43 0").is_none());
        assert!(parse_stat(44, "garbage").is_none());
    }

    #[tokio::test]
    async fn a_grandchild_in_its_own_group_is_killed_with_the_tree() {
        // sh leads a group; the python below it moves to a group of its own, as the Bash tool's
        // shell does, and would survive a kill of sh's group alone.
        let mut leader = tokio::process::Command::new("sh")
            .args([
                "-c",
                "python3 -c 'import os, time; os.setpgid(0, 0); time.sleep(60)' & wait",
            ])
            .process_group(0)
            .spawn()
            .expect("sh starts");
        let mut group = ProcessGroup::new(leader.id().expect("running"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let grandchild_group = loop {
            if let Some(group) = descendant_groups(group.leader).into_iter().next() {
                break group;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "python never moved to its own group"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        group.kill_tree();
        leader.wait().await.expect("sh is reaped");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while read_process_table()
            .iter()
            .any(|p| p.pgid == grandchild_group.as_raw())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchild's group survived"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
