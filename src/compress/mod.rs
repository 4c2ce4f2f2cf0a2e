//! Gradient compression: fewer bytes on the wire, with every byte counted.
//!
//! A compressor is *linear* when every rank encodes in the same basis, so
//! that the sum of the encodings is the encoding of the sum — a cast to a
//! 16-bit float (up to rounding), random-k with a shared seed, PowerSGD's
//! projections. Only linear compressors may travel through an all-reduce;
//! non-linear ones (top-k, QSGD, sign) must be all-gathered. The API keeps
//! the two apart by construction: a linear compressor is a way of running
//! an all-reduce (this module's [`Wire`] is one, through
//! [`Group::all_reduce_wire`](crate::Group::all_reduce_wire)); nothing here
//! hands a non-linear encoding to an all-reduce: the [`Compressor`] trait
//! and its [`Linear`] marker ([`codec`]) make that a compile error.
//!
//! # 16-bit floats on the wire, f32 accumulation
//!
//! [`Wire::F16`] and [`Wire::Bf16`] run the ring with f32 data that travel
//! as 16-bit floats: in the reduce-scatter a rank encodes the partial sum
//! it forwards, decodes what arrives and adds it to its own f32 values *in
//! f32*; the owner of each finished chunk encodes it once, keeps the
//! decoded values itself, and the all-gather forwards those encoded bytes
//! unchanged. Every rank therefore ends with the same bits, and the result
//! has been rounded to 16 bits p times at most (p − 1 forwarded partial
//! sums and the final value) — where casting each gradient to f16 and
//! all-reducing in f16 rounds each rank's input *and* each of the p − 1
//! additions. Half the ring's bytes ([`wire_cost`]).
//!
//! Error bound, per element, for inputs g_1..g_p (f32 arithmetic error
//! aside, which is 2^-24 relative per addition): |result − Σ g_i| ≤
//! p · (u · Σ|g_i| + e), with u = 2^-11 and e = 2^-25 (half of f16's
//! smallest subnormal) for f16, u = 2^-8 and e = 0 for bf16, as long as no
//! partial sum leaves f16's range (±65504; bf16 has f32's).

use std::fmt;
use std::str::FromStr;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::algorithms::{chunk_range, Algorithm, Cost};
use crate::element::{DType, Element, Order, ReduceOp};
use crate::error::{Error, Result};
use crate::transport::Transport;

/// Where a compressed collective spent its time (accumulated).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CodecTimes {
    /// Encoding this rank's values.
    pub encode: std::time::Duration,
    /// The collective call on the codes.
    pub wire: std::time::Duration,
    /// Decoding the result.
    pub decode: std::time::Duration,
}

/// A 16-bit float type f32 data travel as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    /// IEEE binary16: 11 significant bits, range ±65504.
    F16,
    /// bfloat16: 8 significant bits, f32's range.
    Bf16,
}

impl Wire {
    /// Both.
    pub const ALL: [Wire; 2] = [Wire::F16, Wire::Bf16];

    /// The spelling (`fp16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Wire::F16 => "fp16",
            Wire::Bf16 => "bf16",
        }
    }

    /// The element type on the wire.
    pub fn dtype(self) -> DType {
        match self {
            Wire::F16 => DType::F16,
            Wire::Bf16 => DType::BF16,
        }
    }

    /// Bytes per element on the wire.
    pub const BYTES: usize = 2;

    /// The per-element bound's relative unit u (see the module docs).
    pub fn unit(self) -> f64 {
        match self {
            Wire::F16 => 2f64.powi(-11),
            Wire::Bf16 => 2f64.powi(-8),
        }
    }

    /// The per-element bound's absolute term e (see the module docs).
    pub fn floor(self) -> f64 {
        match self {
            Wire::F16 => 2f64.powi(-25),
            Wire::Bf16 => 0.0,
        }
    }

    /// `out[i]` = the bits of `x[i]` rounded to this type (nearest, ties to even).
    pub fn encode(self, x: &[f32], out: &mut [u16]) {
        match self {
            Wire::F16 => bytemuck::cast_slice_mut::<u16, f16>(out).convert_from_f32_slice(x),
            Wire::Bf16 => bytemuck::cast_slice_mut::<u16, bf16>(out).convert_from_f32_slice(x),
        }
    }

    /// `out[i]` = the value of the bits `x[i]`.
    pub fn decode(self, x: &[u16], out: &mut [f32]) {
        match self {
            Wire::F16 => bytemuck::cast_slice::<u16, f16>(x).convert_to_f32_slice(out),
            Wire::Bf16 => bytemuck::cast_slice::<u16, bf16>(x).convert_to_f32_slice(out),
        }
    }
}

