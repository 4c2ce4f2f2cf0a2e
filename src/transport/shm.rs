//! Shared memory among the ranks of one node: a [`Segment`].
//!
//! When every rank of a group runs on one node, the group can share memory
//! (`MPI_Win_allocate_shared` under MPI, one heap block for the thread
//! ranks of [`Local`](super::Local)). A segment holds one *part* per rank,
//! each laid out as
//!
//! ```text
//! [ control line | slot 0 | slot 1 | buffer 0 | buffer 1 ]
//!   128 B          words + small data  Segment::piece() bytes each
//! ```
//!
//! The control line holds the rank's barrier counter and its departure
//! flag; only its owner writes them. The first rank's second cache line
//! holds what [`Writes::Auto`] decided (one word, written by it alone).
//! A barrier is: bump my counter (release), then wait until every other
//! rank's counter has reached mine (acquire) — one cache line written per
//! rank, no messages, no contention. Everything a rank wrote before the
//! barrier is visible to every rank after it.
//!
//! A slot begins with a call's words ([`CALL_WORDS`], the call check's
//! signature) for the barrier they are posted with
//! ([`Segment::barrier_with`]), and its data follow in the same cache
//! line: a rank that reads another's slot data has its words too, so a
//! checked call moves no more lines between cores than an unchecked one.
//!
//! Slots and buffers alternate so that one barrier per step suffices: a
//! rank writes slot `g % 2` before barrier `g`, and others read it before
//! they reach barrier `g + 1`, which its owner must pass before it writes
//! that slot again (for barrier `g + 2`). Buffers alternate by piece
//! (see [`Segment::take_buffer`]). Spinning observes the group's stall
//! timeout through the transport's [`idle`](super::Transport::idle).

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Bytes of a rank's control line (two cache lines: adjacent-line
/// prefetch never makes two ranks' counters share; the first rank's second
/// line holds `Auto`'s word, [`Segment::pick`]).
const CONTROL: usize = 128;
/// Words a barrier can carry at the front of every rank's slot
/// ([`Segment::barrier_with`]).
pub(crate) const CALL_WORDS: usize = 3;
/// Bytes at the front of a slot for the words; its data follow (32-byte
/// aligned, in the same cache line).
const SLOT_WORDS: usize = 32;
const _: () = assert!(CALL_WORDS * 8 <= SLOT_WORDS);
/// Polls of a flag before the clock is first read.
const SPINS: u32 = 1024;

/// The sizes of a segment's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Bytes of data a slot holds: the largest all-reduce that travels in
    /// one step (with its call check, which rides in the barrier).
    pub slot: usize,
    /// Bytes of each of the two buffers: the piece a large all-reduce
    /// moves per step, when the group's ranks all share the node (`shm`).
    pub piece: usize,
    /// The same when the group spans nodes of as many ranks each: the piece
    /// of a `hierarchical` all-reduce, whose rails' rings move
    /// `rail_piece / ranks per node` bytes per piece between the nodes
    /// ([`Shape::piece_for`]; halved where a node's shared memory is small).
    pub rail_piece: usize,
    /// How a rank writes the pieces the other ranks read.
    pub writes: Writes,
}

/// How the ranks write the pieces the others of their node read: through
/// the cache (the default), around it, or whichever the machine favours now.
///
/// A line another core has just written is read out of that core's cache,
/// and a line the other cores have read must be taken back from their
/// caches before this core writes it again; how much either costs depends
/// on where the cores are. On the development VM it switches every few
/// seconds between two states about 4× apart (the host moving its virtual
/// cores); lines written around the cache (non-temporal stores, to memory)
/// are not taken back and are read from memory, the same in both states,
/// but cost more to write. Around the cache, a 2-rank `shm` all-reduce of
/// 16 KiB–4 MiB took 0.2× the vendor's time in the slow state instead of
/// 0.5–0.9×, and 1.2–2.6× the cached way's time in the fast state
/// (docs/results.md, "Writes around the cache"). `Auto` won in both there,
/// but was measured at 2 ranks on that one machine only, so it is not the
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// By what writing through the cache costs now: the node's first rank
    /// times its copy of each piece into its buffer — lines the other
    /// cores read last time, which a write must take back from their
    /// caches — against a copy of 64 KiB within its own core (timed when
    /// the segment is made). While that costs more than [`SLOW_WRITES`]
    /// times as much (two probes in a row), every rank writes pieces of
    /// that size (per power of two from [`Writes::ADAPT_FROM`]) around the
    /// cache; then a piece in every 16 or 32 MiB (at least one in 16) goes
    /// through it again to see whether that changed. As `Cached` where
    /// the processor has no non-temporal stores (other than x86-64).
    Auto,
    /// Through the cache (plain stores).
    Cached,
    /// Around the cache: non-temporal stores where the processor has them
    /// (x86-64; elsewhere as `Cached`).
    Streamed,
}

