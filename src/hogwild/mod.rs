//! Hogwild!: lock-free shared-memory SGD on sparse problems (Niu, Recht,
//! Ré, Wright, "HOGWILD!: A Lock-Free Approach to Parallelizing Stochastic
//! Gradient Descent", NeurIPS 2011; the conflict-graph bound of
//! [`diagnostics`] is Mania et al.'s, 2017), soundly in Rust.
//!
//! Threads share one parameter vector, a [`Store`] of relaxed atomics (no
//! lock, no data race, the same instructions as plain `f32` accesses), and
//! update it without waiting for each other. On sparse problems — each
//! example touching few coordinates ([`Diagnostics`]: Ω, Δ, ρ and the
//! conflict graph's degree) — updates rarely collide and the speed-up is
//! near-linear.
//!
//! - [`Problem`]s: [`SparseLinear`] (the sparse SVM with [`Loss::Hinge`], logistic
//!   regression with [`Loss::Logistic`]) over a [`SparseSet`] (CSR rows, a
//!   libsvm loader and a power-law generator in [`libsvm`]), and low-rank
//!   matrix [`Completion`] over [`Ratings`];
//! - [`ThreadSchedule`]s on the same store and data: serial SGD, Hogwild!, its
//!   random-coordinate variant, a global mutex, per-coordinate locks, and
//!   round-robin turns;
//! - an epoch barrier between epochs, where the step size decays by β and
//!   the run is evaluated; each update is checked for *conflicts* (a
//!   coordinate another thread wrote between this update's read and its
//!   write), and one update in [`LOST_SAMPLE`] writes with a
//!   compare-and-swap to count the updates a lossy write would lose;
//! - the hybrid: [`run_on`] a [`Group`], each rank runs its threads on its
//!   share of the examples and the ranks average their parameters
//!   ([`Config::rounds`] times an epoch) with one all-reduce.
//!
//! ```
//! use ringreduce::hogwild::{self, libsvm, Config, SparseLinear, Loss, Problem, ThreadSchedule, Store};
//! let data = libsvm::synthetic(2000, 500, 10, 1.0, 0.0, 7);
//! let svm = SparseLinear::new(data, Loss::Hinge, 1e-4).unwrap();
//! let w = Store::from_slice(&svm.init(1));
//! let cfg = Config { schedule: ThreadSchedule::Hogwild, threads: 2, epochs: 5, ..Config::default() };
//! let epochs = hogwild::run(&svm, None, &w, &cfg, |_| {}).unwrap();
//! assert!(epochs.last().unwrap().train_accuracy.unwrap() > 0.9);
//! ```

// The store and everything racing on it are safe code: the compiler
// refuses an `unsafe` block anywhere in this module.
#![forbid(unsafe_code)]

pub mod diagnostics;
pub mod libsvm;
pub mod models;
pub mod store;
#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use self::diagnostics::Diagnostics;
pub use self::libsvm::SparseSet;
pub use self::models::{Completion, Loss, Problem, Ratings, SparseLinear};
pub use self::store::{Store, Weights};

use crate::algorithms::Algorithm;
use crate::element::ReduceOp;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::transport::{LocalEndpoint, Transport};

/// One update in this many (per thread) writes with a compare-and-swap, to
/// count how many lossy writes lose another thread's update.
pub const LOST_SAMPLE: u64 = 16;

/// How the threads share the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreadSchedule {
    /// One thread: plain SGD on the store (the baseline).
    Serial,
    /// Hogwild! (Niu et al. 2011, Algorithm 1, as in their experiments):
    /// the threads take the epoch's shuffle without replacement (claiming
    /// [`CHUNK`] examples at a time), each update writing the example's
    /// whole support, no locks.
    Hogwild,
    /// The analysed variant (the update Niu et al. 2011 prove their rates
    /// for): each update writes one coordinate of the support, drawn
    /// uniformly, with the step scaled by the support's size.
    Coordinate,
    /// One global lock around each update (read, gradient, write).
    Mutex,
    /// A lock per coordinate (striped when there are more than
    /// [`MAX_STRIPES`]): each update locks its support's coordinates in
    /// order ("AIG" in the paper).
    Striped,
    /// Round-robin: gradients computed in parallel, writes in a fixed turn
    /// order of the threads (the paper's RR, as Vowpal Wabbit did).
    RoundRobin,
}

