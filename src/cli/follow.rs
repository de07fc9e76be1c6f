//! Printing an execution's output as it streams, and carrying on when the stream breaks.
//!
//! `cairn run` and `cairn exec watch` follow through [`watch`]: when the stream breaks for a
//! transport reason (the server stopped, was killed, or refuses connections while it restarts)
//! they reconnect with back-off, to the next `--server` URL when several were given, and resume
//! after the last chunk they printed, so every chunk is printed once. They give up after
//! `--reconnect-for` seconds without getting anywhere.

use std::io::Write;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;

use super::client::{Client, Servers, is_transport, status_error};
use super::output::{Output, cut};
use super::prompter::Prompter;
use super::spinner::Spinner;
use crate::api::pb;

/// What a follow does on a terminal besides printing the output.
#[derive(Default, Clone, Copy)]
pub(super) struct Tty<'a> {
    /// A progress line, retired before the first chunk is printed.
    pub spinner: Option<&'a Spinner>,
    /// Asks the person about each approval the execution waits for; without one, the ask is
    /// printed with the commands that answer it.
    pub prompter: Option<&'a Prompter>,
}

/// Why one stream stopped before the execution closed.
enum Stop {
    /// The connection or the server went away: worth reconnecting.
    Broken(String),
    /// Anything else (no such execution, bad request): final.
    Fatal(anyhow::Error),
}

fn stop(status: tonic::Status) -> Stop {
    if is_transport(&status) {
        Stop::Broken(format!("{} ({:?})", status.message(), status.code()))
    } else {
        Stop::Fatal(status_error(status))
    }
}

/// Follows `id` after `after_seq` on `client`, printing every chunk once, reconnecting through
/// `servers` when the stream breaks; returns the closed execution. When the execution waits for
/// a person, it says what for (and how to answer, or asks through `tty`'s prompter) and carries on.
pub(super) async fn watch(
    servers: &Servers,
    client: Client,
    out: &Output,
    id: &str,
    after_seq: u64,
    raw: bool,
    tty: Tty<'_>,
) -> anyhow::Result<pb::Execution> {
    let until = Until {
        raw,
        ..Default::default()
    };
    match watch_until(servers, client, out, id, after_seq, until, tty).await? {
        (Followed::Closed(closed), _) => Ok(closed),
        (Followed::Waiting(_), _) => unreachable!("a watch that does not stop on a wait"),
    }
}

/// Where [`watch_until`] stops besides the close.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Until {
    /// Print superseded chunks too.
    pub raw: bool,
    /// Stop at a wait: for an approval asked after this history length, or (see `turns`) for
    /// a conversation's next message.
    pub waiting_after: Option<u64>,
    /// With `waiting_after`: stop at a wait for input only once this many turns completed.
    pub turns: u32,
}

/// How a followed stream ended.
pub(super) enum Followed {
    /// The execution closed.
    Closed(pb::Execution),
    /// It waits (see [`Until::waiting_after`]).
    Waiting(pb::Execution),
}

