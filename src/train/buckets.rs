//! Gradient buckets: the gradient's all-reduce cut into pieces that start
//! while the backward pass is still running, as PyTorch DDP's reducer and
//! Horovod's tensor fusion do.
//!
//! The backward pass reports each layer's finished gradient
//! ([`Model::loss_and_grad_layered`](super::Model::loss_and_grad_layered),
//! last layer first). Consecutive layers are gathered, in that order, into
//! buckets of at least the configured size ([`cut`]: a bucket closes when it
//! reaches the cap, so one may exceed it, as in DDP); a bucket's all-reduce
//! starts on the communication thread ([`Overlapped`]) as soon as its last
//! layer is in, and the optimizer runs once every bucket is back.
//!
//! **Same arithmetic.** A bucket holds the same scaled values the whole
//! buffer would, and is averaged by the same algorithm: for the algorithms
//! whose reduction of an element does not depend on where the element sits
//! in the buffer ([`position_free`]: butterfly, Rabenseifner, naive,
//! central, shm; every algorithm at 2 ranks) the bucketed trainer's
//! parameters equal the unbucketed trainer's bit for bit. The ring (and
//! its pipelined and hierarchical forms) sums each chunk starting at a
//! different rank, so at 3 or more ranks cutting the buffer differently
//! changes the order of the sum for some elements: the result then
//! differs in the last bits (every rank still holds the same bits).
//!
//! `auto` buckets only with such algorithms (at 3 or more ranks with the
//! ring it stays off and says why): a cut chosen from timings must not
//! decide a run's bits. A given size cuts the same way every run.
//!
//! **The size** (`auto`): the first [`WARMUP`] steps run without buckets
//! and (after [`COLD`] untimed ones) time the pass (when each layer's gradient was ready, when the pass
//! ended) and the all-reduce of the whole gradient; then a few small
//! all-reduces give the start-up cost. From the two sizes a line
//! `rounds·α + bytes·β` is fitted to the algorithm's exact cost model
//! ([`crate::cost::cost`]); every candidate cap (powers of two from
//! 64 KiB) is then replayed on the measured timeline — bucket k starts
//! when it is ready and the previous one is done — and the cap with the
//! shortest predicted step wins. Every rank takes the mean of the ranks'
//! medians, so all choose the same. The model does not know what running
//! communication beside computation costs the computation (on shared
//! cores: the communication thread's copies and the kernel's network
//! work), so `auto` then runs [`TRIAL`] steps with the chosen cut and keeps
//! it only when their median beats the warm-up's.

use std::ops::Range;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::algorithms::Algorithm;
use crate::compress::{wire_cost, CodecTimes, Wire};
use crate::cost::{cost, CostParams};
use crate::element::ReduceOp;
use crate::error::{Error, Result};
use crate::group::{Group, Overlapped, Pending};
use crate::transport::Transport;

/// Steps run without buckets before the cut is chosen; the first
/// [`COLD`] of them (caches and pages still cold) are not timed.
pub const WARMUP: usize = 8;

/// Warm-up steps left out of the timing.
pub const COLD: usize = 3;

/// Steps `auto` runs with the buckets it chose, to check them against the
/// warm-up's steps without (it keeps them only when they are faster).
pub const TRIAL: usize = 8;

/// Steps before a run's buckets are settled (warm-up and trial): the
/// steps to leave out when comparing runs' step times.
pub const SETTLED: usize = WARMUP + TRIAL;

/// Elements of the small all-reduces that measure the start-up cost.
const SMALL: usize = 256;

/// Smallest candidate cap of `auto`, bytes.
const SMALLEST_CAP: u64 = 64 << 10;

/// What a strategy runs on each bucket as the backward pass finishes it —
/// a communication hook on a gradient bucket, as PyTorch DDP's hooks
/// receive a `GradBucket`: the average by an all-reduce `algorithm`, with
/// f32 on the wire or, with `wire`, 16-bit floats on the ring's wire
/// ([`crate::Group::all_reduce_wire`]). A strategy offers one through
/// [`Strategy::buckets`](super::Strategy::buckets).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketHook {
    /// How the gradient is cut.
    pub size: BucketSize,
    /// The all-reduce of each bucket (the ring when `wire` is set).
    pub algorithm: Algorithm,
    /// 16-bit floats on the wire, or f32 (`None`).
    pub wire: Option<Wire>,
}

