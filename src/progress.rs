//! Progress bars on stderr, shared by the commands: never drawn when stderr is not a
//! terminal or `--quiet` is given.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

/// A bar over `total` counted steps (runs, points), ticking while a step is long.
pub fn counting_bar(quiet: bool, total: u64, template: &str) -> ProgressBar {
    let bar = if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(&format!("{{spinner}} {template}")).expect("valid template").progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A progress bar on stderr that appears only once a run has taken more than a second,
/// and never when stderr is not a terminal.
pub struct DelayedBar {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
    quiet: bool,
}

pub fn delayed_bar(quiet: bool) -> DelayedBar {
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{spinner} replaying [{bar:40}] {percent:>3}% of simulated time, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    DelayedBar { bar, started: Instant::now(), shown: false, quiet }
}

impl DelayedBar {
    pub fn update(&mut self, fraction: f64) {
        if !self.shown && !self.quiet && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.set_position((fraction * 1000.0) as u64);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
