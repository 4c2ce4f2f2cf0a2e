//! The front door of the collectives: a [`Group`] owns a transport, the
//! settings (how `Auto` chooses, the call checks) and the call counter.
//!
//! Every collective call goes the same way: **validate** the arguments
//! (an error found on one rank poisons its signature, so it reaches every
//! rank), **resolve** `Auto`, **agree** on the call ([`check`]), then
//! **dispatch** to the schedule. This module is also the only reader of the
//! `RINGREDUCE_*` environment variables ([`Settings::from_env`]).

pub mod check;
mod collectives;
pub mod overlap;
mod settings;
mod shards;

use std::cell::Cell;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::check::{FUSE_MAX, FUSE_MAX_RABENSEIFNER};
pub use self::overlap::{Overlapped, Pending};
pub use self::settings::{
    font_from_env, parse_timeout, shape_from_env, CheckConfig, Settings, DEFAULT_TIMEOUT, ENV_ALGO,
    ENV_CALIBRATION, ENV_CHECK, ENV_FONT, ENV_HIER_PIECE, ENV_SEGMENTS, ENV_SHM_PIECE, ENV_SHM_SLOT,
    ENV_TIMEOUT,
};

use self::check::{agree_on_call, Agreed, Kind, Ride, Signature, ROOT_CHOOSES};
use self::collectives::{all_gather_blocks, broadcast_bytes};
use crate::algorithms::{widened_average, Algorithm};
use crate::compress::CodecTimes;
use crate::cost::{Layout, Tuning};
use bytemuck::Pod;

use crate::element::{Element, ReduceOp, Widen};
use crate::error::{Error, Result};
use crate::transport::{whole_segment, Local, LocalEndpoint, Mpi, Transport};

/// The ranks of one communicator, and every collective call among them.
///
/// Build one per communicator — [`Group::mpi`] under `mpirun`,
/// [`Group::local`] for ranks as threads, [`Group::with_settings`] over
/// any transport — and make every rank call the same collectives in the
/// same order. A group is used from one thread at a time.
///
/// # Examples
/// ```
/// use ringreduce::{Algorithm, Group, ReduceOp};
/// let out = Group::local(3, |g| {
///     let mut grad = vec![g.rank() as f32; 4];
///     g.all_reduce_in_place(&mut grad, ReduceOp::Avg, Algorithm::Ring).unwrap();
///     let mut step = [if g.rank() == 0 { 7u64 } else { 0 }];
///     g.broadcast(&mut step, 0).unwrap();
///     (grad[0], step[0])
/// });
/// assert!(out.iter().all(|&x| x == (1.0, 7)));
/// ```
///
/// Under `mpirun` (see `examples/allreduce.rs`):
/// ```no_run
/// use ringreduce::{Algorithm, Group, ReduceOp};
/// let universe = ringreduce::mpi::initialize().expect("MPI already initialised");
/// let group = Group::mpi(&universe.world())?; // a private duplicate of the world communicator
/// let mut grad = vec![1.0f32; 1 << 20];
/// group.all_reduce_in_place(&mut grad, ReduceOp::Avg, Algorithm::Ring)?;
/// # Ok::<(), ringreduce::Error>(())
/// ```
pub struct Group<C: Transport> {
    transport: C,
    tuning: Cell<Tuning>,
    checks: Cell<CheckConfig>,
    calls: Cell<u64>,
    /// `Auto`'s last answer: a training loop asks the same question every step.
    auto: Cell<Option<(usize, usize, Algorithm)>>,
}

impl<C: Transport> Group<C> {
    /// A group over `transport` with the default settings. Not collective.
    pub fn new(transport: C) -> Self {
        Group::with_settings(transport, Settings::default())
    }

    /// A group over `transport` with `settings`, which must be the same on
    /// every rank. Not collective.
    pub fn with_settings(transport: C, settings: Settings) -> Self {
        let g = Group {
            transport,
            tuning: Cell::new(Tuning::default()),
            checks: Cell::new(CheckConfig::default()),
            calls: Cell::new(0),
            auto: Cell::new(None),
        };
        g.set_settings(settings);
        g
    }

