//! The MPI transport: any rsmpi communicator.

use std::time::{Duration, Instant};

use mpi::request::{LocalScope, Request};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Tag;

use super::{check_peer, Transport};
use crate::check::{rank_list, CallChecks, CheckConfig, ABORT_CODE};
use crate::cost::{Tuning, WIRE};
use crate::error::{Error, Result};

/// Largest message handed to MPI in one call. MPI counts are C `int`s, so
/// larger buffers are sent as several messages of at most this many bytes.
const MAX_MESSAGE: usize = 1 << 30;

/// Polls of a pending request before the clock is first read.
const SPINS: u32 = 256;
/// After this long a waiting rank answers other ranks' census queries and
/// yields its core between polls.
const PATIENT: Duration = Duration::from_millis(1);
/// How long a census waits for the answers of the other ranks.
const GRACE: Duration = Duration::from_secs(1);
/// Tags on the control communicator.
const QUERY: Tag = 1;
const REPLY: Tag = 2;

/// A posted send or receive of bytes.
type Pending<'a, 's> = Request<'a, [u8], &'s LocalScope<'a>>;

/// Transport over an rsmpi communicator.
///
/// [`Mpi::new`] duplicates the communicator (`MPI_Comm_dup`, a collective
/// call), so the library's messages can never be matched by the
/// application's own sends and receives on the original communicator — the
/// same isolation NCCL and Gloo get from their own contexts. A second
/// duplicate carries the stall census (below).
///
/// Every wait polls its requests with a deadline ([`CheckConfig::timeout`],
/// default 60 s, `RINGREDUCE_TIMEOUT`). When it passes, the waiting rank
/// asks every rank which call it is in (a *census*: ranks waiting inside
/// this library answer, stalled or busy ones cannot), the lowest waiting
/// rank prints one line —
/// `ringreduce: rank 3 has not joined all_reduce #812 after 60 s` — to
/// standard error and calls `MPI_Abort` with [`ABORT_CODE`].
///
/// MPI errors abort the job under rsmpi's default error handler
/// (`MPI_ERRORS_ARE_FATAL`); they are not returned as [`Error`]. A rank
/// killed by a signal ends the job through `mpirun`.
///
/// # Examples
/// ```no_run
/// use ringreduce::{Algorithm, Mpi, ReduceOp};
/// let universe = mpi::initialize().expect("MPI already initialised");
/// let comm = Mpi::new(&universe.world())?;
/// let mut grad = vec![1.0f32; 1024];
/// ringreduce::all_reduce_in_place(&comm, &mut grad, ReduceOp::Sum, Algorithm::Ring)?;
/// # Ok::<(), ringreduce::Error>(())
/// ```
pub struct Mpi {
    comm: SimpleCommunicator,
    control: SimpleCommunicator,
    rank: usize,
    size: usize,
    tuning: Tuning,
    checks: CallChecks,
}

impl Mpi {
    /// Wraps a private duplicate of `comm` (world or a split communicator).
    /// Collective: every rank of `comm` must call it.
    ///
    /// Rank 0 reads the [`Tuning`] for `Algorithm::Auto`
    /// (`RINGREDUCE_CALIBRATION`, `RINGREDUCE_ALGO`) and the call checks
    /// (`RINGREDUCE_CHECK`, `RINGREDUCE_TIMEOUT`; see [`crate::check`]) from
    /// the environment and broadcasts them, so every rank behaves alike
    /// even if their files or environments differ.
    ///
    /// # Errors
    /// On every rank, when rank 0's calibration file is unreadable or
    /// malformed, `RINGREDUCE_ALGO` names no algorithm, or a check variable
    /// is not understood.
    pub fn new<C: Communicator>(comm: &C) -> Result<Self> {
        let from_env = if comm.rank() == 0 {
            Some(Tuning::from_env().and_then(|t| Ok((t, CheckConfig::from_env()?))))
        } else {
            None
        };
        // Every rank learns rank 0's verdict (its error text, if any); then the settings go out.
        let verdict = match &from_env {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        };
        agree_on(comm, verdict)?;
        let (tuning, checks) = from_env.and_then(|t| t.ok()).unwrap_or_default();
        Ok(Mpi::with_config(comm, tuning, checks))
    }

