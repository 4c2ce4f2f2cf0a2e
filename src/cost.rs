//! The cost model: prediction, selection and calibration files.
//!
//! Like NCCL's `tuning.cc` this module holds formulas only; it never touches
//! a transport. The exact counts — rounds, messages, bytes, reduced
//! elements — live next to each schedule in [`crate::algorithms`]
//! ([`Algorithm::exact_cost`]); the tests hold them to the code by running
//! every algorithm over the [`Counting`](crate::Counting) transport. This
//! module turns them into time and picks the fastest.
//!
//! Predicted time is the α-β-γ model: every round on the critical path costs
//! α plus β per byte of its larger direction, and every byte reduced costs γ:
//!
//! `time = rounds·α + path_bytes·β + reduced_bytes·γ`
//!
//! where α and β depend on the message size and on whether the round is an
//! exchange (`sendrecv`, both directions at once) or one-way (a lone send or
//! receive) — see [`CostParams`].
//!
//! A calibration with memory levels ([`CostParams::memory`], measured by
//! `ringreduce calibrate` and built in) replaces γ by the memory traffic
//! of each schedule — bytes read and written by its reductions and copies,
//! [`Cost::memory_bytes`], counted exactly like the wire bytes — priced per
//! byte at the schedule's working set ([`Cost::footprint`]): an order of
//! magnitude cheaper while the working set stays in cache than beyond it.
//! Each round's bytes are priced by the β of a calibration message with the
//! same working set, so a ring whose chunks are small but whose buffer is
//! not pays the out-of-cache β:
//!
//! `time = Σ_rounds (α(m) + m·β(W)) + memory_bytes·μ(W)`
//!
//! | algorithm | rounds | of which exchanges | path bytes | reduced elements | memory bytes |
//! |---|---|---|---|---|---|
//! | naive | p−1 | p−1 | (p−1)·n | (p−1)·k | (3(p−1) + 2(p−2))·n |
//! | butterfly | L (+2) | L | rounds·n | (L (+1))·k | 3·reduced·s |
//! | ring | 2(p−1) | 2(p−1) | 2(p−1)·⌈k/p⌉·s | k − ⌊k/p⌋ | 3·reduced·s |
//! | central | 2(p−1) | 0 | 2(p−1)·n | (p−1)·k | 3·reduced·s |
//!
//! with n = k·s bytes, L = log2 p' for the largest power of two p' ≤ p, and
//! the bracketed terms only when p ≠ p'. The central root's sends and
//! receives happen one after another, so both count on its path.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::algorithms::Cost;
use crate::algorithms::{chunk_range, Algorithm, Knobs, BUILT_IN_LINES};
use crate::error::{Error, Result};

/// Most message-size ranges a [`CostParams`] distinguishes.
pub const MAX_LINES: usize = 5;

/// Working-set sizes at which [`CostParams::memory`] prices memory traffic.
pub const MEMORY_LEVELS: usize = 7;

/// The price of local memory traffic for one working-set size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// Bytes the rank works on (its buffer plus scratch).
    pub footprint: u64,
    /// Seconds per byte read or written.
    pub per_byte: f64,
}

/// `α + m·β` for messages of m ≤ `up_to` bytes (and above the previous line's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Largest message size this line covers (`u64::MAX` for the last).
    pub up_to: u64,
    /// Seconds per message (latency).
    pub alpha: f64,
    /// Seconds per byte (inverse bandwidth).
    pub beta: f64,
}

/// Machine constants of the α-β-γ model.
///
/// Message time is piecewise linear in the message size m: MPI switches
/// protocol (eager below a limit, rendezvous above, much as NCCL has its LL
/// and Simple protocols) and large messages leave the caches, so each size
/// range gets its own line `α + m·β` (up to [`MAX_LINES`]). Exchange rounds
/// (`sendrecv`) and one-way rounds (a lone send or receive) have lines of
/// their own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostParams {
    /// Exchange rounds: lines in increasing `up_to`; the last covers every
    /// larger message. A file may hold fewer lines; the last one repeats.
    #[serde(deserialize_with = "de_lines")]
    pub lines: [Line; MAX_LINES],
    /// One-way rounds; `None`: the exchange lines.
    #[serde(default, deserialize_with = "de_opt_lines")]
    pub oneway: Option<[Line; MAX_LINES]>,
    /// Exchange rounds of the schedules that shift around a ring (send
    /// right, receive from the left: [`Algorithm::shifts`]), measured on 3
    /// or more ranks; `None`: the exchange lines.
    #[serde(default, deserialize_with = "de_opt_lines")]
    pub shift: Option<[Line; MAX_LINES]>,
    /// Local memory traffic ([`Cost::memory_bytes`]) by working set, in
    /// increasing footprint; between two levels the price is interpolated
    /// in log footprint, beyond the ends it is the end's. `None` (files
    /// written before it existed): reductions cost `gamma` per byte reduced
    /// and every byte on the wire is priced by the line of its message size.
    #[serde(default)]
    pub memory: Option<[Level; MEMORY_LEVELS]>,
    /// Seconds of one barrier on a node's shared segment (the rounds of
    /// [`Algorithm::Shm`]); `None`: priced as an empty exchange.
    #[serde(default)]
    pub barrier: Option<f64>,
    /// Seconds per byte reduced by the local kernel.
    pub gamma: f64,
    /// Seconds per byte of a local copy (out-of-place calls copy the input first).
    #[serde(default)]
    pub copy: f64,
}

impl Default for CostParams {
    /// Built-in defaults, from `ringreduce calibrate` at `-n 2` over shared
    /// memory on the 2-core x86-64 machines this project is developed on.
    fn default() -> Self {
        let line = |up_to, alpha, beta| Line { up_to, alpha, beta };
        let level = |footprint, per_byte| Level { footprint, per_byte };
        // The exchange lines are the pipelined ring's, which cuts its
        // segments by them (and sits below this module): one table for both.
        let [small, medium, large] = BUILT_IN_LINES.map(|(up_to, alpha, beta)| line(up_to, alpha, beta));
        CostParams {
            lines: [small, medium, large, large, large],
            oneway: Some([
                line(256, 1.0e-6, 0.1e-9),
                line(2048, 1.2e-6, 0.4e-9),
                line(u64::MAX, 6.0e-6, 0.26e-9),
                line(u64::MAX, 6.0e-6, 0.26e-9),
                line(u64::MAX, 6.0e-6, 0.26e-9),
            ]),
            // Every rank copying at once: caches hold up to ≈ 8 MiB a rank
            // (L2 and the shared L3), beyond it memory's bandwidth.
            shift: None,
            barrier: Some(0.1e-6),
            memory: Some([
                level(32 << 10, 0.009e-9),
                level(128 << 10, 0.009e-9),
                level(512 << 10, 0.009e-9),
                level(2 << 20, 0.009e-9),
                level(8 << 20, 0.0095e-9),
                level(32 << 20, 0.055e-9),
                level(128 << 20, 0.063e-9),
            ]),
            gamma: 0.13e-9,
            copy: 0.11e-9,
        }
    }
}

impl CostParams {
    /// One line for every message size and kind of round: `α + m·β`,
    /// reduction `γ` per byte.
    pub fn line(alpha: f64, beta: f64, gamma: f64) -> Self {
        let l = Line {
            up_to: u64::MAX,
            alpha,
            beta,
        };
        CostParams {
            lines: [l; MAX_LINES],
            oneway: None,
            shift: None,
            barrier: None,
            memory: None,
            gamma,
            copy: 0.0,
        }
    }

    /// The exchange line that covers messages of `bytes`.
    pub fn line_for(&self, bytes: u64) -> &Line {
        pick(&self.lines, bytes)
    }

    /// Seconds of an exchange round moving `bytes` each way.
    pub fn message_time(&self, bytes: u64) -> f64 {
        let l = pick(&self.lines, bytes);
        l.alpha + bytes as f64 * l.beta
    }

