//! Element types, reduce operations and the local reduce kernels.
//!
//! Every kernel is a straight loop over two slices, monomorphised per
//! element type, operation and operand order, so the compiler vectorises it
//! and no per-element dynamic dispatch happens. 16-bit floats are widened to
//! `f32` in blocks (using `half`'s slice conversions, which use F16C where the
//! CPU has it), reduced in `f32`, and narrowed back.

use std::fmt;
use std::str::FromStr;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::error::{Error, Result};

/// The element types the library reduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE-754 binary32.
    F32,
    /// IEEE-754 binary64.
    F64,
    /// IEEE-754 binary16 (`half::f16`); reduced in `f32`.
    F16,
    /// bfloat16 (`half::bf16`); reduced in `f32`.
    BF16,
    /// 32-bit signed integer; arithmetic wraps like C's two's complement.
    I32,
    /// 64-bit signed integer; arithmetic wraps.
    I64,
    /// 8-bit unsigned integer; arithmetic wraps.
    U8,
}

impl DType {
    /// Every element type, in a fixed order.
    pub const ALL: [DType; 7] = [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I32,
        DType::I64,
        DType::U8,
    ];

    /// The lower-case name used on the command line (`f32`, `bf16`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
        }
    }

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 => 1,
        }
    }

    /// Whether the type is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        DType::ALL
            .into_iter()
            .find(|d| d.name() == lower || (lower == "float" && *d == DType::F32))
            .ok_or_else(|| Error::UnknownName {
                kind: "dtype",
                name: s.to_string(),
                expected: names(DType::ALL.iter().map(|d| d.name())),
            })
    }
}

/// The reduce operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Element-wise sum (integers wrap).
    Sum,
    /// Element-wise product (integers wrap).
    Prod,
    /// Element-wise minimum. For floats a NaN in either operand gives NaN.
    Min,
    /// Element-wise maximum. For floats a NaN in either operand gives NaN.
    Max,
    /// Sum, then divided by the number of ranks (integers: truncating division).
    Avg,
}

impl ReduceOp {
    /// Every operation, in a fixed order.
    pub const ALL: [ReduceOp; 5] = [
        ReduceOp::Sum,
        ReduceOp::Prod,
        ReduceOp::Min,
        ReduceOp::Max,
        ReduceOp::Avg,
    ];

    /// The lower-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Prod => "prod",
            ReduceOp::Min => "min",
            ReduceOp::Max => "max",
            ReduceOp::Avg => "avg",
        }
    }
}

impl fmt::Display for ReduceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReduceOp {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        ReduceOp::ALL
            .into_iter()
            .find(|o| o.name() == lower)
            .ok_or_else(|| Error::UnknownName {
                kind: "op",
                name: s.to_string(),
                expected: names(ReduceOp::ALL.iter().map(|o| o.name())),
            })
    }
}

pub(crate) fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// Which operand of a reduction comes first.
///
/// Floating-point operations are not associative, and even `min`/`max` can
/// depend on operand order (`-0.0` vs `0.0`, NaN payloads). Algorithms name
/// the order explicitly so that every rank evaluates the *same* expression
/// and ends with bitwise identical results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// `acc = op(acc, src)`
    AccFirst,
    /// `acc = op(src, acc)`
    SrcFirst,
}

/// A type that can be all-reduced.
///
/// Implemented for `f32`, `f64`, `half::f16`, `half::bf16`, `i32`, `i64` and `u8`.
pub trait Element: bytemuck::Pod + Send + Sync + PartialEq + fmt::Debug + fmt::Display + 'static {
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// Machine epsilon as `f64` (0 for integers): the unit of tolerance when
    /// results are compared across summation orders.
    const EPSILON: f64;

    /// Element-wise `acc[i] = op(acc[i], src[i])` (or `op(src[i], acc[i])` for
    /// [`Order::SrcFirst`]). `Avg` reduces like `Sum`; the division is done
    /// once at the end by [`Element::divide`].
    ///
    /// # Panics
    /// If the slices differ in length (an internal invariant, not user input).
    fn reduce(op: ReduceOp, acc: &mut [Self], src: &[Self], order: Order);

    /// Divides every element by `n` (the last step of `Avg`).
    fn divide(buf: &mut [Self], n: usize);

    /// The value as `f64`, for reports and tolerance checks.
    fn to_f64(self) -> f64;
}

