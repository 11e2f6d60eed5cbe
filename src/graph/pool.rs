//! Buffers of values freed during a forward pass, handed to later values of the same length.
//!
//! Activations are freed right after their last reader; the next layers of a CNN often produce values of exactly
//! the same size. Reusing those buffers saves the allocator's work and — for the multi-megabyte ones, which the
//! allocator maps fresh from the kernel — the page faults and the kernel's zeroing of every page. Only the fused
//! convolution kernels take buffers from the pool (they overwrite every element).
//!
//! What a pass leaves in its pool is kept by the graph ([`SparePool`]) for the next pass: otherwise the first layers
//! of every pass would allocate fresh, zero-filled buffers (≈ 6 % of a MobileNetV2 forward went to `memset`).
//!
//! The pool holds at most [`MAX_POOLED_BYTES`], or [`LARGEST_VALUES_POOLED`] times the largest value offered in
//! this pass or the last one when that is more (so one large batch does not leave the graph holding its buffers).
//! Unbounded, it kept every value no later layer reused — most of a network's activations (ResNet-50: ≈ 100 MB). A
//! fixed cap, though, shut out the large activations of a batch (MobileNetV2's 112² expansion is 38.5 MB at batch 8),
//! which allocators map fresh from the kernel on every request: each pass paid their page faults again, and batch 8
//! ran 1.5× slower per image than batch 1.
//!
//! Past the cap it drops first the buffers of lengths no layer has asked for (in this pass or the last), then the
//! smallest: small buffers come back cheaply from the allocator's free lists. Dropping the oldest instead failed on
//! repeated passes: the oldest buffers are the first layers', which the next pass asks for first.
//!
//! At the end of a pass, each length keeps at most as many buffers as layers asked for in this pass or the last.
//! Values that come from outside — the graph input, moved in without a copy — are recycled like any other, so
//! without this bound every pass added one more input-sized buffer no layer would take: in a benchmark loop they
//! filled the cap within 30 passes and then pushed out the small buffers layers did ask for, which each later pass
//! allocated and zeroed afresh (≈ 3 % of a MobileNetV2 forward went to `memset`).

use crate::tensor::Tensor;
use crate::Element;
use std::collections::HashMap;

/// Values smaller than this are left to the allocator (its own free lists serve them well).
const MIN_POOLED: usize = 16 * 1024;

/// Most bytes the pool keeps for small activations: a few of the largest of a 224² CNN at batch 1 (VGG-16's are
/// 12.8 MB).
pub(super) const MAX_POOLED_BYTES: usize = 32 << 20;

/// How many of the largest value the pool may hold: a layer's input and output of that size, and one more for the
/// next layer's output, are what a chain of same-sized layers cycles through.
const LARGEST_VALUES_POOLED: usize = 3;

/// The pool a graph keeps between passes. A pass takes it whole and gives it back when it ends, so concurrent passes
/// on one graph never share a buffer (the second simply starts empty).
pub(super) struct SparePool<T>(std::sync::Mutex<BufferPool<T>>);

impl<T> Default for SparePool<T> {
    fn default() -> Self {
        SparePool(std::sync::Mutex::new(BufferPool::new()))
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
    /// The buffers kept from the last pass (a poisoned lock only means a pass panicked: its buffers are still fine).
    fn take(&self) -> BufferPool<T> {
        std::mem::replace(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()), BufferPool::new())
    }

    /// Keeps what a pass freed for the next one, trimmed to what that pass alone would justify.
    fn put_back(&self, mut pool: BufferPool<T>)
    where
        T: Element,
    {
        pool.end_pass();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = pool;
    }
}

/// Freed buffers by length, and the order they came in.
pub(super) struct BufferPool<T> {
    free: HashMap<usize, Vec<Vec<T>>>,
    /// Lengths of the pooled buffers, oldest first.
    order: std::collections::VecDeque<usize>,
    bytes: usize,
    /// Bytes held however small the values: [`MAX_POOLED_BYTES`] (smaller in tests).
    floor: usize,
    /// Bytes of the largest buffer offered in the last pass and in this one: they set the cap, so one large batch
    /// does not leave a graph holding its buffers for good.
    largest: [usize; 2],
    /// How many buffers of each length layers asked for in the last pass and in this one.
    wanted: [HashMap<usize, usize>; 2],
}

impl<T> BufferPool<T> {
    pub(super) fn new() -> Self {
        BufferPool::with_floor(MAX_POOLED_BYTES)
    }

    fn with_floor(floor: usize) -> Self {
        BufferPool {
            free: HashMap::new(),
            order: Default::default(),
            bytes: 0,
            floor,
            largest: [0; 2],
            wanted: Default::default(),
        }
    }
}

