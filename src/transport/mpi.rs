//! The MPI transport: any rsmpi communicator.

use std::time::{Duration, Instant};

use mpi::collective::SystemOperation;
use mpi::ffi::{MPI_Request, MPI_Status};
use mpi::point_to_point::Status;
use mpi::raw::{AsRaw, FromRaw};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::shm::{Nodes, Segment, Shape};
use super::{valid_tag, valid_target, AnySource, Done, Progress, Tag, Transport};
use crate::error::{rank_list, Error, Result};

/// Largest message handed to MPI in one call: larger buffers travel as
/// several messages of at most this many bytes, so that a long transfer
/// shows progress (each piece that completes resets the stall deadline) and
/// MPI's C `int` counts never overflow.
const PIECE: usize = 4 << 20;
/// Pieces of one send in MPI's hands at a time; the next is posted as one
/// completes (a receive posts all its pieces at once, so every piece finds
/// its receive waiting). Posted all at once, Open MPI's TCP path can advance
/// every piece of a 256 MiB send side by side and complete none for the
/// transfer's whole length (22 s at 100 Mbit/s), which the stall timeout
/// took for a dead peer. Four keep 100 Mbit/s and 1 Gbit/s links full
/// (a window of one or two halved the rate of an exchange).
const SEND_WINDOW: usize = 4;

/// Polls of a pending request before the clock is first read.
const SPINS: u32 = 256;
/// After this long a waiting rank answers other ranks' census queries and
/// yields its core between polls.
const PATIENT: Duration = Duration::from_millis(1);
/// How long a census waits for the answers of the other ranks.
const GRACE: Duration = Duration::from_secs(1);
/// Tags on the control communicator.
const QUERY: mpi::Tag = 1;
const REPLY: mpi::Tag = 2;
/// Bytes of a census reply: call number, agreeing flag, label.
const REPLY_LEN: usize = 48;
/// Exit code of a job the MPI transport aborted because a rank stalled.
pub const STALL_EXIT: i32 = 3;
/// The environment variable naming a file the stall report is also
/// appended to (`ringreduce elastic` reads it).
pub const STALL_FILE: &str = "RINGREDUCE_STALL_FILE";

/// Open MPI settings this library runs best with, as environment
/// variables: what [`set_mpi_defaults`] sets where nothing else has.
///
/// - `btl_tcp_flags` without `put`: Open MPI 4.1's TCP transport moves a
///   message above `btl_tcp_min_rdma_pipeline_size` (192 KiB) as an
///   emulated RDMA put, and two hosts sending each other such messages at
///   once (the exchanges of the butterfly, Rabenseifner, a 2-rank ring,
///   bucketed training) then get about half the link each way. With sends
///   and receives only, a 16 MiB exchange between two hosts at 1 Gbit/s
///   took 0.54–0.59× the time (ours and the vendor's `MPI_Allreduce`
///   alike); a one-way 16 MiB message took the same (`docs/perf/tcp-put-swap`).
///   One-sided MPI between hosts in Open MPI 4.1 goes through `osc/pt2pt`,
///   which does not use it.
pub const MPI_DEFAULTS: &[(&str, &str)] = &[("OMPI_MCA_btl_tcp_flags", "send,inplace,need-ack,need-csum")];

/// Open MPI settings for a process whose collectives run on a
/// communication thread beside its computation
/// ([`crate::group::Overlapped`], the trainer's gradient buckets): what
/// [`set_overlap_mpi_defaults`] sets where nothing else has, besides
/// [`MPI_DEFAULTS`].
///
/// - `btl_tcp_sndbuf` 256 KiB instead of the kernel's autotuned send
///   buffer (up to 4 MiB). Open MPI's TCP transport counts a fragment sent
///   once it is in the socket, so a large message fills the buffer, and
///   whatever is sent next on that connection — the handshake of the next
///   bucket's exchange, a small collective of the main thread — waits
///   behind up to 4 MiB (32 ms at 1 Gbit/s) while the other direction
///   idles. Buckets of 3–4 MB between 2 hosts at 1 Gbit/s took 46–62 ms
///   each (medians) instead of 27–35 (a training step 164 ms against 122 ms
///   without buckets); with 256 KiB 28–40 ms (121.6 ms a step),
///   as with the kernel's `net.ipv4.tcp_notsent_lowat` = 128 KiB, which
///   bounds only the unsent part (`docs/perf/buckets-2x1gbit-sndbuf`).
///   The buffer also bounds the bytes in flight: at 256 KiB a connection
///   carries about 256 KiB per round trip (Linux doubles the value for its
///   bookkeeping; 1 Gbit/s up to a 2 ms round trip). On longer or faster
///   links set `OMPI_MCA_btl_tcp_sndbuf=0` (the kernel's autotuning) and
///   the sysctl instead.
pub const OVERLAP_MPI_DEFAULTS: &[(&str, &str)] = &[("OMPI_MCA_btl_tcp_sndbuf", "262144")];

/// Sets each of [`MPI_DEFAULTS`] that the environment leaves unset and
/// returns the names it set: an `OMPI_MCA_*` variable of the user's, or
/// `mpirun --mca` (which reaches the ranks as one), wins. Call it before
/// MPI is initialised, while the process has a single thread (it changes
/// the process's environment); the `ringreduce` command does. Other MPIs
/// read none of these variables.
///
/// # Examples
/// ```no_run
/// ringreduce::transport::set_mpi_defaults();
/// let universe = ringreduce::mpi::initialize().expect("MPI already initialised");
/// ```
pub fn set_mpi_defaults() -> Vec<&'static str> {
    set_defaults(&[MPI_DEFAULTS])
}

/// [`set_mpi_defaults`] for a process that will run a communication
/// thread ([`crate::Group::overlapped`]): [`MPI_DEFAULTS`] and
/// [`OVERLAP_MPI_DEFAULTS`], each where the environment leaves it unset.
/// The `ringreduce train` command calls it for the strategies that can run
/// on buckets, also with `--bucket-mb 0`, so both compare alike.
///
/// # Examples
/// ```no_run
/// ringreduce::transport::set_overlap_mpi_defaults();
/// let (universe, _) =
///     ringreduce::mpi::initialize_with_threading(ringreduce::mpi::Threading::Multiple).unwrap();
/// ```
pub fn set_overlap_mpi_defaults() -> Vec<&'static str> {
    set_defaults(&[MPI_DEFAULTS, OVERLAP_MPI_DEFAULTS])
}

fn set_defaults(lists: &[&[(&'static str, &'static str)]]) -> Vec<&'static str> {
    let unset = unset_defaults(lists, |name| std::env::var_os(name).is_some());
    for (name, value) in &unset {
        std::env::set_var(name, value);
    }
    unset.into_iter().map(|(name, _)| name).collect()
}