/// How many times the cost of a copy within one core writing lines the
/// other cores have read may be, before `Auto` writes around the cache.
/// Measured on the development VM at 2 ranks: 2–6× with its cores close,
/// 10–24× with them apart (docs/results.md, "Writes around the cache").
pub const SLOW_WRITES: f64 = 8.0;

impl Writes {
    /// Pieces smaller than this are always written through the cache.
    pub const ADAPT_FROM: usize = 16 << 10;

    /// The names `RINGREDUCE_SHM_WRITES` takes.
    pub const NAMES: [&'static str; 3] = ["auto", "cached", "streamed"];

    /// Parses one of [`Writes::NAMES`] (any case).
    pub fn parse(name: &str) -> Option<Writes> {
        match name.to_ascii_lowercase().as_str() {
            "auto" => Some(Writes::Auto),
            "cached" => Some(Writes::Cached),
            "streamed" => Some(Writes::Streamed),
            _ => None,
        }
    }

    fn index(self) -> u64 {
        match self {
            Writes::Auto => 0,
            Writes::Cached => 1,
            Writes::Streamed => 2,
        }
    }

    fn from_index(i: u64) -> Writes {
        match i {
            1 => Writes::Cached,
            2 => Writes::Streamed,
            _ => Writes::Auto,
        }
    }
}

/// Whether this processor has the non-temporal stores `Streamed` uses.
const STREAMS: bool = cfg!(target_arch = "x86_64");

/// Size classes of pieces `Auto` judges apart: powers of two from
/// [`Writes::ADAPT_FROM`] (larger pieces share the last).
const CLASSES: u32 = 8;

/// How to write one piece ([`Segment::pick`]); by default through the
/// cache, untimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pick {
    /// Around the cache.
    pub(crate) stream: bool,
    /// Every rank writes it through the cache, and the node's first rank
    /// times its copy into its buffer (a probe, [`Segment::record`]).
    pub(crate) probe: bool,
}

/// What `Auto` keeps on one rank.
struct Ways {
    /// Seconds per byte of a copy within this core (the node's first rank's).
    local: f64,
    /// Pieces of each class so far (in step on every rank).
    pieces: [Cell<u64>; CLASSES as usize],
    /// The first rank's probes in a row that argued for the other way, per class.
    against: [Cell<u8>; CLASSES as usize],
}

/// Pieces of `bytes` between two probes while writing around the cache:
/// one per 32 MiB written (2048 pieces of 16 KiB to 16 of 2 MiB; at least
/// 16 for larger pieces), so that a probe with the cores apart costs a few
/// per cent.
fn period(bytes: usize) -> u64 {
    ((32 << 20) / bytes.max(1)).clamp(16, 2048) as u64
}

fn class(bytes: usize) -> usize {
    ((bytes / Writes::ADAPT_FROM).max(1).ilog2().min(CLASSES - 1)) as usize
}

/// Seconds per byte of a copy of 64 KiB within this core: the fastest of
/// 16 (after one that touches the pages).
fn local_copy_cost() -> f64 {
    let src = vec![1u8; 64 << 10];
    let mut dst = vec![0u8; 64 << 10];
    dst.copy_from_slice(&src);
    let mut best = f64::INFINITY;
    for _ in 0..16 {
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(&mut dst);
    }
    best / src.len() as f64
}

