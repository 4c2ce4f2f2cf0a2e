//! QSGD: stochastic quantization of the gradient to s levels per
//! coordinate (Alistarh et al. 2017), unbiased, one byte per coordinate.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::compress::Compressor;
use crate::error::{Error, Result};
use crate::transport::Transport;

use super::{Registered, Spelling, Step, Strategy, Tally};
use crate::algorithms::Algorithm;
use crate::train::codec::{gathered_secs, probe_gradient};
use crate::train::Matrix;

/// Most levels: a level and a sign fit one byte.
pub const MAX_LEVELS: u8 = 127;

/// Quantizes `v` to `levels` levels: coordinate i becomes
/// ‖v‖·sign(v_i)·l/s with l = ⌊s·|v_i|/‖v‖⌋ or l + 1, the upper one with
/// probability s·|v_i|/‖v‖ − l — so its expectation is v_i. Returns ‖v‖
/// (f32) and one byte per coordinate: the sign in the top bit, l below.
pub fn quantize(v: &[f32], levels: u8, rng: &mut impl Rng) -> (f32, Vec<u8>) {
    let norm = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt() as f32;
    let s = levels as f32;
    let bytes = v
        .iter()
        .map(|&x| {
            if norm == 0.0 || !x.is_finite() {
                return 0;
            }
            let r = (x.abs() / norm * s).min(s);
            let low = r.floor();
            let up = rng.gen::<f32>() < r - low;
            let l = (low as u8 + u8::from(up)).min(levels);
            l | if x < 0.0 { 0x80 } else { 0 }
        })
        .collect();
    (norm, bytes)
}

/// Adds the coordinates [`quantize`] encoded to `out`.
pub fn add_dequantized(norm: f32, bytes: &[u8], levels: u8, out: &mut [f32]) {
    let unit = norm / levels as f32;
    for (o, &b) in out.iter_mut().zip(bytes) {
        let x = (b & 0x7f) as f32 * unit;
        *o += if b & 0x80 != 0 { -x } else { x };
    }
}

/// Synchronous SGD whose gradient travels QSGD-quantized: every rank
/// sends its norm (4 bytes) and one byte per coordinate, all-gathered (a
/// ring, p − 1 rounds); every rank decodes all of them in rank order into
/// the same averaged gradient. QSGD is unbiased, so it takes no error
/// feedback. The random rounding is seeded by `seed`, the rank and the
/// step, so a run — and a resumed run — repeats exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct QsgdSgd {
    /// Levels s, 1 to 127.
    pub levels: u8,
    /// Seed of the rounding.
    pub seed: u64,
}

impl QsgdSgd {
    /// `levels` levels.
    ///
    /// # Errors
    /// Levels outside 1..=127.
    pub fn new(levels: u8) -> Result<Self> {
        let s = QsgdSgd { levels, seed: 0 };
        s.check(1)?;
        Ok(s)
    }

    /// Bytes one rank sends per step for `n` coordinates.
    pub fn block_bytes(n: usize) -> usize {
        4 + n
    }
}

/// The compressor: the norm (4 bytes, little-endian) then one byte per
/// coordinate (stochastic rounding, as `QsgdSgd` sends). Not linear — each rank scales by its own
/// norm and draws its own rounding — so codes are all-gathered.
#[derive(Debug, Clone, PartialEq)]
pub struct Qsgd {
    /// Levels s, 1 to 127.
    pub levels: u8,
    /// Seed of the rounding (with the rank and the stream).
    pub seed: u64,
}

impl Compressor for Qsgd {
    type Word = u8;

    fn name(&self) -> String {
        format!("qsgd:levels={}", self.levels)
    }

    fn code_len(&self, n: usize) -> usize {
        QsgdSgd::block_bytes(n)
    }

    fn encode(&mut self, values: &[f32], stream: u64, rank: usize, code: &mut [u8]) {
        let stream = self.seed ^ ((rank as u64) << 48) ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rng = ChaCha8Rng::seed_from_u64(stream);
        let (norm, levels) = quantize(values, self.levels, &mut rng);
        code[..4].copy_from_slice(&norm.to_le_bytes());
        code[4..].copy_from_slice(&levels);
    }

