//! Call checks: every collective call begins with an agreement.
//!
//! Before any data moves, the ranks agree that they are making the same
//! call: the same call number and the same signature (which collective,
//! and its count, element type, op, algorithm or root). The agreement is
//! one small all-reduce — the minimum of each word and of its complement —
//! on the butterfly schedule of [`crate::algorithms`], so every rank learns
//! the same verdict at once:
//!
//! - all equal: the call proceeds;
//! - a rank found its own arguments invalid (e.g. an out-of-place buffer of
//!   the wrong length): its signature is *poisoned*, and every rank returns
//!   an error — that rank its own, the others [`Error::Remote`] with its
//!   text — so the group stays in step and usable;
//! - any other difference: the ranks gather their signatures and **every**
//!   rank returns the same [`Error::Mismatch`], e.g.
//!   `all_reduce #812: rank 3 passed 1000 f32 sum ring, ranks 0-2 passed 1024 f32 sum ring`.
//!
//! Nothing has moved by then, so nothing hangs and nothing is corrupted.
//! The same agreement *is* the group's barrier and its `agree`.
//!
//! # Cost
//! The agreement is a butterfly of 48-byte messages: ⌊log2 p⌋ rounds (+2
//! when p is not a power of two). Butterfly all-reduces of at most
//! [`FUSE_MAX`] bytes — what `Auto` picks for small messages — travel inside
//! those same messages, so for them the check adds no round; so do
//! Rabenseifner all-reduces of at most [`FUSE_MAX_RABENSEIFNER`] bytes,
//! whose reduce-scatter pairs the ranks as the agreement does and carries
//! the headers (its all-gather, the only writer of the caller's buffer,
//! runs once they agree). Other calls pay the agreement's rounds once.
//!
//! Ranks that all share one node agree in one barrier of the segment, the
//! words at the front of each rank's slot; a `shm` all-reduce of any size
//! carries them in its own first barrier, before it writes the caller's
//! buffer, so for it the check adds no barrier either.

use std::fmt;

use crate::algorithms::{finish, recursive_doubling, shm_run, Algorithm, Fold, Halving};
use crate::cost::CHECK_HEADER;
use crate::element::{DType, Element, Order, ReduceOp};
use crate::error::{rank_list, Error, Result};
use crate::scratch::Scratch;
use crate::transport::{whole_segment, Segment, Transport};

use super::collectives::{all_gather_blocks, broadcast_bytes};

/// Largest butterfly all-reduce, in bytes, that rides inside the agreement.
pub use crate::cost::FUSE_MAX;
/// Largest Rabenseifner all-reduce, in bytes, that carries the agreement.
pub use crate::cost::FUSE_MAX_RABENSEIFNER;
/// Exit code of a job aborted because a rank stalled (see [`crate::Mpi`]).
pub use crate::transport::STALL_EXIT as ABORT_CODE;

/// Which collective a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    AllReduce,
    Broadcast,
    AllGather,
    AllGatherVarying,
    Barrier,
    Agree,
    Neighbors,
    AllReduceWire,
    ReduceScatter,
    Reduce,
    ShardGather,
}

impl Kind {
    const ALL: [Kind; 11] = [
        Kind::AllReduce,
        Kind::Broadcast,
        Kind::AllGather,
        Kind::AllGatherVarying,
        Kind::Barrier,
        Kind::Agree,
        Kind::Neighbors,
        Kind::AllReduceWire,
        Kind::ReduceScatter,
        Kind::Reduce,
        Kind::ShardGather,
    ];

    /// The name in messages and stall reports.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::AllReduce => "all_reduce",
            Kind::Broadcast => "broadcast",
            Kind::AllGather | Kind::AllGatherVarying => "all_gather",
            Kind::Barrier => "barrier",
            Kind::Agree => "agree",
            Kind::Neighbors => "neighbor_exchange",
            Kind::AllReduceWire => "all_reduce_wire",
            Kind::ReduceScatter => "reduce_scatter",
            Kind::Reduce => "reduce",
            Kind::ShardGather => "all_gather_shards",
        }
    }
}

