//! Algorithm tests on the thread transport: awkward rank counts and sizes,
//! closed-form integer answers, floats against a serial reference, bitwise
//! identity across ranks, and the traffic each schedule puts on the wire.

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::element::DType;
use crate::group::{all_reduce, all_reduce_in_place, CheckConfig, Group, Settings};
use crate::transport::{CallStats, Counting, Local};
use crate::verify::{first_wrong, serial_reference, VerifyElement};

const RANKS: [usize; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 13, 16];

fn counts(p: usize) -> Vec<usize> {
    let mut c = vec![0, 1, p - 1, p, p + 1, 2 * p + 3, 1009];
    c.sort_unstable();
    c.dedup();
    c
}

/// Runs `algorithm` on `p` thread ranks whose inputs are `inputs[rank]`.
fn run_all<T: Element>(inputs: &[Vec<T>], op: ReduceOp, algorithm: Algorithm) -> Vec<Vec<T>> {
    Group::local(inputs.len(), |t| {
        let mut buf = inputs[t.rank()].clone();
        all_reduce_in_place(&t, &mut buf, op, algorithm).expect("all-reduce failed");
        buf
    })
}

fn assert_identical<T: Element>(results: &[Vec<T>], what: &str) {
    for (r, v) in results.iter().enumerate().skip(1) {
        assert!(
            bytemuck::cast_slice::<T, u8>(v) == bytemuck::cast_slice::<T, u8>(&results[0]),
            "{what}: rank {r} is not bitwise identical to rank 0"
        );
    }
}

#[test]
fn integer_sums_have_the_closed_form() {
    for p in RANKS {
        for k in counts(p) {
            // rank r holds r + 1 + i at index i
            let inputs: Vec<Vec<i64>> = (0..p)
                .map(|r| (0..k).map(|i| (r + 1 + i) as i64).collect())
                .collect();
            let pi = p as i64;
            for algorithm in Algorithm::CONCRETE {
                for op in ReduceOp::ALL {
                    let what = format!("{algorithm} {op} p={p} k={k}");
                    let out = run_all(&inputs, op, algorithm);
                    for v in &out {
                        assert_eq!(v.len(), k, "{what}");
                        for (i, &x) in v.iter().enumerate() {
                            let i = i as i64;
                            let want = match op {
                                ReduceOp::Sum => pi * (pi + 1) / 2 + pi * i,
                                ReduceOp::Avg => (pi * (pi + 1) / 2 + pi * i) / pi,
                                ReduceOp::Min => 1 + i,
                                ReduceOp::Max => pi + i,
                                ReduceOp::Prod => (1..=pi).fold(1i64, |a, r| a.wrapping_mul(r + i)),
                            };
                            assert_eq!(x, want, "{what} index {i}");
                        }
                    }
                }
            }
        }
    }
}

fn random_inputs<T: VerifyElement>(p: usize, k: usize, op: ReduceOp, seed: u64) -> Vec<Vec<T>> {
    (0..p)
        .map(|r| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(r as u64);
            (0..k).map(|_| T::sample(&mut rng, op)).collect()
        })
        .collect()
}

/// Every algorithm agrees with the serial reference and is bitwise identical
/// on every rank, for one dtype, op, p and k.
fn check_case<T: VerifyElement>(p: usize, k: usize, op: ReduceOp, seed: u64) {
    let inputs = random_inputs::<T>(p, k, op, seed);
    let expected = serial_reference(&inputs, op);
    for algorithm in Algorithm::CONCRETE {
        let what = format!("{algorithm} {} {op} p={p} k={k}", T::DTYPE);
        let out = run_all(&inputs, op, algorithm);
        assert_correct(&out, &expected, op, &what);
    }
}

/// Every rank's result is bitwise rank 0's, and rank 0's agrees with the
/// serial reference `expected`.
fn assert_correct<T: VerifyElement>(results: &[Vec<T>], expected: &[T], op: ReduceOp, what: &str) {
    assert_identical(results, what);
    if let Some((wrong, i)) = first_wrong(&results[0], expected, op, results.len()) {
        panic!(
            "{what}: {wrong} wrong, first at {i}: {} vs {}",
            results[0][i], expected[i]
        );
    }
}