/// The entries of `lists` whose variable `is_set` says is unset.
fn unset_defaults(
    lists: &[&[(&'static str, &'static str)]],
    is_set: impl Fn(&str) -> bool,
) -> Vec<(&'static str, &'static str)> {
    lists
        .iter()
        .flat_map(|l| l.iter().copied())
        .filter(|(name, _)| !is_set(name))
        .collect()
}

/// Transport over an rsmpi communicator.
///
/// [`Mpi::new`] duplicates the communicator (`MPI_Comm_dup`, a collective
/// call), so the library's messages can never be matched by the
/// application's own sends and receives on the original communicator — the
/// same isolation NCCL and Gloo get from their own contexts. A second
/// duplicate carries the stall census (below).
///
/// Sends and receives are `MPI_Isend`/`MPI_Irecv`, completed by polling
/// `MPI_Test`. When the [`Progress`] record has a timeout and a wait makes
/// no progress for that long, the waiting rank asks every rank which call
/// it is in (a *census*: ranks waiting inside this library answer, stalled
/// or busy ones cannot), and the lowest waiting rank prints one line —
/// `ringreduce: rank 3 has not joined all_reduce #812 after 60 s` — to
/// standard error and calls `MPI_Abort` with exit code 3.
///
/// An `Mpi` (and a [`Group`](crate::Group) over one) stays on the thread
/// that made it: it is not `Send`, because rsmpi's communicator handles are
/// not. Threads that communicate at once each need their own `Mpi::new` over
/// their own communicator ([`Mpi::for_thread`] hands one to another thread),
/// with MPI initialised at `MPI_THREAD_MULTIPLE`
/// (`mpi::initialize_with_threading`).
///
/// MPI errors abort the job under rsmpi's default error handler
/// (`MPI_ERRORS_ARE_FATAL`); they are not returned as [`Error`]. A rank
/// killed by a signal ends the job through `mpirun`. Messages larger than
/// 4 MiB travel as several pieces: such a receive must be exactly as long as
/// the send, and a receive from any source holds at most 4 MiB.
///
/// # Examples
/// ```no_run
/// use ringreduce::{Mpi, Transport};
/// let universe = ringreduce::mpi::initialize().expect("MPI already initialised");
/// let t = Mpi::new(&universe.world());
/// if t.size() > 1 {
///     let peer = 1 - t.rank().min(1);
///     let mut got = [0u8; 4];
///     t.sendrecv_bytes(&[t.rank() as u8; 4], peer, &mut got, peer)?;
/// }
/// # Ok::<(), ringreduce::Error>(())
/// ```
pub struct Mpi {
    comm: SimpleCommunicator,
    /// Where sends and receives go: `comm`'s duplicate, returning errors.
    p2p: SimpleCommunicator,
    control: SimpleCommunicator,
    rank: usize,
    size: usize,
    progress: Progress,
    /// The shared memory of a group on one node, and its window.
    shared: Option<(Segment, mpi::ffi::MPI_Win)>,
    /// This rank's index on its node, and the node's rank count.
    node: (usize, usize),
    /// Ranks on every node when the nodes hold as many, else 0 (see
    /// [`Transport::ranks_per_node`]).
    per_node: usize,
    /// The shape this rank asked its segments to have (a thread's
    /// duplicate asks for the same).
    shape: Shape,
    /// Every rank's host (`MPI_Get_processor_name`), for stall reports:
    /// a supervisor that relaunches the job on the hosts left reads them.
    hosts: Vec<String>,
    /// Sleep this long between polls of a wait that has not progressed
    /// for [`NAP_AFTER`] (instead of spinning and yielding): a background
    /// thread's waits then leave the cores to computation, and a rank of a
    /// node whose ranks outnumber its processors ([`CROWDED_NAP`]) leaves
    /// its core to the rank it waits for.
    nap: Option<Duration>,
}

/// How long a napping wait spins before it sleeps between polls.
const NAP_AFTER: Duration = Duration::from_micros(50);

/// `MPI_Irecv`'s signature, which `MPI_Isend` takes too (through [`isend`]).
type Post = unsafe extern "C" fn(
    *mut std::ffi::c_void,
    i32,
    mpi::ffi::MPI_Datatype,
    i32,
    i32,
    mpi::ffi::MPI_Comm,
    *mut MPI_Request,
) -> i32;

/// `MPI_Isend` with the receive's pointer type.
///
/// # Safety
/// As `MPI_Isend`: a valid buffer of `count` bytes that stays unmodified
/// until the request completes, valid handles.
unsafe extern "C" fn isend(
    buf: *mut std::ffi::c_void,
    count: i32,
    datatype: mpi::ffi::MPI_Datatype,
    dest: i32,
    tag: i32,
    comm: mpi::ffi::MPI_Comm,
    request: *mut MPI_Request,
) -> i32 {
    // SAFETY: the caller's obligations are MPI_Isend's; it only reads the buffer.
    unsafe { mpi::ffi::MPI_Isend(buf.cast_const(), count, datatype, dest, tag, comm, request) }
}

/// An [`Mpi`] transport's communicator on its way to a second thread of
/// the process, which duplicates it there into an `Mpi` of its own
/// ([`Transport::thread_duplicate`], [`Mpi::for_thread`]). Made only where
/// MPI runs at `MPI_THREAD_MULTIPLE`.
pub struct ThreadDuplicate {
    comm: mpi::ffi::MPI_Comm,
    shape: Shape,
}

// SAFETY: an MPI communicator handle may be used from any thread of a
// process initialised at MPI_THREAD_MULTIPLE (checked before one is made);
// the handle is only read, by `open`, whose caller keeps the communicator
// alive and unused meanwhile.
unsafe impl Send for ThreadDuplicate {}

impl ThreadDuplicate {
    /// This thread's own transport over a private duplicate of the
    /// communicator ([`Mpi::new`]). Collective over the communicator, like
    /// `Mpi::new`.
    ///
    /// # Safety
    /// The `Mpi` this came from must stay alive, and its thread must make
    /// no call on its communicator, until this returns (it waits for it).
    pub unsafe fn open(self) -> Mpi {
        // SAFETY: a valid communicator of this process (the caller keeps its
        // `Mpi` alive until this returns); ManuallyDrop: it is that `Mpi`'s,
        // never freed here.
        let comm = std::mem::ManuallyDrop::new(unsafe { SimpleCommunicator::from_raw(self.comm) });
        Mpi::with_shape(&*comm, self.shape)
    }
}

