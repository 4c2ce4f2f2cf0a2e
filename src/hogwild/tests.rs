use std::cell::Cell;

use super::*;
use crate::hogwild::models::{Completion, Ratings};

fn svm(n: usize, dim: usize, nnz: usize, seed: u64) -> SparseLinear {
    SparseLinear::new(libsvm::synthetic(n, dim, nnz, 1.0, 0.02, seed), Loss::Hinge, 1e-3).unwrap()
}

fn config(schedule: ThreadSchedule, threads: usize, epochs: usize) -> Config {
    Config {
        schedule,
        threads,
        epochs,
        step: 0.2,
        decay: 0.9,
        ..Config::default()
    }
}

fn final_objective<P: Problem>(p: &P, cfg: &Config) -> (f64, EpochReport) {
    let w = Store::from_slice(&p.init(1));
    let r = run(p, None, &w, cfg, |_| {}).unwrap();
    let last = r.last().unwrap().clone();
    (last.objective, last)
}

#[test]
fn the_store_adds_exactly_with_cas_and_loses_nothing_on_one_thread() {
    let w = Store::zeros(3);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    w.add_exact(1, 1.0);
                }
            });
        }
    });
    assert_eq!(w.to_vec(), vec![0.0, 40_000.0, 0.0]);
    // The lossy add on one thread is the plain sum.
    let v = Store::zeros(1);
    for _ in 0..1000 {
        v.add(0, 0.5);
    }
    assert_eq!(v.load(0), 500.0);
    assert!(v.replace(0, 500.0, 1.0) && !v.replace(0, 500.0, 2.0) && v.load(0) == 1.0);
}

#[test]
fn a_pass_on_the_store_equals_one_on_plain_floats_bit_for_bit() {
    let p = svm(500, 200, 8, 3);
    let order: Vec<u32> = (0..500).collect();
    let store = Store::from_slice(&p.init(0));
    serial_pass(&p, &store, &order, 0.1);
    let mut plain = p.init(0);
    serial_pass(
        &p,
        Cell::from_mut(plain.as_mut_slice()).as_slice_of_cells(),
        &order,
        0.1,
    );
    assert_eq!(store.to_vec(), plain);
    assert!(plain.iter().any(|&x| x != 0.0));
}

#[test]
fn hogwild_on_one_thread_is_serial_sgd_bit_for_bit_with_no_conflicts() {
    let p = svm(800, 300, 10, 4);
    let (a, ra) = final_objective(&p, &config(ThreadSchedule::Serial, 1, 4));
    let (b, rb) = final_objective(&p, &config(ThreadSchedule::Hogwild, 1, 4));
    assert_eq!(a.to_bits(), b.to_bits());
    assert_eq!((ra.updates, ra.conflicts, rb.conflicts, ra.lost), (800, 0, 0, 0));
    assert_eq!(ra.writes, p.data.nnz() as u64);
}

#[test]
fn every_schedule_converges_to_within_5_percent_of_serial_sgd() {
    // 4000 sparse examples: 20 of 2000 power-law features each.
    let p = svm(4000, 2000, 20, 5);
    let (serial, _) = final_objective(&p, &config(ThreadSchedule::Serial, 1, 12));
    let start = evaluate(&p, &p.init(1)).objective;
    assert!(
        serial < 0.5 * start,
        "serial SGD itself must make progress: {start} → {serial}"
    );
    for schedule in ThreadSchedule::ALL
        .into_iter()
        .filter(|&s| s != ThreadSchedule::Serial)
    {
        for threads in [2, 4] {
            let mut cfg = config(schedule, threads, 12);
            if schedule == ThreadSchedule::Coordinate {
                // One coordinate an update (with a |e|-times step): noisier,
                // so more passes at a slower decay.
                (cfg.epochs, cfg.decay) = (60, 0.95);
            }
            let (obj, r) = final_objective(&p, &cfg);
            assert!(
                obj <= serial * 1.05,
                "{schedule} on {threads} threads: objective {obj} vs serial {serial}"
            );
            assert_eq!(r.updates, 4000, "{schedule}: every example once an epoch");
            if matches!(schedule, ThreadSchedule::Mutex | ThreadSchedule::Striped) {
                assert_eq!(r.conflicts, 0, "{schedule} holds locks across read and write");
            }
        }
    }
}

