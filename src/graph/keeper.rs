//! Keeps the pool's other threads awake through a pass.
//!
//! A pass at batch 1 is a few hundred parallel loops (about one per layer, more in a backward sweep) with serial
//! stretches between them: the executor's bookkeeping, small ops, a kernel's own setup. Rayon lets an idle worker
//! yield a few dozen times and then sleep, and waking it costs 10–20 µs on this VM (a fork-join of 8 × 5 µs tasks
//! after a 20 µs serial gap: 31 µs against 22 µs without the gap; 20 µs more after a 50 µs gap). A keeper job
//! takes the pool's work as it appears (`rayon::yield_now`) and spins through the gaps until the pass ends, as
//! onnxruntime's pool spins between loops by default. MobileNetV2 and EfficientNet-Lite0 on two Zen 4 threads
//! (medians of five alternating rounds): saliency 2.4–4.9 % faster, Grad-CAM 0.8–2.6 %, the forward pass within
//! ±2 %. It never changes which task computes what — the kernels' task
//! shapes depend on the layer alone — so results stay bit-identical.
//!
//! A keeper cannot hang a pass. A worker waiting inside a join may run any queued job, a keeper too, and the join
//! then waits for the keeper. So a keeper leaves once it has found no work for [`IDLE_LIMIT`], or when the pass has
//! not reached a new node for [`STALE_LIMIT`] (bounding the wait even while other work keeps it busy); it leaves at
//! once on the pass's own thread, on a thread already running a keeper, and when a second pass is in flight. On two
//! threads no keeper is left queued while the pass's work runs, so this does not arise there; on more threads a join
//! may wait up to those limits. Passes side by side (`graph::items`) keep every thread busy already and start none.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::LocalKey;
use std::time::{Duration, Instant};

/// How long a keeper spins without finding work before it leaves: longer than the gaps between a pass's loops (a
/// few to a few tens of µs), short enough that a keeper stuck beneath a waiting job costs little.
const IDLE_LIMIT: Duration = Duration::from_micros(500);

/// How long a keeper stays after the pass last reached a new node ([`Keepers::refresh`]).
const STALE_LIMIT: Duration = Duration::from_millis(2);

/// Passes running now, in any pool of this process.
static PASSES_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set while this thread runs items side by side ([`among_items`]).
    static AMONG_ITEMS: Cell<bool> = const { Cell::new(false) };
    /// Set while this thread runs a keeper: a keeper that work run by a keeper takes up leaves at once.
    static KEEPING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as one of several passes side by side: passes it starts have no keepers.
pub(crate) fn among_items<R>(f: impl FnOnce() -> R) -> R {
    with_flag(&AMONG_ITEMS, f)
}

/// Runs `f` with this thread's `flag` set, and puts the flag back as it was however `f` ends.
fn with_flag<R>(flag: &'static LocalKey<Cell<bool>>, f: impl FnOnce() -> R) -> R {
    struct Reset(&'static LocalKey<Cell<bool>>, bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            self.0.set(self.1);
        }
    }
    let _reset = Reset(flag, flag.replace(true));
    f()
}

/// What a pass's keepers share with it.
struct Shared {
    /// Set when the pass ends.
    done: AtomicBool,
    /// The pool thread the pass runs on.
    owner: usize,
    /// Keepers running or queued.
    live: AtomicUsize,
    /// When the pass last reached a new node: µs since `start`.
    refreshed_us: AtomicU64,
    start: Instant,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// Held for the length of a pass; dropping it sends the keepers away.
pub(crate) struct Keepers {
    shared: Option<Arc<Shared>>,
}

impl Keepers {
    /// Starts keepers for a pass on the current thread, one per other thread of its pool: when the pass runs on a
    /// pool thread of a pool with more than one thread, and not as one of several items side by side.
    pub(crate) fn for_pass() -> Self {
        PASSES_IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        let shared = match rayon::current_thread_index() {
            Some(owner) if !AMONG_ITEMS.get() && rayon::current_num_threads() > 1 => {
                let shared = Arc::new(Shared {
                    done: AtomicBool::new(false),
                    owner,
                    live: AtomicUsize::new(0),
                    refreshed_us: AtomicU64::new(0),
                    start: Instant::now(),
                });
                spawn_missing(&shared);
                Some(shared)
            }
            _ => None,
        };
        Keepers { shared }
    }

