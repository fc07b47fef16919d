//! What a pull reports while it runs, layer by layer, and two reporters:
//! [`Quiet`] and [`ProgressBars`] (a bar per layer on stderr, as `docker pull`
//! draws them, with `indicatif`; hidden when stderr is not a terminal).
//!
//! Calls come from the pull's worker threads, several layers at once. For each
//! layer either `start`, `advance`..., `done(Downloaded)`; or only
//! `done(AlreadyPresent)` when the blob was in the store.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::Digest;

/// How a layer came to be in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Downloaded (wholly or from where an interrupted pull stopped) and unpacked.
    Downloaded,
    /// The blob was in the store already: nothing was downloaded.
    AlreadyPresent,
}

/// A pull's progress, layer by layer (layers are named by their blob digest).
pub trait Progress: Sync {
    /// A download of `layer` (`total` bytes) starts at byte `from` (not 0 when
    /// resuming an interrupted download).
    fn start(&self, layer: &Digest, total: u64, from: u64);
    /// `bytes` more of `layer` arrived.
    fn advance(&self, layer: &Digest, bytes: u64);
    /// `layer` is in the store, verified and unpacked.
    fn done(&self, layer: &Digest, how: Done);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &Digest, _: u64, _: u64) {}
    fn advance(&self, _: &Digest, _: u64) {}
    fn done(&self, _: &Digest, _: Done) {}
}

/// A progress bar per layer on stderr; draws nothing when stderr is not a terminal.
pub struct ProgressBars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Default for ProgressBars {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressBars {
    /// Bars on stderr, or hidden ones when it is not a terminal.
    pub fn new() -> ProgressBars {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        ProgressBars {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// The bar of `layer`, added (with `len`) if it has none yet.
    fn bar(&self, layer: &Digest, len: u64) -> ProgressBar {
        let mut bars = self.bars.lock().expect("progress bars lock");
        bars.entry(layer.clone())
            .or_insert_with(|| {
                let style = ProgressStyle::with_template(
                    "{prefix}: {msg:16} [{bar:30}] {bytes}/{total_bytes}",
                )
                .expect("progress template parses")
                .progress_chars("=> ");
                let bar = self.multi.add(ProgressBar::new(len).with_style(style));
                bar.set_prefix(layer.short().to_owned());
                bar
            })
            .clone()
    }
}

impl Progress for ProgressBars {
    fn start(&self, layer: &Digest, total: u64, from: u64) {
        let bar = self.bar(layer, total);
        bar.set_length(total);
        bar.set_position(from);
        bar.set_message(if from > 0 { "Resuming" } else { "Downloading" });
    }

    fn advance(&self, layer: &Digest, bytes: u64) {
        self.bar(layer, 0).inc(bytes);
    }

    fn done(&self, layer: &Digest, how: Done) {
        let bar = self.bar(layer, 0);
        let msg = match how {
            Done::Downloaded => "Pull complete",
            Done::AlreadyPresent => "Already exists",
        };
        if how == Done::AlreadyPresent {
            bar.set_style(ProgressStyle::with_template("{prefix}: {msg}").expect("template"));
        }
        bar.finish_with_message(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_follow_layers_through_their_states() {
        // Under `cargo test` stderr is usually not a terminal: the bars are hidden
        // but still kept, so their positions can be read.
        let p = ProgressBars::new();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        p.start(&a, 100, 40);
        p.advance(&a, 25);
        assert_eq!(p.bar(&a, 0).position(), 65);
        p.done(&a, Done::Downloaded);
        p.done(&b, Done::AlreadyPresent);
        let bars = p.bars.lock().unwrap();
        assert!(bars.values().all(|bar| bar.is_finished()));
        assert_eq!(bars[&a].message(), "Pull complete");
        assert_eq!(bars[&b].message(), "Already exists");
    }
}