#[test]
fn exact_writes_lose_nothing_and_converge_like_lossy_ones() {
    let p = svm(3000, 1500, 15, 6);
    let (serial, _) = final_objective(&p, &config(ThreadSchedule::Serial, 1, 10));
    let mut cfg = config(ThreadSchedule::Hogwild, 3, 10);
    cfg.update = Update::Exact;
    let (obj, r) = final_objective(&p, &cfg);
    assert!(obj <= serial * 1.05, "{obj} vs {serial}");
    assert_eq!((r.lost_checked, r.lost), (0, 0));
}

#[test]
fn matrix_completion_converges_on_every_schedule() {
    let (train, test) = Ratings::synthetic(60, 50, 3, 1500, 200, 0.01, 9).unwrap();
    let mc = Completion::new(train, 3, 0.01).unwrap();
    let held = mc.with_data(test);
    let run_one = |schedule, threads| {
        let cfg = Config {
            step: 0.1,
            decay: 0.95,
            ..config(schedule, threads, 40)
        };
        let w = Store::from_slice(&mc.init(2));
        run(&mc, Some(&held), &w, &cfg, |_| {}).unwrap().pop().unwrap()
    };
    let serial = run_one(ThreadSchedule::Serial, 1);
    assert!(serial.train_rmse.unwrap() < 0.02, "{serial:?}");
    for s in [
        ThreadSchedule::Hogwild,
        ThreadSchedule::Mutex,
        ThreadSchedule::Striped,
        ThreadSchedule::RoundRobin,
    ] {
        let r = run_one(s, 3);
        assert!(
            r.objective <= serial.objective * 1.05,
            "{s}: {} vs {}",
            r.objective,
            serial.objective
        );
        assert!(r.test_rmse.unwrap() < 0.05, "{s}: {r:?}");
    }
}

#[test]
fn a_dense_problem_where_every_update_conflicts_still_ends_finite() {
    // Every example touches all 16 coordinates: the conflict graph is complete.
    let n = 2000;
    let data = SparseSet::new(
        (0..=n).map(|i| i * 16).collect(),
        (0..n).flat_map(|_| 0..16u32).collect(),
        (0..n * 16)
            .map(|k| ((k * 7919) % 13) as f32 / 13.0 + 0.1)
            .collect(),
        (0..n).map(|i| if i % 3 == 0 { 1.0 } else { -1.0 }).collect(),
        16,
    )
    .unwrap();
    let p = SparseLinear::new(data, Loss::Logistic, 1e-3).unwrap();
    let d = Diagnostics::of(&p, 0);
    assert_eq!(
        (d.omega, d.delta, d.rho, d.avg_degree),
        (16, 1.0, 1.0, (n - 1) as f64)
    );
    for update in [Update::Lossy, Update::Exact] {
        let cfg = Config {
            update,
            ..config(ThreadSchedule::Hogwild, 8, 3)
        };
        let (obj, r) = final_objective(&p, &cfg);
        assert!(obj.is_finite() && r.updates == n as u64, "{obj} {r:?}");
    }
}

#[test]
fn diagnostics_equal_hand_computed_values() {
    // Four examples over 5 features:
    //   e0 {0, 1}, e1 {1, 2}, e2 {3}, e3 {0, 1, 4}
    // Feature 1 is in 3 of 4 examples: Δ = 3/4. Ω = 3.
    // Conflicts: e0–e1 (1), e0–e3 (0, 1), e1–e3 (1); e2 alone.
    // Degrees 2, 2, 0, 2: average 1.5. ρ: e0 meets itself, e1, e3 → 3/4.
    let data = SparseSet::new(
        vec![0, 2, 4, 5, 8],
        vec![0, 1, 1, 2, 3, 0, 1, 4],
        vec![1.0; 8],
        vec![1.0, -1.0, 1.0, -1.0],
        5,
    )
    .unwrap();
    let p = SparseLinear::new(data, Loss::Hinge, 0.0).unwrap();
    let d = Diagnostics::of(&p, 0);
    assert_eq!(d.omega, 3);
    assert_eq!(d.mean_support, 2.0);
    assert_eq!(d.delta, 0.75);
    assert_eq!(d.rho, 0.75);
    assert_eq!(d.avg_degree, 1.5);
    assert_eq!(d.sampled, None);
    assert_eq!(d.tau_bound(), 4.0 / 3.0);
    // Matrix completion: entries (0,0), (0,1), (1,1) of a 2×2 matrix,
    // rank 2: supports are L_i (2 coordinates) and R_j (2).
    let mc = Completion::new(
        Ratings {
            rows: 2,
            cols: 2,
            entries: vec![(0, 0, 1.0), (0, 1, 1.0), (1, 1, 1.0)],
        },
        2,
        0.0,
    )
    .unwrap();
    let d = Diagnostics::of(&mc, 0);
    // Row 0 and column 1 each in 2 of 3 entries; (0,1) meets all three.
    assert_eq!(
        (d.omega, d.delta, d.rho, d.avg_degree),
        (4, 2.0 / 3.0, 1.0, 4.0 / 3.0)
    );
}