/// A started operation of the [`Mpi`] transport: one MPI request, or one
/// per piece for messages over [`PIECE`] bytes (a send's posted at most
/// [`SEND_WINDOW`] at a time).
#[derive(Debug)]
pub struct MpiRequest {
    handles: Handles,
    /// Pieces not yet complete.
    pending: usize,
    /// Pieces posted so far (the rest wait for the window).
    posted: usize,
    /// The caller's buffer, which later pieces are posted from.
    buf: Span,
    receiving: bool,
    /// Destination of a send, source of a receive (`None`: any source).
    peer: Option<usize>,
    /// Bytes sent, or received so far.
    len: usize,
    source: usize,
    tag: Tag,
    /// The MPI error code a piece completed with (the communicator returns
    /// errors: `MPI_ERRORS_RETURN`), if any.
    error: Option<i32>,
}

/// Where an operation's bytes lie.
#[derive(Debug, Clone, Copy)]
struct Span {
    ptr: *mut u8,
    len: usize,
}

#[derive(Debug)]
enum Handles {
    One(MPI_Request),
    Many(Vec<MPI_Request>),
}

impl Handles {
    fn as_mut_slice(&mut self) -> &mut [MPI_Request] {
        match self {
            Handles::One(h) => std::slice::from_mut(h),
            Handles::Many(v) => v,
        }
    }
}

impl Mpi {
    /// Wraps a private duplicate of `comm` (world or a split communicator).
    /// Collective: every rank of `comm` must call it. The stall timeout is
    /// off until set through [`Transport::progress`] (a
    /// [`Group`](crate::Group) sets it from its settings). Shared-memory
    /// segments of the default [`Shape`].
    pub fn new<C: Communicator>(comm: &C) -> Self {
        Mpi::with_shape(comm, Shape::DEFAULT)
    }

    /// [`Mpi::new`] with shared-memory segments of `shape` — each node
    /// takes its first rank's, and every node rank 0's `rail_piece`, halved
    /// (to no less than the `piece`) while some node's free shared memory
    /// could not hold twice its ranks' buffers
    /// ([`Group::mpi`](crate::Group::mpi) reads them from
    /// `RINGREDUCE_SHM_PIECE`, `RINGREDUCE_SHM_SLOT`,
    /// `RINGREDUCE_SHM_WRITES` and `RINGREDUCE_HIER_PIECE`). Collective.
    pub fn with_shape<C: Communicator>(comm: &C, shape: Shape) -> Self {
        let comm = comm.duplicate();
        // The library's own messages travel on a duplicate whose errors come
        // back as codes, so a message longer than its receive is an error
        // the caller sees, not an abort without a word; the collectives
        // made with rsmpi on `comm` (which ignore codes) stay fatal.
        let p2p = comm.duplicate();
        // SAFETY: a valid communicator and the predefined handler.
        unsafe { mpi::ffi::MPI_Comm_set_errhandler(p2p.as_raw(), mpi::ffi::RSMPI_ERRORS_RETURN) };
        let control = comm.duplicate();
        let rank = comm.rank() as usize;
        let size = comm.size() as usize;
        let (shared, nap, on_node, per_node) = if size > 1 {
            let node = comm.split_shared(comm.rank());
            // The node's first rank's shape; but the rails' rings cross
            // nodes, so every node takes the same piece for them: rank 0's,
            // halved while some node's shared memory could not hold its
            // ranks' buffers.
            let on_this_node = node_shape(&node, shape);
            let mut asked = shape.rail_piece as u64;
            comm.process_at_rank(0).broadcast_into(&mut asked);
            let fits = Shape {
                rail_piece: asked as usize,
                ..on_this_node
            }
            .rail_piece_within(node.size() as usize, shared_memory_free()) as u64;
            let mut rail_piece = 0u64;
            comm.all_reduce_into(&fits, &mut rail_piece, SystemOperation::min());
            let shape = Shape {
                rail_piece: rail_piece as usize,
                ..on_this_node
            };
            let nap = (node.size() as usize > online_cpus()).then_some(CROWDED_NAP);
            let on_node = (node.rank() as usize, node.size() as usize);
            let nodes = nodes_of(&comm, &node);
            (share(&nodes, &node, shape), nap, on_node, nodes.per_node())
        } else {
            (None, None, (0, 1), 1)
        };
        let hosts = host_names(&control);
        Mpi {
            comm,
            p2p,
            control,
            rank,
            size,
            progress: Progress::default(),
            shared,
            nap,
            node: on_node,
            per_node,
            shape,
            hosts,
        }
    }

    /// Waits that have not progressed for 50 µs sleep `nap` between polls
    /// instead of spinning: for a communication thread that shares the
    /// cores with computation (Open MPI moves TCP data only inside its
    /// calls, so a poll every `nap` keeps a link busy while the socket
    /// buffers hold more than `nap` of traffic).
    pub fn napping(mut self, nap: Duration) -> Self {
        self.nap = Some(nap);
        self
    }

    /// The duplicated communicator the transport sends on.
    pub fn communicator(&self) -> &SimpleCommunicator {
        &self.comm
    }

    /// This communicator for a second thread of this process to duplicate
    /// as its own `Mpi` ([`ThreadDuplicate::open`]). Not collective.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when MPI was not initialised at
    /// `MPI_THREAD_MULTIPLE` (the same on every rank): the two threads
    /// would call MPI at once.
    pub fn for_thread(&self) -> Result<ThreadDuplicate> {
        let level = mpi::environment::threading_support();
        if level != mpi::Threading::Multiple {
            return Err(Error::InvalidArgument {
                what: "MPI thread level",
                reason: format!(
                    "MPI was initialised at thread level {level:?}; a communication thread needs MPI_THREAD_MULTIPLE \
                     (initialise with ringreduce::mpi::initialize_with_threading(Threading::Multiple))"
                ),
            });
        }
        Ok(ThreadDuplicate {
            comm: self.comm.as_raw(),
            shape: self.shape,
        })
    }

    /// Starts one operation over the pieces of `len` bytes at `ptr`: posts
    /// every piece of a receive, the first [`SEND_WINDOW`] of a send.
    #[inline]
    fn start(&self, ptr: *mut u8, len: usize, peer: Option<usize>, tag: Tag, receiving: bool) -> MpiRequest {
        static EMPTY: [u8; 1] = [0];
        // An empty slice's dangling pointer can equal a sentinel MPI gives
        // meaning to (OpenMPI's MPI_IN_PLACE is (void*)1): use a real address.
        let ptr = if len == 0 { EMPTY.as_ptr().cast_mut() } else { ptr };
        let n = len.div_ceil(PIECE).max(1);
        // SAFETY: reading an immutable constant the MPI shim exports.
        let null = unsafe { mpi::ffi::RSMPI_REQUEST_NULL };
        let handles = if n == 1 {
            Handles::One(null)
        } else {
            Handles::Many(vec![null; n])
        };
        let mut req = MpiRequest {
            handles,
            pending: n,
            posted: 0,
            buf: Span { ptr, len },
            receiving,
            peer,
            len: if receiving { 0 } else { len },
            source: peer.unwrap_or(0),
            tag,
            error: None,
        };
        self.post_window(&mut req);
        req
    }

