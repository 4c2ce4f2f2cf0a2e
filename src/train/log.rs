//! The metrics log of a training run: one CSV file with a row every few
//! steps and a row per epoch, as PyTorch Lightning's `CSVLogger` writes it
//! (fields a row does not have are empty).
//!
//! ```text
//! epoch,step,ranks,strategy,train_loss_step,train_loss,test_accuracy,epoch_secs,samples_per_sec,allreduce_secs,allreduce_bytes,rounds,consensus_distance,encode_secs,decode_secs,compute_secs,comm_secs,scoring_bytes
//! 1,50,2,sync:ring,0.9132,,,,,,,,,,,,,
//! 1,100,2,sync:ring,0.4410,,,,,,,,,,,,,
//! 1,50,2,sync:ring,,,0.8921,0.205,,,10214400,100,,,,,,
//! 1,100,2,sync:ring,,0.6771,0.9460,0.412,14563.1,0.051,20428800,200,,0,0,0.301,0.062,32
//! ```
//!
//! A row with an accuracy but neither loss, just before its epoch's row,
//! is an evaluation within the epoch ([`TrainerBuilder::eval_every`](super::TrainerBuilder::eval_every)):
//! its `epoch_secs`, `allreduce_bytes` and `rounds` are the epoch's so far.
//! `scoring_bytes` is what the busiest rank sent to score the epoch (its
//! evaluations included), apart from the strategy's `allreduce_bytes`.
//!
//! `allreduce_secs` is the time the loop waited for communication;
//! `comm_secs` the time communication took, hidden or not (they differ
//! with gradient buckets: 1 − allreduce_secs ÷ comm_secs is the share
//! hidden behind the backward pass); `compute_secs` the forward and
//! backward passes.
//!
//! `train_loss_step` is the mean loss over the steps since the previous
//! step row; the accuracy column is `test_accuracy`, `val_accuracy`, or
//! absent when the run has no held-out set; `consensus_distance` is empty
//! for strategies whose ranks hold the same parameters. Files without the
//! last two columns (earlier versions) are still read. In pandas:
//! `df.dropna(subset=["train_loss"])` keeps the epochs.

use std::path::Path;

use super::trainer::{EpochMetrics, EvalPoint};
use crate::error::{Error, Result};

/// `field` as one CSV field: quoted (quotes doubled) when it holds a
/// comma, a quote or a line break, as RFC 4180 and pandas read it — a
/// strategy such as `postlocal:warmup=200,tau=8` has a comma.
pub fn csv_field(field: &str) -> std::borrow::Cow<'_, str> {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\"")).into()
    } else {
        field.into()
    }
}

/// Splits one CSV line into fields, undoing [`csv_field`]'s quoting.
pub fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// The mean loss of the steps up to `step` since the previous step row.
    Step {
        /// Epoch, from 1.
        epoch: usize,
        /// Steps over the whole run.
        step: usize,
        /// Mean loss per example.
        loss: f64,
    },
    /// The end of an epoch.
    Epoch(EpochMetrics),
    /// A run restarted after a fault (`ringreduce elastic`) went on from
    /// its checkpoint.
    Restart(Restart),
}

/// A restart after a fault, as its resumed run logs it: a row whose
/// `restart` column holds the cause.
#[derive(Debug, Clone, PartialEq)]
pub struct Restart {
    /// The epoch the run resumed in, from 1.
    pub epoch: usize,
    /// The global step it resumed from (the checkpoint's).
    pub step: usize,
    /// The restart's number, from 1.
    pub number: usize,
    /// What ended the run before (`rank 2 on rr-h3 killed by signal 9`).
    pub cause: String,
    /// Steps the run had taken beyond the checkpoint: done again.
    pub lost_steps: usize,
    /// Seconds from the fault's first sign to the first step after it.
    pub down_secs: f64,
}

impl Row {
    /// The row's epoch.
    pub fn epoch(&self) -> usize {
        match self {
            Row::Step { epoch, .. } => *epoch,
            Row::Epoch(m) => m.epoch,
            Row::Restart(r) => r.epoch,
        }
    }
}

