//! Reusable scratch buffers for the algorithms.
//!
//! A training loop all-reduces the same gradient size every step; allocating
//! (and page-faulting in) fresh receive buffers each call costs more than a
//! copy of the data. Buffers come from a small per-thread pool and go back
//! to it when dropped, as NCCL and Horovod keep their staging buffers — at
//! most [`POOL_SIZE`] of them and [`POOL_BYTES`] in all: a buffer that would
//! take the pool past that is freed instead, so one huge call does not keep
//! its memory for the rest of the process.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use crate::element::Element;

/// Buffers kept per thread; more are freed on return.
pub(crate) const POOL_SIZE: usize = 4;
/// Bytes the pooled buffers of one thread may hold together (256 MiB).
pub(crate) const POOL_BYTES: usize = 256 << 20;

thread_local! {
    static POOL: RefCell<Vec<Vec<u64>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` elements of `T` with unspecified (but initialised)
/// contents, returned to the thread's pool on drop.
pub(crate) struct Scratch<T: Element> {
    words: Vec<u64>,
    fallback: Vec<T>,
    len: usize,
}

impl<T: Element> Scratch<T> {
    /// Takes a pooled buffer of at least `len` elements.
    pub(crate) fn new(len: usize) -> Self {
        let size = std::mem::size_of::<T>();
        if len == 0 || std::mem::align_of::<T>() > std::mem::align_of::<u64>() || size == 0 {
            // Nothing to pool (empty), or exotic element types: a plain allocation.
            return Scratch {
                words: Vec::new(),
                fallback: vec![T::zeroed(); len],
                len,
            };
        }
        let words_needed = (len * size).div_ceil(8);
        let mut words = POOL.with(|p| {
            let mut pool = p.borrow_mut();
            // The smallest pooled buffer that fits (else none: a new one is made).
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, w)| w.len() >= words_needed)
                .min_by_key(|(_, w)| w.len())
                .map(|(i, _)| i);
            best.map(|i| pool.swap_remove(i)).unwrap_or_default()
        });
        if words.len() < words_needed {
            // A fresh zeroed allocation (calloc: the pages are mapped as
            // they are first written, by the transfer itself) rather than
            // growing the old one, which would write every zero up front.
            words = vec![0; words_needed];
        }
        Scratch {
            words,
            fallback: Vec::new(),
            len,
        }
    }
}

impl<T: Element> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        if self.words.is_empty() {
            return &self.fallback[..self.len.min(self.fallback.len())];
        }
        let bytes: &[u8] = bytemuck::cast_slice(&self.words);
        bytemuck::cast_slice(&bytes[..self.len * std::mem::size_of::<T>()])
    }
}

impl<T: Element> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        if self.words.is_empty() {
            let len = self.len.min(self.fallback.len());
            return &mut self.fallback[..len];
        }
        let n = self.len * std::mem::size_of::<T>();
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.words);
        bytemuck::cast_slice_mut(&mut bytes[..n])
    }
}

impl<T: Element> Drop for Scratch<T> {
    fn drop(&mut self) {
        if self.words.is_empty() {
            return;
        }
        let words = std::mem::take(&mut self.words);
        if words.len() * 8 > POOL_BYTES {
            return; // too large to keep: freed here
        }
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            pool.push(words);
            // Over the limits, drop the smallest: the large ones are the
            // costly to remake (and each fits the byte limit alone).
            while pool.len() > POOL_SIZE || pool.iter().map(|w| w.len() * 8).sum::<usize>() > POOL_BYTES {
                let smallest = (0..pool.len()).min_by_key(|&i| pool[i].len()).unwrap_or(0);
                pool.swap_remove(smallest);
            }
        });
    }
}

/// Bytes the pool of this thread holds now.
#[cfg(test)]
fn pooled_bytes() -> usize {
    POOL.with(|p| p.borrow().iter().map(|w| w.len() * 8).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_buffer_is_freed_and_the_pool_stays_under_its_limit() {
        // Regression: after one 2.2 GiB call the pool kept 1.1 GiB per rank.
        {
            let big = Scratch::<u8>::new(POOL_BYTES + 8);
            assert_eq!(big.len(), POOL_BYTES + 8);
        }
        assert!(pooled_bytes() <= POOL_BYTES, "{} bytes pooled", pooled_bytes());
        // Several large-but-allowed buffers at once: kept only up to the limit.
        {
            let held: Vec<Scratch<u8>> = (0..4).map(|_| Scratch::new(POOL_BYTES / 3)).collect();
            assert_eq!(held.len(), 4);
        }
        assert!(pooled_bytes() <= POOL_BYTES, "{} bytes pooled", pooled_bytes());
    }

    #[test]
    fn buffers_are_reused_and_sized() {
        let ptr = {
            let mut a = Scratch::<f32>::new(1000);
            assert_eq!(a.len(), 1000);
            a[999] = 1.5;
            a.as_ptr()
        };
        let b = Scratch::<f32>::new(500);
        assert_eq!(b.len(), 500);
        assert_eq!(b.as_ptr(), ptr, "the pooled buffer was not reused");
        let c = Scratch::<half::f16>::new(3);
        assert_eq!(c.len(), 3);
        let e = Scratch::<u8>::new(0);
        assert!(e.is_empty());
    }
}
