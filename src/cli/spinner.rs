//! A progress line on stderr for commands that wait on an execution.

/// A one-line progress display on stderr that the output stream retires, race-free, before it
/// prints the first chunk.
#[derive(Clone)]
pub(super) struct Spinner(std::sync::Arc<std::sync::Mutex<(bool, bool)>>);

impl Spinner {
    /// A spinner that has drawn nothing.
    pub(super) fn new() -> Self {
        Spinner(Default::default())
    }

    /// Draws frame `tick` with `text`; false once retired.
    pub(super) fn draw(&self, tick: usize, text: &str) -> bool {
        const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
        let mut state = self.0.lock().expect("never poisoned");
        let (retired, drawn) = &mut *state;
        if *retired {
            return false;
        }
        eprint!("\r\x1b[2K{} {text}", FRAMES[tick % FRAMES.len()]);
        *drawn = true;
        true
    }

    /// Erases the line and stops drawing.
    pub(super) fn retire(&self) {
        let mut state = self.0.lock().expect("never poisoned");
        if !state.0 && state.1 {
            eprint!("\r\x1b[2K");
        }
        state.0 = true;
    }
}
