//! Call checks: mismatched calls and stalled ranks.
//!
//! Before any data moves, the ranks of a group agree that they are making
//! the same call: the same call number, element count, element type, op and
//! algorithm (what [`Signature`] holds). The agreement is one small
//! all-reduce (minimum of each word and of its complement, by recursive
//! doubling), so every rank learns the same verdict at once:
//!
//! - all equal: the all-reduce proceeds;
//! - any difference: the ranks exchange their signatures and **every** rank
//!   returns the same [`Error::Mismatch`], e.g.
//!   `all_reduce #812: rank 3 passed 1000 f32 sum ring, ranks 0-2 passed 1024 f32 sum ring`.
//!   No data has moved, so nothing hangs, nothing is corrupted, and the
//!   group stays usable.
//!
//! Stall detection is the transport's part: the [`Mpi`](crate::Mpi)
//! transport waits for every message with a deadline ([`CheckConfig::timeout`],
//! default 60 s). When it passes, the waiting ranks ask every rank what it is
//! doing, print one line such as
//! `ringreduce: rank 3 has not joined all_reduce #812 after 60 s` and abort
//! the job (`MPI_Abort`, exit code [`ABORT_CODE`]).
//!
//! # Switching the checks off
//! `RINGREDUCE_CHECK=0` (or [`CheckConfig::mismatch`] = false) skips the
//! agreement; a mismatched call then hangs or fails inside MPI as it would
//! with any MPI library. `RINGREDUCE_TIMEOUT=0` (or `timeout: None`) waits
//! forever. Both are read by rank 0 in [`Mpi::new`](crate::Mpi::new) and
//! broadcast, so every rank runs with the same settings.
//!
//! # Cost
//! The agreement is a butterfly of 48-byte messages: ⌊log2 p⌋ rounds (+2
//! when p is not a power of two). Butterfly calls of at most [`FUSE_MAX`]
//! bytes — what `Auto` picks for small messages — travel inside those same
//! messages, so for them the check adds no round; larger calls pay the
//! agreement's rounds once. Measured at 2 ranks on one machine: 8-byte
//! `auto` 0.79 µs checked vs 0.59 µs unchecked, within noise from 4 KiB up
//! (README, "Reliability").

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

use crate::algorithms::{butterfly_all_reduce, finish, largest_power_of_two, Algorithm};
use crate::element::{DType, Element, Order, ReduceOp};
use crate::error::{Error, Result};
use crate::scratch::Scratch;
use crate::transport::Transport;

/// Environment variable switching the mismatch check: `0`/`off` or `1`/`on`.
pub const ENV_CHECK: &str = "RINGREDUCE_CHECK";
/// Environment variable setting the stall timeout: seconds (`60`, `2.5`), a
/// duration (`500ms`, `2m`), or `0`/`off` for none.
pub const ENV_TIMEOUT: &str = "RINGREDUCE_TIMEOUT";
/// The stall timeout unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Exit code of a job aborted because a rank stalled.
pub const ABORT_CODE: i32 = 3;

/// What the call checks do; identical on every rank of a group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckConfig {
    /// Agree on every call's [`Signature`] before moving data (default on).
    pub mismatch: bool,
    /// Abort the job when a rank waits this long for another (default 60 s;
    /// `None` waits forever). Only transports that can wait with a deadline
    /// use it (the MPI transport does).
    pub timeout: Option<Duration>,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            mismatch: true,
            timeout: Some(DEFAULT_TIMEOUT),
        }
    }
}

impl CheckConfig {
    /// No agreement and no timeout: calls cost exactly their algorithm.
    pub const OFF: CheckConfig = CheckConfig {
        mismatch: false,
        timeout: None,
    };