/// What a strategy does to one bucket of the gradient around its
/// all-reduces: the body of a communication hook (PyTorch DDP's comm hook
/// on a `GradBucket`, PowerSGD's hook among them), cut at its all-reduces
/// so that they run on the communication thread while the backward pass
/// goes on. A bucket takes [`rounds`](BucketCodec::rounds) all-reduces:
/// round r averages over the ranks the buffer that
/// [`encode`](BucketCodec::encode) returns, and
/// [`decode`](BucketCodec::decode) takes the average back. Every bucket's
/// round 0 starts as the pass finishes the bucket; round r + 1 of a bucket
/// starts once its round r is back, buckets in order — the same calls in
/// the same order on every rank.
///
/// Without buckets the strategy runs the same codec on the whole gradient
/// as one bucket ([`Step::exchange`](super::Step::exchange)), so a codec that treats every
/// element alike wherever the cut falls (random-k with shared
/// coordinates, PowerSGD per weight matrix) gives the same bits with
/// buckets as without, for the algorithms of [`position_free`].
pub trait BucketCodec {
    /// All-reduces a bucket takes (default 1).
    fn rounds(&self) -> usize {
        1
    }

    /// Before a step's buckets: the global step `step` and the gradient's
    /// length `n`.
    fn begin(&mut self, _step: usize, _n: usize) {}

    /// The buffer round `round` averages, for the bucket of the
    /// parameters `range`. `bucket` holds this rank's gradient of `range`
    /// (scaled as the optimizer takes it) and stays with the bucket from
    /// round to round; `carry` holds what the previous round's
    /// [`decode`](BucketCodec::decode) kept (empty in round 0).
    fn encode(
        &mut self,
        round: usize,
        range: Range<usize>,
        bucket: &mut [f32],
        carry: &mut Vec<f32>,
    ) -> Vec<f32>;

    /// Takes back round `round`'s average `reduced`, keeping what the next
    /// round needs in `carry`. After the last round `bucket` holds the
    /// gradient to apply.
    fn decode(
        &mut self,
        round: usize,
        range: Range<usize>,
        bucket: &mut [f32],
        carry: &mut Vec<f32>,
        reduced: Vec<f32>,
    );
}

/// Runs `codec` on the whole gradient `grad` of global step `step` as one
/// bucket, `reduce` averaging each round's buffer over the ranks (empty
/// buffers are not reduced: every rank's is empty alike); the codec's own
/// work is timed into `times` (`encode` and `decode`), `reduce`'s into
/// `times.wire`.
///
/// # Errors
/// `reduce`'s error.
pub(crate) fn exchange_whole(
    codec: &mut dyn BucketCodec,
    step: usize,
    grad: &mut [f32],
    reduce: &mut dyn FnMut(&mut [f32]) -> Result<()>,
    times: &mut CodecTimes,
) -> Result<()> {
    let whole = 0..grad.len();
    let mut clock = Instant::now();
    let mut lap = |d: &mut Duration| {
        let now = Instant::now();
        *d += now - clock;
        clock = now;
    };
    codec.begin(step, grad.len());
    let mut carry = Vec::new();
    for round in 0..codec.rounds() {
        let mut buf = codec.encode(round, whole.clone(), grad, &mut carry);
        lap(&mut times.encode);
        if !buf.is_empty() {
            reduce(&mut buf)?;
        }
        lap(&mut times.wire);
        codec.decode(round, whole.clone(), grad, &mut carry, buf);
        lap(&mut times.decode);
    }
    Ok(())
}

/// How the gradient's all-reduce is cut (`--bucket-mb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BucketSize {
    /// One all-reduce after the backward pass (`0`).
    #[default]
    Off,
    /// The cap whose predicted step time is the shortest (`auto`).
    Auto,
    /// Buckets of at least this many bytes (`--bucket-mb N`: N MiB).
    Bytes(u64),
}

impl std::str::FromStr for BucketSize {
    type Err = Error;

