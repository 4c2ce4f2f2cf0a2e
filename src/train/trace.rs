//! A timeline of a training run, as Horovod's timeline and PyTorch's
//! profiler traces give one: every rank's steps cut into their phases —
//! the forward and backward pass, each layer's gradient as it becomes
//! ready, each bucket's all-reduce on the communication thread, a
//! compressor's encoding and decoding, the waits, the optimizer — in
//! Chrome's trace event format, which Perfetto (ui.perfetto.dev) and
//! `chrome://tracing` open.
//!
//! [`Trainer::on_trace`](super::Trainer::on_trace) turns it on: the run's
//! events are gathered from every rank at its end and handed to its
//! callback, and
//! [`write_chrome`] writes them. Times are microseconds from the run's
//! start, which every rank takes right after a barrier, so the ranks' rows
//! line up to within that barrier's skew. A process is a rank (`pid`), a
//! thread is the rank's main thread ([`MAIN`]) or its communication thread
//! ([`COMM`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The thread of a rank's loop.
pub const MAIN: u32 = 0;
/// The thread of a rank's communication (gradient buckets).
pub const COMM: u32 = 1;

/// One event of Chrome's trace event format: a span (`ph` `"X"`, with
/// `dur`) or an instant (`ph` `"i"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// What happened (`forward+backward`, `all-reduce`, …).
    pub name: String,
    /// Its kind: `step`, `compute`, `comm`, `codec`, `wait`.
    pub cat: String,
    /// `X` (a span) or `i` (an instant).
    pub ph: String,
    /// Start, microseconds from the run's start.
    pub ts: f64,
    /// Length of a span, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dur: Option<f64>,
    /// The rank.
    pub pid: usize,
    /// [`MAIN`] or [`COMM`].
    pub tid: u32,
    /// Details: the global step, a bucket's index and parameter range.
    #[serde(default)]
    pub args: BTreeMap<String, serde_json::Value>,
}

impl TraceEvent {
    /// The span's end (its start for an instant).
    pub fn end(&self) -> f64 {
        self.ts + self.dur.unwrap_or(0.0)
    }

    /// The integer argument `key`, if there is one.
    pub fn arg(&self, key: &str) -> Option<u64> {
        self.args.get(key)?.as_u64()
    }
}

/// Trace times are multiples of 1/1024 µs (see `Recorder::ticks`).
const TICKS_PER_MICRO: f64 = 1024.0;

/// The first two spans of one thread in `events` that overlap without one
/// holding the other, as a viewer computes their ends (`ts + dur` in
/// f64); `None` when every thread's spans nest, as trace viewers need.
pub fn misnested(events: &[TraceEvent]) -> Option<(&TraceEvent, &TraceEvent)> {
    let mut spans: Vec<&TraceEvent> = events.iter().filter(|e| e.ph == "X").collect();
    // By thread, then start, the longer first: a parent before its children.
    spans.sort_by(|a, b| {
        (a.pid, a.tid)
            .cmp(&(b.pid, b.tid))
            .then(a.ts.total_cmp(&b.ts))
            .then(b.end().total_cmp(&a.end()))
    });
    let mut open: Vec<&TraceEvent> = Vec::new();
    for e in spans {
        while let Some(top) = open.last() {
            if (top.pid, top.tid) != (e.pid, e.tid) || top.end() <= e.ts {
                open.pop();
            } else {
                break;
            }
        }
        if let Some(top) = open.last() {
            if e.end() > top.end() {
                return Some((top, e));
            }
        }
        open.push(e);
    }
    None
}

/// A rank's events as the run goes (the trainer's).
#[derive(Debug)]
pub(crate) struct Recorder {
    origin: Instant,
    rank: usize,
    pub(crate) events: Vec<TraceEvent>,
}

impl Recorder {
    /// A recorder whose times count from now.
    pub(crate) fn new(rank: usize) -> Self {
        Recorder {
            origin: Instant::now(),
            rank,
            events: Vec::new(),
        }
    }

