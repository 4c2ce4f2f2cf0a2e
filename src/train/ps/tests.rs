use super::*;
use crate::cost::CostParams;
use crate::train::{data, LrSchedule, Mlp, Optimizer, SyncSgd};

fn trainer(momentum: f32, epochs: usize) -> Trainer {
    SyncSgd::builder()
        .batch(60)
        .lr(0.1)
        .momentum(momentum)
        .schedule(LrSchedule::Constant)
        .epochs(epochs)
        .seed(3)
        .build()
        .unwrap()
}

fn sets() -> (Dataset, Mlp) {
    (data::synthetic(600, 6, 3, 11), Mlp::new(vec![6, 10, 3]).unwrap())
}

/// Every rank's final parameters and epochs.
fn run(p: usize, ps: &ParameterServer, t: &Trainer) -> Vec<Result<(Vec<f32>, Vec<PlanEpoch>)>> {
    let (d, model) = sets();
    Group::local(p, |g| {
        let mut params = t.init_params(&model);
        ps.fit(t, &g, &model, &mut params, &d, Some(&d))
            .map(|e| (params, e))
    })
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringreduce-ps-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("record.log")
}

#[test]
fn shards_are_contiguous_balanced_and_cover_awkward_sizes() {
    for (n, s) in [(10usize, 3usize), (2, 3), (0, 2), (7, 7), (101_770, 4)] {
        let r = shard_ranges(n, s);
        assert_eq!(r.len(), s);
        assert_eq!(r[0].start, 0);
        assert_eq!(r[s - 1].end, n);
        for k in 1..s {
            assert_eq!(r[k].start, r[k - 1].end, "n={n} s={s}");
        }
        let (lo, hi) = (
            r.iter().map(|x| x.len()).min().unwrap(),
            r.iter().map(|x| x.len()).max().unwrap(),
        );
        assert!(hi - lo <= 1, "n={n} s={s}: {r:?}");
    }
    // Fewer parameters than servers: some servers hold nothing, and it trains.
    let ps = ParameterServer {
        servers: 2,
        ..Default::default()
    };
    let model = Mlp::new(vec![1, 1]).unwrap(); // 2 parameters
    let d = data::synthetic(60, 1, 1, 5);
    let t = trainer(0.0, 1);
    let out = Group::local(5, |g| {
        let mut params = t.init_params(&model);
        ps.fit(&t, &g, &model, &mut params, &d, None).map(|_| params)
    });
    let first = out[0].as_ref().unwrap();
    assert!(out.iter().all(|o| o.as_ref().unwrap() == first));
}

#[test]
fn bad_settings_are_one_line_errors_on_every_rank() {
    let t = trainer(0.9, 1);
    for (ps, says) in [
        (
            ParameterServer {
                servers: 3,
                ..Default::default()
            },
            "leave no worker",
        ),
        (
            ParameterServer {
                servers: 0,
                ..Default::default()
            },
            "at least 1",
        ),
        (
            ParameterServer {
                n_push: 0,
                ..Default::default()
            },
            "n_push and n_fetch",
        ),
        (
            ParameterServer {
                n_fetch: 0,
                ..Default::default()
            },
            "n_push and n_fetch",
        ),
    ] {
        for r in run(3, &ps, &t) {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(says) && !e.contains('\n'), "{ps:?}: {e}");
        }
    }
    let slow = SyncSgd::builder()
        .batch(60)
        .straggler(Some((0, 2.0)))
        .build()
        .unwrap();
    for r in run(3, &ParameterServer::default(), &slow) {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("straggler rank 0 is not a worker"), "{e}");
    }
    let e = SyncSgd::builder()
        .straggler(Some((1, 0.5)))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("straggler factor 0.5 must lie between 1 and 1000"),
        "{e}"
    );
    let e = SyncSgd::builder()
        .straggler(Some((1, 1e30)))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("straggler factor 1000000000000000000000000000000 must lie"),
        "{e}"
    );
}

#[test]
fn the_workers_count_the_modelled_bytes() {
    let t = trainer(0.9, 2);
    let n = sets().1.num_params();
    for (servers, n_push, n_fetch) in [(1usize, 1usize, 1usize), (2, 3, 2), (2, 4, 7)] {
        let ps = ParameterServer {
            servers,
            n_push,
            n_fetch,
            ..Default::default()
        };
        for r in run(4, &ps, &t) {
            let (_, epochs) = r.unwrap();
            let counted: u64 = epochs.iter().map(|e| e.metrics.allreduce_bytes).sum();
            assert_eq!(counted, ps.traffic(4, n, 10, 2).worker_sent, "{ps:?}");
        }
    }
    let big = ParameterServer::default().traffic(5, 1000, 10, 1);
    // 4 workers push 4000 bytes (+ header) a step into the one server.
    assert_eq!(big.server_received, 4 * 10 * (32 + 32 + 4000));
}