    /// Posts the pieces of `req` its window lets in: all of a receive's,
    /// a send's while fewer than [`SEND_WINDOW`] are posted and incomplete.
    #[inline]
    fn post_window(&self, req: &mut MpiRequest) {
        let n = req.handles.as_mut_slice().len();
        let window = if req.receiving { n } else { SEND_WINDOW };
        while req.posted < n && req.posted - (n - req.pending) < window {
            let i = req.posted;
            let (h, rc) = self.post(req, i);
            if rc != 0 {
                // Refused (the communicator returns errors): the piece is
                // done, in error.
                req.error.get_or_insert(rc);
                req.pending -= 1;
            }
            req.handles.as_mut_slice()[i] = h;
            req.posted += 1;
        }
    }

    /// Posts piece `i` of `req`: its handle (the null request when MPI
    /// refused it) and MPI's return code.
    fn post(&self, req: &MpiRequest, i: usize) -> (MPI_Request, i32) {
        let Span { ptr, len } = req.buf;
        let offset = i * PIECE;
        let count = (len - offset.min(len)).min(PIECE) as i32;
        let source = match req.peer {
            Some(p) => p as i32,
            // SAFETY: reading an immutable constant the MPI shim exports.
            None => unsafe { mpi::ffi::RSMPI_ANY_SOURCE },
        };
        let mut h = std::mem::MaybeUninit::<MPI_Request>::uninit();
        // SAFETY: `ptr + offset .. + count` lies inside the caller's buffer
        // (or is the 1-byte static for an empty one), which the caller keeps
        // valid until the request completes (the contract of
        // `start_send`/`start_recv`); the datatype, rank, tag and
        // communicator handles are valid; MPI writes the request handle
        // before returning, or returns an error code (MPI_ERRORS_RETURN),
        // and then the null request stands in.
        unsafe {
            let at = ptr.add(offset.min(len)).cast::<std::ffi::c_void>();
            let post: Post = if req.receiving { mpi::ffi::MPI_Irecv } else { isend };
            let dt = u8::equivalent_datatype().as_raw();
            let rc = post(
                at,
                count,
                dt,
                source,
                i32::from(req.tag),
                self.p2p.as_raw(),
                h.as_mut_ptr(),
            );
            match rc {
                0 => (h.assume_init(), 0),
                _ => (mpi::ffi::RSMPI_REQUEST_NULL, rc),
            }
        }
    }

    /// Tests every posted, incomplete piece of `req` once and posts the
    /// pieces the window then lets in; `Some` when all are done.
    #[inline]
    fn poll(&self, req: &mut MpiRequest) -> Option<Done> {
        if req.pending > 0 {
            // SAFETY: reading an immutable constant the MPI shim exports.
            let null = unsafe { mpi::ffi::RSMPI_REQUEST_NULL };
            let posted = req.posted;
            for h in &mut req.handles.as_mut_slice()[..posted] {
                if *h == null {
                    continue;
                }
                let mut flag = 0;
                let mut status = std::mem::MaybeUninit::<MPI_Status>::uninit();
                // SAFETY: `h` is a live request handle started by `start`;
                // MPI_Test writes `flag` and, when set, the status, and sets
                // the handle to MPI_REQUEST_NULL on completion.
                let rc = unsafe { mpi::ffi::MPI_Test(h, &mut flag, status.as_mut_ptr()) };
                if rc != 0 {
                    // Completed in error (the communicator returns errors);
                    // the piece is done either way.
                    req.error.get_or_insert(rc);
                    req.pending -= 1;
                    *h = null;
                    continue;
                }
                if flag != 0 {
                    req.pending -= 1;
                    if req.receiving {
                        // SAFETY: MPI_Test filled the status (flag is set).
                        let status = Status::from_raw(unsafe { status.assume_init() });
                        req.len += status.count(u8::equivalent_datatype()) as usize;
                        req.source = status.source_rank() as usize;
                        req.tag = status.tag() as Tag;
                    }
                }
            }
            self.post_window(req);
        }
        (req.pending == 0).then_some(Done {
            peer: req.source,
            tag: req.tag,
            len: req.len,
            received: req.receiving,
        })
    }

    /// Answers the census queries other ranks have sent: which call this
    /// rank is in and whether it is still agreeing on it.
    fn answer_queries(&self) {
        while let Some((msg, status)) = self.control.any_process().immediate_matched_probe_with_tag(QUERY) {
            let mut query = [0u8; 8];
            msg.matched_receive_into(&mut query[..]);
            self.post_control(self.reply().to_vec(), status.source_rank(), REPLY);
        }
    }

    /// The error a request completed with: a message longer than the
    /// receive buffer ([`Error::Truncated`], a mismatched call with the
    /// checks off), or MPI's words for anything else.
    fn failure(&self, req: &MpiRequest) -> Error {
        let code = req.error.unwrap_or(0);
        let mut class = code;
        // SAFETY: MPI_Error_class only writes the class of a valid code.
        unsafe { mpi::ffi::MPI_Error_class(code, &mut class) };
        if class == mpi::ffi::MPI_ERR_TRUNCATE as i32 {
            return Error::Truncated {
                rank: self.rank,
                from: req.peer.unwrap_or(req.source),
                capacity: req.buf.len,
            };
        }
        let mut text = vec![0u8; mpi::ffi::MPI_MAX_ERROR_STRING as usize + 1];
        let mut len = 0;
        // SAFETY: the buffer holds MPI_MAX_ERROR_STRING characters and more;
        // MPI writes at most that many and their count.
        unsafe { mpi::ffi::MPI_Error_string(code, text.as_mut_ptr().cast(), &mut len) };
        text.truncate(len.max(0) as usize);
        Error::Transport {
            rank: self.rank,
            reason: format!("MPI error {code}: {}", String::from_utf8_lossy(&text)),
        }
    }