    /// A group whose settings are rank 0's `mine`: every rank gets them, or
    /// rank 0's error if it has one. The other ranks' `mine` is ignored.
    /// Collective; the group's call numbers start at 1 afterwards.
    ///
    /// # Errors
    /// Rank 0's error, on every rank ([`Error::Remote`] on the others).
    pub fn with_rank0_settings(transport: C, mine: Result<Settings>) -> Result<Self> {
        let g = Group::new(transport);
        let first = g.rank() == 0;
        let verdict = match &mine {
            Err(e) if first => Err(e.clone()),
            _ => Ok(()),
        };
        g.agree(verdict)?;
        let settings = g.broadcast_value(0, mine.ok().filter(|_| first).as_ref())?;
        g.set_settings(settings);
        g.calls.set(0);
        Ok(g)
    }

    /// A group whose settings rank 0 reads from the environment
    /// ([`Settings::from_env`]). Collective.
    ///
    /// # Errors
    /// Rank 0's error reading the environment, on every rank.
    pub fn from_env(transport: C) -> Result<Self> {
        let mine = if transport.rank() == 0 {
            Settings::from_env()
        } else {
            Ok(Settings::default())
        };
        Group::with_rank0_settings(transport, mine)
    }

    /// This process's rank, in `0..size()`.
    pub fn rank(&self) -> usize {
        self.transport.rank()
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.transport.size()
    }

    /// This rank's index among the group's ranks on its node (the MPI
    /// shared-memory split, what Horovod calls `local_rank`): which GPU,
    /// core set or data shard a rank takes on its host. 0 for a rank alone
    /// on its node.
    pub fn local_rank(&self) -> usize {
        self.transport.node().0
    }

    /// How many of the group's ranks share this rank's node (Horovod's
    /// `local_size`); 1 for a rank alone on its node.
    pub fn node_size(&self) -> usize {
        self.transport.node().1
    }

    /// The transport, for point-to-point messages of one's own.
    pub fn transport(&self) -> &C {
        &self.transport
    }

    /// The transport, by value.
    pub fn into_transport(self) -> C {
        self.transport
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        Settings {
            tuning: self.tuning.get(),
            checks: self.checks.get(),
        }
    }

    /// Replaces the settings (and the transport's stall timeout). Every rank
    /// must make the same change between the same calls.
    pub fn set_settings(&self, settings: Settings) {
        self.tuning.set(settings.tuning);
        self.checks.set(settings.checks);
        self.auto.set(None);
        if let Some(progress) = self.transport.progress() {
            progress.set_timeout(settings.checks.timeout);
        }
    }

    /// Collective calls begun so far: the current or last call's number.
    pub fn calls(&self) -> u64 {
        self.calls.get()
    }

    /// Numbers a new call and tells the transport's progress record.
    fn begin(&self, kind: Kind) -> u64 {
        let call = self.calls.get() + 1;
        self.calls.set(call);
        if let Some(progress) = self.transport.progress() {
            progress.begin(kind.label(), call);
        }
        call
    }

    /// Agrees on a call without data riding along: with `always`, also
    /// when the mismatch check is off (the call *is* an agreement).
    fn agree_plain(&self, kind: Kind, sig: Signature, local: Result<()>, always: bool) -> Result<()> {
        let call = self.begin(kind);
        if always || self.checks.get().mismatch {
            agree_on_call::<C, u8>(&self.transport, call, sig, local, None).map(drop)
        } else {
            local
        }
    }

    /// Whether this group can run `algorithm`: all but [`Algorithm::Shm`]
    /// run anywhere; `Shm` needs every rank on one node (a shared
    /// [`Segment`](crate::transport::Segment)). The same on every rank.
    pub fn supports(&self, algorithm: Algorithm) -> bool {
        algorithm != Algorithm::Shm || self.size() <= 1 || whole_segment(&self.transport).is_some()
    }

    /// `algorithms` without those this group cannot run ([`Group::supports`]).
    pub fn runnable(&self, algorithms: &[Algorithm]) -> Vec<Algorithm> {
        algorithms.iter().copied().filter(|&a| self.supports(a)).collect()
    }

