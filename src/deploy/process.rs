//! Running trtexec (or a build script that runs it) with a time limit. The child starts in a
//! process group of its own, so a timeout stops it and everything it started (a script's
//! trtexec and `tee`), not only the process pillarq spawned.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Default limits, in seconds, for each kind of trtexec call.
pub const VERSION_TIMEOUT_S: u64 = 60;
pub const BUILD_TIMEOUT_S: u64 = 3600;
pub const BENCH_TIMEOUT_S: u64 = 600;

/// Where the child's stdout and stderr go.
pub enum Output {
    /// Both are read into [`Finished::text`] (stdout first, then stderr).
    Capture,
    /// Both go to pillarq's stderr, so that pillarq's stdout keeps only its own results
    /// (`--json`).
    ToStderr,
}

pub struct Finished {
    pub status: ExitStatus,
    pub text: String,
}

/// Runs `cmd` for at most `timeout`. On timeout its whole process group is stopped (SIGTERM, then
/// SIGKILL two seconds later) and the error names `what`, the limit and `flag` (the option that
/// raises it, if there is one).
pub fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
    output: Output,
    what: &str,
    flag: Option<&str>,
) -> Result<Finished> {
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.stdin(Stdio::null());
    match output {
        Output::Capture => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        Output::ToStderr => {
            cmd.stdout(std::io::stderr()).stderr(std::io::stderr());
        }
    }
    let mut child = cmd.spawn().map_err(|e| Error::TensorRt(format!("cannot run {what}: {e}")))?;
    let _running = Running::register(child.id());
    // Pipes are drained on threads so that a chatty child never blocks on a full pipe.
    let (tx, rx) = mpsc::channel();
    let mut readers = 0;
    for (i, pipe) in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as _),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(mut p) = pipe {
            readers += 1;
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = p.read_to_end(&mut buf);
                let _ = tx.send((i, buf));
            });
        }
    }
    drop(tx);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| Error::TensorRt(format!("waiting for {what}: {e}")))? {
            if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
                eprintln!("interrupted: stopped trtexec");
                std::process::exit(130);
            }
            break s;
        }
        if start.elapsed() >= timeout {
            stop_group(&mut child);
            let raise = flag.map(|f| format!(". {f} SECONDS allows longer")).unwrap_or_default();
            return Err(Error::TensorRt(format!(
                "{what} did not finish within {} s; stopped it and every process it started \
                 (process group {}){raise}",
                timeout.as_secs(),
                child.id()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut parts = [Vec::new(), Vec::new()];
    for _ in 0..readers {
        // A grandchild that left the group may hold a pipe open; do not wait on it for ever.
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok((i, buf)) => parts[i] = buf,
            Err(_) => break,
        }
    }
    let text = format!("{}{}", String::from_utf8_lossy(&parts[0]), String::from_utf8_lossy(&parts[1]));
    Ok(Finished { status, text })
}

/// The process groups started here that are still running. A child in its own group no longer
/// gets the terminal's Ctrl-C, so pillarq passes SIGINT / SIGTERM on to them, then exits.
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Set by the signal handler before it stops the groups: a child that then exits was stopped by
/// the interruption, and pillarq ends as interrupted (130), not with the child's failure.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A registered process group, unregistered when dropped.
struct Running(u32);

impl Running {
    fn register(pgid: u32) -> Running {
        static HANDLER: std::sync::Once = std::sync::Once::new();
        HANDLER.call_once(|| {
            let installed = ctrlc::set_handler(|| {
                INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
                let groups = RUNNING.lock().map(|g| g.clone()).unwrap_or_default();
                for g in groups {
                    let _ = Command::new("kill").args(["-s", "TERM", "--", &format!("-{g}")]).status();
                }
                eprintln!("interrupted: stopped trtexec");
                std::process::exit(130);
            });
            if let Err(e) = installed {
                tracing::warn!("cannot pass Ctrl-C on to trtexec: {e}");
            }
        });
        if let Ok(mut g) = RUNNING.lock() {
            g.push(pgid);
        }
        Running(pgid)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut g) = RUNNING.lock() {
            g.retain(|&p| p != self.0);
        }
    }
}

/// SIGTERM to the child's process group, SIGKILL two seconds later if it is still there; the
/// child is reaped.
fn stop_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let signal = |sig: &str| {
        Command::new("kill")
            .args(["-s", sig, "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !signal("TERM") {
        // No `kill` program (or no such group): stop at least the child itself.
        let _ = child.kill();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            // The leader is gone; others in its group may not be.
            signal("KILL");
            wait_for_group(child.id());
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal("KILL");
    let _ = child.kill();
    let _ = child.wait();
    wait_for_group(child.id());
}

/// Waits (at most two seconds) until no live process is left in process group `pgid`: a
/// SIGKILL is delivered when its target is next scheduled, not when `kill` returns, so on a busy
/// machine the group's last members can outlive the call by a moment. Zombies count as gone.
/// Where /proc cannot be read this returns at once.
fn wait_for_group(pgid: u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && group_has_live_members(pgid) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether /proc lists a process of group `pgid` that is not a zombie.
fn group_has_live_members(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
        // "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        pgrp == Some(pgid) && !matches!(state, "Z" | "X")
    })
}

/// `path` made absolute against the current directory (a build script changes directory before
/// it runs `$TRTEXEC`).
pub fn absolute(path: &Path) -> Result<std::path::PathBuf> {
    std::path::absolute(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })
}
