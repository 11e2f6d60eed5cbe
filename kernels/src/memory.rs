//! How freed memory goes back to the system.
//!
//! A pass allocates and frees megabyte buffers (activations, gradients, im2col scratch) layer after layer. glibc's
//! malloc serves such sizes with fresh `mmap`s and trims freed heap tops back to the system, so each new buffer costs
//! a page fault and a kernel-zeroed page per 4 KB: in a VM, ≈ 2 ms for a 4.8 MB gradient, more than the copy that
//! fills it. Keeping freed memory in the heap lets the next buffer of a similar size reuse those pages.

/// Asks the C allocator to serve large buffers from its heap and keep freed memory for reuse (glibc: the largest
/// `mmap` threshold it allows, 32 MB on 64-bit, and no trimming below 1 GiB of free heap). Buffers above 32 MB are
/// still mapped fresh; the graph's buffer pool keeps those. Memory stays with the process until it exits, so call it
/// from programs that run many passes (the CLI does), not from a library that shares its process.
///
/// Returns whether the allocator took the settings (never on other platforms or C libraries).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's malloc tunables (under its own lock); any value is accepted or refused
        // with a return of 0, and no memory is touched.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_takes_the_settings() {
        // (32-bit glibc caps the threshold lower and refuses 32 MB.)
        let expected = cfg!(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"));
        assert_eq!(super::keep_freed_memory(), expected);
    }
}