    /// How the group's ranks sit on nodes ([`Layout`]), the same on every rank.
    pub fn layout(&self) -> Layout {
        Layout {
            per_node: self.transport.ranks_per_node(),
            shared: whole_segment(&self.transport).is_some(),
        }
    }

    /// The concrete algorithm `algorithm` means for this call.
    pub fn resolve(&self, algorithm: Algorithm, count: usize, elem_size: usize) -> Algorithm {
        if algorithm != Algorithm::Auto {
            return algorithm;
        }
        match self.auto.get() {
            Some((c, s, a)) if (c, s) == (count, elem_size) => a,
            _ => {
                let checked = self.checks.get().mismatch;
                let a = self
                    .tuning
                    .get()
                    .resolve_on(self.size(), count, elem_size, self.layout(), checked);
                self.auto.set(Some((count, elem_size, a)));
                a
            }
        }
    }

    /// All-reduces `buf` in place: on return every rank holds `op` over all
    /// ranks' buffers, bitwise identical on every rank.
    ///
    /// Every rank must call it with the same length, element type, op and
    /// algorithm; the call checks catch it when they do not.
    ///
    /// # Errors
    /// [`Error::Mismatch`], the same on every rank and before any data
    /// moved, when ranks passed different lengths, element types, ops or
    /// algorithms (with the checks on, the default). With the checks off,
    /// [`Error::MessageSize`] when the transport noticed. [`Error::Transport`]
    /// when a peer went away. MPI's own failures abort the job (rsmpi's
    /// default error handler), and so does a stall past the timeout.
    ///
    /// # Cost
    /// See [`Algorithm`] for rounds and bytes of each schedule, and
    /// [`check`] for the agreement's.
    pub fn all_reduce_in_place<T: Element>(
        &self,
        buf: &mut [T],
        op: ReduceOp,
        algorithm: Algorithm,
    ) -> Result<()> {
        self.all_reduce_call(None, buf, op, algorithm)
    }

