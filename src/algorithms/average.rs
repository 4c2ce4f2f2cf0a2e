//! `Avg` for the types whose sum could overflow: the data travel in a wider
//! type (see [`Widen`]) through the chosen schedule, summed there, and are
//! divided and narrowed once at the end — on every rank alike, so the
//! results are bitwise identical. Moves 8 bytes per u8/i32 element, 16 per
//! i64 element, 4 per f16/bf16 element.

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
    let p = comm.size() as i128;
    match T::AVG {
        Widen::None => algorithm.run(comm, input, buf, ReduceOp::Avg, knobs),
        Widen::I64 => {
            let mut wide = Scratch::<i64>::new(buf.len());
            let x = input.unwrap_or(buf);
            match T::DTYPE {
                DType::U8 => widen(bytemuck::cast_slice::<T, u8>(x), &mut wide, i64::from),
                _ => widen(bytemuck::cast_slice::<T, i32>(x), &mut wide, i64::from),
            }
            algorithm.run(comm, None, &mut wide, ReduceOp::Sum, knobs)?;
            // The mean of values of the type lies within the type.
            match T::DTYPE {
                DType::U8 => narrow(&wide, bytemuck::cast_slice_mut::<T, u8>(buf), |s| {
                    (s as i128 / p) as u8
                }),
                _ => narrow(&wide, bytemuck::cast_slice_mut::<T, i32>(buf), |s| {
                    (s as i128 / p) as i32
                }),
            }
            Ok(())
        }
        Widen::HiLo => {
            // x = hi·2^32 + lo with hi = x >> 32 (signed) and lo the low 32
            // bits (unsigned): each sums in i64 without overflow for p < 2^31.
            let x: &[i64] = bytemuck::cast_slice(input.unwrap_or(buf));
            let mut wide = Scratch::<i64>::new(2 * x.len());
            for (w, &v) in wide.chunks_exact_mut(2).zip(x) {
                w[0] = v >> 32;
                w[1] = v & 0xffff_ffff;
            }
            algorithm.run(comm, None, &mut wide, ReduceOp::Sum, knobs)?;
            let out: &mut [i64] = bytemuck::cast_slice_mut(buf);
            for (o, w) in out.iter_mut().zip(wide.chunks_exact(2)) {
                let sum = (i128::from(w[0]) << 32) + i128::from(w[1]);
                *o = (sum / p) as i64;
            }
            Ok(())
        }
        Widen::F32 => {
            // Each value is divided by p in f32 before the sum, so the sum
            // stays within f32 even for bf16 (whose range is f32's).
            let mut wide = Scratch::<f32>::new(buf.len());
            let x = input.unwrap_or(buf);
            let d = p as f32;
            match T::DTYPE {
                DType::F16 => widen(bytemuck::cast_slice::<T, f16>(x), &mut wide, |v| v.to_f32() / d),
                _ => widen(bytemuck::cast_slice::<T, bf16>(x), &mut wide, |v| v.to_f32() / d),
            }
            algorithm.run(comm, None, &mut wide, ReduceOp::Sum, knobs)?;
            match T::DTYPE {
                DType::F16 => narrow(&wide, bytemuck::cast_slice_mut::<T, f16>(buf), f16::from_f32),
                _ => narrow(&wide, bytemuck::cast_slice_mut::<T, bf16>(buf), bf16::from_f32),
            }
            Ok(())
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
