//! The all-reduce algorithms: one file each, and the registry that names them.
//!
//! Every algorithm file holds a unit type implementing `Schedule`: its
//! name, its exact cost (rounds, messages, bytes, reduced elements — what
//! the `Counting` transport measures) next to its schedule, and its `run`.
//! All of them are written against [`Transport`] only; they see neither the
//! call checks nor the tuning, only the `Knobs` a call passes down. Every
//! algorithm keeps the invariants of the design notes: bitwise identical
//! results on every rank, agreement with `MPI_Allreduce`, and support for
//! p = 1, count = 0, count < p, non-power-of-two p and odd counts.
//!
//! Adding an algorithm is one new file and one line in the `registry!`
//! below: the module, the enum variant, its name on the command line, the
//! dispatch, the cost table, `auto`'s candidates and the wire index all come
//! from there. (`rustfmt` does not see modules declared by a macro, so
//! `scripts/test.sh` checks the format of these files by name.)

use std::ops::Range;

use serde::Serialize;

use crate::element::{Element, ReduceOp};
use crate::error::{Error, Result};
use crate::transport::Transport;

/// An all-reduce schedule: what the registry needs of an algorithm file.
pub(crate) trait Schedule {
    /// The lower-case name used on the command line and in reports.
    const NAME: &'static str;
    /// Rank among algorithms whose predicted times tie: lower wins.
    const TIE_ORDER: u8;
    /// Whether `auto` may choose it (its predicted time validated against
    /// measurements).
    const AUTO: bool = true;
    /// Whether its exchanges are shifts — send to one neighbour, receive
    /// from the other, every rank at once, as in a ring — rather than
    /// pairwise swaps. Over TCP a shift costs more than a swap of the same
    /// size (each connection carries one direction only), and the cost model
    /// prices it from a calibration of its own when there is one.
    const SHIFTS: bool = false;
    /// Whether an out-of-place call copies its input into the output
    /// first; `false`: the schedule reads the input where it is and writes
    /// the output directly (the benchmark's predictions add the copy only
    /// for the others).
    const COPIES_INPUT: bool = true;

    /// Rounds, messages, bytes and reduced elements of one call on `p ≥ 2`
    /// ranks with `count ≥ 1` elements of `elem_size` bytes, filled into
    /// `zero` (which names the algorithm and holds zeros). Exact: the tests
    /// hold it to the `Counting` transport.
    fn cost(zero: Cost, p: u64, count: u64, elem_size: u64) -> Cost;

    /// All-reduces `data` (in place or out of place). Called with p ≥ 2
    /// and a non-empty buffer; `knobs` holds the group's overrides (every
    /// rank's alike).
    fn run<T: Element, C: Transport + ?Sized>(
        comm: &C,
        data: Buffers<'_, T>,
        op: ReduceOp,
        knobs: Knobs,
    ) -> Result<()>;
}

/// What the schedules read of the group's settings: the overrides a call
/// passes down, every rank's alike. The group fills it from its tuning
/// (`Tuning::knobs`); the default leaves every schedule to its own model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Knobs {
    /// Segments per chunk of the pipelined ring (at most one per element);
    /// `None`: the count of its built-in model.
    pub(crate) segments: Option<u32>,
}

/// The buffers of one call: one, all-reduced in place, or an input and an
/// output of the same length.
pub(crate) enum Buffers<'a, T> {
    /// The buffer holds the input and receives the result.
    InPlace(&'a mut [T]),
    /// The result goes to the second buffer; the first is only read.
    OutOfPlace(&'a [T], &'a mut [T]),
}

impl<'a, T: Element> Buffers<'a, T> {
    /// The result buffer, holding the input: copied there when out of place.
    pub(crate) fn in_place(self) -> &'a mut [T] {
        match self {
            Buffers::InPlace(buf) => buf,
            Buffers::OutOfPlace(input, buf) => {
                T::copy(buf, input);
                buf
            }
        }
    }
}

