//! Long computations off the GIL: a helper thread runs the job while the
//! calling thread polls Python's signal handlers, so Ctrl-C cancels it.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Runs `job` on a helper thread with the GIL released; every 50 ms the
/// calling thread takes the GIL back to run Python's signal handlers, and a
/// KeyboardInterrupt (or any exception they raise) cancels the job, which
/// stops at its next tile.
pub(super) fn run_interruptible<R: Send>(
    py: Python<'_>,
    job: impl FnOnce(&AtomicBool) -> R + Send,
) -> PyResult<R> {
    let cancel = AtomicBool::new(false);
    let done = (Mutex::new(false), Condvar::new());
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("ntkfast-driver".into())
            .spawn_scoped(scope, || {
                let result = catch_unwind(AssertUnwindSafe(|| job(&cancel)));
                *done.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
                done.1.notify_all();
                result
            });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                return Err(PyRuntimeError::new_err(format!(
                    "cannot start a thread: {e}"
                )))
            }
        };
        loop {
            let finished = py.allow_threads(|| {
                let guard = done.0.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) = done
                    .1
                    .wait_timeout_while(guard, Duration::from_millis(50), |d| !*d)
                    .unwrap_or_else(|e| e.into_inner());
                *guard
            });
            if finished {
                break;
            }
            if let Err(err) = py.check_signals() {
                cancel.store(true, Ordering::Relaxed);
                let _ = py.allow_threads(|| handle.join());
                return Err(err);
            }
        }
        handle
            .join()
            .ok()
            .and_then(|r| r.ok())
            .ok_or_else(|| PyRuntimeError::new_err("internal error: the computation panicked"))
    })
}