/// The count of a broadcast whose length only the root knows.
pub(crate) const ROOT_CHOOSES: u64 = u64::MAX;

/// What one rank passes to one collective call: compared across ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signature {
    pub(crate) kind: Kind,
    /// Elements of an all-reduce; bytes per rank of a broadcast or all-gather.
    pub(crate) count: u64,
    pub(crate) dtype: DType,
    pub(crate) op: ReduceOp,
    /// The concrete algorithm of an all-reduce (`Auto` already resolved).
    pub(crate) algorithm: Algorithm,
    /// The caller passed `Auto`, which resolved to `algorithm` (reports
    /// say `auto → shm`, what the caller wrote and what ran).
    pub(crate) auto: bool,
    pub(crate) root: usize,
    /// This rank found its own arguments invalid.
    pub(crate) poisoned: bool,
}

impl Signature {
    /// A call of `kind` with nothing else to compare.
    pub(crate) fn of(kind: Kind) -> Self {
        Signature {
            kind,
            count: 0,
            dtype: DType::U8,
            op: ReduceOp::Sum,
            algorithm: Algorithm::Auto,
            auto: false,
            root: 0,
            poisoned: false,
        }
    }

    /// An all-reduce the caller passed `requested` to, which resolved to
    /// the concrete `algorithm`.
    pub(crate) fn all_reduce(
        count: usize,
        dtype: DType,
        op: ReduceOp,
        requested: Algorithm,
        algorithm: Algorithm,
    ) -> Self {
        Signature {
            count: count as u64,
            dtype,
            op,
            algorithm,
            auto: requested == Algorithm::Auto,
            ..Signature::of(Kind::AllReduce)
        }
    }

    /// A collective moving `bytes` per rank (from `root`); for a varying
    /// all-gather, `bytes` is the element size.
    pub(crate) fn moving(kind: Kind, bytes: u64, root: usize) -> Self {
        Signature {
            count: bytes,
            root,
            ..Signature::of(kind)
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (count, dtype) = (self.count, self.dtype);
        match self.kind {
            Kind::AllReduce if self.auto => {
                write!(f, "{count} {dtype} {} auto → {}", self.op, self.algorithm)
            }
            Kind::AllReduce => write!(f, "{count} {dtype} {} {}", self.op, self.algorithm),
            Kind::Broadcast if count == ROOT_CHOOSES => {
                write!(f, "broadcast of a value from rank {}", self.root)
            }
            Kind::Broadcast => write!(f, "broadcast of {count} bytes from rank {}", self.root),
            Kind::AllGather => write!(f, "all_gather of {count} bytes"),
            Kind::AllGatherVarying => write!(f, "all_gather of {count}-byte elements"),
            Kind::Barrier => f.write_str("barrier"),
            Kind::Agree => f.write_str("agree"),
            Kind::Neighbors => write!(f, "neighbor_exchange of {count} bytes"),
            Kind::AllReduceWire => write!(f, "{count} f32 over a {dtype} wire {}", self.op),
            Kind::ReduceScatter => write!(f, "reduce_scatter of {count} {dtype} {}", self.op),
            Kind::Reduce => write!(f, "reduce of {count} {dtype} {} to rank {}", self.op, self.root),
            Kind::ShardGather => write!(f, "all_gather of the shards of {count} bytes"),
        }
    }
}

/// Words of one rank's call on the wire: call number, count, and the
/// packed indices of type, op, algorithm and kind, the poison bit, the
/// auto bit and the root (30 bits).
const WORDS: usize = 3;
const _: () = assert!(
    WORDS == crate::transport::CALL_WORDS,
    "the segment carries other words"
);

fn index_of<T: PartialEq>(all: &[T], x: &T) -> u64 {
    all.iter().position(|y| y == x).unwrap_or(0xff) as u64
}

impl Signature {
    fn encode(self, call: u64) -> [i64; WORDS] {
        let packed = index_of(&DType::ALL, &self.dtype)
            | index_of(&ReduceOp::ALL, &self.op) << 8
            | (self.algorithm.index() as u64 & 0xff) << 16
            | index_of(&Kind::ALL, &self.kind) << 24
            | u64::from(self.poisoned) << 32
            | u64::from(self.auto) << 33
            | (self.root as u64 & 0x3fff_ffff) << 34;
        [call as i64, self.count as i64, packed as i64]
    }