    /// `auto`, `0` (off), or a size in MiB (`25`, `0.5`).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidArgument {
            what: "bucket size",
            reason,
        };
        match s.trim() {
            "auto" => Ok(BucketSize::Auto),
            t => match t.parse::<f64>() {
                Ok(0.0) => Ok(BucketSize::Off),
                Ok(mb) if mb.is_finite() && mb > 0.0 && mb <= 1048576.0 => {
                    Ok(BucketSize::Bytes(((mb * 1048576.0).round() as u64).max(4)))
                }
                Ok(_) => Err(bad(format!(
                    "`{s}` MiB: give a size from 0 to 1048576 MiB, or auto"
                ))),
                Err(_) => Err(bad(format!("`{s}` is not a number of MiB, 0 or auto"))),
            },
        }
    }
}

impl std::fmt::Display for BucketSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BucketSize::Off => f.write_str("0"),
            BucketSize::Auto => f.write_str("auto"),
            BucketSize::Bytes(b) => {
                let mib = format!("{:.4}", *b as f64 / 1048576.0);
                f.write_str(mib.trim_end_matches('0').trim_end_matches('.'))
            }
        }
    }
}

/// Whether `algorithm`'s reduction of an element is the same wherever the
/// element sits in the buffer, at `p` ranks — then any cut into buckets
/// leaves the result's bits unchanged.
pub fn position_free(algorithm: Algorithm, p: usize) -> bool {
    p <= 2
        || matches!(
            algorithm,
            Algorithm::Butterfly
                | Algorithm::Rabenseifner
                | Algorithm::Naive
                | Algorithm::Central
                | Algorithm::Shm
        )
}

/// Gathers `layers` (in the order the backward pass finishes them) into
/// buckets of at least `cap_bytes` of f32: a bucket takes the next layer
/// while it is below the cap and the layer adjoins it in the buffer.
pub fn cut(layers: &[Range<usize>], cap_bytes: u64) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut open: Option<Range<usize>> = None;
    for r in layers {
        open = match open {
            Some(b) if ((b.len() * 4) as u64) < cap_bytes && (r.end == b.start || r.start == b.end) => {
                Some(b.start.min(r.start)..b.end.max(r.end))
            }
            Some(b) => {
                out.push(b);
                Some(r.clone())
            }
            None => Some(r.clone()),
        };
    }
    out.extend(open);
    out
}

/// A step's measured timeline, seconds from the step's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Each part of the gradient and when the backward pass finished it.
    pub layers: Vec<(Range<usize>, f64)>,
    /// When the pass (and a straggler's extra time) ended.
    pub backward_end: f64,
    /// The rest of the step after the gradient is averaged (the loss and
    /// finiteness agreement, the optimizer).
    pub rest: f64,
}

impl Timeline {
    /// Predicted seconds of a step whose gradient is all-reduced in
    /// `buckets` (in order, each taking `secs(len)`), one after the other
    /// on a communication thread: bucket k starts when its last layer is
    /// ready and bucket k − 1 is done; the step ends `rest` after both the
    /// pass and the last bucket. `threaded == false`: the calls run in
    /// place, holding up the pass.
    pub fn predict(&self, buckets: &[Range<usize>], threaded: bool, secs: impl Fn(usize) -> f64) -> f64 {
        let mut done = 0.0f64;
        let mut stalled = 0.0;
        for b in buckets {
            let ready = self
                .layers
                .iter()
                .filter(|(r, _)| r.start >= b.start && r.end <= b.end)
                .map(|(_, t)| *t)
                .fold(0.0, f64::max);
            let t = secs(b.len());
            if threaded {
                done = done.max(ready) + t;
            } else {
                stalled += t;
                done = self.backward_end + stalled;
            }
        }
        match threaded {
            true => done.max(self.backward_end) + self.rest,
            false => self.backward_end + stalled + self.rest,
        }
    }
}

