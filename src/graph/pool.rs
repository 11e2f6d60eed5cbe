//! Buffers of values freed during a pass, handed to later values that fit in them.
//!
//! Activations are freed right after their last reader. Reusing their buffers saves the allocator's work and — for
//! the multi-megabyte ones, which the allocator maps fresh from the kernel — the page faults and the kernel's zeroing
//! of every page. Only the convolution kernels take buffers from the pool (they overwrite every element).
//!
//! A request takes the smallest freed buffer that holds it (at most [`MAX_OVERSIZE`] times its length; the newest of
//! equals), and the value uses the front of it. Buffers of exactly the requested length, as the pool first handed
//! out, kept one buffer per activation size: MobileNetV2 cycled through ≈ 18 MB of them, which with its 14 MB of
//! weights no longer fits a 32 MB L3, so the 112² layers wrote to memory gone cold since the last pass. Sharing
//! buffers across sizes shrinks that set to what is live at once, and hands a layer memory its neighbours just
//! used (single-threaded MobileNetV2 forward, Zen 4: 10.4 → 9.7 ms, the 112² layers 15–40 % faster each). A value
//! that outlives the pass — one the plan keeps, or a gradient the caller asked for — takes a buffer of exactly its
//! length ([`BufferPool::take_exact`]): it pins its whole buffer for as long as the caller holds it, and a clone
//! copies the whole buffer.
//!
//! What a pass leaves in its pool is kept by the graph ([`SparePool`]) for the next pass: otherwise the first layers
//! of every pass would allocate fresh, zero-filled buffers (≈ 6 % of a MobileNetV2 forward went to `memset`).
//!
//! The pool holds at most [`MAX_POOLED_BYTES`], or [`LARGEST_VALUES_POOLED`] times the largest buffer offered in
//! this pass or the [`MAX_IDLE_PASSES`] − 1 before it when that is more (so one large batch does not leave the graph
//! holding its buffers for good). Remembering fewer passes than a buffer may idle dropped a batch's activations at
//! the end of every backward pass of Grad-CAM at batch 8, and each forward pass mapped them afresh from the kernel
//! (page faults were ≈ 12 % of its time).
//! Unbounded, it kept every value no later layer reused — most of a network's activations (ResNet-50: ≈ 100 MB). A
//! fixed cap, though, shut out the large activations of a batch (MobileNetV2's 112² expansion is 38.5 MB at batch 8),
//! which allocators map fresh from the kernel on every request: each pass paid their page faults again, and batch 8
//! ran 1.5× slower per image than batch 1.
//!
//! A buffer no request took for [`MAX_IDLE_PASSES`] pass ends is dropped. Values that come from outside — the graph
//! input, moved in without a copy — are recycled like any other, so without this every pass added one more
//! input-sized buffer: in a benchmark loop they filled the cap within 30 passes and then pushed out buffers layers
//! did take, which each later pass allocated and zeroed afresh (≈ 3 % of a MobileNetV2 forward went to `memset`).
//! Past the cap it drops the idlest first, then the smallest: small buffers come back cheaply from the allocator's
//! free lists. Dropping the oldest instead failed on repeated passes: the oldest buffers are the first layers',
//! which the next pass asks for first.

use crate::tensor::Tensor;
use crate::Element;

/// Values smaller than this are left to the allocator (its own free lists serve them well).
const MIN_POOLED: usize = 16 * 1024;

/// Most bytes the pool keeps for small activations: a few of the largest of a 224² CNN at batch 1 (VGG-16's are
/// 12.8 MB).
pub(super) const MAX_POOLED_BYTES: usize = 32 << 20;

/// How many of the largest value the pool may hold: a layer's input and output of that size, and one more for the
/// next layer's output, are what a chain of same-sized layers cycles through.
const LARGEST_VALUES_POOLED: usize = 3;

/// Longest buffer, in lengths of the request, that a request takes: a value keeps its whole buffer alive, so a
/// small value held for the backward pass must not pin one many times its size.
const MAX_OVERSIZE: usize = 4;

/// Pass ends a buffer may sit through untaken before it is dropped: enough that a buffer only one kind of pass takes
/// survives the passes of other kinds between two of its own (an explainer runs up to three backward passes per
/// forward pass), few enough that buffers of values from outside do not pile up.
const MAX_IDLE_PASSES: u8 = 5;

