//! Progress of long library stages, reported through a trait the caller implements: the
//! command-line layer draws bars (`cli::progress`), a library user may log or ignore it. Library
//! code never draws anything itself.

/// Receives the tasks of a stage as they start.
pub trait Progress: Sync {
    /// A task of `len` units (frames, draws, plans) named `what`; it ends when the handle drops.
    fn start(&self, what: &str, len: u64) -> Box<dyn Task + '_>;
}

/// One running task.
pub trait Task: Send + Sync {
    /// `n` more units done.
    fn inc(&self, n: u64);
    /// `pos` units done in all.
    fn set_position(&self, pos: u64);
}

/// Reports nothing.
pub struct Silent;

struct SilentTask;

impl Task for SilentTask {
    fn inc(&self, _: u64) {}
    fn set_position(&self, _: u64) {}
}

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) -> Box<dyn Task + '_> {
        Box::new(SilentTask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A recording implementation, as a library user would write one.
    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);
    struct LogTask<'a>(&'a Log, String);
    impl Task for LogTask<'_> {
        fn inc(&self, n: u64) {
            self.0 .0.lock().unwrap().push(format!("{} +{n}", self.1));
        }
        fn set_position(&self, pos: u64) {
            self.0 .0.lock().unwrap().push(format!("{} ={pos}", self.1));
        }
    }
    impl Drop for LogTask<'_> {
        fn drop(&mut self) {
            self.0 .0.lock().unwrap().push(format!("{} done", self.1));
        }
    }
    impl Progress for Log {
        fn start(&self, what: &str, len: u64) -> Box<dyn Task + '_> {
            self.0.lock().unwrap().push(format!("{what} 0/{len}"));
            Box::new(LogTask(self, what.to_string()))
        }
    }

    #[test]
    fn tasks_report_through_the_trait_and_end_on_drop() {
        let log = Log::default();
        {
            let t = log.start("observe", 3);
            t.inc(1);
            t.set_position(3);
        }
        Silent.start("x", 1).inc(1);
        assert_eq!(*log.0.lock().unwrap(), ["observe 0/3", "observe +1", "observe =3", "observe done"]);
    }
}
