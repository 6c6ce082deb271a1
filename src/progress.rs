//! Progress of long operator commands: a bar (count, rate, ETA) on standard error when it is a
//! terminal, and nothing at all otherwise, so pipes, files and tests never see bar bytes. Log
//! lines written while a bar is up are drawn above it, not through it.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Every bar of this process, drawn on standard error only when that is a terminal.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        MultiProgress::with_draw_target(target)
    })
}

/// Whether bars are drawn (standard error is a terminal). Work done only for a bar's sake, such
/// as counting rows for its total, is skipped otherwise.
pub fn visible() -> bool {
    !bars().is_hidden()
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants of this file: a bad one is a programming error, shown as a
    // plain counter rather than a crash.
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

const COUNTED: &str = "{msg} [{bar:30}] {human_pos}/{human_len} {unit} ({per_sec}, ETA {eta}) {elapsed}";
const UNCOUNTED: &str = "{spinner} {msg} {human_pos} {unit} ({per_sec}) {elapsed}";

/// One long step, shown as `what`: a bar once its total is known, a spinner before. Cleared
/// when finished or dropped (an error leaves no half bar behind its message).
pub struct Progress {
    bar: ProgressBar,
    unit: &'static str,
}

impl Progress {
    /// `what` counts `unit`s (`events`, `files`, …) towards `total` when it is known.
    pub fn start(what: &str, unit: &'static str, total: Option<u64>) -> Self {
        let bar = bars().add(ProgressBar::no_length());
        bar.set_message(what.to_owned());
        let p = Self { bar, unit };
        match total {
            Some(n) => p.total(n),
            None => {
                p.bar.set_style(style(&UNCOUNTED.replace("{unit}", unit)));
                p.bar.enable_steady_tick(Duration::from_millis(120));
            }
        }
        p
    }

    /// A step without a count (one statement): a spinner and the time it has taken.
    pub fn spinner(what: &str) -> Self {
        let bar = bars().add(ProgressBar::no_length());
        bar.set_message(what.to_owned());
        bar.set_style(style("{spinner} {msg} {elapsed}"));
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar, unit: "" }
    }

    /// The number of units the step will reach.
    pub fn total(&self, n: u64) {
        self.bar.set_style(style(&COUNTED.replace("{unit}", self.unit)));
        self.bar.set_length(n);
        self.bar.enable_steady_tick(Duration::from_millis(250));
    }

    /// Units done so far.
    pub fn at(&self, n: u64) {
        // Events appended after a total was taken may carry a count past it.
        if self.bar.length().is_some_and(|len| n > len) {
            self.bar.set_length(n);
        }
        self.bar.set_position(n);
    }

    /// `(done, total)` reports of a per-item loop.
    pub fn items(&self, done: u64, total: u64) {
        if self.bar.length() != Some(total) {
            self.total(total);
        }
        self.at(done);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        bars().remove(&self.bar);
    }
}

/// Standard error for log lines and messages: written above any visible bar.
pub struct Stderr;

impl Stderr {
    /// For `tracing_subscriber::fmt().with_writer(progress::Stderr::writer)`.
    pub fn writer() -> Self {
        Self
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        bars().suspend(|| std::io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        bars().suspend(|| std::io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