#[test]
fn bulk_synchronous_with_one_server_is_synchronous_sgd() {
    // s = 0, one server, n_push = n_fetch = 1, plain SGD, constant rate:
    // the server applies each worker's mean gradient at lr/W, all computed
    // on the same version — w − lr·Σg_i/W, summed in another order than the
    // ring's, so equal within float rounding.
    let t = trainer(0.0, 3);
    let ps = ParameterServer {
        max_staleness: Some(0),
        ..Default::default()
    };
    let (d, model) = sets();
    for workers in [2usize, 3] {
        let sync = Group::local(workers, |g| {
            let mut params = t.init_params(&model);
            t.fit(&g, &model, &mut params, &d, Some(&d), |_| {}).unwrap();
            params
        });
        let out = Group::local(workers + 1, |g| {
            let mut params = t.init_params(&model);
            ps.fit(&t, &g, &model, &mut params, &d, Some(&d))
                .map(|e| (params, e))
        });
        for o in &out {
            let (params, epochs) = o.as_ref().unwrap();
            let worst = params
                .iter()
                .zip(&sync[0])
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{workers} workers: relative difference {worst}");
            // Every update was computed on the version before the round:
            // staleness 0..W−1 (the others of the round applied first).
            for e in epochs {
                assert!(e.staleness.len() <= workers, "{:?}", e.staleness);
                assert_eq!(e.staleness.iter().sum::<u64>(), (10 * workers) as u64);
            }
        }
    }
}

#[test]
fn bulk_synchronous_with_uneven_shares_is_one_process_with_the_global_batch() {
    // 128 examples a step on 3, 5 or 7 workers: shares differing by one,
    // each push weighted W/B, so the server's sum is the global mean's step.
    let t = SyncSgd::builder()
        .batch(128)
        .lr(0.1)
        .schedule(LrSchedule::Constant)
        .epochs(2)
        .seed(3)
        .build()
        .unwrap();
    let ps = ParameterServer {
        max_staleness: Some(0),
        ..Default::default()
    };
    let d = data::synthetic(1280, 6, 3, 11);
    let model = Mlp::new(vec![6, 10, 3]).unwrap();
    let one = Group::local(1, |g| {
        let mut params = t.init_params(&model);
        t.fit(&g, &model, &mut params, &d, None, |_| {}).unwrap();
        params
    })
    .remove(0);
    for workers in [3usize, 5, 7] {
        let out = Group::local(workers + 1, |g| {
            let mut params = t.init_params(&model);
            ps.fit(&t, &g, &model, &mut params, &d, None).map(|_| params)
        });
        for o in out {
            let params = o.unwrap_or_else(|e| panic!("{workers} workers: {e}"));
            let worst = params
                .iter()
                .zip(&one)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{workers} workers: relative difference {worst}");
        }
    }
}

#[test]
fn stale_updates_take_the_momentum_their_staleness_leaves() {
    // max(0, μ − τ/(τ+1)): fresh updates keep μ; staleness τ already
    // carries momentum 1 − 1/(τ+1) (Mitliagkas et al. 2016).
    assert_eq!(stale_momentum(0.9, 0), 0.9);
    assert!((stale_momentum(0.9, 1) - 0.4).abs() < 1e-7);
    assert!((stale_momentum(0.9, 3) - 0.15).abs() < 1e-7);
    assert_eq!(stale_momentum(0.9, 9), 0.0);
    assert_eq!(stale_momentum(0.5, 1), 0.0);
    assert_eq!(stale_momentum(0.0, 0), 0.0);
    // Three updates on w = (1, −2) at lr 0.1, μ = 0.9, staleness 0, 1, 3,
    // by hand: v1 = (1, 1), w = (0.9, −2.1); μ 0.4: v2 = (2.4, 0.4),
    // w = (0.66, −2.14); μ 0.15: v3 = (0.36, 4.06), w = (0.624, −2.546).
    let sgd = crate::train::Sgd::new(0.9, 0.0).unwrap();
    let mut state = OptimizerState::new(&sgd, 2);
    let mut w = vec![1.0f32, -2.0];
    for (g, tau) in [([1.0f32, 1.0], 0u64), ([2.0, 0.0], 1), ([0.0, 4.0], 3)] {
        let mu = stale_momentum(sgd.momentum().unwrap(), tau);
        sgd.step_with_momentum(&mut w, &g, 0.1, mu, &mut state);
    }
    for (got, want) in w.iter().zip([0.624f32, -2.546]) {
        assert!((got - want).abs() < 1e-6, "{w:?}");
    }
    for (got, want) in state.buffers[0].iter().zip([0.36f32, 4.06]) {
        assert!((got - want).abs() < 1e-6, "{:?}", state.buffers[0]);
    }
}