impl Shape {
    /// What every transport allocates: slots of 4 KiB with their words
    /// (an all-reduce of up to 4064 bytes is one step) and pieces of
    /// 512 KiB. Chosen by measurement (`scripts/shm_sweep.sh`, 2 ranks,
    /// docs/perf/shm-sweep-piece): 512 KiB pieces were 6–27 % faster
    /// than 256 KiB from 256 KiB to 16 MiB and the fastest of 64 KiB–2 MiB
    /// from 2 MiB on; below 256 KiB (one piece either way) the sizes
    /// differ by the noise, and so do slots of 1–16 KiB
    /// (docs/perf/shm-sweep-slot); a 4 KiB call took 0.77 µs in a 4 KiB
    /// slot and 0.68 µs through the pieces (docs/perf/shm-sweep-slot-rides),
    /// so the slot stays just below 4 KiB.
    ///
    /// Across nodes, pieces of 4 MiB: on 2 hosts × 2 ranks at 1 Gbit/s
    /// (docs/perf/hier-piece-2x2gbit) `hierarchical` with 512 KiB pieces
    /// took 1.20–1.31× the vendor's time at 2–8 MiB, with 4 MiB pieces
    /// 0.79–1.04× at 1–16 MiB (the fastest of 512 KiB–8 MiB at 4–16 MiB,
    /// within 4 % of the link's time at 16 MiB): every piece's rails pay
    /// their rings' handshakes and two barriers with the link idle.
    pub const DEFAULT: Shape = Shape {
        slot: 4096 - SLOT_WORDS,
        piece: 512 << 10,
        rail_piece: 4 << 20,
        writes: Writes::Cached,
    };

    /// The shape as words (to send it to the node's other ranks).
    pub(crate) fn to_words(self) -> [u64; 4] {
        [
            self.slot as u64,
            self.piece as u64,
            self.rail_piece as u64,
            self.writes.index(),
        ]
    }

    /// The shape [`Shape::to_words`] sent.
    pub(crate) fn from_words(w: [u64; 4]) -> Shape {
        Shape {
            slot: w[0] as usize,
            piece: w[1] as usize,
            rail_piece: w[2] as usize,
            writes: Writes::from_index(w[3]),
        }
    }

    /// The piece of a segment whose group spans nodes of as many ranks
    /// each (`two_level`): the [`rail_piece`](Shape::rail_piece), else the
    /// [`piece`](Shape::piece). Only `hierarchical` uses the buffers of a
    /// group that spans nodes.
    pub fn piece_for(self, two_level: bool) -> usize {
        if two_level {
            self.rail_piece
        } else {
            self.piece
        }
    }

    fn slot_bytes(self) -> usize {
        (SLOT_WORDS + self.slot).next_multiple_of(64)
    }

    /// The largest rail piece, halving `rail_piece` (not below the smaller
    /// of it and `piece`, nor 64 bytes), at which the parts of `ranks`
    /// ranks across nodes take at most half of `free` bytes: a node's free
    /// shared memory (containers often give 64 MiB), the rest left to
    /// MPI's own segments. When none fits, that floor.
    pub(crate) fn rail_piece_within(self, ranks: usize, free: u64) -> usize {
        let floor = self.piece.min(self.rail_piece).max(64);
        let mut rail = self.rail_piece;
        let need = |rail: usize| {
            let part = Shape {
                rail_piece: rail,
                ..self
            }
            .part(true);
            (part as u64).saturating_mul(ranks as u64)
        };
        while rail / 2 >= floor && need(rail) > free / 2 {
            rail /= 2;
        }
        rail
    }

    /// Bytes of one rank's part (a multiple of the page size) for a
    /// two-level group or not ([`Shape::piece_for`]).
    pub(crate) fn part(self, two_level: bool) -> usize {
        (CONTROL + 2 * self.slot_bytes() + 2 * self.piece_for(two_level).next_multiple_of(64))
            .next_multiple_of(4096)
    }
}

/// A page-aligned, zeroed heap block: every part of a [`Local`](super::Local) group.
pub(crate) struct HeapBlock {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
}

impl HeapBlock {
    pub(crate) fn new(bytes: usize) -> Arc<HeapBlock> {
        let layout = std::alloc::Layout::from_size_align(bytes.max(4096), 4096).expect("segment layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Arc::new(HeapBlock { ptr, layout })
    }

    pub(crate) fn base(&self) -> NonNull<u8> {
        self.ptr
    }
}

impl Drop for HeapBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

// SAFETY: the block is plain memory; who reads and writes which bytes when
// is governed by the segment's barrier protocol, not by the block.
unsafe impl Send for HeapBlock {}
// SAFETY: as above.
unsafe impl Sync for HeapBlock {}

/// Which node each rank of a group is on (`node_of[r]`, any labels), seen
/// by rank `me`.
pub(crate) struct Nodes {
    pub(crate) node_of: Vec<usize>,
    pub(crate) me: usize,
}

impl Nodes {
    /// The ranks on `node`, ascending.
    fn members_with(&self, node: usize) -> Vec<usize> {
        (0..self.node_of.len())
            .filter(|&r| self.node_of[r] == node)
            .collect()
    }