    /// Sends `bytes` on the census communicator without waiting for them
    /// to leave: a blocking send to a host whose link is down waits for a
    /// connection that never comes (seen: a census that hung the job
    /// instead of naming the host). The request is freed at once and the
    /// few bytes are leaked, as MPI may read them until the send completes,
    /// which it may never do; censuses are rare (a stall), so they stay few.
    fn post_control(&self, bytes: Vec<u8>, dest: i32, tag: mpi::Tag) {
        let bytes: &'static mut [u8] = Box::leak(bytes.into_boxed_slice());
        let mut h = std::mem::MaybeUninit::<MPI_Request>::uninit();
        // SAFETY: `bytes` lives for the rest of the process (leaked), so it
        // stays valid until the send completes; the datatype, rank, tag and
        // communicator handles are valid; MPI writes the request before
        // returning, and freeing an active request lets the send complete
        // on its own (MPI_Request_free); errors abort the job.
        unsafe {
            isend(
                bytes.as_mut_ptr().cast(),
                bytes.len() as i32,
                u8::equivalent_datatype().as_raw(),
                dest,
                tag,
                self.control.as_raw(),
                h.as_mut_ptr(),
            );
            mpi::ffi::MPI_Request_free(h.as_mut_ptr());
        }
    }

    /// This rank's census reply.
    fn reply(&self) -> [u8; REPLY_LEN] {
        reply(&self.progress)
    }

    /// Asks every other rank which call it is in; `None` for ranks that did
    /// not answer within [`GRACE`] (they are not waiting in this library).
    fn census(&self) -> Vec<Option<Answer>> {
        let mut answers = vec![None; self.size];
        answers[self.rank] = Some(Answer::from_reply(&self.reply()));
        for r in (0..self.size).filter(|&r| r != self.rank) {
            // Not waited for: rank r may be stopped, or its host cut off.
            self.post_control(self.progress.call().to_le_bytes().to_vec(), r as i32, QUERY);
        }
        let until = Instant::now() + GRACE;
        while Instant::now() < until && answers.iter().any(Option::is_none) {
            self.answer_queries();
            while let Some((msg, status)) = self.control.any_process().immediate_matched_probe_with_tag(REPLY)
            {
                let mut a = [0u8; REPLY_LEN];
                msg.matched_receive_into(&mut a[..]);
                answers[status.source_rank() as usize] = Some(Answer::from_reply(&a));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        answers
    }

    /// `reqs` made no progress for `timeout`: take a census (which lasts up
    /// to [`GRACE`]), test the requests again, and if they still made no
    /// progress and this is the lowest rank waiting, report and abort the
    /// job. Otherwise return and wait on; the lowest waiting rank's deadline
    /// comes soon.
    fn deadline(&self, reqs: &mut [MpiRequest], done: &mut [Done], timeout: Duration) {
        let left = |reqs: &[MpiRequest]| reqs.iter().map(|r| r.pending).sum::<usize>();
        let before = left(reqs);
        let answers = self.census();
        for (req, d) in reqs.iter_mut().zip(done.iter_mut()) {
            if let Some(x) = self.poll(req) {
                *d = x;
            }
        }
        let lowest = answers.iter().position(Option::is_some);
        if left(reqs) < before || lowest != Some(self.rank) {
            return;
        }
        // Name the first peer still awaited, a sender before a receiver.
        let open = |r: &&MpiRequest| r.pending > 0;
        let first = reqs
            .iter()
            .filter(open)
            .find(|r| r.receiving)
            .or_else(|| reqs.iter().find(open));
        let (peer, receiving) = first.map_or((None, true), |r| (r.peer, r.receiving));
        let wait = Stall {
            label: self.progress.label().to_string(),
            call: self.progress.call(),
            agreeing: self.progress.agreeing(),
            peer,
            receiving,
            timeout,
        };
        let message = wait.message(&answers);
        let blamed = wait.blamed(&answers);
        let on = on_hosts(&blamed, &self.hosts);
        let line = format!("ringreduce: {message}{on}; aborting the job");
        eprintln!("{line}");
        // A launcher busy ending the job may never forward that line (seen:
        // mpirun waiting on a host whose link is down): a supervisor names
        // a file to find it in.
        if let Some(path) = std::env::var_os(STALL_FILE) {
            use std::io::Write;
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
            let _ = file.and_then(|mut f| writeln!(f, "{line}"));
        }
        self.comm.abort(STALL_EXIT)
    }
}

/// The segment's shape on `node` (a shared-memory split): its first
/// rank's `mine`, the same on every rank of the node. Collective over `node`.
fn node_shape(node: &SimpleCommunicator, mine: Shape) -> Shape {
    let mut words = mine.to_words();
    node.process_at_rank(0).broadcast_into(&mut words[..]);
    Shape::from_words(words)
}

/// Which node every rank of `comm` is on, named by its lowest group rank
/// (`node`: `comm` split by `MPI_COMM_TYPE_SHARED`, which orders ranks by
/// group rank, the split's key). Collective over `comm`.
fn nodes_of(comm: &SimpleCommunicator, node: &SimpleCommunicator) -> Nodes {
    let mut first = comm.rank();
    node.process_at_rank(0).broadcast_into(&mut first);
    let mut node_of = vec![0i32; comm.size() as usize];
    comm.all_gather_into(&first, &mut node_of[..]);
    Nodes {
        node_of: node_of.iter().map(|&n| n as usize).collect(),
        me: comm.rank() as usize,
    }
}

/// The node's shared memory: when other ranks of `comm` share this node
/// (`node`, `comm` split by `MPI_COMM_TYPE_SHARED`), a shared window of one `shape` part per rank
/// of the node and the segment over it; `None` for a rank alone on its
/// node. Collective over `comm`.
fn share(nodes: &Nodes, node: &SimpleCommunicator, shape: Shape) -> Option<(Segment, mpi::ffi::MPI_Win)> {
    if node.size() == 1 {
        return None; // alone on its node: nothing to share
    }
    let part = shape.part(nodes.two_level());
    let asked = part + 64; // room to align the part to a cache line
                           // The window is a file (in /dev/shm) of every rank's part: where the
                           // file-size limit is lower, Open MPI fails inside the collective
                           // allocation and cannot recover, so every rank checks first and the
                           // group goes by messages if any rank could not hold it.
    let fits = i32::from(file_size_limit() >= (asked as u64 + 4096) * node.size() as u64);
    let mut all_fit = 0i32;
    node.all_reduce_into(&fits, &mut all_fit, SystemOperation::min());
    if all_fit == 0 {
        return None;
    }
    let mut win = std::mem::MaybeUninit::<mpi::ffi::MPI_Win>::uninit();
    let mut base: *mut u8 = std::ptr::null_mut();
    // SAFETY: valid communicator and info handles; `base` and `win` are
    // written by the call (MPI errors abort the job). The memory is the
    // window's until `MPI_Win_free` (in `Mpi`'s drop).
    let win = unsafe {
        mpi::ffi::MPI_Win_allocate_shared(
            asked as mpi::ffi::MPI_Aint,
            1,
            mpi::ffi::RSMPI_INFO_NULL,
            node.as_raw(),
            (&mut base as *mut *mut u8).cast(),
            win.as_mut_ptr(),
        );
        win.assume_init()
    };
    // SAFETY: our own part: `asked` bytes, written by no one else yet;
    // zero it (MPI does not) before the barrier below publishes it.
    unsafe { std::ptr::write_bytes(base, 0, asked) };
    let bases = (0..node.size())
        .map(|r| {
            let mut size: mpi::ffi::MPI_Aint = 0;
            let mut unit: std::os::raw::c_int = 0;
            let mut ptr: *mut u8 = std::ptr::null_mut();
            // SAFETY: a shared window of this group; out-parameters are valid.
            unsafe {
                mpi::ffi::MPI_Win_shared_query(
                    win,
                    r,
                    &mut size,
                    &mut unit,
                    (&mut ptr as *mut *mut u8).cast(),
                )
            };
            // Open MPI's parts start a few bytes into a page: align up.
            let skip = ptr.align_offset(64);
            std::ptr::NonNull::new(ptr.wrapping_add(skip)).filter(|_| size as usize >= part + skip)
        })
        .collect::<Option<Vec<_>>>();
    // Every rank's part is zeroed before anyone starts using the segment.
    node.barrier();
    let Some(bases) = bases else {
        // Never seen: an MPI whose shared windows are smaller or unaligned.
        // Each rank's answer could differ, so agree before giving up.
        unreachable_shared(win)
    };
    // SAFETY: every rank's part of the window, zeroed, alive until
    // `MPI_Win_free`, which `Mpi`'s drop calls after dropping the segment.
    let segment = unsafe { Segment::new(bases, node.rank() as usize, nodes, shape, None) };
    Some((segment, win))
}

/// How long a waiting rank sleeps between polls when its node's ranks
/// outnumber the node's processors: a rank that spins while it waits holds
/// a core the rank it waits for needs (Open MPI's `mpi_yield_when_idle`
/// when oversubscribed). Binding does not matter: a rank bound to one core
/// has that core to itself when the ranks do not outnumber the cores.
const CROWDED_NAP: Duration = Duration::from_micros(20);

/// The node's online processors (`usize::MAX` when unknown: never crowded).
fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system setting.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(usize::MAX)
}

/// Free bytes where Open MPI keeps shared windows' files
/// (`OMPI_MCA_osc_sm_backing_directory`, else `/dev/shm`, its default on
/// Linux; a value from an MCA parameter file is not seen); `u64::MAX` when
/// unknown.
fn shared_memory_free() -> u64 {
    let dir = std::env::var("OMPI_MCA_osc_sm_backing_directory").unwrap_or_else(|_| "/dev/shm".into());
    let Ok(path) = std::ffi::CString::new(dir) else {
        return u64::MAX;
    };
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path, and a struct statvfs that the call
    // writes on success.
    if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return u64::MAX;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // Both are u64 on 64-bit Linux, narrower elsewhere.
    #[allow(clippy::unnecessary_cast)]
    let (blocks, size) = (st.f_bavail as u64, st.f_frsize as u64);
    blocks.saturating_mul(size)
}

/// This process's file-size limit in bytes (`RLIMIT_FSIZE`; `u64::MAX`
/// when unlimited or unknown).
fn file_size_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    lim.rlim_cur
}