    fn decode(w: [i64; WORDS]) -> (u64, Signature) {
        let packed = w[2] as u64;
        let pick = |shift: u32| ((packed >> shift) & 0xff) as usize;
        let sig = Signature {
            kind: Kind::ALL[pick(24).min(Kind::ALL.len() - 1)],
            count: w[1] as u64,
            dtype: DType::ALL[pick(0).min(DType::ALL.len() - 1)],
            op: ReduceOp::ALL[pick(8).min(ReduceOp::ALL.len() - 1)],
            algorithm: Algorithm::from_index(pick(16)),
            root: (packed >> 34) as usize,
            poisoned: packed >> 32 & 1 == 1,
            auto: packed >> 33 & 1 == 1,
        };
        (w[0] as u64, sig)
    }
}

/// Bytes of the agreement's header: each word's minimum and its complement's
/// (the size the cost model prices, [`CHECK_HEADER`]).
const HEADER: usize = 2 * WORDS * 8;
const _: () = assert!(HEADER == CHECK_HEADER, "the cost model prices another header");

/// How a call continues after [`agree_on_call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Agreed {
    /// The data was all-reduced together with the agreement; nothing left to do.
    Fused,
    /// Run the call.
    Proceed,
}

/// A call's data riding in its agreement: the all-reduce of `buf` (of
/// `input`, out of place) by `op`.
pub(crate) struct Ride<'a, T> {
    pub(crate) input: Option<&'a [T]>,
    pub(crate) buf: &'a mut [T],
    pub(crate) op: ReduceOp,
}

/// The agreement: every rank passes its call number, signature and the
/// verdict on its own arguments (`local`); with `data`, the all-reduce
/// rides along (see the module docs): a small butterfly or Rabenseifner in
/// its messages, the shared-memory all-reduce in its barrier. Collective
/// over `comm`.
pub(crate) fn agree_on_call<C: Transport + ?Sized, T: Element>(
    comm: &C,
    call: u64,
    mut sig: Signature,
    local: Result<()>,
    data: Option<Ride<'_, T>>,
) -> Result<Agreed> {
    sig.poisoned = local.is_err();
    let words = sig.encode(call);
    if let Some(seg) = whole_segment(comm) {
        return agree_on_segment(comm, seg, words, local, data);
    }
    let data = data.filter(|_| !sig.poisoned);
    let fused = data.is_some();
    if let Some(progress) = comm.progress() {
        progress.set_agreeing(true);
    }
    // Rabenseifner's reduce-scatter carries the headers; everything else
    // rides in (or is) the butterfly's frames.
    let run = match data {
        Some(Ride { input, buf, op }) if sig.algorithm == Algorithm::Rabenseifner => {
            let mut frame = HalvingFrame::new(comm.rank(), comm.size(), words, input, buf, op);
            recursive_doubling(comm, &mut frame).map(|()| frame.header())
        }
        data => {
            let mut frame = Frame::new(comm.rank(), words, data);
            recursive_doubling(comm, &mut frame).map(|()| frame.header())
        }
    };
    if let Some(progress) = comm.progress() {
        progress.set_agreeing(false);
    }
    let header = run?;
    if consistent(&header) {
        // Every rank passed the same words; poisoned means every rank failed.
        return match local {
            Err(e) => Err(e),
            Ok(()) if fused => Ok(Agreed::Fused),
            Ok(()) => Ok(Agreed::Proceed),
        };
    }
    Err(disagreement(comm, words, local)?)
}

/// Whether a header (minimum of each word, then of each complement) says
/// every rank it covers passed the same words: `min(w) == !min(!w)`.
fn consistent(h: &[i64; 2 * WORDS]) -> bool {
    (0..WORDS).all(|i| h[i] == !h[WORDS + i])
}