impl fmt::Display for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Wire {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp16" | "f16" => Ok(Wire::F16),
            "bf16" => Ok(Wire::Bf16),
            _ => Err(Error::InvalidArgument {
                what: "wire type",
                reason: format!("unknown 16-bit wire type `{s}` (fp16 or bf16)"),
            }),
        }
    }
}

/// Rounds, messages and bytes of [`Group::all_reduce_wire`](crate::Group::all_reduce_wire)
/// on `p` ranks for `count` f32 elements: the ring's schedule with 2-byte
/// elements on the wire (memory traffic aside: it also encodes and decodes).
pub fn wire_cost(p: usize, count: usize) -> Cost {
    Algorithm::Ring
        .exact_cost(p, count, Wire::BYTES)
        .unwrap_or(Cost::saturated(Algorithm::Ring))
}

/// The ring with 16-bit floats on the wire and f32 accumulation (module
/// docs). p ≥ 2 and a non-empty buffer.
pub(crate) fn wire_ring<C: Transport + ?Sized>(
    comm: &C,
    buf: &mut [f32],
    op: ReduceOp,
    wire: Wire,
    times: &mut CodecTimes,
) -> Result<()> {
    // Conversions are timed as encoding and decoding, the rest as the wire.
    let start = std::time::Instant::now();
    let mut enc = std::time::Duration::ZERO;
    let mut dec = std::time::Duration::ZERO;
    let timed = |d: &mut std::time::Duration, f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        f();
        *d += t.elapsed();
    };
    let p = comm.size();
    let r = comm.rank();
    let k = buf.len();
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    let chunk = |i: usize| chunk_range(k, p, i % p);
    let most = chunk(0).len();
    let (mut out, mut inc) = (vec![0u16; most], vec![0u16; most]);
    let mut decoded = vec![0f32; most];

    // Reduce-scatter: forward the partial sum of chunk r − s as 16 bits,
    // add the arriving chunk r − s − 1 to this rank's f32 values in f32.
    for s in 0..p - 1 {
        let send = chunk(r + p - s);
        let recv = chunk(r + 2 * p - s - 1);
        timed(&mut enc, &mut || {
            wire.encode(&buf[send.clone()], &mut out[..send.len()])
        });
        comm.sendrecv(&out[..send.len()], right, &mut inc[..recv.len()], left)?;
        let d = &mut decoded[..recv.len()];
        timed(&mut dec, &mut || wire.decode(&inc[..recv.len()], d));
        f32::reduce(op, &mut buf[recv], d, Order::SrcFirst);
    }

    // Rank r owns the finished chunk r + 1: average it, encode it once and
    // keep what the others will decode.
    let owned = chunk(r + 1);
    super::algorithms::finish(op, &mut buf[owned.clone()], p);
    timed(&mut enc, &mut || {
        wire.encode(&buf[owned.clone()], &mut out[..owned.len()])
    });
    timed(&mut dec, &mut || {
        wire.decode(&out[..owned.len()], &mut buf[owned.clone()])
    });

    // All-gather: forward the encoded chunks unchanged, decode each arrival.
    let mut carried = owned.len();
    for s in 0..p - 1 {
        let recv = chunk(r + p - s);
        comm.sendrecv(&out[..carried], right, &mut inc[..recv.len()], left)?;
        timed(&mut dec, &mut || {
            wire.decode(&inc[..recv.len()], &mut buf[recv.clone()])
        });
        std::mem::swap(&mut out, &mut inc);
        carried = recv.len();
    }
    times.encode += enc;
    times.decode += dec;
    times.wire += start.elapsed().saturating_sub(enc + dec);
    Ok(())
}

pub mod codec;
pub mod topk;

pub use codec::{
    gathered_traffic, reduced_traffic, Cast, CodeTraffic, Compressor, ErrorFeedback, Linear, TopK,
};

#[cfg(test)]
mod tests;