    /// `at` in whole ticks of 1/1024 µs (about a nanosecond) since the
    /// origin. Times are written as such ticks: sums of them are exact in
    /// f64, so a span that ends where the next begins ends exactly there in
    /// a viewer too (decimal microseconds made `ts + dur` overshoot the next
    /// start by 1e-10, and viewers nested the next span inside it).
    fn ticks(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.origin).as_nanos() as u64;
        (nanos * TICKS_PER_MICRO as u64 + 500) / 1000
    }

    fn micros(&self, at: Instant) -> f64 {
        self.ticks(at) as f64 / TICKS_PER_MICRO
    }

    /// A span on thread `tid` from `began`, `took` long.
    pub(crate) fn span(
        &mut self,
        name: &str,
        cat: &str,
        tid: u32,
        began: Instant,
        took: Duration,
        args: Args,
    ) {
        let (from, to) = (self.ticks(began), self.ticks(began + took));
        self.events.push(TraceEvent {
            name: name.into(),
            cat: cat.into(),
            ph: "X".into(),
            ts: from as f64 / TICKS_PER_MICRO,
            dur: Some((to - from) as f64 / TICKS_PER_MICRO),
            pid: self.rank,
            tid,
            args: args.0,
        });
    }

    /// A span on the main thread from `began` to now.
    pub(crate) fn since(&mut self, name: &str, cat: &str, began: Instant, args: Args) {
        self.span(name, cat, MAIN, began, began.elapsed(), args);
    }

    /// An instant on the main thread.
    pub(crate) fn instant(&mut self, name: &str, cat: &str, at: Instant, args: Args) {
        let ts = self.micros(at);
        self.events.push(TraceEvent {
            name: name.into(),
            cat: cat.into(),
            ph: "i".into(),
            ts,
            dur: None,
            pid: self.rank,
            tid: MAIN,
            args: args.0,
        });
    }
}

/// An event's details.
#[derive(Debug, Default)]
pub(crate) struct Args(BTreeMap<String, serde_json::Value>);

impl Args {
    /// The details of global step `step`.
    pub(crate) fn step(step: usize) -> Self {
        Args::default().with("step", step)
    }

    /// Adds `key`.
    pub(crate) fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// Adds the parameter range `range` (`first`, `end`).
    pub(crate) fn params(self, range: &std::ops::Range<usize>) -> Self {
        self.with("first", range.start).with("end", range.end)
    }
}

/// The `gradient ready` instants, in `events`, of the layers inside the
/// bucket whose `all-reduce` is `reduce` (same rank, same step): what that
/// all-reduce had to wait for.
pub fn layers_of<'a>(events: &'a [TraceEvent], reduce: &TraceEvent) -> Vec<&'a TraceEvent> {
    let (step, first, end) = (reduce.arg("step"), reduce.arg("first"), reduce.arg("end"));
    events
        .iter()
        .filter(|e| e.pid == reduce.pid && e.name == "gradient ready" && e.arg("step") == step)
        .filter(|e| e.arg("first") >= first && e.arg("end") <= end)
        .collect()
}

/// `events` (every rank's) as a Chrome trace: a JSON object with
/// `traceEvents`, the ranks and threads named.
pub fn chrome_json(events: &[TraceEvent]) -> Result<String> {
    let mut all: Vec<serde_json::Value> = Vec::new();
    let mut ranks: Vec<usize> = events.iter().map(|e| e.pid).collect();
    ranks.sort_unstable();
    ranks.dedup();
    for r in ranks {
        all.push(serde_json::json!({"name": "process_name", "ph": "M", "pid": r, "args": {"name": format!("rank {r}")}}));
        all.push(
            serde_json::json!({"name": "process_sort_index", "ph": "M", "pid": r, "args": {"sort_index": r}}),
        );
        for (tid, name) in [(MAIN, "main"), (COMM, "communication")] {
            all.push(serde_json::json!({"name": "thread_name", "ph": "M", "pid": r, "tid": tid, "args": {"name": name}}));
        }
    }
    for e in events {
        let mut v = serde_json::to_value(e).map_err(invalid)?;
        if e.ph == "i" {
            v["s"] = "t".into(); // an instant of its thread
        }
        all.push(v);
    }
    let doc = serde_json::json!({"traceEvents": all, "displayTimeUnit": "ms"});
    serde_json::to_string(&doc).map_err(invalid)
}

/// Writes `events` to `path` as a Chrome trace ([`chrome_json`]),
/// atomically.
///
/// # Errors
/// The file cannot be written.
pub fn write_chrome(path: &Path, events: &[TraceEvent]) -> Result<()> {
    let text = chrome_json(events)?;
    crate::files::write_atomically(path, text.as_bytes()).map_err(|e| Error::InvalidArgument {
        what: "timeline",
        reason: format!("{}: {e}", path.display()),
    })
}

