//! Rank 0's view of a training run while it runs: an indicatif bar on a
//! terminal, plain lines every `--log-every` steps otherwise (a job log, or
//! mpirun forwarding rank 0's stderr), and the step rows of the metrics log.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use ringreduce::train::log::Row;
use ringreduce::train::StepMetrics;

/// Progress of one run, fed by the trainer's step hook.
pub struct Progress {
    state: Mutex<State>,
}

struct State {
    bar: Option<indicatif::ProgressBar>,
    log_every: usize,
    batch: usize,
    /// When this process took its first step, and the global step before it.
    start: Option<(Instant, usize)>,
    /// The steps since the last step row: count, loss sum, start.
    window: (usize, f64, Instant),
    rows: Vec<Row>,
}

impl Progress {
    /// Progress for a run of global batch `batch`, a row and (without a
    /// terminal) a line every `log_every` steps (0: none). The bar is drawn
    /// when `show` and stderr is a terminal.
    pub fn new(show: bool, log_every: usize, batch: usize) -> Progress {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let bar =
                indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] step {pos}/{len}  {msg}  ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Progress {
            state: Mutex::new(State {
                bar,
                log_every: if show { log_every } else { 0 },
                batch,
                start: None,
                window: (0, 0.0, Instant::now()),
                rows: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After every step.
    pub fn step(&self, m: &StepMetrics) {
        let mut s = self.state();
        let now = Instant::now();
        let total = m.epochs * m.steps;
        let (t0, g0) = *s.start.get_or_insert((now, m.global_step - 1));
        s.window.0 += 1;
        s.window.1 += m.loss;
        if let Some(bar) = &s.bar {
            if m.global_step == g0 + 1 {
                bar.set_length(total as u64);
                bar.set_position(g0 as u64);
                bar.reset_eta();
            }
            bar.set_prefix(format!("epoch {}/{}", m.epoch, m.epochs));
            bar.set_message(format!("loss {:.4}", m.loss));
            bar.set_position(m.global_step as u64);
        }
        let last = m.global_step == total;
        if s.log_every == 0 || !(m.global_step.is_multiple_of(s.log_every) || last) {
            return;
        }
        let (n, sum, since) = s.window;
        let loss = sum / n as f64;
        s.rows.push(Row::Step {
            epoch: m.epoch,
            step: m.global_step,
            loss,
        });
        if s.bar.is_none() {
            let rate = (n * s.batch) as f64 / now.duration_since(since).as_secs_f64().max(1e-9);
            let elapsed = now.duration_since(t0).as_secs_f64();
            let done = m.global_step - g0;
            let eta = elapsed / done as f64 * (total - m.global_step) as f64;
            eprintln!(
                "epoch {}/{}  step {}/{}  loss {loss:.4}  {rate:.0} samples/s  elapsed {}  ETA {}",
                m.epoch,
                m.epochs,
                m.global_step,
                total,
                duration(elapsed),
                duration(eta)
            );
        }
        s.window = (0, 0.0, now);
    }

    /// Prints an epoch's line on stdout without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.state().bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// Adds a row of the metrics log (before the step rows to come).
    pub fn push_row(&self, row: Row) {
        self.state().rows.push(row);
    }

    /// The step rows since the last call.
    pub fn take_rows(&self) -> Vec<Row> {
        std::mem::take(&mut self.state().rows)
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.state().bar {
            bar.finish_and_clear();
        }
    }
}

/// `42s`, `3m05s`, `2h07m`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(global_step: usize, loss: f64) -> StepMetrics {
        StepMetrics {
            epoch: (global_step - 1) / 10 + 1,
            epochs: 3,
            step: (global_step - 1) % 10 + 1,
            steps: 10,
            global_step,
            loss,
            epoch_secs: 0.0,
            step_secs: 0.0,
            compute_secs: 0.0,
            exposed_secs: 0.0,
            comm_secs: 0.0,
        }
    }

    #[test]
    fn rows_hold_the_mean_loss_of_their_window_and_the_last_step_is_logged() {
        let p = Progress::new(true, 4, 8);
        for g in 1..=30 {
            p.step(&step(g, g as f64));
        }
        let rows = p.take_rows();
        let steps: Vec<(usize, f64)> = rows
            .iter()
            .map(|r| match r {
                Row::Step { step, loss, .. } => (*step, *loss),
                _ => unreachable!(),
            })
            .collect();
        // Windows 1–4, 5–8, …, 25–28, then 29–30 at the run's last step.
        assert_eq!(steps.len(), 8);
        assert_eq!(steps[0], (4, 2.5));
        assert_eq!(steps[6], (28, 26.5));
        assert_eq!(steps[7], (30, 29.5));
        assert!(p.take_rows().is_empty());
    }

    #[test]
    fn a_resumed_run_and_other_ranks_log_as_told() {
        // Resumed at step 20: the first window starts there.
        let p = Progress::new(true, 5, 8);
        for g in 21..=25 {
            p.step(&step(g, 1.0));
        }
        assert_eq!(p.take_rows().len(), 1);
        // Not rank 0, or --log-every 0: no rows.
        for p in [Progress::new(false, 5, 8), Progress::new(true, 0, 8)] {
            for g in 1..=30 {
                p.step(&step(g, 1.0));
            }
            assert!(p.take_rows().is_empty());
        }
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(41.6), "42s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(7620.0), "2h07m");
        assert_eq!(duration(-1.0), "0s");
    }
}