    fn decode(&mut self, code: &[u8], out: &mut [f32]) {
        out.fill(0.0);
        self.add_decoded(code, out);
    }

    fn add_decoded(&mut self, code: &[u8], out: &mut [f32]) {
        let norm = f32::from_le_bytes([code[0], code[1], code[2], code[3]]);
        add_dequantized(norm, &code[4..], self.levels, out);
    }
}

impl Strategy for QsgdSgd {
    fn name(&self) -> String {
        format!("sync,compress=qsgd:levels={}", self.levels)
    }

    fn check(&self, _p: usize) -> Result<()> {
        match self.levels {
            1..=MAX_LEVELS => Ok(()),
            l => Err(Error::InvalidArgument {
                what: "strategy",
                reason: format!(
                    "qsgd:levels={l}: levels must be 1 to {MAX_LEVELS} (a level and a sign in one byte)"
                ),
            }),
        }
    }

    fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()> {
        if ctx.group.size() <= 1 {
            return Ok(());
        }
        let mut codec = Qsgd {
            levels: self.levels,
            seed: self.seed,
        };
        ctx.all_gather_compressed(&mut codec, grad)
    }
}

impl Registered for QsgdSgd {
    const SYNOPSIS: &'static str = "sync,compress=qsgd:levels=S";
    const HELP: &'static str =
        "QSGD: the gradient stochastically quantized to S levels, one byte per coordinate, all-gathered";

    fn parse(s: &Spelling<'_>) -> Option<Result<Self>> {
        s.compressor("qsgd", |g, c| {
            let levels = c.number::<u8>(s, Some("levels"), "qsgd takes levels=1..127, e.g. qsgd:levels=16")?;
            if g.algorithm.unwrap_or(Algorithm::Ring) != Algorithm::Ring || g.feedback.is_some() {
                return Err(s.invalid(format!(
                    "`{}`: QSGD is not linear, so its levels are all-gathered: it takes no algorithm, wire type or error feedback",
                    s.text()
                )));
            }
            QsgdSgd::new(levels)
        })
    }

    fn communication(&self, t: &mut Tally<'_>) {
        t.all_gather(QsgdSgd::block_bytes(t.params) as u64, t.steps as u64);
    }

    fn codec_secs(&self, p: usize, n: usize, _: &[Matrix]) -> Option<Result<f64>> {
        let codec = Qsgd {
            levels: self.levels,
            seed: self.seed,
        };
        Some(Ok(gathered_secs(codec, &probe_gradient(n), p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_is_unbiased() {
        // Mean of M quantizations of one vector, per coordinate, against the
        // vector: each is a two-point variable 1/s·‖v‖ apart, so the mean's
        // standard deviation is at most ‖v‖/(2s·√M); allow 5 of them.
        let v: Vec<f32> = (0..64).map(|i| ((i * 37 % 29) as f32 - 14.0) * 0.1).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        for levels in [1u8, 4, 16] {
            let m = 20_000;
            let mut mean = vec![0f64; v.len()];
            let mut rng = ChaCha8Rng::seed_from_u64(levels as u64);
            for _ in 0..m {
                let (nq, q) = quantize(&v, levels, &mut rng);
                let mut out = vec![0f32; v.len()];
                add_dequantized(nq, &q, levels, &mut out);
                for (a, o) in mean.iter_mut().zip(&out) {
                    *a += *o as f64 / m as f64;
                }
            }
            let tol = 5.0 * norm as f64 / (2.0 * levels as f64 * (m as f64).sqrt());
            for (i, (&a, &x)) in mean.iter().zip(&v).enumerate() {
                assert!(
                    (a - x as f64).abs() <= tol,
                    "s={levels} i={i}: mean {a} vs {x} (tolerance {tol})"
                );
            }
        }
    }

    #[test]
    fn levels_and_signs_fit_one_byte_and_zero_stays_zero() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (n, q) = quantize(&[3.0, -4.0, 0.0], 127, &mut rng);
        assert_eq!(n, 5.0);
        assert_eq!(q[2], 0);
        assert!(q[1] & 0x80 != 0 && q[0] & 0x80 == 0);
        let (n0, q0) = quantize(&[0.0; 4], 8, &mut rng);
        assert_eq!((n0, q0), (0.0, vec![0; 4]));
    }
}