/// Most combinations across ranks per epoch ([`Config::rounds`]): every
/// round costs each thread two barrier waits.
pub const MAX_ROUNDS: usize = 1 << 16;

/// Examples a thread claims at a time from the round's segment (every
/// schedule but [`ThreadSchedule::RoundRobin`], whose turns follow a fixed
/// partition).
pub const CHUNK: usize = 64;

/// Most locks [`ThreadSchedule::Striped`] keeps (coordinate u takes lock u mod this).
pub const MAX_STRIPES: usize = 1 << 20;

impl ThreadSchedule {
    /// Every schedule.
    pub const ALL: [ThreadSchedule; 6] = [
        ThreadSchedule::Serial,
        ThreadSchedule::Hogwild,
        ThreadSchedule::Coordinate,
        ThreadSchedule::Mutex,
        ThreadSchedule::Striped,
        ThreadSchedule::RoundRobin,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            ThreadSchedule::Serial => "serial",
            ThreadSchedule::Hogwild => "hogwild",
            ThreadSchedule::Coordinate => "coordinate",
            ThreadSchedule::Mutex => "mutex",
            ThreadSchedule::Striped => "striped",
            ThreadSchedule::RoundRobin => "roundrobin",
        }
    }
}

impl std::fmt::Display for ThreadSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ThreadSchedule {
    type Err = Error;

    fn from_str(s: &str) -> Result<ThreadSchedule> {
        let t = s.trim().to_ascii_lowercase();
        ThreadSchedule::ALL
            .into_iter()
            .find(|x| x.name() == t || (t == "round-robin" && *x == ThreadSchedule::RoundRobin))
            .ok_or_else(|| Error::UnknownName {
                kind: "schedule",
                name: s.to_string(),
                expected: ThreadSchedule::ALL.map(|x| x.name()).join(", "),
            })
    }
}

/// How a lock-free update writes a coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Update {
    /// Load, subtract, store: a write between another thread's load and
    /// store is lost (Hogwild!'s own code).
    Lossy,
    /// An atomic compare-and-swap loop: nothing is lost.
    Exact,
}

/// The settings of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// How the threads share the store.
    pub schedule: ThreadSchedule,
    /// Threads per rank (1 for [`ThreadSchedule::Serial`]).
    pub threads: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// Step size of the first epoch (η).
    pub step: f32,
    /// The step size is multiplied by this after every epoch (the paper's β).
    pub decay: f32,
    /// How lock-free writes are made.
    pub update: Update,
    /// Seed of the epochs' shuffles and the coordinate draws.
    pub seed: u64,
    /// Parameter averagings across ranks per epoch (the hybrid; ignored on
    /// one rank). The last of an epoch ends it, so every rank evaluates the
    /// same parameters.
    pub rounds: usize,
    /// The all-reduce of the averaging.
    pub algorithm: Algorithm,
    /// Stop after the first epoch whose training objective is at most this.
    pub target: Option<f64>,
    /// How the ranks' stores are combined.
    pub combine: Combine,
}

/// How the hybrid combines the ranks' stores at an averaging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Combine {
    /// The mean of the ranks' parameters (local SGD's model averaging): each
    /// rank's progress counts 1/p, so an epoch of p ranks moves about as
    /// far as 1/p of a serial epoch.
    Average,
    /// The sum of the ranks' changes since the last combination, added to
    /// the common starting point: what one shared store would hold had the
    /// ranks' updates not overlapped — Hogwild! across ranks, right when
    /// the problem is sparse. Same bytes as [`Combine::Average`].
    Sum,
}

impl FromStr for Combine {
    type Err = Error;

    fn from_str(s: &str) -> Result<Combine> {
        match s.trim().to_ascii_lowercase().as_str() {
            "average" | "avg" => Ok(Combine::Average),
            "sum" => Ok(Combine::Sum),
            _ => Err(Error::UnknownName {
                kind: "combination",
                name: s.to_string(),
                expected: "average, sum".into(),
            }),
        }
    }
}

impl std::fmt::Display for Combine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Combine::Average => "average",
            Combine::Sum => "sum",
        })
    }
}

impl Default for Config {
    /// Hogwild! on 2 threads, 20 epochs, η = 0.5, β = 0.9 (the paper's),
    /// lossy writes, one averaging per epoch with the ring.
    fn default() -> Self {
        Config {
            schedule: ThreadSchedule::Hogwild,
            threads: 2,
            epochs: 20,
            step: 0.5,
            decay: 0.9,
            update: Update::Lossy,
            seed: 42,
            rounds: 1,
            algorithm: Algorithm::Ring,
            target: None,
            combine: Combine::Average,
        }
    }
}