/// Fits `rounds·α + bytes·β` to two measured all-reduces of `algorithm`
/// (`small` and `large` elements of f32 at `p` ranks, `t_small` and
/// `t_large` seconds) through its exact cost model. α and β are kept ≥ 0.
pub fn fit(
    algorithm: Algorithm,
    p: usize,
    small: usize,
    t_small: f64,
    large: usize,
    t_large: f64,
) -> CostParams {
    let terms = |count: usize| {
        let c = cost(algorithm, p, count, 4);
        let a = c.predict(&CostParams::line(1.0, 0.0, 0.0), 4);
        let b = c.predict(&CostParams::line(0.0, 1.0, 0.0), 4);
        (a, b)
    };
    let ((a1, b1), (a2, b2)) = (terms(small), terms(large));
    let det = a1 * b2 - a2 * b1;
    let mut alpha = if det.abs() > 0.0 {
        (t_small * b2 - t_large * b1) / det
    } else if a1 > 0.0 {
        t_small / a1
    } else {
        0.0
    };
    alpha = alpha.max(0.0);
    let beta = if b2 > 0.0 {
        ((t_large - a2 * alpha) / b2).max(0.0)
    } else {
        0.0
    };
    CostParams::line(alpha, beta, 0.0)
}

/// One candidate of the choice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The cap, bytes (`None`: one all-reduce after the pass).
    pub cap_bytes: Option<u64>,
    /// Buckets it cuts the gradient into.
    pub buckets: usize,
    /// Predicted step seconds.
    pub predicted_secs: f64,
}

/// What the trainer decided about buckets, after its warm-up steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketChoice {
    /// What was asked for.
    #[serde(skip)]
    pub requested: BucketSize,
    /// The cap in use (`None`: buckets off — one all-reduce after the pass).
    pub cap_bytes: Option<u64>,
    /// Sizes of the buckets, elements, in the order they start.
    pub buckets: Vec<usize>,
    /// Predicted step seconds with this choice.
    pub predicted_secs: f64,
    /// Predicted step seconds with one all-reduce after the pass.
    pub predicted_unbucketed_secs: f64,
    /// Measured step seconds of the warm-up (without buckets; the
    /// ranks' mean of their medians).
    pub warmup_step_secs: f64,
    /// The fitted start-up cost and seconds per byte of a round.
    pub alpha: f64,
    /// See `alpha`.
    pub beta: f64,
    /// Every candidate of `auto` (empty for a given size).
    pub sweep: Vec<Candidate>,
    /// Whether a communication thread runs the buckets (otherwise they
    /// run in place — no overlap).
    pub threaded: bool,
    /// Why buckets are off although asked for, if they are.
    pub note: Option<String>,
    /// `auto`: the measured step seconds of the [`TRIAL`] steps with the
    /// predicted best cut (the ranks' mean of their medians); the cut is
    /// kept only when that beats `warmup_step_secs`.
    pub trial_secs: Option<f64>,
    /// Steps taken before the choice.
    pub warmup_steps: usize,
}

/// One warm-up step's measurements.
struct Sample {
    timeline: Timeline,
    full: f64,
    step: f64,
}

/// The trainer's bucket state over a run.
pub(crate) struct Bucketer {
    size: BucketSize,
    algorithm: Algorithm,
    wire: Option<Wire>,
    thread: Option<Overlapped>,
    note: Option<String>,
    warm: Vec<Sample>,
    seen: usize,
    trial: Vec<f64>,
    settled: bool,
    active: Option<Vec<Range<usize>>>,
    pub(crate) choice: Option<BucketChoice>,
}

/// One step's buckets in flight.
pub(crate) struct Flight<'a, C: Transport> {
    group: &'a Group<C>,
    thread: Option<&'a Overlapped>,
    algorithm: Algorithm,
    wire: Option<Wire>,
    codec: Option<&'a mut dyn BucketCodec>,
    buckets: &'a [Range<usize>],
    buf: Vec<f32>,
    filled: usize,
    slots: Vec<Slot>,
    landed: Landed,
    error: Option<Error>,
}

/// A bucket between its rounds.
struct Slot {
    bucket: Vec<f32>,
    carry: Vec<f32>,
    call: Started,
}

enum Started {
    Pending(Pending<f32>),
    Done(Result<Vec<f32>>, Instant, Duration),
}

impl Started {
    /// A call that moved nothing.
    fn none() -> Self {
        Started::Done(Ok(Vec::new()), Instant::now(), Duration::ZERO)
    }
}