    /// The group's ranks are on more than one node, every node holding as
    /// many: where `hierarchical` runs its two levels (and uses the
    /// segment's buffers, [`Shape::piece_for`]).
    pub(crate) fn two_level(&self) -> bool {
        self.node_of.iter().any(|&n| n != self.node_of[0]) && self.per_node() > 0
    }

    /// Ranks on each node when every node holds as many, else 0.
    pub(crate) fn per_node(&self) -> usize {
        let mine = self.members_with(self.node_of[self.me]).len();
        match self.node_of.iter().all(|&n| self.members_with(n).len() == mine) {
            true => mine,
            false => 0,
        }
    }

    /// The ranks with `me`'s local index on every node, nodes ordered by
    /// their lowest rank; empty unless every node holds as many ranks.
    fn rail(&self) -> Vec<usize> {
        let mine = self.members_with(self.node_of[self.me]);
        let index = mine.iter().position(|&r| r == self.me).unwrap_or(0);
        let mut firsts: Vec<usize> = Vec::new();
        for r in 0..self.node_of.len() {
            if !firsts.iter().any(|&f| self.node_of[f] == self.node_of[r]) {
                firsts.push(r);
            }
        }
        let nodes: Vec<Vec<usize>> = firsts
            .iter()
            .map(|&f| self.members_with(self.node_of[f]))
            .collect();
        if nodes.iter().any(|m| m.len() != mine.len()) {
            return Vec::new();
        }
        nodes.iter().map(|m| m[index]).collect()
    }
}

/// The shared memory of a group whose ranks are all on one node (see the
/// module docs). Obtained from [`Transport::segment`](super::Transport::segment);
/// the shared-memory all-reduce ([`Algorithm::Shm`](crate::Algorithm::Shm))
/// and the call checks use it.
pub struct Segment {
    bases: Vec<NonNull<u8>>,
    /// This rank's index among the segment's ranks (its local index).
    rank: usize,
    /// The group ranks sharing the segment (a node), ascending.
    members: Vec<usize>,
    /// The group ranks with this rank's local index on every node, in node
    /// order (the node of the lowest group rank first): whom a two-level
    /// all-reduce talks to across nodes. Empty when nodes differ in size.
    rail: Vec<usize>,
    shape: Shape,
    /// Bytes of each buffer: `shape.piece_for(the group is two-level)`.
    piece: usize,
    /// Barriers this rank has passed (its counter's value).
    barriers: Cell<u64>,
    /// What [`Writes::Auto`] keeps (`None` under the other ways).
    ways: Option<Ways>,
    /// The heap block of thread ranks (an MPI window is the transport's to free).
    _block: Option<Arc<HeapBlock>>,
}

// SAFETY: a segment moves with the endpoint of the one rank that uses it;
// the memory it points into stays valid for as long as it lives (`_owner`),
// and concurrent access by the other ranks follows the barrier protocol.
// It is not `Sync` (its counters are `Cell`s).
unsafe impl Send for Segment {}

impl Segment {
    /// A segment over `bases` (each rank's part, `shape.part(nodes.two_level())`
    /// bytes, 64-byte aligned, zeroed), seen by `rank`.
    ///
    /// # Safety
    /// Every base must point to `shape.part(nodes.two_level())` bytes that stay valid while
    /// the segment lives, shared by exactly these ranks, each of which makes its
    /// own `Segment` over the same bases and shape and starts at the same
    /// time (counters at zero). (`block`, when given, is the memory.)
    pub(crate) unsafe fn new(
        bases: Vec<NonNull<u8>>,
        rank: usize,
        nodes: &Nodes,
        shape: Shape,
        block: Option<Arc<HeapBlock>>,
    ) -> Segment {
        debug_assert!(bases.iter().all(|b| (b.as_ptr() as usize).is_multiple_of(64)));
        let members = nodes.members_with(nodes.node_of[nodes.me]);
        debug_assert_eq!(members.len(), bases.len());
        Segment {
            bases,
            rank,
            rail: nodes.rail(),
            members,
            shape,
            piece: shape.piece_for(nodes.two_level()),
            barriers: Cell::new(0),
            ways: (shape.writes == Writes::Auto && STREAMS).then(|| Ways {
                local: if rank == 0 { local_copy_cost() } else { 0.0 },
                pieces: Default::default(),
                against: Default::default(),
            }),
            _block: block,
        }
    }

