//! Top-k sparsification: each rank sends its k largest-magnitude
//! coordinates as (index, value) pairs. Non-linear — the ranks pick
//! different coordinates — so the pairs are all-gathered, never
//! all-reduced.

use bytemuck::{Pod, Zeroable};

/// One sent coordinate: 8 bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct Pair {
    /// Coordinate.
    pub index: u32,
    /// Value.
    pub value: f32,
}

/// Bytes of one [`Pair`] on the wire.
pub const PAIR_BYTES: usize = std::mem::size_of::<Pair>();

/// k for `fraction` of `n` coordinates: ⌈fraction·n⌉, at least 1 (none of 0).
pub fn k_of(fraction: f64, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    ((fraction * n as f64).ceil() as usize).clamp(1, n)
}

/// The `k` coordinates of `x` largest in magnitude (ties to the lower
/// index; NaN counts as largest), in increasing index order.
pub fn top_k(x: &[f32], k: usize) -> Vec<Pair> {
    let k = k.min(x.len());
    if k == 0 {
        return Vec::new();
    }
    let key = |i: u32| {
        let v = x[i as usize].abs();
        (if v.is_nan() { f32::INFINITY } else { v }, i)
    };
    let mut idx: Vec<u32> = (0..x.len() as u32).collect();
    // Larger magnitude first, then lower index: a total order, so every
    // rank with the same data picks the same set.
    let order = |a: &u32, b: &u32| {
        let ((va, ia), (vb, ib)) = (key(*a), key(*b));
        vb.total_cmp(&va).then(ia.cmp(&ib))
    };
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_unstable();
    idx.into_iter()
        .map(|i| Pair {
            index: i,
            value: x[i as usize],
        })
        .collect()
}

/// `out` = the sum of every rank's pairs (rank order, so the same bits on
/// every rank), as a dense vector.
///
/// # Panics
/// An index beyond `out` (pairs come from [`top_k`] over a vector of the
/// same length on every rank).
pub fn densify(gathered: &[Pair], out: &mut [f32]) {
    out.fill(0.0);
    for p in gathered {
        out[p.index as usize] += p.value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_takes_the_largest_magnitudes_in_index_order() {
        let x = [0.5, -3.0, 2.0, 0.0, -2.0, 1.0];
        let got = top_k(&x, 3);
        let idx: Vec<u32> = got.iter().map(|p| p.index).collect();
        // |−3| > |2| = |−2| (tie: lower index first) > …
        assert_eq!(idx, [1, 2, 4]);
        assert_eq!(got[0].value, -3.0);
        assert_eq!(top_k(&x, 0), []);
        assert_eq!(top_k(&x, 10).len(), 6);
        assert_eq!(
            (k_of(0.01, 1000), k_of(0.001, 10), k_of(1.0, 7), k_of(0.5, 0)),
            (10, 1, 7, 0)
        );
    }

    #[test]
    fn densify_sums_repeated_coordinates() {
        let mut out = [9.0f32; 4];
        let pairs = [
            Pair { index: 1, value: 1.5 },
            Pair { index: 3, value: 2.0 },
            Pair {
                index: 1,
                value: -0.5,
            },
        ];
        densify(&pairs, &mut out);
        assert_eq!(out, [0.0, 1.0, 0.0, 2.0]);
    }
}