/// A piece of a bucket's work, for the timeline ([`super::trace`]).
#[derive(Debug, Clone)]
pub(crate) struct FlightSpan {
    /// `encode`, `all-reduce` or `decode`.
    pub(crate) what: &'static str,
    /// The bucket's parameters.
    pub(crate) params: Range<usize>,
    /// The bucket's round.
    pub(crate) round: usize,
    pub(crate) began: Instant,
    pub(crate) took: Duration,
    /// On the communication thread (else the caller's).
    pub(crate) comm: bool,
}

/// What the buckets of a step did.
#[derive(Default)]
pub(crate) struct Landed {
    pub(crate) bytes: u64,
    pub(crate) rounds: u64,
    /// Seconds the all-reduces took (on the communication thread).
    pub(crate) comm: f64,
    /// The codec's time on this thread.
    pub(crate) codec: CodecTimes,
    /// Each piece of the buckets' work, for the timeline.
    pub(crate) spans: Vec<FlightSpan>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

impl Bucketer {
    /// The bucket state for `size` and `algorithm`; starts the
    /// communication thread when the transport has one. Collective.
    ///
    /// # Errors
    /// A given size on MPI without `MPI_THREAD_MULTIPLE` (`auto` then
    /// turns buckets off, with a note).
    pub(crate) fn new<C: Transport>(group: &Group<C>, hook: BucketHook) -> Result<Option<Self>> {
        let BucketHook {
            size,
            algorithm,
            wire,
        } = hook;
        if size == BucketSize::Off || group.size() < 2 {
            return Ok(None);
        }
        let p = group.size();
        let (thread, note) =
            if size == BucketSize::Auto && (wire.is_some() || !position_free(algorithm, p)) {
                // A cut chosen from timings would make the run's bits depend
                // on the machine's mood.
                let why = match wire {
                    Some(w) => format!("the {w} wire rounds each chunk where its sum begins"),
                    None => format!("{algorithm} at {p} ranks sums each chunk starting from another rank"),
                };
                let note =
                    format!(
                "auto buckets only where the cut leaves every sum's bits alone: {why}, so a cut changes \
                 the last bits — give a size (repeatable for that size){}",
                if wire.is_none() { " or butterfly or rabenseifner" } else { "" }
            );
                (None, Some(note))
            } else {
                match group.comm_thread() {
                    None => (None, None),
                    Some(Ok(t)) => (Some(t), None),
                    Some(Err(e)) if size == BucketSize::Auto => (None, Some(e.to_string())),
                    Some(Err(e)) => return Err(e),
                }
            };
        Ok(Some(Bucketer {
            size,
            algorithm,
            wire,
            thread,
            note,
            warm: Vec::new(),
            seen: 0,
            trial: Vec::new(),
            settled: false,
            active: None,
            choice: None,
        }))
    }