impl Config {
    /// Checks the settings against a problem of `dim` parameters held in a
    /// store of `store_len`.
    ///
    /// # Errors
    /// A zero thread, epoch or round count, a step that is not a positive
    /// number, a decay outside (0, 1], more than one thread for the serial
    /// schedule, or a store of another length than the problem's.
    pub fn check(&self, dim: usize, store_len: usize) -> Result<()> {
        let bad = |what: &'static str, reason: String| Err(Error::InvalidArgument { what, reason });
        if self.threads == 0 {
            return bad("threads", "at least 1 thread".into());
        }
        if self.schedule == ThreadSchedule::Serial && self.threads != 1 {
            return bad(
                "threads",
                format!("the serial schedule runs 1 thread, not {}", self.threads),
            );
        }
        if self.epochs == 0 {
            return bad("epochs", "at least 1 epoch".into());
        }
        if !(self.step > 0.0 && self.step.is_finite()) {
            return bad("step size", format!("{} is not a positive number", self.step));
        }
        if !(self.decay > 0.0 && self.decay <= 1.0) {
            return bad("decay", format!("{} is not in (0, 1]", self.decay));
        }
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return bad(
                "rounds",
                format!("1 to {MAX_ROUNDS} combinations per epoch, not {}", self.rounds),
            );
        }
        if dim != store_len {
            return bad(
                "store",
                format!("the problem has {dim} parameters, the store {store_len}"),
            );
        }
        Ok(())
    }

    /// Threads that actually run.
    pub fn thread_count(&self) -> usize {
        if self.schedule == ThreadSchedule::Serial {
            1
        } else {
            self.threads
        }
    }
}

/// What happened in one epoch (on a group: summed over the ranks, times the
/// slowest rank's).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// Epoch, from 1.
    pub epoch: usize,
    /// The step size used.
    pub step: f32,
    /// Seconds of this epoch's updates and averagings (evaluation excluded).
    pub epoch_secs: f64,
    /// Seconds of training so far.
    pub wall_secs: f64,
    /// Mean f_e over the training examples after the epoch.
    pub objective: f64,
    /// Training accuracy (classifiers).
    pub train_accuracy: Option<f64>,
    /// Test accuracy (classifiers with a test set).
    pub test_accuracy: Option<f64>,
    /// Root-mean-square error on the training entries (matrix completion).
    pub train_rmse: Option<f64>,
    /// Root-mean-square error on the held-out entries.
    pub test_rmse: Option<f64>,
    /// Updates made.
    pub updates: u64,
    /// Coordinates written.
    pub writes: u64,
    /// Updates that found a coordinate changed between their read and
    /// their write (another thread wrote it meanwhile).
    pub conflicts: u64,
    /// Coordinates so found.
    pub conflicting_writes: u64,
    /// Lossy writes checked with a compare-and-swap (one update in [`LOST_SAMPLE`]).
    pub lost_checked: u64,
    /// Of those, the ones that would have lost another thread's write.
    pub lost: u64,
    /// Bytes this rank has sent averaging parameters so far (exact cost model).
    pub averaging_bytes: u64,
    /// Averagings so far.
    pub averagings: u64,
}

impl EpochReport {
    /// Updates per second of training time.
    pub fn updates_per_sec(&self) -> f64 {
        self.updates as f64 / self.epoch_secs.max(1e-12)
    }

    /// Share of updates that met a conflict.
    pub fn conflict_rate(&self) -> f64 {
        ratio(self.conflicts, self.updates)
    }