    /// The segments of thread ranks on `node_of.len()` ranks, rank r on
    /// node `node_of[r]`: one heap block per node (`None` for a rank alone
    /// on its node).
    pub(crate) fn local(node_of: &[usize], shape: Shape) -> Vec<Option<Segment>> {
        let two_level = Nodes {
            node_of: node_of.to_vec(),
            me: 0,
        }
        .two_level();
        let part = shape.part(two_level);
        let mut out: Vec<Option<Segment>> = (0..node_of.len()).map(|_| None).collect();
        let mut nodes: Vec<usize> = node_of.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        for node in nodes {
            let members: Vec<usize> = (0..node_of.len()).filter(|&r| node_of[r] == node).collect();
            if members.len() < 2 {
                continue;
            }
            let block = HeapBlock::new(part * members.len());
            let bases: Vec<NonNull<u8>> = (0..members.len())
                // SAFETY: part·i < part·len, inside the block (so not null).
                .map(|i| unsafe { NonNull::new_unchecked(block.base().as_ptr().add(part * i)) })
                .collect();
            for (i, &r) in members.iter().enumerate() {
                let view = Nodes {
                    node_of: node_of.to_vec(),
                    me: r,
                };
                // SAFETY: the block holds every part of the node, is zeroed and
                // lives in each segment; every member gets its segment at once.
                out[r] = Some(unsafe { Segment::new(bases.clone(), i, &view, shape, Some(block.clone())) });
            }
        }
        out
    }

    /// The group ranks sharing this segment (a node), ascending.
    pub fn members(&self) -> &[usize] {
        &self.members
    }

    /// The group ranks with this rank's local index on every node, in node
    /// order; empty when the nodes hold different numbers of ranks.
    pub fn rail(&self) -> &[usize] {
        &self.rail
    }