/// The pools a graph keeps between passes. A pass takes one whole and gives it back when it ends, so concurrent
/// passes on one graph never share a buffer, and each finds the buffers of an earlier pass. (With one pool, the
/// second of two passes running side by side started empty, and its pool replaced the first's when it ended: every
/// pass of a batch's items run side by side mapped its activations afresh.)
///
/// A kept pool sits idle through the ends of the passes that run alone (no other pass holds a pool when they end);
/// after [`MAX_IDLE_PASSES`] of them it is dropped. So the pools of passes that ran side by side (a batch's items:
/// see [`super::Graph::runs_items_apart`]) all stay while batches keep coming, one per pass in flight, and go once
/// the graph serves one pass at a time.
pub(super) struct SparePool<T>(std::sync::Mutex<Spares<T>>);

/// The kept pools with the pass ends each has sat idle through, and how many pools are lent.
struct Spares<T> {
    kept: Vec<(BufferPool<T>, u8)>,
    lent: usize,
}

impl<T> Default for SparePool<T> {
    fn default() -> Self {
        SparePool(std::sync::Mutex::new(Spares { kept: Vec::new(), lent: 0 }))
    }
}

impl<T> std::fmt::Debug for SparePool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SparePool")
    }
}

impl<T: Element> SparePool<T> {
    /// The buffers kept from the last pass, lent to a pass until the returned guard drops — when the pass ends,
    /// whether it succeeded or returned an error half-way (a pool not given back would leave the next pass to
    /// allocate, and page-fault, every buffer afresh).
    pub(super) fn lend(&self) -> LentPool<'_, T> {
        LentPool { spare: self, pool: self.take() }
    }
}

/// A pass's pool, given back to the graph's [`SparePool`] when dropped.
pub(super) struct LentPool<'a, T: Element> {
    spare: &'a SparePool<T>,
    pool: BufferPool<T>,
}

impl<T: Element> std::ops::Deref for LentPool<'_, T> {
    type Target = BufferPool<T>;
    fn deref(&self) -> &BufferPool<T> {
        &self.pool
    }
}

impl<T: Element> std::ops::DerefMut for LentPool<'_, T> {
    fn deref_mut(&mut self) -> &mut BufferPool<T> {
        &mut self.pool
    }
}

impl<T: Element> Drop for LentPool<'_, T> {
    fn drop(&mut self) {
        self.spare.put_back(std::mem::replace(&mut self.pool, BufferPool::new()));
    }
}

impl<T> SparePool<T> {
    /// The buffers of the pass that ended last, or an empty pool if other passes hold every kept one (a poisoned
    /// lock only means a pass panicked: its buffers are still fine).
    fn take(&self) -> BufferPool<T> {
        let mut spares = self.0.lock().unwrap_or_else(|e| e.into_inner());
        spares.lent += 1;
        spares.kept.pop().map_or_else(BufferPool::new, |(pool, _)| pool)
    }

    /// Keeps what a pass freed for the next one, trimmed to what that pass alone would justify.
    fn put_back(&self, mut pool: BufferPool<T>)
    where
        T: Element,
    {
        pool.end_pass();
        let mut spares = self.0.lock().unwrap_or_else(|e| e.into_inner());
        spares.lent = spares.lent.saturating_sub(1);
        if spares.lent == 0 {
            spares.kept.retain_mut(|(_, idle)| {
                *idle += 1;
                *idle < MAX_IDLE_PASSES
            });
        }
        spares.kept.push((pool, 0));
    }
}

/// A freed buffer: all of it initialized (it held a value of its full length, or the front of it did and the rest
/// was initialized before).
struct Spare<T> {
    data: Vec<T>,
    /// Pass ends it has sat through since it was freed.
    idle: u8,
}

/// Freed buffers, oldest first.
pub(super) struct BufferPool<T> {
    free: Vec<Spare<T>>,
    bytes: usize,
    /// Bytes held however small the values: [`MAX_POOLED_BYTES`] (smaller in tests).
    floor: usize,
    /// Bytes of the largest buffer offered in this pass (first) and in each of the passes before it that a buffer
    /// may idle through: they set the cap, so one large batch does not leave a graph holding its buffers for good.
    largest: [usize; MAX_IDLE_PASSES as usize],
}