    /// Seconds of a one-way round moving `bytes`.
    pub fn oneway_time(&self, bytes: u64) -> f64 {
        let l = pick(self.oneway.as_ref().unwrap_or(&self.lines), bytes);
        l.alpha + bytes as f64 * l.beta
    }

    /// Seconds of a round moving `bytes` inside a call whose working set is
    /// `footprint` bytes: α of the line of its size (the protocol), β of the
    /// line of the calibration message with the same working set — the
    /// sweep cycles three buffers, so a message of m bytes works on 3m.
    /// Without [`memory`](Self::memory) levels the footprint is not known to
    /// matter and the size's own line is used.
    pub fn round_time(&self, bytes: u64, footprint: u64, kind: Round) -> f64 {
        let lines = self.lines_for(kind);
        pick(lines, bytes).alpha + bytes as f64 * self.beta(bytes, footprint, kind)
    }

    /// The β of a round of `kind` moving `bytes` in a call whose working
    /// set is `footprint` (see [`round_time`](Self::round_time)).
    fn beta(&self, bytes: u64, footprint: u64, kind: Round) -> f64 {
        let wide = match self.memory {
            Some(_) => bytes.max(footprint / 3),
            None => bytes,
        };
        pick(self.lines_for(kind), wide).beta
    }

    /// The lines that price rounds of `kind`.
    pub fn lines_for(&self, kind: Round) -> &[Line; MAX_LINES] {
        match kind {
            Round::Swap => &self.lines,
            Round::Shift => self.shift.as_ref().unwrap_or(&self.lines),
            Round::OneWay => self.oneway.as_ref().unwrap_or(&self.lines),
        }
    }

    /// Seconds per byte of memory traffic with a working set of `footprint`
    /// bytes: the [`memory`](Self::memory) levels interpolated in log
    /// footprint; without them, half the copy constant (a copied byte is
    /// read once and written once).
    pub fn memory_per_byte(&self, footprint: u64) -> f64 {
        let Some(levels) = &self.memory else {
            return self.copy / 2.0;
        };
        let w = footprint.max(1) as f64;
        let first = levels[0];
        if w <= first.footprint as f64 {
            return first.per_byte;
        }
        for pair in levels.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if w <= b.footprint as f64 {
                let (la, lb) = ((a.footprint.max(1) as f64).ln(), (b.footprint.max(1) as f64).ln());
                let t = if lb > la { (w.ln() - la) / (lb - la) } else { 1.0 };
                return a.per_byte + t * (b.per_byte - a.per_byte);
            }
        }
        levels[MEMORY_LEVELS - 1].per_byte
    }

    /// Seconds to copy `bytes` (out-of-place calls copy their input) in a
    /// call working on `footprint` bytes.
    pub fn copy_time(&self, bytes: u64, footprint: u64) -> f64 {
        match self.memory {
            Some(_) => 2.0 * bytes as f64 * self.memory_per_byte(footprint),
            None => bytes as f64 * self.copy,
        }
    }

    /// Checks that every constant lies between 0 and 1000 seconds (per
    /// message or byte), which keeps predictions finite, and that the lines
    /// are in increasing order.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Error::InvalidArgument {
            what: "cost parameter",
            reason,
        };
        let mut named = vec![("gamma", self.gamma), ("copy", self.copy)];
        for l in self.memory.iter().flatten() {
            named.push(("memory per byte", l.per_byte));
        }
        named.extend(self.barrier.map(|b| ("barrier", b)));
        let oneway = self.oneway.unwrap_or(self.lines);
        let shift = self.shift.unwrap_or(self.lines);
        for l in self.lines.iter().chain(&oneway).chain(&shift) {
            named.push(("alpha", l.alpha));
            named.push(("beta", l.beta));
        }
        // The bound keeps every prediction finite (≤ 2^64 rounds or bytes × 1e3 s).
        for (name, v) in named {
            if !(0.0..=1e3).contains(&v) {
                return Err(bad(format!("{name} = {v} (must be from 0 to 1000 seconds)")));
            }
        }
        if [self.lines, oneway, shift]
            .iter()
            .any(|ls| ls.windows(2).any(|w| w[0].up_to > w[1].up_to))
        {
            return Err(bad("lines must be in increasing `up_to` order".into()));
        }
        if let Some(levels) = &self.memory {
            if levels.windows(2).any(|w| w[0].footprint > w[1].footprint) {
                return Err(bad("memory levels must be in increasing footprint order".into()));
            }
        }
        Ok(())
    }
}

/// The kinds of round the model prices apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Both directions at once with one peer (`sendrecv` to and from it).
    Swap,
    /// Both directions at once, to one neighbour and from the other, on
    /// every rank (a ring step).
    Shift,
    /// A lone send or receive.
    OneWay,
}

/// 1 to [`MAX_LINES`] lines, the last repeated to fill the array.
fn de_lines<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<[Line; MAX_LINES], D::Error> {
    let v = Vec::<Line>::deserialize(d)?;
    match (v.last(), v.len() <= MAX_LINES) {
        (Some(&last), true) => Ok(std::array::from_fn(|i| v.get(i).copied().unwrap_or(last))),
        _ => Err(serde::de::Error::custom(format!(
            "expected 1 to {MAX_LINES} lines, found {}",
            v.len()
        ))),
    }
}

fn de_opt_lines<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<[Line; MAX_LINES]>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "de_lines")] [Line; MAX_LINES]);
    Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
}

fn pick(lines: &[Line; MAX_LINES], bytes: u64) -> &Line {
    lines
        .iter()
        .find(|l| bytes <= l.up_to)
        .unwrap_or(&lines[MAX_LINES - 1])
}

impl Cost {
    /// Predicted seconds of an in-place call under `params` for elements of
    /// `elem_size` bytes: every round moves one message of
    /// `path_bytes / rounds` bytes.
    ///
    /// With [`CostParams::memory`] levels, local work is priced as memory
    /// traffic instead of by γ: `memory_bytes` at the per-byte price of the
    /// call's working set, and each round's bytes by the β of the same
    /// working set ([`CostParams::round_time`]) — in cache or out of it.
    pub fn predict(&self, params: &CostParams, elem_size: usize) -> f64 {
        let message = self.path_bytes.checked_div(self.rounds).unwrap_or(0);
        let oneway = self.rounds.saturating_sub(self.exchanges) as f64;
        let kind = match self.algorithm.shifts() {
            true => Round::Shift,
            false => Round::Swap,
        };
        if let (Algorithm::Shm, Some(barrier)) = (self.algorithm, params.barrier) {
            return self.rounds as f64 * barrier
                + self.memory_bytes as f64 * params.memory_per_byte(self.footprint);
        }
        if params.memory.is_some() {
            let w = self.footprint;
            let rounds = self.exchanges as f64 * params.round_time(message, w, kind)
                + oneway * params.round_time(message, w, Round::OneWay);
            return rounds.max(self.streaming_time(params, kind, message))
                + self.memory_bytes as f64 * params.memory_per_byte(w);
        }
        let l = pick(params.lines_for(kind), message);
        let rounds = self.exchanges as f64 * (l.alpha + message as f64 * l.beta)
            + oneway * params.oneway_time(message);
        rounds.max(self.streaming_time(params, kind, message))
            + self.reduced as f64 * elem_size as f64 * params.gamma
    }

    /// The floor under any schedule's rounds: the busiest rank's bytes sent
    /// at the β of its rounds' kind (exchange or shift), taken as
    /// [`CostParams::round_time`] takes it (the line of the message, or of
    /// the call's working set). A rank cannot send faster than its link
    /// streams, however its bytes are cut. One-way rounds (a ping-pong's
    /// half round trip) leave the sender idle half the time, so on a shaped
    /// or shared link their β is up to half the link's: a schedule of
    /// one-way rounds that keeps every rank sending (the pipelined ring's
    /// segments) is held to the streaming rate by this floor. Schedules of
    /// exchanges already pay at least this in their rounds.
    fn streaming_time(&self, params: &CostParams, kind: Round, message: u64) -> f64 {
        self.bytes_sent as f64 * params.beta(message, self.footprint, kind)
    }
}