/// [`watch`], also stopping at a wait when `until` says so; returns how it ended and the last
/// seq printed (where the next follow resumes).
pub(super) async fn watch_until(
    servers: &Servers,
    client: Client,
    out: &Output,
    id: &str,
    after_seq: u64,
    until: Until,
    tty: Tty<'_>,
) -> anyhow::Result<(Followed, u64)> {
    let mut printer = Printer::new(out, tty, after_seq);
    printer.raw = until.raw;
    printer.waiting_after = until.waiting_after;
    printer.turns = until.turns;
    let mut client = Some(client);
    let mut index = 0;
    let mut backoff = fresh_backoff();
    // When the current run of failures began; reset by any progress.
    let mut failing_since: Option<(Instant, u64)> = None;
    loop {
        let stopped = match client.take() {
            Some(mut c) => stream_once(&mut c, id, &mut printer).await,
            None => match servers.connect(index).await {
                Ok((i, mut c)) => {
                    index = i;
                    stream_once(&mut c, id, &mut printer).await
                }
                // The root cause (e.g. "Connection refused") says enough on a retry line.
                Err(e) => Err(Stop::Broken(e.root_cause().to_string())),
            },
        };
        let reason = match stopped {
            Ok(ended) => return Ok((ended, printer.last_seq)),
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Broken(reason)) => reason,
        };
        printer.broken = true;
        let since = match failing_since {
            Some((since, seq)) if seq == printer.last_seq => since,
            _ => {
                backoff = fresh_backoff();
                let now = Instant::now();
                failing_since = Some((now, printer.last_seq));
                now
            }
        };
        if since.elapsed() >= servers.give_up_after {
            anyhow::bail!(
                "gave up on execution {id} after {} s without reaching a server: {reason}; resume with `cairn exec watch {id} --after-seq {}`",
                servers.give_up_after.as_secs(),
                printer.last_seq
            );
        }
        // Several servers: try the next one first.
        index = (index + 1) % servers.urls.len().max(1);
        eprintln!(
            "{}",
            out.paint(
                "2",
                &format!(
                    "[stream broke: {}; reconnecting to {} after seq {}]",
                    cut(&reason, 160),
                    servers.urls.get(index).map_or("", String::as_str),
                    printer.last_seq
                )
            )
        );
        tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(2))).await;
    }
}

/// Back-off between reconnections: from 100 ms, doubling, at most 2 s, for as long as it takes.
fn fresh_backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Streams output to the terminal until the execution closes, on one connection, without
/// reconnecting; returns the closed execution.
pub(super) async fn follow(
    client: &mut Client,
    out: &Output,
    id: &str,
    after_seq: u64,
    spinner: Option<&Spinner>,
) -> anyhow::Result<pb::Execution> {
    let tty = Tty {
        spinner,
        prompter: None,
    };
    let mut printer = Printer::new(out, tty, after_seq);
    match stream_once(client, id, &mut printer).await {
        Ok(Followed::Closed(closed) | Followed::Waiting(closed)) => Ok(closed),
        Err(Stop::Fatal(e)) => Err(e),
        Err(Stop::Broken(reason)) => anyhow::bail!(
            "{reason}; resume with `cairn exec watch {id} --after-seq {}`",
            printer.last_seq
        ),
    }
}

/// One stream, from the last printed seq on, until it closes or breaks.
async fn stream_once(
    client: &mut Client,
    id: &str,
    printer: &mut Printer<'_>,
) -> Result<Followed, Stop> {
    use pb::stream_execution_response::Event;
    let mut stream = client
        .executions
        .stream_execution(pb::StreamExecutionRequest {
            id: id.to_string(),
            after_seq: printer.last_seq,
            include_superseded: printer.raw,
        })
        .await
        .map_err(stop)?
        .into_inner();
    while let Some(message) = stream.message().await.map_err(stop)? {
        printer.resumed();
        match message.event {
            Some(Event::Chunk(chunk)) => printer.chunk(&chunk),
            Some(Event::Closed(execution)) => {
                printer.close();
                return Ok(Followed::Closed(execution));
            }
            Some(Event::Waiting(execution)) => {
                let stop = printer.waiting_after.is_some_and(|after| {
                    match execution.waiting_for.as_str() {
                        "input" => execution.turns >= printer.turns,
                        _ => execution.history_length > after,
                    }
                });
                if stop {
                    printer.close();
                    return Ok(Followed::Waiting(execution));
                }
                if printer.waiting_after.is_none() {
                    printer.waiting(&execution);
                }
            }
            None => {}
        }
    }
    Err(Stop::Broken(format!(
        "the server ended the stream before execution {id} closed"
    )))
}

