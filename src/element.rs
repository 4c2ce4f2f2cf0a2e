//! Element types, reduce operations and the local reduce kernels.
//!
//! Every kernel is a straight loop over two slices, monomorphised per
//! element type, operation and operand order, so the compiler vectorises it
//! and no per-element dynamic dispatch happens. 16-bit floats are widened to
//! `f32` in blocks (using `half`'s slice conversions, which use F16C where the
//! CPU has it), reduced in `f32`, and narrowed back.

use std::fmt;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::error::{Error, Result};

/// Parses one of `all` by its name (any case) or one of `aliases`.
///
/// # Errors
/// [`Error::UnknownName`] listing the accepted names.
pub(crate) fn parse_name<T: Copy>(
    s: &str,
    kind: &'static str,
    all: &[T],
    name: fn(T) -> &'static str,
    aliases: &[(&str, T)],
) -> Result<T> {
    let lower = s.to_ascii_lowercase();
    all.iter()
        .copied()
        .find(|&x| name(x) == lower)
        .or_else(|| aliases.iter().find(|(a, _)| *a == lower).map(|&(_, x)| x))
        .ok_or_else(|| Error::UnknownName {
            kind,
            name: s.to_string(),
            expected: all.iter().map(|&x| name(x)).collect::<Vec<_>>().join(", "),
        })
}

/// `Display` and `FromStr` through a type's `name()`, accepting the names
/// of `$all` (and the aliases) as an error of kind `$kind` says.
macro_rules! named {
    ($t:ty, $kind:literal, $all:expr $(, $alias:literal => $value:expr)*) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $t {
            type Err = $crate::error::Error;
            fn from_str(s: &str) -> $crate::error::Result<Self> {
                $crate::element::parse_name(s, $kind, &$all, <$t>::name, &[$(($alias, $value)),*])
            }
        }
    };
}
pub(crate) use named;

/// The element types the library reduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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

    /// The MPI datatype's name in `osu_allreduce`'s header (16-bit floats
    /// travel as `MPI_UINT16_T`).
    pub fn mpi_name(self) -> &'static str {
        match self {
            DType::F32 => "MPI_FLOAT",
            DType::F64 => "MPI_DOUBLE",
            DType::I32 => "MPI_INT",
            DType::I64 => "MPI_LONG",
            DType::U8 => "MPI_CHAR",
            DType::F16 | DType::BF16 => "MPI_UINT16_T",
        }
    }

    /// Bytes per element.
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

named!(DType, "dtype", DType::ALL, "float" => DType::F32);

/// The reduce operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReduceOp {
    /// Element-wise sum (integers wrap).
    Sum,
    /// Element-wise product (integers wrap).
    Prod,
    /// Element-wise minimum. For floats a NaN in either operand gives NaN.
    Min,
    /// Element-wise maximum. For floats a NaN in either operand gives NaN.
    Max,
    /// The mean over the ranks. f32, f64: the sum, then divided by the rank
    /// count. Integers: the exact mean (summed in a wider type, so it cannot
    /// wrap), truncated toward zero. f16, bf16: each value divided by the
    /// rank count and summed in f32, rounded to the type once. See [`Widen`].
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

named!(ReduceOp, "op", ReduceOp::ALL);

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
    /// once at the end by [`Element::divide`]. For floats every NaN result is
    /// the type's one canonical quiet NaN (`f32::NAN`: 0x7fc00000, f64
    /// 0x7ff8…, f16 0x7e00, bf16 0x7fc0), whatever the operands' signs and
    /// payloads, so results are bitwise identical on every rank.
    ///
    /// # Panics
    /// If the slices differ in length (an internal invariant, not user input).
    fn reduce(op: ReduceOp, acc: &mut [Self], src: &[Self], order: Order);

    /// Element-wise `dst[i] = op(a[i], b[i])`: a reduction that writes to a
    /// third buffer (the out-of-place ring uses it to skip copying its input).
    /// Bitwise the same as copying `a` into `dst` and reducing `b` into it.
    ///
    /// # Panics
    /// If the slices differ in length (an internal invariant, not user input).
    fn reduce_into(op: ReduceOp, dst: &mut [Self], a: &[Self], b: &[Self]) {
        dst.copy_from_slice(a);
        Self::reduce(op, dst, b, Order::AccFirst);
    }

    /// `dst = src`: every copy a schedule makes of element data goes
    /// through here, so that its memory traffic can be counted (the cost
    /// model's `memory_bytes`) the way the reductions are.
    ///
    /// # Panics
    /// If the slices differ in length (an internal invariant, not user input).
    fn copy(dst: &mut [Self], src: &[Self]) {
        dst.copy_from_slice(src);
    }

    /// Divides every element by `n` (the last step of `Avg`).
    fn divide(buf: &mut [Self], n: usize);

    /// How `Avg` travels for this type: summed in the type itself, then
    /// divided (the default), or in a wider one so the sum cannot overflow.
    const AVG: Widen = Widen::None;

    /// The value as `f64`, for reports and tolerance checks.
    fn to_f64(self) -> f64;
}

