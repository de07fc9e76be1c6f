//! The person at the terminal: whether there is one to ask, and the lines they type.
//!
//! Stdin is read by one thread for the whole process, started at the first read, and every
//! reader (a conversation's next message, an approval's answer, `cairn run`'s "cancel?") takes
//! its lines from it. Two readers of stdin would each hold its lock in turn, so one of them
//! would wait for a line the other already took; and a read on the runtime's threads would stop
//! the output streaming while nobody types.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tokio::sync::{Mutex, mpsc};

/// Whether a person can be asked: stdin is a terminal, and so is stderr, where the questions go.
pub(super) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The next line typed (without its line end); `None` at the end of input.
pub(super) async fn read_line() -> Option<String> {
    static LINES: OnceLock<Mutex<mpsc::Receiver<String>>> = OnceLock::new();
    let lines = LINES.get_or_init(|| Mutex::new(read_stdin()));
    let line = lines.lock().await.recv().await?;
    Some(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The lines of stdin, read on a thread of their own; the channel ends with the input.
fn read_stdin() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}