/// The modelled cost of one all-reduce: what the busiest rank does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    /// The algorithm.
    #[serde(serialize_with = "ser_name")]
    pub algorithm: Algorithm,
    /// Sequential communication steps of the busiest rank.
    pub rounds: u64,
    /// How many of those rounds are exchanges (`sendrecv`); the rest are one-way.
    pub exchanges: u64,
    /// Messages sent by the busiest rank.
    pub messages: u64,
    /// Bytes sent by the busiest rank.
    pub bytes_sent: u64,
    /// Bytes sent by all ranks together.
    pub total_bytes: u64,
    /// Bytes on the busiest rank's critical path (per round, the larger direction).
    pub path_bytes: u64,
    /// Elements reduced by the busiest rank.
    pub reduced: u64,
    /// Bytes of local memory traffic of the busiest rank's reductions and
    /// copies: a reduction of b bytes reads 2b and writes b (3b), a copy of
    /// b bytes reads b and writes b (2b). What the transport itself copies
    /// is priced by its β instead.
    pub memory_bytes: u64,
    /// Working set of the busiest rank: the buffer plus the schedule's
    /// scratch, in bytes. It decides whether the traffic stays in cache.
    pub footprint: u64,
}

fn ser_name<S: serde::Serializer>(a: &Algorithm, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(a.name())
}

impl Cost {
    /// Every figure at `u64::MAX`: a cost too large to count.
    pub fn saturated(algorithm: Algorithm) -> Cost {
        Cost {
            algorithm,
            rounds: u64::MAX,
            exchanges: u64::MAX,
            messages: u64::MAX,
            bytes_sent: u64::MAX,
            total_bytes: u64::MAX,
            path_bytes: u64::MAX,
            reduced: u64::MAX,
            memory_bytes: u64::MAX,
            footprint: u64::MAX,
        }
    }

    /// No communication at all: what p = 1 or an empty buffer costs.
    pub fn zero(algorithm: Algorithm) -> Cost {
        Cost {
            algorithm,
            rounds: 0,
            exchanges: 0,
            messages: 0,
            bytes_sent: 0,
            total_bytes: 0,
            path_bytes: 0,
            reduced: 0,
            memory_bytes: 0,
            footprint: 0,
        }
    }
}

/// Declares the algorithm files and generates [`Algorithm`] from them.
macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident => $module:ident::$ty:ident, )*) => {
        $( mod $module; )*

        /// Which all-reduce schedule to run. p = ranks, k = elements, s = element size.
        /// The default is [`Algorithm::Auto`], as NCCL's and the MPI libraries' is.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[non_exhaustive]
        pub enum Algorithm {
            $( $(#[$doc])* $variant, )*
            /// Picks one of the others per call: a measured rule of the
            /// group's [`Tuning`](crate::cost::Tuning) for its rank count,
            /// ranks per node and size ([`crate::cost::Rules`], from
            /// `calibrate --rules`); else `Shm` when every rank shares a
            /// node; else the lowest time predicted by the cost model
            /// ([`crate::cost::select`]) for this p and size (a calibration
            /// file via `RINGREDUCE_CALIBRATION`, or built-in defaults).
            /// `RINGREDUCE_ALGO` overrides the choice, like `NCCL_ALGO`.
            /// Every rank makes the same choice. The default.
            #[default]
            Auto,
        }

        impl Algorithm {
            /// Every concrete schedule (all but `Auto`), in registry order.
            pub const CONCRETE: [Algorithm; [$(stringify!($variant)),*].len()] = [$(Algorithm::$variant),*];
            /// The concrete schedules, then `Auto`.
            const CONCRETE_AND_AUTO: [Algorithm; Algorithm::CONCRETE.len() + 1] = [$(Algorithm::$variant,)* Algorithm::Auto];

            /// The lower-case name used on the command line.
            pub fn name(self) -> &'static str {
                match self {
                    $( Algorithm::$variant => <$module::$ty as Schedule>::NAME, )*
                    Algorithm::Auto => "auto",
                }
            }

            /// Whether `auto` may choose it.
            pub fn in_auto(self) -> bool {
                match self {
                    $( Algorithm::$variant => <$module::$ty as Schedule>::AUTO, )*
                    Algorithm::Auto => false,
                }
            }

            /// Whether its exchange rounds are ring shifts (see `Schedule::SHIFTS`).
            pub fn shifts(self) -> bool {
                match self {
                    $( Algorithm::$variant => <$module::$ty as Schedule>::SHIFTS, )*
                    Algorithm::Auto => false,
                }
            }

            /// Whether an out-of-place call copies its input first (see
            /// `Schedule::COPIES_INPUT`).
            pub fn copies_input(self) -> bool {
                match self {
                    $( Algorithm::$variant => <$module::$ty as Schedule>::COPIES_INPUT, )*
                    Algorithm::Auto => true,
                }
            }

            /// Rank among algorithms whose predicted times tie (lower wins).
            pub(crate) fn tie_order(self) -> u8 {
                match self {
                    $( Algorithm::$variant => <$module::$ty as Schedule>::TIE_ORDER, )*
                    Algorithm::Auto => u8::MAX,
                }
            }

            /// The exact cost of a concrete algorithm (see [`Cost`]); `None`
            /// for `Auto`, whose cost depends on the tuning. Beyond what
            /// 64-bit byte counts hold, every figure saturates at `u64::MAX`.
            pub fn exact_cost(self, p: usize, count: usize, elem_size: usize) -> Option<Cost> {
                let zero = Cost::zero(self);
                if self == Algorithm::Auto {
                    return None;
                }
                if p <= 1 || count == 0 {
                    return Some(zero); // the trivial exits of every call
                }
                if !in_model_range(p, count, elem_size) {
                    return Some(Cost::saturated(self));
                }
                let (p, k, s) = (p as u64, count as u64, elem_size as u64);
                Some(match self {
                    $( Algorithm::$variant => <$module::$ty as Schedule>::cost(zero, p, k, s), )*
                    Algorithm::Auto => unreachable!("handled above"),
                })
            }

            /// Runs the schedule on `buf` in place (out of place from
            /// `input` when given). p ≥ 2 and a non-empty buffer; `Auto`
            /// must have been resolved.
            pub(crate) fn run<T: Element, C: Transport + ?Sized>(
                self,
                comm: &C,
                input: Option<&[T]>,
                buf: &mut [T],
                op: ReduceOp,
                knobs: Knobs,
            ) -> Result<()> {
                let data = match input {
                    Some(x) => Buffers::OutOfPlace(x, buf),
                    None => Buffers::InPlace(buf),
                };
                match self {
                    $( Algorithm::$variant => <$module::$ty as Schedule>::run(comm, data, op, knobs), )*
                    Algorithm::Auto => Err(Error::InvalidArgument {
                        what: "algorithm",
                        reason: "`auto` must be resolved before it runs".into(),
                    }),
                }
            }
        }
    };
}