/// Rounds, messages and bytes of `algorithm` for `p` ranks all-reducing
/// `count` elements of `elem_size` bytes. `Auto` is costed as the algorithm
/// it would choose under the default parameters. Beyond what 64-bit byte
/// counts hold ([`check_range`]) every figure saturates at `u64::MAX`.
pub fn cost(algorithm: Algorithm, p: usize, count: usize, elem_size: usize) -> Cost {
    match algorithm.exact_cost(p, count, elem_size) {
        Some(c) => c,
        None => {
            let chosen = select(p, count, elem_size, &CostParams::default());
            chosen
                .exact_cost(p, count, elem_size)
                .unwrap_or(Cost::zero(chosen))
        }
    }
}

/// Checks that `p` ranks and `count` elements of `elem_size` bytes are
/// within what the model computes without overflow (every figure fits in
/// 64 bits: p·(p−1)·count·elem_size < 2^64) and that p ≥ 1.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the value that is out of range.
pub fn check_range(p: usize, count: usize, elem_size: usize) -> Result<()> {
    if p == 0 {
        return Err(Error::InvalidArgument {
            what: "rank count",
            reason: "must be at least 1".into(),
        });
    }
    if !crate::algorithms::in_model_range(p, count, elem_size) {
        return Err(Error::InvalidArgument {
            what: "size",
            reason: format!("{p} ranks × {count} elements × {elem_size} B overflows 64-bit byte counts"),
        });
    }
    Ok(())
}

/// The bandwidth lower bound on bytes each rank must send:
/// 2·(p−1)/p·n (Patarasuk & Yuan 2009), for n = count·elem_size bytes.
pub fn lower_bound_bytes(p: usize, count: usize, elem_size: usize) -> f64 {
    if p <= 1 {
        return 0.0;
    }
    2.0 * (p - 1) as f64 / p as f64 * (count as f64 * elem_size as f64)
}

pub use crate::algorithms::two_level_cost;

/// The concrete algorithm with the lowest predicted time. Equal
/// predictions go to the one each schedule ranks first for ties
/// (`TIE_ORDER`): the ring wins ties at large sizes and the butterfly (the
/// leaner code) its ties with the naive ring at p = 2.
pub fn select(p: usize, count: usize, elem_size: usize, params: &CostParams) -> Algorithm {
    select_checked(p, count, elem_size, params, false)
}

/// Bytes of the header every message of the call check's agreement carries
/// ([`crate::group::check`]): three words of the call — its number, its
/// count and the rest of its signature packed — as the minimum of each and
/// of its complement, 8 bytes each.
pub const CHECK_HEADER: usize = 48;

/// Largest message, in bytes, whose butterfly all-reduce travels inside the
/// agreement's own messages: the check then costs no extra round at all.
/// 63 KiB, so that a frame (data + [`CHECK_HEADER`] + the MPI library's own
/// headers) stays within Open MPI's 64 KiB TCP eager limit and goes out in
/// one send, as the unchecked call's messages do. (Up to 3.9 KiB before:
/// 4–16 KiB checked butterflies then paid the agreement's rounds, 1.9× the
/// unchecked call at 4 KiB on 4 hosts at 1 Gbit/s; see docs/perf/fuse-max.)
pub const FUSE_MAX: usize = (64 << 10) - (1 << 10);

/// Largest message, in bytes, whose Rabenseifner all-reduce carries the
/// agreement in its own messages: the header rides on each message of the
/// reduce-scatter, which pairs the ranks as the agreement's butterfly does,
/// so the check costs no extra round. Beyond 1 MiB the agreement's rounds
/// are a few per cent of the data's time even on fast links, and every
/// agreement's receive must hold the largest frame another rank may send.
pub const FUSE_MAX_RABENSEIFNER: usize = 1 << 20;

/// Whether a call of `algorithm` over `bytes` carries the call check's
/// agreement in its own messages (ranks on several nodes).
pub fn rides_in_agreement(algorithm: Algorithm, bytes: usize) -> bool {
    let most = match algorithm {
        Algorithm::Butterfly => FUSE_MAX,
        Algorithm::Rabenseifner => FUSE_MAX_RABENSEIFNER,
        _ => 0,
    };
    bytes > 0 && bytes <= most
}

/// The call check's agreement before one all-reduce of `algorithm` (see
/// [`crate::group::check`]): a butterfly of [`CHECK_HEADER`]-byte messages
/// — except for a butterfly call of at most [`FUSE_MAX`] bytes and a
/// Rabenseifner call of at most [`FUSE_MAX_RABENSEIFNER`], which carry it
/// ([`rides_in_agreement`]) and add only its bytes, no round or message.
/// Ranks sharing a node agree through the shared segment instead: one
/// barrier, which an `shm` call of any size shares (for `shm`, which only
/// runs there, that is what is counted; the other algorithms are costed as
/// across nodes).
pub fn check_cost(algorithm: Algorithm, p: usize, count: usize, elem_size: usize) -> Cost {
    let bytes = count.saturating_mul(elem_size);
    if algorithm == Algorithm::Shm && p > 1 {
        // The words ride in the call's first barrier at every size.
        let rides = bytes > 0;
        return Cost {
            rounds: u64::from(!rides),
            ..Cost::zero(Algorithm::Shm)
        };
    }
    if p <= 1 {
        return Cost::zero(Algorithm::Butterfly);
    }
    let words = CHECK_HEADER / 8;
    let agreement = Algorithm::Butterfly
        .exact_cost(p, words, 8)
        .unwrap_or(Cost::zero(Algorithm::Butterfly));
    if rides_in_agreement(algorithm, bytes) {
        // No round and no message of its own, but the agreement's bytes:
        // its header rides on the call's messages that pair the ranks as
        // the agreement's butterfly does (every message of a butterfly,
        // the reduce-scatter's of Rabenseifner).
        return Cost {
            bytes_sent: agreement.bytes_sent,
            total_bytes: agreement.total_bytes,
            ..Cost::zero(Algorithm::Butterfly)
        };
    }
    agreement
}

/// Predicted seconds of one all-reduce call of a concrete `algorithm`:
/// its own cost, plus the call check's agreement when `checked`
/// ([`check_cost`]).
pub fn predict_call(
    algorithm: Algorithm,
    p: usize,
    count: usize,
    elem_size: usize,
    params: &CostParams,
    checked: bool,
) -> f64 {
    predict_on(algorithm, p, count, elem_size, params, checked, Layout::APART)
}

/// [`select`] for calls that pay the call check's agreement (`checked`,
/// the default): a butterfly call small enough to ride inside the
/// agreement gains its rounds on every other candidate — at 3 ranks and
/// 8 B that makes the butterfly, not the naive ring, the choice.
pub fn select_checked(
    p: usize,
    count: usize,
    elem_size: usize,
    params: &CostParams,
    checked: bool,
) -> Algorithm {
    select_on(p, count, elem_size, params, checked, Layout::APART)
}

/// [`select_checked`] for ranks placed as `layout`: the lowest
/// [`predict_on`] among the model's candidates ([`Algorithm::in_auto`]).
pub fn select_on(
    p: usize,
    count: usize,
    elem_size: usize,
    params: &CostParams,
    checked: bool,
    layout: Layout,
) -> Algorithm {
    let mut candidates: Vec<Algorithm> = Algorithm::CONCRETE.into_iter().filter(|a| a.in_auto()).collect();
    candidates.sort_by_key(|a| a.tie_order());
    let mut best = (candidates[0], f64::INFINITY);
    for a in candidates {
        let t = predict_on(a, p, count, elem_size, params, checked, layout);
        if t < best.1 {
            best = (a, t);
        }
    }
    best.0
}

