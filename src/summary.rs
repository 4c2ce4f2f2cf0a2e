//! Several runs of the same benchmark sweep, summarised: each subject's
//! median time per size with the range over the runs, and like-for-like
//! time ratios to the vendor's `MPI_Allreduce`, paired within each run
//! (the subjects of one run share its machine state, so the ratio of two
//! times measured side by side is the trustworthy figure on a noisy host).

use std::collections::BTreeMap;

use crate::algorithms::Algorithm;
use crate::bench::Row;
use crate::error::{Error, Result};
use crate::units::human_size;

/// Median and range of one figure over the runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Median (the mean of the middle two for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Values.
    pub n: usize,
}

impl Stats {
    /// The statistics of `values`; `None` when empty.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

/// One subject at one size over the runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Subject (`auto` for every `auto:…` row).
    pub subject: String,
    /// Message size.
    pub bytes: u64,
    /// Out-of-place time, µs.
    pub time: Stats,
    /// Out-of-place bus bandwidth, GB/s.
    pub busbw: Stats,
    /// In-place time, µs, when measured.
    pub in_place: Option<Stats>,
    /// What `auto` chose in the runs (empty for other subjects).
    pub chosen: Vec<String>,
}

/// A like-for-like time ratio at one size: subject over the vendor.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    /// Message size.
    pub bytes: u64,
    /// `ring`, `auto` or `best fixed`.
    pub label: &'static str,
    /// The subject actually compared (the best fixed algorithm's name, or
    /// what `auto` chose).
    pub subject: String,
    /// Ratios paired within each run.
    pub stats: Stats,
}

/// The summary of several runs of one sweep.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Runs.
    pub runs: usize,
    /// Ranks.
    pub ranks: usize,
    /// Element type.
    pub dtype: String,
    /// Reduce op.
    pub op: String,
    /// Host of the first run.
    pub host: String,
    /// Date of the first run (`… to …` when they differ).
    pub date: String,
    /// Subjects in the order of the first run.
    pub subjects: Vec<String>,
    /// Every subject at every size.
    pub cells: Vec<Cell>,
    /// Per run: (subject, bytes) → out-of-place time.
    times: Vec<BTreeMap<(String, u64), f64>>,
}

/// `auto:ring` → `auto`.
fn subject_of(algo: &str) -> &str {
    algo.split(':').next().unwrap_or(algo)
}