/// A row with the run that wrote it (a resumed run may have another rank
/// count or all-reduce algorithm).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Ranks of the run that wrote the row.
    pub ranks: usize,
    /// Its strategy's name (`sync:ring`).
    pub strategy: String,
    /// The row.
    pub row: Row,
}

/// A training run's metrics: what the CSV holds.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsLog {
    /// Ranks of the rows [`MetricsLog::push`] adds.
    pub ranks: usize,
    /// Strategy of the rows [`MetricsLog::push`] adds.
    pub strategy: String,
    /// The accuracy column (`test_accuracy`, `val_accuracy`), or `None`.
    pub accuracy: Option<String>,
    /// Rows in order.
    pub lines: Vec<Line>,
}

const BEFORE: &str = "epoch,step,ranks,strategy,train_loss_step,train_loss";
const AFTER: &str = "epoch_secs,samples_per_sec,allreduce_secs,allreduce_bytes,rounds,consensus_distance,encode_secs,decode_secs,compute_secs,comm_secs,scoring_bytes,restart,lost_steps,down_secs";
/// The header's end before restarts were logged (still read).
const AFTER_V5: &str = "epoch_secs,samples_per_sec,allreduce_secs,allreduce_bytes,rounds,consensus_distance,encode_secs,decode_secs,compute_secs,comm_secs,scoring_bytes";
/// The header's end before the scoring bytes were logged (still read).
const AFTER_V4: &str = "epoch_secs,samples_per_sec,allreduce_secs,allreduce_bytes,rounds,consensus_distance,encode_secs,decode_secs,compute_secs,comm_secs";
/// The header's end before the compute and communication times were logged (still read).
const AFTER_V3: &str =
    "epoch_secs,samples_per_sec,allreduce_secs,allreduce_bytes,rounds,consensus_distance,encode_secs,decode_secs";
/// The header's end before the encode and decode times were logged (still read).
const AFTER_V2: &str = "epoch_secs,samples_per_sec,allreduce_secs,allreduce_bytes,rounds,consensus_distance";
/// The header's end before the consensus distance was logged (still read).
const AFTER_V1: &str = "epoch_secs,samples_per_sec,allreduce_secs,allreduce_bytes";

fn bad(reason: String) -> Error {
    Error::InvalidArgument {
        what: "metrics CSV",
        reason,
    }
}

impl MetricsLog {
    /// An empty log.
    pub fn new(ranks: usize, strategy: impl Into<String>, accuracy: Option<&str>) -> Self {
        MetricsLog {
            ranks,
            strategy: strategy.into(),
            accuracy: accuracy.map(str::to_string),
            lines: Vec::new(),
        }
    }

    /// Adds a row of the current run.
    pub fn push(&mut self, row: Row) {
        self.lines.push(Line {
            ranks: self.ranks,
            strategy: self.strategy.clone(),
            row,
        });
    }