    /// The buckets of global step `step` of a gradient of `n`, once the
    /// cut is chosen and has more than one, each run through `codec`
    /// (`None`: averaged as they are).
    pub(crate) fn flight<'a, C: Transport>(
        &'a self,
        group: &'a Group<C>,
        mut codec: Option<&'a mut dyn BucketCodec>,
        step: usize,
        n: usize,
    ) -> Option<Flight<'a, C>> {
        let buckets = self.active.as_deref()?;
        if let Some(c) = codec.as_mut() {
            c.begin(step, n);
        }
        Some(Flight {
            group,
            thread: self.thread.as_ref(),
            algorithm: self.algorithm,
            wire: self.wire,
            codec,
            buckets,
            buf: Vec::new(),
            filled: 0,
            slots: Vec::new(),
            landed: Landed::default(),
            error: None,
        })
    }

    /// Whether warm-up steps are still being timed.
    pub(crate) fn warming(&self) -> bool {
        self.choice.is_none()
    }

    /// Whether the buckets are still being chosen or tried.
    pub(crate) fn settling(&self) -> bool {
        !self.settled
    }

    /// Records a step before the buckets are settled (collective: every
    /// rank records the same steps): a warm-up step's `timeline` (the
    /// steps without buckets), the seconds its whole-gradient all-reduce
    /// took (`full`) and the step's; after [`WARMUP`] steps chooses the
    /// cut, and for `auto` tries it for [`TRIAL`] steps. Returns the
    /// choice once it is settled.
    pub(crate) fn record<C: Transport>(
        &mut self,
        group: &Group<C>,
        timeline: Option<Timeline>,
        full: f64,
        step: f64,
    ) -> Result<Option<&BucketChoice>> {
        if self.settled {
            return Ok(None);
        }
        if let Some(choice) = &mut self.choice {
            self.trial.push(step);
            if self.trial.len() < TRIAL {
                return Ok(None);
            }
            let mut mean = [median(std::mem::take(&mut self.trial))];
            group.all_reduce_in_place(&mut mean, ReduceOp::Avg, Algorithm::Butterfly)?;
            choice.trial_secs = Some(mean[0]);
            if mean[0] >= choice.warmup_step_secs {
                let n = choice.buckets.iter().sum();
                choice.note = Some(format!(
                    "{} buckets measured {:.1} ms a step against {:.1} ms without: off",
                    choice.buckets.len(),
                    mean[0] * 1e3,
                    choice.warmup_step_secs * 1e3
                ));
                choice.cap_bytes = None;
                choice.buckets = vec![n];
                choice.predicted_secs = choice.predicted_unbucketed_secs;
                self.active = None;
            }
            self.settled = true;
            return Ok(self.choice.as_ref());
        }
        self.seen += 1;
        if let (Some(timeline), true) = (timeline, self.seen > COLD) {
            self.warm.push(Sample { timeline, full, step });
        }
        if self.seen < WARMUP {
            return Ok(None);
        }
        self.choose(group)?;
        self.settled = !(self.size == BucketSize::Auto && self.active.is_some());
        Ok(self.choice.as_ref().filter(|_| self.settled))
    }

    fn choose<C: Transport>(&mut self, group: &Group<C>) -> Result<()> {
        let p = group.size();
        let layers: Vec<Range<usize>> = self.warm[0]
            .timeline
            .layers
            .iter()
            .map(|(r, _)| r.clone())
            .collect();
        let n: usize = layers.iter().map(|r| r.len()).sum();
        // The ranks' mean medians, so every rank decides alike.
        let mut v: Vec<f64> = (0..layers.len())
            .map(|i| median(self.warm.iter().map(|s| s.timeline.layers[i].1).collect()))
            .collect();
        let of = |f: fn(&Sample) -> f64| median(self.warm.iter().map(f).collect());
        v.push(of(|s| s.timeline.backward_end));
        v.push(of(|s| (s.step - s.timeline.backward_end - s.full).max(0.0)));
        v.push(of(|s| s.full));
        v.push(of(|s| s.step));
        // The small calls run the schedule the whole gradient runs, so
        // both points lie on one algorithm's cost line.
        let large_algo = group.resolve(self.algorithm, n, 4);
        let mut small = vec![0f32; SMALL];
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            group.all_reduce_in_place(&mut small, ReduceOp::Sum, large_algo)?;
            times.push(t.elapsed().as_secs_f64());
        }
        v.push(median(times));
        group.all_reduce_in_place(&mut v, ReduceOp::Avg, Algorithm::Butterfly)?;
        let k = layers.len();
        let timeline = Timeline {
            layers: layers.iter().cloned().zip(v[..k].iter().copied()).collect(),
            backward_end: v[k],
            rest: v[k + 1],
        };
        let (t_full, warm_step, t_small) = (v[k + 2], v[k + 3], v[k + 4]);
        let line = fit(large_algo, p, SMALL, t_small, n, t_full);
        let alpha = line.lines[0].alpha;
        let beta = line.lines[0].beta;
        let secs = |len: usize| cost(group.resolve(self.algorithm, len, 4), p, len, 4).predict(&line, 4);
        let threaded = self.thread.is_some();
        let whole: &[Range<usize>] = &[Range { start: 0, end: n }];
        let unbucketed = timeline.predict(whole, true, secs);
        let predict = |b: &[Range<usize>]| timeline.predict(b, threaded, secs);
        let (cap, sweep) = match self.size {
            BucketSize::Bytes(c) => (Some(c), Vec::new()),
            _ if self.note.is_some() || !threaded => (None, Vec::new()),
            _ => {
                let mut sweep = vec![Candidate {
                    cap_bytes: None,
                    buckets: 1,
                    predicted_secs: unbucketed,
                }];
                let mut c = SMALLEST_CAP;
                while c < (n as u64 * 4).max(SMALLEST_CAP) * 2 {
                    let b = cut(&layers, c);
                    sweep.push(Candidate {
                        cap_bytes: Some(c),
                        buckets: b.len(),
                        predicted_secs: predict(&b),
                    });
                    c *= 2;
                }
                // The shortest; among equals the fewest buckets.
                let best = sweep
                    .iter()
                    .min_by(|a, b| {
                        a.predicted_secs
                            .total_cmp(&b.predicted_secs)
                            .then(a.buckets.cmp(&b.buckets))
                    })
                    .and_then(|c| c.cap_bytes);
                (best, sweep)
            }
        };
        let buckets = match cap {
            Some(c) => cut(&layers, c),
            None => whole.to_vec(),
        };
        let predicted = match buckets.len() {
            1 => unbucketed,
            _ => predict(&buckets),
        };
        self.choice = Some(BucketChoice {
            requested: self.size,
            cap_bytes: cap.filter(|_| buckets.len() > 1),
            buckets: buckets.iter().map(|r| r.len()).collect(),
            predicted_secs: predicted,
            predicted_unbucketed_secs: unbucketed,
            warmup_step_secs: warm_step,
            alpha,
            beta,
            sweep,
            threaded,
            note: self.note.clone(),
            trial_secs: None,
            warmup_steps: self.seen,
        });
        self.active = (buckets.len() > 1).then_some(buckets);
        self.warm.clear();
        Ok(())
    }
}

