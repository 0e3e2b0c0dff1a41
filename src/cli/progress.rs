//! Progress bars on stderr: the command-line implementation of `progress::Progress`. Hidden with
//! --quiet. Inside `pillarq run`, every bar sits under the run's one stage line.

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::progress::{Progress, Task};

/// The run's display: a stage line (stage k of n, elapsed, ETA of the run) with the running
/// task's bar beneath it.
struct RunDisplay {
    multi: MultiProgress,
    header: ProgressBar,
    /// The running stage's start on the header's scale, and its weight.
    stage: (u64, u64),
}

/// A task at `pos` of `len` inside the running stage moves the stage line along with it.
fn follow(pos: u64, len: u64) {
    if let Some(r) = RUN.lock().ok().as_ref().and_then(|r| r.as_ref()) {
        let (start, weight) = r.stage;
        // Monotonic within a stage: its later passes start their own bars from 0.
        let p = start + weight * pos.min(len) / len.max(1);
        if p > r.header.position() {
            r.header.set_position(p);
        }
    }
}

static RUN: Mutex<Option<RunDisplay>> = Mutex::new(None);

/// A frame bar, added under the run's stage line when `pillarq run` shows one.
pub fn bar(len: usize, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:<10} [{bar:30}] {pos}/{len}  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    match RUN.lock().ok().as_ref().and_then(|r| r.as_ref()) {
        Some(r) => r.multi.add(pb),
        None => pb,
    }
}

/// `Progress` as bars (none when quiet).
pub struct Bars {
    pub quiet: bool,
}

/// The bars of a command (`quiet`: none).
pub fn bars(quiet: bool) -> &'static Bars {
    static LOUD: Bars = Bars { quiet: false };
    static QUIET: Bars = Bars { quiet: true };
    if quiet {
        &QUIET
    } else {
        &LOUD
    }
}

struct BarTask(ProgressBar, u64);

impl Task for BarTask {
    fn inc(&self, n: u64) {
        self.0.inc(n);
        follow(self.0.position(), self.1);
    }
    fn set_position(&self, pos: u64) {
        self.0.set_position(pos);
        follow(pos, self.1);
    }
}

impl Drop for BarTask {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bars {
    fn start(&self, what: &str, len: u64) -> Box<dyn Task + '_> {
        Box::new(BarTask(bar(len as usize, what, self.quiet), len))
    }
}

/// The stage line of `pillarq run`: "run [==>   ] 3/6 stages  sensitivity  1m02s  ETA 2m". The
/// ETA weighs the stages by `weights` (their expected share of the run's time).
pub struct StageLine {
    weights: Vec<u64>,
    done: u64,
    quiet: bool,
}

impl StageLine {
    /// Shows the line (nothing when quiet) until it is dropped.
    pub fn start(weights: Vec<u64>, quiet: bool) -> StageLine {
        if !quiet {
            let total: u64 = weights.iter().sum();
            let header = ProgressBar::new(total.max(1));
            header.set_style(
                ProgressStyle::with_template("run {wide_msg} [{bar:20}] {elapsed_precise}  ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            let multi = MultiProgress::new();
            let header = multi.add(header);
            if let Ok(mut r) = RUN.lock() {
                *r = Some(RunDisplay { multi, header, stage: (0, 0) });
            }
        }
        StageLine { weights, done: 0, quiet }
    }

    /// Stage `k` (from 0) named `name` begins; the stages before it are done.
    pub fn stage(&mut self, k: usize, name: &str, note: &str) {
        self.done = self.weights[..k.min(self.weights.len())].iter().sum();
        let weight = self.weights.get(k).copied().unwrap_or(0);
        if let Some(r) = RUN.lock().ok().as_mut().and_then(|r| r.as_mut()) {
            r.stage = (self.done, weight);
            r.header.set_position(self.done);
            // Reused stages jump ahead in no time: the rate restarts with each stage.
            r.header.reset_eta();
            r.header.set_message(format!("{}/{} {name} {note}", k + 1, self.weights.len()));
        }
    }

    /// Prints a line above the bars (bars stay at the bottom).
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        match RUN.lock().ok().as_ref().and_then(|r| r.as_ref()).filter(|r| !r.multi.is_hidden()) {
            Some(r) => {
                let _ = r.multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

impl Drop for StageLine {
    fn drop(&mut self) {
        if let Ok(mut r) = RUN.lock() {
            if let Some(r) = r.take() {
                r.header.finish_and_clear();
            }
        }
    }
}
