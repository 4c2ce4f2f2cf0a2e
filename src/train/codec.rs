//! What gradient compression costs and when it pays: bytes and rounds per
//! step (exact), this machine's local work per step (measured), and the
//! break-even bandwidth below which a compressor beats the uncompressed
//! ring.

use std::time::Instant;

use serde::Serialize;

use crate::compress::Compressor;
use crate::cost::CostParams;
use crate::error::Result;

use super::model::Matrix;
use super::strategies::AnyStrategy;

/// One compressor's figures for one step.
#[derive(Debug, Clone, Serialize)]
pub struct CompressionCost {
    /// Its spelling (`none`, `fp16`, `powersgd:rank=2`, …).
    pub compressor: String,
    /// Bytes the busiest rank sends per step.
    pub bytes_per_step: u64,
    /// Sequential rounds per step.
    pub rounds_per_step: u64,
    /// Local work of encoding and decoding per step, measured here (median of 5).
    pub codec_secs: f64,
    /// Predicted communication time per step under the cost constants.
    pub comm_secs: f64,
    /// Link bandwidth in bytes per second below which this compressor's
    /// step (communication + local work) is faster than the uncompressed
    /// ring's: `None` never (it sends no fewer bytes), infinity always.
    pub break_even: Option<f64>,
    /// The same against the fp16 wire ring (the cheap baseline a
    /// compressor must beat to be worth its convergence risk).
    pub break_even_fp16: Option<f64>,
}

/// The bandwidth in bytes per second below which `f`'s step (rounds·α +
/// bytes/bandwidth + local work) is shorter than `base`'s: `None` when it
/// sends no fewer bytes, infinity when it is never longer.
fn break_even(f: &CompressionCost, base: &CompressionCost, alpha: f64) -> Option<f64> {
    if f.bytes_per_step >= base.bytes_per_step {
        return None;
    }
    let extra =
        (f.rounds_per_step as f64 - base.rounds_per_step as f64) * alpha + f.codec_secs - base.codec_secs;
    let saved = (base.bytes_per_step - f.bytes_per_step) as f64;
    Some(if extra <= 0.0 {
        f64::INFINITY
    } else {
        saved / extra
    })
}

pub(crate) fn median_secs(mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[2]
}

/// Seconds to encode `grad` once and decode p codes (the all-gathered
/// route: every rank decodes every rank's code).
pub(crate) fn gathered_secs<K: Compressor>(mut c: K, grad: &[f32], p: usize) -> f64 {
    let mut code = vec![<K::Word as bytemuck::Zeroable>::zeroed(); c.code_len(grad.len())];
    let mut out = vec![0f32; grad.len()];
    median_secs(|| {
        c.encode(grad, 1, 0, &mut code);
        out.fill(0.0);
        for _ in 0..p {
            c.add_decoded(&code, &mut out);
        }
    })
}

/// A gradient of `n` values for timing codecs (the same every call).
pub(crate) fn probe_gradient(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-5)
        .collect()
}

/// The figures of each compressor (spellings of `train --compress`) on `p`
/// ranks for a model of `n` f32 parameters with weight matrices
/// `matrices`, under `params`, against the uncompressed ring. The break-even
/// uses one latency α for both (the line of the ring's message) and solves
/// rounds·α + bytes·β + local work for the β where they meet.
///
/// # Errors
/// An unknown compressor.
pub fn compression_costs(
    compressors: &[String],
    p: usize,
    n: usize,
    matrices: &[Matrix],
    params: &CostParams,
) -> Result<Vec<CompressionCost>> {
    let figures = |c: &str| -> Result<CompressionCost> {
        let s: AnyStrategy = format!("sync:ring,compress={c}").parse()?;
        let comm = s.communication_for(p, n, matrices, 1, 0, params);
        Ok(CompressionCost {
            compressor: c.to_string(),
            bytes_per_step: comm.bytes,
            rounds_per_step: comm.rounds,
            codec_secs: s.codec_secs(p, n, matrices)?,
            comm_secs: comm.predicted_secs,
            break_even: None,
            break_even_fp16: None,
        })
    };
    let ring = figures("none")?;
    let fp16 = figures("fp16")?;
    let alpha = params
        .line_for(ring.bytes_per_step / ring.rounds_per_step.max(1))
        .alpha;
    compressors
        .iter()
        .map(|c| {
            // The baselines' rows are the figures their break-evens used
            // (their local work is measured once).
            let mut f = match c.trim() {
                "none" => ring.clone(),
                "fp16" => fp16.clone(),
                other => figures(other)?,
            };
            f.break_even = break_even(&f, &ring, alpha);
            f.break_even_fp16 = break_even(&f, &fp16, alpha);
            Ok(f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_break_even_is_where_the_step_times_meet() {
        // Under one α and a link of bandwidth b: rounds·α + bytes/b + local
        // work. Slower than the break-even the compressor's step is the
        // shorter, faster the ring's.
        let alpha = 1e-5;
        let params = CostParams::line(alpha, 1e-9, 0.0);
        let mlp = super::super::Mlp::new(vec![50, 40, 10]).unwrap();
        let n = super::super::Model::num_params(&mlp);
        let m = super::super::Model::matrices(&mlp);
        let specs: Vec<String> = ["fp16", "topk:0.05", "powersgd:rank=1", "qsgd:levels=8"]
            .map(String::from)
            .to_vec();
        let rows = compression_costs(&specs, 4, n, &m, &params).unwrap();
        let ring = &compression_costs(&["none".into()], 4, n, &m, &params).unwrap()[0];
        assert_eq!(ring.break_even, None);
        let t = |c: &CompressionCost, bw: f64| {
            c.rounds_per_step as f64 * alpha + c.bytes_per_step as f64 / bw + c.codec_secs
        };
        let fp16 = &rows[0];
        assert_eq!(fp16.break_even_fp16, None);
        for r in &rows[1..3] {
            // Top-k and PowerSGD send fewer bytes than fp16 as well.
            let b = r.break_even_fp16.unwrap();
            if b.is_finite() {
                assert!(t(r, 0.9 * b) < t(fp16, 0.9 * b), "{}", r.compressor);
                assert!(t(r, 1.1 * b) > t(fp16, 1.1 * b), "{}", r.compressor);
            }
        }
        for r in &rows {
            assert!(r.bytes_per_step < ring.bytes_per_step, "{}", r.compressor);
            match r.break_even {
                Some(b) if b.is_finite() => {
                    assert!(t(r, 0.9 * b) < t(ring, 0.9 * b), "{}", r.compressor);
                    assert!(t(r, 1.1 * b) > t(ring, 1.1 * b), "{}", r.compressor);
                }
                Some(_) => assert!(t(r, 1e15) <= t(ring, 1e15), "{}", r.compressor),
                None => panic!("{} sends fewer bytes: it has a break-even", r.compressor),
            }
        }
        assert!(compression_costs(&["gzip".into()], 4, n, &m, &params).is_err());
    }
}