    /// Share of sampled writes that would have lost an update.
    pub fn lost_rate(&self) -> f64 {
        ratio(self.lost, self.lost_checked)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// One serial pass of SGD over `examples` on any [`Weights`] (the store, or
/// a single thread's plain `[Cell<f32>]`): the kernel of every schedule,
/// without the bookkeeping — what the store's benchmark times.
pub fn serial_pass<P: Problem, W: Weights + ?Sized>(problem: &P, w: &W, examples: &[u32], step: f32) {
    let (mut support, mut read, mut grad) = (Vec::new(), Vec::new(), Vec::new());
    for &e in examples {
        problem.support(e as usize, &mut support);
        problem.gradient(w, e as usize, &support, &mut read, &mut grad);
        for (&j, &g) in support.iter().zip(&grad) {
            w.add(j as usize, -step * g);
        }
    }
}

/// Runs `cfg` on `problem` in this process: its threads update `store`
/// (which holds the starting point, e.g. `problem.init(seed)`).
/// `on_epoch` sees each epoch's report as it ends.
///
/// # Errors
/// Invalid settings ([`Config::check`]); a non-finite objective
/// ([`Error::NonFinite`]).
pub fn run<P: Problem>(
    problem: &P,
    test: Option<&P>,
    store: &Store,
    cfg: &Config,
    on_epoch: impl FnMut(&EpochReport),
) -> Result<Vec<EpochReport>> {
    drive::<P, LocalEndpoint>(None, problem, test, store, cfg, on_epoch)
}

/// The hybrid: [`run`] on every rank of `group`, each rank's threads on its
/// share of every epoch's shuffle, the ranks averaging their stores
/// [`Config::rounds`] times an epoch. Every rank must start from the same
/// store and load the same data; all return the same reports.
///
/// # Errors
/// As [`run`], on every rank (settings are checked collectively); a
/// transport failure or mismatch of the averaging.
pub fn run_on<P: Problem, C: Transport>(
    group: &Group<C>,
    problem: &P,
    test: Option<&P>,
    store: &Store,
    cfg: &Config,
    on_epoch: impl FnMut(&EpochReport),
) -> Result<Vec<EpochReport>> {
    drive(Some(group), problem, test, store, cfg, on_epoch)
}

/// What the threads share.
struct Shared {
    barrier: Gate,
    stop: AtomicBool,
    /// This epoch's shuffle of all examples.
    order: RwLock<Vec<u32>>,
    /// Global lock of [`ThreadSchedule::Mutex`].
    global: Mutex<()>,
    /// Locks of [`ThreadSchedule::Striped`].
    stripes: Vec<AtomicBool>,
    /// Next turn of [`ThreadSchedule::RoundRobin`].
    turn: AtomicUsize,
    /// Next unclaimed example of the round's segment: threads claim
    /// [`CHUNK`] at a time, so a thread slowed down (by another process on
    /// its core, say) leaves its work to the others instead of holding
    /// them all at the barrier.
    cursor: AtomicUsize,
    /// Every thread's counters of the epoch.
    counters: Mutex<Counters>,
}

/// Per-thread counts of an epoch.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    updates: u64,
    writes: u64,
    conflicts: u64,
    conflicting: u64,
    lost_checked: u64,
    lost: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.updates += o.updates;
        self.writes += o.writes;
        self.conflicts += o.conflicts;
        self.conflicting += o.conflicting;
        self.lost_checked += o.lost_checked;
        self.lost += o.lost;
    }

    fn to_array(self) -> [i64; 6] {
        [
            self.updates,
            self.writes,
            self.conflicts,
            self.conflicting,
            self.lost_checked,
            self.lost,
        ]
        .map(|v| v as i64)
    }

    fn from_array(a: [i64; 6]) -> Counters {
        let a = a.map(|v| v.max(0) as u64);
        Counters {
            updates: a[0],
            writes: a[1],
            conflicts: a[2],
            conflicting: a[3],
            lost_checked: a[4],
            lost: a[5],
        }
    }
}

/// The part `t` of `k` of `items`.
fn part<T>(items: &[T], t: usize, k: usize) -> &[T] {
    let n = items.len();
    &items[t * n / k..(t + 1) * n / k]
}

/// Spins (then yields) until `done()`, or until `gate` is broken (a thread
/// panicked: what follows no longer matters).
fn wait_until(gate: &Gate, done: impl Fn() -> bool) {
    loop {
        for _ in 0..64 {
            if done() {
                return;
            }
            std::hint::spin_loop();
        }
        if gate.is_broken() {
            return;
        }
        std::thread::yield_now();
    }
}