/// A shared window whose parts are unusable: the job cannot use shared
/// memory consistently, so it stops with a clear message.
fn unreachable_shared(_win: mpi::ffi::MPI_Win) -> ! {
    eprintln!("ringreduce: MPI_Win_shared_query gave a part smaller than asked");
    std::process::exit(STALL_EXIT)
}

impl Drop for Mpi {
    fn drop(&mut self) {
        if let Some((segment, mut win)) = self.shared.take() {
            drop(segment);
            let mut finalized = 0;
            // SAFETY: MPI_Finalized may be called at any time.
            unsafe { mpi::ffi::MPI_Finalized(&mut finalized) };
            if finalized == 0 {
                // SAFETY: the window made in `share`, freed once; every rank
                // drops its transport at the same point of the program
                // (collectively, as it was made).
                unsafe { mpi::ffi::MPI_Win_free(&mut win) };
            }
        }
    }
}

/// A census reply: call number, agreeing flag, label.
fn reply(p: &Progress) -> [u8; REPLY_LEN] {
    let mut r = [0u8; REPLY_LEN];
    r[..8].copy_from_slice(&p.call().to_le_bytes());
    r[8] = u8::from(p.agreeing());
    let label = p.label().as_bytes();
    let n = label.len().min(REPLY_LEN - 16);
    r[16..16 + n].copy_from_slice(&label[..n]);
    r
}

/// A rank's answer to a census: its call and whether it was agreeing.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    label: String,
    call: u64,
    agreeing: bool,
}

impl Answer {
    fn from_reply(r: &[u8; REPLY_LEN]) -> Self {
        let label = &r[16..];
        let end = label.iter().position(|&b| b == 0).unwrap_or(label.len());
        Answer {
            label: String::from_utf8_lossy(&label[..end]).into_owned(),
            call: u64::from_le_bytes(r[..8].try_into().expect("8 bytes")),
            agreeing: r[8] != 0,
        }
    }
}

/// What a rank was waiting for when its deadline passed.
struct Stall {
    label: String,
    call: u64,
    agreeing: bool,
    peer: Option<usize>,
    receiving: bool,
    timeout: Duration,
}

impl Stall {
    /// The ranks the report names as behind: those that have not joined
    /// (of an agreement), else those that did not answer the census, else
    /// the peer awaited.
    fn blamed(&self, answers: &[Option<Answer>]) -> Vec<usize> {
        let ranks = 0..answers.len();
        if self.agreeing {
            return ranks
                .filter(|&r| answers[r].as_ref().is_none_or(|a| a.call < self.call))
                .collect();
        }
        let silent: Vec<usize> = ranks.filter(|&r| answers[r].is_none()).collect();
        match silent.is_empty() {
            true => self.peer.into_iter().collect(),
            false => silent,
        }
    }