    /// The defaults, changed by [`ENV_CHECK`] and [`ENV_TIMEOUT`] when set.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a value that is not understood.
    pub fn from_env() -> Result<Self> {
        let mut c = CheckConfig::default();
        if let Some(v) = env_value(ENV_CHECK) {
            c.mismatch = parse_switch(&v).ok_or_else(|| Error::InvalidArgument {
                what: ENV_CHECK,
                reason: format!("`{v}` is neither 1/on/true/yes nor 0/off/false/no"),
            })?;
        }
        if let Some(v) = env_value(ENV_TIMEOUT) {
            c.timeout = parse_timeout(&v)?;
        }
        Ok(c)
    }

    pub(crate) fn to_wire(self) -> [f64; 2] {
        [
            f64::from(u8::from(self.mismatch)),
            self.timeout.map_or(-1.0, |t| t.as_secs_f64()),
        ]
    }

    pub(crate) fn from_wire(w: [f64; 2]) -> Self {
        CheckConfig {
            mismatch: w[0] != 0.0,
            timeout: (w[1] >= 0.0).then(|| Duration::from_secs_f64(w[1])),
        }
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse_switch(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Parses a stall timeout: plain seconds (`60`, `0.5`), a humantime duration
/// (`500ms`, `2m`), or `0`/`off`/`none` for no timeout.
///
/// # Errors
/// [`Error::InvalidArgument`] for anything else, negative or non-finite values.
pub fn parse_timeout(v: &str) -> Result<Option<Duration>> {
    let bad = |reason: String| Error::InvalidArgument {
        what: ENV_TIMEOUT,
        reason,
    };
    let v = v.trim();
    if matches!(v.to_ascii_lowercase().as_str(), "off" | "none") {
        return Ok(None);
    }
    let d = match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=1e9).contains(&s) => Duration::from_secs_f64(s),
        Ok(_) => return Err(bad(format!("`{v}` is not a number of seconds from 0 to 1e9"))),
        Err(_) => humantime::parse_duration(v)
            .map_err(|e| bad(format!("`{v}`: {e} (use seconds, e.g. 60, or 500ms, 2m, off)")))?,
    };
    Ok((!d.is_zero()).then_some(d))
}

/// What one rank passes to one all-reduce: compared across ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// Number of elements.
    pub count: u64,
    /// Element type.
    pub dtype: DType,
    /// Reduction.
    pub op: ReduceOp,
    /// The concrete algorithm (`Auto` already resolved).
    pub algorithm: Algorithm,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {}", self.count, self.dtype, self.op, self.algorithm)
    }
}

/// Words of one rank's call on the wire: call number, count, and the
/// indices of type, op and algorithm.
const WORDS: usize = 3;

impl Signature {
    fn encode(self, call: u64) -> [i64; WORDS] {
        let index = |i: Option<usize>| i.unwrap_or(0xff) as i64;
        let dtype = index(DType::ALL.iter().position(|&d| d == self.dtype));
        let op = index(ReduceOp::ALL.iter().position(|&o| o == self.op));
        let algo = index(Algorithm::CONCRETE.iter().position(|&a| a == self.algorithm));
        [call as i64, self.count as i64, dtype | op << 8 | algo << 16]
    }

    fn decode(w: [i64; WORDS]) -> (u64, Signature) {
        let pick = |shift: u32| ((w[2] >> shift) & 0xff) as usize;
        let sig = Signature {
            count: w[1] as u64,
            dtype: DType::ALL[pick(0).min(DType::ALL.len() - 1)],
            op: ReduceOp::ALL[pick(8).min(ReduceOp::ALL.len() - 1)],
            algorithm: Algorithm::CONCRETE[pick(16).min(Algorithm::CONCRETE.len() - 1)],
        };
        (w[0] as u64, sig)
    }
}

/// A transport's state of the call checks: its settings and call counter.
///
/// Transports that keep one return it from
/// [`Transport::checks`]; the all-reduce entry points use it.
#[derive(Debug)]
pub struct CallChecks {
    config: CheckConfig,
    calls: Cell<u64>,
    agreeing: Cell<bool>,
}