#[test]
fn settings_are_checked() {
    let p = svm(50, 20, 3, 1);
    let w = Store::zeros(20);
    let err = |cfg: Config| run(&p, None, &w, &cfg, |_| {}).unwrap_err().to_string();
    assert!(err(config(ThreadSchedule::Serial, 2, 1)).contains("serial schedule runs 1 thread"));
    assert!(err(config(ThreadSchedule::Hogwild, 0, 1)).contains("threads"));
    assert!(err(Config {
        step: -1.0,
        ..config(ThreadSchedule::Hogwild, 1, 1)
    })
    .contains("step size"));
    assert!(err(Config {
        decay: 1.5,
        ..config(ThreadSchedule::Hogwild, 1, 1)
    })
    .contains("decay"));
    let short = Store::zeros(19);
    let e = run(&p, None, &short, &config(ThreadSchedule::Hogwild, 1, 1), |_| {}).unwrap_err();
    assert!(e.to_string().contains("20 parameters, the store 19"), "{e}");
    assert_eq!(
        "round-robin".parse::<ThreadSchedule>().unwrap(),
        ThreadSchedule::RoundRobin
    );
    assert!("hogwash"
        .parse::<ThreadSchedule>()
        .unwrap_err()
        .to_string()
        .contains("hogwild, coordinate"));
}

#[test]
fn a_target_stops_the_run_and_the_step_decays() {
    let p = svm(1000, 400, 8, 2);
    let cfg = Config {
        target: Some(0.3),
        ..config(ThreadSchedule::Hogwild, 2, 30)
    };
    let w = Store::from_slice(&p.init(1));
    let r = run(&p, None, &w, &cfg, |_| {}).unwrap();
    assert!(r.len() < 30 && r.last().unwrap().objective <= 0.3);
    assert!(r[..r.len() - 1].iter().all(|e| e.objective > 0.3));
    assert_eq!(r[1].step, 0.2 * 0.9);
}

#[test]
fn the_hybrid_makes_one_model_on_every_rank_and_counts_its_bytes() {
    // Uniform feature popularity: a sparse problem where the ranks' changes
    // rarely touch the same coordinate.
    let data = libsvm::synthetic(3000, 1000, 12, 0.0, 0.02, 8);
    let p = SparseLinear::new(data, Loss::Hinge, 1e-3).unwrap();
    let (serial, _) = final_objective(&p, &config(ThreadSchedule::Serial, 1, 10));
    let hybrid = |combine| {
        let out = Group::local(3, |g| {
            let w = Store::from_slice(&p.init(1));
            let cfg = Config {
                rounds: 2,
                combine,
                ..config(ThreadSchedule::Hogwild, 2, 10)
            };
            let r = run_on(&g, &p, None, &w, &cfg, |_| {}).unwrap();
            (w.to_vec(), r)
        });
        for (w, r) in &out {
            assert_eq!(w, &out[0].0, "{combine}: one model on every rank");
            assert_eq!(r, &out[0].1, "{combine}: one report on every rank");
        }
        out[0].1.last().unwrap().clone()
    };
    let (avg, sum) = (hybrid(Combine::Average), hybrid(Combine::Sum));
    for last in [&avg, &sum] {
        assert_eq!(last.updates, 3000, "the ranks split each epoch");
        assert_eq!(last.averagings, 20);
        let per_call = Algorithm::Ring.exact_cost(3, 1000, 4).unwrap().bytes_sent;
        assert_eq!(last.averaging_bytes, 20 * per_call);
    }
    // Summing the ranks' changes keeps serial SGD's progress per epoch on
    // a sparse problem; averaging them moves about 1/p as far.
    assert!(
        sum.objective <= serial * 1.05,
        "sum {} vs serial {serial}",
        sum.objective
    );
    assert!(
        avg.objective > sum.objective * 1.3,
        "average {} vs sum {}",
        avg.objective,
        sum.objective
    );
}