    /// The report, given the census (`answers[r]`: rank r's answer; `None`: no answer).
    fn message(&self, answers: &[Option<Answer>]) -> String {
        let (label, call) = (&self.label, self.call);
        let secs = format_secs(self.timeout);
        let ranks = 0..answers.len();
        let silent: Vec<usize> = ranks.clone().filter(|&r| answers[r].is_none()).collect();
        if self.agreeing {
            // Ranks in a later call have finished this one: not missing.
            let missing: Vec<usize> = ranks
                .filter(|&r| answers[r].as_ref().is_none_or(|a| a.call < call))
                .collect();
            let elsewhere: Vec<String> = missing
                .iter()
                .filter_map(|&r| {
                    answers[r]
                        .as_ref()
                        .map(|a| format!("rank {r} is in {} #{}", a.label, a.call))
                })
                .collect();
            if missing.is_empty() {
                return format!(
                    "{label} #{call} made no progress for {secs} s although every rank has joined it"
                );
            }
            let verb = if missing.len() == 1 { "has" } else { "have" };
            let mut m = format!(
                "{} {verb} not joined {label} #{call} after {secs} s",
                rank_list(&missing)
            );
            if !elsewhere.is_empty() {
                m += &format!(" ({})", elsewhere.join(", "));
            }
            m
        } else {
            let from = self.peer.map_or("any rank".to_string(), |p| format!("rank {p}"));
            let mut m = if self.receiving {
                format!("{label} #{call}: no message from {from} for {secs} s")
            } else {
                format!("{label} #{call}: {from} has not accepted a message for {secs} s")
            };
            if !silent.is_empty() {
                m += &format!("; not responding: {}", rank_list(&silent));
            }
            m
        }
    }
}

/// Bytes of a host name in [`host_names`]' exchange.
const HOST_LEN: usize = 64;