impl CallChecks {
    /// Checks with the given settings and no calls made yet.
    pub fn new(config: CheckConfig) -> Self {
        CallChecks {
            config,
            calls: Cell::new(0),
            agreeing: Cell::new(false),
        }
    }

    /// The settings.
    pub fn config(&self) -> CheckConfig {
        self.config
    }

    /// Collective calls begun so far; the current or last call's number
    /// (calls are numbered from 1).
    pub fn calls(&self) -> u64 {
        self.calls.get()
    }

    /// True while the ranks are agreeing on a call (no rank can be sure
    /// yet that every other one has joined it).
    pub fn agreeing(&self) -> bool {
        self.agreeing.get()
    }
}

/// Bytes of the agreement's header: each word's minimum and its complement's.
const HEADER: usize = 2 * WORDS * 8;

/// Largest message, in bytes, whose butterfly all-reduce travels inside the
/// agreement's own messages (header + data ≤ 4 KiB, within the usual eager
/// limit): the check then costs no extra round at all.
pub const FUSE_MAX: usize = 4096 - HEADER;

/// How a call continues after [`begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Begun {
    /// The data was all-reduced together with the agreement; nothing left to do.
    Done,
    /// Run the algorithm.
    Proceed,
}

/// Starts a collective call: numbers it and, when the checks are on, agrees
/// with every other rank on `sig` before any data moves. Small butterfly
/// calls (≤ [`FUSE_MAX`] bytes) are all-reduced in the same messages.
/// Call it on every rank.
pub(crate) fn begin<T: Element, C: Transport + ?Sized>(
    comm: &C,
    sig: Signature,
    buf: &mut [T],
) -> Result<Begun> {
    let Some(checks) = comm.checks() else {
        return Ok(Begun::Proceed);
    };
    let call = checks.calls.get() + 1;
    checks.calls.set(call);
    if !checks.config.mismatch || comm.size() <= 1 {
        return Ok(Begun::Proceed);
    }
    let fuse =
        sig.algorithm == Algorithm::Butterfly && !buf.is_empty() && std::mem::size_of_val(buf) <= FUSE_MAX;
    checks.agreeing.set(true);
    let words = sig.encode(call);
    let verdict = agree(comm, words, fuse.then_some((buf, sig.op)));
    checks.agreeing.set(false);
    match verdict? {
        true if fuse => Ok(Begun::Done),
        true => Ok(Begun::Proceed),
        false => Err(gather_mismatch(comm, words)?),
    }
}

/// Whether a header (minimum of each word, then of each complement) says
/// every rank it covers passed the same words: `min(w) == !min(!w)`.
fn consistent(h: &[i64; 2 * WORDS]) -> bool {
    (0..WORDS).all(|i| h[i] == !h[WORDS + i])
}