impl<C: Transport> Flight<'_, C> {
    /// Takes a part of the gradient the pass has finished (`values`, not
    /// yet scaled); starts each bucket once its last part is in. Returns
    /// whether the scaled values are all finite.
    pub(crate) fn ready(&mut self, range: Range<usize>, values: &[f32], scale: f32) -> bool {
        let next = self.slots.len();
        let Some(bucket) = self.buckets.get(next).cloned() else {
            self.fail(format!("the pass reported {range:?} after every bucket was full"));
            return true;
        };
        if range.start < bucket.start || range.end > bucket.end {
            self.fail(format!(
                "the pass reported {range:?}, outside the next bucket {bucket:?} (the layers came in another order than in the warm-up)"
            ));
            return true;
        }
        if self.buf.len() != bucket.len() {
            self.buf = vec![0f32; bucket.len()];
        }
        let mut finite = true;
        let dst = &mut self.buf[range.start - bucket.start..range.end - bucket.start];
        for (d, &g) in dst.iter_mut().zip(values) {
            *d = g * scale;
            finite &= d.is_finite();
        }
        self.filled += range.len();
        if self.filled == bucket.len() {
            let mut slot = Slot {
                bucket: std::mem::take(&mut self.buf),
                carry: Vec::new(),
                call: Started::none(),
            };
            self.start(0, next, &mut slot);
            self.slots.push(slot);
            self.filled = 0;
        }
        finite
    }

    /// Encodes round `round` of bucket `i` and starts its all-reduce.
    fn start(&mut self, round: usize, i: usize, slot: &mut Slot) {
        let range = self.buckets[i].clone();
        let began = Instant::now();
        let buf = match self.codec.as_mut() {
            Some(c) => {
                let buf = c.encode(round, range.clone(), &mut slot.bucket, &mut slot.carry);
                self.landed.spans.push(FlightSpan {
                    what: "encode",
                    params: range.clone(),
                    round,
                    began,
                    took: began.elapsed(),
                    comm: false,
                });
                buf
            }
            None => std::mem::take(&mut slot.bucket),
        };
        self.landed.codec.encode += began.elapsed();
        slot.call = match (buf.is_empty(), self.thread, self.wire) {
            (true, _, _) => Started::Done(Ok(buf), Instant::now(), Duration::ZERO),
            (false, Some(t), None) => {
                Started::Pending(t.all_reduce_start(buf, ReduceOp::Avg, self.algorithm))
            }
            (false, Some(t), Some(w)) => Started::Pending(t.all_reduce_wire_start(buf, ReduceOp::Avg, w)),
            (false, None, wire) => {
                let began = Instant::now();
                let mut buf = buf;
                let r = match wire {
                    None => self
                        .group
                        .all_reduce_in_place(&mut buf, ReduceOp::Avg, self.algorithm),
                    Some(w) => self.group.all_reduce_wire(&mut buf, ReduceOp::Avg, w),
                };
                Started::Done(r.map(|()| buf), began, began.elapsed())
            }
        };
    }

    /// Waits for the call of round `round` of bucket `i` and counts it.
    fn finish(&mut self, call: Started, i: usize, round: usize) -> Option<Vec<f32>> {
        let comm = matches!(call, Started::Pending(_));
        let (r, began, took) = match call {
            Started::Pending(pending) => pending.wait_span(),
            Started::Done(r, began, took) => (r, began, took),
        };
        self.landed.comm += took.as_secs_f64();
        if !took.is_zero() {
            self.landed.spans.push(FlightSpan {
                what: "all-reduce",
                params: self.buckets.get(i).cloned().unwrap_or_default(),
                round,
                began,
                took,
                comm,
            });
        }
        let values = match r {
            Ok(values) => values,
            Err(e) => {
                self.error.get_or_insert(e);
                return None;
            }
        };
        let p = self.group.size();
        let cost = match (values.is_empty(), self.wire) {
            (true, _) => None,
            (false, Some(_)) => Some(wire_cost(p, values.len())),
            (false, None) => {
                let algo = self.group.resolve(self.algorithm, values.len(), 4);
                algo.exact_cost(p, values.len(), 4)
            }
        };
        if let Some(c) = cost {
            self.landed.bytes += c.bytes_sent;
            self.landed.rounds += c.rounds;
        }
        Some(values)
    }

    fn fail(&mut self, reason: String) {
        self.error.get_or_insert(Error::InvalidArgument {
            what: "gradient buckets",
            reason,
        });
    }

    /// Waits for the calls started, decoding nothing (every rank drains
    /// its buckets alike when the step fails).
    pub(crate) fn abandon(mut self) {
        for (i, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            let _ = self.finish(slot.call, i, 0);
        }
    }

    /// Runs every bucket's rounds to the end and writes the averaged
    /// values into `grad`.
    ///
    /// # Errors
    /// A bucket's all-reduce error, or a pass that did not fill the buckets.
    pub(crate) fn land(mut self, grad: &mut [f32]) -> Result<Landed> {
        if self.error.is_none() && self.slots.len() != self.buckets.len() {
            self.fail(format!(
                "the pass filled {} of {} buckets",
                self.slots.len(),
                self.buckets.len()
            ));
        }
        let mut slots = std::mem::take(&mut self.slots);
        let rounds = self.codec.as_ref().map_or(1, |c| c.rounds());
        for round in 0..rounds {
            for (i, slot) in slots.iter_mut().enumerate() {
                let call = std::mem::replace(&mut slot.call, Started::none());
                let reduced = self.finish(call, i, round);
                if let (Some(reduced), None) = (reduced, &self.error) {
                    let began = Instant::now();
                    let range = self.buckets[i].clone();
                    match self.codec.as_mut() {
                        Some(c) => {
                            c.decode(round, range.clone(), &mut slot.bucket, &mut slot.carry, reduced);
                            self.landed.spans.push(FlightSpan {
                                what: "decode",
                                params: range,
                                round,
                                began,
                                took: began.elapsed(),
                                comm: false,
                            });
                        }
                        None => slot.bucket = reduced,
                    }
                    self.landed.codec.decode += began.elapsed();
                    if round + 1 < rounds {
                        self.start(round + 1, i, slot);
                    }
                }
            }
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        for (slot, range) in slots.iter().zip(self.buckets) {
            grad[range.clone()].copy_from_slice(&slot.bucket);
        }
        Ok(self.landed)
    }
}

#[cfg(test)]
mod tests;
