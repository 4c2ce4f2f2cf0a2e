//! `Avg` for the types whose sum could overflow: the data travel in a wider
//! type (see [`Widen`]) through the chosen schedule, summed there, and are
//! divided and narrowed once at the end — on every rank alike, so the
//! results are bitwise identical. Moves 8 bytes per u8/i32 element, 16 per
//! i64 element, 4 per f16/bf16 element.

use std::ops::Range;

use half::{bf16, f16};

use super::{Algorithm, Knobs};
use crate::element::{DType, Element, ReduceOp, Widen};
use crate::error::Result;
use crate::scratch::Scratch;
use crate::transport::Transport;

/// The mean of every rank's `input` (or `buf`) into `buf` through `algorithm`
/// in the wider type `T::AVG` names. p ≥ 2. Collective.
pub(crate) fn widened<T: Element, C: Transport + ?Sized>(
    comm: &C,
    algorithm: Algorithm,
    input: Option<&[T]>,
    buf: &mut [T],
    knobs: Knobs,
) -> Result<()> {
    let Some(mut wide) = Wide::of(input.unwrap_or(buf), comm.size()) else {
        return algorithm.run(comm, input, buf, ReduceOp::Avg, knobs);
    };
    wide.sum(&mut AllReduceSum {
        comm,
        algorithm,
        knobs,
    })?;
    wide.narrow(0..buf.len(), buf);
    Ok(())
}

/// A sum over the ranks of a widened vector, in place: a collective that
/// [`Wide::sum`] runs on whichever wider type the values travel in.
pub(crate) trait WideSum {
    /// Sums `wide` (`words` words per element of the narrow vector) over
    /// the ranks with [`ReduceOp::Sum`]. Collective.
    fn sum<W: Element>(&mut self, wide: &mut [W], words: usize) -> Result<()>;
}

struct AllReduceSum<'c, C: ?Sized> {
    comm: &'c C,
    algorithm: Algorithm,
    knobs: Knobs,
}

impl<C: Transport + ?Sized> WideSum for AllReduceSum<'_, C> {
    fn sum<W: Element>(&mut self, wide: &mut [W], _: usize) -> Result<()> {
        self.algorithm
            .run(self.comm, None, wide, ReduceOp::Sum, self.knobs)
    }
}

/// A vector widened for an exact [`ReduceOp::Avg`] over `p` ranks (see
/// [`Widen`]): summed over the ranks in the wider type, then narrowed.
pub(crate) struct Wide {
    words: WideWords,
    p: usize,
}

enum WideWords {
    /// u8, i32: one i64 per element.
    I64(Scratch<i64>),
    /// i64: its high and low halves, two i64 per element.
    HiLo(Scratch<i64>),
    /// f16, bf16: each value divided by p, in f32.
    F32(Scratch<f32>),
}

impl Wide {
    /// `x` widened for the mean over `p` ranks; `None` for the types that
    /// average in their own type (f32, f64).
    pub(crate) fn of<T: Element>(x: &[T], p: usize) -> Option<Wide> {
        let words = match T::AVG {
            Widen::None => return None,
            Widen::I64 => {
                let mut wide = Scratch::<i64>::new(x.len());
                match T::DTYPE {
                    DType::U8 => widen(bytemuck::cast_slice::<T, u8>(x), &mut wide, i64::from),
                    _ => widen(bytemuck::cast_slice::<T, i32>(x), &mut wide, i64::from),
                }
                WideWords::I64(wide)
            }
            Widen::HiLo => {
                // x = hi·2^32 + lo with hi = x >> 32 (signed) and lo the low 32
                // bits (unsigned): each sums in i64 without overflow for p < 2^31.
                let x: &[i64] = bytemuck::cast_slice(x);
                let mut wide = Scratch::<i64>::new(2 * x.len());
                for (w, &v) in wide.chunks_exact_mut(2).zip(x) {
                    w[0] = v >> 32;
                    w[1] = v & 0xffff_ffff;
                }
                WideWords::HiLo(wide)
            }
            Widen::F32 => {
                // Each value is divided by p in f32 before the sum, so the sum
                // stays within f32 even for bf16 (whose range is f32's).
                let mut wide = Scratch::<f32>::new(x.len());
                let d = p as f32;
                match T::DTYPE {
                    DType::F16 => widen(bytemuck::cast_slice::<T, f16>(x), &mut wide, |v| v.to_f32() / d),
                    _ => widen(bytemuck::cast_slice::<T, bf16>(x), &mut wide, |v| v.to_f32() / d),
                }
                WideWords::F32(wide)
            }
        };
        Some(Wide { words, p })
    }

    /// Runs `f` on the wide words.
    pub(crate) fn sum(&mut self, f: &mut impl WideSum) -> Result<()> {
        match &mut self.words {
            WideWords::I64(w) => f.sum(w, 1),
            WideWords::HiLo(w) => f.sum(w, 2),
            WideWords::F32(w) => f.sum(w, 1),
        }
    }

    /// The mean of the elements at `range` (of the narrow vector), narrowed
    /// into `out` (`range.len()` elements).
    pub(crate) fn narrow<T: Element>(&self, range: Range<usize>, out: &mut [T]) {
        let p = self.p as i128;
        match &self.words {
            // The mean of values of the type lies within the type.
            WideWords::I64(wide) => {
                let wide = &wide[range];
                match T::DTYPE {
                    DType::U8 => narrow(wide, bytemuck::cast_slice_mut::<T, u8>(out), |s| {
                        (s as i128 / p) as u8
                    }),
                    _ => narrow(wide, bytemuck::cast_slice_mut::<T, i32>(out), |s| {
                        (s as i128 / p) as i32
                    }),
                }
            }
            WideWords::HiLo(wide) => {
                let wide = &wide[2 * range.start..2 * range.end];
                let out: &mut [i64] = bytemuck::cast_slice_mut(out);
                for (o, w) in out.iter_mut().zip(wide.chunks_exact(2)) {
                    let sum = (i128::from(w[0]) << 32) + i128::from(w[1]);
                    *o = (sum / p) as i64;
                }
            }
            WideWords::F32(wide) => {
                let wide = &wide[range];
                match T::DTYPE {
                    DType::F16 => narrow(wide, bytemuck::cast_slice_mut::<T, f16>(out), f16::from_f32),
                    _ => narrow(wide, bytemuck::cast_slice_mut::<T, bf16>(out), bf16::from_f32),
                }
            }
        }
    }
}

fn widen<S: Copy, W>(x: &[S], wide: &mut [W], f: impl Fn(S) -> W) {
    for (w, &v) in wide.iter_mut().zip(x) {
        *w = f(v);
    }
}

fn narrow<W: Copy, S>(wide: &[W], out: &mut [S], f: impl Fn(W) -> S) {
    for (o, &w) in out.iter_mut().zip(wide) {
        *o = f(w);
    }
}