#[test]
fn the_server_discounts_momentum_only_for_stale_updates() {
    let t = trainer(0.9, 2);
    let run_with = |workers: usize, discount: bool| {
        let ps = ParameterServer {
            max_staleness: Some(0),
            discount_momentum: discount,
            ..Default::default()
        };
        let out = run(workers + 1, &ps, &t);
        out.into_iter().next().unwrap().unwrap().0
    };
    // One worker: every update is fresh (staleness 0), so the discount
    // changes nothing, to the bit.
    assert_eq!(run_with(1, true), run_with(1, false));
    // Two bulk-synchronous workers: the second push of each round is one
    // version stale and takes momentum 0.4 instead of 0.9.
    assert_ne!(run_with(2, true), run_with(2, false));
}

#[test]
fn a_recorded_asynchronous_run_replays_bit_for_bit() {
    let t = trainer(0.9, 2);
    for (servers, dynamic) in [(1usize, false), (2, false), (2, true)] {
        let path = tmp(&format!("replay{servers}{dynamic}"));
        let rec = ParameterServer {
            servers,
            record: Some(path.clone()),
            dynamic,
            ..Default::default()
        };
        let recorded = run(4, &rec, &t);
        let want = recorded[0].as_ref().unwrap().0.clone();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().count() > 1, "{text}");
        let rep = ParameterServer {
            servers,
            replay: Some(path.clone()),
            dynamic,
            ..Default::default()
        };
        for _ in 0..3 {
            for r in run(4, &rep, &t) {
                let got = r.unwrap().0;
                assert_eq!(
                    bytemuck::cast_slice::<f32, u32>(&got),
                    bytemuck::cast_slice::<f32, u32>(&want),
                    "{servers} servers"
                );
            }
        }
        // A record of another run is refused on every rank.
        let other = trainer(0.9, 3);
        let wrong: Vec<_> = Group::local(4, |g| {
            let (d, model) = sets();
            let mut params = other.init_params(&model);
            rep.fit(&other, &g, &model, &mut params, &d, None).map(drop)
        });
        for r in wrong {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("the record is of another run"), "{e}");
        }
    }
}

#[test]
fn bounded_staleness_holds_in_the_record() {
    // At every pull it answered, the server had applied at least c − s
    // pushes of every unfinished worker (c: the pulling worker's pushes).
    let t = SyncSgd::builder()
        .batch(60)
        .lr(0.1)
        .schedule(LrSchedule::Constant)
        .epochs(2)
        .seed(3)
        .straggler(Some((1, 3.0)))
        .build()
        .unwrap();
    for s in [0u64, 1, 3] {
        let path = tmp(&format!("ssp{s}"));
        let ps = ParameterServer {
            servers: 1,
            max_staleness: Some(s),
            record: Some(path.clone()),
            ..Default::default()
        };
        for r in run(4, &ps, &t) {
            r.unwrap();
        }
        let log = Log::load(&path).unwrap();
        let mut clocks = [0u64; 3];
        let steps = 10 * 2;
        for &[kind, worker, clock, _] in &log.events_of(0) {
            if kind == PUSH {
                clocks[worker as usize] = clock;
            } else {
                let low = clocks
                    .iter()
                    .filter(|&&c| c < steps)
                    .min()
                    .copied()
                    .unwrap_or(steps);
                assert!(
                    clock <= low + s,
                    "s={s}: worker {worker} served at clock {clock}, slowest at {low}"
                );
            }
        }
    }
}

#[test]
fn a_non_finite_gradient_stops_every_rank() {
    let t = SyncSgd::builder()
        .batch(60)
        .lr(1e30)
        .momentum(0.0)
        .schedule(LrSchedule::Constant)
        .epochs(2)
        .build()
        .unwrap();
    for r in run(3, &ParameterServer::default(), &t) {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("non-finite"), "{e}");
    }
}

