//! One job step done by one thread (a download, a copy): polled by the worker without
//! blocking, joined once it has ended or when the step is cancelled.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::process::stream::spawn_signal_free;

pub(crate) struct Background<T> {
    handle: Option<JoinHandle<Result<T, String>>>,
    /// Set by [`Background::cancel`]; the thread's work checks it and gives up.
    pub(crate) cancelled: Arc<AtomicBool>,
}

impl<T: Send + 'static> Background<T> {
    /// Starts `work` on a signal-free thread; it gets the cancel flag.
    pub(crate) fn spawn(
        name: &str,
        work: impl FnOnce(Arc<AtomicBool>) -> Result<T, String> + Send + 'static,
    ) -> io::Result<Background<T>> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = cancelled.clone();
        let handle = spawn_signal_free(name, move || work(flag))?;
        Ok(Background {
            handle: Some(handle),
            cancelled,
        })
    }

    /// The work's result once it has ended (once); None while it runs, and afterwards.
    pub(crate) fn poll(&mut self) -> Option<Result<T, String>> {
        if !self.handle.as_ref()?.is_finished() {
            return None;
        }
        self.join()
    }

    /// Asks the work to stop and waits for it; false when it had already been collected.
    pub(crate) fn cancel(&mut self) -> bool {
        self.stop().is_some()
    }

    /// Asks the work to stop, waits for it and returns how it ended (None when it had already
    /// been collected).
    pub(crate) fn stop(&mut self) -> Option<Result<T, String>> {
        self.cancelled.store(true, Ordering::Relaxed);
        self.join()
    }

    fn join(&mut self) -> Option<Result<T, String>> {
        let handle = self.handle.take()?;
        Some(
            handle
                .join()
                .unwrap_or_else(|_| Err("the thread doing it panicked".into())),
        )
    }
}