registry! {
    /// Ring of whole vectors: in each of p−1 rounds every rank passes a whole
    /// vector to its right neighbour and receives one from its left.
    /// Rounds p−1; bytes sent per rank (p−1)·k·s. To end bitwise identical
    /// on every rank it reduces in rank order, which keeps up to p−1
    /// received vectors in memory on the last rank.
    Naive => naive::Naive,
    /// Recursive doubling: in round j rank r exchanges its whole partial
    /// result with rank r XOR 2^j. For p not a power of two the ranks above
    /// the largest power of two p' first fold into a partner and get the
    /// result back at the end. Rounds log2 p' (+2 when p ≠ p'); bytes k·s per round.
    Butterfly => butterfly::Butterfly,
    /// Bandwidth-optimal ring (Patarasuk & Yuan 2009): reduce-scatter of p
    /// chunks in p−1 rounds, then all-gather in p−1 rounds. Rounds 2(p−1);
    /// bytes sent per rank ≈ 2·(p−1)/p·k·s, the lower bound.
    Ring => ring::Ring,
    /// Parameter-server pattern: every rank sends to rank 0, which reduces
    /// in rank order and sends the result back. Root: 2(p−1) rounds,
    /// (p−1)·k·s bytes out and in.
    Central => central::Central,
    /// Rabenseifner: reduce-scatter by recursive halving, all-gather by
    /// recursive doubling, with the butterfly's fold for p not a power of
    /// two. Rounds 2·log2 p' (+2); bytes ≈ 2·(p'−1)/p'·k·s, the ring's
    /// bandwidth in logarithmically many rounds.
    Rabenseifner => rabenseifner::Rabenseifner,
    /// Shared memory, for ranks on one node: no messages; every rank reads
    /// the others' data from a shared segment. Up to 4064 bytes: one
    /// barrier, every rank reduces all p inputs. Larger: 512 KiB pieces,
    /// rank r reduces slice r of each, two barriers per piece. An error
    /// (on every rank) when the ranks do not share a node.
    Shm => shm::Shm,
    /// Two-level, node-aware: shared memory inside each node (each local
    /// rank reduces one slice of every 512 KiB piece), the ring across
    /// nodes among the ranks holding the same slice, shared memory again
    /// to distribute. Bytes between nodes fall by the ranks per node. With
    /// one rank per node (or nodes of different sizes) it is the ring.
    Hierarchical => hierarchical::Hierarchical,
    /// Pipelined ring: the ring's schedule with every chunk cut into m
    /// segments (≈ √(2(p−1)·n·β/α) from the built-in model, 1–64) that are
    /// forwarded as soon as they are reduced, so the ring's steps overlap.
    /// The ring's bytes and bitwise results, in 2(p−1)·m messages.
    Pipelined => pipelined::Pipelined,
}