#[test]
fn floats_match_the_serial_reference_on_awkward_shapes() {
    for p in RANKS {
        for k in counts(p) {
            for op in ReduceOp::ALL {
                check_case::<f32>(p, k, op, 7);
                check_case::<half::bf16>(p, k, op, 8);
            }
        }
    }
}

#[test]
fn shared_memory_pieces_match_the_serial_reference() {
    // Vectors of several pieces, the last one partial, in place and out of place.
    let piece = crate::transport::Shape::DEFAULT.piece;
    for p in [2, 3, 5, 8] {
        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Avg] {
            let k = 2 * piece / 4 + p + 1; // f32: three pieces
            check_case::<f32>(p, k, op, 3);
            let k = piece / 8 + 1; // f64: two pieces, the second of one element
            check_case::<f64>(p, k, op, 4);
            let inputs = random_inputs::<f32>(p, 3 * piece / 4 - 1, op, 5);
            let both = Group::local(p, |g| {
                let mut out = vec![0.0f32; inputs[0].len()];
                all_reduce(&g, &inputs[g.rank()], &mut out, op, Algorithm::Shm).unwrap();
                let mut inplace = inputs[g.rank()].clone();
                all_reduce_in_place(&g, &mut inplace, op, Algorithm::Shm).unwrap();
                assert!(bytemuck::cast_slice::<f32, u8>(&out) == bytemuck::cast_slice::<f32, u8>(&inplace));
                out
            });
            assert_identical(&both, &format!("shm out of place p={p} {op}"));
        }
    }
}

#[test]
fn two_level_matches_the_serial_reference_on_node_layouts() {
    // nodes × ranks per node, ranks placed by slot; sizes from empty to
    // three pieces (small ones here: 64 KiB across nodes, 16 KiB on one);
    // every rank bitwise identical, in place and out of place.
    let shape = crate::transport::Shape {
        piece: 16 << 10,
        rail_piece: 64 << 10,
        ..crate::transport::Shape::DEFAULT
    };
    for (nodes, per) in [(2, 2), (3, 2), (2, 3), (4, 1), (1, 3), (2, 4)] {
        let piece = shape.piece_for(nodes > 1) / 4;
        let p = nodes * per;
        let node_of: Vec<usize> = (0..p).map(|r| r / per).collect();
        for k in [0, 1, per + 1, 1009, 2 * piece + 3] {
            for op in [ReduceOp::Sum, ReduceOp::Min, ReduceOp::Avg] {
                let inputs = random_inputs::<f32>(p, k, op, 9);
                let expected = serial_reference(&inputs, op);
                let out = Local::run_on(Local::endpoints_shaped(&node_of, shape), |ep| {
                    let g = Group::new(ep);
                    let mut inplace = inputs[g.rank()].clone();
                    all_reduce_in_place(&g, &mut inplace, op, Algorithm::Hierarchical).unwrap();
                    let mut out = vec![0.0f32; k];
                    all_reduce(&g, &inputs[g.rank()], &mut out, op, Algorithm::Hierarchical).unwrap();
                    assert!(
                        bytemuck::cast_slice::<f32, u8>(&out) == bytemuck::cast_slice::<f32, u8>(&inplace)
                    );
                    out
                });
                assert_correct(
                    &out,
                    &expected,
                    op,
                    &format!("hierarchical {nodes}x{per} {op} k={k}"),
                );
            }
        }
    }
}

