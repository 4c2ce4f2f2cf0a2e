//! The reduce-scatter, flat all-gather and reduce against the serial
//! reference and the ring, for every element type and op at p = 1..8.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::algorithms::Algorithm;
use crate::element::{DType, Element, ReduceOp};
use crate::error::Error;
use crate::group::Group;
use crate::verify::{first_wrong, serial_reference, VerifyElement};

fn inputs<T: VerifyElement>(p: usize, k: usize, op: ReduceOp) -> Vec<Vec<T>> {
    (0..p)
        .map(|r| {
            let mut rng = ChaCha8Rng::seed_from_u64(7 ^ k as u64);
            rng.set_stream(r as u64);
            (0..k).map(|_| T::sample(&mut rng, op)).collect()
        })
        .collect()
}

fn bits<T: Element>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}

fn assert_close<T: Element>(got: &[T], want: &[T], op: ReduceOp, p: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some((wrong, i)) = first_wrong(got, want, op, p) {
        panic!("{what}: {wrong} wrong, first at {i}: {} vs {}", got[i], want[i]);
    }
}

/// One type, op, p and k: every new collective against the reference.
fn check<T: VerifyElement>(p: usize, k: usize, op: ReduceOp) {
    let x = inputs::<T>(p, k, op);
    let want = serial_reference(&x, op);
    let what = format!("{} {op} p={p} k={k}", T::DTYPE);
    let out = Group::local(p, |g| {
        let r = g.rank();
        // The shards: the ring's halves, so bitwise the ring's all-reduce.
        let mut ring = x[r].clone();
        g.all_reduce_in_place(&mut ring, op, Algorithm::Ring).unwrap();
        let mut flat = x[r].clone();
        let mine = g.reduce_scatter_in_place(&mut flat, op).unwrap();
        assert_eq!(mine, g.shard(k));
        assert!(
            bits(&flat[mine.clone()]) == bits(&ring[mine.clone()]),
            "{what}: shard ≠ ring"
        );
        g.all_gather_in_place(&mut flat).unwrap();
        assert!(bits(&flat) == bits(&ring), "{what}: gathered shards ≠ ring");
        // Blocks of n = k elements: rank r's block r of p·k.
        let send: Vec<T> = (0..p).flat_map(|b| x[(r + b) % p].clone()).collect();
        let mut block = vec![T::zeroed(); k];
        g.reduce_scatter(&send, &mut block, op).unwrap();
        // The reduce, to every root in turn; the others' buffers untouched.
        let mut reduced = Vec::new();
        for root in 0..p {
            let mut v = x[r].clone();
            g.reduce(&mut v, op, root).unwrap();
            if r == root {
                reduced = v;
            } else {
                assert!(
                    bits(&v) == bits(&x[r]),
                    "{what}: reduce to {root} changed rank {r}'s buffer"
                );
            }
        }
        (flat, block, reduced)
    });
    for (r, (flat, block, reduced)) in out.iter().enumerate() {
        assert_close(flat, &want, op, p, &format!("{what} rank {r} shards"));
        assert_close(reduced, &want, op, p, &format!("{what} rank {r} reduce"));
        assert_close(
            block,
            &serial_reference(&block_rows(&x, r), op),
            op,
            p,
            &format!("{what} rank {r} block"),
        );
    }
}

/// The rows whose reduction rank `r`'s block holds in [`check`]: rank q's
/// block r is `x[(q + r) % p]`.
fn block_rows<T: Element>(x: &[Vec<T>], r: usize) -> Vec<Vec<T>> {
    let p = x.len();
    (0..p).map(|q| x[(q + r) % p].clone()).collect()
}

#[test]
fn every_type_and_op_matches_the_reference_at_1_to_8_ranks() {
    for p in 1..=8usize {
        for k in [0, 1, p - 1, p, p + 1, 2 * p + 3, 1009] {
            for op in ReduceOp::ALL {
                for dtype in DType::ALL {
                    crate::with_dtype!(dtype, T => check::<T>(p, k, op));
                }
            }
        }
    }
}

#[test]
fn mismatched_calls_fail_alike_on_every_rank() {
    let out = Group::local(3, |g| {
        let mut v = vec![1.0f32; if g.rank() == 2 { 9 } else { 10 }];
        let a = g.reduce_scatter_in_place(&mut v, ReduceOp::Sum).unwrap_err();
        let mut w = vec![1i32; 4];
        let b = g
            .reduce(&mut w, ReduceOp::Sum, if g.rank() == 0 { 1 } else { 0 })
            .unwrap_err();
        let c = g.reduce(&mut w, ReduceOp::Sum, 3).unwrap_err();
        let send = vec![1.0f64; if g.rank() == 1 { 5 } else { 6 }];
        let mut recv = [0.0f64; 2];
        let d = g.reduce_scatter(&send, &mut recv, ReduceOp::Sum).unwrap_err();
        let mut shards = vec![0u8; if g.rank() == 0 { 4 } else { 5 }];
        let e = g.all_gather_in_place(&mut shards).unwrap_err();
        // The group is still in step: a good call goes through.
        let mut ok = vec![g.rank() as i64; 4];
        g.reduce(&mut ok, ReduceOp::Sum, 0).unwrap();
        (a, b, c, d, e, ok)
    });
    for (r, (a, b, c, d, e, _)) in out.iter().enumerate() {
        assert!(matches!(a, Error::Mismatch { .. }), "{a}");
        assert!(a.to_string().contains("reduce_scatter"), "{a}");
        assert_eq!(a.to_string(), out[0].0.to_string());
        assert!(matches!(b, Error::Mismatch { .. }), "{b}");
        assert!(b.to_string().contains("to rank 1"), "{b}");
        assert!(c.to_string().contains("rank 3 is out of range"), "rank {r}: {c}");
        if r == 1 {
            assert!(matches!(d, Error::InvalidArgument { .. }), "{d}");
            assert!(d.to_string().contains("5 elements for 3 ranks × 2"), "{d}");
        } else {
            assert!(matches!(d, Error::Remote { .. }), "{d}");
        }
        assert!(matches!(e, Error::Mismatch { .. }), "{e}");
    }
    assert_eq!(out[0].5, vec![3; 4]);
}