    /// Like [`Mpi::new`] with an explicit tuning and the default checks.
    /// Collective; rank 0's value is used on every rank.
    pub fn with_tuning<C: Communicator>(comm: &C, tuning: Tuning) -> Self {
        Mpi::with_config(comm, tuning, CheckConfig::default())
    }

    /// Like [`Mpi::new`] with explicit settings; the environment is not
    /// read. Collective; rank 0's values are used on every rank.
    pub fn with_config<C: Communicator>(comm: &C, tuning: Tuning, checks: CheckConfig) -> Self {
        let comm = comm.duplicate();
        let control = comm.duplicate();
        let mut wire = [0.0; WIRE + 2];
        wire[..WIRE].copy_from_slice(&tuning.to_wire());
        wire[WIRE..].copy_from_slice(&checks.to_wire());
        comm.process_at_rank(0).broadcast_into(&mut wire[..]);
        let rank = comm.rank() as usize;
        let size = comm.size() as usize;
        Mpi {
            comm,
            control,
            rank,
            size,
            tuning: Tuning::from_wire(wire[..WIRE].try_into().expect("WIRE numbers")),
            checks: CallChecks::new(CheckConfig::from_wire([wire[WIRE], wire[WIRE + 1]])),
        }
    }

    /// The duplicated communicator the transport sends on.
    pub fn communicator(&self) -> &SimpleCommunicator {
        &self.comm
    }

