//! `ringreduce calibrate`: measure α, β and γ of the cost model.
//!
//! α and β come from a sweep between rank 0 and a partner over the
//! library's own MPI transport — the first rank on another node when the
//! job spans nodes (the link the schedules' rounds cross), else rank 1:
//! at each size, a ping-pong (one-way time = half a round
//! trip) and an exchange (both ranks `sendrecv` at once, which is what the
//! ring, naive and butterfly schedules do). The model is fitted to the
//! exchange times by least squares on relative error, so small and large
//! messages weigh alike, as up to three lines over size ranges whose limits
//! the fit finds (where MPI changes protocol, where messages leave the
//! cache); the ping-pong times get lines of their own for one-way rounds. γ is the time per byte of the local f32 sum kernel, and the
//! copy constant that of a memcpy, on 16 MiB buffers.

use std::time::Instant;

use serde::Serialize;

use crate::cost::{Calibration, CostParams, Level, Line, Rules, MAX_LINES, MEMORY_LEVELS};
use crate::element::{Element, Order, ReduceOp};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::transport::Transport;
use crate::vendor::Vendor;

/// One size of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Message size in bytes.
    pub bytes: u64,
    /// Median one-way ping-pong time, seconds.
    pub pingpong: f64,
    /// Median exchange (sendrecv) time, seconds.
    pub exchange: f64,
    /// Median time of a ring shift on every rank (send right, receive from
    /// the left), seconds; with 3 or more ranks.
    pub shift: Option<f64>,
    /// The fitted exchange time, seconds.
    pub fitted: f64,
    /// The fitted one-way time, seconds.
    pub fitted_oneway: f64,
}

impl Point {
    /// (measured − fitted) / fitted for the exchange time.
    pub fn residual(&self) -> f64 {
        (self.exchange - self.fitted) / self.fitted
    }

    /// (measured − fitted) / fitted for the one-way time.
    pub fn residual_oneway(&self) -> f64 {
        (self.pingpong - self.fitted_oneway) / self.fitted_oneway
    }
}

/// The outcome of a calibration.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Constants and provenance, as written to the JSON file.
    pub calibration: Calibration,
    /// The sweep, with the fitted times.
    pub points: Vec<Point>,
}

/// Weighted least squares of `t = α + n·β` minimising Σ((fit − t)/t)².
pub fn fit_line(points: &[(f64, f64)]) -> (f64, f64) {
    // Normal equations with weights w = 1/t².
    let (mut sw, mut swn, mut swnn, mut swt, mut swnt) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(n, t) in points {
        let w = 1.0 / (t * t);
        sw += w;
        swn += w * n;
        swnn += w * n * n;
        swt += w * t;
        swnt += w * n * t;
    }
    // The best constant line (β = 0), and the best line through the origin (α = 0).
    let flat = (swt / sw, 0.0);
    let det = sw * swnn - swn * swn;
    if det.abs() < f64::MIN_POSITIVE {
        return flat;
    }
    let alpha = (swt * swnn - swn * swnt) / det;
    let beta = (sw * swnt - swn * swt) / det;
    if alpha >= 0.0 && beta >= 0.0 {
        return (alpha, beta);
    }
    // The unconstrained optimum has a negative constant (time per byte that
    // grows with the size, as when messages leave the caches): the best
    // line with both constants ≥ 0 lies on an edge, α = 0 or β = 0, and
    // clamping one without refitting the other would not be it.
    let through_origin = (0.0, swnt / swnn);
    if swnn > 0.0 && relative_error(points, through_origin) <= relative_error(points, flat) {
        through_origin
    } else {
        flat
    }
}

/// Σ((α + n·β − t)/t)² over `points`: what [`fit_line`] minimises.
fn relative_error(points: &[(f64, f64)], (alpha, beta): (f64, f64)) -> f64 {
    points
        .iter()
        .map(|&(n, t)| ((alpha + n * beta - t) / t).powi(2))
        .sum()
}

