//! Reusable scratch buffers for the algorithms.
//!
//! A training loop all-reduces the same gradient size every step; allocating
//! (and page-faulting in) fresh receive buffers each call costs more than a
//! copy of the data. Buffers come from a small per-thread pool and go back
//! to it when dropped, as NCCL and Horovod keep their staging buffers.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use crate::element::Element;

/// Buffers kept per thread; more are freed on return.
const POOL_SIZE: usize = 4;

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
            // The smallest pooled buffer that fits, else the largest to grow.
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, w)| w.len() >= words_needed)
                .min_by_key(|(_, w)| w.len())
                .map(|(i, _)| i)
                .or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
            best.map(|i| pool.swap_remove(i)).unwrap_or_default()
        });
        if words.len() < words_needed {
            words.resize(words_needed, 0);
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
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            pool.push(words);
            if pool.len() > POOL_SIZE {
                // Drop the smallest: the large ones are the costly to remake.
                let smallest = (0..pool.len()).min_by_key(|&i| pool[i].len()).unwrap_or(0);
                pool.swap_remove(smallest);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