    /// Out-of-place all-reduce: `recv` gets `op` over every rank's `send`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `send` and `recv` differ in length —
    /// on this rank; the other ranks get [`Error::Remote`] with its text, so
    /// the group stays in step (with the checks on). The errors of
    /// [`Group::all_reduce_in_place`] otherwise.
    pub fn all_reduce<T: Element>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: ReduceOp,
        algorithm: Algorithm,
    ) -> Result<()> {
        self.all_reduce_call(Some(send), recv, op, algorithm)
    }

    /// All-reduces f32 `buf` in place with 16-bit floats on the wire and
    /// f32 accumulation: a ring that sends half the bytes
    /// ([`wire_cost`](crate::compress::wire_cost)), every rank ending with
    /// the same bits, within the error bound of [`crate::compress`] of the
    /// f32 result. On one rank nothing crosses a wire and `buf` is unchanged.
    ///
    /// ```
    /// use ringreduce::{compress::Wire, Group, ReduceOp};
    /// let out = Group::local(3, |g| {
    ///     let mut v = vec![0.1f32 * (g.rank() + 1) as f32; 5];
    ///     g.all_reduce_wire(&mut v, ReduceOp::Sum, Wire::Bf16).unwrap();
    ///     v
    /// });
    /// assert!(out.iter().all(|v| v == &out[0]));
    /// assert!((out[0][0] - 0.6).abs() <= 3.0 * 2f32.powi(-8) * 0.6);
    /// ```
    ///
    /// # Errors
    /// As [`Group::all_reduce_in_place`]; ranks passing different lengths,
    /// ops or wire types, or mixing this call with another, get
    /// [`Error::Mismatch`] (with the checks on).
    pub fn all_reduce_wire(&self, buf: &mut [f32], op: ReduceOp, wire: crate::compress::Wire) -> Result<()> {
        self.wire_reduce(buf, op, wire, &mut CodecTimes::default())
    }

    pub(crate) fn wire_reduce(
        &self,
        buf: &mut [f32],
        op: ReduceOp,
        wire: crate::compress::Wire,
        times: &mut CodecTimes,
    ) -> Result<()> {
        let sig = Signature {
            count: buf.len() as u64,
            dtype: wire.dtype(),
            op,
            algorithm: Algorithm::Ring,
            ..Signature::of(Kind::AllReduceWire)
        };
        self.agree_plain(Kind::AllReduceWire, sig, Ok(()), false)?;
        if self.size() <= 1 || buf.is_empty() {
            return Ok(());
        }
        crate::compress::wire_ring(&self.transport, buf, op, wire, times)
    }

    /// All-reduces `buf` through a [`Linear`](crate::compress::Linear)
    /// compressor: every rank encodes its values, the codes are all-reduced
    /// with `op` by `algorithm` (any; the codes add because every rank
    /// encodes in the same basis), and the result is decoded on every rank
    /// — the same bits everywhere. `stream` must be the same on every rank
    /// (the global step): randomized compressors draw from it. A
    /// non-linear compressor does not compile here
    /// ([`all_gather_compressed`](Group::all_gather_compressed) takes it).
    ///
    /// ```
    /// use ringreduce::{compress::Cast, half::bf16, Algorithm, Group, ReduceOp};
    /// let out = Group::local(3, |g| {
    ///     let mut v = vec![0.5f32 * (g.rank() + 1) as f32; 4];
    ///     let mut cast = Cast::<bf16>::new();
    ///     g.all_reduce_compressed(&mut cast, &mut v, ReduceOp::Sum, Algorithm::Butterfly, 0).unwrap();
    ///     v
    /// });
    /// assert_eq!(out[0], vec![3.0; 4]);
    /// assert!(out.iter().all(|v| v == &out[0]));
    /// ```
    ///
    /// # Errors
    /// As [`Group::all_reduce_in_place`] on the codes.
    pub fn all_reduce_compressed<L>(
        &self,
        compressor: &mut L,
        buf: &mut [f32],
        op: ReduceOp,
        algorithm: Algorithm,
        stream: u64,
    ) -> Result<()>
    where
        L: crate::compress::Linear,
        L::Word: Element,
    {
        self.compressed_reduce(compressor, buf, op, algorithm, stream, &mut CodecTimes::default())
    }

    pub(crate) fn compressed_reduce<L>(
        &self,
        c: &mut L,
        buf: &mut [f32],
        op: ReduceOp,
        algorithm: Algorithm,
        stream: u64,
        times: &mut CodecTimes,
    ) -> Result<()>
    where
        L: crate::compress::Linear,
        L::Word: Element,
    {
        let start = std::time::Instant::now();
        let mut code = vec![<L::Word as bytemuck::Zeroable>::zeroed(); c.code_len(buf.len())];
        c.encode(buf, stream, self.rank(), &mut code);
        let encoded = std::time::Instant::now();
        times.encode += encoded - start;
        self.all_reduce_in_place(&mut code, op, algorithm)?;
        let reduced = std::time::Instant::now();
        times.wire += reduced - encoded;
        c.decode(&code, buf);
        times.decode += reduced.elapsed();
        Ok(())
    }

    /// Sums (`ReduceOp::Sum`) or averages (`ReduceOp::Avg`) `buf` over the
    /// ranks through any [`Compressor`](crate::compress::Compressor): every
    /// rank's code is all-gathered (a ring: p − 1 rounds, (p − 1) codes
    /// sent per rank) and every rank decodes them all in rank order into
    /// the same bits. The route for compressors that are not linear.
    ///
    /// ```
    /// use ringreduce::{compress::TopK, Group, ReduceOp};
    /// let out = Group::local(2, |g| {
    ///     let mut v = vec![0.0f32; 4];
    ///     v[g.rank()] = 8.0; // each rank's largest value, at its own index
    ///     g.all_gather_compressed(&mut TopK::new(0.25), &mut v, ReduceOp::Avg, 0).unwrap();
    ///     v
    /// });
    /// assert_eq!(out[0], vec![4.0, 4.0, 0.0, 0.0]);
    /// ```
    ///
    /// # Errors
    /// An op other than sum or average ([`Error::InvalidArgument`] on
    /// every rank), and the errors of [`Group::all_gather`].
    pub fn all_gather_compressed<K: crate::compress::Compressor>(
        &self,
        compressor: &mut K,
        buf: &mut [f32],
        op: ReduceOp,
        stream: u64,
    ) -> Result<()> {
        self.compressed_gather(compressor, buf, op, stream, &mut CodecTimes::default())
    }

    pub(crate) fn compressed_gather<K: crate::compress::Compressor>(
        &self,
        c: &mut K,
        buf: &mut [f32],
        op: ReduceOp,
        stream: u64,
        times: &mut CodecTimes,
    ) -> Result<()> {
        let start = std::time::Instant::now();
        let local = match op {
            ReduceOp::Sum | ReduceOp::Avg => Ok(()),
            other => Err(Error::InvalidArgument {
                what: "op",
                reason: format!("compressed codes are summed or averaged, not reduced by {other}"),
            }),
        };
        let len = c.code_len(buf.len());
        let mut code = vec![<K::Word as bytemuck::Zeroable>::zeroed(); len];
        if local.is_ok() {
            c.encode(buf, stream, self.rank(), &mut code);
        }
        let encoded = std::time::Instant::now();
        times.encode += encoded - start;
        let mut all = vec![<K::Word as bytemuck::Zeroable>::zeroed(); self.size() * len];
        self.gather_checked(&code, &mut all, local)?;
        let gathered = std::time::Instant::now();
        times.wire += gathered - encoded;
        buf.fill(0.0);
        for code in all.chunks_exact(len.max(1)).take(self.size()) {
            c.add_decoded(code, buf);
        }
        if op == ReduceOp::Avg {
            f32::divide(buf, self.size());
        }
        times.decode += gathered.elapsed();
        Ok(())
    }

    fn all_reduce_call<T: Element>(
        &self,
        input: Option<&[T]>,
        buf: &mut [T],
        op: ReduceOp,
        algorithm: Algorithm,
    ) -> Result<()> {
        // Validate first; the verdict travels with the call's agreement.
        let local = match input {
            Some(x) if x.len() != buf.len() => Err(Error::LengthMismatch {
                send: x.len(),
                recv: buf.len(),
            }),
            _ => Ok(()),
        };
        let p = self.size();
        let requested = algorithm;
        let algorithm = self.resolve(algorithm, buf.len(), std::mem::size_of::<T>());
        let call = self.begin(Kind::AllReduce);
        if p > 1 && self.checks.get().mismatch {
            let sig = Signature::all_reduce(buf.len(), T::DTYPE, op, requested, algorithm);
            let bytes = std::mem::size_of_val(buf);
            // Calls ride inside the agreement (not a widened average: its
            // data travel in another type): small butterfly and Rabenseifner
            // calls in its messages, shared-memory calls of any size in its
            // barrier.
            let rides = match whole_segment(&self.transport) {
                Some(_) => algorithm == Algorithm::Shm,
                None => crate::cost::rides_in_agreement(algorithm, bytes),
            };
            let fuse = local.is_ok() && rides && bytes > 0 && !widened(op, T::AVG);
            let data = fuse.then_some(Ride {
                input,
                buf: &mut *buf,
                op,
            });
            if agree_on_call(&self.transport, call, sig, local, data)? == Agreed::Fused {
                return Ok(());
            }
        } else {
            local?;
        }
        // Trivial exits next, then the work.
        if p <= 1 || buf.is_empty() {
            if let Some(x) = input {
                buf.copy_from_slice(x);
            }
            return Ok(());
        }
        if widened(op, T::AVG) {
            return widened_average(&self.transport, algorithm, input, buf, self.tuning.get().knobs());
        }
        algorithm.run(&self.transport, input, buf, op, self.tuning.get().knobs())
    }

    /// Broadcasts `buf` from rank `root` to every rank (binomial tree,
    /// ⌈log2 p⌉ rounds). Every rank passes the same number of bytes.
    ///
    /// # Errors
    /// A root out of range (on every rank), a mismatch (different lengths
    /// or roots), or a transport failure.
    pub fn broadcast<T: Pod>(&self, buf: &mut [T], root: usize) -> Result<()> {
        let local = crate::transport::valid_rank(root, self.size());
        let sig = Signature::moving(Kind::Broadcast, std::mem::size_of_val(buf) as u64, root);
        self.agree_plain(Kind::Broadcast, sig, local, false)?;
        if self.size() > 1 && !buf.is_empty() {
            broadcast_bytes(&self.transport, bytemuck::cast_slice_mut(buf), root)?;
        }
        Ok(())
    }

    /// Gathers every rank's `mine` into `out` (rank r's at `r·n..(r+1)·n`
    /// for n = `mine.len()`) on every rank: a ring, p − 1 rounds.
    ///
    /// # Errors
    /// `out` not `size()·mine.len()` long (on every rank), a mismatch, or a
    /// transport failure.
    pub fn all_gather<T: Pod>(&self, mine: &[T], out: &mut [T]) -> Result<()> {
        self.gather_checked(mine, out, Ok(()))
    }

    /// [`Group::all_gather`] with this rank's own verdict on the call.
    fn gather_checked<T: Pod>(&self, mine: &[T], out: &mut [T], verdict: Result<()>) -> Result<()> {
        let (p, n) = (self.size(), mine.len());
        let local = if out.len() == p.saturating_mul(n) {
            verdict
        } else {
            Err(Error::InvalidArgument {
                what: "all_gather output",
                reason: format!("{} elements for {p} ranks × {n}", out.len()),
            })
        };
        let sig = Signature::moving(Kind::AllGather, std::mem::size_of_val(mine) as u64, 0);
        self.agree_plain(Kind::AllGather, sig, local, false)?;
        out[self.rank() * n..][..n].copy_from_slice(mine);
        let s = std::mem::size_of::<T>();
        let offsets: Vec<usize> = (0..=p).map(|i| i * n * s).collect();
        all_gather_blocks(&self.transport, bytemuck::cast_slice_mut(out), &offsets)
    }

    /// Gathers every rank's `mine`, whatever its length, on every rank:
    /// `result[r]` is rank r's. Two ring passes (lengths, then data).
    ///
    /// # Errors
    /// A mismatch or a transport failure.
    pub fn all_gather_varying<T: Pod>(&self, mine: &[T]) -> Result<Vec<Vec<T>>> {
        let sig = Signature::moving(Kind::AllGatherVarying, std::mem::size_of::<T>() as u64, 0);
        self.agree_plain(Kind::AllGatherVarying, sig, Ok(()), false)?;
        let p = self.size();
        let mut lens = vec![0u64; p];
        lens[self.rank()] = mine.len() as u64;
        let words: Vec<usize> = (0..=p).map(|i| i * 8).collect();
        all_gather_blocks(&self.transport, bytemuck::cast_slice_mut(&mut lens), &words)?;
        let s = std::mem::size_of::<T>();
        let mut offsets = vec![0usize; p + 1];
        for r in 0..p {
            offsets[r + 1] = offsets[r] + lens[r] as usize * s;
        }
        let mut flat = vec![T::zeroed(); offsets[p] / s.max(1)];
        // (Zero-sized types have nothing to gather: every block is empty.)
        let at = offsets[self.rank()] / s.max(1);
        flat[at..at + mine.len()].copy_from_slice(mine);
        all_gather_blocks(&self.transport, bytemuck::cast_slice_mut(&mut flat), &offsets)?;
        Ok((0..p)
            .map(|r| flat[offsets[r] / s.max(1)..offsets[r + 1] / s.max(1)].to_vec())
            .collect())
    }

    /// Sends `mine` to every rank of `send_to` and receives one block of the
    /// same length from every rank of `recv_from` into `out` (the block of
    /// `recv_from[k]` at `k·n..(k+1)·n` for n = `mine.len()`), all at once
    /// with non-blocking sends and receives: one round. What a gossip step
    /// needs (BlueFog's `neighbor_allgather`). Every rank calls it at the
    /// same point with the same length; the lists must match across ranks
    /// (i sends to j exactly when j receives from i) — the caller's graph
    /// guarantees that, the call checks compare only the call and length.
    ///
    /// # Errors
    /// `out` not `recv_from.len()·n` long, a rank out of range or listed
    /// twice (on every rank), a mismatch, or a transport failure.
    pub fn neighbor_exchange<T: Pod>(
        &self,
        mine: &[T],
        send_to: &[usize],
        recv_from: &[usize],
        out: &mut [T],
    ) -> Result<()> {
        let (p, n) = (self.size(), mine.len());
        let local = (|| {
            if out.len() != recv_from.len().saturating_mul(n) {
                return Err(Error::InvalidArgument {
                    what: "neighbor_exchange output",
                    reason: format!("{} elements for {} neighbours × {n}", out.len(), recv_from.len()),
                });
            }
            for list in [send_to, recv_from] {
                for (i, &r) in list.iter().enumerate() {
                    crate::transport::valid_rank(r, p)?;
                    if list[..i].contains(&r) {
                        return Err(Error::InvalidArgument {
                            what: "neighbor_exchange peers",
                            reason: format!("rank {r} listed twice"),
                        });
                    }
                }
            }
            Ok(())
        })();
        let sig = Signature::moving(Kind::Neighbors, std::mem::size_of_val(mine) as u64, 0);
        self.agree_plain(Kind::Neighbors, sig, local, false)?;
        let bytes: &[u8] = bytemuck::cast_slice(mine);
        let out: &mut [u8] = bytemuck::cast_slice_mut(out);
        if bytes.is_empty() {
            return Ok(());
        }
        self.transport.scope(|s| {
            let mut recvs = Vec::with_capacity(recv_from.len());
            for (block, &src) in out.chunks_mut(bytes.len()).zip(recv_from) {
                recvs.push(s.recv(block, src)?);
            }
            let mut sends = Vec::with_capacity(send_to.len());
            for &dest in send_to {
                sends.push(s.send(bytes, dest)?);
            }
            for r in recvs {
                let got = s.wait_recv(r)?;
                if got.done.len != bytes.len() {
                    return Err(Error::MessageSize {
                        rank: self.rank(),
                        from: got.done.peer,
                        expected: bytes.len(),
                        got: got.done.len,
                    });
                }
            }
            for h in sends {
                s.wait_send(h)?;
            }
            Ok(())
        })
    }

    /// Returns once every rank has called it. The barrier is the call
    /// check's agreement itself (48-byte messages, ⌊log2 p⌋ (+2) rounds),
    /// so it also catches a rank that called another collective.
    ///
    /// # Errors
    /// A mismatch or a transport failure.
    pub fn barrier(&self) -> Result<()> {
        self.agree_plain(Kind::Barrier, Signature::of(Kind::Barrier), Ok(()), true)
    }

    /// Makes a local outcome collective: `Ok` on every rank when every rank
    /// passed `Ok`; otherwise every rank fails — a failing rank with its
    /// own error, the others with [`Error::Remote`] naming the lowest
    /// failing rank and its error text — so no rank goes on into a
    /// collective the failed ones will not make.
    ///
    /// # Errors
    /// As described; also a transport failure.
    pub fn agree<V>(&self, local: Result<V>) -> Result<V> {
        let sig = Signature::of(Kind::Agree);
        match local {
            Ok(v) => self.agree_plain(Kind::Agree, sig, Ok(()), true).map(|()| v),
            // A rank that failed never passes the agreement.
            Err(e) => Err(self
                .agree_plain(Kind::Agree, sig, Err(e), true)
                .expect_err("an agreement passed on a rank that failed")),
        }
    }

    /// Sends `value` from `root` to every rank (serialized with serde);
    /// ranks other than the root pass `None`.
    ///
    /// # Errors
    /// The root passing `None` or a value serde cannot encode (on every
    /// rank), a mismatch, or a transport failure.
    pub fn broadcast_value<V: Serialize + DeserializeOwned>(
        &self,
        root: usize,
        value: Option<&V>,
    ) -> Result<V> {
        let mine = if self.rank() == root {
            match value {
                Some(v) => crate::wire::encode(v),
                None => Err(Error::InvalidArgument {
                    what: "broadcast_value",
                    reason: "the root has no value to send".into(),
                }),
            }
        } else {
            Ok(Vec::new())
        };
        let local = crate::transport::valid_rank(root, self.size())
            .and(mine.as_ref().map(drop).map_err(Clone::clone));
        let sig = Signature::moving(Kind::Broadcast, ROOT_CHOOSES, root);
        self.agree_plain(Kind::Broadcast, sig, local, true)?;
        let mut bytes = mine.unwrap_or_default();
        let mut len = (bytes.len() as u64).to_le_bytes();
        broadcast_bytes(&self.transport, &mut len, root)?;
        bytes.resize(u64::from_le_bytes(len) as usize, 0);
        broadcast_bytes(&self.transport, &mut bytes, root)?;
        crate::wire::decode(&bytes)
    }

    /// Gathers every rank's `value` (serialized with serde) on every rank.
    ///
    /// # Errors
    /// A value serde cannot encode (on every rank), a mismatch, or a
    /// transport failure.
    pub fn all_gather_value<V: Serialize + DeserializeOwned>(&self, value: &V) -> Result<Vec<V>> {
        let bytes = self.agree(crate::wire::encode(value))?;
        self.all_gather_varying(&bytes)?
            .iter()
            .map(|b| crate::wire::decode(b))
            .collect()
    }
}