/// How [`ReduceOp::Avg`] of a type is computed (see [`Element::AVG`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Widen {
    /// Sum in the type, then divide: f32 and f64 (the average overflows to
    /// ±inf exactly when the sum does, |Σx| > the type's maximum).
    None,
    /// Sum exactly in i64, divide truncating toward zero, narrow: u8, i32.
    I64,
    /// Sum the high and low 32-bit halves in two i64 words each, combine
    /// exactly in i128, divide truncating toward zero: i64.
    HiLo,
    /// Divide each value by the rank count in f32, sum in f32, round to the
    /// type once: f16, bf16 (bf16 shares f32's range, so the sum of the
    /// undivided values could overflow f32 too).
    F32,
}

/// Applies `f` element-wise; the loop the compiler vectorises.
#[inline(always)]
fn zip_apply<T: Copy>(acc: &mut [T], src: &[T], f: impl Fn(T, T) -> T) {
    assert_eq!(acc.len(), src.len(), "reduce kernel on unequal slices");
    for (a, &s) in acc.iter_mut().zip(src) {
        *a = f(*a, s);
    }
}

/// `dst = f(a, b)` element-wise; the three-buffer loop.
#[inline(always)]
fn zip3_apply<T: Copy>(dst: &mut [T], a: &[T], b: &[T], f: impl Fn(T, T) -> T) {
    assert!(
        dst.len() == a.len() && a.len() == b.len(),
        "reduce kernel on unequal slices"
    );
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = f(x, y);
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

/// Runs `$kernel!(args)` compiled for AVX2 when the CPU has it (the NaN
/// selects of the float kernels are blends there; plain SSE2 has none),
/// and for the baseline target otherwise.
macro_rules! with_avx2 {
    ($kernel:ident($($arg:ident: $ty:ty),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) {
                $kernel($($arg),*)
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above); the function
                // is the portable kernel compiled with AVX2 enabled.
                unsafe { avx2($($arg),*) };
                return;
            }
        }
        $kernel($($arg),*)
    }};
}