    /// The rows.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.lines.iter().map(|l| &l.row)
    }

    /// The CSV header line (no newline).
    pub fn header(&self) -> String {
        match &self.accuracy {
            Some(a) => format!("{BEFORE},{a},{AFTER}"),
            None => format!("{BEFORE},{AFTER}"),
        }
    }

    /// The epoch rows.
    pub fn epochs(&self) -> impl Iterator<Item = &EpochMetrics> {
        self.rows().filter_map(|r| match r {
            Row::Epoch(m) => Some(m),
            _ => None,
        })
    }

    /// The step rows as (global step, loss).
    pub fn steps(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.rows().filter_map(|r| match r {
            Row::Step { step, loss, .. } => Some((*step, *loss)),
            _ => None,
        })
    }

    /// The restart rows.
    pub fn restarts(&self) -> impl Iterator<Item = &Restart> {
        self.rows().filter_map(|r| match r {
            Row::Restart(r) => Some(r),
            _ => None,
        })
    }

    /// Steps per epoch, from the first epoch row (`None` before one).
    pub fn steps_per_epoch(&self) -> Option<usize> {
        self.epochs().next().map(|m| m.step / m.epoch.max(1))
    }

    /// Drops the rows of epochs after `epoch` (what a resumed run redoes).
    pub fn truncate_after(&mut self, epoch: usize) {
        self.lines.retain(|l| l.row.epoch() <= epoch);
    }

    /// The whole CSV, header first.
    pub fn to_csv(&self) -> String {
        let mut csv = self.header() + "\n";
        let acc_cols = usize::from(self.accuracy.is_some());
        for Line {
            ranks: p,
            strategy,
            row,
        } in &self.lines
        {
            let s = csv_field(strategy);
            match row {
                Row::Step { epoch, step, loss } => {
                    csv += &format!("{epoch},{step},{p},{s},{loss},{}\n", ",".repeat(14 + acc_cols));
                }
                Row::Restart(r) => {
                    let cause = format!("restart {}: {}", r.number, r.cause);
                    csv += &format!(
                        "{},{},{p},{s},,{}{},{},{}\n",
                        r.epoch,
                        r.step,
                        ",".repeat(12 + acc_cols),
                        csv_field(&cause),
                        r.lost_steps,
                        r.down_secs
                    );
                }
                Row::Epoch(m) => {
                    // The evaluations within the epoch first: rows with an
                    // accuracy but neither loss (they need the column).
                    for e in m.evals.iter().filter(|_| acc_cols == 1) {
                        csv += &format!(
                            "{},{},{p},{s},,,{},{},,,{},{},{},,,,,,,,\n",
                            m.epoch,
                            e.step,
                            e.test_accuracy,
                            e.epoch_secs,
                            e.allreduce_bytes,
                            e.rounds,
                            e.consensus_distance.map_or(String::new(), |d| d.to_string()),
                        );
                    }
                    let acc = match (acc_cols, m.test_accuracy) {
                        (0, _) => String::new(),
                        (_, Some(a)) => format!("{a},"),
                        (_, None) => ",".into(),
                    };
                    csv += &format!(
                        "{},{},{p},{s},,{},{acc}{},{},{},{},{},{},{},{},{},{},{},,,\n",
                        m.epoch,
                        m.step,
                        m.train_loss,
                        m.epoch_secs,
                        m.samples_per_sec,
                        m.allreduce_secs,
                        m.allreduce_bytes,
                        m.rounds,
                        m.consensus_distance.map_or(String::new(), |d| d.to_string()),
                        m.encode_secs,
                        m.decode_secs,
                        m.compute_secs,
                        m.comm_secs,
                        m.scoring_bytes,
                    );
                }
            }
        }
        csv
    }

    /// Writes the CSV to `path` atomically (a reader never sees half a file).
    ///
    /// # Errors
    /// [`Error::Data`] naming the path.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::files::write_atomically(path, self.to_csv().as_bytes()).map_err(|e| Error::Data {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Reads the CSV at `path` (at most 1 GiB).
    ///
    /// # Errors
    /// [`Error::Data`] naming the path for a file that cannot be read or
    /// parsed.
    pub fn load(path: &Path) -> Result<MetricsLog> {
        let data = |reason: String| Error::Data {
            path: path.display().to_string(),
            reason,
        };
        let text = crate::files::read_text(path)?;
        MetricsLog::parse(&text).map_err(|e| data(e.to_string()))
    }

    /// Reads a CSV that [`MetricsLog::to_csv`] wrote.
    ///
    /// # Errors
    /// Another header, or a row with a wrong field count or an unreadable
    /// number (naming the line).
    pub fn parse(text: &str) -> Result<MetricsLog> {
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        // Columns after allreduce_bytes: none (v1), rounds and consensus
        // (v2), the encode and decode times (v3), the compute and
        // communication times (v4), and the scoring bytes (now).
        let extra = match () {
            _ if header.ends_with(AFTER) => 10,
            _ if header.ends_with(AFTER_V5) => 7,
            _ if header.ends_with(AFTER_V4) => 6,
            _ if header.ends_with(AFTER_V3) => 4,
            _ if header.ends_with(AFTER_V2) => 2,
            _ => 0,
        };
        let accuracy = header
            .strip_prefix(BEFORE)
            .and_then(|rest| {
                rest.strip_suffix(AFTER)
                    .or_else(|| rest.strip_suffix(AFTER_V5))
                    .or_else(|| rest.strip_suffix(AFTER_V4))
                    .or_else(|| rest.strip_suffix(AFTER_V3))
                    .or_else(|| rest.strip_suffix(AFTER_V2))
                    .or_else(|| rest.strip_suffix(AFTER_V1))
            })
            .and_then(|mid| match mid {
                "," => Some(None),
                _ => mid
                    .strip_prefix(',')
                    .and_then(|m| m.strip_suffix(','))
                    .filter(|m| matches!(*m, "test_accuracy" | "val_accuracy"))
                    .map(Some),
            })
            .ok_or_else(|| {
                bad(format!(
                    "not a `ringreduce train --metrics` file (header `{header}`)"
                ))
            })?;
        let mut log = MetricsLog::new(0, "", accuracy);
        let fields = 10 + usize::from(accuracy.is_some()) + extra;
        // Evaluations within an epoch, until its row.
        let mut evals = Vec::new();
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            let owned = csv_fields(line);
            let f: Vec<&str> = owned.iter().map(String::as_str).collect();
            if f.len() != fields {
                return Err(bad(format!(
                    "line {n}: {} fields, the header has {fields}",
                    f.len()
                )));
            }
            fn num<T: std::str::FromStr>(s: &str, n: usize, name: &str) -> Result<T> {
                s.parse()
                    .map_err(|_| bad(format!("line {n}: {name} `{s}` is not a number")))
            }
            // A column of later versions: 0 where the file has none.
            fn or_zero<T: std::str::FromStr + Default>(s: Option<&&str>, n: usize, name: &str) -> Result<T> {
                s.map_or(Ok(T::default()), |s| num(s, n, name))
            }
            // A field rows may leave empty.
            fn maybe(s: Option<&&str>, n: usize, name: &str) -> Result<Option<f64>> {
                s.filter(|s| !s.is_empty()).map(|s| num(s, n, name)).transpose()
            }
            let (epoch, step) = (num(f[0], n, "epoch")?, num(f[1], n, "step")?);
            (log.ranks, log.strategy) = (num(f[2], n, "ranks")?, f[3].to_string());
            let restart = (extra == 10)
                .then(|| &f[fields - 3..])
                .filter(|r| !r[0].is_empty());
            let row = if let Some(r) = restart {
                let (number, cause) = r[0]
                    .strip_prefix("restart ")
                    .and_then(|t| t.split_once(": "))
                    .ok_or_else(|| bad(format!("line {n}: restart `{}` is not `restart N: cause`", r[0])))?;
                Row::Restart(Restart {
                    epoch,
                    step,
                    number: num(number, n, "restart")?,
                    cause: cause.to_string(),
                    lost_steps: num(r[1], n, "lost_steps")?,
                    down_secs: num(r[2], n, "down_secs")?,
                })
            } else if let (true, true, Some(name)) = (f[4].is_empty(), f[5].is_empty(), accuracy) {
                let rest = &f[7..];
                evals.push(EvalPoint {
                    step,
                    test_accuracy: num(f[6], n, name)?,
                    epoch_secs: num(rest[0], n, "epoch_secs")?,
                    allreduce_bytes: num(rest[3], n, "allreduce_bytes")?,
                    rounds: or_zero(rest.get(4), n, "rounds")?,
                    consensus_distance: maybe(rest.get(5), n, "consensus_distance")?,
                });
                continue;
            } else if f[4].is_empty() {
                let rest = &f[6 + usize::from(accuracy.is_some())..];
                Row::Epoch(EpochMetrics {
                    epoch,
                    step,
                    train_loss: num(f[5], n, "train_loss")?,
                    test_accuracy: match accuracy {
                        Some(name) if !f[6].is_empty() => Some(num(f[6], n, name)?),
                        _ => None,
                    },
                    epoch_secs: num(rest[0], n, "epoch_secs")?,
                    samples_per_sec: num(rest[1], n, "samples_per_sec")?,
                    allreduce_secs: num(rest[2], n, "allreduce_secs")?,
                    encode_secs: or_zero(rest.get(6), n, "encode_secs")?,
                    decode_secs: or_zero(rest.get(7), n, "decode_secs")?,
                    compute_secs: or_zero(rest.get(8), n, "compute_secs")?,
                    comm_secs: or_zero(rest.get(9), n, "comm_secs")?,
                    allreduce_bytes: num(rest[3], n, "allreduce_bytes")?,
                    rounds: or_zero(rest.get(4), n, "rounds")?,
                    consensus_distance: maybe(rest.get(5), n, "consensus_distance")?,
                    scoring_bytes: or_zero(rest.get(10), n, "scoring_bytes")?,
                    evals: std::mem::take(&mut evals),
                })
            } else {
                Row::Step {
                    epoch,
                    step,
                    loss: num(f[4], n, "train_loss_step")?,
                }
            };
            log.push(row);
        }
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(e: usize, acc: Option<f64>) -> EpochMetrics {
        EpochMetrics {
            epoch: e,
            step: 10 * e,
            train_loss: 1.0 / e as f64,
            test_accuracy: acc,
            epoch_secs: 0.001234,
            samples_per_sec: 123456.5,
            allreduce_secs: 0.0001,
            encode_secs: 0.00002,
            decode_secs: 0.00003,
            allreduce_bytes: 4096,
            rounds: 20,
            compute_secs: 0.0009,
            comm_secs: 0.00025,
            consensus_distance: None,
            scoring_bytes: 16,
            evals: Vec::new(),
        }
    }

    fn log(acc: Option<&str>) -> MetricsLog {
        let mut l = MetricsLog::new(3, "sync:ring", acc);
        for e in 1..=3 {
            l.ranks = e;
            if e == 3 {
                // Resumed after a fault (its cause has a comma).
                l.push(Row::Restart(Restart {
                    epoch: 3,
                    step: 22,
                    number: 1,
                    cause: "rank 2 on h3 killed by signal 9, at step 24".into(),
                    lost_steps: 2,
                    down_secs: 1.25,
                }));
            }
            l.push(Row::Step {
                epoch: e,
                step: 10 * e - 5,
                loss: 0.1 * e as f64,
            });
            let mut m = epoch(e, acc.map(|_| 0.5 + 0.1 * e as f64));
            m.consensus_distance = (e == 2).then_some(0.25);
            // Evaluations within epoch 2 (they need the accuracy column).
            if let (2, Some(_)) = (e, acc) {
                m.evals = (1..=2)
                    .map(|k| EvalPoint {
                        step: 10 + 3 * k,
                        epoch_secs: 0.0004 * k as f64,
                        allreduce_bytes: 1024 * k as u64,
                        rounds: 5 * k as u64,
                        test_accuracy: 0.55 + 0.01 * k as f64,
                        consensus_distance: (k == 2).then_some(0.125),
                    })
                    .collect();
            }
            l.push(Row::Epoch(m));
        }
        l
    }

    #[test]
    fn round_trips_with_and_without_an_accuracy_column() {
        for acc in [Some("test_accuracy"), Some("val_accuracy"), None] {
            let l = log(acc);
            let csv = l.to_csv();
            assert_eq!(MetricsLog::parse(&csv).unwrap(), l, "{csv}");
            assert_eq!(
                csv.lines().nth(1).unwrap().split(',').count(),
                csv.lines().next().unwrap().split(',').count()
            );
        }
        // The evaluations are rows of their own, before their epoch's.
        let csv = log(Some("test_accuracy")).to_csv();
        let rows: Vec<&str> = csv.lines().collect();
        assert!(
            rows[4].starts_with("2,13,2,sync:ring,,,0.56,0.0004,,,1024,5,,"),
            "{csv}"
        );
        assert!(
            rows[5].starts_with("2,16,2,sync:ring,,,0.5700000000000001,0.0008,,,2048,10,0.125,"),
            "{csv}"
        );
        assert!(rows[6].starts_with("2,20,2,sync:ring,,0.5,0.7"), "{csv}");
        let csv = log(None).to_csv();
        assert!(!csv.contains("accuracy"), "{csv}");
        assert_eq!(log(None).steps_per_epoch(), Some(10));
        assert_eq!(log(None).steps().count(), 3);
    }

    #[test]
    fn truncation_keeps_earlier_epochs() {
        let mut l = log(Some("test_accuracy"));
        l.truncate_after(2);
        assert_eq!(l.lines.len(), 4);
        assert_eq!(l.epochs().last().unwrap().epoch, 2);
    }

    #[test]
    fn foreign_or_damaged_files_are_named_errors() {
        let csv = log(Some("test_accuracy")).to_csv();
        let e = MetricsLog::parse("size,time\n1,2\n").unwrap_err().to_string();
        assert!(e.contains("not a `ringreduce train --metrics` file"), "{e}");
        let short = csv.replacen(",sync:ring,,", ",sync:ring,", 1);
        let e = MetricsLog::parse(&short).unwrap_err().to_string();
        assert!(e.contains("line 3: 20 fields, the header has 21"), "{e}");
        let e = MetricsLog::parse(&csv.replace("123456.5", "fast"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("samples_per_sec `fast`"), "{e}");
        let e = MetricsLog::parse(&csv.replacen(",sync:ring,", ",x,sync:ring,", 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2: 22 fields"), "{e}");
    }

    #[test]
    fn strategies_with_commas_are_quoted_and_read_back() {
        let mut l = log(Some("test_accuracy"));
        l.lines[0].strategy = "postlocal:warmup=200,tau=8".into();
        l.lines[1].strategy = "say \"hi\"".into();
        let csv = l.to_csv();
        assert!(csv.contains(",\"postlocal:warmup=200,tau=8\","), "{csv}");
        let back = MetricsLog::parse(&csv).unwrap();
        assert_eq!(back.lines, l.lines);
        assert_eq!(csv_fields("a,\"b,c\",\"d\"\"e\""), ["a", "b,c", "d\"e"]);
    }

    #[test]
    fn files_of_earlier_versions_are_still_read() {
        // Drops the restart row and the last 3 + `k` columns of every
        // line (files without restart columns hold no restart rows).
        let without = |k: usize| -> String {
            let k = k + 3;
            log(Some("test_accuracy"))
                .to_csv()
                .lines()
                .filter(|line| !line.contains(",\"restart "))
                .map(|line| line.rsplitn(k + 1, ',').nth(k).unwrap().to_string() + "\n")
                .collect()
        };
        // Without the restart columns.
        let read = MetricsLog::parse(&without(0)).unwrap();
        assert_eq!(read.epochs().count(), 3);
        assert!(read.epochs().all(|m| m.scoring_bytes == 16));
        assert_eq!(read.restarts().count(), 0);
        // Without the scoring bytes.
        let read = MetricsLog::parse(&without(1)).unwrap();
        assert_eq!(read.epochs().count(), 3);
        assert!(read.epochs().all(|m| m.scoring_bytes == 0 && m.comm_secs > 0.0));
        // Without compute and communication times too.
        let read = MetricsLog::parse(&without(3)).unwrap();
        assert_eq!(read.epochs().count(), 3);
        assert!(read
            .epochs()
            .all(|m| m.compute_secs == 0.0 && m.comm_secs == 0.0 && m.encode_secs > 0.0));
        // Without encode and decode times too.
        let read = MetricsLog::parse(&without(5)).unwrap();
        assert_eq!(read.epochs().count(), 3);
        assert_eq!(read.epochs().nth(1).unwrap().consensus_distance, Some(0.25));
        assert!(read
            .epochs()
            .all(|m| m.encode_secs == 0.0 && m.decode_secs == 0.0));
        // Without rounds and consensus too.
        let read = MetricsLog::parse(&without(7)).unwrap();
        assert_eq!(read.epochs().count(), 3);
        assert!(read
            .epochs()
            .all(|m| m.consensus_distance.is_none() && m.rounds == 0 && m.encode_secs == 0.0));
    }
}
