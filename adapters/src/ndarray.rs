//! ndarray arrays as the flat slices of [`DataParallel`], without copies.
//!
//! ```
//! use ndarray::{Array1, Array2};
//! use ringreduce::train::{DataParallel, GradientAllReduce};
//! use ringreduce::Group;
//! use ringreduce_adapters::ndarray::{flat, flat_mut, shape};
//! let out = Group::local(2, |g| {
//!     let w = Array2::<f32>::from_elem((3, 4), g.rank() as f32);
//!     let mut params = Array1::<f32>::zeros(12 + 4); // every tensor in one array
//!     let ws = shape(&w);
//!     let mut ddp = DataParallel::new(&g, &[ws.as_slice(), &[4]], GradientAllReduce::default()).unwrap();
//!     ddp.broadcast_parameters(flat_mut(&mut params).unwrap(), 0).unwrap();
//!     let grad_b = Array1::<f32>::ones(4);
//!     ddp.step(flat_mut(&mut params).unwrap(), |sync| {
//!         sync.mark_ready(1, flat(&grad_b)?)?;
//!         sync.mark_ready(0, flat(&w)?) // the "gradient" of w: the rank's value
//!     })
//!     .unwrap();
//!     ddp.grad_of(0)[0]
//! });
//! assert_eq!(out, vec![0.5, 0.5]);
//! ```

use ndarray::{ArrayBase, Data, DataMut, Dimension};
use ringreduce::{Error, Result};

/// The elements of `a` in memory order, as one slice: what
/// [`GradientSync::mark_ready`](ringreduce::train::GradientSync::mark_ready)
/// and the parameter buffers take. No copy.
///
/// # Errors
/// An array whose elements are not contiguous in memory (a strided view):
/// make it standard-layout first (`as_standard_layout`).
pub fn flat<S: Data<Elem = f32>, D: Dimension>(a: &ArrayBase<S, D>) -> Result<&[f32]> {
    a.as_slice_memory_order().ok_or_else(|| not_contiguous(a.shape()))
}

/// [`flat`], writable: an array as the parameter buffer of
/// [`DataParallel::step`](ringreduce::train::DataParallel::step). No copy.
///
/// # Errors
/// As [`flat`].
pub fn flat_mut<S: DataMut<Elem = f32>, D: Dimension>(a: &mut ArrayBase<S, D>) -> Result<&mut [f32]> {
    let shape = a.shape().to_vec();
    a.as_slice_memory_order_mut()
        .ok_or_else(|| not_contiguous(&shape))
}

/// The shape of `a`, to register it with [`DataParallel::new`](ringreduce::train::DataParallel::new).
pub fn shape<S: Data<Elem = f32>, D: Dimension>(a: &ArrayBase<S, D>) -> Vec<usize> {
    a.shape().to_vec()
}

fn not_contiguous(shape: &[usize]) -> Error {
    Error::InvalidArgument {
        what: "ndarray array",
        reason: format!("the {shape:?} array is not contiguous in memory; use as_standard_layout() first"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    #[test]
    fn views_share_the_arrays_memory() {
        let mut a = Array2::<f32>::zeros((3, 4));
        let ptr = a.as_ptr();
        assert_eq!(flat(&a).unwrap().as_ptr(), ptr);
        flat_mut(&mut a).unwrap()[5] = 2.0;
        assert_eq!(a[[1, 1]], 2.0);
        // Column-major is contiguous too, in its memory order.
        let t = a.t();
        assert_eq!(flat(&t).unwrap()[5], 2.0);
    }

    #[test]
    fn a_strided_view_is_refused_with_the_way_out() {
        let a = Array2::<f32>::zeros((4, 4));
        let every_other = a.slice(s![.., ..;2]);
        let e = flat(&every_other).unwrap_err().to_string();
        assert!(
            e.contains("[4, 2] array is not contiguous") && e.contains("as_standard_layout"),
            "{e}"
        );
    }
}