/// The agreement: a butterfly over frames of [header | data]. Headers
/// merge by element-wise minimum, so every rank ends with the same header,
/// consistent iff every rank passed the same words. With `data`, the data
/// are reduced exactly as [`Algorithm::Butterfly`] reduces them (lower
/// rank's partial first), as long as both partners' headers are consistent
/// and equal — which, at the end, holds everywhere or the verdict is false.
/// Frames of different lengths are fine: receives take up to a full frame.
fn agree<T: Element, C: Transport + ?Sized>(
    comm: &C,
    words: [i64; WORDS],
    mut data: Option<(&mut [T], ReduceOp)>,
) -> Result<bool> {
    const FRAME_WORDS: usize = (HEADER + FUSE_MAX).div_ceil(8);
    // 8-byte words keep the data part (at byte 48) aligned for every element
    // type; pooled, so a training loop's calls neither allocate nor zero them.
    let mut frame = Scratch::<i64>::new(FRAME_WORDS);
    let mut inbox = Scratch::<i64>::new(FRAME_WORDS);
    let own: [i64; 2 * WORDS] = std::array::from_fn(|i| if i < WORDS { words[i] } else { !words[i - WORDS] });
    let n = data.as_ref().map_or(0, |(d, _)| std::mem::size_of_val(*d));
    let len = HEADER + n;
    {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut::<i64, u8>(&mut frame);
        bytes[..HEADER].copy_from_slice(bytemuck::bytes_of(&own));
        if let Some((d, _)) = &data {
            bytes[HEADER..len].copy_from_slice(bytemuck::cast_slice(d));
        }
    }
    let (p, r) = (comm.size(), comm.rank());
    let pof2 = largest_power_of_two(p);
    let extra = p - pof2;
    let header_of = |b: &[u8]| -> [i64; 2 * WORDS] { bytemuck::pod_read_unaligned(&b[..HEADER]) };
    let short = |from: usize, got: usize| Error::MessageSize {
        rank: r,
        from,
        expected: HEADER,
        got,
    };
    let mut valid = data.is_some();
    // Merge a received frame of `got` bytes into ours.
    let mut merge = |frame: &mut [i64], inbox: &[i64], got: usize, from: usize, order: Order| {
        if got < HEADER {
            return Err(short(from, got));
        }
        let (mine_b, theirs_b): (&mut [u8], &[u8]) =
            (bytemuck::cast_slice_mut(frame), bytemuck::cast_slice(inbox));
        let (mine, theirs) = (header_of(mine_b), header_of(theirs_b));
        valid = valid && got == len && consistent(&mine) && mine == theirs;
        if let (true, Some((_, op))) = (valid, &data) {
            let acc: &mut [T] = bytemuck::cast_slice_mut(&mut mine_b[HEADER..len]);
            T::reduce(*op, acc, bytemuck::cast_slice(&theirs_b[HEADER..len]), order);
        }
        let merged: [i64; 2 * WORDS] = std::array::from_fn(|i| mine[i].min(theirs[i]));
        mine_b[..HEADER].copy_from_slice(bytemuck::bytes_of(&merged));
        Ok(())
    };

    if r >= pof2 {
        // fold-in: hand the frame to the partner, then take the finished one whole
        let partner = r - pof2;
        comm.send_bytes(&bytemuck::cast_slice::<i64, u8>(&frame)[..len], partner)?;
        let got = comm.recv_bytes_upto(bytemuck::cast_slice_mut::<i64, u8>(&mut inbox), partner)?;
        if got < HEADER {
            return Err(short(partner, got));
        }
        let done = header_of(bytemuck::cast_slice::<i64, u8>(&inbox));
        let agreed = consistent(&done);
        if let (true, true, Some((d, _))) = (agreed, got == len, &mut data) {
            d.copy_from_slice(bytemuck::cast_slice(
                &bytemuck::cast_slice::<i64, u8>(&inbox)[HEADER..len],
            ));
        }
        return Ok(agreed);
    }
    if r < extra {
        // fold-in: the partner is a higher rank, so its data go second
        let got = comm.recv_bytes_upto(bytemuck::cast_slice_mut::<i64, u8>(&mut inbox), r + pof2)?;
        merge(&mut frame, &inbox, got, r + pof2, Order::AccFirst)?;
    }
    let mut mask = 1;
    while mask < pof2 {
        // round log2(mask): swap frames with r XOR mask
        let partner = r ^ mask;
        let got = comm.sendrecv_bytes_upto(
            &bytemuck::cast_slice::<i64, u8>(&frame)[..len],
            partner,
            bytemuck::cast_slice_mut::<i64, u8>(&mut inbox),
            partner,
        )?;
        let order = if partner < r {
            Order::SrcFirst
        } else {
            Order::AccFirst
        };
        merge(&mut frame, &inbox, got, partner, order)?;
        mask <<= 1;
    }
    let bytes: &mut [u8] = bytemuck::cast_slice_mut::<i64, u8>(&mut frame);
    let agreed = consistent(&header_of(bytes));
    if let (true, Some((d, op))) = (agreed, &mut data) {
        let result: &mut [T] = bytemuck::cast_slice_mut(&mut bytes[HEADER..len]);
        finish(*op, result, p);
        d.copy_from_slice(result);
    }
    if r < extra {
        // fold-out: return the finished frame to the partner
        comm.send_bytes(&bytes[..len], r + pof2)?;
    }
    Ok(agreed)
}