/// The upper median of `v` (non-empty).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The piecewise fit: up to [`MAX_LINES`] lines over consecutive ranges of
/// the sweep (each of at least 3 points), with the breaks that minimise the
/// squared relative error (dynamic programming over the break positions).
/// The last line covers every larger message; unused lines repeat it.
pub fn fit_lines(points: &[(f64, f64)]) -> [Line; MAX_LINES] {
    const MIN: usize = 3;
    let n = points.len();
    let line = |i: usize, j: usize| {
        let pts = &points[i..j];
        let (alpha, beta) = fit_line(pts);
        let err = relative_error(pts, (alpha, beta));
        let up_to = if j == n {
            u64::MAX
        } else {
            pts[pts.len() - 1].0 as u64
        };
        (Line { up_to, alpha, beta }, err)
    };
    if n < 2 * MIN {
        return [line(0, n).0; MAX_LINES];
    }
    // best[l][j]: least error of l + 1 lines over points[..j], and the start of the last.
    let mut best = vec![vec![(f64::INFINITY, 0usize); n + 1]; MAX_LINES];
    for (j, b) in best[0].iter_mut().enumerate().skip(MIN) {
        *b = (line(0, j).1, 0);
    }
    for l in 1..MAX_LINES {
        for j in (l + 1) * MIN..=n {
            for i in l * MIN..=j - MIN {
                let e = best[l - 1][i].0 + line(i, j).1;
                if e < best[l][j].0 {
                    best[l][j] = (e, i);
                }
            }
        }
    }
    // The fewest lines that come within 5 % of the best fit's error.
    let least = best.iter().map(|b| b[n].0).fold(f64::INFINITY, f64::min);
    let used = (0..MAX_LINES)
        .find(|&l| best[l][n].0 <= least * 1.05 + 1e-12)
        .unwrap_or(0);
    let mut starts = vec![n];
    for l in (0..=used).rev() {
        let j = *starts.last().unwrap_or(&n);
        starts.push(best[l][j].1);
    }
    starts.reverse(); // 0, …, n
    let fitted: Vec<Line> = starts.windows(2).map(|w| line(w[0], w[1]).0).collect();
    let last = fitted[fitted.len() - 1];
    std::array::from_fn(|i| fitted.get(i).copied().unwrap_or(last))
}

/// Runs the calibration over the group's transport: rank 0 and its
/// [`partner`] measure the link, the others wait (every rank shifts);
/// `vendor` names the library and host in the
/// result. Collective.
///
/// Each size cycles through three buffers per rank, the working set of a
/// collective (input, output, scratch), so large messages see the memory
/// traffic they see in a real all-reduce rather than a warm cache.
///
/// # Errors
/// [`Error::InvalidArgument`] with fewer than 2 ranks or `max_bytes` < 1.
pub fn run<C: Transport>(group: &Group<C>, max_bytes: u64, vendor: Option<&dyn Vendor>) -> Result<Outcome> {
    let p = group.size();
    if p < 2 {
        return Err(Error::InvalidArgument {
            what: "rank count",
            reason: "calibrate needs at least 2 ranks (run it under mpirun -n 2)".into(),
        });
    }
    if max_bytes == 0 || max_bytes > 1 << 30 {
        return Err(Error::InvalidArgument {
            what: "size",
            reason: format!("--max-bytes {max_bytes} must be between 1 and 1G"),
        });
    }
    let partner = partner(group)?;
    let mut points = Vec::new();
    let mut n = 1u64;
    while n <= max_bytes {
        points.push(measure_size(group, partner, n)?);
        n *= 2;
    }
    let exchange: Vec<(f64, f64)> = points.iter().map(|p| (p.bytes as f64, p.exchange)).collect();
    let lines = fit_lines(&exchange);
    let pingpong: Vec<(f64, f64)> = points.iter().map(|p| (p.bytes as f64, p.pingpong)).collect();
    let oneway = fit_lines(&pingpong);
    let shifts: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.shift.map(|t| (p.bytes as f64, t)))
        .collect();
    let shift = (!shifts.is_empty()).then(|| fit_lines(&shifts));

    let mut local = [measure_gamma(), measure_copy()];
    group.broadcast(&mut local, 0)?;
    let memory = measure_memory(group)?;
    let barrier = measure_barrier(group)?;
    let params = CostParams {
        lines,
        oneway: Some(oneway),
        shift,
        barrier,
        memory: Some(memory),
        gamma: local[0],
        copy: local[1],
    };
    for pt in &mut points {
        pt.fitted = params.message_time(pt.bytes);
        pt.fitted_oneway = params.oneway_time(pt.bytes);
    }

    let calibration = Calibration {
        params,
        ranks: p,
        host: vendor.map(|v| v.host()).unwrap_or_default(),
        cpu: cpu_model(),
        mpi_version: vendor.map(|v| v.library()).unwrap_or_default(),
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        rules: Rules::default(),
    };
    Ok(Outcome { calibration, points })
}