    /// Polls `sends` and `recvs` (with the bytes each receive expects from
    /// `peer`) until all are complete; a stall past the deadline ends in
    /// [`Mpi::stalled`]. Every request is completed, also on error. Returns
    /// the bytes received; with `exact`, each piece must be as long as expected.
    fn complete<'a>(
        &self,
        sends: &mut [Option<Pending<'a, '_>>],
        recvs: &mut [Option<(Pending<'a, '_>, usize)>],
        peer: usize,
        exact: bool,
    ) -> Result<usize> {
        let mut result = Ok(0);
        let mut wait = Waiting::new(self, peer, !recvs.is_empty());
        loop {
            let mut pending = false;
            for slot in sends.iter_mut() {
                if let Some(req) = slot.take() {
                    if let Err(req) = req.test() {
                        *slot = Some(req);
                        pending = true;
                    }
                }
            }
            for slot in recvs.iter_mut() {
                if let Some((req, expected)) = slot.take() {
                    match req.test() {
                        Ok(status) => {
                            let got = status.count(u8::equivalent_datatype()) as usize;
                            result = match result {
                                Ok(_) if exact && got != expected => Err(Error::MessageSize {
                                    rank: self.rank,
                                    from: peer,
                                    expected,
                                    got,
                                }),
                                Ok(total) => Ok(total + got),
                                err => err,
                            };
                        }
                        Err(req) => {
                            *slot = Some((req, expected));
                            pending = true;
                        }
                    }
                }
            }
            if !pending {
                return result;
            }
            wait.idle();
        }
    }

    /// Answers the census queries other ranks have sent: which call this
    /// rank is in and whether it is still agreeing on it.
    fn answer_queries(&self) {
        while let Some((msg, status)) = self.control.any_process().immediate_matched_probe_with_tag(QUERY) {
            let mut query = [0u64; 1];
            msg.matched_receive_into(&mut query[..]);
            let reply = [self.checks.calls(), u64::from(self.checks.agreeing())];
            self.control
                .process_at_rank(status.source_rank())
                .send_with_tag(&reply[..], REPLY);
        }
    }

    /// Asks every other rank which call it is in; `None` for ranks that did
    /// not answer within [`GRACE`] (they are not waiting in this library).
    fn census(&self) -> Vec<Option<(u64, bool)>> {
        let mut answers = vec![None; self.size];
        answers[self.rank] = Some((self.checks.calls(), self.checks.agreeing()));
        for r in (0..self.size).filter(|&r| r != self.rank) {
            // 8 bytes go eagerly: this returns even if rank r is stopped.
            self.control
                .process_at_rank(r as i32)
                .send_with_tag(&[self.checks.calls()][..], QUERY);
        }
        let until = Instant::now() + GRACE;
        while Instant::now() < until && answers.iter().any(Option::is_none) {
            self.answer_queries();
            while let Some((msg, status)) = self.control.any_process().immediate_matched_probe_with_tag(REPLY)
            {
                let mut a = [0u64; 2];
                msg.matched_receive_into(&mut a[..]);
                answers[status.source_rank() as usize] = Some((a[0], a[1] != 0));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        answers
    }

    /// The deadline of a wait for `peer` has passed: take a census, and if
    /// this is the lowest rank still waiting, report and abort the job.
    /// Otherwise return; the lowest waiting rank's deadline comes soon.
    fn stalled(&self, peer: usize, receiving: bool, timeout: Duration) {
        let answers = self.census();
        let lowest = answers.iter().position(Option::is_some);
        if lowest != Some(self.rank) {
            return;
        }
        let wait = Stall {
            call: self.checks.calls(),
            agreeing: self.checks.agreeing(),
            peer,
            receiving,
            timeout,
        };
        let message = wait.message(&answers);
        eprintln!("ringreduce: {message}; aborting the job");
        self.comm.abort(ABORT_CODE)
    }
}

/// What a rank was waiting for when its deadline passed.
struct Stall {
    call: u64,
    agreeing: bool,
    peer: usize,
    receiving: bool,
    timeout: Duration,
}

impl Stall {
    /// The report, given the census (`answers[r]`: rank r's call and
    /// whether it was agreeing; `None`: no answer).
    fn message(&self, answers: &[Option<(u64, bool)>]) -> String {
        let (call, peer) = (self.call, self.peer);
        let secs = format_secs(self.timeout);
        let ranks = 0..answers.len();
        let silent: Vec<usize> = ranks.clone().filter(|&r| answers[r].is_none()).collect();
        if self.agreeing {
            let missing: Vec<usize> = ranks
                .filter(|&r| answers[r].map_or(true, |(c, _)| c != call))
                .collect();
            let elsewhere: Vec<String> = missing
                .iter()
                .filter_map(|&r| answers[r].map(|(c, _)| format!("rank {r} is in all_reduce #{c}")))
                .collect();
            if missing.is_empty() {
                return format!(
                    "all_reduce #{call} made no progress for {secs} s although every rank has joined it"
                );
            }
            let verb = if missing.len() == 1 { "has" } else { "have" };
            let mut m = format!(
                "{} {verb} not joined all_reduce #{call} after {secs} s",
                rank_list(&missing)
            );
            if !elsewhere.is_empty() {
                m += &format!(" ({})", elsewhere.join(", "));
            }
            m
        } else {
            let mut m = if self.receiving {
                format!("all_reduce #{call}: no message from rank {peer} for {secs} s")
            } else {
                format!("all_reduce #{call}: rank {peer} has not accepted a message for {secs} s")
            };
            if !silent.is_empty() {
                m += &format!("; not responding: {}", rank_list(&silent));
            }
            m
        }
    }
}

/// Makes a local verdict collective: when any rank of `comm` has an error,
/// every rank returns one — its own, or on the others the first failing
/// rank's message prefixed with its rank — so no rank goes on into a
/// collective call that the failed ones will never make. Collective.
pub(crate) fn agree_on<C: Communicator>(comm: &C, local: Result<()>) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    let mine = if local.is_err() { rank } else { size };
    let mut first = size;
    comm.all_reduce_into(&mine, &mut first, mpi::collective::SystemOperation::min());
    if first == size {
        return Ok(());
    }
    let mut text = match &local {
        Err(e) if rank == first => e.to_string().into_bytes(),
        _ => Vec::new(),
    };
    let root = comm.process_at_rank(first);
    let mut len = text.len() as u64;
    root.broadcast_into(&mut len);
    text.resize(len as usize, 0);
    root.broadcast_into(&mut text[..]);
    match local {
        Err(e) if rank == first => Err(e),
        _ => Err(Error::Remote {
            rank: first as usize,
            reason: String::from_utf8_lossy(&text).into_owned(),
        }),
    }
}