impl<T: Element> BufferPool<T> {
    /// Bytes held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.free.values().flatten().map(|b| b.len() * std::mem::size_of::<T>()).sum()
    }

    /// Most bytes held (see the module's doc).
    fn cap(&self) -> usize {
        let largest = self.largest[0].max(self.largest[1]);
        self.floor.max(LARGEST_VALUES_POOLED.saturating_mul(largest))
    }

    /// Whether a layer asked for buffers of `len` elements in the last pass or this one.
    fn is_wanted(&self, len: usize) -> bool {
        self.wanted.iter().any(|w| w.contains_key(&len))
    }

    /// Ends a pass: each length keeps at most as many buffers as the last two passes asked for (see the module's
    /// doc), what this pass saw becomes "the last pass", and the pool is trimmed to the cap that leaves.
    fn end_pass(&mut self) {
        let size = std::mem::size_of::<T>();
        for (&len, stack) in self.free.iter_mut() {
            let asked = self.wanted.iter().filter_map(|w| w.get(&len)).max().copied().unwrap_or(0);
            let excess = stack.len().saturating_sub(asked);
            // The oldest go: the bottom of the stack, and the first entries of that length in `order`.
            stack.drain(..excess);
            self.bytes -= excess * len * size;
            let mut left = excess;
            self.order.retain(|&l| {
                let drop = l == len && left > 0;
                left -= usize::from(drop);
                !drop
            });
        }
        self.free.retain(|_, stack| !stack.is_empty());
        self.largest = [self.largest[1], 0];
        self.wanted.swap(0, 1);
        self.wanted[1].clear();
        self.trim();
    }

    /// Drops buffers until the pool is within its cap (see the module's doc for the order).
    fn trim(&mut self) {
        while self.bytes > self.cap() {
            // The oldest of a length no layer asked for, else the oldest of the smallest length (`min_by_key` keeps
            // the first of equals). Either is the first entry of its length in `order`: the bottom of its stack.
            let victim = self
                .order
                .iter()
                .position(|&l| !self.is_wanted(l))
                .or_else(|| (0..self.order.len()).min_by_key(|&i| self.order[i]));
            let Some(old) = victim.and_then(|i| self.order.remove(i)) else { break };
            if let Some(stack) = self.free.get_mut(&old).filter(|s| !s.is_empty()) {
                stack.remove(0);
                self.bytes -= old * std::mem::size_of::<T>();
            }
        }
    }

    /// Keeps the buffer of a value nothing reads any more.
    pub(super) fn recycle(&mut self, t: Tensor<T>) {
        if t.len() < MIN_POOLED || !t.is_standard_layout() {
            return;
        }
        let len = t.len();
        let (data, offset) = t.into_raw_vec_and_offset();
        let size = len * std::mem::size_of::<T>();
        if offset != Some(0) || data.len() != len {
            return;
        }
        self.largest[1] = self.largest[1].max(size);
        self.free.entry(len).or_default().push(data);
        self.order.push_back(len);
        self.bytes += size;
        self.trim();
    }

    /// A buffer of exactly `len` elements with unspecified contents, if one was freed; the caller overwrites it.
    pub(super) fn take(&mut self, len: usize) -> Option<Vec<T>> {
        *self.wanted[1].entry(len).or_default() += 1;
        let b = self.free.get_mut(&len).and_then(Vec::pop)?;
        self.bytes -= len * std::mem::size_of::<T>();
        // The newest buffer of that length left: so does the newest entry of its length.
        if let Some(i) = self.order.iter().rposition(|&l| l == len) {
            self.order.remove(i);
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_pool_comes_back_when_the_pass_stops_early() {
        let spare = SparePool::<f32>::default();
        let failing_pass = || -> Result<(), &str> {
            let mut pool = spare.lend();
            assert!(pool.take(MIN_POOLED).is_none());
            pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[MIN_POOLED]), 1.0));
            Err("an op failed")
        };
        assert!(failing_pass().is_err());
        assert!(spare.lend().take(MIN_POOLED).is_some(), "the buffer freed before the error is back in the graph");
    }

    #[test]
    fn hands_back_buffers_of_the_same_length_only() {
        let mut pool = BufferPool::<f32>::new();
        pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[2, MIN_POOLED]), 1.5));
        pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[3]), 1.0));
        assert!(pool.take(3).is_none(), "small values are not pooled");
        assert!(pool.take(MIN_POOLED).is_none());
        let b = pool.take(2 * MIN_POOLED).expect("pooled");
        assert_eq!(b.len(), 2 * MIN_POOLED);
        assert!(pool.take(2 * MIN_POOLED).is_none(), "each buffer is handed out once");
        // A transposed view's buffer is not in standard order: not pooled.
        pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[MIN_POOLED, 2]), 0.0).reversed_axes());
        assert!(pool.take(2 * MIN_POOLED).is_none());
    }

    #[test]
    fn holds_at_most_its_cap_dropping_unasked_lengths_oldest_first() {
        let mut pool = BufferPool::<f32>::new();
        let quarter = MAX_POOLED_BYTES / 4 / 4;
        // Five buffers of a quarter of the cap each, of two lengths: the first one (a `quarter`) is dropped.
        for (i, len) in [quarter, quarter - 8, quarter, quarter - 8, quarter].into_iter().enumerate() {
            pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[len]), i as f32));
        }
        assert!(pool.held() <= MAX_POOLED_BYTES, "{} bytes held", pool.held());
        assert_eq!(pool.held(), pool.bytes);
        let newest = pool.take(quarter).unwrap();
        assert_eq!(newest[0], 4.0);
        assert_eq!(pool.take(quarter).unwrap()[0], 2.0);
        assert!(pool.take(quarter).is_none(), "the oldest was dropped");
        assert_eq!(pool.held(), pool.bytes);
    }

    #[test]
    fn keeps_the_lengths_layers_ask_for_dropping_the_smallest_first() {
        let mut pool = BufferPool::<f32>::new();
        let quarter = MAX_POOLED_BYTES / 4 / 4;
        let (small, large) = (quarter - 8, quarter);
        // Both lengths have been asked for (the pool was empty then).
        assert!(pool.take(small).is_none() && pool.take(large).is_none());
        // An unasked length, then two of each asked length, then one more large buffer: 6 quarters for a cap of 4.
        let unasked = quarter - 16;
        for (i, len) in [unasked, large, small, large, small, large].into_iter().enumerate() {
            pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[len]), i as f32));
        }
        assert!(pool.held() <= MAX_POOLED_BYTES, "{} bytes held", pool.held());
        assert_eq!(pool.held(), pool.bytes);
        assert!(pool.take(unasked).is_none(), "the unasked length goes first, though it is the oldest of all");
        // Then the oldest of the smaller length: every large buffer stays.
        assert_eq!([1.0, 3.0, 5.0].map(|_| pool.take(large).unwrap()[0]), [5.0, 3.0, 1.0]);
        assert_eq!(pool.take(small).unwrap()[0], 4.0);
        assert!(pool.take(small).is_none());
        assert_eq!(pool.held(), 0);
    }

    #[test]
    fn a_value_larger_than_the_floor_raises_the_cap_for_two_passes() {
        // A floor of 1 MB; a batch's activation of twice that: it and two more of its size are kept, a fourth is not.
        let mut pool = BufferPool::<f32>::with_floor(1 << 20);
        let len = 2 * (1 << 20) / std::mem::size_of::<f32>();
        for _ in 0..3 {
            assert!(pool.take(len).is_none());
        }
        for i in 0..4 {
            pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[len]), i as f32));
        }
        assert_eq!(pool.held(), LARGEST_VALUES_POOLED * (2 << 20));
        assert_eq!(pool.take(len).unwrap()[0], 3.0, "the newest is handed out first");
        pool.end_pass();
        assert_eq!(pool.held(), 2 * (2 << 20), "the next pass still has room for them");
        // A pass of small values only: at its end the large buffers go, down to the floor.
        assert!(pool.take(MIN_POOLED).is_none());
        pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[MIN_POOLED]), 0.0));
        pool.end_pass();
        assert!(pool.held() <= 1 << 20, "{} bytes held", pool.held());
        assert!(pool.take(MIN_POOLED).is_some(), "the small value is kept");
    }

    #[test]
    fn keeps_no_more_buffers_of_a_length_than_the_last_two_passes_asked_for() {
        // Each pass: the layer's output is taken (a miss at first), then the graph input, which came from outside,
        // and the output are freed. The input's length is asked for once per pass by a later layer.
        let mut pool = BufferPool::<f32>::new();
        let (input, output) = (2 * MIN_POOLED, 3 * MIN_POOLED);
        let held: Vec<usize> = (0..6)
            .map(|_| {
                let _ = pool.take(output);
                pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[input]), 0.0));
                let reused = pool.take(input).unwrap_or_else(|| vec![0.0; input]);
                pool.recycle(Tensor::from_shape_vec(ndarray::IxDyn(&[input]), reused).unwrap());
                pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[output]), 0.0));
                pool.end_pass();
                pool.held()
            })
            .collect();
        // Without the bound, one more input-sized buffer stays behind in every pass.
        assert_eq!(held, vec![(input + output) * 4; 6]);
        assert_eq!(pool.held(), pool.bytes);
        assert_eq!(pool.order.len(), 2);
        // A length no layer asked for in two passes is not kept at all.
        pool.recycle(Tensor::from_elem(ndarray::IxDyn(&[5 * MIN_POOLED]), 0.0));
        pool.end_pass();
        assert!(pool.take(5 * MIN_POOLED).is_none());
        assert_eq!(pool.held(), pool.bytes);
    }
}
