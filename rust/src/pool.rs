//! The dedicated thread pool, the parallel loop over tiles, and cancellation.
//!
//! Every parallel computation of the crate runs its work items (tiles of an
//! output, blocks of a product) through [`for_each_tile`] on one rayon pool
//! whose size the caller sets; the work items depend on the shapes only, never
//! on the number of threads, so results have the same bits for any pool size.

use crate::error::{Error, Result};
use crate::tiles::Tile;
use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The pool and the id of the process that started it: after a `fork` the
/// child has the pool's bookkeeping but none of its threads, so a pool from
/// another process is replaced instead of waited on forever.
static POOL: RwLock<Option<(u32, Arc<ThreadPool>)>> = RwLock::new(None);

fn build_pool(threads: usize) -> Result<Arc<ThreadPool>> {
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ntkfast-{i}"))
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start {threads} threads: {e}")))?;
    pool.broadcast(|_| crate::real::reserve_gemm_buffer());
    Ok(Arc::new(pool))
}

/// The pool the kernels run on (created on first use with one thread per core,
/// or with the size of the parent's pool in a forked child).
pub fn pool() -> Result<Arc<ThreadPool>> {
    let pid = std::process::id();
    if let Some((owner, pool)) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if *owner == pid {
            return Ok(pool.clone());
        }
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    match slot.as_ref() {
        Some((owner, pool)) if *owner == pid => Ok(pool.clone()),
        other => {
            let threads = match other {
                // Only the size of a pool inherited through fork is read, never its threads.
                Some((_, inherited)) => inherited.current_num_threads(),
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
            let pool = build_pool(threads)?;
            install(&mut slot, pool.clone());
            Ok(pool)
        }
    }
}

/// Puts `pool` in the slot for this process. A replaced pool inherited through
/// fork is leaked: its threads do not exist here, and dropping it would signal them.
fn install(slot: &mut Option<(u32, Arc<ThreadPool>)>, pool: Arc<ThreadPool>) {
    let pid = std::process::id();
    if let Some((owner, old)) = slot.replace((pid, pool)) {
        if owner != pid {
            std::mem::forget(old);
        }
    }
}

/// Replaces the pool by one of `threads` threads (≥ 1). Running computations
/// keep the pool they started on.
pub fn set_num_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Err(Error::Invalid(
            "the number of threads must be at least 1".into(),
        ));
    }
    let pool = build_pool(threads)?;
    install(&mut POOL.write().unwrap_or_else(|e| e.into_inner()), pool);
    Ok(())
}

pub fn num_threads() -> Result<usize> {
    Ok(pool()?.current_num_threads())
}

/// Runs `work(scratch, tile)` for every tile on the pool. Each thread of the
/// pool makes its `scratch` with `init` once, on its first tile, and reuses it
/// (fresh buffers per batch of tiles would cost a page fault per 4 KiB).
/// Stops between tiles once `cancel` is set and then returns [`Error::Cancelled`]:
/// `Ok` means that `work` ran on every tile (callers that fill unzeroed
/// buffers rely on it), whatever happens to the flag afterwards.
pub fn for_each_tile<S, I, F>(tiles: &[Tile], cancel: &AtomicBool, init: I, work: F) -> Result<()>
where
    S: Send,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, Tile) + Sync + Send,
{
    let pool = pool()?;
    let scratch = PerThread::new(&pool, init);
    let done = AtomicUsize::new(0);
    pool.install(|| {
        tiles.par_iter().with_max_len(4).for_each(|tile| {
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            scratch.with(|s| work(s, *tile));
            done.fetch_add(1, Ordering::Relaxed);
        })
    });
    // `install` has joined every task, so the count is complete.
    if done.into_inner() == tiles.len() {
        Ok(())
    } else {
        Err(Error::Cancelled)
    }
}

/// `f` of every item on the pool, in order; [`Error::Cancelled`] once
/// `cancel` is set (items not started by then are skipped).
pub fn map<T, R, F>(items: &[T], cancel: &AtomicBool, f: F) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync + Send,
{
    let pool = pool()?;
    let out: Vec<Option<R>> = pool.install(|| {
        items
            .par_iter()
            .map(|item| (!cancel.load(Ordering::Relaxed)).then(|| f(item)))
            .collect()
    });
    out.into_iter()
        .collect::<Option<Vec<R>>>()
        .ok_or(Error::Cancelled)
}

/// One value per thread of a pool, made with `init` on the thread's first
/// use and kept for the rest of the computation (fresh buffers per work item
/// would cost a page fault per 4 KiB).
pub struct PerThread<S, I> {
    slots: Vec<Mutex<Option<S>>>,
    init: I,
}

impl<S, I: Fn() -> S> PerThread<S, I> {
    pub fn new(pool: &ThreadPool, init: I) -> Self {
        let slots = (0..pool.current_num_threads())
            .map(|_| Mutex::new(None))
            .collect();
        PerThread { slots, init }
    }

    /// `f` on the calling thread's value.
    pub fn with<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        // Each worker only ever locks its own slot: never contended.
        let index = rayon::current_thread_index().unwrap_or(0) % self.slots.len();
        let mut slot = self.slots[index].lock().unwrap_or_else(|e| e.into_inner());
        f(slot.get_or_insert_with(&self.init))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiles::{panels, TILE};

    #[test]
    fn cancellation_stops_the_work() {
        let cancel = AtomicBool::new(true);
        let ts = panels(1000, 1000, false, TILE, 1);
        let r = for_each_tile(&ts, &cancel, || (), |_, _| panic!("must not run"));
        assert_eq!(r, Err(Error::Cancelled));
    }
}