/// A buffer lent for one value: at least `len` initialized values, of which the value is the first `len`.
pub(super) struct Buffer<T> {
    data: Vec<T>,
    len: usize,
}

impl<T: Element> Buffer<T> {
    /// A fresh buffer of `len` zeros, for a request the pool could not serve.
    pub(super) fn zeroed(len: usize) -> Buffer<T> {
        Buffer { data: vec![T::zero(); len], len }
    }

    /// The value's elements (unspecified contents in a pooled buffer: the caller overwrites them).
    pub(super) fn values(&mut self) -> &mut [T] {
        &mut self.data[..self.len]
    }

    /// The value, shaped `shape`: a tensor over the front of the buffer, which keeps the whole buffer (and gives it
    /// back whole when recycled).
    pub(super) fn into_tensor(self, shape: &[usize]) -> Result<Tensor<T>, ndarray::ShapeError> {
        if self.data.len() == self.len {
            return Tensor::from_shape_vec(ndarray::IxDyn(shape), self.data);
        }
        let front = ndarray::Array1::from_vec(self.data).slice_move(ndarray::s![..self.len]);
        front.into_shape_with_order(ndarray::IxDyn(shape))
    }
}

impl<T> BufferPool<T> {
    pub(super) fn new() -> Self {
        BufferPool::with_floor(MAX_POOLED_BYTES)
    }

    fn with_floor(floor: usize) -> Self {
        BufferPool { free: Vec::new(), bytes: 0, floor, largest: [0; MAX_IDLE_PASSES as usize] }
    }
}