/// After a failed agreement (every rank knows): gather every rank's words —
/// each fills its own row, the rest hold `i64::MIN`, max keeps the rows —
/// and build the one error every rank returns.
fn gather_mismatch<C: Transport + ?Sized>(comm: &C, words: [i64; WORDS]) -> Result<Error> {
    let (p, r) = (comm.size(), comm.rank());
    let mut rows = vec![i64::MIN; p * WORDS];
    rows[r * WORDS..(r + 1) * WORDS].copy_from_slice(&words);
    butterfly_all_reduce(comm, &mut rows, ReduceOp::Max)?;
    let all: Vec<(u64, Signature)> = rows
        .chunks_exact(WORDS)
        .map(|c| Signature::decode([c[0], c[1], c[2]]))
        .collect();
    Ok(mismatch(&all))
}

/// The error every rank returns when the gathered calls (`all[r]` is rank
/// r's call number and signature) are not all alike.
fn mismatch(all: &[(u64, Signature)]) -> Error {
    // Group the ranks by what they passed; the smallest groups (the odd ones out) first.
    let mut groups: Vec<(&(u64, Signature), Vec<usize>)> = Vec::new();
    for (rank, call) in all.iter().enumerate() {
        match groups.iter_mut().find(|(c, _)| *c == call) {
            Some((_, ranks)) => ranks.push(rank),
            None => groups.push((call, vec![rank])),
        }
    }
    groups.sort_by_key(|(_, ranks)| (ranks.len(), ranks[0]));
    let calls_differ = groups.iter().any(|((c, _), _)| *c != all[0].0);
    let parts: Vec<String> = groups
        .iter()
        .map(|((call, sig), ranks)| {
            let who = rank_list(ranks);
            let at = if calls_differ {
                format!(" in all_reduce #{call}")
            } else {
                String::new()
            };
            format!("{who} passed {sig}{at}")
        })
        .collect();
    Error::Mismatch {
        call: all[0].0,
        detail: parts.join(", "),
    }
}