/// After a failed agreement (every rank knows): gather every rank's words
/// and build the error this rank returns — the first poisoned rank's own
/// error text, or the one mismatch report every rank shares.
fn disagreement<C: Transport + ?Sized>(comm: &C, words: [i64; WORDS], local: Result<()>) -> Result<Error> {
    let p = comm.size();
    let mut rows = vec![0i64; p * WORDS];
    rows[comm.rank() * WORDS..][..WORDS].copy_from_slice(&words);
    let offsets: Vec<usize> = (0..=p).map(|i| i * WORDS * 8).collect();
    all_gather_blocks(comm, bytemuck::cast_slice_mut(&mut rows), &offsets)?;
    let all: Vec<(u64, Signature)> = rows
        .chunks_exact(WORDS)
        .map(|c| Signature::decode([c[0], c[1], c[2]]))
        .collect();
    verdict(comm, &all, local)
}

/// The agreement on a shared segment (every rank on one node): the words
/// ride in the control line of one barrier ([`Segment::barrier_with`]),
/// after which every rank reads every rank's words — so a disagreement
/// needs no gathering. With `data`, that barrier is the shared-memory
/// all-reduce's first ([`shm_run`]), which writes nothing of the caller's
/// buffer before it: a checked call has the unchecked call's barriers.
fn agree_on_segment<C: Transport + ?Sized, T: Element>(
    comm: &C,
    seg: &Segment,
    words: [i64; WORDS],
    local: Result<()>,
    data: Option<Ride<'_, T>>,
) -> Result<Agreed> {
    let data = data.filter(|_| local.is_ok());
    let fused = data.is_some();
    if let Some(progress) = comm.progress() {
        progress.set_agreeing(true);
    }
    let mut idle = |waited| comm.idle(waited);
    let run = match data {
        Some(Ride { input, buf, op }) => shm_run(seg, &mut idle, input, buf, op, Some(words)),
        None => seg.barrier_with(words, &mut idle).map(|()| seg.words_agree()),
    };
    if let Some(progress) = comm.progress() {
        progress.set_agreeing(false);
    }
    if run? {
        return match local {
            Err(e) => Err(e),
            Ok(()) if fused => Ok(Agreed::Fused),
            Ok(()) => Ok(Agreed::Proceed),
        };
    }
    // Read before any further barrier (`verdict` may broadcast).
    let all: Vec<(u64, Signature)> = (0..seg.size())
        .map(|j| Signature::decode(seg.words_of(j)))
        .collect();
    Err(verdict(comm, &all, local)?)
}

/// After a failed agreement, with every rank's call (`all`): the error
/// this rank returns — the first poisoned rank's own error text, or the
/// one mismatch report every rank shares.
fn verdict<C: Transport + ?Sized>(comm: &C, all: &[(u64, Signature)], local: Result<()>) -> Result<Error> {
    match all.iter().position(|(_, s)| s.poisoned) {
        Some(first) => {
            // The first rank that failed tells the others why.
            let mut text = match &local {
                Err(e) if comm.rank() == first => e.to_string().into_bytes(),
                _ => Vec::new(),
            };
            let mut len = (text.len() as u64).to_le_bytes();
            broadcast_bytes(comm, &mut len, first)?;
            text.resize(u64::from_le_bytes(len) as usize, 0);
            broadcast_bytes(comm, &mut text, first)?;
            Ok(match local {
                Err(e) => e,
                Ok(()) => Error::Remote {
                    rank: first,
                    reason: String::from_utf8_lossy(&text).into_owned(),
                },
            })
        }
        None => Ok(mismatch(all)),
    }
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
            let verb = if sig.kind == Kind::AllReduce {
                "passed"
            } else {
                "called"
            };
            let at = if calls_differ {
                format!(" in {} #{call}", sig.kind.label())
            } else {
                String::new()
            };
            format!("{who} {verb} {sig}{at}")
        })
        .collect();
    Error::Mismatch {
        what: all[0].1.kind.label(),
        call: all[0].0,
        detail: parts.join(", "),
    }
}