#[test]
fn a_write_after_another_threads_write_counts_as_a_conflict() {
    // The update read coordinates 0 and 1 as 1.0 and 2.0 for its gradient;
    // another thread then wrote coordinate 1.
    for update in [Update::Lossy, Update::Exact] {
        let cfg = Config {
            update,
            ..config(ThreadSchedule::Hogwild, 2, 1)
        };
        let w = Store::from_slice(&[1.0, 5.0, 7.0]);
        let mut local = ThreadState::new(&cfg, None, 1);
        local.support = vec![0, 1];
        local.read = vec![1.0, 2.0];
        local.grad = vec![1.0, 1.0];
        local.write_all(&w, 0.5);
        let c = local.counts;
        assert_eq!(
            (c.updates, c.writes, c.conflicts, c.conflicting),
            (1, 2, 1, 1),
            "{update:?}"
        );
        assert_eq!(w.to_vec(), vec![0.5, 4.5, 7.0], "the write still lands");
        // Unchanged coordinates: no conflict.
        local.support = vec![2];
        local.read = vec![7.0];
        local.grad = vec![2.0];
        local.write_all(&w, 0.5);
        assert_eq!((local.counts.conflicts, local.counts.conflicting), (1, 1));
        assert_eq!(w.to_vec(), vec![0.5, 4.5, 6.0]);
    }
}

/// A problem that panics on one example, in a worker thread or in the
/// calling (leader) thread.
struct Panicky {
    inner: SparseLinear,
    in_worker: bool,
}

impl Problem for Panicky {
    fn examples(&self) -> usize {
        self.inner.examples()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn support(&self, e: usize, out: &mut Vec<u32>) {
        let worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("hogwild-"));
        if worker == self.in_worker && e % 97 == 5 {
            panic!("example {e} is poisoned");
        }
        self.inner.support(e, out)
    }
    fn gradient<W: Weights + ?Sized>(
        &self,
        w: &W,
        e: usize,
        support: &[u32],
        read: &mut Vec<f32>,
        grad: &mut Vec<f32>,
    ) {
        self.inner.gradient(w, e, support, read, grad)
    }
    fn loss(&self, w: &[f32], e: usize) -> f64 {
        self.inner.loss(w, e)
    }
    fn correct(&self, w: &[f32], e: usize) -> Option<bool> {
        self.inner.correct(w, e)
    }
    fn squared_error(&self, w: &[f32], e: usize) -> Option<f64> {
        self.inner.squared_error(w, e)
    }
    fn init(&self, seed: u64) -> Vec<f32> {
        self.inner.init(seed)
    }
}

#[test]
fn a_panicking_thread_ends_the_run_with_its_panic_instead_of_a_hang() {
    // Each case runs on its own thread, watched with a timeout: a hang
    // fails the test instead of stalling the suite.
    let cases: [(&str, ThreadSchedule); 5] = [
        ("worker", ThreadSchedule::Hogwild),
        ("worker", ThreadSchedule::RoundRobin),
        ("worker", ThreadSchedule::Striped),
        ("leader", ThreadSchedule::RoundRobin),
        ("callback", ThreadSchedule::Hogwild),
    ];
    for (who, schedule) in cases {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let p = Panicky {
                inner: svm(2000, 300, 8, 3),
                in_worker: who == "worker",
            };
            let cfg = config(schedule, 4, 3);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let w = Store::from_slice(&p.init(1));
                if who == "callback" {
                    let q = svm(2000, 300, 8, 3);
                    run(&q, None, &w, &cfg, |_| panic!("stdout is closed")).map(|_| ())
                } else {
                    run(&p, None, &w, &cfg, |_| {}).map(|_| ())
                }
            }));
            let _ = tx.send(outcome.is_err());
        });
        let panicked = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{who} panic under {schedule}: the run hung"));
        assert!(panicked, "{who} panic under {schedule}: the panic was swallowed");
    }
}