/// Whom rank 0 times its ping-pongs and exchanges with, the same on every
/// rank: the lowest rank that does not share rank 0's node, or rank 1 when
/// every rank shares it or none does. On a job placed two or more to a
/// node, rank 1 is rank 0's neighbour in shared memory, but every schedule
/// but the two-level one crosses nodes in its rounds. Collective.
pub(crate) fn partner<C: Transport>(group: &Group<C>) -> Result<usize> {
    let t = group.transport();
    let mut partner = [1u64];
    if t.rank() == 0 {
        if let Some(seg) = t.segment() {
            let apart = (0..group.size()).find(|r| !seg.members().contains(r));
            partner[0] = apart.unwrap_or(1) as u64;
        }
    }
    group.broadcast(&mut partner, 0)?;
    Ok(partner[0] as usize)
}

/// Ping-pong, exchange and (with 3 or more ranks) shift times of `n`-byte
/// messages between rank 0 and `partner` (the shift: every rank), rank 0's
/// medians of 7 batches, the same on every rank. Collective.
fn measure_size<C: Transport>(group: &Group<C>, partner: usize, n: u64) -> Result<Point> {
    let (p, t) = (group.size(), group.transport());
    let rank = t.rank();
    // The other end of the timed pair, on its two ends.
    let peer = match rank {
        0 => Some(partner),
        r if r == partner => Some(0),
        _ => None,
    };
    let iters = if n <= 8192 {
        200
    } else {
        (50_000_000 / n).clamp(6, 100) as usize
    };
    let mut bufs = vec![vec![1u8; n as usize]; 3];
    let (mut pp, mut ex, mut sh) = (Vec::new(), Vec::new(), Vec::new());
    for _batch in 0..7 {
        group.barrier()?;
        // ping-pong: half the round trip
        let start = Instant::now();
        for i in 0..iters {
            let b = &mut bufs[i % 3];
            match peer {
                Some(q) if rank == 0 => {
                    t.send(b, q)?;
                    t.recv(b, q)?;
                }
                Some(q) => {
                    t.recv(b, q)?;
                    t.send(b, q)?;
                }
                None => {}
            }
        }
        pp.push(start.elapsed().as_secs_f64() / iters as f64 / 2.0);
        group.barrier()?;
        // exchange: both directions at once
        let start = Instant::now();
        for i in 0..iters {
            if let Some(q) = peer {
                let (a, rest) = bufs.split_at_mut(1);
                let (send, recv) = if i % 2 == 0 {
                    (&a[0], &mut rest[0])
                } else {
                    (&rest[1], &mut a[0])
                };
                t.sendrecv(send, q, recv, q)?;
            }
        }
        ex.push(start.elapsed().as_secs_f64() / iters as f64);
        if p >= 3 {
            // shift: every rank sends right and receives from the left
            group.barrier()?;
            let (right, left) = ((rank + 1) % p, (rank + p - 1) % p);
            let start = Instant::now();
            for i in 0..iters {
                let (a, rest) = bufs.split_at_mut(1);
                let (send, recv) = if i % 2 == 0 {
                    (&a[0], &mut rest[0])
                } else {
                    (&rest[1], &mut a[0])
                };
                t.sendrecv(send, right, recv, left)?;
            }
            sh.push(start.elapsed().as_secs_f64() / iters as f64);
        }
    }
    // Rank 0's view is the one reported; share it so every rank agrees.
    let mut vals = [median(pp), median(ex), if p >= 3 { median(sh) } else { 0.0 }];
    group.broadcast(&mut vals, 0)?;
    Ok(Point {
        bytes: n,
        pingpong: vals[0],
        exchange: vals[1],
        shift: (p >= 3).then_some(vals[2]),
        fitted: 0.0,
        fitted_oneway: 0.0,
    })
}