/// Whether `layout` puts `p` ranks two or more to a node on two or more
/// nodes (by slot), where [`predict_on`] prices rounds by level.
pub fn two_level(p: usize, layout: Layout) -> bool {
    let l = layout.per_node;
    !layout.shared && l >= 2 && p.is_multiple_of(l) && p / l >= 2
}

/// [`predict_call`] for ranks placed as `layout`. The calibration times
/// the link between nodes when there are several (`calibrate` pairs rank 0
/// with a rank of another node); on a [`two_level`] layout the butterfly
/// and Rabenseifner, whose first steps stay inside a node, are priced by
/// level ([`by_level`]), the others as if every rank had its own node.
pub fn predict_on(
    algorithm: Algorithm,
    p: usize,
    count: usize,
    elem_size: usize,
    params: &CostParams,
    checked: bool,
    layout: Layout,
) -> f64 {
    let levels = match two_level(p, layout) {
        true => by_level(algorithm, p, count, elem_size, params, layout.per_node),
        false => None,
    };
    let own = levels.unwrap_or_else(|| cost(algorithm, p, count, elem_size).predict(params, elem_size));
    let check = match checked {
        true => check_cost(algorithm, p, count, elem_size).predict(params, 8),
        false => 0.0,
    };
    own + check
}

/// The butterfly's and Rabenseifner's rounds priced by level, on `p`
/// ranks placed `per_node` to a node by slot (both powers of two; `None`
/// otherwise, and for the other schedules). Their step j pairs r with
/// r XOR 2^j: inside a node while 2^j < `per_node` — priced as two copies
/// of the message and a microsecond — and across nodes after, where all
/// `per_node` ranks of a node send at once over its one link (the exchange
/// lines at the message's size, `per_node` times its bytes). The
/// reductions' memory traffic as in [`Cost::predict`].
fn by_level(
    algorithm: Algorithm,
    p: usize,
    count: usize,
    elem_size: usize,
    params: &CostParams,
    per_node: usize,
) -> Option<f64> {
    if !p.is_power_of_two() || !per_node.is_power_of_two() {
        return None;
    }
    let own = cost(algorithm, p, count, elem_size);
    let n = (count as u64).saturating_mul(elem_size as u64);
    let steps = p.trailing_zeros();
    // Bytes each rank sends in step j (the all-gather of Rabenseifner
    // repeats its reduce-scatter's steps in reverse).
    let sizes: Vec<(usize, u64)> = match algorithm {
        Algorithm::Butterfly => (0..steps).map(|j| (1usize << j, n)).collect(),
        Algorithm::Rabenseifner => {
            let rs: Vec<(usize, u64)> = (0..steps).map(|j| (1usize << j, n >> (j + 1))).collect();
            rs.iter().chain(rs.iter().rev()).copied().collect()
        }
        _ => return None,
    };
    let rounds: f64 = sizes
        .into_iter()
        .map(|(distance, m)| match distance < per_node {
            true => 1e-6 + params.copy_time(m, own.footprint),
            false => {
                let l = params.line_for(m);
                l.alpha + (per_node as u64 * m) as f64 * l.beta
            }
        })
        .sum();
    let local = match params.memory {
        Some(_) => own.memory_bytes as f64 * params.memory_per_byte(own.footprint),
        None => own.reduced as f64 * elem_size as f64 * params.gamma,
    };
    Some(rounds + local)
}

/// The collectives besides the all-reduce, for their cost rows
/// ([`collective_cost`]); the methods of [`Group`](crate::Group) named alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Collective {
    /// [`Group::reduce_scatter_in_place`](crate::Group::reduce_scatter_in_place)
    /// of a flat buffer (and [`Group::reduce_scatter`](crate::Group::reduce_scatter)
    /// of p blocks of k/p): the ring's first half.
    ReduceScatter,
    /// [`Group::all_gather_in_place`](crate::Group::all_gather_in_place):
    /// the ring's second half.
    AllGather,
    /// [`Group::reduce`](crate::Group::reduce) to rank 0: the
    /// reduce-scatter, then every other rank sends its shard to the root.
    Reduce,
}

impl Collective {
    /// Every collective of the rows.
    pub const ALL: [Collective; 3] = [
        Collective::ReduceScatter,
        Collective::AllGather,
        Collective::Reduce,
    ];

    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Collective::ReduceScatter => "reduce_scatter",
            Collective::AllGather => "all_gather",
            Collective::Reduce => "reduce",
        }
    }
}

/// Rounds, messages and bytes of `collective` on `p` ranks over a flat
/// buffer of `count` elements of `elem_size` bytes, as [`Cost`] counts an
/// all-reduce's (the busiest rank; `algorithm` is the ring whose halves they
/// are). With q = ⌊count/p⌋ and k = count: a reduce-scatter or an all-gather
/// is p − 1 exchanges, the busiest rank sending (k − q) elements; a reduce
/// adds one round in which every rank but the root sends its shard, so each
/// of them sends k elements in p rounds. Exact: the tests hold it to the
/// `Counting` transport. The call check's agreement is not included
/// ([`check_cost`] prices it as for an all-reduce of another algorithm).
pub fn collective_cost(collective: Collective, p: usize, count: usize, elem_size: usize) -> Cost {
    let zero = Cost::zero(Algorithm::Ring);
    if p <= 1 || count == 0 {
        return zero;
    }
    if !crate::algorithms::in_model_range(p, count, elem_size) {
        return Cost::saturated(Algorithm::Ring);
    }
    let (p64, k, s) = (p as u64, count as u64, elem_size as u64);
    let q = k / p64;
    let big = q + u64::from(k % p64 > 0);
    let half = Cost {
        rounds: p64 - 1,
        exchanges: p64 - 1,
        messages: p64 - 1,
        bytes_sent: (k - q) * s,
        total_bytes: (p64 - 1) * k * s,
        path_bytes: (p64 - 1) * big * s,
        footprint: (k + big) * s,
        ..zero
    };
    match collective {
        Collective::ReduceScatter => Cost {
            reduced: k - q,
            memory_bytes: 3 * (k - q) * s,
            ..half
        },
        Collective::AllGather => Cost {
            footprint: k * s,
            ..half
        },
        Collective::Reduce => {
            // The root's own shard stays home; the others' travel to it.
            let to_root = k - crate::algorithms::owned_chunk(count, p, 0).len() as u64;
            Cost {
                rounds: p64,
                messages: p64,
                bytes_sent: k * s,
                total_bytes: ((p64 - 1) * k + to_root) * s,
                path_bytes: ((p64 - 1) * big + to_root) * s,
                reduced: k - q,
                memory_bytes: 3 * (k - q) * s,
                ..half
            }
        }
    }
}

/// Bytes of the ring's largest message (its first chunk), for reports.
pub fn ring_message_bytes(p: usize, count: usize, elem_size: usize) -> u64 {
    if p == 0 {
        0
    } else {
        (chunk_range(count, p, 0).len() as u64).saturating_mul(elem_size as u64)
    }
}

/// A calibration: fitted constants plus where and when they were measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The fitted constants.
    #[serde(flatten)]
    pub params: CostParams,
    /// Ranks the calibration ran on.
    pub ranks: usize,
    /// Host name of rank 0.
    #[serde(default)]
    pub host: String,
    /// CPU model of rank 0.
    #[serde(default)]
    pub cpu: String,
    /// `MPI_Get_library_version`, first line.
    #[serde(default)]
    pub mpi_version: String,
    /// When it was measured (RFC 3339, UTC).
    #[serde(default)]
    pub date: String,
    /// Measured choices that `auto` takes before the model's
    /// (`ringreduce calibrate --rules`, or written by hand).
    #[serde(default, skip_serializing_if = "Rules::is_empty")]
    pub rules: Rules,
}