/// Applies `f` element-wise; the loop the compiler vectorises.
#[inline(always)]
fn zip_apply<T: Copy>(acc: &mut [T], src: &[T], f: impl Fn(T, T) -> T) {
    assert_eq!(acc.len(), src.len(), "reduce kernel on unequal slices");
    for (a, &s) in acc.iter_mut().zip(src) {
        *a = f(*a, s);
    }
}

/// Applies `f` with the operand order fixed at compile time per branch.
#[inline(always)]
fn ordered<T: Copy>(acc: &mut [T], src: &[T], order: Order, f: impl Fn(T, T) -> T + Copy) {
    match order {
        Order::AccFirst => zip_apply(acc, src, f),
        Order::SrcFirst => zip_apply(acc, src, move |a, s| f(s, a)),
    }
}

macro_rules! float_element {
    ($t:ty, $dtype:expr) => {
        impl Element for $t {
            const DTYPE: DType = $dtype;
            const EPSILON: f64 = <$t>::EPSILON as f64;

            fn reduce(op: ReduceOp, acc: &mut [Self], src: &[Self], order: Order) {
                match op {
                    ReduceOp::Sum | ReduceOp::Avg => ordered(acc, src, order, |a, b| a + b),
                    ReduceOp::Prod => ordered(acc, src, order, |a, b| a * b),
                    ReduceOp::Min => ordered(acc, src, order, |a: $t, b: $t| {
                        if a.is_nan() || b.is_nan() {
                            a + b
                        } else if b < a {
                            b
                        } else {
                            a
                        }
                    }),
                    ReduceOp::Max => ordered(acc, src, order, |a: $t, b: $t| {
                        if a.is_nan() || b.is_nan() {
                            a + b
                        } else if b > a {
                            b
                        } else {
                            a
                        }
                    }),
                }
            }

            fn divide(buf: &mut [Self], n: usize) {
                let d = n as $t;
                for x in buf {
                    *x /= d;
                }
            }

            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}

float_element!(f32, DType::F32);
float_element!(f64, DType::F64);

macro_rules! int_element {
    ($t:ty, $dtype:expr) => {
        impl Element for $t {
            const DTYPE: DType = $dtype;
            const EPSILON: f64 = 0.0;

            fn reduce(op: ReduceOp, acc: &mut [Self], src: &[Self], order: Order) {
                // Wrapping arithmetic and min/max are commutative, so the
                // order does not change the bits; it is ignored.
                let _ = order;
                match op {
                    ReduceOp::Sum | ReduceOp::Avg => zip_apply(acc, src, <$t>::wrapping_add),
                    ReduceOp::Prod => zip_apply(acc, src, <$t>::wrapping_mul),
                    ReduceOp::Min => zip_apply(acc, src, |a: $t, b: $t| a.min(b)),
                    ReduceOp::Max => zip_apply(acc, src, |a: $t, b: $t| a.max(b)),
                }
            }

            fn divide(buf: &mut [Self], n: usize) {
                // Divide in i128 so a rank count larger than the type's range
                // (e.g. 300 ranks and u8) still divides correctly.
                let d = n as i128;
                for x in buf {
                    *x = (*x as i128 / d) as $t;
                }
            }

            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}

int_element!(i32, DType::I32);
int_element!(i64, DType::I64);
int_element!(u8, DType::U8);

/// Block length for widening 16-bit floats (fits two `f32` blocks in L1).
const HALF_BLOCK: usize = 512;

macro_rules! half_element {
    ($t:ty, $dtype:expr) => {
        impl Element for $t {
            const DTYPE: DType = $dtype;
            const EPSILON: f64 = <$t>::EPSILON.to_f64_const();

            fn reduce(op: ReduceOp, acc: &mut [Self], src: &[Self], order: Order) {
                assert_eq!(acc.len(), src.len(), "reduce kernel on unequal slices");
                let mut wa = [0f32; HALF_BLOCK];
                let mut ws = [0f32; HALF_BLOCK];
                for (a, s) in acc.chunks_mut(HALF_BLOCK).zip(src.chunks(HALF_BLOCK)) {
                    let n = a.len();
                    a.convert_to_f32_slice(&mut wa[..n]);
                    s.convert_to_f32_slice(&mut ws[..n]);
                    f32::reduce(op, &mut wa[..n], &ws[..n], order);
                    a.convert_from_f32_slice(&wa[..n]);
                }
            }

            fn divide(buf: &mut [Self], n: usize) {
                let d = n as f32;
                for x in buf {
                    *x = <$t>::from_f32(x.to_f32() / d);
                }
            }

            fn to_f64(self) -> f64 {
                <$t>::to_f64(self)
            }
        }
    };
}

half_element!(f16, DType::F16);
half_element!(bf16, DType::BF16);

/// Calls `$body` with the type alias `$T` bound to the Rust type of a runtime [`DType`].
///
/// ```
/// use ringreduce::{with_dtype, DType, Element};
/// let size = with_dtype!(DType::BF16, T => std::mem::size_of::<T>());
/// assert_eq!(size, 2);
/// ```
#[macro_export]
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::F16 => {
                type $T = $crate::half::f16;
                $body
            }
            $crate::DType::BF16 => {
                type $T = $crate::half::bf16;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        for o in ReduceOp::ALL {
            assert_eq!(o.name().parse::<ReduceOp>().unwrap(), o);
        }
        let err = "f8".parse::<DType>().unwrap_err();
        assert!(err.to_string().contains("unknown dtype `f8`"), "{err}");
    }

    #[test]
    fn float_kernels() {
        let mut a = vec![1.0f32, -2.0, 3.0, f32::NAN];
        let b = vec![4.0f32, 5.0, -6.0, 1.0];
        f32::reduce(ReduceOp::Sum, &mut a, &b, Order::AccFirst);
        assert_eq!(&a[..3], &[5.0, 3.0, -3.0]);
        assert!(a[3].is_nan());
        let mut m = vec![1.0f64, 7.0, f64::NAN];
        f64::reduce(ReduceOp::Max, &mut m, &[2.0, 3.0, 0.0], Order::SrcFirst);
        assert_eq!(&m[..2], &[2.0, 7.0]);
        assert!(m[2].is_nan(), "max must propagate NaN");
        let mut p = vec![2.0f64, 3.0];
        f64::reduce(ReduceOp::Prod, &mut p, &[4.0, 0.5], Order::AccFirst);
        assert_eq!(p, vec![8.0, 1.5]);
    }

    #[test]
    fn int_kernels_wrap_and_divide() {
        let mut a = vec![250u8, 3];
        u8::reduce(ReduceOp::Sum, &mut a, &[10, 4], Order::AccFirst);
        assert_eq!(a, vec![4, 7]);
        let mut d = vec![255u8, 9];
        u8::divide(&mut d, 300);
        assert_eq!(d, vec![0, 0]);
        let mut i = vec![-7i32, 9];
        i32::divide(&mut i, 2);
        assert_eq!(i, vec![-3, 4]);
        let mut m = vec![i64::MAX, -5];
        i64::reduce(ReduceOp::Min, &mut m, &[0, -9], Order::AccFirst);
        assert_eq!(m, vec![0, -9]);
    }

    #[test]
    fn half_kernels_cross_block_boundary() {
        let n = HALF_BLOCK * 2 + 3;
        let mut a: Vec<f16> = (0..n).map(|i| f16::from_f32((i % 7) as f32)).collect();
        let b: Vec<f16> = (0..n).map(|i| f16::from_f32((i % 5) as f32)).collect();
        f16::reduce(ReduceOp::Sum, &mut a, &b, Order::AccFirst);
        for (i, x) in a.iter().enumerate() {
            assert_eq!(x.to_f32(), ((i % 7) + (i % 5)) as f32, "index {i}");
        }
        let mut h = vec![bf16::from_f32(3.0); 3];
        bf16::divide(&mut h, 2);
        assert_eq!(h[0].to_f32(), 1.5);
    }
}