/// Elements per buffer when timing local kernels: 16 MiB of f32, a
/// gradient-sized buffer well beyond the caches.
const KERNEL_LEN: usize = 1 << 22;

/// Seconds per byte of `kernel(dst, src)` over two 16 MiB f32 buffers (median of 9 runs).
fn seconds_per_byte(kernel: impl Fn(&mut [f32], &[f32])) -> f64 {
    let src = vec![1.0f32; KERNEL_LEN];
    let mut dst = vec![0.5f32; KERNEL_LEN];
    let times = (0..9)
        .map(|_| {
            let start = Instant::now();
            kernel(&mut dst, &src);
            std::hint::black_box(&dst);
            start.elapsed().as_secs_f64()
        })
        .collect();
    median(times) / (KERNEL_LEN * 4) as f64
}

/// Working sets of the memory levels: 32 KiB (L1) to 128 MiB (DRAM), ×4.
const FOOTPRINTS: [u64; MEMORY_LEVELS] = [
    32 << 10,
    128 << 10,
    512 << 10,
    2 << 20,
    8 << 20,
    32 << 20,
    128 << 20,
];

/// The memory levels: at each working set, every rank at once (as in a
/// collective, the ranks of a node share its caches and memory bus) copies
/// one half of its footprint to the other and times it; a byte copied is
/// read once and written once, so the price is half the copy time per
/// byte. Rank 0's medians, broadcast.
fn measure_memory<C: Transport>(group: &Group<C>) -> Result<[Level; MEMORY_LEVELS]> {
    let mut per_byte = [0.0f64; MEMORY_LEVELS];
    for (price, &footprint) in per_byte.iter_mut().zip(&FOOTPRINTS) {
        let len = footprint as usize / 8; // f32 elements per half
        let src = vec![1.0f32; len];
        let mut dst = vec![0.5f32; len];
        // ≈ 4 MiB copied per batch, at least 2 copies.
        let reps = ((4usize << 20) / (len * 4)).max(2);
        let mut times = Vec::new();
        for _batch in 0..7 {
            group.barrier()?;
            let start = Instant::now();
            for _ in 0..reps {
                f32::copy(&mut dst, std::hint::black_box(&src));
                std::hint::black_box(&mut dst);
            }
            times.push(start.elapsed().as_secs_f64() / reps as f64);
        }
        *price = median(times) / (2 * len * 4) as f64;
    }
    group.broadcast(&mut per_byte, 0)?;
    Ok(std::array::from_fn(|i| Level {
        footprint: FOOTPRINTS[i],
        per_byte: per_byte[i],
    }))
}

/// Seconds per barrier on rank 0's node's shared segment (median of 7
/// batches of 1000; every node's ranks time their own at once), when rank
/// 0 shares its node; `None` otherwise.
fn measure_barrier<C: Transport>(group: &Group<C>) -> Result<Option<f64>> {
    let t = group.transport();
    let seg = t.segment();
    let mut idle = |waited| t.idle(waited);
    let mut times = Vec::new();
    for _batch in 0..7 {
        group.barrier()?;
        let start = Instant::now();
        if let Some(seg) = seg {
            for _ in 0..1000 {
                seg.barrier(&mut idle)?;
            }
        }
        times.push(start.elapsed().as_secs_f64() / 1000.0);
    }
    // Rank 0's, or −1 when it has no segment to time.
    let mut v = [if seg.is_some() { median(times) } else { -1.0 }];
    group.broadcast(&mut v, 0)?;
    Ok((v[0] >= 0.0).then_some(v[0]))
}

