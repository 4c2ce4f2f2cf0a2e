//! Synchronous data-parallel SGD is serial minibatch SGD: the same global
//! batch on 1 rank and on p ranks gives the same parameters, for every
//! all-reduce algorithm, and every rank holds the same bits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ringreduce::train::{
    data, Adam, AnyStrategy, GradientAllReduce, LrSchedule, Mlp, Model, Section, Step, Strategy, SyncSgd,
    Trainer,
};
use ringreduce::Transport;
use ringreduce::{Algorithm, Error, Group};

fn sgd(algorithm: Algorithm, batch: usize, epochs: usize) -> SyncSgd {
    SyncSgd::builder()
        .algorithm(algorithm)
        .batch(batch)
        .lr(0.2)
        .momentum(0.9)
        .weight_decay(1e-4)
        .schedule(LrSchedule::Cosine)
        .epochs(epochs)
        .seed(5)
        .build()
        .unwrap()
}

fn train_on(p: usize, algorithm: Algorithm) -> Vec<Vec<f32>> {
    let train = data::synthetic(240, 4, 3, 9);
    let model = Mlp::new(vec![4, 8, 3]).unwrap();
    let opt = sgd(algorithm, 12, 2);
    Group::local(p, |t| {
        let mut params = opt.init_params(&model);
        opt.fit(&t, &model, &mut params, &train, None, |_| {}).unwrap();
        params
    })
}

#[test]
fn parallel_sgd_equals_serial_sgd_for_every_algorithm() {
    let serial = train_on(1, Algorithm::Ring).remove(0);
    let scale = serial.iter().fold(0f32, |m, v| m.max(v.abs()));
    for algorithm in Algorithm::CONCRETE {
        for p in [2, 3, 4] {
            let ranks = train_on(p, algorithm);
            for (r, params) in ranks.iter().enumerate() {
                let a: &[u8] = bytemuck::cast_slice(params);
                let b: &[u8] = bytemuck::cast_slice(&ranks[0]);
                assert!(a == b, "{algorithm} p={p}: rank {r} differs from rank 0");
            }
            let worst = serial
                .iter()
                .zip(&ranks[0])
                .map(|(s, q)| (s - q).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-5 * scale,
                "{algorithm} p={p}: max difference {worst} (scale {scale})"
            );
            assert_ne!(
                ranks[0],
                sgd(algorithm, 12, 2).init_params(&Mlp::new(vec![4, 8, 3]).unwrap())
            );
        }
    }
}

#[test]
fn softmax_regression_learns_the_synthetic_blobs() {
    let train = data::synthetic(600, 5, 4, 1);
    let test = data::synthetic(300, 5, 4, 1);
    let model = Mlp::softmax(5, 4).unwrap();
    let opt = SyncSgd::builder().batch(30).lr(0.5).epochs(5).build().unwrap();
    let metrics = Group::local(3, |t| {
        let mut params = opt.init_params(&model);
        opt.fit(&t, &model, &mut params, &train, Some(&test), |_| {})
            .unwrap()
    });
    let last = metrics[0].last().unwrap();
    let accuracy = last.test_accuracy.unwrap();
    assert!(accuracy > 0.9, "accuracy {accuracy}");
    assert!(metrics[0][0].train_loss > last.train_loss, "loss did not fall");
    assert_eq!(metrics[0], metrics[2], "ranks report different metrics");
    // What the busiest rank sends: the ring's exact cost per step, 20 steps.
    let ring = Algorithm::Ring.exact_cost(3, model.num_params(), 4).unwrap();
    assert_eq!(
        (last.allreduce_bytes, last.rounds),
        (20 * ring.bytes_sent, 20 * ring.rounds)
    );
    assert!(ring.bytes_sent < (model.num_params() * 4) as u64 * 4 / 3 + 8);
    assert_eq!((last.step, metrics[0][0].step), (5 * 20, 20));
}