#[test]
fn the_cost_model_prices_the_busiest_server() {
    let params = CostParams::line(1e-5, 1e-9, 0.0);
    let one = ParameterServer::default();
    let c = one.communication(5, 1000, 10, &params);
    let t = one.traffic(5, 1000, 10, 1);
    // 4 workers × (32 + 4000) bytes into the server each step, the same
    // back out; the two directions share the time, every round pays α.
    assert_eq!(t.server_received, 10 * 4 * (32 + 32 + 4000));
    assert_eq!(c.bytes, t.server_sent.max(t.worker_sent));
    assert_eq!(c.rounds, 20);
    let want = t.server_received.max(t.server_sent) as f64 * 1e-9 + 20.0 * 1e-5;
    assert!(
        (c.predicted_secs - want).abs() < 1e-12,
        "{} vs {want}",
        c.predicted_secs
    );
    // Two servers: 3 workers × half the parameters each (a model large
    // enough for the bytes to dominate α).
    let c = one.communication(5, 100_000, 10, &params);
    let two = ParameterServer {
        servers: 2,
        ..Default::default()
    }
    .communication(5, 100_000, 10, &params);
    assert!(two.predicted_secs < 0.5 * c.predicted_secs, "{two:?} vs {c:?}");
    assert_eq!(two.strategy, "ps:async,servers=2");
}

#[test]
fn a_resumed_run_continues_from_the_servers_shard_checkpoints_on_any_server_count() {
    // Bulk-synchronous rounds apply in worker order, so a run is
    // deterministic: stopping after epoch 1 and resuming must give the
    // uninterrupted run's parameters bit for bit (2 servers, momentum).
    let (d, model) = sets();
    let dir = tmp("resume");
    let path = dir.with_file_name("ckpt");
    let ps = ParameterServer {
        servers: 2,
        max_staleness: Some(0),
        ..Default::default()
    };
    let base = || {
        SyncSgd::builder()
            .batch(60)
            .lr(0.1)
            .momentum(0.9)
            .epochs(3)
            .seed(3)
    };
    let fit = |t: &Trainer| {
        Group::local(5, |g| {
            let mut params = t.init_params(&model);
            ps.fit(t, &g, &model, &mut params, &d, Some(&d))
                .map(|e| (params, e))
        })
    };
    let whole = fit(&base().build().unwrap());
    let want = whole[0].as_ref().unwrap().0.clone();
    let first = fit(&base().checkpoint(&path).stop_after(Some(1)).build().unwrap());
    assert_eq!(first[0].as_ref().unwrap().1.len(), 1);
    assert!(ps.shard_path(&path, 0).exists() && ps.shard_path(&path, 1).exists());
    let rest = fit(&base().checkpoint(&path).resume(true).build().unwrap());
    for r in rest {
        let (params, epochs) = r.unwrap();
        assert_eq!(
            epochs.iter().map(|e| e.metrics.epoch).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(
            bytemuck::cast_slice::<f32, u32>(&params),
            bytemuck::cast_slice::<f32, u32>(&want),
            "resumed ≠ uninterrupted"
        );
    }
    // Another server count re-shards: 1 server and the same 3 workers (4
    // ranks) cut their shard from the 2 servers' files. An update is per
    // element and bulk-synchronous rounds apply in worker order, so the
    // rest of the run is the uninterrupted one, bit for bit.
    let other = ParameterServer {
        servers: 1,
        max_staleness: Some(0),
        ..Default::default()
    };
    assert!(!other.shard_path(&path, 0).exists());
    fit(&base().checkpoint(&path).stop_after(Some(1)).build().unwrap());
    let t = base().checkpoint(&path).resume(true).build().unwrap();
    let one = Group::local(4, |g| {
        let mut params = t.init_params(&model);
        other
            .fit(&t, &g, &model, &mut params, &d, None)
            .map(|e| (params, e))
    });
    for r in one {
        let (params, epochs) = r.unwrap();
        assert_eq!(epochs.len(), 2);
        assert_eq!(
            bytemuck::cast_slice::<f32, u32>(&params),
            bytemuck::cast_slice::<f32, u32>(&want),
            "re-sharded onto 1 server ≠ uninterrupted on 2"
        );
    }
    assert!(other.shard_path(&path, 0).exists());
    // Without any complete set of shards: one line naming the file.
    for j in 0..2 {
        std::fs::remove_file(ps.shard_path(&path, j)).unwrap();
    }
    std::fs::remove_file(other.shard_path(&path, 0)).unwrap();
    let refused = Group::local(4, |g| {
        let mut params = t.init_params(&model);
        other.fit(&t, &g, &model, &mut params, &d, None).map(drop)
    });
    for r in refused {
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("ckpt.shard0of1") && e.contains("no complete set"),
            "{e}"
        );
    }
}

#[test]
fn evaluations_within_epochs_need_fixed_shares() {
    let t = SyncSgd::builder()
        .batch(60)
        .epochs(1)
        .eval_every(Some(3))
        .build()
        .unwrap();
    let ps = ParameterServer {
        dynamic: true,
        ..Default::default()
    };
    for r in run(3, &ps, &t) {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("evaluating every 3 steps needs fixed shares"), "{e}");
    }
}
