//! Progress on stderr for work that lasts: a spinner or a bar (indicatif) that
//! appears only once the work has taken a second, only where stderr is a terminal
//! (indicatif draws nothing otherwise), and never with `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// How long work runs before its progress is shown.
const DELAY: Duration = Duration::from_secs(1);

/// One piece of work's progress; cleared when dropped.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A spinner with `message` and the elapsed time, for work of unknown length.
    pub fn spinner(message: impl Into<String>, quiet: bool) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        Self::reveal_later(&bar, quiet);
        Progress { bar }
    }

    /// A bar over `len` steps with `message`.
    pub fn bar(len: usize, message: impl Into<String>, quiet: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, {eta} left)")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.into());
        Self::reveal_later(&bar, quiet);
        Progress { bar }
    }

    /// Shows `bar` on stderr after [`DELAY`], unless it is finished by then, stderr is
    /// not a terminal, or `quiet`.
    fn reveal_later(bar: &ProgressBar, quiet: bool) {
        if quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = bar.clone();
        std::thread::spawn(move || {
            let step = Duration::from_millis(50);
            let mut waited = Duration::ZERO;
            while waited < DELAY {
                if bar.is_finished() {
                    return;
                }
                std::thread::sleep(step);
                waited += step;
            }
            if !bar.is_finished() {
                bar.set_draw_target(ProgressDrawTarget::stderr());
                bar.enable_steady_tick(Duration::from_millis(120));
            }
        });
    }

    /// A handle that can update the message from a callback.
    pub fn handle(&self) -> ProgressBar {
        self.bar.clone()
    }

    /// One more step done.
    pub fn step(&self) {
        self.bar.inc(1);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