/// Words of a butterfly frame: header plus the largest fused data.
const FRAME_WORDS: usize = (HEADER + FUSE_MAX).div_ceil(8);
/// Words of an inbox: the largest frame any rank may send, whatever it
/// passed (a whole Rabenseifner vector folding in, with its header).
const INBOX_WORDS: usize = (HEADER + max(FUSE_MAX, FUSE_MAX_RABENSEIFNER)).div_ceil(8);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// One rank's frame of the agreement: [header | data] and an inbox.
/// Headers merge by element-wise minimum, so every rank ends with the same
/// header, consistent iff every rank passed the same words. The data are
/// reduced exactly as [`Algorithm::Butterfly`] reduces them (lower rank's
/// partial first) as long as both partners' headers are consistent and
/// equal — which, at the end, holds everywhere or the verdict is false.
/// Frames of different lengths meet when ranks disagree: receives take up
/// to a full frame.
struct Frame<'a, T: Element> {
    rank: usize,
    // 8-byte words keep the data part (at byte 48) aligned for every element
    // type; pooled, so a training loop's calls neither allocate nor zero them.
    frame: Scratch<i64>,
    inbox: Scratch<i64>,
    len: usize,
    data: Option<(&'a mut [T], ReduceOp)>,
    valid: bool,
}

impl<'a, T: Element> Frame<'a, T> {
    fn new(rank: usize, words: [i64; WORDS], data: Option<Ride<'a, T>>) -> Self {
        let own: [i64; 2 * WORDS] =
            std::array::from_fn(|i| if i < WORDS { words[i] } else { !words[i - WORDS] });
        let n = data.as_ref().map_or(0, |d| std::mem::size_of_val(d.buf));
        let mut f = Frame {
            rank,
            frame: Scratch::new(FRAME_WORDS),
            inbox: Scratch::new(INBOX_WORDS),
            len: HEADER + n,
            valid: data.is_some(),
            data: None,
        };
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut f.frame);
        bytes[..HEADER].copy_from_slice(bytemuck::bytes_of(&own));
        if let Some(Ride { input, buf, op }) = data {
            // The caller's buffer is written only once the ranks agree.
            bytes[HEADER..f.len].copy_from_slice(bytemuck::cast_slice(input.unwrap_or(&*buf)));
            f.data = Some((buf, op));
        }
        f
    }

    fn header(&self) -> [i64; 2 * WORDS] {
        header_of(bytemuck::cast_slice(&self.frame))
    }
}

/// The error of a message too short to hold a header.
fn short(rank: usize, from: usize, got: usize) -> Error {
    Error::MessageSize {
        rank,
        from,
        expected: HEADER,
        got,
    }
}

fn header_of(b: &[u8]) -> [i64; 2 * WORDS] {
    bytemuck::pod_read_unaligned(&b[..HEADER])
}

impl<T: Element> Fold for Frame<'_, T> {
    fn outgoing(&self) -> &[u8] {
        &bytemuck::cast_slice::<i64, u8>(&self.frame)[..self.len]
    }

    fn buffers(&mut self) -> (&[u8], &mut [u8]) {
        (
            &bytemuck::cast_slice::<i64, u8>(&self.frame)[..self.len],
            bytemuck::cast_slice_mut(&mut self.inbox),
        )
    }

    fn merge(&mut self, got: usize, from: usize, order: Order) -> Result<()> {
        if got < HEADER {
            return Err(short(self.rank, from, got));
        }
        let len = self.len;
        let (mine_b, theirs_b): (&mut [u8], &[u8]) = (
            bytemuck::cast_slice_mut(&mut self.frame),
            bytemuck::cast_slice(&self.inbox),
        );
        let (mine, theirs) = (header_of(mine_b), header_of(theirs_b));
        self.valid = self.valid && got == len && consistent(&mine) && mine == theirs;
        if let (true, Some((_, op))) = (self.valid, &self.data) {
            let acc: &mut [T] = bytemuck::cast_slice_mut(&mut mine_b[HEADER..len]);
            T::reduce(*op, acc, bytemuck::cast_slice(&theirs_b[HEADER..len]), order);
        }
        let merged: [i64; 2 * WORDS] = std::array::from_fn(|i| mine[i].min(theirs[i]));
        mine_b[..HEADER].copy_from_slice(bytemuck::bytes_of(&merged));
        Ok(())
    }

    fn finish(&mut self, p: usize) {
        let agreed = consistent(&self.header());
        let len = self.len;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.frame);
        if let (true, Some((d, op))) = (agreed, &mut self.data) {
            let result: &mut [T] = bytemuck::cast_slice_mut(&mut bytes[HEADER..len]);
            finish(*op, result, p);
            d.copy_from_slice(result);
        }
    }

    fn result(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.inbox)
    }

    fn adopt(&mut self, got: usize, from: usize) -> Result<()> {
        if got < HEADER {
            return Err(short(self.rank, from, got));
        }
        let len = self.len;
        let inbox: &[u8] = bytemuck::cast_slice(&self.inbox);
        let done = header_of(inbox);
        if let (true, true, Some((d, _))) = (consistent(&done), got == len, &mut self.data) {
            d.copy_from_slice(bytemuck::cast_slice(&inbox[HEADER..len]));
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.frame);
        bytes[..HEADER].copy_from_slice(bytemuck::bytes_of(&done));
        Ok(())
    }
}