/// "rank 3", "ranks 0-2, 5": a sorted rank list with runs collapsed.
pub(crate) fn rank_list(ranks: &[usize]) -> String {
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ranks.len() {
        let mut j = i;
        while j + 1 < ranks.len() && ranks[j + 1] == ranks[j] + 1 {
            j += 1;
        }
        runs.push(if j > i + 1 {
            format!("{}-{}", ranks[i], ranks[j])
        } else if j == i + 1 {
            format!("{}, {}", ranks[i], ranks[j])
        } else {
            ranks[i].to_string()
        });
        i = j + 1;
    }
    let noun = if ranks.len() == 1 { "rank" } else { "ranks" };
    format!("{noun} {}", runs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{all_reduce, all_reduce_in_place, Local, Transport};

    #[test]
    fn signatures_round_trip() {
        for dtype in DType::ALL {
            for op in ReduceOp::ALL {
                for algorithm in Algorithm::CONCRETE {
                    let sig = Signature {
                        count: 1 << 40,
                        dtype,
                        op,
                        algorithm,
                    };
                    assert_eq!(Signature::decode(sig.encode(812)), (812, sig));
                }
            }
        }
    }

    #[test]
    fn fused_butterfly_calls_are_bitwise_the_plain_butterfly() {
        // Checked small butterfly calls travel with the agreement; the
        // result must not change by a bit, on any p, type, op or count.
        fn run<T: crate::verify::VerifyElement>(
            p: usize,
            count: usize,
            op: ReduceOp,
            checks: CheckConfig,
        ) -> Vec<Vec<T>> {
            Local::run_checked(p, checks, |t| {
                let case = crate::verify::Case {
                    algorithm: Algorithm::Butterfly,
                    dtype: T::DTYPE,
                    op,
                    count,
                    seed: 3,
                };
                let mut v: Vec<T> = crate::verify::input(&case, t.rank());
                all_reduce_in_place(&t, &mut v, op, Algorithm::Butterfly).unwrap();
                v
            })
        }
        for p in [2, 3, 5, 8] {
            for op in ReduceOp::ALL {
                for count in [1, p + 1, 1000, FUSE_MAX / 8, FUSE_MAX / 8 + 1] {
                    crate::with_dtype!(DType::ALL[(p + count) % DType::ALL.len()], T => {
                        let fused = run::<T>(p, count, op, CheckConfig::default());
                        let plain = run::<T>(p, count, op, CheckConfig::OFF);
                        let bytes = |v: &Vec<Vec<T>>| -> Vec<u8> { v.iter().flat_map(|x| bytemuck::cast_slice::<T, u8>(x).to_vec()).collect() };
                        assert_eq!(bytes(&fused), bytes(&plain), "p={p} {op} count={count} {}", T::DTYPE);
                    });
                }
            }
        }
    }

    #[test]
    fn fused_and_plain_frames_meet_when_ranks_disagree() {
        // Rank 1 sends a fused frame (small butterfly), the others plain ones, and back.
        for p in [2, 3, 4, 5] {
            let out = Local::run(p, |t| {
                let (n, algo) = if t.rank() == 1 {
                    (3, Algorithm::Butterfly)
                } else {
                    (5000, Algorithm::Butterfly)
                };
                let mut v = vec![1.0f64; n];
                all_reduce_in_place(&t, &mut v, ReduceOp::Sum, algo)
                    .unwrap_err()
                    .to_string()
            });
            let one = "rank 1 passed 3 f64 sum butterfly";
            let want = if p == 2 {
                // groups of one: by rank
                format!("all_reduce #1: rank 0 passed 5000 f64 sum butterfly, {one}")
            } else {
                let others = rank_list(&(0..p).filter(|&r| r != 1).collect::<Vec<_>>());
                format!("all_reduce #1: {one}, {others} passed 5000 f64 sum butterfly")
            };
            assert!(out.iter().all(|e| *e == want), "{out:?}");
        }
    }

    #[test]
    fn rank_lists() {
        assert_eq!(rank_list(&[3]), "rank 3");
        assert_eq!(rank_list(&[0, 1]), "ranks 0, 1");
        assert_eq!(rank_list(&[0, 1, 2, 5, 7, 8, 9]), "ranks 0-2, 5, 7-9");
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("60").unwrap(), Some(Duration::from_secs(60)));
        assert_eq!(parse_timeout("0.25").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("500ms").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m").unwrap(), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("0").unwrap(), None);
        assert_eq!(parse_timeout("off").unwrap(), None);
        for bad in ["-1", "abc", "nan", "inf", "1e99", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        let wire = CheckConfig::default().to_wire();
        assert_eq!(CheckConfig::from_wire(wire), CheckConfig::default());
        assert_eq!(
            CheckConfig::from_wire(CheckConfig::OFF.to_wire()),
            CheckConfig::OFF
        );
    }

    #[test]
    fn a_different_count_is_an_error_on_every_rank() {
        let out = Local::run(5, |t| {
            let n = if t.rank() == 3 { 1000 } else { 1024 };
            let mut v = vec![1.0f32; n];
            let e = all_reduce_in_place(&t, &mut v, ReduceOp::Sum, Algorithm::Ring).unwrap_err();
            // nothing moved: the buffer is untouched
            assert!(v.iter().all(|&x| x == 1.0));
            // and the group is still usable
            let mut w = vec![t.rank() as i32; 7];
            all_reduce_in_place(&t, &mut w, ReduceOp::Sum, Algorithm::Ring).unwrap();
            assert_eq!(w, vec![10; 7]);
            e.to_string()
        });
        let want = "all_reduce #1: rank 3 passed 1000 f32 sum ring, ranks 0-2, 4 passed 1024 f32 sum ring";
        assert!(out.iter().all(|e| e == want), "{out:?}");
    }

    #[test]
    fn type_op_and_algorithm_differences_are_named() {
        let out = Local::run(3, |t| {
            let mut f = vec![0f32; 4];
            let mut i = vec![0i32; 4];
            let e1 = match t.rank() {
                1 => all_reduce_in_place(&t, &mut i, ReduceOp::Sum, Algorithm::Ring),
                _ => all_reduce_in_place(&t, &mut f, ReduceOp::Sum, Algorithm::Ring),
            };
            let op = if t.rank() == 0 {
                ReduceOp::Max
            } else {
                ReduceOp::Sum
            };
            let e2 = all_reduce_in_place(&t, &mut f, op, Algorithm::Ring);
            let algo = if t.rank() == 2 {
                Algorithm::Naive
            } else {
                Algorithm::Butterfly
            };
            let e3 = all_reduce(&t, &f.clone(), &mut f, ReduceOp::Sum, algo);
            [e1, e2, e3].map(|e| e.unwrap_err().to_string())
        });
        for e in &out {
            assert_eq!(
                e[0],
                "all_reduce #1: rank 1 passed 4 i32 sum ring, ranks 0, 2 passed 4 f32 sum ring"
            );
            assert_eq!(
                e[1],
                "all_reduce #2: rank 0 passed 4 f32 max ring, ranks 1, 2 passed 4 f32 sum ring"
            );
            assert_eq!(
                e[2],
                "all_reduce #3: rank 2 passed 4 f32 sum naive, ranks 0, 1 passed 4 f32 sum butterfly"
            );
        }
    }

    #[test]
    fn a_skipped_call_shows_as_different_call_numbers() {
        let out = Local::run(2, |t| {
            if t.rank() == 1 {
                // rank 1 skips a call (its counter moves on, no call is made)
                let c = t.checks().unwrap();
                c.calls.set(c.calls.get() + 1);
            }
            let mut v = [1u8; 3];
            all_reduce_in_place(&t, &mut v, ReduceOp::Sum, Algorithm::Ring)
                .unwrap_err()
                .to_string()
        });
        let want = "all_reduce #1: rank 0 passed 3 u8 sum ring in all_reduce #1, \
                    rank 1 passed 3 u8 sum ring in all_reduce #2";
        assert_eq!(out, vec![want.to_string(), want.to_string()]);
    }

    #[test]
    fn zero_counts_are_checked_too_and_checks_can_be_off() {
        let out = Local::run(2, |t| {
            let n = if t.rank() == 0 { 0 } else { 5 };
            let mut v = vec![1i32; n];
            all_reduce_in_place(&t, &mut v, ReduceOp::Sum, Algorithm::Butterfly)
                .unwrap_err()
                .to_string()
        });
        assert!(
            out[0].starts_with("all_reduce #1: rank 0 passed 0 i32"),
            "{out:?}"
        );
        // With the checks off the same mistake reaches the transport.
        let out = Local::run_checked(2, CheckConfig::OFF, |t| {
            let n = if t.rank() == 0 { 4 } else { 5 };
            let mut v = vec![1i32; n];
            all_reduce_in_place(&t, &mut v, ReduceOp::Sum, Algorithm::Butterfly).map_err(|e| e.to_string())
        });
        assert!(
            out.iter().any(|r| matches!(r, Err(e) if e.contains("expected"))),
            "{out:?}"
        );
    }
}
