//! What `ringreduce train` reports as it runs: progress, the bucket
//! choice, a resumed run's start, step timings, and the lines that
//! describe the data and a parameter server's staleness.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ringreduce::train::data::{HeldOut, Sets};
use std::path::PathBuf;

use ringreduce::train::log::{Restart, Row};
use ringreduce::train::{buckets, BucketChoice, Trainer};

use super::progress::Progress;

/// What the trainer's hooks report as the run goes: progress, the bucket
/// choice, a resumed run's first epoch, and the step timings after the
/// warm-up.
pub struct Watch {
    pub progress: Arc<Progress>,
    chosen: Arc<Mutex<Option<BucketChoice>>>,
    step_times: Arc<Mutex<Vec<[f64; 4]>>>,
    root: bool,
}

impl Watch {
    pub fn new(root: bool, log_every: usize, batch: usize) -> Self {
        Watch {
            progress: Arc::new(Progress::new(root, log_every, batch)),
            chosen: Arc::default(),
            step_times: Arc::default(),
            root,
        }
    }

    /// `recipe` (of `epochs` epochs, checkpointed at `checkpoint`) with
    /// the hooks that feed this watch.
    pub fn attach(&self, recipe: Trainer, epochs: usize, checkpoint: std::path::PathBuf) -> Trainer {
        let root = self.root;
        let (progress, steps, chosen) = (
            self.progress.clone(),
            self.step_times.clone(),
            self.chosen.clone(),
        );
        let first = AtomicUsize::new(usize::MAX);
        recipe
            .on_step(move |m| {
                progress.step(m);
                // The steps after a (resumed) run's warm-up.
                let from = first.fetch_min(m.global_step, Ordering::Relaxed);
                if m.global_step >= from.min(m.global_step) + buckets::SETTLED {
                    if let Ok(mut s) = steps.lock() {
                        s.push([m.step_secs, m.compute_secs, m.exposed_secs, m.comm_secs]);
                    }
                }
            })
            .on_buckets(move |c| {
                if root {
                    println!("{}", describe_buckets(c));
                }
                if let Ok(mut slot) = chosen.lock() {
                    *slot = Some(c.clone());
                }
            })
            .on_stale(|removed| {
                let names: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
                println!(
                    "removed {} temporary file(s) a killed run left beside the checkpoint: {}",
                    names.len(),
                    names.join(", ")
                );
            })
            .on_resume(move |r| {
                if root {
                    let within = match r.step {
                        0 => String::new(),
                        s => format!(", step {s} of the next (global step {})", r.global_step),
                    };
                    println!(
                        "resumed from epoch {} of {epochs}{within} (checkpoint {})",
                        r.epoch,
                        checkpoint.display()
                    );
                }
            })
    }

    /// `recipe` under `ringreduce elastic`: rank 0 writes its global step
    /// to `progress` after every step, and, when this launch is a restart,
    /// logs it (a line and a metrics row) at its first step.
    pub fn elastic(
        &self,
        recipe: Trainer,
        progress: Option<PathBuf>,
        restart: Option<RestartNote>,
    ) -> Trainer {
        if !self.root || (progress.is_none() && restart.is_none()) {
            return recipe;
        }
        let from = Arc::new(AtomicUsize::new(0));
        let resumed = from.clone();
        let log = self.progress.clone();
        let restart = Mutex::new(restart);
        recipe
            .on_resume(move |r| {
                resumed.store(r.global_step, Ordering::Relaxed);
            })
            .on_step(move |m| {
                if let Some(path) = &progress {
                    // Not atomic, and need not be: the supervisor reads it
                    // once the job is gone.
                    let _ = std::fs::write(path, format!("{}\n", m.global_step));
                }
                let note = restart.lock().ok().and_then(|mut r| r.take());
                if let Some(note) = note {
                    let from = from.load(Ordering::Relaxed);
                    let row = note.row(m.epoch, from, super::elastic::now_unix());
                    log.println(&format!(
                        "restart {}: {}; training again from step {from}, {:.1} s after the fault; {} step(s) lost",
                        row.number, row.cause, row.down_secs, row.lost_steps
                    ));
                    log.push_row(Row::Restart(row));
                }
            })
    }

    /// `recipe` writing every rank's timeline to `path` (rank 0), when given.
    pub fn timeline(&self, recipe: Trainer, path: Option<std::path::PathBuf>) -> Trainer {
        let (Some(path), root) = (path, self.root) else {
            return recipe;
        };
        recipe.on_trace(move |events| {
            if root {
                if let Err(e) = ringreduce::train::trace::write_chrome(&path, events) {
                    eprintln!("ringreduce: {e}");
                }
            }
        })
    }

    /// The median step timings, when steps were timed.
    pub fn steps_line(&self) -> Option<String> {
        let choice = self.chosen.lock().ok().and_then(|c| c.clone());
        let steps = self.step_times.lock().map(|s| s.clone()).unwrap_or_default();
        (!steps.is_empty()).then(|| measured_steps(choice.as_ref(), &steps))
    }
}