/// Prints chunks as text (or JSON lines), remembering the last seq printed.
struct Printer<'a> {
    out: &'a Output,
    tty: Tty<'a>,
    last_seq: u64,
    at_line_start: bool,
    child: String,
    reused_from: String,
    /// Print superseded chunks too (`cairn exec watch --raw`).
    raw: bool,
    /// Stop at a wait (see [`Until`]).
    waiting_after: Option<u64>,
    /// Turns completed before a wait for input stops the follow (see [`Until`]).
    turns: u32,
    /// The activity of the last chunk printed: in a conversation each turn's answer starts on
    /// a line of its own.
    activity: String,
    /// A stream broke since the last message: the next one says that the stream resumed.
    broken: bool,
}

impl<'a> Printer<'a> {
    fn new(out: &'a Output, tty: Tty<'a>, after_seq: u64) -> Self {
        Printer {
            out,
            tty,
            last_seq: after_seq,
            at_line_start: true,
            child: String::new(),
            reused_from: String::new(),
            raw: false,
            waiting_after: None,
            turns: 0,
            activity: String::new(),
            broken: false,
        }
    }

    /// After "stream broke" lines, says that a stream delivers again (and from where), before
    /// what it delivers: a wait announced again, or the next chunk.
    fn resumed(&mut self) {
        if std::mem::take(&mut self.broken) && !self.out.json {
            let note = format!("[stream resumed after seq {}]", self.last_seq);
            eprintln!("{}", self.out.paint("2", &note));
        }
    }

    /// Says on stderr what the execution waits for, and how to answer; an approval goes to the
    /// prompter, if there is one, which asks about it.
    fn waiting(&mut self, execution: &pb::Execution) {
        if self.out.json {
            self.out.print_json(execution);
            return;
        }
        self.close();
        self.at_line_start = true;
        if let Some(prompter) = self.tty.prompter
            && execution.waiting_for == "approval"
            && prompter.offer(execution)
        {
            return;
        }
        for line in super::ask::waiting_lines(execution) {
            eprintln!("{}", self.out.paint("33", &line));
        }
    }

    fn chunk(&mut self, chunk: &pb::OutputChunk) {
        // A resumed stream starts after the last seq printed; never print one twice.
        if chunk.seq <= self.last_seq {
            return;
        }
        self.last_seq = chunk.seq;
        if let Some(spinner) = self.tty.spinner {
            spinner.retire();
        }
        let out = self.out;
        if out.json {
            out.print_json(chunk);
            return;
        }
        let mut stdout = std::io::stdout();
        // A retry's stream starts with the output it reused; say so on stderr, so that stdout
        // stays the text itself.
        if chunk.reused_from != self.reused_from {
            let _ = stdout.flush();
            let note = match chunk.reused_from.as_str() {
                "" => "[output of this execution]".to_string(),
                from => format!("[output reused from execution {from}]"),
            };
            eprintln!("{}", out.paint("2", &note));
            self.reused_from = chunk.reused_from.clone();
        }
        if self.waiting_after.is_some() && chunk.activity_id != self.activity {
            if !self.at_line_start {
                println!();
                self.at_line_start = true;
            }
            self.activity = chunk.activity_id.clone();
        }
        // A team's stream interleaves its children: say whose output follows.
        if chunk.child_key != self.child {
            self.child = chunk.child_key.clone();
            if !self.at_line_start {
                println!();
            }
            println!("{}", out.paint("1;35", &format!("── {} ──", self.child)));
            self.at_line_start = true;
        }
        let data: serde_json::Value = serde_json::from_str(&chunk.data_json).unwrap_or_default();
        match (
            chunk.kind.as_str(),
            data.get("text").and_then(|t| t.as_str()),
        ) {
            ("text", Some(text)) => {
                print!("{text}");
                self.at_line_start = text.ends_with('\n');
            }
            (kind, _) => {
                if !self.at_line_start {
                    println!();
                }
                println!(
                    "{}",
                    out.paint("2", &format!("[{kind}] {}", cut(&data.to_string(), 160)))
                );
                self.at_line_start = true;
            }
        }
        let _ = stdout.flush();
    }

    fn close(&mut self) {
        if let Some(spinner) = self.tty.spinner {
            spinner.retire();
        }
        if !self.at_line_start && !self.out.json {
            println!();
        }
    }
}
