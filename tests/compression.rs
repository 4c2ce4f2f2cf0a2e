//! Gradient compression in the trainer: 16-bit floats on the wire of the
//! ring, f32 accumulation. Every rank applies the same update, the bytes
//! counted are the model's (half the f32 ring's), and it learns as f32 does.

use ringreduce::compress::{wire_cost, Wire};
use ringreduce::train::{AnyStrategy, Mlp, Model, Strategy, Trainer};
use ringreduce::Algorithm;

mod training;

fn trainer(strategy: &str, epochs: usize) -> Trainer<AnyStrategy> {
    training::trainer(strategy, 0.9, epochs)
}

use training::train;

#[test]
fn a_16_bit_wire_halves_the_bytes_keeps_ranks_identical_and_learns() {
    let n = Mlp::new(vec![6, 10, 3]).unwrap().num_params();
    let p = 4;
    let f32_ring = Algorithm::Ring.exact_cost(p, n, 4).unwrap();
    let plain = train(p, &trainer("sync:ring", 3));
    let plain_acc = plain[0].1.last().unwrap().test_accuracy.unwrap();
    for wire in Wire::ALL {
        let spec = format!("sync:ring,compress={wire}");
        let runs = train(p, &trainer(&spec, 3));
        let h = &runs[0].1;
        // 10 steps per epoch, each one wire all-reduce of the gradient.
        let per_step = wire_cost(p, n);
        assert_eq!(2 * per_step.bytes_sent, f32_ring.bytes_sent);
        for m in h {
            assert_eq!(m.allreduce_bytes, 10 * per_step.bytes_sent, "{spec}");
            assert_eq!(m.rounds, 10 * per_step.rounds, "{spec}");
        }
        for r in &runs {
            assert_eq!(r.0, runs[0].0, "{spec}: every rank applies the same update");
        }
        let acc = h.last().unwrap().test_accuracy.unwrap();
        assert!(
            acc > 0.8 && acc > plain_acc - 0.05,
            "{spec}: accuracy {acc} (f32: {plain_acc})"
        );
        // Not the f32 run: the gradient did travel rounded.
        assert_ne!(runs[0].0, plain[0].0, "{spec}");
    }
}