/// Every rank's processor name, gathered over `comm`. Collective.
fn host_names(comm: &SimpleCommunicator) -> Vec<String> {
    let mine = mpi::environment::processor_name().unwrap_or_default();
    let mut buf = [0u8; HOST_LEN];
    let n = mine.len().min(HOST_LEN);
    buf[..n].copy_from_slice(&mine.as_bytes()[..n]);
    let mut all = vec![0u8; HOST_LEN * comm.size() as usize];
    comm.all_gather_into(&buf[..], &mut all[..]);
    all.chunks_exact(HOST_LEN)
        .map(|c| {
            let end = c.iter().position(|&b| b == 0).unwrap_or(HOST_LEN);
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect()
}

/// `"; on host rr-h2"`: where the ranks a stall report blames run (empty
/// when no rank is blamed or no name is known).
fn on_hosts(ranks: &[usize], hosts: &[String]) -> String {
    let mut names: Vec<&str> = ranks
        .iter()
        .filter_map(|&r| hosts.get(r).map(String::as_str))
        .filter(|h| !h.is_empty())
        .collect();
    names.dedup();
    names.sort_unstable();
    names.dedup();
    match names.len() {
        0 => String::new(),
        1 => format!("; on host {}", names[0]),
        _ => format!("; on hosts {}", names.join(", ")),
    }
}

/// "60", "2.5": seconds as configured, without noise digits.
pub(crate) fn format_secs(d: Duration) -> String {
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
    start: Option<Instant>,
    spins: u32,
}

impl<'m> Waiting<'m> {
    fn new(mpi: &'m Mpi) -> Self {
        Waiting {
            mpi,
            start: None,
            spins: 0,
        }
    }

    /// The wait made progress: the deadline runs from now.
    fn progressed(&mut self) {
        self.start = None;
    }

    /// Called after every poll that found work pending. The first polls
    /// only spin (the fast path reads no clock); later ones answer census
    /// queries and yield the core. Returns the timeout once no progress has
    /// been made for that long.
    fn idle(&mut self) -> Option<Duration> {
        self.spins = self.spins.wrapping_add(1);
        let napping = self.mpi.nap.is_some();
        if !napping && (self.spins < SPINS || !self.spins.is_multiple_of(16)) {
            return None;
        }
        let now = Instant::now();
        let start = *self.start.get_or_insert(now);
        let waited = now - start;
        match self.mpi.nap {
            Some(nap) if waited >= NAP_AFTER => std::thread::sleep(nap),
            _ => {}
        }
        if waited < PATIENT {
            return None;
        }
        self.mpi.answer_queries();
        if !napping {
            std::thread::yield_now();
        }
        self.mpi.progress.timeout().filter(|&t| waited >= t)
    }
}

impl Transport for Mpi {
    type Request = MpiRequest;

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    unsafe fn start_send(&self, buf: &[u8], dest: usize, tag: Tag) -> Result<MpiRequest> {
        valid_target(dest, self.size, tag)?;
        Ok(self.start(buf.as_ptr().cast_mut(), buf.len(), Some(dest), tag, false))
    }

    unsafe fn start_recv(&self, buf: &mut [u8], src: usize, tag: Tag) -> Result<MpiRequest> {
        valid_target(src, self.size, tag)?;
        Ok(self.start(buf.as_mut_ptr(), buf.len(), Some(src), tag, true))
    }

    fn test(&self, req: &mut MpiRequest) -> Result<Option<Done>> {
        match self.poll(req) {
            Some(_) if req.error.is_some() => Err(self.failure(req)),
            done => Ok(done),
        }
    }

    fn wait_all(&self, reqs: &mut [MpiRequest], done: &mut [Done]) -> Result<()> {
        assert!(
            done.len() >= reqs.len(),
            "wait_all: `done` is shorter than `reqs`"
        );
        let mut wait = Waiting::new(self);
        let mut left = usize::MAX;
        loop {
            let mut all = true;
            for (req, d) in reqs.iter_mut().zip(done.iter_mut()) {
                match self.poll(req) {
                    Some(x) => *d = x,
                    None => all = false,
                }
            }
            if all {
                return match reqs.iter().find(|r| r.error.is_some()) {
                    Some(r) => Err(self.failure(r)),
                    None => Ok(()),
                };
            }
            // A piece that completed is progress: the deadline starts again.
            let now_left: usize = reqs.iter().map(|r| r.pending).sum();
            if now_left < left {
                left = now_left;
                wait.progressed();
            }
            if let Some(timeout) = wait.idle() {
                self.deadline(reqs, done, timeout);
                left = usize::MAX;
                wait.progressed();
            }
        }
    }

    fn progress(&self) -> Option<&Progress> {
        Some(&self.progress)
    }

    fn segment(&self) -> Option<&Segment> {
        self.shared.as_ref().map(|(s, _)| s)
    }

    fn node(&self) -> (usize, usize) {
        self.node
    }

    fn ranks_per_node(&self) -> usize {
        self.per_node
    }

    /// Answers census queries and yields the core; past the stall timeout,
    /// takes a census and (the lowest waiting rank) reports and aborts.
    fn idle(&self, waited: Duration) -> Result<bool> {
        match self.nap {
            Some(nap) if waited >= NAP_AFTER => std::thread::sleep(nap),
            _ => {}
        }
        if waited < PATIENT {
            return Ok(false);
        }
        self.answer_queries();
        if self.nap.is_none() {
            std::thread::yield_now();
        }
        match self.progress.timeout() {
            Some(timeout) if waited >= timeout => {
                self.deadline(&mut [], &mut [], timeout);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn thread_duplicate(&self) -> Option<Result<ThreadDuplicate>> {
        Some(self.for_thread())
    }

    fn abort_stalled(&self, message: &str) -> Result<()> {
        eprintln!("ringreduce: {message}; aborting the job");
        self.comm.abort(STALL_EXIT)
    }
}

impl AnySource for Mpi {
    unsafe fn start_recv_any(&self, buf: &mut [u8], tag: Tag) -> Result<MpiRequest> {
        valid_tag(tag)?;
        if buf.len() > PIECE {
            return Err(Error::InvalidArgument {
                what: "receive buffer",
                reason: format!("receives from any source hold at most {PIECE} bytes"),
            });
        }
        Ok(self.start(buf.as_mut_ptr(), buf.len(), None, tag, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(call: u64, agreeing: bool) -> Option<Answer> {
        Some(Answer {
            label: "all_reduce".into(),
            call,
            agreeing,
        })
    }

    #[test]
    fn mpi_defaults_fill_only_what_the_environment_leaves_unset() {
        let unset = unset_defaults(&[MPI_DEFAULTS], |_| false);
        assert_eq!(unset, MPI_DEFAULTS.to_vec());
        let flags = unset
            .iter()
            .find(|(n, _)| *n == "OMPI_MCA_btl_tcp_flags")
            .unwrap()
            .1;
        assert!(flags.split(',').any(|f| f == "send") && !flags.split(',').any(|f| f == "put"));
        // A variable of the user's (or of `mpirun --mca`) is left alone.
        assert!(unset_defaults(&[MPI_DEFAULTS], |n| n == "OMPI_MCA_btl_tcp_flags").is_empty());
    }

    #[test]
    fn a_communication_thread_bounds_the_tcp_send_buffer_unless_the_user_set_it() {
        let both = unset_defaults(&[MPI_DEFAULTS, OVERLAP_MPI_DEFAULTS], |_| false);
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both.contains(&("OMPI_MCA_btl_tcp_flags", "send,inplace,need-ack,need-csum")));
        let sndbuf: u64 = both
            .iter()
            .find(|(n, _)| *n == "OMPI_MCA_btl_tcp_sndbuf")
            .unwrap()
            .1
            .parse()
            .unwrap();
        // Bounded (0 is the kernel's autotuning, up to 4 MiB) and large
        // enough for 1 Gbit/s over the communication thread's 500 µs naps.
        assert!((64 << 10..=1 << 20).contains(&sndbuf), "{sndbuf}");
        // Without a communication thread the kernel's autotuning stays.
        assert!(unset_defaults(&[MPI_DEFAULTS], |_| false)
            .iter()
            .all(|(n, _)| *n != "OMPI_MCA_btl_tcp_sndbuf"));
        let mine = unset_defaults(&[MPI_DEFAULTS, OVERLAP_MPI_DEFAULTS], |n| {
            n == "OMPI_MCA_btl_tcp_sndbuf"
        });
        assert_eq!(mine, MPI_DEFAULTS.to_vec());
    }

    #[test]
    fn stall_reports_name_who_is_missing() {
        let joined = |c| answer(c, true);
        let stall = |agreeing, receiving| Stall {
            label: "all_reduce".into(),
            call: 812,
            agreeing,
            peer: Some(3),
            receiving,
            timeout: Duration::from_secs(60),
        };
        let answers = [joined(812), joined(812), joined(812), None];
        assert_eq!(
            stall(true, true).message(&answers),
            "rank 3 has not joined all_reduce #812 after 60 s"
        );
        let answers = [joined(812), None, answer(811, false), None];
        assert_eq!(
            stall(true, true).message(&answers),
            "ranks 1-3 have not joined all_reduce #812 after 60 s (rank 2 is in all_reduce #811)"
        );
        let answers = [joined(812), joined(812), joined(812), joined(812)];
        assert_eq!(
            stall(true, true).message(&answers),
            "all_reduce #812 made no progress for 60 s although every rank has joined it"
        );
        let answers = [answer(812, false), answer(812, false), None, None];
        assert_eq!(
            stall(false, true).message(&answers),
            "all_reduce #812: no message from rank 3 for 60 s; not responding: ranks 2, 3"
        );
        let mut half = stall(false, false);
        half.timeout = Duration::from_millis(2500);
        let all = [
            answer(812, false),
            answer(812, false),
            answer(812, false),
            answer(812, false),
        ];
        assert_eq!(
            half.message(&all),
            "all_reduce #812: rank 3 has not accepted a message for 2.5 s"
        );
        // A rank already in a later call has finished this one: not named.
        let answers = [
            joined(812),
            Some(Answer {
                call: 813,
                ..joined(812).unwrap()
            }),
            None,
        ];
        assert_eq!(
            stall(true, true).message(&answers),
            "rank 2 has not joined all_reduce #812 after 60 s"
        );
        let mut any = stall(false, true);
        any.peer = None;
        any.label = "recv_any".into();
        assert_eq!(
            any.message(&all),
            "recv_any #812: no message from any rank for 60 s"
        );
    }

    #[test]
    fn stall_reports_name_the_hosts_of_the_ranks_they_blame() {
        let hosts: Vec<String> = ["h1", "h2", "h3", "h3"].map(String::from).to_vec();
        let stall = |agreeing, peer| Stall {
            label: "all_reduce".into(),
            call: 812,
            agreeing,
            peer,
            receiving: true,
            timeout: Duration::from_secs(60),
        };
        let on = |s: Stall, answers: &[Option<Answer>]| on_hosts(&s.blamed(answers), &hosts);
        let joined = |c| answer(c, true);
        // Not joined: ranks 2 and 3, both on h3.
        let answers = [joined(812), joined(812), None, answer(811, false)];
        assert_eq!(on(stall(true, Some(2)), &answers), "; on host h3");
        // Not responding: ranks 1 and 2.
        let answers = [answer(812, false), None, None, answer(812, false)];
        assert_eq!(on(stall(false, Some(3)), &answers), "; on hosts h2, h3");
        // Everyone answered: the peer awaited.
        let all = [joined(812), joined(812), joined(812), joined(812)].map(|_| answer(812, false));
        assert_eq!(on(stall(false, Some(1)), &all), "; on host h2");
        assert_eq!(on(stall(false, None), &all), "");
        // Every rank joined an agreement that made no progress: no one.
        let joined_all = [joined(812), joined(812), joined(812), joined(812)];
        assert_eq!(on(stall(true, Some(1)), &joined_all), "");
        assert_eq!(on_hosts(&[5], &hosts), "");
    }

    #[test]
    fn census_replies_round_trip() {
        let p = Progress::default();
        p.begin("broadcast", 77);
        p.set_agreeing(true);
        assert_eq!(
            Answer::from_reply(&reply(&p)),
            Answer {
                label: "broadcast".into(),
                call: 77,
                agreeing: true
            }
        );
    }
}
