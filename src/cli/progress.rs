//! A progress bar on stderr for long packs and publishes, only when stderr is a terminal and the
//! output is not `--json`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

/// Below this many bytes a pack is quick enough that a bar would only flicker.
const WORTH_A_BAR: u64 = 16 << 20;

pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn new(wanted: bool) -> Bar {
        if !wanted || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:8} [{bar:40}] {bytes}/{total_bytes} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Bar(Some(bar))
    }
}

impl Progress for Bar {
    fn shown(&self) -> bool {
        self.0.is_some()
    }

    fn start(&self, phase: &str, total: u64) {
        if let Some(b) = &self.0 {
            b.set_message(phase.to_string());
            b.set_position(0);
            b.set_length(total);
            if total < WORTH_A_BAR {
                b.set_draw_target(ProgressDrawTarget::hidden());
            } else {
                b.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
    }

    fn grow(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc_length(n);
            if b.length().unwrap_or(0) >= WORTH_A_BAR && b.is_hidden() {
                b.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
    }

    fn advance(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