/// "60", "2.5": seconds as configured, without noise digits.
fn format_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{:.1}", s)
    }
}

/// The state of one wait: when it began, when it gives up.
struct Waiting<'m> {
    mpi: &'m Mpi,
    peer: usize,
    receiving: bool,
    start: Option<Instant>,
    spins: u32,
}

impl<'m> Waiting<'m> {
    fn new(mpi: &'m Mpi, peer: usize, receiving: bool) -> Self {
        Waiting {
            mpi,
            peer,
            receiving,
            start: None,
            spins: 0,
        }
    }

    /// Called after every poll that found work pending. The first polls
    /// only spin (the fast path costs no clock reads); later ones answer
    /// census queries, yield the core, and watch the deadline.
    fn idle(&mut self) {
        self.spins = self.spins.wrapping_add(1);
        if self.spins < SPINS || self.spins % 16 != 0 {
            return;
        }
        let now = Instant::now();
        let start = *self.start.get_or_insert(now);
        let waited = now - start;
        if waited < PATIENT {
            return;
        }
        self.mpi.answer_queries();
        std::thread::yield_now();
        if let Some(timeout) = self.mpi.checks.config().timeout {
            if waited >= timeout {
                self.mpi.stalled(self.peer, self.receiving, timeout);
                // Not the reporting rank: wait on; the reporter aborts the job.
                self.start = Some(Instant::now());
            }
        }
    }
}

/// A zero-length slice with a real address. An empty slice's dangling
/// pointer can equal a sentinel MPI gives meaning to (OpenMPI's
/// `MPI_IN_PLACE` is `(void*)1`, the dangling pointer of an empty `[u8]`).
fn safe_empty(buf: &[u8]) -> &[u8] {
    static EMPTY: [u8; 1] = [0];
    if buf.is_empty() {
        &EMPTY[..0]
    } else {
        buf
    }
}

/// Splits `len` bytes into the pieces sent as separate MPI messages
/// (always at least one piece, so empty buffers still send one message).
fn pieces(len: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let n = len.div_ceil(MAX_MESSAGE).max(1);
    (0..n).map(move |i| (i * MAX_MESSAGE).min(len)..((i + 1) * MAX_MESSAGE).min(len))
}

/// Splits a receive buffer into its pieces (see [`pieces`]).
fn pieces_mut(buf: &mut [u8]) -> Vec<&mut [u8]> {
    if buf.is_empty() {
        return vec![buf];
    }
    buf.chunks_mut(MAX_MESSAGE).collect()
}