impl Summary {
    /// Summarises `runs` (each the rows of one sweep).
    ///
    /// # Errors
    /// No rows, or runs of different rank counts, types or ops.
    pub fn new(runs: &[Vec<Row>]) -> Result<Summary> {
        let bad = |reason: String| Error::InvalidArgument {
            what: "bench runs",
            reason,
        };
        let first = runs
            .iter()
            .flatten()
            .next()
            .ok_or_else(|| bad("no rows to summarise".into()))?;
        let mut subjects: Vec<String> = Vec::new();
        let mut dates: Vec<&str> = Vec::new();
        for r in runs.iter().flatten() {
            if (r.ranks, &r.dtype, &r.op) != (first.ranks, &first.dtype, &first.op) {
                return Err(bad(format!(
                    "runs differ: {} ranks {} {} and {} ranks {} {}",
                    first.ranks, first.dtype, first.op, r.ranks, r.dtype, r.op
                )));
            }
            let s = subject_of(&r.algo);
            if !subjects.iter().any(|x| x == s) {
                subjects.push(s.to_string());
            }
            if !dates.contains(&r.date.as_str()) {
                dates.push(&r.date);
            }
        }
        dates.sort_unstable();
        let times: Vec<BTreeMap<(String, u64), f64>> = runs
            .iter()
            .map(|run| {
                run.iter()
                    .map(|r| ((subject_of(&r.algo).to_string(), r.bytes), r.time.avg_us))
                    .collect()
            })
            .collect();
        let mut grouped: BTreeMap<(u64, usize), Vec<&Row>> = BTreeMap::new();
        for r in runs.iter().flatten() {
            let i = subjects
                .iter()
                .position(|s| s == subject_of(&r.algo))
                .expect("every subject listed");
            grouped.entry((r.bytes, i)).or_default().push(r);
        }
        let cells = grouped
            .into_iter()
            .map(|((bytes, i), rows)| {
                let of = |f: &dyn Fn(&Row) -> Option<f64>| {
                    Stats::of(&rows.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
                };
                let mut chosen: Vec<String> = rows
                    .iter()
                    .filter_map(|r| r.algo.split_once(':').map(|(_, c)| c.to_string()))
                    .collect();
                chosen.sort();
                chosen.dedup();
                Cell {
                    subject: subjects[i].clone(),
                    bytes,
                    time: of(&|r| Some(r.time.avg_us)).expect("rows"),
                    busbw: of(&|r| Some(r.time.busbw)).expect("rows"),
                    in_place: of(&|r| r.in_place.map(|t| t.avg_us)),
                    chosen,
                }
            })
            .collect();
        Ok(Summary {
            runs: runs.len(),
            ranks: first.ranks,
            dtype: first.dtype.clone(),
            op: first.op.clone(),
            host: first.host.clone(),
            date: match dates.as_slice() {
                [one] => one.to_string(),
                [a, .., b] => format!("{a} to {b}"),
                [] => String::new(),
            },
            subjects,
            cells,
            times,
        })
    }

    /// `2 ranks, f32 sum, host, 2026-11-23, median of 5 runs`.
    pub fn title(&self) -> String {
        format!(
            "{} rank{}, {} {}, {}, {}{}",
            self.ranks,
            if self.ranks == 1 { "" } else { "s" },
            self.dtype,
            self.op,
            self.host,
            self.date,
            match self.runs {
                1 => String::new(),
                n => format!(", median of {n} runs"),
            }
        )
    }

    /// The sizes, ascending.
    pub fn sizes(&self) -> Vec<u64> {
        let mut s: Vec<u64> = self.cells.iter().map(|c| c.bytes).collect();
        s.dedup();
        s
    }

    /// The cell of `subject` at `bytes`.
    pub fn cell(&self, subject: &str, bytes: u64) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.subject == subject && c.bytes == bytes)
    }

    /// Time ratios to `mpi` at `bytes`, paired within each run: the ring,
    /// `auto`, and the fixed algorithm with the lowest median there
    /// (labelled `best fixed`, as picking it after the fact flatters it).
    pub fn ratios(&self, bytes: u64) -> Vec<Ratio> {
        let paired = |subject: &str| -> Option<Stats> {
            let v: Vec<f64> = self
                .times
                .iter()
                .filter_map(|t| {
                    let ours = t.get(&(subject.to_string(), bytes))?;
                    let vendor = t.get(&("mpi".to_string(), bytes))?;
                    Some(ours / vendor)
                })
                .collect();
            Stats::of(&v)
        };
        let fixed: Vec<&str> = Algorithm::CONCRETE.iter().map(|a| a.name()).collect();
        let best = self
            .cells
            .iter()
            .filter(|c| c.bytes == bytes && fixed.contains(&c.subject.as_str()))
            .min_by(|a, b| a.time.median.total_cmp(&b.time.median));
        let mut out = Vec::new();
        for (label, subject) in [
            ("ring", Some("ring".to_string())),
            ("auto", Some("auto".to_string())),
            ("best fixed", best.map(|c| c.subject.clone())),
        ] {
            let Some(subject) = subject else { continue };
            if let Some(stats) = paired(&subject) {
                let shown = match label {
                    "auto" => self
                        .cell("auto", bytes)
                        .map_or(subject.clone(), |c| format!("auto → {}", c.chosen.join("/"))),
                    _ => subject.clone(),
                };
                out.push(Ratio {
                    bytes,
                    label,
                    subject: shown,
                    stats,
                });
            }
        }
        out
    }

    /// The plain-text report: one line per subject and size, then the
    /// ratios.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "# {}: time per call (µs, out of place): median [min–max] over the runs\n",
            self.title()
        );
        t += &format!(
            "{:>10}  {:<18} {:>12}  {:>23}  {:>11}  {:>12}\n",
            "size", "subject", "time(us)", "[min–max]", "busbw(GB/s)", "in-place(us)"
        );
        for c in &self.cells {
            let name = match c.chosen.as_slice() {
                [] => c.subject.clone(),
                chosen => format!("{} → {}", c.subject, chosen.join("/")),
            };
            t += &format!(
                "{:>10}  {:<18} {:>12}  {:>23}  {:>11.3}  {:>12}\n",
                human_size(c.bytes),
                name,
                fmt_us(c.time.median),
                format!("[{}–{}]", fmt_us(c.time.min), fmt_us(c.time.max)),
                c.busbw.median,
                c.in_place.map_or("-".into(), |s| fmt_us(s.median))
            );
        }
        if !self.subjects.iter().any(|s| s == "mpi") {
            return t;
        }
        t += "\n# time / vendor MPI_Allreduce, paired within each run: median [min–max] (< 1: ours faster)\n";
        for b in self.sizes() {
            for r in self.ratios(b) {
                t += &format!(
                    "{:>10}  {:<12} {:<22} {:>6.2}  [{:.2}–{:.2}]\n",
                    human_size(b),
                    r.label,
                    r.subject,
                    r.stats.median,
                    r.stats.min,
                    r.stats.max
                );
            }
        }
        t
    }

    /// A Markdown table for the README: per size, the ring, `auto`, the
    /// best fixed algorithm and the vendor (median µs) and the paired
    /// ratios, median and range.
    pub fn to_markdown(&self) -> String {
        let mut t = format!("{}\n\n", self.title());
        t += "| size | ring (µs) | auto (µs) | best fixed (µs) | vendor (µs) | ring / vendor | auto / vendor | best fixed / vendor |\n";
        t += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
        let time = |s: &str, b: u64| self.cell(s, b).map_or("-".into(), |c| fmt_us(c.time.median));
        for b in self.sizes() {
            let ratios = self.ratios(b);
            let ratio = |label: &str| {
                ratios.iter().find(|r| r.label == label).map_or("-".into(), |r| {
                    format!("{:.2} ({:.2}–{:.2})", r.stats.median, r.stats.min, r.stats.max)
                })
            };
            let best = ratios.iter().find(|r| r.label == "best fixed");
            let auto = self.cell("auto", b).map_or("-".into(), |c| {
                format!("{} ({})", fmt_us(c.time.median), c.chosen.join("/"))
            });
            t += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                human_size(b),
                time("ring", b),
                auto,
                best.map_or("-".into(), |r| format!("{} ({})", time(&r.subject, b), r.subject)),
                time("mpi", b),
                ratio("ring"),
                ratio("auto"),
                ratio("best fixed")
            );
        }
        t
    }
}