fn drive<P: Problem, C: Transport>(
    group: Option<&Group<C>>,
    problem: &P,
    test: Option<&P>,
    store: &Store,
    cfg: &Config,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<Vec<EpochReport>> {
    let checked = cfg.check(problem.dim(), store.len());
    match group {
        Some(g) => g.agree(checked)?,
        None => checked?,
    }
    let ranks = group.map_or(1, |g| g.size());
    if let Some(g) = group.filter(|_| ranks > 1) {
        // Every rank must hold the same problem: the shares of an epoch are
        // cut from one count of examples.
        let (n, d) = (problem.examples() as i64, problem.dim() as i64);
        let mut span = [n, -n, d, -d];
        g.all_reduce_in_place(&mut span, ReduceOp::Max, Algorithm::Auto)?;
        if span[0] != -span[1] || span[2] != -span[3] {
            return Err(Error::InvalidArgument {
                what: "hybrid",
                reason: format!(
                    "the ranks hold different problems: {} to {} examples, {} to {} parameters",
                    -span[1], span[0], -span[3], span[2]
                ),
            });
        }
    }
    // Rounds split an epoch for the combinations across ranks: one rank
    // needs one.
    let one_rank;
    let cfg = if ranks > 1 {
        cfg
    } else {
        one_rank = Config {
            rounds: 1,
            ..cfg.clone()
        };
        &one_rank
    };
    let threads = cfg.thread_count();
    let stripes = match cfg.schedule {
        ThreadSchedule::Striped => problem.dim().clamp(1, MAX_STRIPES),
        _ => 0,
    };
    let shared = Shared {
        barrier: Gate::new(threads),
        stop: AtomicBool::new(false),
        order: RwLock::new(Vec::new()),
        global: Mutex::new(()),
        stripes: (0..stripes).map(|_| AtomicBool::new(false)).collect(),
        turn: AtomicUsize::new(0),
        cursor: AtomicUsize::new(0),
        counters: Mutex::new(Counters::default()),
    };
    let place = group.map(|g| (g.rank(), g.size()));
    // A thread that panics breaks the barrier on its way out, so the others
    // stop instead of waiting for it; the scope then passes the panic on.
    std::thread::scope(|s| {
        for t in 1..threads {
            let shared = &shared;
            let spawned = std::thread::Builder::new()
                .name(format!("hogwild-{t}"))
                .spawn_scoped(s, move || {
                    let _guard = BreakOnPanic(&shared.barrier);
                    worker(shared, problem, store, cfg, place, t)
                });
            if let Err(e) = spawned {
                shared.barrier.break_all();
                return Err(Error::InvalidArgument {
                    what: "threads",
                    reason: format!("cannot start thread {t} of {threads}: {e}"),
                });
            }
        }
        let _guard = BreakOnPanic(&shared.barrier);
        leader(&shared, group, problem, test, store, cfg, &mut on_epoch)
    })
}

/// A reusable barrier for `n` threads that can be broken: then every wait,
/// present and future, returns `false` at once.
struct Gate {
    n: usize,
    /// Arrived this generation, the generation, broken.
    state: Mutex<(usize, u64, bool)>,
    wake: Condvar,
    broken: AtomicBool,
}

impl Gate {
    fn new(n: usize) -> Gate {
        Gate {
            n,
            state: Mutex::new((0, 0, false)),
            wake: Condvar::new(),
            broken: AtomicBool::new(false),
        }
    }

    /// Waits for all `n` threads; `false` when the gate is broken.
    fn wait(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.2 {
            return false;
        }
        let generation = s.1;
        s.0 += 1;
        if s.0 == self.n {
            s.0 = 0;
            s.1 += 1;
            self.wake.notify_all();
            return true;
        }
        while s.1 == generation && !s.2 {
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.1 != generation
    }

    /// Breaks the gate: every waiter returns `false`.
    fn break_all(&self) {
        self.broken.store(true, Ordering::Release);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.2 = true;
        self.wake.notify_all();
    }

    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }
}

/// Breaks the gate when its thread unwinds from a panic.
struct BreakOnPanic<'a>(&'a Gate);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.break_all();
        }
    }
}

/// What the leader returns when another thread broke the gate (the scope
/// then re-raises that thread's panic).
fn broken() -> Error {
    Error::InvalidArgument {
        what: "hogwild",
        reason: "a thread panicked".into(),
    }
}