/// γ: the f32 sum kernel.
fn measure_gamma() -> f64 {
    seconds_per_byte(|acc, src| f32::reduce(ReduceOp::Sum, acc, src, Order::AccFirst))
}

/// The copy constant: a memcpy.
fn measure_copy() -> f64 {
    seconds_per_byte(|dst, src| dst.copy_from_slice(src))
}

/// The CPU model from /proc/cpuinfo, or an empty string.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Local;

    #[test]
    fn the_link_is_timed_between_nodes_when_there_are_several() {
        // 2 nodes × 2 ranks by slot: rank 1 shares rank 0's node, rank 2 does not.
        let on = |nodes, per_node| Local::run_nodes(nodes, per_node, |ep| partner(&Group::new(ep)).unwrap());
        assert_eq!(on(2, 2), vec![2; 4]);
        assert_eq!(on(3, 4), vec![4; 12]);
        // One rank per node, or every rank on one node: rank 1.
        assert_eq!(on(4, 1), vec![1; 4]);
        assert_eq!(on(1, 3), vec![1; 3]);
        assert_eq!(
            Local::run_apart(3, |ep| partner(&Group::new(ep)).unwrap()),
            vec![1; 3]
        );
    }

    #[test]
    fn piecewise_fit_finds_the_breaks() {
        let pts: Vec<(f64, f64)> = (0..24)
            .map(|i| {
                let n = (1u64 << i) as f64;
                let t = if n <= 2048.0 {
                    1e-6 + n * 1e-10
                } else if n <= 1048576.0 {
                    5e-6 + n * 2e-10
                } else {
                    n * 4e-10
                };
                (n, t)
            })
            .collect();
        let l = fit_lines(&pts);
        assert_eq!(
            l.map(|l| l.up_to),
            [2048, 1048576, u64::MAX, u64::MAX, u64::MAX],
            "{l:?}"
        );
        assert!(
            (l[0].alpha - 1e-6).abs() < 1e-12 && (l[1].beta - 2e-10).abs() < 1e-15,
            "{l:?}"
        );
        assert!((l[2].beta - 4e-10).abs() < 1e-15, "{l:?}");
    }

    #[test]
    fn a_fit_whose_constant_would_be_negative_refits_the_slope() {
        // Time per byte that grows with the size, as messages leave the
        // caches (an exchange at 4, 8 and 16 MiB on 2 ranks of this
        // machine): the unconstrained line has α < 0. The fit with α ≥ 0 is
        // the best line through the origin, whose relative errors are far
        // below those of the unconstrained slope with α set to 0.
        let pts = [
            (4194304.0, 563.8e-6),
            (8388608.0, 1988.9e-6),
            (16777216.0, 3614.5e-6),
        ];
        let (a, b) = fit_line(&pts);
        let ratio: Vec<f64> = pts.iter().map(|&(n, t)| n / t).collect();
        let best = ratio.iter().sum::<f64>() / ratio.iter().map(|r| r * r).sum::<f64>();
        assert_eq!(a, 0.0);
        assert!((b - best).abs() < 1e-6 * best, "{b} vs {best}");
        let err: f64 = pts.iter().map(|&(n, t)| ((n * b - t) / t).powi(2)).sum();
        assert!(err < 0.25, "relative squared error {err}");
        // Falling times (β < 0 unconstrained): the constant line, their weighted mean.
        let (a, b) = fit_line(&[(1.0, 3.0), (2.0, 2.0), (4.0, 1.0)]);
        assert_eq!(b, 0.0);
        assert!(a > 1.0 && a < 3.0, "{a}");
    }

    #[test]
    fn fit_recovers_an_exact_line() {
        let pts: Vec<(f64, f64)> = (0..12)
            .map(|i| {
                let n = (1u64 << i) as f64;
                (n, 2e-6 + n * 3e-10)
            })
            .collect();
        let (a, b) = fit_line(&pts);
        assert!((a - 2e-6).abs() < 1e-12 && (b - 3e-10).abs() < 1e-15, "{a} {b}");
    }
}