impl Calibration {
    /// Reads a calibration JSON file written by `ringreduce calibrate`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the file when it cannot be read,
    /// is not valid JSON of this shape, or holds negative or non-finite constants.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::InvalidArgument {
            what: "calibration file",
            reason,
        };
        let mut text = String::new();
        crate::files::open_regular(path, 1 << 20)
            .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text))
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let cal: Calibration =
            serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        cal.params
            .validate()
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        Ok(cal)
    }

    /// Writes the calibration as pretty JSON, atomically (see the checkpoints).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Error::InvalidArgument {
            what: "calibration file",
            reason,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| bad(e.to_string()))?;
        crate::files::write_atomically(path, (text + "\n").as_bytes())
            .map_err(|e| bad(format!("{}: {e}", path.display())))
    }
}

/// How `Algorithm::Auto` chooses: the model's constants and an optional
/// override (like `NCCL_ALGO`). Every rank must hold the same value; a
/// [`Group`](crate::Group) built from the environment takes rank 0's.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Tuning {
    /// Constants of the model.
    pub params: CostParams,
    /// When set, `Auto` always runs this algorithm.
    pub force: Option<Algorithm>,
    /// When set, the pipelined ring cuts each chunk into this many segments
    /// (at most one per element) instead of the model's count.
    #[serde(default)]
    pub segments: Option<u32>,
    /// Measured choices, taken before the model's where one covers the
    /// call ([`Rules::lookup`]).
    #[serde(default)]
    pub rules: Rules,
}

impl Tuning {
    /// This tuning with the model's constants and the rules of `c`.
    pub fn with_calibration(self, c: Calibration) -> Tuning {
        Tuning {
            params: c.params,
            rules: c.rules,
            ..self
        }
    }

    /// What the schedules read of it (see [`Knobs`]): the pipelined ring's
    /// segment count.
    pub(crate) fn knobs(&self) -> Knobs {
        Knobs {
            segments: self.segments,
        }
    }

    /// The concrete algorithm `Auto` runs for this call: the forced one,
    /// or the model's choice ([`select`]); beyond what the model computes in
    /// 64 bits, the ring, the bandwidth-optimal answer anyway.
    /// ([`Group`](crate::Group) keeps the last answer, so a training loop
    /// that asks the same question every step pays for it once.)
    pub fn resolve(&self, p: usize, count: usize, elem_size: usize) -> Algorithm {
        if let Some(a) = self.force {
            return a;
        }
        match check_range(p, count, elem_size) {
            Ok(()) => select(p, count, elem_size, &self.params),
            Err(_) => Algorithm::Ring,
        }
    }

    /// [`Tuning::resolve`] for a group placed as `layout`: a rule of the
    /// [`rules`](Self::rules) table for its rank count, ranks per node and
    /// size first ([`Rules::lookup`]); where every rank maps one shared
    /// [`Segment`](crate::transport::Segment) (`layout.shared`),
    /// [`Algorithm::Shm`] at every size — measured faster than every
    /// message-based schedule from 8 B to 16 MiB (docs/results.md); else the
    /// model ([`select_on`]: with two or more ranks on each of several
    /// nodes, the hierarchical all-reduce is one of its candidates). With
    /// `checked` (the call checks on), the model counts each candidate's
    /// agreement.
    pub fn resolve_on(
        &self,
        p: usize,
        count: usize,
        elem_size: usize,
        layout: Layout,
        checked: bool,
    ) -> Algorithm {
        self.decide(p, count, elem_size, layout, checked).0
    }

    /// [`Tuning::resolve_on`], with what decided it.
    pub fn decide(
        &self,
        p: usize,
        count: usize,
        elem_size: usize,
        layout: Layout,
        checked: bool,
    ) -> (Algorithm, Why) {
        if let Some(a) = self.force {
            return (a, Why::Forced);
        }
        let bytes = (count as u64).saturating_mul(elem_size as u64);
        if let Some((i, rule)) = self.rules.lookup(p, layout, bytes) {
            return (rule.algorithm, Why::Rule(i));
        }
        if layout.shared {
            return (Algorithm::Shm, Why::OneNode);
        }
        let a = match check_range(p, count, elem_size) {
            Ok(()) => select_on(p, count, elem_size, &self.params, checked, layout),
            Err(_) => Algorithm::Ring,
        };
        (a, Why::Model)
    }
}

/// What decided `auto`'s choice ([`Tuning::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `RINGREDUCE_ALGO` (or [`Tuning::force`]).
    Forced,
    /// Rule i of the table ([`Tuning::rules`]).
    Rule(usize),
    /// Every rank on one shared segment: [`Algorithm::Shm`].
    OneNode,
    /// The cost model's lowest prediction.
    Model,
}

/// How a group's ranks sit on nodes, the same on every rank: what a rule
/// of a [`Rules`] table is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// Ranks on each node when every node holds as many (1: one rank per
    /// node); 0 when the nodes hold different numbers.
    pub per_node: usize,
    /// Every rank maps one shared segment (so `shm` can run).
    pub shared: bool,
}

impl Layout {
    /// One rank per node, nothing shared: how the model prices every
    /// message-based schedule.
    pub const APART: Layout = Layout {
        per_node: 1,
        shared: false,
    };

    /// `nodes` nodes holding `p` ranks, placed by slot (as `mpirun` does):
    /// [`Layout::per_node`] is p/nodes when it divides, else 0; shared
    /// when there is one node.
    pub fn nodes(p: usize, nodes: usize) -> Layout {
        let nodes = nodes.clamp(1, p.max(1));
        Layout {
            per_node: if p.is_multiple_of(nodes) { p / nodes } else { 0 },
            shared: nodes == 1 && p > 1,
        }
    }
}

/// Most rules a [`Rules`] table holds.
pub const MAX_RULES: usize = 96;

/// One line of a [`Rules`] table: on `ranks` ranks placed `per_node` to a
/// node, calls of at most `up_to` bytes (and more than the previous rule's
/// of the same placement; no `up_to`: any larger size) run `algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Ranks of the group.
    pub ranks: usize,
    /// Ranks per node ([`Layout::per_node`]); 1 when absent.
    #[serde(default = "one_per_node")]
    pub per_node: usize,
    /// Largest call, in bytes per rank, this rule covers; `None`: every larger one.
    #[serde(default)]
    pub up_to: Option<u64>,
    /// What runs: a concrete algorithm.
    pub algorithm: Algorithm,
}

fn one_per_node() -> usize {
    1
}

const NO_RULE: Rule = Rule {
    ranks: 0,
    per_node: 0,
    up_to: Some(0),
    algorithm: Algorithm::Ring,
};

/// Measured choices for `auto`, like Open MPI's dynamic rules file or
/// MPICH's JSON tuning tables: by rank count, ranks per node and message
/// size, which algorithm to run. Written by `ringreduce calibrate --rules`
/// into the calibration file (a JSON list under `"rules"`, readable and
/// editable), pinned with `RINGREDUCE_CALIBRATION`. A call that no rule
/// covers goes to the model. A list in JSON; fixed capacity
/// ([`MAX_RULES`]) so that the settings stay `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<Rule>", try_from = "Vec<Rule>")]
pub struct Rules {
    rules: [Rule; MAX_RULES],
    len: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            rules: [NO_RULE; MAX_RULES],
            len: 0,
        }
    }
}