/// The events of a Chrome trace written by [`write_chrome`] (the metadata
/// events left out).
///
/// # Errors
/// Text that is no such trace.
pub fn read_chrome(text: &str) -> Result<Vec<TraceEvent>> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(rename = "traceEvents")]
        trace_events: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_str(text).map_err(invalid)?;
    doc.trace_events
        .into_iter()
        .filter(|v| v["ph"] != "M")
        .map(|v| serde_json::from_value(v).map_err(invalid))
        .collect()
}

fn invalid(e: serde_json::Error) -> Error {
    Error::InvalidArgument {
        what: "timeline",
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::group::Group;
    use crate::train::{data, BucketSize, Mlp, SyncSgd};

    /// A 2-rank run with every layer its own bucket (thread ranks: the
    /// buckets' all-reduces run in place, on the main thread), traced.
    fn traced(buckets: BucketSize) -> Vec<TraceEvent> {
        let set = data::synthetic(240, 6, 3, 7);
        let model = Mlp::new(vec![6, 16, 12, 3]).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        let sgd = SyncSgd::builder()
            .batch(30)
            .epochs(3)
            .buckets(buckets)
            .build()
            .unwrap()
            .on_trace(move |e| *keep.lock().unwrap() = e.clone());
        Group::local(2, |g| {
            let mut params = sgd.init_params(&model);
            sgd.fit(&g, &model, &mut params, &set, None, |_| {}).unwrap();
        });
        let events = seen.lock().unwrap().clone();
        events
    }

    #[test]
    fn a_trace_is_well_formed_and_round_trips_through_its_json() {
        let events = traced(BucketSize::Bytes(100));
        // 3 epochs × 8 steps on each of the 2 ranks.
        for rank in 0..2 {
            let steps: Vec<&TraceEvent> = events
                .iter()
                .filter(|e| e.pid == rank && e.name == "step")
                .collect();
            assert_eq!(steps.len(), 24, "rank {rank}");
            for w in steps.windows(2) {
                assert!(w[0].end() <= w[1].ts, "steps overlap: {w:?}");
                assert_eq!(w[0].arg("step").unwrap() + 1, w[1].arg("step").unwrap());
            }
        }
        for e in &events {
            assert!(e.ts >= 0.0 && e.dur.unwrap_or(0.0) >= 0.0, "{e:?}");
            assert!(matches!(e.ph.as_str(), "X" | "i"), "{e:?}");
            assert_eq!(e.dur.is_some(), e.ph == "X", "{e:?}");
            // Every phase of a step lies inside it.
            if let (Some(s), "X") = (e.arg("step"), e.ph.as_str()) {
                let step = events
                    .iter()
                    .find(|x| x.pid == e.pid && x.name == "step" && x.arg("step") == Some(s))
                    .unwrap();
                assert!(e.ts >= step.ts && e.end() <= step.end(), "{e:?} outside {step:?}");
            }
        }
        // Each thread's spans nest, as viewers need (regression: adjacent
        // phases overlapped by 1e-10 µs, and viewers stacked every later
        // step inside the one before).
        assert_eq!(misnested(&events), None);
        for name in [
            "forward+backward",
            "loss agreement",
            "optimizer",
            "gradient ready",
            "all-reduce",
        ] {
            assert!(events.iter().any(|e| e.name == name), "no {name} event");
        }
        let text = chrome_json(&events).unwrap();
        assert_eq!(read_chrome(&text).unwrap(), events);
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> = doc["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["name"] == "process_name")
            .map(|v| v["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["rank 0", "rank 1"]);
    }

    /// A bucket's all-reduce starts only once the backward pass has
    /// finished every layer in it.
    #[test]
    fn a_buckets_all_reduce_starts_after_its_gradient_is_ready() {
        let events = traced(BucketSize::Bytes(100));
        let reduces: Vec<&TraceEvent> = events.iter().filter(|e| e.name == "all-reduce").collect();
        // After the 8 warm-up steps: 16 steps × 3 buckets × 2 ranks.
        assert_eq!(reduces.len(), 16 * 3 * 2);
        for r in reduces {
            let ready = layers_of(&events, r);
            assert!(!ready.is_empty(), "no layer of {r:?}");
            for g in ready {
                assert!(g.ts <= r.ts, "{r:?} began before {g:?}");
            }
        }
    }

    #[test]
    fn unbucketed_steps_exchange_the_whole_gradient_once() {
        let events = traced(BucketSize::Off);
        assert!(events
            .iter()
            .all(|e| e.name != "all-reduce" && e.name != "wait for buckets"));
        let exchanges = events.iter().filter(|e| e.name == "gradient exchange").count();
        assert_eq!(exchanges, 24 * 2);
    }
}