impl Transport for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn tuning(&self) -> Tuning {
        self.tuning
    }

    fn checks(&self) -> Option<&CallChecks> {
        Some(&self.checks)
    }

    fn size(&self) -> usize {
        self.size
    }

    fn send_bytes(&self, buf: &[u8], dest: usize) -> Result<()> {
        self.sendrecv_opt(Some((buf, dest)), None, true).map(drop)
    }

    fn recv_bytes(&self, buf: &mut [u8], src: usize) -> Result<()> {
        self.sendrecv_opt(None, Some((buf, src)), true).map(drop)
    }

    fn sendrecv_bytes(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<()> {
        self.sendrecv_opt(Some((send, dest)), Some((recv, src)), true)
            .map(drop)
    }

    fn recv_bytes_upto(&self, buf: &mut [u8], src: usize) -> Result<usize> {
        self.upto(buf.len())?;
        self.sendrecv_opt(None, Some((buf, src)), false)
    }

    fn sendrecv_bytes_upto(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<usize> {
        self.upto(recv.len())?;
        self.sendrecv_opt(Some((send, dest)), Some((recv, src)), false)
    }
}

impl Mpi {
    /// Variable-length receives are single messages: at most [`MAX_MESSAGE`].
    fn upto(&self, capacity: usize) -> Result<()> {
        if capacity <= MAX_MESSAGE {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                what: "receive buffer",
                reason: format!("variable-length receives hold at most {MAX_MESSAGE} bytes"),
            })
        }
    }

    /// Posts the receive (if any), then the send (if any), and completes
    /// both by polling. Buffers over [`MAX_MESSAGE`] go as several
    /// messages, all posted at once, so a ring of ranks all sending large
    /// pieces cannot deadlock.
    fn sendrecv_opt(
        &self,
        send: Option<(&[u8], usize)>,
        recv: Option<(&mut [u8], usize)>,
        exact: bool,
    ) -> Result<usize> {
        if let Some((_, dest)) = send {
            check_peer(dest, self.size)?;
        }
        if let Some((_, src)) = &recv {
            check_peer(*src, self.size)?;
        }
        let mut empty = [0u8; 1];
        let (recv, src) = match recv {
            Some(([], src)) => (Some(&mut empty[..0]), src),
            Some((buf, src)) => (Some(buf), src),
            None => (None, 0),
        };
        let (send, dest) = match send {
            Some((buf, dest)) => (Some(safe_empty(buf)), dest),
            None => (None, 0),
        };
        // The peer a stall report names: the one this rank waits to hear from.
        let peer = if recv.is_some() { src } else { dest };
        mpi::request::scope(|scope| {
            let from = self.comm.process_at_rank(src as i32);
            let to = self.comm.process_at_rank(dest as i32);
            let small = |len: Option<usize>| len.map_or(true, |n| n <= MAX_MESSAGE);
            if small(recv.as_ref().map(|b| b.len())) && small(send.map(<[u8]>::len)) {
                // The common case, one message each way, without allocating.
                let mut recvs = [recv.map(|buf| {
                    let expected = buf.len();
                    (from.immediate_receive_into(scope, buf), expected)
                })];
                let mut sends = [send.map(|buf| to.immediate_send(scope, buf))];
                return self.complete(&mut sends, &mut recvs, peer, exact);
            }
            let mut recvs: Vec<_> = match recv {
                Some(buf) => pieces_mut(buf)
                    .into_iter()
                    .map(|piece| {
                        let expected = piece.len();
                        Some((from.immediate_receive_into(scope, piece), expected))
                    })
                    .collect(),
                None => Vec::new(),
            };
            let mut sends: Vec<_> = match send {
                Some(buf) => pieces(buf.len())
                    .map(|r| Some(to.immediate_send(scope, &buf[r])))
                    .collect(),
                None => Vec::new(),
            };
            self.complete(&mut sends, &mut recvs, peer, exact)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_reports_name_who_is_missing() {
        let joined = |c| Some((c, true));
        let stall = |agreeing, receiving| Stall {
            call: 812,
            agreeing,
            peer: 3,
            receiving,
            timeout: Duration::from_secs(60),
        };
        let answers = [joined(812), joined(812), joined(812), None];
        assert_eq!(
            stall(true, true).message(&answers),
            "rank 3 has not joined all_reduce #812 after 60 s"
        );
        let answers = [joined(812), None, Some((811, false)), None];
        assert_eq!(
            stall(true, true).message(&answers),
            "ranks 1-3 have not joined all_reduce #812 after 60 s (rank 2 is in all_reduce #811)"
        );
        let answers = [joined(812); 4];
        assert_eq!(
            stall(true, true).message(&answers),
            "all_reduce #812 made no progress for 60 s although every rank has joined it"
        );
        let answers = [Some((812, false)), Some((812, false)), None, None];
        assert_eq!(
            stall(false, true).message(&answers),
            "all_reduce #812: no message from rank 3 for 60 s; not responding: ranks 2, 3"
        );
        let mut half = stall(false, false);
        half.timeout = Duration::from_millis(2500);
        assert_eq!(
            half.message(&[Some((812, false)); 4]),
            "all_reduce #812: rank 3 has not accepted a message for 2.5 s"
        );
    }

    #[test]
    fn pieces_cover_the_buffer() {
        assert_eq!(pieces(0).collect::<Vec<_>>(), vec![0..0]);
        assert_eq!(pieces(5).collect::<Vec<_>>(), vec![0..5]);
        let big = 2 * MAX_MESSAGE + 7;
        let p: Vec<_> = pieces(big).collect();
        assert_eq!(
            p,
            vec![0..MAX_MESSAGE, MAX_MESSAGE..2 * MAX_MESSAGE, 2 * MAX_MESSAGE..big]
        );
    }
}
