//! Where a pass runs: on a thread of the pool that runs its kernels.
//!
//! Every kernel splits its layer into rayon tasks. Called from a thread outside the pool (the CLI's main thread, or
//! any caller of the library), each of a pass's few hundred parallel loops was injected into the pool from outside:
//! the caller queued the loop, woke the workers and slept until they finished — two thread switches per layer, and
//! a third thread on the machine's cores. A pass moved onto a pool thread once runs its loops from there, where they
//! start at once and the pool thread running the pass does its share. MobileNetV2's forward pass on two threads
//! (Zen 4): 6.2–6.4 ms from the main thread before, 5.2–5.3 ms now (5.1–5.2 inside the pool).
//!
//! Several callers outside the pool at once each queue a whole pass; a worker waiting inside one pass may take up
//! another one beneath it, as it may any job. Passes do not recurse, so this nests at most one pass per caller.
//! Callers who want their passes apart run them inside a pool of their own (`ThreadPool::install`).

/// Runs `f` on a thread of the current pool (the global pool when called from outside every pool), and returns its
/// result; on a pool thread, or with one thread, it runs here.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() || rayon::current_num_threads() <= 1 {
        return f();
    }
    rayon::scope(|_| f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_pool_thread_and_returns_its_result() {
        // The test thread is outside every pool: the work moves onto one (unless the global pool has one thread).
        let on_thread = on_pool(rayon::current_thread_index);
        assert_eq!(on_thread.is_some(), rayon::current_num_threads() > 1);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            let here = rayon::current_thread_index();
            assert_eq!(on_pool(rayon::current_thread_index), here, "a pool thread keeps the work");
        });
        assert_eq!(on_pool(|| vec![1, 2, 3]), vec![1, 2, 3]);
    }
}