#[test]
fn the_pipelined_ring_is_bitwise_the_ring_in_many_segments() {
    for p in [2, 3, 5, 8] {
        for k in [1, p + 1, 1009, 100_003] {
            let m = pipelined::segments(p as u64, k as u64, 4, None);
            if k == 100_003 {
                assert!(m > 4, "p={p} k={k}: {m} segments");
            }
            for op in [ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max] {
                let inputs = random_inputs::<f32>(p, k, op, 13);
                let ring = Local::run_apart(p, |ep| {
                    let g = Group::new(ep);
                    let mut v = inputs[g.rank()].clone();
                    all_reduce_in_place(&g, &mut v, op, Algorithm::Ring).unwrap();
                    let mut out = vec![0.0f32; k];
                    all_reduce(&g, &inputs[g.rank()], &mut out, op, Algorithm::Pipelined).unwrap();
                    let mut inplace = inputs[g.rank()].clone();
                    all_reduce_in_place(&g, &mut inplace, op, Algorithm::Pipelined).unwrap();
                    (v, out, inplace)
                });
                for (r, (ring, out, inplace)) in ring.iter().enumerate() {
                    let b = |v: &Vec<f32>| bytemuck::cast_slice::<f32, u8>(v).to_vec();
                    assert!(
                        b(ring) == b(out) && b(ring) == b(inplace),
                        "p={p} k={k} {op} rank {r}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_pipelined_rings_segment_count_follows_the_cost_models_built_in_lines() {
    // The schedule reads its lines from its own table, the cost model its
    // defaults: the count is √(2(p−1)·n·β/α) of the default exchange line of
    // a chunk's size, as when the schedule asked the cost model itself.
    let params = crate::cost::CostParams::default();
    for p in [2u64, 3, 4, 7, 16, 64] {
        for k in [1u64, 3, 64, 100, 512, 513, 4096, 100_003, 1 << 22] {
            for s in [1u64, 2, 4, 8] {
                let line = params.line_for((k * s).div_ceil(p));
                let m = (2.0 * (p - 1) as f64 * (k * s) as f64 * line.beta / line.alpha)
                    .sqrt()
                    .round() as u64;
                let want = m.clamp(1, 64).min(k.div_ceil(p).max(1));
                assert_eq!(pipelined::segments(p, k, s, None), want, "p={p} k={k} s={s}");
            }
        }
    }
}

#[test]
fn the_pipelined_rings_segment_count_can_be_set_and_is_what_travels() {
    // Tuning::segments (RINGREDUCE_SEGMENTS), passed down as
    // Knobs::segments, overrides the model's count:
    // the counted messages are 2(p−1)·m for the m asked for (at most one
    // segment per element of a chunk), and the result is still the ring's.
    let (p, k) = (3usize, 10_000usize);
    for (over, m) in [(1u32, 1u64), (7, 7), (1_000_000, 3334)] {
        let inputs = random_inputs::<f32>(p, k, ReduceOp::Sum, 5);
        let out = Local::run_apart(p, |ep| {
            let mut settings = Settings::default();
            settings.tuning.segments = Some(over);
            settings.checks = CheckConfig::OFF;
            let g = Group::with_settings(Counting::new(ep), settings);
            let mut v = inputs[g.rank()].clone();
            all_reduce_in_place(&g, &mut v, ReduceOp::Sum, Algorithm::Pipelined).unwrap();
            let sent = g.transport().stats().messages_sent;
            let mut ring = inputs[g.rank()].clone();
            all_reduce_in_place(&g, &mut ring, ReduceOp::Sum, Algorithm::Ring).unwrap();
            (sent, v == ring)
        });
        let want = pipelined::segmented_cost(
            Cost::zero(Algorithm::Pipelined),
            p as u64,
            k as u64,
            4,
            Some(over),
        );
        assert_eq!(want.messages, 2 * (p as u64 - 1) * m, "asked {over}");
        assert!(
            out.iter().all(|&(sent, same)| sent == want.messages && same),
            "asked {over}: {out:?}"
        );
    }
}

#[test]
fn shared_memory_is_an_error_on_every_rank_when_ranks_do_not_share_a_node() {
    let out = Local::run_apart(3, |ep| {
        let g = Group::new(ep);
        let mut v = vec![1.0f32; 100];
        let e = g
            .all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Shm)
            .unwrap_err();
        // the group stays usable
        g.all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Ring)
            .unwrap();
        (e.to_string(), v[0])
    });
    for (e, v) in out {
        assert!(
            e.contains("`shm` needs every rank of the group on one node"),
            "{e}"
        );
        assert_eq!(v, 3.0);
    }
}

#[test]
fn min_max_tie_break_on_signed_zero_is_the_same_everywhere() {
    // -0.0 == 0.0, so which one min returns depends on operand order; every
    // rank must still end with the same bits.
    for p in [2, 3, 5, 8] {
        let inputs: Vec<Vec<f32>> = (0..p)
            .map(|r| vec![if r % 2 == 0 { 0.0 } else { -0.0 }; 7])
            .collect();
        for algorithm in Algorithm::CONCRETE {
            for op in [ReduceOp::Min, ReduceOp::Max] {
                let out = run_all(&inputs, op, algorithm);
                assert_identical(&out, &format!("{algorithm} {op} p={p}"));
            }
        }
    }
}

#[test]
fn nan_and_infinity_propagate() {
    for algorithm in Algorithm::CONCRETE {
        let inputs = vec![
            vec![1.0f32, f32::INFINITY, 0.0],
            vec![f32::NAN, 1.0, 2.0],
            vec![3.0, 2.0, 5.0],
        ];
        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
            let out = run_all(&inputs, op, algorithm);
            assert!(out[2][0].is_nan(), "{algorithm} {op}: NaN lost");
            if op != ReduceOp::Min {
                assert_eq!(out[2][1], f32::INFINITY, "{algorithm} {op}: inf lost");
            }
        }
    }
}

#[test]
fn out_of_place_checks_lengths() {
    let err = Group::local(1, |t| {
        all_reduce(&t, &[1.0f32; 3], &mut [0.0; 2], ReduceOp::Sum, Algorithm::Ring)
    });
    assert_eq!(err[0], Err(Error::LengthMismatch { send: 3, recv: 2 }));
    let ok = Group::local(3, |t| {
        let mut out = [0i32; 2];
        all_reduce(
            &t,
            &[t.rank() as i32, 1],
            &mut out,
            ReduceOp::Sum,
            Algorithm::Butterfly,
        )
        .map(|_| out)
    });
    assert!(ok.iter().all(|r| r == &Ok([3, 3])), "{ok:?}");
}

#[test]
fn ranks_with_different_counts_get_an_error_not_a_hang() {
    for algorithm in Algorithm::CONCRETE {
        let out = Group::local(4, |t| {
            let mut buf = vec![1.0f32; if t.rank() == 2 { 9 } else { 8 }];
            all_reduce_in_place(&t, &mut buf, ReduceOp::Sum, algorithm)
        });
        assert!(
            out.iter().any(|r| r.is_err()),
            "{algorithm}: mismatch went unnoticed: {out:?}"
        );
    }
}

#[test]
fn chunks_tile_the_vector_and_differ_by_at_most_one() {
    for p in 1..=17 {
        for k in [0, 1, p - 1, p, p + 1, 1000, 1009] {
            let ranges: Vec<_> = (0..p).map(|i| chunk_range(k, p, i)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[p - 1].end, k);
            for w in ranges.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            let lens: Vec<_> = ranges.iter().map(|r| r.len()).collect();
            assert!(
                lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1,
                "p={p} k={k}"
            );
        }
    }
}

/// Counted traffic per rank for one run of `algorithm` on f32.
fn traffic(p: usize, k: usize, algorithm: Algorithm) -> Vec<CallStats> {
    let inputs = vec![vec![1.0f32; k]; p];
    Local::run(p, |t| {
        let off = Settings {
            checks: CheckConfig::OFF,
            ..Settings::default()
        };
        let g = Group::with_settings(Counting::new(t), off);
        let mut buf = inputs[g.rank()].clone();
        g.all_reduce_in_place(&mut buf, ReduceOp::Sum, algorithm).unwrap();
        assert!(buf.iter().all(|&x| x == p as f32));
        g.transport().stats()
    })
}

#[test]
fn traffic_matches_the_design_table() {
    let s = 4u64; // f32
    for p in RANKS {
        let pu = p as u64;
        for k in [1usize, p + 1, 1000, 1009] {
            let ku = k as u64;
            let max = |f: fn(&CallStats) -> u64, t: &[CallStats]| t.iter().map(f).max().unwrap();
            if p == 1 {
                for a in Algorithm::CONCRETE {
                    assert_eq!(traffic(p, k, a), vec![CallStats::default()], "{a} p=1 talks");
                }
                continue;
            }
            // naive: p−1 rounds, (p−1)·k·s bytes on every rank
            for st in traffic(p, k, Algorithm::Naive) {
                assert_eq!(
                    (st.rounds, st.bytes_sent),
                    (pu - 1, (pu - 1) * ku * s),
                    "naive p={p} k={k}"
                );
            }
            // ring: 2(p−1) rounds; every rank sends each chunk but one, in each phase
            for (r, st) in traffic(p, k, Algorithm::Ring).iter().enumerate() {
                let skipped_rs = chunk_range(k, p, (r + 1) % p).len() as u64; // the chunk it finishes
                let skipped_ag = chunk_range(k, p, (r + 2) % p).len() as u64; // the chunk it gets last
                let bytes = (2 * ku - skipped_rs - skipped_ag) * s;
                assert_eq!(
                    (st.rounds, st.bytes_sent),
                    (2 * (pu - 1), bytes),
                    "ring p={p} k={k} rank {r}"
                );
            }
            // butterfly: log2 p' rounds (+2 on folding ranks), k·s bytes per message
            let pof2 = 1u64 << (63 - pu.leading_zeros());
            let log = pof2.trailing_zeros() as u64;
            let t = traffic(p, k, Algorithm::Butterfly);
            let extra = if pof2 == pu { 0 } else { 2 };
            assert_eq!(max(|s| s.rounds, &t), log + extra, "butterfly rounds p={p}");
            for st in &t {
                assert_eq!(st.bytes_sent, st.messages_sent * ku * s, "butterfly p={p}");
            }
            // central: the root does 2(p−1) rounds and sends (p−1)·k·s
            let t = traffic(p, k, Algorithm::Central);
            assert_eq!((t[0].rounds, t[0].bytes_sent), (2 * (pu - 1), (pu - 1) * ku * s));
            assert!(t[1..].iter().all(|st| st.rounds == 2 && st.bytes_sent == ku * s));
        }
    }
}

fn any_dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(DType::ALL.to_vec())
}

fn any_op() -> impl Strategy<Value = ReduceOp> {
    prop::sample::select(ReduceOp::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn all_algorithms_agree_with_the_serial_reference(
        p in 1usize..=9,
        k in 0usize..300,
        dtype in any_dtype(),
        op in any_op(),
        seed in any::<u64>(),
    ) {
        crate::with_dtype!(dtype, T => check_case::<T>(p, k, op, seed));
    }
}

#[test]
fn out_of_place_is_bitwise_the_in_place_result() {
    for p in [1, 2, 3, 5, 8] {
        for k in [0, 1, p, 2 * p + 3, 1009] {
            let inputs = random_inputs::<f32>(p, k, ReduceOp::Sum, 11);
            for algorithm in Algorithm::CONCRETE.into_iter().chain([Algorithm::Auto]) {
                for op in ReduceOp::ALL {
                    let both = Group::local(p, |t| {
                        let mine = &inputs[t.rank()];
                        let mut out = vec![f32::NAN; k];
                        all_reduce(&t, mine, &mut out, op, algorithm).unwrap();
                        let mut inplace = mine.clone();
                        all_reduce_in_place(&t, &mut inplace, op, algorithm).unwrap();
                        (out, inplace)
                    });
                    for (r, (out, inplace)) in both.iter().enumerate() {
                        let a: &[u8] = bytemuck::cast_slice(out);
                        let b: &[u8] = bytemuck::cast_slice(inplace);
                        assert!(a == b, "{algorithm} {op} p={p} k={k} rank {r}");
                    }
                }
            }
        }
    }
}

/// A NaN of `T` with the given sign and (non-zero) payload bits.
fn nan_bits<T: Element>(negative: bool, payload: u64) -> T {
    let bits: u64 = match T::DTYPE {
        DType::F32 => 0x7f80_0000 | (u64::from(negative) << 31) | (payload % 0x7f_ffff + 1),
        DType::F64 => {
            0x7ff0_0000_0000_0000 | (u64::from(negative) << 63) | (payload % 0xf_ffff_ffff_ffff + 1)
        }
        DType::F16 => 0x7c00 | (u64::from(negative) << 15) | (payload % 0x3ff + 1),
        DType::BF16 => 0x7f80 | (u64::from(negative) << 15) | (payload % 0x7f + 1),
        other => panic!("{other} has no NaN"),
    };
    let bytes = bits.to_le_bytes();
    bytemuck::pod_read_unaligned(&bytes[..std::mem::size_of::<T>()])
}

/// The canonical quiet NaN every NaN result must be.
fn canonical_nan<T: Element>() -> T {
    let bits: u64 = match T::DTYPE {
        DType::F32 => 0x7fc0_0000,
        DType::F64 => 0x7ff8_0000_0000_0000,
        DType::F16 => 0x7e00,
        _ => 0x7fc0,
    };
    bytemuck::pod_read_unaligned(&bits.to_le_bytes()[..std::mem::size_of::<T>()])
}

fn hostile_nans<T: Element + crate::verify::VerifyElement>(p: usize) {
    let k = 64;
    // Element i: NaN on every rank (different signs and payloads) when
    // i % 3 == 0, on one rank only when i % 3 == 1, finite otherwise.
    let inputs: Vec<Vec<T>> = (0..p)
        .map(|r| {
            (0..k)
                .map(|i| {
                    let nan = i % 3 == 0 || (i % 3 == 1 && r == i % p);
                    if nan {
                        nan_bits::<T>((r + i) % 2 == 1, (r * 7919 + i * 104_729) as u64)
                    } else {
                        T::sample(&mut rand::rngs::mock::StepRng::new(i as u64, 1), ReduceOp::Sum)
                    }
                })
                .collect()
        })
        .collect();
    for algorithm in Algorithm::CONCRETE {
        for op in ReduceOp::ALL {
            let what = format!("{algorithm} {op} {} p={p}", T::DTYPE);
            let out = run_all(&inputs, op, algorithm);
            assert_identical(&out, &what);
            for (i, x) in out[0].iter().enumerate() {
                if i % 3 != 2 {
                    assert!(
                        bytemuck::bytes_of(x) == bytemuck::bytes_of(&canonical_nan::<T>()),
                        "{what}: element {i} is {x:?}, not the canonical NaN"
                    );
                }
            }
        }
    }
}

#[test]
fn nan_results_are_the_same_bits_on_every_rank() {
    for p in [2, 3, 5, 8, 16] {
        hostile_nans::<f32>(p);
        hostile_nans::<f64>(p);
        hostile_nans::<half::f16>(p);
        hostile_nans::<half::bf16>(p);
    }
}

/// Every rank passes `per_rank(r)` (k copies); every algorithm must return `want`.
fn average_is<T: Element>(p: usize, per_rank: impl Fn(usize) -> T, want: T) {
    let inputs: Vec<Vec<T>> = (0..p).map(|r| vec![per_rank(r); 5]).collect();
    for algorithm in Algorithm::CONCRETE.into_iter().chain([Algorithm::Auto]) {
        let out = run_all(&inputs, ReduceOp::Avg, algorithm);
        assert_identical(&out, &format!("{algorithm} avg {} p={p}", T::DTYPE));
        assert!(
            out.iter().all(|v| v
                .iter()
                .all(|x| bytemuck::bytes_of(x) == bytemuck::bytes_of(&want))),
            "{algorithm} avg {} p={p}: {:?}, want {want:?}",
            T::DTYPE,
            out[0]
        );
        // Out of place too.
        let out = Group::local(p, |g| {
            let mut recv = vec![T::zeroed(); 5];
            g.all_reduce(&inputs[g.rank()], &mut recv, ReduceOp::Avg, algorithm)
                .unwrap();
            recv
        });
        assert!(
            out.iter().all(|v| v[0] == want),
            "{algorithm} out-of-place avg {}",
            T::DTYPE
        );
    }
}

#[test]
fn averages_of_large_values_do_not_overflow() {
    // Regression: u8 avg(200, 200) gave 72, i32 avg(MAX, MAX) −1, and f16
    // or bf16 averages of large finite values inf.
    for p in [2, 3, 5] {
        average_is(p, |_| 200u8, 200);
        average_is(p, |r| if r == 0 { 255u8 } else { 0 }, (255 / p) as u8);
        average_is(p, |_| i32::MAX, i32::MAX);
        average_is(p, |_| i32::MIN, i32::MIN);
        average_is(p, |_| i64::MAX, i64::MAX);
        average_is(p, |_| i64::MIN, i64::MIN);
        // MAX and MIN alternate: the exact mean, truncated toward zero.
        let mixed = |r: usize| if r.is_multiple_of(2) { i64::MAX } else { i64::MIN };
        let sum: i128 = (0..p).map(|r| i128::from(mixed(r))).sum();
        average_is(p, mixed, (sum / p as i128) as i64);
        average_is(p, |_| half::f16::from_f32(60000.0), half::f16::from_f32(60000.0));
        average_is(p, |_| half::bf16::from_f32(3.0e38), half::bf16::from_f32(3.0e38));
    }
}
