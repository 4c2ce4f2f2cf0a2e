//! Non-blocking all-reduce over MPI: a communication thread per rank.
//!
//! Open MPI moves no message between MPI calls (`ompi_info`: "OMPI
//! progress: no"), so a collective started and left alone does not advance
//! while the caller computes. [`Group::overlapped`] therefore starts one
//! thread per rank that owns its own [`Group`] over a private duplicate of
//! the communicator and runs the collectives handed to it, one after the
//! other in the order they were started — the same order on every rank,
//! as for blocking calls. [`Overlapped::all_reduce_start`] moves the buffer
//! into the thread and returns a [`Pending`]; [`Pending::wait`] hands it
//! back reduced, [`Pending::test`] asks without blocking. Several calls may
//! be pending at once; they complete in the order they were started.
//!
//! The thread's group has the caller's settings, so the call checks and
//! stall reports work as for any call (its calls are numbered from 1).
//! Its waits sleep 500 µs between polls once a wait has not progressed
//! for 50 µs ([`Mpi::napping`]), so they do not take the cores the
//! caller computes on.
//! MPI must have been initialised at `MPI_THREAD_MULTIPLE`
//! (`ringreduce::mpi::initialize_with_threading(Threading::Multiple)`):
//! the caller's thread and the communication thread call MPI at once.

use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Group, Settings};
use crate::algorithms::Algorithm;
use crate::compress::Wire;
use crate::element::{Element, ReduceOp};
use crate::error::{Error, Result};
use crate::transport::{Mpi, ThreadDuplicate, Transport};

/// How long the communication thread sleeps between polls of a wait that
/// is not progressing, leaving the cores to the caller's computation.
const NAP: Duration = Duration::from_micros(500);

/// Niceness the communication thread asks for: when it wakes to move the
/// next piece of a message it should not wait behind the computing
/// threads for a core, or the link idles. Lowering niceness needs
/// privileges (CAP_SYS_NICE or root); without them the thread keeps the
/// process's.
const NICE: i32 = -10;

/// Gives the calling thread niceness [`NICE`] where permitted.
fn prioritise() {
    // SAFETY: gettid and setpriority take plain integers and touch no
    // memory of ours; a refusal is an error return, ignored.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICE);
    }
}

/// One collective for the communication thread.
type Job = Box<dyn FnOnce(&Group<Mpi>) + Send>;

/// A rank's communication thread (see the module docs). Dropping it lets
/// the pending calls finish and joins the thread; drop it before the MPI
/// `Universe`.
pub struct Overlapped {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    rank: usize,
}

/// An all-reduce started with [`Overlapped::all_reduce_start`].
#[must_use = "a pending all-reduce hands its buffer back through wait()"]
pub struct Pending<T> {
    done: Receiver<Finished<T>>,
    ready: Option<Finished<T>>,
}

/// A call's outcome, when the communication thread began it and how long
/// it worked on it.
type Finished<T> = (Result<Vec<T>>, Instant, Duration);

impl<C: Transport> Group<C> {
    /// This rank's communication thread, when the transport can hand its
    /// communicator to one ([`Transport::thread_duplicate`]): for callers
    /// that overlap communication with computation (the trainer's gradient
    /// buckets). `None`: the transport has none, and such callers run their
    /// calls in place; `Some(Err)`: it has one but cannot start it (MPI not
    /// initialised at `MPI_THREAD_MULTIPLE`). Collective.
    pub fn comm_thread(&self) -> Option<Result<Overlapped>> {
        let dup = self.transport().thread_duplicate()?;
        Some(dup.and_then(|dup| Overlapped::start(dup, self.settings(), self.rank())))
    }
}

impl Group<Mpi> {
    /// Starts this rank's communication thread, with a group of its own
    /// over a duplicate of this group's communicator and this group's
    /// settings. Collective.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when MPI was not initialised at
    /// `MPI_THREAD_MULTIPLE` (the same on every rank).
    ///
    /// # Examples
    /// ```no_run
    /// use ringreduce::{Algorithm, Group, ReduceOp};
    /// use ringreduce::mpi::Threading;
    /// let (universe, _) = ringreduce::mpi::initialize_with_threading(Threading::Multiple).unwrap();
    /// let group = Group::mpi(&universe.world())?;
    /// let overlap = group.overlapped()?;
    /// let pending = overlap.all_reduce_start(vec![1.0f32; 1 << 20], ReduceOp::Sum, Algorithm::Ring);
    /// // … compute while the all-reduce runs …
    /// let summed = pending.wait()?;
    /// # Ok::<(), ringreduce::Error>(())
    /// ```
    pub fn overlapped(&self) -> Result<Overlapped> {
        Overlapped::start(self.transport().for_thread()?, self.settings(), self.rank())
    }
}