    /// Between nodes: replaces keepers that left (after a long serial stretch, or taken up by the pass's own thread).
    pub(crate) fn refresh(&self) {
        if let Some(shared) = &self.shared {
            shared.refreshed_us.store(shared.now_us(), Ordering::Relaxed);
            spawn_missing(shared);
        }
    }
}

impl Drop for Keepers {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.done.store(true, Ordering::Release);
        }
        PASSES_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

fn spawn_missing(shared: &Arc<Shared>) {
    // With another pass in flight every keeper would leave at once: spawning them only wakes workers.
    if PASSES_IN_FLIGHT.load(Ordering::Relaxed) != 1 {
        return;
    }
    let wanted = rayon::current_num_threads().saturating_sub(1);
    while shared.live.load(Ordering::Relaxed) < wanted {
        shared.live.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(shared);
        rayon::spawn(move || {
            // Counted out however the keeper ends.
            struct Gone<'a>(&'a Shared);
            impl Drop for Gone<'_> {
                fn drop(&mut self) {
                    self.0.live.fetch_sub(1, Ordering::Relaxed);
                }
            }
            let _gone = Gone(&shared);
            keep(&shared);
        });
    }
}

/// Runs the pool's work until the pass ends, another pass starts, no work has come for [`IDLE_LIMIT`], or the pass
/// has not reached a new node for [`STALE_LIMIT`].
fn keep(shared: &Shared) {
    if rayon::current_thread_index() == Some(shared.owner) || KEEPING.get() {
        return;
    }
    with_flag(&KEEPING, || {
        let mut idle_since: Option<Instant> = None;
        while !shared.done.load(Ordering::Acquire) && PASSES_IN_FLIGHT.load(Ordering::Relaxed) == 1 {
            let stale = shared.now_us().saturating_sub(shared.refreshed_us.load(Ordering::Relaxed));
            if stale > STALE_LIMIT.as_micros() as u64 {
                return;
            }
            match rayon::yield_now() {
                Some(rayon::Yield::Executed) => idle_since = None,
                Some(rayon::Yield::Idle) => {
                    if idle_since.get_or_insert_with(Instant::now).elapsed() > IDLE_LIMIT {
                        return;
                    }
                    std::hint::spin_loop();
                }
                None => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
    }

    #[test]
    fn keepers_run_through_a_pass_and_leave_when_it_ends() {
        pool(3).install(|| {
            let keepers = Keepers::for_pass();
            let shared = Arc::clone(keepers.shared.as_ref().expect("a pass on a pool thread has keepers"));
            let sum: u64 = (0..100_000u64).into_par_iter().map(|i| i % 7).sum();
            assert_eq!(sum, (0..100_000u64).map(|i| i % 7).sum::<u64>());
            drop(keepers);
            let start = Instant::now();
            while shared.live.load(Ordering::Relaxed) > 0 {
                assert!(start.elapsed() < Duration::from_secs(10), "keepers still running after the pass");
                std::thread::yield_now();
            }
        });
    }

    #[test]
    fn no_keepers_off_the_pool_on_one_thread_or_among_items() {
        // The test thread is not a pool thread.
        assert!(Keepers::for_pass().shared.is_none());
        pool(1).install(|| assert!(Keepers::for_pass().shared.is_none()));
        pool(2).install(|| among_items(|| assert!(Keepers::for_pass().shared.is_none())));
        pool(2).install(|| assert!(Keepers::for_pass().shared.is_some()));
    }

    #[test]
    fn nested_joins_finish_under_keepers() {
        // Deep fork-join trees whose pieces keepers steal, with keepers refreshed between them: every tree finishes
        // with the sequential result.
        fn tree(depth: u32) -> u64 {
            if depth == 0 {
                return 1;
            }
            let (a, b) = rayon::join(|| tree(depth - 1), || tree(depth - 1));
            a + b
        }
        for threads in [2, 4] {
            pool(threads).install(|| {
                let keepers = Keepers::for_pass();
                for _ in 0..20 {
                    keepers.refresh();
                    assert_eq!(tree(12), 1 << 12);
                }
            });
        }
    }
}