mod average;

pub(crate) use average::{widened as widened_average, Wide, WideSum};
pub(crate) use butterfly::{recursive_doubling, Fold};
pub use hierarchical::two_level_cost;
pub(crate) use pipelined::BUILT_IN_LINES;
pub(crate) use rabenseifner::Halving;
pub(crate) use ring::{all_gather as ring_all_gather, owned_chunk, reduce_scatter as ring_reduce_scatter};
#[cfg(feature = "tools")]
pub(crate) use shm::peer_copy as shm_peer_copy;
pub(crate) use shm::run as shm_run;

impl Algorithm {
    /// Position in [`Algorithm::CONCRETE`], `CONCRETE.len()` for `Auto`:
    /// how an algorithm travels in the call checks' words.
    pub(crate) fn index(self) -> usize {
        Algorithm::CONCRETE
            .iter()
            .position(|&a| a == self)
            .unwrap_or(Algorithm::CONCRETE.len())
    }

    /// Inverse of [`Algorithm::index`] (out of range: `Auto`).
    pub(crate) fn from_index(i: usize) -> Algorithm {
        Algorithm::CONCRETE.get(i).copied().unwrap_or(Algorithm::Auto)
    }
}

crate::element::named!(Algorithm, "algorithm", Algorithm::CONCRETE_AND_AUTO);

impl Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether every figure of a cost for `p` ranks and `count` elements of
/// `elem_size` bytes fits in 64 bits: p·(p−1)·n and 2·n do, for
/// n = count·max(elem_size, 1).
pub(crate) fn in_model_range(p: usize, count: usize, elem_size: usize) -> bool {
    let (p, n) = (p as u128, count as u128 * elem_size.max(1) as u128);
    p.saturating_mul(p.saturating_sub(1)).saturating_mul(n) <= u64::MAX as u128 && n <= u64::MAX as u128 / 2
}

/// The element range of chunk `i` when `k` elements are cut into `p`
/// chunks: the first `k % p` chunks have one element more, so chunk sizes
/// differ by at most one and may be empty when k < p. Chunks past the last
/// (`i ≥ p`), and every chunk of `p = 0`, are empty ranges at `k`.
pub fn chunk_range(k: usize, p: usize, i: usize) -> Range<usize> {
    if i >= p {
        return k..k;
    }
    let base = k / p;
    let rem = k % p;
    // i < p, so i·base + min(i, rem) ≤ k: no overflow.
    let start = i * base + i.min(rem);
    let len = base + usize::from(i < rem);
    start..start + len
}

/// Borrows two non-overlapping ranges of one buffer, one shared, one mutable.
pub(crate) fn disjoint<T>(buf: &mut [T], a: Range<usize>, b: Range<usize>) -> (&[T], &mut [T]) {
    debug_assert!(a.end <= b.start || b.end <= a.start, "ranges overlap");
    if a.end <= b.start {
        let (lo, hi) = buf.split_at_mut(b.start);
        (&lo[a], &mut hi[..b.end - b.start])
    } else {
        let (lo, hi) = buf.split_at_mut(a.start);
        (&hi[..a.end - a.start], &mut lo[b])
    }
}

/// Final step of [`ReduceOp::Avg`]: divide by the number of ranks.
pub(crate) fn finish<T: Element>(op: ReduceOp, buf: &mut [T], p: usize) {
    if op == ReduceOp::Avg {
        T::divide(buf, p);
    }
}

#[cfg(all(test, feature = "tools"))]
mod tests;
