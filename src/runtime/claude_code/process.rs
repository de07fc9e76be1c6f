//! One running CLI: its pipes, its stderr tail and its process group.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::group::ProcessGroup;

/// How much of the end of stderr is kept for error details.
const STDERR_TAIL_BYTES: usize = 4096;

/// The longest line of stdout kept: the CLI decides how long its lines are (a tool result holds
/// a whole file), and a line held whole must not grow the worker without bound. Far above
/// what a chunk may carry to the server.
pub(super) const MAX_LINE_BYTES: usize = 16 << 20;

/// A spawned `claude` process speaking stream-json on stdin and stdout.
#[derive(Debug)]
pub(super) struct CliProcess {
    /// Kills every process of the run when dropped. Declared first so that it drops first:
    /// the walk for tool processes needs the CLI still alive (see `group`).
    pub group: ProcessGroup,
    child: Child,
    /// `None` once closed: end of input tells the CLI to finish its work and exit.
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The bytes of a line read so far. Kept across calls so that `next_line` is cancel safe in
    /// `select!`: a read cut short resumes where it stopped.
    partial_line: Vec<u8>,
    /// Collects the last [`STDERR_TAIL_BYTES`] of stderr until it closes.
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl CliProcess {
    /// Spawns `command` with piped stdio, in a new process group.
    pub fn spawn(mut command: Command) -> io::Result<Self> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // Belt and braces with the group guard: tokio also kills (and reaps) the CLI itself.
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let group = ProcessGroup::new(child.id().expect("a just-spawned child has a pid"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = child.stderr.take().expect("stderr is piped");
        Ok(CliProcess {
            group,
            child,
            stdin,
            stdout,
            partial_line: Vec::new(),
            stderr: Some(tokio::spawn(tail(stderr))),
        })
    }

    /// The CLI's pid (also its process group id).
    pub fn pid(&self) -> i32 {
        self.group.id()
    }

    /// Writes one message as a line on stdin. Fails if stdin is closed or the CLI has gone.
    pub async fn send(&mut self, message: &Value) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "stdin is closed"))?;
        let mut line = message.to_string();
        line.push('\n');
        stdin.write_all(line.as_bytes()).await?;
        stdin.flush().await
    }

    /// Closes stdin; the CLI finishes the queued work and exits.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Whether stdin is still open.
    pub fn stdin_open(&self) -> bool {
        self.stdin.is_some()
    }

    /// The next line of stdout, without its newline; `None` at end of output. Bytes that are not
    /// UTF-8 are replaced rather than fatal: one bad line must not end the run. A line over
    /// [`MAX_LINE_BYTES`] is an `InvalidData` error (its bytes so far are dropped).
    pub async fn next_line(&mut self) -> io::Result<Option<String>> {
        loop {
            // `fill_buf` is cancel safe and what follows it does not wait, so a read cut short
            // in `select!` loses nothing.
            let available = self.stdout.fill_buf().await?;
            if available.is_empty() {
                if self.partial_line.is_empty() {
                    return Ok(None);
                }
                break;
            }
            let (take, complete) = match available.iter().position(|b| *b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            if self.partial_line.len() + take > MAX_LINE_BYTES + 1 {
                self.partial_line.clear();
                self.stdout.consume(take);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a line of the CLI's output is over {MAX_LINE_BYTES} bytes"),
                ));
            }
            self.partial_line.extend_from_slice(&available[..take]);
            self.stdout.consume(take);
            if complete {
                break;
            }
        }
        let line = String::from_utf8_lossy(&self.partial_line)
            .trim_end()
            .to_owned();
        self.partial_line.clear();
        Ok(Some(line))
    }

    /// Waits at most `limit` for the CLI to exit.
    pub async fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// The end of what the CLI wrote to stderr. Waits briefly for stderr to close, since a tool
    /// process that inherited it may keep it open after the CLI is gone.
    pub async fn stderr_tail(&mut self) -> String {
        let Some(task) = self.stderr.take() else {
            return String::new();
        };
        match tokio::time::timeout(Duration::from_secs(2), task).await {
            Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).trim().to_owned(),
            _ => String::new(),
        }
    }
}

/// Reads `stream` to its end, keeping only the last [`STDERR_TAIL_BYTES`].
async fn tail(mut stream: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > STDERR_TAIL_BYTES {
            kept.drain(..kept.len() - STDERR_TAIL_BYTES);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_longer_than_the_bound_is_an_error_not_a_bigger_buffer() {
        let mut command = Command::new("sh");
        let script = format!(
            "echo short; head -c {} /dev/zero | tr '\\0' x; echo",
            MAX_LINE_BYTES + 10
        );
        command.args(["-c", &script]);
        let mut process = CliProcess::spawn(command).unwrap();
        assert_eq!(process.next_line().await.unwrap().as_deref(), Some("short"));
        let error = process.next_line().await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(process.partial_line.capacity() <= 2 * MAX_LINE_BYTES + 1);
    }
}
