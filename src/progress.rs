//! Progress bars for long stages (stderr; hidden with --quiet or when stderr is not a terminal
//! and no log level asks for it).

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: usize, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:<10} [{bar:30}] {pos}/{len} frames  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