impl Rules {
    /// A table of `rules`, checked: at most [`MAX_RULES`]; concrete
    /// algorithms; 1 ≤ per_node ≤ ranks or per_node 0; `shm` only with
    /// every rank on one node; sizes increasing within each placement, and
    /// nothing after an unbounded rule.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first rule at fault.
    pub fn new(rules: &[Rule]) -> Result<Rules> {
        let bad = |i: usize, reason: String| Error::InvalidArgument {
            what: "rule",
            reason: format!("rule {} of {}: {reason}", i + 1, rules.len()),
        };
        if rules.len() > MAX_RULES {
            return Err(Error::InvalidArgument {
                what: "rules",
                reason: format!("{} rules; a table holds at most {MAX_RULES}", rules.len()),
            });
        }
        for (i, r) in rules.iter().enumerate() {
            if r.algorithm == Algorithm::Auto {
                return Err(bad(
                    i,
                    "`auto` is what the rules decide; name a concrete algorithm".into(),
                ));
            }
            if r.ranks == 0 || r.per_node > r.ranks {
                return Err(bad(
                    i,
                    format!("{} per node of {} ranks (give ranks ≥ 1 and per_node from 1 to ranks, or 0 for nodes of different sizes)", r.per_node, r.ranks),
                ));
            }
            if r.algorithm == Algorithm::Shm && r.per_node != r.ranks && r.ranks > 1 {
                return Err(bad(
                    i,
                    "shm runs only with every rank on one node (per_node = ranks)".into(),
                ));
            }
            let earlier = rules[..i]
                .iter()
                .filter(|e| (e.ranks, e.per_node) == (r.ranks, r.per_node))
                .map(|e| e.up_to);
            for up_to in earlier {
                match (up_to, r.up_to) {
                    (None, _) => {
                        return Err(bad(
                            i,
                            "follows a rule without `up_to` for the same ranks and per_node".into(),
                        ))
                    }
                    (Some(a), Some(b)) if b <= a => {
                        return Err(bad(
                            i,
                            format!(
                            "up_to {b} is not above an earlier rule's {a} for the same ranks and per_node"
                        ),
                        ))
                    }
                    _ => {}
                }
            }
        }
        let mut table = Rules::default();
        table.rules[..rules.len()].copy_from_slice(rules);
        table.len = rules.len();
        Ok(table)
    }