    /// Ranks sharing the segment.
    pub fn size(&self) -> usize {
        self.bases.len()
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The sizes of slots and pieces, and how pieces are written.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Bytes of each of the two buffers, the piece a large all-reduce
    /// moves per step: [`Shape::piece_for`] whether the group is two-level.
    pub fn piece(&self) -> usize {
        self.piece
    }

    /// Barriers this rank has passed: the segment's synchronisation rounds.
    pub fn barriers(&self) -> u64 {
        self.barriers.get()
    }

    fn counter(&self, rank: usize) -> &AtomicU64 {
        // SAFETY: every part begins with its control line, 64-byte aligned;
        // the counter is only ever accessed atomically.
        unsafe { &*self.bases[rank].as_ptr().cast::<AtomicU64>() }
    }

    fn left_flag(&self, rank: usize) -> &AtomicU64 {
        // SAFETY: as `counter`, 8 bytes further in the control line.
        unsafe { &*self.bases[rank].as_ptr().add(8).cast::<AtomicU64>() }
    }

    /// The first rank's word of the classes `Auto` writes around the cache
    /// (bit c for class c), in its control line's second cache line: only
    /// it writes the word, the others read it.
    fn streaming(&self) -> &AtomicU64 {
        // SAFETY: as `counter`, in the second line of rank 0's control line.
        unsafe { &*self.bases[0].as_ptr().add(64).cast::<AtomicU64>() }
    }

    /// How to write the next piece of `bytes` ([`Writes`]). Every rank
    /// picks for the same pieces in the same order, so their probes fall
    /// together; a change the first rank makes reaches the others by their
    /// next piece (one piece may be written both ways: the result is the
    /// same either way).
    pub(crate) fn pick(&self, bytes: usize) -> Pick {
        let fixed = |stream| Pick { stream, probe: false };
        let ways = match (self.shape.writes, &self.ways) {
            (Writes::Cached, _) => return fixed(false),
            (Writes::Streamed, _) => return fixed(true),
            // No `ways` where there are no non-temporal stores (`STREAMS`).
            (Writes::Auto, None) => return fixed(false),
            (Writes::Auto, _) if bytes < Writes::ADAPT_FROM => return fixed(false),
            (Writes::Auto, Some(ways)) => ways,
        };
        let c = class(bytes);
        let n = ways.pieces[c].get();
        ways.pieces[c].set(n + 1);
        let around = self.streaming().load(Ordering::Relaxed) >> c & 1 == 1;
        let probe = !around || n % period(bytes) == 0;
        Pick {
            stream: !probe,
            probe,
        }
    }

    /// A probe ([`Segment::pick`]) of `bytes` which this rank copied into
    /// its buffer at `per_byte` seconds per byte: on the first rank, judged
    /// against its copy within its core ([`SLOW_WRITES`]); two in a row for
    /// the other way switch the class.
    pub(crate) fn record(&self, bytes: usize, pick: Pick, per_byte: f64) {
        let Some(ways) = self.ways.as_ref().filter(|_| pick.probe && self.rank == 0) else {
            return;
        };
        let c = class(bytes);
        let word = self.streaming();
        let around = word.load(Ordering::Relaxed) >> c & 1 == 1;
        let slow = per_byte > SLOW_WRITES * ways.local;
        if slow == around {
            ways.against[c].set(0);
            return;
        }
        ways.against[c].set(ways.against[c].get() + 1);
        if ways.against[c].get() >= 2 {
            ways.against[c].set(0);
            word.fetch_xor(1 << c, Ordering::Relaxed);
        }
    }

    /// Word `i` of `rank`'s slot `s`.
    fn word(&self, rank: usize, s: usize, i: usize) -> &AtomicU64 {
        debug_assert!(i < CALL_WORDS);
        // SAFETY: inside the slot's first SLOT_WORDS bytes (asserted there),
        // 8-byte aligned (slots are 64-byte aligned); only ever accessed
        // atomically.
        unsafe { &*self.slot_start(rank, s).add(i * 8).cast::<AtomicU64>() }
    }

    /// [`barrier`](Self::barrier), publishing `words` with it in this
    /// rank's slot for it (see [`next_slot`](Self::next_slot); its data may
    /// travel there too): after it, [`words_of`](Self::words_of) gives
    /// every rank's words of this barrier, until this rank enters its next
    /// one.
    pub(crate) fn barrier_with(
        &self,
        words: [i64; CALL_WORDS],
        idle: &mut dyn FnMut(Duration) -> Result<bool>,
    ) -> Result<()> {
        let s = self.next_slot();
        for (i, w) in words.into_iter().enumerate() {
            // Ordered before the counter's release store in `barrier`; the
            // slot protocol (module docs) keeps readers and the next write apart.
            self.word(self.rank, s, i).store(w as u64, Ordering::Relaxed);
        }
        self.barrier(idle)
    }

    /// `rank`'s words of the last barrier this rank passed, when that was a
    /// [`barrier_with`](Self::barrier_with) on every rank. Valid until this
    /// rank enters its next barrier.
    pub(crate) fn words_of(&self, rank: usize) -> [i64; CALL_WORDS] {
        let s = (self.barriers.get() % 2) as usize;
        std::array::from_fn(|i| self.word(rank, s, i).load(Ordering::Relaxed) as i64)
    }

    /// Whether every rank passed the same words as this rank with the last
    /// barrier (see [`words_of`](Self::words_of)).
    pub(crate) fn words_agree(&self) -> bool {
        let mine = self.words_of(self.rank);
        (0..self.size()).all(|j| j == self.rank || self.words_of(j) == mine)
    }

    /// Marks this rank as gone: others waiting for it fail instead of hanging.
    pub(crate) fn leave(&self) {
        self.left_flag(self.rank).store(1, Ordering::Release);
    }

    /// Waits until every rank has reached this rank's next barrier. Between
    /// polls that find a rank missing, `idle(waited)` runs (after a short
    /// spin); it returns `true` when it took a census and the clock restarts.
    ///
    /// # Errors
    /// [`Error::Transport`] when an awaited rank left, or `idle`'s error.
    pub(crate) fn barrier(&self, idle: &mut dyn FnMut(Duration) -> Result<bool>) -> Result<()> {
        let g = self.barriers.get() + 1;
        self.barriers.set(g);
        self.counter(self.rank).store(g, Ordering::Release);
        for j in (0..self.size()).filter(|&j| j != self.rank) {
            let mut spins = 0u32;
            let mut start: Option<Instant> = None;
            while self.counter(j).load(Ordering::Acquire) < g {
                spins = spins.wrapping_add(1);
                if spins < SPINS {
                    std::hint::spin_loop();
                    continue;
                }
                // A rank that left after reaching this barrier is no failure:
                // its counter was stored before its flag, so read it again.
                if self.left_flag(j).load(Ordering::Acquire) != 0
                    && self.counter(j).load(Ordering::Acquire) < g
                {
                    return Err(Error::Transport {
                        rank: self.rank,
                        reason: format!("rank {j} has left the group"),
                    });
                }
                let now = Instant::now();
                if idle(now - *start.get_or_insert(now))? {
                    start = None;
                }
            }
        }
        Ok(())
    }

    /// Which slot the next barrier's data goes to.
    pub(crate) fn next_slot(&self) -> usize {
        ((self.barriers.get() + 1) % 2) as usize
    }

    /// The piece buffer to write before the next barrier: pieces that
    /// start with barriers g and g + 2 (the closest two can be) take
    /// different buffers, and a buffer is taken again at g + 3 at the
    /// earliest, after everyone has passed g + 2 and so finished reading
    /// it. Counted by barriers, not by pieces, so ranks whose calls
    /// disagreed after one barrier stay in step.
    pub(crate) fn take_buffer(&self) -> usize {
        (self.barriers.get().div_ceil(2) % 2) as usize
    }

    /// Start of slot `s` of `rank`'s part (its words).
    fn slot_start(&self, rank: usize, s: usize) -> *mut u8 {
        debug_assert!(s < 2);
        // SAFETY: inside the part (see `Shape::part`).
        unsafe {
            self.bases[rank]
                .as_ptr()
                .add(CONTROL + s * self.shape.slot_bytes())
        }
    }

    /// Start of the data of slot `s` of `rank`'s part (`shape().slot`
    /// bytes, 32-byte aligned).
    pub(crate) fn slot(&self, rank: usize, s: usize) -> *mut u8 {
        // SAFETY: the data follow the words inside the slot (`slot_bytes`).
        unsafe { self.slot_start(rank, s).add(SLOT_WORDS) }
    }

    /// Start of buffer `b` of `rank`'s part.
    pub(crate) fn buffer(&self, rank: usize, b: usize) -> *mut u8 {
        debug_assert!(b < 2);
        let off = CONTROL + 2 * self.shape.slot_bytes() + b * self.piece.next_multiple_of(64);
        // SAFETY: inside the part (see `Shape::part`).
        unsafe { self.bases[rank].as_ptr().add(off) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rail_piece_shrinks_to_what_the_nodes_shared_memory_holds() {
        let shape = Shape::DEFAULT;
        // Plenty: 4 MiB. Docker's 64 MiB: 4 ranks' 2 × 2 MiB buffers fill
        // 16 MiB (2 × 4 MiB would pass half), 8 ranks' of 1 MiB as much; 64
        // ranks: down to shm's piece.
        assert_eq!(shape.rail_piece_within(8, u64::MAX), 4 << 20);
        assert_eq!(shape.rail_piece_within(8, 64 << 20), 1 << 20);
        assert_eq!(shape.rail_piece_within(4, 64 << 20), 2 << 20);
        assert_eq!(shape.rail_piece_within(64, 64 << 20), shape.piece);
        // A user's piece below shm's is never raised.
        let small = Shape {
            rail_piece: 64 << 10,
            ..shape
        };
        assert_eq!(small.rail_piece_within(64, 1 << 20), 64 << 10);
        // A zero piece (through the API) stops at 64 bytes.
        let zero = Shape { piece: 0, ..shape };
        assert_eq!(zero.rail_piece_within(64, 0), 64);
    }

    #[test]
    fn a_segment_of_a_group_spanning_nodes_has_hierarchicals_pieces() {
        let shape = Shape {
            piece: 64 << 10,
            rail_piece: 192 << 10,
            ..Shape::DEFAULT
        };
        let pieces = |node_of: &[usize]| -> Vec<usize> {
            Segment::local(node_of, shape)
                .iter()
                .flatten()
                .map(Segment::piece)
                .collect()
        };
        // One node: shm's piece; two nodes of two: the rail piece, and room for it.
        assert_eq!(pieces(&[0, 0, 0]), [64 << 10; 3]);
        assert_eq!(pieces(&[0, 0, 1, 1]), [192 << 10; 4]);
        // Nodes of different sizes run no two levels: no large buffers.
        assert_eq!(pieces(&[0, 0, 1, 1, 1]), [64 << 10; 5]);
        assert!(shape.part(true) >= 2 * (192 << 10) && shape.part(false) < 2 * (192 << 10));
        // The last byte of the second buffer lies inside the part.
        let seg = Segment::local(&[0, 0, 1, 1], shape)
            .into_iter()
            .flatten()
            .next()
            .unwrap();
        let end = seg.buffer(1, 1) as usize + seg.piece() - seg.bases[1].as_ptr() as usize;
        assert!(end <= shape.part(true), "{end} > {}", shape.part(true));
    }

    #[test]
    fn auto_writes_around_the_cache_while_the_first_ranks_probes_write_slowly() {
        let auto = Shape {
            writes: Writes::Auto,
            ..Shape::DEFAULT
        };
        let segs: Vec<Segment> = Segment::local(&[0; 2], auto).into_iter().flatten().collect();
        let (first, other) = (&segs[0], &segs[1]);
        let local = first.ways.as_ref().unwrap().local;
        assert!(local > 0.0 && local.is_finite());
        let (slow, fast) = (local * (SLOW_WRITES + 1.0), local * (SLOW_WRITES - 1.0));
        let piece = 256 << 10;
        // Both ranks pick for every piece, as in a call; the first records.
        let step = |per_byte: f64| {
            let (a, b) = (first.pick(piece), other.pick(piece));
            first.record(piece, a, per_byte);
            other.record(piece, b, slow); // ignored: not the first rank
            (a, b)
        };
        // Through the cache, every piece a probe; one slow probe is not enough.
        assert_eq!(
            step(slow).0,
            Pick {
                stream: false,
                probe: true
            }
        );
        assert_eq!(
            step(fast).0,
            Pick {
                stream: false,
                probe: true
            }
        );
        step(slow);
        assert_eq!(
            step(slow).0,
            Pick {
                stream: false,
                probe: true
            }
        );
        // Two in a row: around the cache, on both ranks, but for the probes.
        let period = period(piece);
        let mut probes = 0;
        for _ in 0..3 * period {
            let (a, b) = step(slow);
            assert_eq!(a, b);
            assert_eq!(a.stream, !a.probe);
            probes += u64::from(a.probe);
        }
        assert_eq!(probes, 3, "one probe in {period} pieces");
        // Other sizes keep their own way; small pieces never stream.
        assert!(!first.pick(64 << 10).stream && !first.pick(4 << 10).stream);
        // Two fast probes in a row: through the cache again.
        let mut seen = 0;
        while seen < 2 {
            let (a, _) = step(fast);
            seen += u64::from(a.probe);
        }
        assert_eq!(
            step(fast),
            (
                Pick {
                    stream: false,
                    probe: true
                },
                Pick {
                    stream: false,
                    probe: true
                }
            )
        );
        // The fixed ways never probe.
        for (writes, stream) in [(Writes::Cached, false), (Writes::Streamed, true)] {
            let shape = Shape {
                writes,
                ..Shape::DEFAULT
            };
            let seg = Segment::local(&[0; 2], shape)
                .into_iter()
                .flatten()
                .next()
                .unwrap();
            assert_eq!(seg.pick(piece), Pick { stream, probe: false });
        }
    }

    #[test]
    fn barriers_order_writes_and_a_departed_rank_is_an_error() {
        let p = 4;
        let segs: Vec<Segment> = Segment::local(&[0; 4], Shape::DEFAULT)
            .into_iter()
            .flatten()
            .collect();
        let sums: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = segs
                .into_iter()
                .map(|seg| {
                    s.spawn(move || {
                        let mut total = 0;
                        let mut idle = |_| {
                            std::thread::yield_now();
                            Ok(false)
                        };
                        for round in 0..200u64 {
                            let slot = seg.next_slot();
                            // SAFETY: this rank's own slot, read by others only after the barrier.
                            unsafe {
                                seg.slot(seg.rank(), slot)
                                    .cast::<u64>()
                                    .write(round * 10 + seg.rank() as u64)
                            };
                            seg.barrier(&mut idle).unwrap();
                            for j in 0..p {
                                // SAFETY: written before the barrier; rewritten only two barriers on.
                                total += unsafe { seg.slot(j, slot).cast::<u64>().read() };
                            }
                        }
                        seg.leave();
                        if seg.rank() == 0 {
                            // Everyone else has left: the next barrier fails.
                            let e = seg.barrier(&mut idle).unwrap_err();
                            assert!(e.to_string().contains("has left"), "{e}");
                        }
                        total
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let want: u64 = (0..200u64).map(|r| 4 * r * 10 + 6).sum();
        assert_eq!(sums, vec![want; p]);
    }
}