/// A time in µs with three significant digits or whole microseconds.
fn fmt_us(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Timing;

    fn row(algo: &str, bytes: u64, us: f64) -> Row {
        Row {
            bytes,
            count: bytes / 4,
            dtype: "f32".into(),
            algo: algo.into(),
            time: Timing {
                avg_us: us,
                min_us: us,
                max_us: us,
                algbw: 0.0,
                busbw: 1.0,
                wrong: None,
            },
            predicted_us: None,
            in_place: None,
            in_place_predicted_us: None,
            ranks: 2,
            op: "sum".into(),
            host: "h".into(),
            date: "2026-11-23".into(),
        }
    }

    #[test]
    fn medians_ranges_and_paired_ratios() {
        assert_eq!(Stats::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Stats::of(&[]).is_none());
        // Run 2 is slow for everyone: the paired ratio does not move.
        let runs: Vec<Vec<Row>> = [1.0, 3.0, 1.1]
            .iter()
            .map(|&k| {
                vec![
                    row("ring", 8, 2.0 * k),
                    row("butterfly", 8, 1.0 * k),
                    row("auto:butterfly", 8, 1.2 * k),
                    row("mpi", 8, 1.0 * k),
                ]
            })
            .collect();
        let s = Summary::new(&runs).unwrap();
        assert_eq!(s.subjects, ["ring", "butterfly", "auto", "mpi"]);
        let ring = s.cell("ring", 8).unwrap().time;
        assert_eq!(
            (ring.median, ring.min, ring.max, ring.n),
            (2.0 * 1.1, 2.0, 6.0, 3)
        );
        let r = s.ratios(8);
        assert_eq!(
            r.iter().map(|r| r.label).collect::<Vec<_>>(),
            ["ring", "auto", "best fixed"]
        );
        assert!((r[0].stats.median - 2.0).abs() < 1e-12 && (r[0].stats.max - 2.0).abs() < 1e-12);
        assert_eq!(r[1].subject, "auto → butterfly");
        assert_eq!(r[2].subject, "butterfly");
        assert!(s
            .title()
            .contains("2 ranks, f32 sum, h, 2026-11-23, median of 3 runs"));
        let md = s.to_markdown();
        assert!(
            md.contains("| 8 B | 2.20 | 1.32 (butterfly) | 1.10 (butterfly) | 1.10 | 2.00 (2.00–2.00)"),
            "{md}"
        );
        let text = s.to_text();
        assert!(text.contains("auto → butterfly"), "{text}");
        let mut mixed = runs.clone();
        mixed[1][0].ranks = 3;
        assert!(Summary::new(&mixed).is_err());
        assert!(Summary::new(&[]).is_err());
    }
}