impl<T: Element> BufferPool<T> {
    /// Bytes held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.free.iter().map(|s| s.data.len() * std::mem::size_of::<T>()).sum()
    }

    /// Most bytes held (see the module's doc).
    fn cap(&self) -> usize {
        let largest = self.largest.iter().copied().max().unwrap_or(0);
        self.floor.max(LARGEST_VALUES_POOLED.saturating_mul(largest))
    }

    /// Removes the buffer at `i`.
    fn remove(&mut self, i: usize) -> Vec<T> {
        let spare = self.free.remove(i);
        self.bytes -= spare.data.len() * std::mem::size_of::<T>();
        spare.data
    }

    /// Ends a pass: buffers idle for [`MAX_IDLE_PASSES`] pass ends go, the pool is trimmed to its cap, and a new
    /// pass begins in the cap's memory (the oldest pass leaves it).
    fn end_pass(&mut self) {
        let size = std::mem::size_of::<T>();
        let bytes = &mut self.bytes;
        self.free.retain_mut(|s| {
            s.idle = s.idle.saturating_add(1);
            let keep = s.idle < MAX_IDLE_PASSES;
            if !keep {
                *bytes -= s.data.len() * size;
            }
            keep
        });
        self.trim();
        self.largest.rotate_right(1);
        self.largest[0] = 0;
    }

    /// Drops buffers until the pool is within its cap: the idlest first, then the smallest, then the oldest.
    fn trim(&mut self) {
        while self.bytes > self.cap() {
            let victim = (0..self.free.len())
                .min_by_key(|&i| (std::cmp::Reverse(self.free[i].idle), self.free[i].data.len(), i));
            let Some(i) = victim else { break };
            self.remove(i);
        }
    }

    /// Keeps the buffer of a value nothing reads any more.
    pub(super) fn recycle(&mut self, t: Tensor<T>) {
        if t.len() < MIN_POOLED || !t.is_standard_layout() {
            return;
        }
        let len = t.len();
        let (data, offset) = t.into_raw_vec_and_offset();
        // A value in standard order from the buffer's start: the buffer (all of it initialized) is free.
        if offset != Some(0) || data.len() < len {
            return;
        }
        let size = data.len() * std::mem::size_of::<T>();
        self.largest[0] = self.largest[0].max(size);
        self.free.push(Spare { data, idle: 0 });
        self.bytes += size;
        self.trim();
    }

    /// The smallest freed buffer that holds `len` elements and is at most [`MAX_OVERSIZE`] times that long (the
    /// newest of equals), if any; its contents are unspecified and the caller overwrites them.
    pub(super) fn take(&mut self, len: usize) -> Option<Buffer<T>> {
        self.take_within(len, len.saturating_mul(MAX_OVERSIZE))
    }

    /// A freed buffer of exactly `len` elements (the newest), for a value that outlives the pass.
    pub(super) fn take_exact(&mut self, len: usize) -> Option<Buffer<T>> {
        self.take_within(len, len)
    }

    /// The smallest freed buffer of `len` to `longest` elements, the newest of equals.
    fn take_within(&mut self, len: usize, longest: usize) -> Option<Buffer<T>> {
        if len < MIN_POOLED {
            return None;
        }
        let fits = |s: &Spare<T>| (len..=longest).contains(&s.data.len());
        let best = (0..self.free.len())
            .filter(|&i| fits(&self.free[i]))
            .min_by_key(|&i| (self.free[i].data.len(), std::cmp::Reverse(i)))?;
        Some(Buffer { data: self.remove(best), len })
    }

    /// [`BufferPool::take`] (or [`BufferPool::take_exact`] for a value that outlives the pass), else a fresh buffer
    /// of zeros.
    pub(super) fn take_or_zeroed(&mut self, len: usize, outlives_pass: bool) -> Buffer<T> {
        self.take_for(len, outlives_pass).unwrap_or_else(|| Buffer::zeroed(len))
    }

    /// [`BufferPool::take_or_zeroed`] as a buffer of f32, for the f32 kernels of a graph the caller checked is f32
    /// (of another element type, a fresh buffer).
    pub(super) fn take_f32_or_zeroed(&mut self, len: usize, outlives_pass: bool) -> Buffer<f32> {
        let taken = self.take_for(len, outlives_pass);
        let f32s = taken.and_then(|b| (Box::new(b) as Box<dyn std::any::Any>).downcast::<Buffer<f32>>().ok());
        f32s.map_or_else(|| Buffer::zeroed(len), |b| *b)
    }

    /// [`BufferPool::take`], or [`BufferPool::take_exact`] for a value that outlives the pass.
    fn take_for(&mut self, len: usize, outlives_pass: bool) -> Option<Buffer<T>> {
        if outlives_pass {
            self.take_exact(len)
        } else {
            self.take(len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(len: usize, fill: f32) -> Tensor<f32> {
        Tensor::from_elem(ndarray::IxDyn(&[len]), fill)
    }

    /// Takes a buffer of `len` (fresh if none fits) and makes the value `fill` of it.
    fn produce(pool: &mut BufferPool<f32>, len: usize, fill: f32) -> Tensor<f32> {
        let mut b = pool.take_or_zeroed(len, false);
        b.values().fill(fill);
        b.into_tensor(&[len]).unwrap()
    }

    #[test]
    fn a_lent_pool_comes_back_when_the_pass_stops_early() {
        let spare = SparePool::<f32>::default();
        let failing_pass = || -> Result<(), &str> {
            let mut pool = spare.lend();
            pool.recycle(value(MIN_POOLED, 1.0));
            Err("an op failed")
        };
        assert!(failing_pass().is_err());
        assert!(spare.lend().take(MIN_POOLED).is_some(), "the buffer freed before the error is back in the graph");
    }

    #[test]
    fn passes_side_by_side_each_get_back_their_buffers() {
        let spare = SparePool::<f32>::default();
        for round in 0..3 {
            let (mut first, mut second) = (spare.lend(), spare.lend());
            if round > 0 {
                // Both pools were kept: each pass finds a buffer an earlier pass freed.
                assert!(first.take(MIN_POOLED).is_some() && second.take(MIN_POOLED).is_some(), "round {round}");
            }
            first.recycle(value(MIN_POOLED, 1.0));
            second.recycle(value(MIN_POOLED, 2.0));
        }
        // Twelve passes side by side, twice: each keeps its pool.
        for _ in 0..2 {
            let lent: Vec<_> = (0..12).map(|_| spare.lend()).collect();
            drop(lent);
            assert_eq!(spare.0.lock().unwrap().kept.len(), 12, "one pool per pass that was in flight");
        }
        // One pass at a time again: the pools no pass takes go after MAX_IDLE_PASSES pass ends.
        for _ in 0..MAX_IDLE_PASSES {
            drop(spare.lend());
        }
        let spares = spare.0.lock().unwrap();
        assert_eq!((spares.kept.len(), spares.lent), (1, 0), "idle pools are dropped");
    }

    #[test]
    fn hands_out_the_smallest_buffer_that_fits_within_the_oversize_limit() {
        let mut pool = BufferPool::<f32>::new();
        let n = MIN_POOLED;
        pool.recycle(value(3, 1.0));
        assert!(pool.take(3).is_none(), "small values are not pooled");
        for (len, fill) in [(5 * n, 5.0), (2 * n, 2.0), (3 * n, 3.0), (2 * n, 2.5)] {
            pool.recycle(value(len, fill));
        }
        // The smallest that fits, the newest of equals; the value is the front of it.
        let mut b = pool.take(2 * n - 5).expect("fits");
        assert_eq!((b.values().len(), b.values()[0]), (2 * n - 5, 2.5));
        assert_eq!(pool.take(2 * n).unwrap().values()[0], 2.0);
        assert_eq!(pool.take(2 * n).unwrap().values()[0], 3.0);
        // The 5n buffer left is more than MAX_OVERSIZE times a request of n, and not for one of 2n.
        assert!(pool.take(n).is_none(), "more than MAX_OVERSIZE times the request");
        assert!(pool.take_exact(2 * n).is_none(), "an exact request takes only its own length");
        assert_eq!(pool.take(2 * n).unwrap().values().len(), 2 * n);
        // Exactly MAX_OVERSIZE times the request fits.
        pool.recycle(value(MAX_OVERSIZE * n, 4.0));
        assert_eq!(pool.take(n).unwrap().values()[0], 4.0);
        assert_eq!(pool.held(), 0);
        assert_eq!(pool.bytes, 0);
        // A transposed view's buffer is not in standard order: not pooled.
        pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[MIN_POOLED, 2]), 0.0).reversed_axes());
        assert!(pool.take(2 * MIN_POOLED).is_none());
    }

    #[test]
    fn a_value_made_in_a_longer_buffer_gives_the_whole_buffer_back() {
        let mut pool = BufferPool::<f32>::new();
        let long = 3 * MIN_POOLED;
        pool.recycle(value(long, 7.0));
        let shape = [2, MIN_POOLED / 2];
        let mut b = pool.take(MIN_POOLED).unwrap();
        b.values().iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
        let t = b.into_tensor(&shape).unwrap();
        assert_eq!(t.shape(), &shape);
        assert!(t.is_standard_layout());
        assert_eq!(t[[1, 0]], (MIN_POOLED / 2) as f32);
        assert_eq!(t.iter().count(), MIN_POOLED);
        pool.recycle(t);
        assert_eq!(pool.held(), long * 4, "the whole buffer is back");
        let again = pool.take(long).expect("long enough again");
        assert_eq!(again.data.len(), long);
        assert_eq!(again.data[long - 1], 7.0, "the tail the value did not use is as it was");
        // A shape of another size is an error, not a panic.
        assert!(Buffer::<f32>::zeroed(6).into_tensor(&[4, 2]).is_err());
        assert!(Buffer { data: vec![0.0f32; 8], len: 6 }.into_tensor(&[4, 2]).is_err());
    }

    #[test]
    fn holds_at_most_its_cap_dropping_the_smallest_first() {
        let mut pool = BufferPool::<f32>::new();
        let quarter = MAX_POOLED_BYTES / 4 / 4;
        // Five buffers of a quarter of the cap each, of two lengths: the first of the smaller length goes.
        for (i, len) in [quarter, quarter - 8, quarter, quarter - 8, quarter].into_iter().enumerate() {
            pool.recycle(value(len, i as f32));
        }
        assert!(pool.held() <= MAX_POOLED_BYTES, "{} bytes held", pool.held());
        assert_eq!(pool.held(), pool.bytes);
        assert_eq!([4.0, 2.0, 0.0].map(|_| pool.take(quarter).unwrap().values()[0]), [4.0, 2.0, 0.0]);
        assert_eq!(pool.take(quarter - 8).unwrap().values()[0], 3.0);
        assert!(pool.take(quarter - 8).is_none(), "the oldest of the smaller length was dropped");
        assert_eq!(pool.held(), pool.bytes);
        // Past the cap the idlest goes first, though it is the largest.
        pool.recycle(value(quarter + 8, 9.0));
        pool.end_pass();
        for i in 0..4 {
            pool.recycle(value(quarter, i as f32));
        }
        assert!(pool.take_exact(quarter + 8).is_none(), "the idle buffer was dropped first");
        assert_eq!(pool.held(), 4 * quarter * 4);
    }

    #[test]
    fn drops_buffers_no_request_took_for_max_idle_pass_ends() {
        // Each pass: the graph input comes from outside and is freed after the first layer, whose output is freed
        // after the second. Without the idle limit one more input-sized buffer stayed behind in every pass.
        let mut pool = BufferPool::<f32>::new();
        let (input, output) = (2 * MIN_POOLED, 3 * MIN_POOLED);
        let held: Vec<usize> = (0..12)
            .map(|_| {
                let first = produce(&mut pool, output, 1.0);
                pool.recycle(value(input, 0.0));
                let second = produce(&mut pool, output, 2.0);
                pool.recycle(first);
                pool.recycle(second);
                pool.end_pass();
                pool.held()
            })
            .collect();
        // Two output buffers and the inputs of the last MAX_IDLE_PASSES passes, at most.
        let bound = (2 * output + MAX_IDLE_PASSES as usize * input) * 4;
        assert!(held.iter().all(|&h| h <= bound), "{held:?}");
        assert_eq!(held[11], held[10], "steady: {held:?}");
        // Steady: the input buffers of the passes whose end has not yet pushed them past the idle limit.
        assert_eq!(held[11], (2 * output + (MAX_IDLE_PASSES as usize - 1) * input) * 4, "{held:?}");
        assert_eq!(pool.held(), pool.bytes);
    }

    #[test]
    fn a_buffer_one_kind_of_pass_takes_survives_the_passes_of_other_kinds_between() {
        // An explainer's round: one forward pass, then up to three backward passes. The forward's buffer must
        // outlive the backward passes, and the other way round.
        let mut pool = BufferPool::<f32>::new();
        let (activation, gradient) = (5 * MIN_POOLED, 7 * MIN_POOLED);
        for pass in 0..16 {
            let len = if pass % 4 == 0 { activation } else { gradient };
            let hit = pool.take_exact(len).is_some();
            assert_eq!(hit, pass > 1, "pass {pass}");
            pool.recycle(value(len, 0.0));
            pool.end_pass();
        }
    }

    #[test]
    fn a_large_batch_raises_the_cap_for_as_long_as_its_buffers_may_idle() {
        // A floor of 1 MB; a batch's activation of twice that: it and two more of its size are kept, a fourth is not.
        let mut pool = BufferPool::<f32>::with_floor(1 << 20);
        let len = 2 * (1 << 20) / std::mem::size_of::<f32>();
        for i in 0..4 {
            pool.recycle(value(len, i as f32));
        }
        assert_eq!(pool.held(), LARGEST_VALUES_POOLED * (2 << 20));
        assert_eq!(pool.take(len).unwrap().values()[0], 3.0, "the newest is handed out first");
        pool.end_pass();
        assert_eq!(pool.held(), 2 * (2 << 20), "the next pass still has room for them");
        // Passes of small values only (the backward passes of an explainer's round): the cap stays raised while the
        // large buffers may idle, and they go at the pass end that makes them too idle.
        for pass in 1..MAX_IDLE_PASSES {
            let _ = pool.take(MIN_POOLED);
            pool.recycle(value(MIN_POOLED, 0.0));
            pool.end_pass();
            let large_held = pool.held() >= 2 * (2 << 20);
            assert_eq!(large_held, pass + 1 < MAX_IDLE_PASSES, "after pass {pass}: {} bytes held", pool.held());
        }
        assert!(pool.held() <= 1 << 20, "{} bytes held", pool.held());
        assert!(pool.take(MIN_POOLED).is_some(), "the small value is kept");
    }
}