    /// The rules, in order.
    pub fn as_slice(&self) -> &[Rule] {
        &self.rules[..self.len]
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first rule (its index and itself) for `p` ranks placed as
    /// `layout` that covers calls of `bytes` per rank; `None`: the model decides.
    pub fn lookup(&self, p: usize, layout: Layout, bytes: u64) -> Option<(usize, Rule)> {
        self.as_slice()
            .iter()
            .enumerate()
            .find(|(_, r)| {
                r.ranks == p && r.per_node == layout.per_node && r.up_to.is_none_or(|u| bytes <= u)
            })
            .filter(|(_, r)| r.algorithm != Algorithm::Shm || layout.shared)
            .map(|(i, r)| (i, *r))
    }
}

impl From<Rules> for Vec<Rule> {
    fn from(r: Rules) -> Self {
        r.as_slice().to_vec()
    }
}

impl TryFrom<Vec<Rule>> for Rules {
    type Error = Error;
    fn try_from(v: Vec<Rule>) -> Result<Rules> {
        Rules::new(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fuzz_file(tag: &str, bytes: &[u8]) -> Result<Calibration> {
        let path = std::env::temp_dir().join(format!("ringreduce-fuzz-{}-{tag}.json", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let loaded = Calibration::load(&path);
        std::fs::remove_file(&path).unwrap();
        loaded
    }

    /// Whatever loads must be usable: selection and prediction never panic.
    fn use_it(cal: &Calibration) {
        let t = Tuning {
            params: cal.params,
            force: None,
            segments: None,
            rules: Default::default(),
        };
        for p in [1, 2, 3, 8, 1 << 20] {
            for count in [0, 1, 1000, 1 << 40, usize::MAX / 8] {
                if check_range(p, count, 8).is_ok() {
                    let _ = select(p, count, 8, &cal.params);
                }
                let _ = t.resolve(p, count, 8);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_calibration_loader(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)
        ) {
            if let Ok(cal) = fuzz_file("bytes", &bytes) {
                use_it(&cal);
            }
        }

        #[test]
        fn mutated_calibrations_load_or_fail_cleanly(
            edits in proptest::collection::vec((0usize..2000, proptest::num::u8::ANY), 1..6)
        ) {
            let good = Calibration {
                params: CostParams::line(1e-6, 2e-10, 3e-11),
                ranks: 2,
                host: "h".into(),
                cpu: "c".into(),
                mpi_version: "v".into(),
                date: "d".into(),
                rules: Rules::new(&[
                    Rule {
                        ranks: 4,
                        per_node: 2,
                        up_to: Some(4096),
                        algorithm: Algorithm::Butterfly,
                    },
                    Rule {
                        ranks: 4,
                        per_node: 2,
                        up_to: None,
                        algorithm: Algorithm::Hierarchical,
                    },
                ])
                .unwrap(),
            };
            let mut bytes = serde_json::to_vec_pretty(&good).unwrap();
            for (at, b) in edits {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            if let Ok(cal) = fuzz_file("mutated", &bytes) {
                proptest::prop_assert!(cal.params.validate().is_ok());
                use_it(&cal);
            }
        }
    }

    #[test]
    fn public_helpers_never_panic_on_extreme_arguments() {
        // Regression: chunk_range(10, 0, 0) divided by zero; the cost
        // figures overflowed on huge arguments (debug builds panic on overflow).
        let big = usize::MAX;
        for p in [0, 1, 2, 3, 1 << 20, big] {
            for count in [0, 1, 10, big / 8, big] {
                for i in [0, 1, p.saturating_sub(1), p, big] {
                    let r = crate::algorithms::chunk_range(count, p, i);
                    assert!(r.start <= r.end && r.end <= count, "{count} {p} {i}: {r:?}");
                }
                for s in [0, 1, 8, big] {
                    for a in Algorithm::CONCRETE.into_iter().chain([Algorithm::Auto]) {
                        let c = cost(a, p, count, s);
                        assert!(c.predict(&CostParams::default(), s) >= 0.0);
                    }
                    assert!(lower_bound_bytes(p, count, s) >= 0.0);
                    let _ = ring_message_bytes(p, count, s);
                    if p > 0 {
                        let _ = select(p, count, s, &CostParams::default());
                    }
                }
            }
        }
        assert_eq!(crate::algorithms::chunk_range(10, 0, 0), 10..10);
        assert_eq!(cost(Algorithm::Ring, big, big, 8).bytes_sent, u64::MAX);
    }

    #[test]
    fn auto_resolves_counts_beyond_the_model_to_the_ring() {
        // Regression (found by the calibration fuzzer): 2·k·s overflowed.
        let t = Tuning::default();
        assert_eq!(t.resolve(1 << 20, usize::MAX / 8, 8), Algorithm::Ring);
        assert_eq!(t.resolve(2, 4, 4), select(2, 4, 4, &CostParams::default()));
    }

    #[test]
    fn tuning_survives_the_wire() {
        for force in [None, Some(Algorithm::Ring), Some(Algorithm::Central)] {
            for params in [CostParams::default(), CostParams::line(1e-6, 2e-10, 3e-11)] {
                let t = Tuning {
                    params,
                    force,
                    segments: force.map(|_| 12),
                    rules: Rules::default(),
                };
                let back: Tuning = crate::wire::decode(&crate::wire::encode(&t).unwrap()).unwrap();
                assert_eq!(back, t);
            }
        }
    }

    #[test]
    fn message_time_switches_line_at_the_limits() {
        let mut c = CostParams::line(1.0, 0.5, 0.0);
        c.lines[0].up_to = 100;
        c.lines[1] = Line {
            up_to: 1000,
            alpha: 10.0,
            beta: 0.0,
        };
        c.lines[2] = Line {
            up_to: u64::MAX,
            alpha: 0.0,
            beta: 1.0,
        };
        assert_eq!(c.message_time(100), 51.0);
        assert_eq!(c.message_time(101), 10.0);
        assert_eq!(c.message_time(1001), 1001.0);
        c.lines.swap(0, 2);
        assert!(c.validate().is_err());
    }

    #[test]
    fn malformed_calibration_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("ringreduce-cal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("garbage.json", "{not json"),
            ("missing.json", r#"{"alpha": 1e-6}"#),
            (
                "negative.json",
                r#"{"lines": [{"up_to": 1, "alpha": -1, "beta": 0}, {"up_to": 2, "alpha": 0, "beta": 0},
                {"up_to": 3, "alpha": 0, "beta": 0}], "gamma": 1e-10, "ranks": 2}"#,
            ),
        ];
        for (name, text) in cases {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let err = Calibration::load(&path).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
        assert!(Calibration::load(&dir.join("absent.json")).is_err());
        // Regression: /dev/zero as a calibration file grew memory without end.
        let e = Calibration::load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let good = Calibration {
            params: CostParams::default(),
            ranks: 2,
            host: "h".into(),
            cpu: String::new(),
            mpi_version: String::new(),
            date: String::new(),
            rules: Default::default(),
        };
        let path = dir.join("good.json");
        good.save(&path).unwrap();
        assert_eq!(Calibration::load(&path).unwrap(), good);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn three_line_files_load_and_repeat_their_last_line() {
        // Files written before there were five lines, and before memory levels.
        let text = r#"{"lines": [{"up_to": 256, "alpha": 1e-6, "beta": 1e-10},
            {"up_to": 2048, "alpha": 2e-6, "beta": 2e-10},
            {"up_to": 18446744073709551615, "alpha": 3e-6, "beta": 3e-10}],
            "oneway": [{"up_to": 18446744073709551615, "alpha": 4e-6, "beta": 4e-10}],
            "gamma": 1e-10, "ranks": 2}"#;
        let c: Calibration = serde_json::from_str(text).unwrap();
        let q = c.params;
        assert_eq!(q.lines[2], q.lines[4]);
        assert_eq!(q.oneway.unwrap().map(|l| l.alpha), [4e-6; MAX_LINES]);
        assert_eq!(q.memory, None);
        assert_eq!(q.message_time(1 << 20), 3e-6 + (1u64 << 20) as f64 * 3e-10);
        let six = text.replacen("[{", "[{\"up_to\": 1, \"alpha\": 0, \"beta\": 0}, {\"up_to\": 2, \"alpha\": 0, \"beta\": 0}, {\"up_to\": 3, \"alpha\": 0, \"beta\": 0}, {", 1);
        let err = serde_json::from_str::<Calibration>(&six).unwrap_err().to_string();
        assert!(err.contains("1 to 5 lines, found 6"), "{err}");
    }

    fn with_memory(per_byte: [f64; MEMORY_LEVELS]) -> CostParams {
        let mut q = CostParams::line(2e-6, 1e-10, 1e-9);
        q.memory = Some(std::array::from_fn(|i| Level {
            footprint: 1 << (10 + 2 * i),
            per_byte: per_byte[i],
        }));
        q
    }

    #[test]
    fn memory_is_priced_by_working_set_between_the_levels() {
        let q = with_memory([1e-12, 1e-12, 2e-12, 4e-12, 8e-12, 8e-12, 8e-12]);
        // At a level, its price; halfway in log footprint, halfway in price;
        // beyond the ends, the end's.
        assert_eq!(q.memory_per_byte(1 << 14), 2e-12);
        assert!((q.memory_per_byte(1 << 15) - 3e-12).abs() < 1e-24);
        assert_eq!(q.memory_per_byte(1), 1e-12);
        assert_eq!(q.memory_per_byte(u64::MAX), 8e-12);
        assert_eq!(q.copy_time(1000, 1 << 16), 2.0 * 1000.0 * 4e-12);
        let mut bad = q;
        bad.memory.as_mut().unwrap().swap(0, 3);
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("increasing footprint"));
    }

    #[test]
    fn one_way_rounds_are_held_to_the_rate_a_rank_streams_at() {
        // A shaped link as the 4-host cluster calibrates it: a ring shift
        // streams at 8 ns/B; a ping-pong's half round trip shows 4 ns/B,
        // because each side sends only half the time.
        let mut q = CostParams::line(1e-6, 8e-9, 0.0);
        q.shift = Some(q.lines);
        q.oneway = Some(
            [Line {
                up_to: u64::MAX,
                alpha: 1e-6,
                beta: 4e-9,
            }; MAX_LINES],
        );
        let c = cost(Algorithm::Pipelined, 4, 1 << 18, 4);
        assert_eq!(c.exchanges, 0, "the pipelined ring waits for one-way rounds");
        let message = c.path_bytes / c.rounds;
        let by_rounds = c.rounds as f64 * (1e-6 + message as f64 * 4e-9);
        let streaming = c.bytes_sent as f64 * 8e-9;
        assert!(
            streaming > by_rounds,
            "the case this test is for: {streaming} {by_rounds}"
        );
        assert!(
            (c.predict(&q, 4) - streaming).abs() < 1e-12,
            "{} {streaming}",
            c.predict(&q, 4)
        );
        // Where the rounds cost more than streaming (latency-bound), they stand.
        let small = cost(Algorithm::Pipelined, 4, 64, 4);
        let m = small.path_bytes / small.rounds;
        let rounds = small.rounds as f64 * (1e-6 + m as f64 * 4e-9);
        assert!((small.predict(&q, 4) - rounds).abs() < 1e-12);
        // Exchanges already pay their bytes at their line's β: no change.
        let ring = cost(Algorithm::Ring, 4, 1 << 18, 4);
        let m = ring.path_bytes / ring.rounds;
        let expect = ring.rounds as f64 * (1e-6 + m as f64 * 8e-9);
        assert!((ring.predict(&q, 4) - expect).abs() < 1e-12);
    }

    #[test]
    fn with_memory_levels_local_work_is_memory_traffic_not_gamma() {
        // A ring of 4 ranks over 1 MiB: 6 rounds of 64 Ki elements, 3 of
        // every 4 elements reduced, 3 bytes of traffic per byte reduced.
        let c = cost(Algorithm::Ring, 4, 1 << 18, 4);
        assert_eq!((c.rounds, c.path_bytes, c.reduced), (6, 6 << 18, 3 << 16));
        assert_eq!(c.memory_bytes, 3 * (3 << 16) * 4);
        let q = with_memory([5e-12; MEMORY_LEVELS]);
        let message = (1u64 << 18) as f64;
        let expect = 6.0 * (2e-6 + message * 1e-10) + c.memory_bytes as f64 * 5e-12;
        assert!(
            (c.predict(&q, 4) - expect).abs() < 1e-15,
            "{} {expect}",
            c.predict(&q, 4)
        );
        // Without levels: γ per byte reduced, as before.
        let old = CostParams::line(2e-6, 1e-10, 1e-9);
        let expect = 6.0 * (2e-6 + message * 1e-10) + (3 << 16) as f64 * 4.0 * 1e-9;
        assert!((c.predict(&old, 4) - expect).abs() < 1e-15);
        // The same traffic out of cache costs what the larger level says.
        let cold = with_memory([5e-12, 5e-12, 5e-12, 5e-12, 5e-12, 5e-12, 5e-11]);
        let big = cost(Algorithm::Ring, 4, 1 << 24, 4);
        assert!(big.footprint > 1 << 22);
        assert!(big.predict(&cold, 4) > big.predict(&q, 4));
    }

    #[test]
    fn ring_shifts_are_priced_by_their_own_lines() {
        // The ring and the naive ring shift; the butterfly swaps. A shift
        // line twice as slow doubles the ring's message time only.
        let mut q = CostParams::line(2e-6, 1e-10, 0.0);
        let slow = Line {
            up_to: u64::MAX,
            alpha: 4e-6,
            beta: 2e-10,
        };
        let (ring, fly) = (
            cost(Algorithm::Ring, 4, 1000, 4),
            cost(Algorithm::Butterfly, 4, 1000, 4),
        );
        let before = (ring.predict(&q, 4), fly.predict(&q, 4));
        q.shift = Some([slow; MAX_LINES]);
        assert!((ring.predict(&q, 4) - 2.0 * before.0).abs() < 1e-15);
        assert_eq!(fly.predict(&q, 4), before.1);
        assert!(Algorithm::Naive.shifts() && !Algorithm::Central.shifts());
    }

    fn rule(ranks: usize, per_node: usize, up_to: Option<u64>, algorithm: Algorithm) -> Rule {
        Rule {
            ranks,
            per_node,
            up_to,
            algorithm,
        }
    }

    #[test]
    fn a_rules_table_refuses_what_cannot_be_meant_naming_the_rule() {
        use Algorithm::*;
        let cases: Vec<(Vec<Rule>, &str)> = vec![
            (vec![rule(4, 1, None, Auto)], "rule 1 of 1: `auto`"),
            (vec![rule(4, 5, None, Ring)], "5 per node of 4 ranks"),
            (vec![rule(0, 0, None, Ring)], "0 per node of 0 ranks"),
            (vec![rule(4, 2, None, Shm)], "shm runs only"),
            (
                vec![rule(4, 1, Some(64), Ring), rule(4, 1, Some(64), Butterfly)],
                "rule 2 of 2: up_to 64 is not above",
            ),
            (
                vec![rule(4, 1, None, Ring), rule(4, 1, Some(1 << 20), Butterfly)],
                "follows a rule without `up_to`",
            ),
        ];
        for (rules, want) in cases {
            let e = Rules::new(&rules).unwrap_err().to_string();
            assert!(e.contains(want), "{rules:?}: {e}");
        }
        let many = vec![rule(4, 1, Some(1), Ring); MAX_RULES + 1];
        assert!(Rules::new(&many).unwrap_err().to_string().contains("at most"));
        // Other placements keep their own order; one node may run shm.
        let ok = [
            rule(4, 1, Some(64), Butterfly),
            rule(4, 2, Some(8), Ring),
            rule(4, 1, None, Ring),
            rule(4, 4, None, Shm),
        ];
        assert_eq!(Rules::new(&ok).unwrap().as_slice(), &ok);
    }

    #[test]
    fn steps_inside_a_node_are_priced_apart_from_the_shared_link() {
        // A 1 Gbit/s-like link between nodes, shared memory inside them.
        let params = CostParams {
            barrier: Some(0.3e-6),
            memory: CostParams::default().memory,
            ..CostParams::line(15e-6, 8.7e-9, 0.1e-9)
        };
        let two_by_two = Layout::nodes(4, 2);
        assert!(two_level(4, two_by_two));
        let mib = 1 << 18; // 1 MiB of f32
                           // Rabenseifner: its distance-1 steps stay inside a node, and across
                           // nodes both ranks of a node send n/4 twice over one link — n in
                           // all, against 1.5 n a rank priced flat.
        let rab = |layout| predict_on(Algorithm::Rabenseifner, 4, mib, 4, &params, true, layout);
        assert!(
            rab(two_by_two) < 0.75 * rab(Layout::APART),
            "{} vs {}",
            rab(two_by_two),
            rab(Layout::APART)
        );
        // The butterfly's second step carries 2 n over that link.
        let bf = |layout| predict_on(Algorithm::Butterfly, 4, mib, 4, &params, true, layout);
        assert!(bf(two_by_two) > rab(two_by_two));
        // The ring is priced flat on every layout.
        let ring = |layout| predict_on(Algorithm::Ring, 4, mib, 4, &params, true, layout);
        assert_eq!(ring(two_by_two), ring(Layout::APART));
        assert_eq!(
            select_on(4, mib, 4, &params, true, two_by_two),
            Algorithm::Rabenseifner
        );
        assert_eq!(
            select_on(4, 2, 4, &params, true, two_by_two),
            Algorithm::Butterfly
        );
        let tuning = Tuning {
            params,
            ..Tuning::default()
        };
        assert_eq!(
            tuning.decide(4, mib, 4, two_by_two, true),
            (Algorithm::Rabenseifner, Why::Model)
        );
        // Not a power of two, or not two-level: priced flat.
        for (p, layout) in [
            (6, Layout::nodes(6, 3)),
            (4, Layout::APART),
            (4, Layout::nodes(4, 4)),
        ] {
            assert_eq!(
                predict_on(Algorithm::Rabenseifner, p, mib, 4, &params, true, layout),
                predict_call(Algorithm::Rabenseifner, p, mib, 4, &params, true),
                "p={p} {layout:?}"
            );
        }
    }

    #[test]
    fn rules_decide_by_ranks_placement_and_size_before_the_model() {
        use Algorithm::*;
        let rules = Rules::new(&[
            rule(4, 2, Some(4096), Butterfly),
            rule(4, 2, Some(65536), Hierarchical),
            rule(4, 1, Some(1024), Central),
            rule(2, 2, None, Naive),
        ])
        .unwrap();
        let t = Tuning {
            rules,
            ..Tuning::default()
        };
        let two_by_two = Layout::nodes(4, 2);
        assert_eq!(
            two_by_two,
            Layout {
                per_node: 2,
                shared: false
            }
        );
        assert_eq!(t.decide(4, 1, 4, two_by_two, true), (Butterfly, Why::Rule(0)));
        assert_eq!(t.decide(4, 1024, 4, two_by_two, true), (Butterfly, Why::Rule(0)));
        assert_eq!(
            t.decide(4, 1025, 4, two_by_two, true),
            (Hierarchical, Why::Rule(1))
        );
        // Beyond the last bounded rule: the model, as without rules.
        let big = t.decide(4, 1 << 20, 4, two_by_two, true);
        assert_eq!(
            big,
            (
                Tuning::default().resolve_on(4, 1 << 20, 4, two_by_two, true),
                Why::Model
            )
        );
        assert_eq!(t.decide(4, 64, 4, Layout::APART, true), (Central, Why::Rule(2)));
        // Another rank count or placement: the model.
        assert_eq!(t.decide(8, 64, 4, Layout::nodes(8, 4), true).1, Why::Model);
        assert_eq!(t.decide(4, 64, 4, Layout::nodes(4, 3), true).1, Why::Model);
        // Rules come before shared memory; a forced algorithm before both.
        assert_eq!(
            t.decide(2, 1 << 20, 4, Layout::nodes(2, 1), true),
            (Naive, Why::Rule(3))
        );
        assert_eq!(
            Tuning::default().decide(2, 8, 4, Layout::nodes(2, 1), true),
            (Shm, Why::OneNode)
        );
        let forced = Tuning {
            force: Some(Ring),
            ..t
        };
        assert_eq!(forced.decide(4, 1, 4, two_by_two, true), (Ring, Why::Forced));
        // A shm rule is never taken where no segment spans the group.
        let shm = Tuning {
            rules: Rules::new(&[rule(2, 2, None, Shm)]).unwrap(),
            ..Tuning::default()
        };
        let unshared = Layout {
            per_node: 2,
            shared: false,
        };
        assert_eq!(shm.decide(2, 8, 4, unshared, true).1, Why::Model);
    }

    #[test]
    fn a_hand_written_rules_table_loads_with_its_defaults() {
        let dir = std::env::temp_dir().join(format!("ringreduce-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cal.json");
        let mut json: serde_json::Value = serde_json::to_value(Calibration {
            params: CostParams::default(),
            ranks: 4,
            host: String::new(),
            cpu: String::new(),
            mpi_version: String::new(),
            date: String::new(),
            rules: Rules::default(),
        })
        .unwrap();
        assert!(
            json.get("rules").is_none(),
            "an empty table is left out of the file"
        );
        json["rules"] = serde_json::json!([
            {"ranks": 4, "up_to": 2048, "algorithm": "butterfly"},
            {"ranks": 4, "algorithm": "ring"}
        ]);
        std::fs::write(&path, json.to_string()).unwrap();
        let cal = Calibration::load(&path).unwrap();
        assert_eq!(
            cal.rules.as_slice(),
            &[
                rule(4, 1, Some(2048), Algorithm::Butterfly),
                rule(4, 1, None, Algorithm::Ring)
            ]
        );
        cal.save(&path).unwrap();
        assert_eq!(Calibration::load(&path).unwrap(), cal);
        json["rules"] = serde_json::json!([{"ranks": 4, "algorithm": "auto"}]);
        std::fs::write(&path, json.to_string()).unwrap();
        let e = Calibration::load(&path).unwrap_err().to_string();
        assert!(e.contains("cal.json") && e.contains("`auto`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