impl Overlapped {
    /// Starts the communication thread of rank `rank`: it opens `dup` as
    /// its own transport and a group over it with `settings`, while the
    /// caller — whose transport `dup` came from — waits. Collective.
    fn start(dup: ThreadDuplicate, settings: Settings, rank: usize) -> Result<Overlapped> {
        let (jobs, inbox) = channel::<Job>();
        let (started, up) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ringreduce-comm".into())
            .spawn(move || {
                prioritise();
                // SAFETY: the caller's group holds the transport `dup` came
                // from and waits on `up` below, calling nothing on it, until
                // the duplicate is made.
                let transport = unsafe { dup.open() };
                let group = Group::with_settings(transport.napping(NAP), settings);
                let _ = started.send(());
                for job in inbox {
                    job(&group);
                }
            })
            .map_err(|e| Error::InvalidArgument {
                what: "overlapped",
                reason: format!("the communication thread could not start: {e}"),
            })?;
        // The thread duplicates the communicator (collective on it) while
        // this thread waits: the two never call it at once.
        up.recv().map_err(|_| Error::Transport {
            rank,
            reason: "the communication thread stopped while starting".into(),
        })?;
        Ok(Overlapped {
            jobs: Some(jobs),
            thread: Some(thread),
            rank,
        })
    }

    /// Starts an all-reduce of `buf` with `op` by `algorithm` (any, as
    /// [`Group::all_reduce_in_place`]) on the communication thread; the
    /// buffer comes back from [`Pending::wait`]. Every rank must start the
    /// same calls in the same order.
    pub fn all_reduce_start<T: Element + Send + 'static>(
        &self,
        buf: Vec<T>,
        op: ReduceOp,
        algorithm: Algorithm,
    ) -> Pending<T> {
        self.start_call(buf, move |g, buf| g.all_reduce_in_place(buf, op, algorithm))
    }

    /// [`Group::all_reduce_wire`] on the communication thread: `buf`
    /// all-reduced through the ring with 16-bit floats on the wire, f32
    /// accumulation; as [`Overlapped::all_reduce_start`] otherwise.
    pub fn all_reduce_wire_start(&self, buf: Vec<f32>, op: ReduceOp, wire: Wire) -> Pending<f32> {
        self.start_call(buf, move |g, buf| g.all_reduce_wire(buf, op, wire))
    }

    /// Queues `call` on `buf` for the communication thread.
    fn start_call<T: Send + 'static>(
        &self,
        mut buf: Vec<T>,
        call: impl FnOnce(&Group<Mpi>, &mut [T]) -> Result<()> + Send + 'static,
    ) -> Pending<T> {
        let (tx, done) = channel();
        let job: Job = Box::new(move |g: &Group<Mpi>| {
            let began = Instant::now();
            let result = call(g, &mut buf).map(|()| buf);
            let _ = tx.send((result, began, began.elapsed()));
        });
        let ready = match self.jobs.as_ref().map(|j| j.send(job)) {
            Some(Ok(())) => None,
            _ => Some((Err(self.gone()), Instant::now(), Duration::ZERO)),
        };
        Pending { done, ready }
    }

    fn gone(&self) -> Error {
        Error::Transport {
            rank: self.rank,
            reason: "the communication thread has stopped".into(),
        }
    }
}

impl Drop for Overlapped {
    fn drop(&mut self) {
        drop(self.jobs.take()); // the thread ends after the calls queued
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<T> Pending<T> {
    /// Blocks until the all-reduce has completed; returns the reduced buffer.
    ///
    /// # Errors
    /// The all-reduce's error, or [`Error::Transport`] when the
    /// communication thread stopped.
    pub fn wait(self) -> Result<Vec<T>> {
        self.wait_timed().0
    }

    /// [`wait`](Pending::wait), with the time the communication thread
    /// spent on the call (from its start there, after the calls queued
    /// before it, to its end).
    pub fn wait_timed(self) -> (Result<Vec<T>>, Duration) {
        let (r, _, took) = self.wait_span();
        (r, took)
    }

    /// [`wait_timed`](Pending::wait_timed), with when the communication
    /// thread began the call.
    pub fn wait_span(self) -> (Result<Vec<T>>, Instant, Duration) {
        if let Some(r) = self.ready {
            return r;
        }
        self.done.recv().unwrap_or_else(|_| {
            let gone = Error::Transport {
                rank: usize::MAX,
                reason: "the communication thread stopped before the all-reduce completed".into(),
            };
            (Err(gone), Instant::now(), Duration::ZERO)
        })
    }

    /// Whether the all-reduce has completed (then [`wait`](Pending::wait)
    /// returns at once). Does not block.
    pub fn test(&mut self) -> bool {
        if self.ready.is_some() {
            return true;
        }
        match self.done.try_recv() {
            Ok(r) => {
                self.ready = Some(r);
                true
            }
            Err(TryRecvError::Empty) => false,
            Err(TryRecvError::Disconnected) => true, // wait() reports it
        }
    }
}