macro_rules! float_element {
    ($t:ty, $dtype:expr) => {
        impl Element for $t {
            const DTYPE: DType = $dtype;
            const EPSILON: f64 = <$t>::EPSILON as f64;

            fn reduce(op: ReduceOp, acc: &mut [Self], src: &[Self], order: Order) {
                // Every NaN result is the one canonical quiet NaN: the
                // hardware picks a NaN operand's payload by operand order,
                // which the compiler is free to swap (`+` commutes).
                #[inline(always)]
                fn kernel(op: ReduceOp, acc: &mut [$t], src: &[$t], order: Order) {
                    let canon = |x: $t| if x.is_nan() { <$t>::NAN } else { x };
                    match op {
                        ReduceOp::Sum | ReduceOp::Avg => ordered(acc, src, order, |a, b| canon(a + b)),
                        ReduceOp::Prod => ordered(acc, src, order, |a, b| canon(a * b)),
                        ReduceOp::Min => ordered(acc, src, order, |a: $t, b: $t| {
                            if a.is_nan() || b.is_nan() {
                                <$t>::NAN
                            } else if b < a {
                                b
                            } else {
                                a
                            }
                        }),
                        ReduceOp::Max => ordered(acc, src, order, |a: $t, b: $t| {
                            if a.is_nan() || b.is_nan() {
                                <$t>::NAN
                            } else if b > a {
                                b
                            } else {
                                a
                            }
                        }),
                    }
                }
                with_avx2!(kernel(op: ReduceOp, acc: &mut [$t], src: &[$t], order: Order))
            }

            fn reduce_into(op: ReduceOp, dst: &mut [Self], a: &[Self], b: &[Self]) {
                #[inline(always)]
                fn kernel(op: ReduceOp, dst: &mut [$t], a: &[$t], b: &[$t]) {
                    let canon = |x: $t| if x.is_nan() { <$t>::NAN } else { x };
                    match op {
                        ReduceOp::Sum | ReduceOp::Avg => zip3_apply(dst, a, b, |x, y| canon(x + y)),
                        ReduceOp::Prod => zip3_apply(dst, a, b, |x, y| canon(x * y)),
                        _ => {
                            dst.copy_from_slice(a);
                            <$t as Element>::reduce(op, dst, b, Order::AccFirst);
                        }
                    }
                }
                with_avx2!(kernel(op: ReduceOp, dst: &mut [$t], a: &[$t], b: &[$t]))
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
    ($t:ty, $dtype:expr, $widen:expr) => {
        impl Element for $t {
            const DTYPE: DType = $dtype;
            const EPSILON: f64 = 0.0;
            const AVG: Widen = $widen;

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

            fn reduce_into(op: ReduceOp, dst: &mut [Self], a: &[Self], b: &[Self]) {
                match op {
                    ReduceOp::Sum | ReduceOp::Avg => zip3_apply(dst, a, b, <$t>::wrapping_add),
                    ReduceOp::Prod => zip3_apply(dst, a, b, <$t>::wrapping_mul),
                    ReduceOp::Min => zip3_apply(dst, a, b, |x: $t, y: $t| x.min(y)),
                    ReduceOp::Max => zip3_apply(dst, a, b, |x: $t, y: $t| x.max(y)),
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

int_element!(i32, DType::I32, Widen::I64);
int_element!(i64, DType::I64, Widen::HiLo);
int_element!(u8, DType::U8, Widen::I64);

/// Block length for widening 16-bit floats (fits two `f32` blocks in L1).
const HALF_BLOCK: usize = 512;

macro_rules! half_element {
    ($t:ty, $dtype:expr, $fast:path) => {
        impl Element for $t {
            const DTYPE: DType = $dtype;
            const EPSILON: f64 = <$t>::EPSILON.to_f64_const();
            const AVG: Widen = Widen::F32;

            fn reduce(op: ReduceOp, acc: &mut [Self], src: &[Self], order: Order) {
                assert_eq!(acc.len(), src.len(), "reduce kernel on unequal slices");
                if $fast(op, acc, src, order) {
                    return;
                }
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

half_element!(f16, DType::F16, f16_fast_path);
half_element!(bf16, DType::BF16, bf16_fast_path);

/// The one quiet NaN every NaN result becomes (see `Element::reduce`).
#[inline(always)]
fn canon_f32(x: f32) -> f32 {
    if x.is_nan() {
        f32::NAN
    } else {
        x
    }
}

/// The f32 operations 16-bit floats are reduced with (NaN-propagating
/// min/max, every NaN result canonical).
#[inline(always)]
fn f32_op(op: ReduceOp) -> fn(f32, f32) -> f32 {
    match op {
        ReduceOp::Sum | ReduceOp::Avg => |a, b| canon_f32(a + b),
        ReduceOp::Prod => |a, b| canon_f32(a * b),
        ReduceOp::Min => |a: f32, b: f32| {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else if b < a {
                b
            } else {
                a
            }
        },
        ReduceOp::Max => |a: f32, b: f32| {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else if b > a {
                b
            } else {
                a
            }
        },
    }
}

/// bf16 → f32 is exact: the bf16 bits are the top half of the f32.
#[inline(always)]
fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// f32 → bf16 rounding to nearest, ties to even — the same bits as
/// `half::bf16::from_f32` for numbers — with every NaN the canonical quiet
/// NaN 0x7fc0; written branch-free so loops vectorise.
#[inline(always)]
fn f32_to_bf16(f: f32) -> u16 {
    let x = f.to_bits();
    let nan = x & 0x7FFF_FFFF > 0x7F80_0000;
    let round_up = (x & 0x8000 != 0) && (x & 0x17FFF != 0);
    let rounded = ((x >> 16) as u16).wrapping_add(round_up as u16);
    if nan {
        0x7fc0
    } else {
        rounded
    }
}

/// bf16 kernels convert in registers (shifts and adds), no block buffers;
/// compiled a second time for AVX2 and picked at run time.
fn bf16_fast_path(op: ReduceOp, acc: &mut [bf16], src: &[bf16], order: Order) -> bool {
    let acc: &mut [u16] = bytemuck::cast_slice_mut(acc);
    let src: &[u16] = bytemuck::cast_slice(src);
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn bf16_avx2(op: ReduceOp, acc: &mut [u16], src: &[u16], order: Order) {
            bf16_kernel(op, acc, src, order)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above); the function is
            // the portable kernel compiled with AVX2 enabled.
            unsafe { bf16_avx2(op, acc, src, order) };
            return true;
        }
    }
    bf16_kernel(op, acc, src, order);
    true
}

#[inline(always)]
fn bf16_kernel(op: ReduceOp, acc: &mut [u16], src: &[u16], order: Order) {
    macro_rules! go {
        ($f:expr) => {
            ordered(acc, src, order, |a, b| {
                f32_to_bf16($f(bf16_to_f32(a), bf16_to_f32(b)))
            })
        };
    }
    match op {
        // (f32_to_bf16 makes every NaN the canonical one.)
        ReduceOp::Sum | ReduceOp::Avg => go!(|a: f32, b: f32| a + b),
        ReduceOp::Prod => go!(|a: f32, b: f32| a * b),
        ReduceOp::Min => go!(f32_op(ReduceOp::Min)),
        ReduceOp::Max => go!(f32_op(ReduceOp::Max)),
    }
}

/// f16 sums use the CPU's F16C conversions directly when it has them.
fn f16_fast_path(op: ReduceOp, acc: &mut [f16], src: &[f16], order: Order) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if matches!(op, ReduceOp::Sum | ReduceOp::Avg)
            && std::arch::is_x86_feature_detected!("avx")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            assert_eq!(acc.len(), src.len(), "reduce kernel on unequal slices");
            // SAFETY: the CPU has AVX and F16C (checked just above).
            unsafe { f16c::sum(bytemuck::cast_slice_mut(acc), bytemuck::cast_slice(src), order) };
            return true;
        }
    }
    let _ = (op, acc, src, order);
    false
}

#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::{
        __m128i, _mm256_add_ps, _mm256_cvtph_ps, _mm256_cvtps_ph, _mm_and_si128, _mm_blendv_epi8,
        _mm_cmpgt_epi16, _mm_loadu_si128, _mm_set1_epi16, _mm_storeu_si128, _MM_FROUND_TO_NEAREST_INT,
    };

    use super::{canon_f32, Order};

    /// `acc = acc + src` on f16 bits, eight lanes at a time, in f32.
    ///
    /// # Safety
    /// The CPU must support AVX and F16C; `acc` and `src` must have equal lengths.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn sum(acc: &mut [u16], src: &[u16], order: Order) {
        let n = acc.len();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n = acc.len() = src.len(), so each unaligned
            // 16-byte load and store stays inside its slice.
            unsafe {
                let a = _mm256_cvtph_ps(_mm_loadu_si128(acc.as_ptr().add(i) as *const __m128i));
                let b = _mm256_cvtph_ps(_mm_loadu_si128(src.as_ptr().add(i) as *const __m128i));
                let s = match order {
                    Order::AccFirst => _mm256_add_ps(a, b),
                    Order::SrcFirst => _mm256_add_ps(b, a),
                };
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(s);
                // NaN lanes (|h| > inf) become the canonical quiet NaN, in the
                // 16-bit domain: cheaper than a blend of the f32 lanes.
                let nan = _mm_cmpgt_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7fff)), _mm_set1_epi16(0x7c00));
                let h = _mm_blendv_epi8(h, _mm_set1_epi16(0x7e00), nan);
                _mm_storeu_si128(acc.as_mut_ptr().add(i) as *mut __m128i, h);
            }
            i += 8;
        }
        for j in i..n {
            let (a, b) = (
                half::f16::from_bits(acc[j]).to_f32(),
                half::f16::from_bits(src[j]).to_f32(),
            );
            let s = match order {
                Order::AccFirst => a + b,
                Order::SrcFirst => b + a,
            };
            acc[j] = half::f16::from_f32(canon_f32(s)).to_bits();
        }
    }
}

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
        $crate::with_dtype!(@arms $dtype, $T, $body;
            F32 f32, F64 f64, F16 $crate::half::f16, BF16 $crate::half::bf16, I32 i32, I64 i64, U8 u8)
    };
    (@arms $dtype:expr, $T:ident, $body:expr; $($variant:ident $t:ty),*) => {
        match $dtype {
            $( $crate::element::DType::$variant => {
                type $T = $t;
                $body
            } )*
            // DType is non-exhaustive outside this crate; this macro names
            // every variant of its own version.
            #[allow(unreachable_patterns)]
            _ => unreachable!("with_dtype! names every DType"),
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
    fn reduce_into_matches_copy_then_reduce_bitwise() {
        let a = [1.5f32, -0.0, 3.25, f32::MAX, 7.0];
        let b = [0.1f32, 0.0, -3.25, f32::MAX, f32::NAN];
        for op in ReduceOp::ALL {
            let mut fused = [0f32; 5];
            f32::reduce_into(op, &mut fused, &a, &b);
            let mut plain = a;
            f32::reduce(op, &mut plain, &b, Order::AccFirst);
            assert_eq!(fused.map(f32::to_bits), plain.map(f32::to_bits), "{op}");
            let mut i = [0i64; 2];
            i64::reduce_into(op, &mut i, &[i64::MAX, -3], &[1, 9]);
            let mut j = [i64::MAX, -3];
            i64::reduce(op, &mut j, &[1, 9], Order::AccFirst);
            assert_eq!(i, j, "{op}");
        }
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
    fn fast_16_bit_kernels_match_the_widening_path_bitwise() {
        // The block-widening path (half's conversions, f32 kernel) is the reference.
        fn widened<T>(op: ReduceOp, a: &[T], b: &[T], order: Order) -> Vec<f32>
        where
            [T]: HalfFloatSliceExt,
        {
            let (mut x, mut y) = (vec![0f32; a.len()], vec![0f32; b.len()]);
            a.convert_to_f32_slice(&mut x);
            b.convert_to_f32_slice(&mut y);
            f32::reduce(op, &mut x, &y, order);
            x
        }
        let mut vals: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -2.5,
            65504.0,
            1e-8,
            3.0e38,
            f32::INFINITY,
            f32::NAN,
        ];
        vals.extend((0..200).map(|i| (i as f32 * 0.37).sin() * 10f32.powi(i % 7 - 3)));
        // The fast kernel of one 16-bit type against the widening path, bit for bit.
        fn check<T>(vals: &[f32], from: fn(f32) -> T, bits: fn(&T) -> u16)
        where
            T: Element,
            [T]: HalfFloatSliceExt,
        {
            let n = vals.len();
            for order in [Order::AccFirst, Order::SrcFirst] {
                for op in ReduceOp::ALL {
                    let a: Vec<T> = vals.iter().map(|&v| from(v)).collect();
                    let b: Vec<T> = (0..n).map(|i| from(vals[(i * 7 + 3) % n])).collect();
                    let want: Vec<u16> = widened(op, &a, &b, order)
                        .iter()
                        .map(|&v| bits(&from(v)))
                        .collect();
                    let mut got = a.clone();
                    T::reduce(op, &mut got, &b, order);
                    let got: Vec<u16> = got.iter().map(bits).collect();
                    assert_eq!(got, want, "{} {op} {order:?}", T::DTYPE);
                }
            }
        }
        check(&vals, f16::from_f32, |v| v.to_bits());
        check(&vals, bf16::from_f32, |v| v.to_bits());
        for v in vals {
            assert_eq!(f32_to_bf16(v), bf16::from_f32(v).to_bits(), "{v}");
        }
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
