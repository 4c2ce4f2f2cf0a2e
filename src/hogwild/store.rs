//! The shared parameter vector: `f32` values kept as the bits of
//! [`AtomicU32`]s, read and written with [`Ordering::Relaxed`].
//!
//! Racing plain reads and writes are undefined behaviour in Rust, whatever
//! the hardware does (rust-lang/rust#53639). A relaxed atomic load or store
//! of a 32-bit word compiles to the same single `mov` (x86) or `ldr`/`str`
//! (ARM) as a plain access, so the store costs nothing over a `Vec<f32>`
//! (`benches/hogwild.rs` measures it) and has no data race: every thread
//! sees some value some thread wrote, never a torn one. Updates are not
//! atomic read-modify-writes: [`Store::add`] loads, computes and stores, so
//! an update that lands between another thread's load and store is lost,
//! as in Hogwild!'s C++ code. [`Store::add_exact`] is the exact variant (a
//! compare-and-swap loop), to measure what the lost updates cost.
//!
//! [`Weights`] is what the models' update kernels run on: the store, and
//! a single thread's plain `[Cell<f32>]` (the baseline of the benchmark).

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

/// Parameters a model reads and updates one coordinate at a time.
pub trait Weights {
    /// Coordinate `j`.
    fn load(&self, j: usize) -> f32;
    /// Sets coordinate `j`.
    fn store(&self, j: usize, v: f32);
    /// `w[j] += delta`, and the value it read before adding.
    fn add(&self, j: usize, delta: f32) -> f32 {
        let old = self.load(j);
        self.store(j, old + delta);
        old
    }
}

/// Plain memory of one thread: a `&mut [f32]` seen as cells
/// (`Cell::from_mut(slice).as_slice_of_cells()`).
impl Weights for [Cell<f32>] {
    #[inline]
    fn load(&self, j: usize) -> f32 {
        self[j].get()
    }
    #[inline]
    fn store(&self, j: usize, v: f32) {
        self[j].set(v)
    }
}

/// The parameter vector every thread shares.
///
/// ```
/// use ringreduce::hogwild::{Store, Weights};
/// let w = Store::from_slice(&[1.0, 2.0]);
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| for _ in 0..1000 { w.add_exact(0, 1.0); });
///     }
/// });
/// assert_eq!(w.load(0), 2001.0); // exact: no update lost
/// assert_eq!(w.to_vec(), vec![2001.0, 2.0]);
/// ```
#[derive(Debug, Default)]
pub struct Store {
    bits: Vec<AtomicU32>,
}

impl Store {
    /// `n` zeros.
    pub fn zeros(n: usize) -> Store {
        Store {
            bits: (0..n).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// A store holding `values`.
    pub fn from_slice(values: &[f32]) -> Store {
        Store {
            bits: values.iter().map(|v| AtomicU32::new(v.to_bits())).collect(),
        }
    }

    /// Number of coordinates.
    pub fn len(&self) -> usize {
        self.bits.len()
    }

    /// Whether the store has no coordinates.
    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// A copy of every coordinate (each read on its own: under concurrent
    /// updates the copy is not one instant's vector).
    pub fn to_vec(&self) -> Vec<f32> {
        self.bits
            .iter()
            .map(|b| f32::from_bits(b.load(Ordering::Relaxed)))
            .collect()
    }

    /// Copies `values` into the store.
    ///
    /// # Panics
    /// When the lengths differ (a caller's bug).
    pub fn copy_from(&self, values: &[f32]) {
        assert_eq!(values.len(), self.len(), "Store::copy_from: length mismatch");
        for (b, v) in self.bits.iter().zip(values) {
            b.store(v.to_bits(), Ordering::Relaxed);
        }
    }

    /// `w[j] += delta` as one atomic read-modify-write (a compare-and-swap
    /// loop): no concurrent update is lost. Returns the value it replaced.
    #[inline]
    pub fn add_exact(&self, j: usize, delta: f32) -> f32 {
        let prev = self.bits[j]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f32::from_bits(b) + delta).to_bits())
            })
            .unwrap_or_else(|b| b);
        f32::from_bits(prev)
    }

    /// `w[j] = v` only if `w[j]` still holds `expected` (bitwise); whether
    /// it did. Used to *sample* how often a lossy update would have lost
    /// another thread's write.
    #[inline]
    pub fn replace(&self, j: usize, expected: f32, v: f32) -> bool {
        self.bits[j]
            .compare_exchange(
                expected.to_bits(),
                v.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

impl Weights for Store {
    #[inline]
    fn load(&self, j: usize) -> f32 {
        f32::from_bits(self.bits[j].load(Ordering::Relaxed))
    }
    #[inline]
    fn store(&self, j: usize, v: f32) {
        self.bits[j].store(v.to_bits(), Ordering::Relaxed)
    }
}