/// The bucket choice, one line (and the sweep of `auto`).
fn describe_buckets(c: &BucketChoice) -> String {
    let ms = |s: f64| format!("{:.1} ms", s * 1e3);
    let mb = |b: u64| format!("{:.3} MiB", b as f64 / 1048576.0);
    let what = match (c.cap_bytes, c.buckets.len()) {
        (Some(cap), n) => format!(
            "{} buckets of ≥ {} ({} MB, last layer first)",
            n,
            mb(cap),
            c.buckets
                .iter()
                .map(|&k| format!("{:.2}", k as f64 * 4.0 / 1e6))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        (None, _) => "off (one all-reduce after the backward pass)".into(),
    };
    let mut line = format!(
        "buckets: --bucket-mb {} → {what}; predicted step {} (one all-reduce: {}; warm-up measured {}{}), α {:.1} µs, β {:.3} ns/B{}",
        c.requested,
        ms(c.predicted_secs),
        ms(c.predicted_unbucketed_secs),
        ms(c.warmup_step_secs),
        c.trial_secs.map_or(String::new(), |t| format!(", with buckets {}", ms(t))),
        c.alpha * 1e6,
        c.beta * 1e9,
        match (&c.note, c.threaded) {
            (Some(n), _) => format!(" ({n})"),
            (None, false) => " (no communication thread: buckets run in place)".into(),
            _ => String::new(),
        }
    );
    if !c.sweep.is_empty() {
        let sweep: Vec<String> = c
            .sweep
            .iter()
            .map(|s| match s.cap_bytes {
                Some(b) => format!("{} {}×{}", mb(b), s.buckets, ms(s.predicted_secs)),
                None => format!("0 {}", ms(s.predicted_secs)),
            })
            .collect();
        line += &format!("\n         predicted per cap: {}", sweep.join(", "));
    }
    line
}

/// Medians of the steps after the warm-up (against the buckets'
/// prediction, when they were chosen).
fn measured_steps(c: Option<&BucketChoice>, steps: &[[f64; 4]]) -> String {
    let median = |i: usize| {
        let mut v: Vec<f64> = steps.iter().map(|s| s[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (step, compute, exposed, comm) = (median(0), median(1), median(2), median(3));
    let overlap = if comm > 0.0 {
        (1.0 - exposed / comm).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let predicted = match c {
        Some(c) => format!(
            "; predicted {:.1} ms, {:+.1} %",
            c.predicted_secs * 1e3,
            100.0 * (step / c.predicted_secs.max(1e-12) - 1.0)
        ),
        None => String::new(),
    };
    format!(
        "steps: median {:.1} ms (of {} steps after the first {}{predicted}): compute {:.1} ms, communication {:.1} ms, exposed {:.1} ms, overlap {:.0} %",
        step * 1e3,
        steps.len(),
        buckets::SETTLED,
        compute * 1e3,
        comm * 1e3,
        exposed * 1e3,
        100.0 * overlap
    )
}

/// `60000 train / 10000 test, 784 features, 10 classes`, and what a run
/// without a held-out set does not measure.
pub fn describe(sets: &Sets) -> String {
    let (train, n) = (&sets.train, sets.held_out.as_ref().map_or(0, |d| d.len()));
    let held = match sets.kind {
        HeldOut::Test => format!(" / {n} test"),
        HeldOut::Validation(f) => format!(" / {n} validation ({f} of the training set, stratified)"),
        HeldOut::None => ", no held-out set: accuracy not measured (give --test or --val-split)".into(),
    };
    format!(
        "{} train{held}, {} features, {} classes",
        train.len(),
        train.dim,
        train.classes
    )
}

/// `test_accuracy` → `test_acc` in the terminal table.
pub fn short_name(column: &str) -> &str {
    column.strip_suffix("uracy").unwrap_or(column)
}

/// `0:120 1:80 2:3 (mean 0.64, max 2)`: updates by staleness.
pub fn histogram(counts: &[u64]) -> String {
    let total: u64 = counts.iter().sum();
    let mean = counts
        .iter()
        .enumerate()
        .map(|(s, &c)| s as f64 * c as f64)
        .sum::<f64>()
        / total.max(1) as f64;
    let bins: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(s, c)| format!("{s}:{c}"))
        .collect();
    format!(
        "{} (mean {mean:.2}, max {})",
        bins.join(" "),
        counts.len().saturating_sub(1)
    )
}

/// What `ringreduce elastic` tells a restarted `train`
/// (`--elastic-restart`).
#[derive(Debug, Clone, PartialEq)]
pub struct RestartNote {
    number: usize,
    /// When the fault was first seen (seconds since the Unix epoch).
    fault_at: f64,
    /// The global step the failed launch had reached.
    reached: usize,
    cause: String,
}

impl RestartNote {
    /// The metrics row of this restart, resumed at global step `from` in
    /// `epoch` and training again at `now`.
    fn row(self, epoch: usize, from: usize, now: f64) -> Restart {
        Restart {
            epoch,
            step: from,
            number: self.number,
            cause: self.cause,
            lost_steps: self.reached.saturating_sub(from),
            down_secs: (now - self.fault_at).max(0.0),
        }
    }
}

/// Parses `N<TAB>UNIX_SECS<TAB>STEP<TAB>CAUSE`.
pub fn restart_note(s: &str) -> Result<RestartNote, String> {
    let f: Vec<&str> = s.splitn(4, '\t').collect();
    let bad = || format!("`{s}`: expected N, time, step and cause separated by tabs");
    match f[..] {
        [n, at, reached, cause] => Ok(RestartNote {
            number: n.parse().map_err(|_| bad())?,
            fault_at: at.parse().map_err(|_| bad())?,
            reached: reached.parse().map_err(|_| bad())?,
            cause: cause.to_string(),
        }),
        _ => Err(bad()),
    }
}