/// One rank's frame of an agreement that carries a Rabenseifner call: the
/// header rides on every message of the reduce-scatter, which pairs the
/// ranks as [`Frame`]'s butterfly does, so every rank ends the reduce-
/// scatter with the same header — consistent iff every rank passed the same
/// words. The data are reduced in a copy ([header | vector]) exactly as
/// [`Algorithm::Rabenseifner`] reduces them while both partners' headers
/// are consistent and equal; only then does the all-gather run, and only
/// then is the caller's buffer written.
struct HalvingFrame<'a, T: Element> {
    rank: usize,
    /// [header | vector]: the working copy, and what folds in and out.
    frame: Scratch<i64>,
    /// [header | half]: one step's message.
    send: Scratch<i64>,
    inbox: Scratch<i64>,
    data: &'a mut [T],
    op: ReduceOp,
    steps: Halving,
    folding_in: bool,
    valid: bool,
}

impl<'a, T: Element> HalvingFrame<'a, T> {
    fn new(
        rank: usize,
        p: usize,
        words: [i64; WORDS],
        input: Option<&[T]>,
        data: &'a mut [T],
        op: ReduceOp,
    ) -> Self {
        let own: [i64; 2 * WORDS] =
            std::array::from_fn(|i| if i < WORDS { words[i] } else { !words[i - WORDS] });
        let (k, n) = (data.len(), std::mem::size_of_val(data));
        let steps = Halving::new(rank, p, k);
        let mut f = HalvingFrame {
            rank,
            frame: Scratch::new((HEADER + n).div_ceil(8)),
            send: Scratch::new((HEADER + n).div_ceil(8)),
            inbox: Scratch::new(INBOX_WORDS),
            op,
            folding_in: steps.folds_in(),
            steps,
            valid: true,
            data,
        };
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut f.frame);
        bytes[..HEADER].copy_from_slice(bytemuck::bytes_of(&own));
        bytes[HEADER..HEADER + n].copy_from_slice(bytemuck::cast_slice(input.unwrap_or(&*f.data)));
        f
    }

    fn len(&self) -> usize {
        HEADER + std::mem::size_of_val(self.data)
    }

    fn header(&self) -> [i64; 2 * WORDS] {
        header_of(bytemuck::cast_slice(&self.frame))
    }

    /// The working copy of the vector.
    fn vector(&mut self) -> &mut [T] {
        let len = self.len();
        bytemuck::cast_slice_mut(&mut bytemuck::cast_slice_mut::<i64, u8>(&mut self.frame)[HEADER..len])
    }
}