#[test]
fn step_losses_are_global_the_same_on_every_rank_and_one_rank_moves_no_bytes() {
    let train = data::synthetic(240, 4, 3, 1);
    let model = Mlp::softmax(4, 3).unwrap();
    let run = |p: usize| {
        Group::local(p, |g| {
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let log = seen.clone();
            let opt = SyncSgd::builder()
                .batch(24)
                .lr(0.5)
                .epochs(2)
                .build()
                .unwrap()
                .on_step(move |m| log.lock().unwrap().push((m.global_step, m.loss)));
            let mut params = opt.init_params(&model);
            let history = opt.fit(&g, &model, &mut params, &train, None, |_| {}).unwrap();
            let steps = seen.lock().unwrap().clone();
            (history, steps)
        })
    };
    let one = run(1);
    let three = run(3);
    let (history, steps) = &one[0];
    assert_eq!(steps.len(), 20);
    assert_eq!(
        steps.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    // Without a held-out set there is no accuracy; on one rank no bytes move.
    assert!(history
        .iter()
        .all(|m| m.test_accuracy.is_none() && m.allreduce_bytes == 0));
    // The epoch's loss is the mean of its steps' global batch losses.
    let mean: f64 = steps[..10].iter().map(|s| s.1).sum::<f64>() / 10.0;
    assert!(
        (history[0].train_loss - mean).abs() < 1e-9,
        "{} vs {mean}",
        history[0].train_loss
    );
    // Every rank sees the same global step losses, equal to one rank's up to rounding.
    assert_eq!(three[0].1, three[2].1);
    for (a, b) in three[0].1.iter().zip(steps) {
        assert!((a.1 - b.1).abs() < 1e-4 * b.1.abs().max(1.0), "{a:?} vs {b:?}");
    }
    assert!(three[0].0.iter().all(|m| m.allreduce_bytes > 0));
}

#[test]
fn bad_settings_and_divergence_are_errors() {
    let train = data::synthetic(100, 3, 2, 1);
    let model = Mlp::softmax(3, 2).unwrap();
    let run = |p: usize, opt: SyncSgd, train: data::Dataset| {
        Group::local(p, |t| {
            let mut params = opt.init_params(&model);
            opt.fit(&t, &model, &mut params, &train, None, |_| {})
        })
    };
    let too_small = run(3, SyncSgd::builder().batch(2).build().unwrap(), train.clone());
    for r in &too_small {
        let e = r.as_ref().unwrap_err().to_string();
        assert!(e.contains("leaves some of the 3 ranks without an example"), "{e}");
    }
    // A batch the rank count does not divide trains (uneven shares).
    let uneven = run(
        3,
        SyncSgd::builder().batch(10).epochs(1).build().unwrap(),
        train.clone(),
    );
    assert!(uneven.iter().all(|r| r.is_ok()));
    let too_big = run(1, SyncSgd::builder().batch(1000).build().unwrap(), train.clone());
    assert!(too_big[0].is_err());
    assert!(SyncSgd::builder().lr(-1.0).build().is_err());
    assert!(SyncSgd::builder().momentum(1.0).build().is_err());
    // NaN features everywhere stop every rank at the first step, rank 0 first.
    let mut poisoned = train.clone();
    poisoned.features.iter_mut().for_each(|f| *f = f32::NAN);
    let diverged = run(
        2,
        SyncSgd::builder().batch(10).epochs(1).build().unwrap(),
        poisoned,
    );
    for r in &diverged {
        match r {
            Err(Error::NonFinite {
                epoch: 1,
                step: 1,
                rank: Some(0),
                ..
            }) => {}
            other => panic!("expected a non-finite error at epoch 1 step 1: {other:?}"),
        }
    }
}

#[test]
fn a_non_finite_example_is_reported_at_its_step_and_by_the_rank_that_saw_it() {
    let train = data::synthetic(100, 3, 2, 1);
    let model = Mlp::softmax(3, 2).unwrap();
    let opt = SyncSgd::builder().batch(10).epochs(1).build().unwrap();
    let order = opt.epoch_order(1, train.len(), 5);
    // 5 ranks, 2 examples each per step: position (step−1)·10 + 2·rank.
    for (rank, step, value) in [
        (3usize, 4usize, f32::NAN),
        (1, 1, f32::INFINITY),
        (4, 10, f32::NAN),
    ] {
        let mut poisoned = train.clone();
        let i = order[(step - 1) * 10 + 2 * rank];
        poisoned.features[i * train.dim] = value;
        // Synchronous SGD agrees every step; local SGD and gossip, whose
        // replicas differ, at the epoch's end here (10 steps) — and still
        // name the step and the rank, though the non-finite values spread
        // to every rank by then.
        let plans: [ringreduce::train::Plan; 3] =
            ["sync:ring", "local:tau=4", "gossip:ring"].map(|s| s.parse().unwrap());
        for plan in &plans {
            let out = Group::local(5, |t| {
                let mut params = opt.init_params(&model);
                plan.fit(&opt, &t, &model, &mut params, &poisoned, None, |_| {})
            });
            for r in &out {
                match r {
                    Err(Error::NonFinite {
                        epoch: 1,
                        step: s,
                        rank: Some(first),
                        ..
                    }) if (*s, *first) == (step, rank) => {}
                    other => panic!(
                        "{}: {value} on rank {rank} at step {step}: {other:?}",
                        plan.name()
                    ),
                }
            }
        }
    }
}

/// A strategy whose replicas differ agrees on finiteness every 32 steps
/// and at each epoch's end, not every step: over 2 epochs of 40 steps the
/// local SGD run's agreements are 4 butterflies of one word (steps 32, 40,
/// 64, 80), and its epochs' loss is still the mean over every rank's
/// examples (equal to the loss sync reports when τ = 1).
#[test]
fn replicas_that_differ_agree_on_finiteness_every_32_steps() {
    use ringreduce::train::LocalSgd;
    let train = data::synthetic(320, 4, 3, 1);
    let model = Mlp::softmax(4, 3).unwrap();
    let opt = SyncSgd::builder().batch(8).lr(0.2).epochs(2).build().unwrap();
    let run = |tau: usize| {
        ringreduce::Local::run_apart(2, |t| {
            let g = Group::new(ringreduce::Counting::new(t));
            let local = opt.with_strategy(LocalSgd::new(tau).unwrap());
            let mut params = local.init_params(&model);
            let h = local.fit(&g, &model, &mut params, &train, None, |_| {}).unwrap();
            (h, g.transport().stats().rounds)
        })
    };
    let sync = Group::local(2, |g| {
        let mut params = opt.init_params(&model);
        opt.fit(&g, &model, &mut params, &train, None, |_| {}).unwrap()
    });
    let (local, _) = &run(1)[0];
    for (a, b) in local.iter().zip(&sync[0]) {
        assert!(
            (a.train_loss - b.train_loss).abs() < 1e-6 * b.train_loss,
            "{a:?} vs {b:?}"
        );
    }
    // τ = 1000: no averaging within the run; what is left of 80 steps is
    // the 4 agreements, each epoch's loss sum, scoring and timings, and the
    // final average (an agreement every step would be 80 rounds alone).
    let (_, rounds) = run(1000)[0];
    assert!(rounds < 40, "{rounds} rounds");
}

fn ckpt_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ringreduce-train-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A checkpoint written within an epoch (`checkpoint_every`) resumes the
/// run where it was: on the same rank count to the bit, and on another one
/// — the global batch and the data order are the same on every rank count
/// — the same trajectory up to the summation order, for synchronous SGD.
/// For local SGD the same rank count is exact, and another starts from the
/// replicas' average.
#[test]
fn a_checkpoint_within_an_epoch_resumes_on_any_rank_count() {
    let dir = ckpt_dir("within");
    let train = data::synthetic(240, 4, 3, 9);
    let model = Mlp::new(vec![4, 8, 3]).unwrap();
    // 20 steps an epoch, 3 epochs; a checkpoint every 7 steps.
    let opt = |strategy: &str, file: &str, resume: bool| {
        SyncSgd::builder()
            .strategy(strategy.parse::<AnyStrategy>().unwrap())
            .batch(12)
            .lr(0.2)
            .momentum(0.9)
            .schedule(LrSchedule::Cosine)
            .epochs(3)
            .seed(5)
            .checkpoint(dir.join(file))
            .checkpoint_every(Some(7))
            .resume(resume)
            .build()
            .unwrap()
    };
    type Resumed = Arc<Mutex<Option<ringreduce::train::Resumed>>>;
    // A whole run that keeps a copy of its checkpoint as it was after
    // step `keep` (once step `keep` + 1 is done, nothing has replaced it).
    let run = |p: usize, o: Trainer<AnyStrategy>, keep: Option<(usize, &str)>, seen: Resumed| {
        let keep = keep.map(|(k, to)| (k, to.to_string()));
        let copied = Arc::new(AtomicBool::new(false));
        let file = o.checkpoint_path().unwrap().to_path_buf();
        let o = o
            .on_step(move |m| {
                if let Some((k, to)) = &keep {
                    if m.global_step == *k + 1 && !copied.swap(true, Ordering::SeqCst) {
                        std::fs::copy(&file, file.with_file_name(to)).unwrap();
                    }
                }
            })
            .on_resume(move |r| *seen.lock().unwrap() = Some(*r));
        Group::local(p, |t| {
            let mut params = o.init_params(&model);
            o.fit(&t, &model, &mut params, &train, None, |_| {})
                .map(|h| (params, h))
        })
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
    };
    let none = || Resumed::default();
    let bits = |v: &[f32]| bytemuck::cast_slice::<f32, u8>(v).to_vec();
    for strategy in ["sync:ring", "local:tau=3"] {
        let name = strategy.replace(':', "-").replace('=', "");
        let split = format!("{name}-at28.ckpt");
        let whole = run(
            4,
            opt(strategy, &format!("{name}.ckpt"), false),
            Some((28, &split)),
            none(),
        );
        let saved = ringreduce::train::checkpoint::Checkpoint::load(&dir.join(&split)).unwrap();
        assert_eq!((saved.header.epoch, saved.header.step), (1, 8), "{strategy}");
        assert_eq!(saved.optimizer.steps, 28, "{strategy}");
        // The same rank count: the rest of the run, to the bit.
        let again = format!("{name}-again.ckpt");
        std::fs::copy(dir.join(&split), dir.join(&again)).unwrap();
        let seen = none();
        let rest = run(4, opt(strategy, &again, true), None, seen.clone());
        let at = seen.lock().unwrap().unwrap();
        assert_eq!((at.epoch, at.step, at.global_step), (1, 8, 28), "{strategy}");
        assert_eq!(
            rest[0].1.len(),
            2,
            "{strategy}: the resumed run ends epochs 2 and 3"
        );
        assert_eq!(rest[0].1[0].epoch, 2, "{strategy}");
        for (a, b) in whole.iter().zip(&rest) {
            assert_eq!(bits(&a.0), bits(&b.0), "{strategy}: resumed on 4 ranks");
        }
        // Three ranks.
        let other = format!("{name}-three.ckpt");
        std::fs::copy(dir.join(&split), dir.join(&other)).unwrap();
        let three = run(3, opt(strategy, &other, true), None, none());
        match strategy {
            "sync:ring" => {
                let direct = run(
                    3,
                    opt(strategy, &format!("{name}-direct.ckpt"), false),
                    None,
                    none(),
                );
                for run in [&three, &direct] {
                    for r in run {
                        let worst =
                            r.0.iter()
                                .zip(&whole[0].0)
                                .map(|(a, b)| (a - b).abs())
                                .fold(0f32, f32::max);
                        assert!(
                            worst < 1e-4,
                            "{strategy}: 3 ranks, 4 ranks: max difference {worst}"
                        );
                        assert_eq!(bits(&r.0), bits(&run[0].0), "{strategy}: ranks differ");
                    }
                }
            }
            _ => {
                // Not the 4-rank trajectory (the replicas were averaged at
                // step 28, not at 30), but a run that ends in agreement.
                let loss = three[0].1.last().unwrap().train_loss;
                let base = whole[0].1.last().unwrap().train_loss;
                assert!(
                    loss.is_finite() && loss < 1.5 * base,
                    "{strategy}: loss {loss} vs {base}"
                );
                for r in &three {
                    assert_eq!(
                        bits(&r.0),
                        bits(&three[0].0),
                        "{strategy}: the final average differs"
                    );
                }
            }
        }
    }
    // Checkpointing every 0 steps, or without a path, is refused.
    for b in [
        SyncSgd::builder()
            .checkpoint(dir.join("x"))
            .checkpoint_every(Some(0)),
        SyncSgd::builder().checkpoint_every(Some(5)),
    ] {
        let e = b.build().unwrap_err().to_string();
        assert!(e.contains("checkpointing every"), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resuming_gives_exactly_the_uninterrupted_parameters() {
    let dir = ckpt_dir("resume");
    let train = data::synthetic(240, 4, 3, 9);
    let model = Mlp::new(vec![4, 8, 3]).unwrap();
    let opt = |epochs: usize, file: &str, resume: bool| {
        SyncSgd::builder()
            .batch(12)
            .lr(0.2)
            .momentum(0.9)
            .schedule(LrSchedule::Constant)
            .epochs(epochs)
            .seed(5)
            .checkpoint(dir.join(file))
            .resume(resume)
            .build()
            .unwrap()
    };
    let run = |p: usize, o: SyncSgd| {
        Group::local(p, |t| {
            let mut params = o.init_params(&model);
            o.fit(&t, &model, &mut params, &train, None, |_| {})
                .map(|h| (params, h.len()))
        })
    };
    let whole = run(2, opt(3, "whole.ckpt", false)).remove(0).unwrap();
    let first = run(2, opt(1, "split.ckpt", false)).remove(0).unwrap();
    assert_eq!(first.1, 1);
    let rest = run(2, opt(3, "split.ckpt", true)).remove(0).unwrap();
    assert_eq!(rest.1, 2, "resume must run only the remaining epochs");
    assert_eq!(
        bytemuck::cast_slice::<f32, u8>(&rest.0),
        bytemuck::cast_slice::<f32, u8>(&whole.0)
    );
    // On another rank count that divides the batch: the same up to summation order.
    run(2, opt(1, "other.ckpt", false)).remove(0).unwrap();
    let three = run(3, opt(3, "other.ckpt", true));
    for r in &three {
        let (params, _) = r.as_ref().unwrap();
        let worst = params
            .iter()
            .zip(&whole.0)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "resumed on 3 ranks: max difference {worst}");
    }

    // A checkpoint of another model is refused on every rank, and a run
    // that diverges leaves the last good checkpoint as it was.
    let other = Mlp::new(vec![4, 5, 3]).unwrap();
    let refused = Group::local(2, |t| {
        let o = opt(3, "whole.ckpt", true);
        let mut params = o.init_params(&other);
        o.fit(&t, &other, &mut params, &train, None, |_| {})
    });
    assert!(
        refused
            .iter()
            .all(|r| r.as_ref().unwrap_err().to_string().contains("does not match")),
        "{refused:?}"
    );
    let before = std::fs::read(dir.join("split.ckpt")).unwrap();
    let mut poisoned = train.clone();
    poisoned.features[0] = f32::NAN;
    // (A fresh run: resuming on other data is refused before any step.)
    let diverged = Group::local(2, |t| {
        let o = opt(5, "split.ckpt", false);
        let mut params = o.init_params(&model);
        o.fit(&t, &model, &mut params, &poisoned, None, |_| {})
    });
    assert!(
        diverged.iter().all(|r| matches!(r, Err(Error::NonFinite { .. }))),
        "{diverged:?}"
    );
    assert_eq!(
        std::fs::read(dir.join("split.ckpt")).unwrap(),
        before,
        "checkpoint changed"
    );

    // Resuming is refused, on every rank and saying why, with other data,
    // another learning rate, or a checkpoint already at the last epoch.
    let refuse = |o: SyncSgd, data: &data::Dataset, why: &str| {
        let out = Group::local(2, |t| {
            let mut params = o.init_params(&model);
            o.fit(&t, &model, &mut params, data, None, |_| {}).map(drop)
        });
        for r in out {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    };
    refuse(
        opt(3, "whole.ckpt", true),
        &data::synthetic(240, 4, 3, 10),
        "this run's data are",
    );
    let other_lr = SyncSgd::builder()
        .batch(12)
        .lr(0.1)
        .momentum(0.9)
        .epochs(5)
        .seed(5)
        .checkpoint(dir.join("whole.ckpt"))
        .resume(true)
        .build()
        .unwrap();
    refuse(other_lr, &train, "this run has lr 0.1");
    refuse(
        opt(3, "whole.ckpt", true),
        &train,
        "checkpoint is at epoch 3 and this run trains 3",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A strategy with state: the gradient all-reduce, plus a running sum of
/// the averaged gradient that goes into checkpoints.
#[derive(Debug, Clone, Default)]
struct Accumulating {
    sum: Vec<f32>,
    steps: f32,
}

impl Strategy for Accumulating {
    fn name(&self) -> String {
        "accumulating".into()
    }
    fn start<C: Transport>(&mut self, _ctx: &mut Step<'_, C>, params: &mut [f32]) -> ringreduce::Result<()> {
        if self.sum.is_empty() {
            self.sum = vec![0.0; params.len()];
        }
        Ok(())
    }
    fn after_backward<C: Transport>(
        &mut self,
        ctx: &mut Step<'_, C>,
        grad: &mut [f32],
    ) -> ringreduce::Result<()> {
        GradientAllReduce::new(Algorithm::Butterfly).after_backward(ctx, grad)?;
        self.sum.iter_mut().zip(grad.iter()).for_each(|(s, g)| *s += g);
        self.steps += 1.0;
        Ok(())
    }
    fn state(&self) -> Vec<Section> {
        vec![
            Section {
                name: "sum".into(),
                values: self.sum.clone(),
            },
            Section {
                name: "steps".into(),
                values: vec![self.steps],
            },
        ]
    }
    fn restore(&mut self, sections: &[Section]) -> ringreduce::Result<()> {
        match sections {
            [sum, steps] if sum.name == "sum" && steps.name == "steps" => {
                self.sum = sum.values.clone();
                self.steps = steps.values[0];
                Ok(())
            }
            _ => Err(Error::InvalidArgument {
                what: "strategy state",
                reason: format!("{} sections", sections.len()),
            }),
        }
    }
}

#[test]
fn adam_and_a_stateful_strategy_resume_exactly() {
    let dir = ckpt_dir("state");
    let train = data::synthetic(240, 4, 3, 9);
    let model = Mlp::new(vec![4, 8, 3]).unwrap();
    let opt = |epochs: usize, file: &str, resume: bool| {
        SyncSgd::builder()
            .batch(12)
            .lr(0.05)
            .epochs(epochs)
            .seed(5)
            .optimizer(Adam::default())
            .checkpoint(dir.join(file))
            .resume(resume)
            .strategy(Accumulating::default())
            .build()
            .unwrap()
    };
    let run = |p: usize, o: Trainer<Accumulating>| {
        Group::local(p, |g| {
            let mut params = o.init_params(&model);
            let h = o
                .fit(&g, &model, &mut params, &train, Some(&train), |_| {})
                .unwrap();
            (params, h)
        })
    };
    let whole = run(2, opt(3, "whole.ckpt", false)).remove(0);
    run(2, opt(1, "split.ckpt", false));
    let rest = run(2, opt(3, "split.ckpt", true)).remove(0);
    assert_eq!(rest.1.len(), 2, "resume must run only the remaining epochs");
    assert_eq!(
        bytemuck::cast_slice::<f32, u8>(&rest.0),
        bytemuck::cast_slice::<f32, u8>(&whole.0),
        "parameters differ after resuming with Adam"
    );
    // The checkpoints hold the same optimizer and strategy state, byte for byte.
    let (a, b) = (
        std::fs::read(dir.join("whole.ckpt")).unwrap(),
        std::fs::read(dir.join("split.ckpt")).unwrap(),
    );
    assert!(a == b, "final checkpoints differ");
    let c = ringreduce::train::checkpoint::Checkpoint::load(&dir.join("whole.ckpt")).unwrap();
    assert_eq!(
        (c.header.optimizer.as_str(), c.optimizer.buffers.len()),
        ("adam", 2)
    );
    assert_eq!(c.strategy[1].values, vec![3.0 * 20.0]);
    // Adam learns: the loss falls epoch by epoch.
    assert!(
        whole.1.windows(2).all(|w| w[1].train_loss < w[0].train_loss),
        "{:?}",
        whole.1
    );
    // An SGD run cannot resume an Adam checkpoint.
    let sgd = SyncSgd::builder()
        .batch(12)
        .seed(5)
        .epochs(4)
        .checkpoint(dir.join("whole.ckpt"))
        .resume(true)
        .build()
        .unwrap();
    let refused = Group::local(2, |g| {
        let mut params = sgd.init_params(&model);
        sgd.fit(&g, &model, &mut params, &train, None, |_| {})
            .unwrap_err()
            .to_string()
    });
    assert!(
        refused.iter().all(|e| e.contains("optimizer adam")),
        "{refused:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Visits the examples in their order every epoch, rank r of p taking
/// the r-th of p equal slices of each global batch: a run on the first
/// k·B examples is the first k steps of a run on all of them.
#[derive(Debug)]
struct InOrder;

impl ringreduce::train::BatchSource for InOrder {
    fn check(&self, batch: usize, n: usize, p: usize) -> ringreduce::Result<()> {
        assert!(batch.is_multiple_of(p) && batch <= n, "a test setting");
        Ok(())
    }
    fn steps(&self, batch: usize, n: usize, _p: usize) -> usize {
        n / batch
    }
    fn order(&self, _seed: u64, _epoch: usize, n: usize, _p: usize) -> Vec<usize> {
        (0..n).collect()
    }
    fn local<'a>(&self, order: &'a [usize], batch: usize, step: usize, rank: usize, p: usize) -> &'a [usize] {
        let at = step * batch + rank * (batch / p);
        &order[at..at + batch / p]
    }
}

#[test]
fn an_evaluation_within_an_epoch_scores_the_parameters_of_its_step() {
    use ringreduce::train::{Dataset, Plan};
    let (batch, steps) = (8, 6);
    let all = data::synthetic(batch * steps, 4, 3, 21);
    let test = data::synthetic(90, 4, 3, 22);
    let model = Mlp::new(vec![4, 8, 3]).unwrap();
    let first = |k: usize| Dataset {
        features: all.features[..k * batch * all.dim].to_vec(),
        labels: all.labels[..k * batch].to_vec(),
        ..all.clone()
    };
    // Local SGD's replicas differ at step 4 (the last average was at 3):
    // the point scores their average and measures their distance.
    for (spec, p) in [("sync:ring", 2), ("local:tau=3", 2), ("ps:ssp=0", 3)] {
        let plan: Plan = spec.parse().unwrap();
        let fit = |d: &Dataset, every: Option<usize>| {
            let t = SyncSgd::builder()
                .batch(batch)
                .lr(0.3)
                .epochs(1)
                .seed(4)
                .batches(InOrder)
                .eval_every(every)
                .build()
                .unwrap();
            let model = &model;
            let out = Group::local(p, |g| {
                let mut params = t.init_params(model);
                let epochs = plan.fit(&t, &g, model, &mut params, d, Some(&test), |_| {});
                (epochs.unwrap(), params)
            });
            assert!(out.iter().all(|o| o == &out[0]), "{spec}: ranks disagree");
            out.into_iter().next().unwrap()
        };
        let (whole, params) = fit(&all, Some(2));
        // Scoring within the epoch leaves the training as it was.
        assert_eq!(params, fit(&all, None).1, "{spec}");
        let m = &whole[0].metrics;
        // Step 6 ends the epoch: its row scores it, not a point.
        let at: Vec<usize> = m.evals.iter().map(|e| e.step).collect();
        assert_eq!(at, [2, 4], "{spec}");
        for point in &m.evals {
            let (short, _) = fit(&first(point.step), None);
            let end = &short[0].metrics;
            assert_eq!(
                Some(point.test_accuracy),
                end.test_accuracy,
                "{spec} at {}",
                point.step
            );
            assert!(
                point.epoch_secs > 0.0 && point.epoch_secs < m.epoch_secs,
                "{spec}"
            );
            // A shorter run of local SGD averages at its last step.
            if !spec.starts_with("local") {
                assert_eq!(point.consensus_distance, end.consensus_distance, "{spec}");
                assert_eq!(point.allreduce_bytes, end.allreduce_bytes, "{spec}");
            }
        }
        if spec.starts_with("local") {
            // Averaged at step 3 and 6: none by step 2, half by step 4.
            let [two, four] = &m.evals[..] else { unreachable!() };
            assert!(two.consensus_distance.unwrap() > 0.0 && four.consensus_distance.unwrap() > 0.0);
            assert_eq!(
                (two.allreduce_bytes, 2 * four.allreduce_bytes),
                (0, m.allreduce_bytes)
            );
        }
        // Each point's scoring is counted apart from the strategy's bytes.
        let once = fit(&all, None).0[0].metrics.scoring_bytes;
        assert!(
            once > 0 && m.scoring_bytes == 3 * once,
            "{spec}: {} vs {once}",
            m.scoring_bytes
        );
    }
}

#[test]
fn evaluating_every_zero_steps_or_without_a_held_out_set_is_refused() {
    let e = SyncSgd::builder()
        .eval_every(Some(0))
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("evaluating every 0 steps"), "{e}");
    let train = data::synthetic(48, 4, 3, 1);
    let model = Mlp::new(vec![4, 3]).unwrap();
    let t = SyncSgd::builder().batch(8).eval_every(Some(2)).build().unwrap();
    let e = Group::local(2, |g| {
        let mut params = t.init_params(&model);
        t.fit(&g, &model, &mut params, &train, None, |_| {})
            .unwrap_err()
            .to_string()
    });
    assert!(
        e[0].contains("evaluating every 2 steps needs a held-out set"),
        "{}",
        e[0]
    );
}