/// Whether `op` on a type averaging as `w` takes the widened path.
fn widened(op: ReduceOp, w: Widen) -> bool {
    op == ReduceOp::Avg && w != Widen::None
}

impl Group<Mpi> {
    /// The group of an rsmpi communicator (world or a split one): a private
    /// duplicate of it ([`Mpi::new`]), with rank 0's settings from the
    /// environment ([`Group::from_env`]). Collective.
    ///
    /// # Errors
    /// On every rank, when rank 0's calibration file is unreadable or
    /// malformed, `RINGREDUCE_ALGO` names no algorithm, or a check variable
    /// is not understood.
    pub fn mpi<M: mpi::traits::Communicator>(comm: &M) -> Result<Self> {
        // A malformed shape falls back here and is reported by from_env.
        let shape = shape_from_env().unwrap_or(crate::transport::Shape::DEFAULT);
        Group::from_env(Mpi::with_shape(comm, shape))
    }
}

impl Group<LocalEndpoint> {
    /// Runs `f` on `size` threads, each with one rank's group (default
    /// settings), and returns their results in rank order.
    ///
    /// # Panics
    /// Re-raises a panic of any rank's thread.
    pub fn local<R, F>(size: usize, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(Group<LocalEndpoint>) -> R + Sync,
    {
        Group::local_with(size, Settings::default(), f)
    }

    /// [`Group::local`] with the given settings on every rank.
    ///
    /// # Panics
    /// Re-raises a panic of any rank's thread.
    pub fn local_with<R, F>(size: usize, settings: Settings, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(Group<LocalEndpoint>) -> R + Sync,
    {
        Local::run(size, |ep| f(Group::with_settings(ep, settings)))
    }
}

/// All-reduces `buf` in place over `group`: [`Group::all_reduce_in_place`].
///
/// # Examples
/// ```
/// use ringreduce::{all_reduce_in_place, Algorithm, Group, ReduceOp};
/// let out = Group::local(3, |g| {
///     let mut v = vec![g.rank() as i64; 5];
///     all_reduce_in_place(&g, &mut v, ReduceOp::Max, Algorithm::Butterfly).unwrap();
///     v
/// });
/// assert!(out.iter().all(|v| v == &vec![2; 5]));
/// ```
///
/// # Errors
/// Those of [`Group::all_reduce_in_place`].
pub fn all_reduce_in_place<T: Element, C: Transport>(
    group: &Group<C>,
    buf: &mut [T],
    op: ReduceOp,
    algorithm: Algorithm,
) -> Result<()> {
    group.all_reduce_in_place(buf, op, algorithm)
}

/// Out-of-place all-reduce over `group`: [`Group::all_reduce`].
///
/// # Errors
/// Those of [`Group::all_reduce`].
pub fn all_reduce<T: Element, C: Transport>(
    group: &Group<C>,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
    algorithm: Algorithm,
) -> Result<()> {
    group.all_reduce(send, recv, op, algorithm)
}

#[cfg(test)]
mod tests;