impl<T: Element> Fold for HalvingFrame<'_, T> {
    fn outgoing(&self) -> &[u8] {
        &bytemuck::cast_slice::<i64, u8>(&self.frame)[..self.len()]
    }

    fn buffers(&mut self) -> (&[u8], &mut [u8]) {
        if self.folding_in {
            return (&[], bytemuck::cast_slice_mut(&mut self.inbox));
        }
        // [merged header so far | the half given away this step]
        let give = self.steps.next().1;
        let s = std::mem::size_of::<T>();
        let len = HEADER + give.len() * s;
        let frame: &[u8] = bytemuck::cast_slice(&self.frame);
        let send: &mut [u8] = bytemuck::cast_slice_mut(&mut self.send);
        send[..HEADER].copy_from_slice(&frame[..HEADER]);
        send[HEADER..len].copy_from_slice(&frame[HEADER + give.start * s..HEADER + give.end * s]);
        (
            &bytemuck::cast_slice::<i64, u8>(&self.send)[..len],
            bytemuck::cast_slice_mut(&mut self.inbox),
        )
    }

    fn merge(&mut self, got: usize, from: usize, order: Order) -> Result<()> {
        if got < HEADER {
            return Err(short(self.rank, from, got));
        }
        let s = std::mem::size_of::<T>();
        let whole = std::mem::take(&mut self.folding_in);
        let keep = match whole {
            true => 0..self.data.len(),
            false => self.steps.next().0,
        };
        let (mine_b, theirs_b): (&mut [u8], &[u8]) = (
            bytemuck::cast_slice_mut(&mut self.frame),
            bytemuck::cast_slice(&self.inbox),
        );
        let (mine, theirs) = (header_of(mine_b), header_of(theirs_b));
        self.valid = self.valid && got == HEADER + keep.len() * s && consistent(&mine) && mine == theirs;
        if self.valid {
            let acc: &mut [T] =
                bytemuck::cast_slice_mut(&mut mine_b[HEADER + keep.start * s..HEADER + keep.end * s]);
            T::reduce(self.op, acc, bytemuck::cast_slice(&theirs_b[HEADER..got]), order);
        }
        let merged: [i64; 2 * WORDS] = std::array::from_fn(|i| mine[i].min(theirs[i]));
        mine_b[..HEADER].copy_from_slice(bytemuck::bytes_of(&merged));
        if !whole {
            self.steps.advance();
        }
        Ok(())
    }

    fn finish(&mut self, p: usize) {
        if consistent(&self.header()) {
            let (op, own) = (self.op, self.steps.own());
            finish(op, &mut self.vector()[own], p);
        }
    }

    fn gather<C: Transport + ?Sized>(&mut self, comm: &C, _pof2: usize) -> Result<()> {
        // Every rank of the power-of-two set holds the same header now: all
        // of them gather, or none does.
        if !consistent(&self.header()) {
            return Ok(());
        }
        let len = self.len();
        let vector: &mut [T] =
            bytemuck::cast_slice_mut(&mut bytemuck::cast_slice_mut::<i64, u8>(&mut self.frame)[HEADER..len]);
        self.steps.gather(comm, vector)?;
        self.data.copy_from_slice(vector);
        Ok(())
    }

    fn result(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.inbox)
    }

    fn adopt(&mut self, got: usize, from: usize) -> Result<()> {
        if got < HEADER {
            return Err(short(self.rank, from, got));
        }
        let len = self.len();
        let inbox: &[u8] = bytemuck::cast_slice(&self.inbox);
        let done = header_of(inbox);
        if consistent(&done) && got == len {
            self.data
                .copy_from_slice(bytemuck::cast_slice(&inbox[HEADER..len]));
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.frame);
        bytes[..HEADER].copy_from_slice(bytemuck::bytes_of(&done));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip() {
        for dtype in DType::ALL {
            for op in ReduceOp::ALL {
                for algorithm in Algorithm::CONCRETE {
                    for requested in [algorithm, Algorithm::Auto] {
                        let sig = Signature::all_reduce(1 << 40, dtype, op, requested, algorithm);
                        assert_eq!(Signature::decode(sig.encode(812)), (812, sig));
                    }
                }
            }
        }
        for kind in Kind::ALL {
            for (root, poisoned) in [(0, false), (5, true), ((1 << 30) - 1, false)] {
                let sig = Signature {
                    poisoned,
                    ..Signature::moving(kind, ROOT_CHOOSES, root)
                };
                assert_eq!(Signature::decode(sig.encode(3)), (3, sig));
            }
        }
    }
}