/// Thread 0 (the calling thread): prepares each epoch, works as the others,
/// averages across ranks and evaluates.
fn leader<P: Problem, C: Transport>(
    shared: &Shared,
    group: Option<&Group<C>>,
    problem: &P,
    test: Option<&P>,
    store: &Store,
    cfg: &Config,
    on_epoch: &mut impl FnMut(&EpochReport),
) -> Result<Vec<EpochReport>> {
    let place = group.map(|g| (g.rank(), g.size()));
    let ranks = place.map_or(1, |p| p.1);
    let n = problem.examples();
    let mut reports: Vec<EpochReport> = Vec::new();
    let mut failed: Option<Error> = None;
    let (mut wall, mut bytes, mut averagings) = (0.0f64, 0u64, 0u64);
    let mut local = ThreadState::new(cfg, place, 0);
    let mut base = match cfg.combine {
        Combine::Sum if ranks > 1 => store.to_vec(),
        _ => Vec::new(),
    };
    for epoch in 1..=cfg.epochs {
        let done = cfg
            .target
            .zip(reports.last())
            .is_some_and(|(t, r)| r.objective <= t);
        if failed.is_some() || done {
            shared.stop.store(true, Ordering::Relaxed);
        } else {
            let mut order: Vec<u32> = (0..n as u32).collect();
            let mut rng =
                ChaCha8Rng::seed_from_u64(cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
            *shared.order.write().unwrap_or_else(|p| p.into_inner()) = order;
            shared.turn.store(0, Ordering::Relaxed);
            shared.cursor.store(0, Ordering::Relaxed);
        }
        if !shared.barrier.wait() {
            return Err(broken()); // A: the epoch's order is ready
        }
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        let step = cfg.step * cfg.decay.powi(epoch as i32 - 1);
        for round in 0..cfg.rounds {
            local.round(shared, problem, store, epoch, round, step);
            if !shared.barrier.wait() {
                return Err(broken()); // B: every thread's round is written
            }
            // Nobody claims examples between B and C.
            shared.cursor.store(0, Ordering::Relaxed);
            if let (Some(g), None) = (group, &failed) {
                if ranks > 1 {
                    match combine(g, store, &mut base, cfg) {
                        Ok(b) => {
                            bytes += b;
                            averagings += 1;
                        }
                        Err(e) => failed = Some(e),
                    }
                }
            }
            if !shared.barrier.wait() {
                return Err(broken()); // C: the averaged store is in place
            }
        }
        let mut secs = started.elapsed().as_secs_f64();
        let mut counts = {
            let mut c = shared.counters.lock().unwrap_or_else(|p| p.into_inner());
            let mut mine = std::mem::take(&mut *c);
            mine.add(&local.counts);
            mine
        };
        local.counts = Counters::default();
        if failed.is_some() {
            continue;
        }
        if let Some(g) = group.filter(|_| ranks > 1) {
            let totals = (|| {
                let mut a = counts.to_array();
                g.all_reduce_in_place(&mut a, ReduceOp::Sum, Algorithm::Auto)?;
                let mut t = [secs];
                g.all_reduce_in_place(&mut t, ReduceOp::Max, Algorithm::Auto)?;
                Ok((Counters::from_array(a), t[0]))
            })();
            match totals {
                Ok((c, t)) => (counts, secs) = (c, t),
                Err(e) => {
                    failed = Some(e);
                    continue;
                }
            }
        }
        wall += secs;
        let w = store.to_vec();
        let ev = evaluate(problem, &w);
        let tv = test.map(|t| evaluate(t, &w));
        if !ev.objective.is_finite() {
            failed = Some(Error::NonFinite {
                what: "objective",
                epoch,
                step: counts.updates as usize,
                rank: None,
            });
            continue;
        }
        let report = EpochReport {
            epoch,
            step,
            epoch_secs: secs,
            wall_secs: wall,
            objective: ev.objective,
            train_accuracy: ev.accuracy,
            test_accuracy: tv.as_ref().and_then(|t| t.accuracy),
            train_rmse: ev.rmse,
            test_rmse: tv.as_ref().and_then(|t| t.rmse),
            updates: counts.updates,
            writes: counts.writes,
            conflicts: counts.conflicts,
            conflicting_writes: counts.conflicting,
            lost_checked: counts.lost_checked,
            lost: counts.lost,
            averaging_bytes: bytes,
            averagings,
        };
        on_epoch(&report);
        reports.push(report);
    }
    if !shared.stop.load(Ordering::Relaxed) {
        // Every epoch ran: release the workers waiting at the next epoch.
        shared.stop.store(true, Ordering::Relaxed);
        if !shared.barrier.wait() {
            return Err(broken());
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}

/// Threads 1.. : the rounds of every epoch until told to stop.
fn worker<P: Problem>(
    shared: &Shared,
    problem: &P,
    store: &Store,
    cfg: &Config,
    place: Option<(usize, usize)>,
    t: usize,
) {
    let mut local = ThreadState::new(cfg, place, t);
    for epoch in 1.. {
        if !shared.barrier.wait() || shared.stop.load(Ordering::Relaxed) {
            return; // A
        }
        let step = cfg.step * cfg.decay.powi(epoch as i32 - 1);
        for round in 0..cfg.rounds {
            local.round(shared, problem, store, epoch, round, step);
            // Counted before the barrier, so the leader's sum after it is whole.
            shared
                .counters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(&local.counts);
            local.counts = Counters::default();
            if !shared.barrier.wait() || !shared.barrier.wait() {
                return; // B, C
            }
        }
    }
}

/// Combines the stores of the ranks; the bytes this rank sent. `base`
/// holds the parameters of the last combination (for [`Combine::Sum`]).
fn combine<C: Transport>(g: &Group<C>, store: &Store, base: &mut [f32], cfg: &Config) -> Result<u64> {
    let mut w = store.to_vec();
    match cfg.combine {
        Combine::Average => g.all_reduce_in_place(&mut w, ReduceOp::Avg, cfg.algorithm)?,
        Combine::Sum => {
            for (x, b) in w.iter_mut().zip(base.iter()) {
                *x -= b;
            }
            g.all_reduce_in_place(&mut w, ReduceOp::Sum, cfg.algorithm)?;
            for (x, b) in w.iter_mut().zip(base.iter_mut()) {
                *x += *b;
                *b = *x;
            }
        }
    }
    store.copy_from(&w);
    let algorithm = cfg.algorithm;
    let concrete = g.resolve(algorithm, w.len(), 4);
    Ok(concrete
        .exact_cost(g.size(), w.len(), 4)
        .map_or(0, |c| c.bytes_sent))
}

struct Evaluation {
    objective: f64,
    accuracy: Option<f64>,
    rmse: Option<f64>,
}

fn evaluate<P: Problem + ?Sized>(problem: &P, w: &[f32]) -> Evaluation {
    let n = problem.examples();
    let (mut loss, mut right, mut classified, mut sq, mut regressed) = (0.0, 0usize, 0usize, 0.0, 0usize);
    for e in 0..n {
        loss += problem.loss(w, e);
        if let Some(c) = problem.correct(w, e) {
            classified += 1;
            right += c as usize;
        }
        if let Some(s) = problem.squared_error(w, e) {
            regressed += 1;
            sq += s;
        }
    }
    let n = n.max(1) as f64;
    Evaluation {
        objective: loss / n,
        accuracy: (classified > 0).then(|| right as f64 / classified as f64),
        rmse: (regressed > 0).then(|| (sq / regressed as f64).sqrt()),
    }
}

/// One thread's buffers, random draws and counts.
struct ThreadState {
    schedule: ThreadSchedule,
    exact: bool,
    threads: usize,
    rounds: usize,
    seed: u64,
    rank: usize,
    ranks: usize,
    t: usize,
    support: Vec<u32>,
    read: Vec<f32>,
    grad: Vec<f32>,
    locks: Vec<usize>,
    counts: Counters,
}

impl ThreadState {
    fn new(cfg: &Config, place: Option<(usize, usize)>, t: usize) -> ThreadState {
        let (rank, ranks) = place.unwrap_or((0, 1));
        ThreadState {
            schedule: cfg.schedule,
            exact: cfg.update == Update::Exact,
            threads: cfg.thread_count(),
            rounds: cfg.rounds,
            seed: cfg.seed,
            rank,
            ranks,
            t,
            support: Vec::new(),
            read: Vec::new(),
            grad: Vec::new(),
            locks: Vec::new(),
            counts: Counters::default(),
        }
    }

    /// This thread's examples of `round` of the epoch.
    fn round<P: Problem>(
        &mut self,
        shared: &Shared,
        problem: &P,
        store: &Store,
        epoch: usize,
        round: usize,
        step: f32,
    ) {
        let order = shared.order.read().unwrap_or_else(|p| p.into_inner());
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.seed
                ^ ((epoch * 1_000_003 + round) as u64).wrapping_mul(0xA24B_AED4_963E_E407)
                ^ ((self.rank * 4099 + self.t) as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25),
        );
        match self.schedule {
            ThreadSchedule::RoundRobin => {
                // Every thread takes the same number of turns a round: the
                // longest part's (a thread out of examples passes).
                let k = self.threads;
                let share = part(&order, self.rank, self.ranks).len();
                let turns = share.div_ceil(k).div_ceil(self.rounds);
                let base = round * turns * k;
                let mine = part(part(&order, self.rank, self.ranks), self.t, self.threads);
                let segment = part(mine, round, self.rounds);
                for i in 0..turns {
                    let e = segment.get(i).copied();
                    if let Some(e) = e {
                        problem.support(e as usize, &mut self.support);
                        problem.gradient(store, e as usize, &self.support, &mut self.read, &mut self.grad);
                    }
                    let my_turn = base + i * k + self.t;
                    wait_until(&shared.barrier, || shared.turn.load(Ordering::Acquire) == my_turn);
                    if e.is_some() {
                        self.write_all(store, step);
                    }
                    shared.turn.store(my_turn + 1, Ordering::Release);
                }
            }
            _ => {
                // The rank's share of the epoch, this round's part of it,
                // claimed in chunks: every example once, whichever thread.
                let segment = part(part(&order, self.rank, self.ranks), round, self.rounds);
                loop {
                    let from = shared.cursor.fetch_add(CHUNK, Ordering::Relaxed);
                    if from >= segment.len() {
                        break;
                    }
                    for &e in &segment[from..(from + CHUNK).min(segment.len())] {
                        self.update(shared, problem, store, e as usize, step, &mut rng);
                    }
                }
            }
        }
    }

    fn update<P: Problem>(
        &mut self,
        shared: &Shared,
        problem: &P,
        store: &Store,
        e: usize,
        step: f32,
        rng: &mut ChaCha8Rng,
    ) {
        problem.support(e, &mut self.support);
        match self.schedule {
            ThreadSchedule::Serial | ThreadSchedule::Hogwild => {
                problem.gradient(store, e, &self.support, &mut self.read, &mut self.grad);
                self.write_all(store, step);
            }
            ThreadSchedule::Coordinate => {
                problem.gradient(store, e, &self.support, &mut self.read, &mut self.grad);
                if !self.support.is_empty() {
                    let k = rng.gen_range(0..self.support.len());
                    let scale = self.support.len() as f32;
                    self.counts.updates += 1;
                    let hit = self.write(store, k, -step * scale * self.grad[k]);
                    self.counts.conflicts += hit as u64;
                }
            }
            ThreadSchedule::Mutex => {
                let _guard = shared.global.lock().unwrap_or_else(|p| p.into_inner());
                problem.gradient(store, e, &self.support, &mut self.read, &mut self.grad);
                self.write_all(store, step);
            }
            ThreadSchedule::Striped => {
                let stripes = shared.stripes.len();
                self.locks.clear();
                self.locks
                    .extend(self.support.iter().map(|&j| j as usize % stripes));
                self.locks.sort_unstable();
                self.locks.dedup();
                // In ascending order: no two threads wait on each other.
                for &l in &self.locks {
                    let lock = &shared.stripes[l];
                    wait_until(&shared.barrier, || {
                        lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                    });
                }
                problem.gradient(store, e, &self.support, &mut self.read, &mut self.grad);
                self.write_all(store, step);
                for &l in &self.locks {
                    shared.stripes[l].store(false, Ordering::Release);
                }
            }
            ThreadSchedule::RoundRobin => unreachable!("round-robin runs its own loop"),
        }
    }

    /// Writes the whole gradient: one update.
    fn write_all(&mut self, store: &Store, step: f32) {
        self.counts.updates += 1;
        let mut hit = false;
        for k in 0..self.support.len() {
            hit |= self.write(store, k, -step * self.grad[k]);
        }
        self.counts.conflicts += hit as u64;
    }

    /// Adds `delta` to the support's k-th coordinate; whether another
    /// thread had written it since this update read it.
    fn write(&mut self, store: &Store, k: usize, delta: f32) -> bool {
        let j = self.support[k] as usize;
        self.counts.writes += 1;
        let before = if self.exact {
            store.add_exact(j, delta)
        } else {
            let now = store.load(j);
            let new = now + delta;
            if self.counts.updates.is_multiple_of(LOST_SAMPLE) {
                self.counts.lost_checked += 1;
                if !store.replace(j, now, new) {
                    // A write landed between the load and here: the lossy
                    // store below loses it, as the plain update would.
                    self.counts.lost += 1;
                    store.store(j, new);
                }
            } else {
                store.store(j, new);
            }
            now
        };
        let hit = before.to_bits() != self.read[k].to_bits();
        self.counts.conflicting += hit as u64;
        hit
    }
}
