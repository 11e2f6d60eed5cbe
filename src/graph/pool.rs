//! Buffers of values freed during a forward pass, handed to later values of the same length.
//!
//! Activations are freed right after their last reader; the next layers of a CNN often produce values of exactly
//! the same size. Reusing those buffers saves the allocator's work and — for the multi-megabyte ones, which the
//! allocator maps fresh from the kernel — the page faults and the kernel's zeroing of every page. Only the fused
//! convolution kernels take buffers from the pool (they overwrite every element); nothing is pooled across passes.

use crate::tensor::Tensor;
use crate::Element;
use std::collections::HashMap;

/// Values smaller than this are left to the allocator (its own free lists serve them well).
const MIN_POOLED: usize = 16 * 1024;

/// Freed buffers by length.
pub(super) struct BufferPool<T> {
    free: HashMap<usize, Vec<Vec<T>>>,
}

impl<T: Element> BufferPool<T> {
    pub(super) fn new() -> Self {
        BufferPool { free: HashMap::new() }
    }

    /// Keeps the buffer of a value nothing reads any more.
    pub(super) fn recycle(&mut self, t: Tensor<T>) {
        if t.len() < MIN_POOLED || !t.is_standard_layout() {
            return;
        }
        let len = t.len();
        let (data, offset) = t.into_raw_vec_and_offset();
        if offset == Some(0) && data.len() == len {
            self.free.entry(len).or_default().push(data);
        }
    }

    /// A buffer of exactly `len` elements with unspecified contents, if one was freed; the caller overwrites it.
    pub(super) fn take(&mut self, len: usize) -> Option<Vec<T>> {
        self.free.get_mut(&len).and_then(Vec::pop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