#[test]
fn compress_spellings_parse_and_bad_ones_say_why() {
    let s: AnyStrategy = "sync,compress=bf16".parse().unwrap();
    assert_eq!(s.name(), "sync:ring,compress=bf16");
    let s: AnyStrategy = "sync:ring,compress=none".parse().unwrap();
    assert_eq!(s.name(), "sync:ring");
    for (bad, says) in [
        ("sync:butterfly,compress=fp16", "not butterfly"),
        ("sync:ring,compress=fp8", "fp8"),
        ("sync:ring,level=3", "unknown setting `level=3`"),
    ] {
        let e = bad.parse::<AnyStrategy>().unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn the_communication_model_counts_the_wire() {
    let n = 101_770;
    let s: AnyStrategy = "sync:ring,compress=fp16".parse().unwrap();
    let c = s.communication(4, n, 100, 1, &Default::default());
    assert_eq!(c.bytes, 100 * wire_cost(4, n).bytes_sent);
    let f: AnyStrategy = "sync:ring".parse().unwrap();
    let cf = f.communication(4, n, 100, 1, &Default::default());
    assert_eq!(2 * c.bytes, cf.bytes);
    assert!(c.predicted_secs < cf.predicted_secs);
}

#[test]
fn top_k_with_error_feedback_learns_and_keeps_ranks_identical() {
    let runs = train(4, &trainer("sync,compress=topk:0.1", 3));
    let acc = runs[0].1.last().unwrap().test_accuracy.unwrap();
    assert!(acc > 0.8, "accuracy {acc}");
    // Selecting and densifying are timed apart from the gather.
    for m in &runs[0].1 {
        assert!(m.encode_secs > 0.0 && m.decode_secs > 0.0, "{m:?}");
        assert!(m.encode_secs + m.decode_secs <= m.allreduce_secs, "{m:?}");
    }
    for r in &runs {
        assert_eq!(r.0, runs[0].0, "every rank applies the same update");
    }
    let s: AnyStrategy = "sync,compress=topk:0.1,error-feedback=off".parse().unwrap();
    assert_eq!(s.name(), "sync,compress=topk:0.1,error-feedback=off");
    for bad in [
        "sync,compress=topk:0",
        "sync,compress=topk:x",
        "sync:butterfly,compress=topk:0.1",
        "sync,error-feedback=on",
    ] {
        assert!(bad.parse::<AnyStrategy>().is_err(), "{bad}");
    }
}

#[test]
fn qsgd_learns_and_keeps_ranks_identical() {
    let runs = train(4, &trainer("sync,compress=qsgd:levels=16", 3));
    let acc = runs[0].1.last().unwrap().test_accuracy.unwrap();
    assert!(acc > 0.8, "accuracy {acc}");
    for r in &runs {
        assert_eq!(r.0, runs[0].0, "every rank applies the same update");
    }
    for bad in [
        "sync,compress=qsgd:levels=0",
        "sync,compress=qsgd:levels=200",
        "sync,compress=qsgd:levels=8,error-feedback=on",
    ] {
        assert!(bad.parse::<AnyStrategy>().is_err(), "{bad}");
    }
}

#[test]
fn powersgd_learns_counts_its_two_all_reduces_and_keeps_ranks_identical() {
    let model = Mlp::new(vec![6, 10, 3]).unwrap();
    for spec in [
        "sync:ring,compress=powersgd:rank=1",
        "sync:butterfly,compress=powersgd:rank=2,error-feedback=off",
    ] {
        let runs = train(3, &trainer(spec, 3));
        let acc = runs[0].1.last().unwrap().test_accuracy.unwrap();
        assert!(acc > 0.8, "{spec}: accuracy {acc}");
        for r in &runs {
            assert_eq!(r.0, runs[0].0, "{spec}: every rank applies the same update");
        }
        let s: AnyStrategy = spec.parse().unwrap();
        assert_eq!(s.name(), spec);
        let c = s.communication_for(
            3,
            model.num_params(),
            &model.matrices(),
            30,
            1,
            &Default::default(),
        );
        let (bytes, rounds) = runs[0]
            .1
            .iter()
            .fold((0, 0), |(b, r), m| (b + m.allreduce_bytes, r + m.rounds));
        assert_eq!((bytes, rounds), (c.bytes, c.rounds), "{spec}");
        // Against the same all-reduce uncompressed: rank 1 compresses both
        // layers (60 → 16 and 30 → 13 elements); rank 2 neither (a rate
        // below PyTorch's default 2), so it sends what sync does.
        let algo = spec.split([':', ',']).nth(1).unwrap();
        let plain: AnyStrategy = format!("sync:{algo}").parse().unwrap();
        let base = plain
            .communication(3, model.num_params(), 30, 1, &Default::default())
            .bytes;
        match spec.contains("rank=1") {
            true => assert!(c.bytes < base, "{spec}: {} vs {base}", c.bytes),
            false => assert_eq!(c.bytes, base, "{spec}"),
        }
    }
    for bad in [
        "sync,compress=powersgd:rank=0",
        "sync,compress=powersgd:rank=x",
        "sync:ring,compress=fp16,compress=powersgd:rank=1",
    ] {
        assert!(bad.parse::<AnyStrategy>().is_err(), "{bad}");
    }
}

#[test]
fn powersgd_is_linear_so_every_all_reduce_algorithm_carries_it() {
    // Its factors are all-reduced: any algorithm, every rank the same bits.
    for algo in Algorithm::CONCRETE {
        let spec = format!("sync:{algo},compress=powersgd:rank=1");
        let runs = train(3, &trainer(&spec, 1));
        for r in &runs {
            assert_eq!(r.0, runs[0].0, "{spec}: every rank applies the same update");
        }
        assert!(runs[0].1[0].train_loss.is_finite(), "{spec}");
    }
}

#[test]
fn random_k_shares_its_coordinates_so_every_all_reduce_carries_it() {
    // The same coordinates on every rank: a linear compressor, through any
    // algorithm, every rank the same bits; its bytes are the all-reduce of k.
    let n = Mlp::new(vec![6, 10, 3]).unwrap().num_params();
    for algo in Algorithm::CONCRETE {
        let spec = format!("sync:{algo},compress=randomk:0.25");
        let runs = train(3, &trainer(&spec, 1));
        for r in &runs {
            assert_eq!(r.0, runs[0].0, "{spec}: every rank applies the same update");
        }
        let k = n.div_ceil(4);
        if let Some(c) = algo.exact_cost(3, k, 4) {
            if algo != Algorithm::Shm && algo != Algorithm::Hierarchical {
                assert_eq!(runs[0].1[0].allreduce_bytes, 10 * c.bytes_sent, "{spec}");
            }
        }
    }
    let runs = train(4, &trainer("sync:ring,compress=randomk:0.3", 3));
    let acc = runs[0].1.last().unwrap().test_accuracy.unwrap();
    assert!(acc > 0.8, "accuracy {acc}");
    let s: AnyStrategy = "sync:ring,compress=randomk:0.3,error-feedback=on"
        .parse()
        .unwrap();
    assert_eq!(s.name(), "sync:ring,compress=randomk:0.3,error-feedback=on");
    for bad in [
        "sync,compress=randomk:0",
        "sync,compress=randomk:2",
        "sync:ring,compress=fp16,compress=randomk:0.1",
    ] {
        assert!(bad.parse::<AnyStrategy>().is_err(), "{bad}");
    }
}

#[test]
fn the_transport_counts_the_modelled_bytes_of_random_k_and_qsgd_codes() {
    use ringreduce::compress::{gathered_traffic, reduced_traffic, CodeTraffic};
    use ringreduce::train::{Qsgd, RandomK};
    use ringreduce::{CheckConfig, Counting, Group, Local, ReduceOp, Settings};
    // Data only: the call checks off, so the transport sees the codes alone.
    fn counted<F>(p: usize, f: F) -> CodeTraffic
    where
        F: Fn(&Group<Counting<ringreduce::LocalEndpoint>>) + Sync,
    {
        let stats = Local::run_apart(p, |t| {
            let settings = Settings {
                checks: CheckConfig::OFF,
                ..Settings::default()
            };
            let g = Group::with_settings(Counting::new(t), settings);
            f(&g);
            g.transport().stats()
        });
        CodeTraffic {
            bytes_sent: stats.iter().map(|s| s.bytes_sent).max().unwrap(),
            total_bytes: stats.iter().map(|s| s.bytes_sent).sum(),
            rounds: stats.iter().map(|s| s.rounds).max().unwrap(),
        }
    }
    for p in [2usize, 3, 5] {
        for n in [1usize, 10, 999] {
            for algo in [Algorithm::Ring, Algorithm::Butterfly, Algorithm::Naive] {
                let rk = RandomK::new(0.2, 7);
                let got = counted(p, |g| {
                    let mut v: Vec<f32> = (0..n).map(|i| i as f32).collect();
                    g.all_reduce_compressed(&mut rk.clone(), &mut v, ReduceOp::Avg, algo, 3)
                        .unwrap();
                });
                assert_eq!(
                    Some(got),
                    reduced_traffic(&rk, algo, p, n),
                    "randomk {algo} p={p} n={n}"
                );
            }
            let q = Qsgd { levels: 16, seed: 1 };
            let got = counted(p, |g| {
                let mut v: Vec<f32> = (0..n).map(|i| i as f32 - 4.0).collect();
                g.all_gather_compressed(&mut q.clone(), &mut v, ReduceOp::Avg, 3)
                    .unwrap();
            });
            assert_eq!(got, gathered_traffic(&q, p, n), "qsgd p={p} n={n}");
            assert_eq!(got.bytes_sent, ((p - 1) * (4 + n)) as u64);
        }
    }
}

/// The fp16 and bf16 wires run on gradient buckets (a sync strategy's
/// communication hook, started as the backward pass finishes each
/// layer): every rank applies the same update, each bucketed step sends
/// the wire ring's bytes of each bucket, and the run learns.
#[test]
fn a_16_bit_wire_runs_on_gradient_buckets() {
    use ringreduce::train::{BucketSize, Plan, PlanOptions};
    use std::sync::{Arc, Mutex};
    let p = 4;
    for wire in Wire::ALL {
        let options = PlanOptions {
            compress: Some(wire.to_string()),
            buckets: BucketSize::Bytes(1),
            ..PlanOptions::default()
        };
        let Plan::Hooks(strategy) = Plan::new(Some("sync:ring"), &options).unwrap() else {
            panic!("sync is a strategy of the trainer");
        };
        let chosen = Arc::new(Mutex::new(Vec::new()));
        let seen = chosen.clone();
        let t = trainer("sync:ring", 3)
            .with_strategy(strategy)
            .on_buckets(move |c| *seen.lock().unwrap() = c.buckets.clone());
        let runs = train(p, &t);
        let buckets = chosen.lock().unwrap().clone();
        assert!(buckets.len() > 1, "{wire}: {buckets:?}");
        // Epoch 2's ten steps come after the warm-up: all bucketed.
        let per_step: u64 = buckets.iter().map(|&k| wire_cost(p, k).bytes_sent).sum();
        assert_eq!(runs[0].1[1].allreduce_bytes, 10 * per_step, "{wire}");
        for r in &runs {
            assert_eq!(r.0, runs[0].0, "{wire}: every rank applies the same update");
        }
        let acc = runs[0].1.last().unwrap().test_accuracy.unwrap();
        assert!(acc > 0.8, "{wire}: accuracy {acc}");
    }
}
