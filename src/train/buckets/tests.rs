use std::sync::{Arc, Mutex};

use super::*;
use crate::train::{data, AnyStrategy, GradientAllReduce, Mlp, Strategy, SyncSgd};

#[test]
fn sizes_parse_as_mib_auto_or_off_and_bad_ones_say_why() {
    assert_eq!("auto".parse::<BucketSize>().unwrap(), BucketSize::Auto);
    assert_eq!("0".parse::<BucketSize>().unwrap(), BucketSize::Off);
    assert_eq!("25".parse::<BucketSize>().unwrap(), BucketSize::Bytes(25 << 20));
    assert_eq!("0.5".parse::<BucketSize>().unwrap(), BucketSize::Bytes(1 << 19));
    for bad in ["-1", "many", "inf", "NaN", ""] {
        let e = bad.parse::<BucketSize>().unwrap_err().to_string();
        assert!(e.contains("bucket size"), "{bad}: {e}");
    }
    assert_eq!(BucketSize::Bytes(4 << 20).to_string(), "4");
    assert_eq!("0.0001".parse::<BucketSize>().unwrap().to_string(), "0.0001");
    assert_eq!("0.5".parse::<BucketSize>().unwrap().to_string(), "0.5");
}

#[test]
fn layers_gather_last_first_into_buckets_of_at_least_the_cap() {
    // Four layers of 10 f32 (40 B), reported last first.
    let layers = [30..40, 20..30, 10..20, 0..10];
    assert_eq!(cut(&layers, 1), vec![30..40, 20..30, 10..20, 0..10]);
    assert_eq!(cut(&layers, 40), vec![30..40, 20..30, 10..20, 0..10]);
    assert_eq!(cut(&layers, 41), vec![20..40, 0..20]);
    assert_eq!(cut(&layers, 100), vec![10..40, 0..10]);
    assert_eq!(cut(&layers, 121), vec![0..40]);
    assert_eq!(cut(&layers, 80), vec![20..40, 0..20]);
    assert_eq!(cut(&layers, 81), vec![10..40, 0..10]);
    // Parts that do not adjoin are never merged.
    assert_eq!(cut(&[0..10, 20..30, 10..20], 1000), vec![0..10, 10..30]);
    assert!(cut(&[], 10).is_empty());
}

#[test]
fn the_timeline_replays_buckets_one_after_the_other() {
    // Layers ready at 2, 3, 5 s (last layer first); the pass ends at 5 s,
    // then 1 s of the rest. Each bucket takes 1 s + 0.1 s per element.
    let t = Timeline {
        layers: vec![(20..30, 2.0), (10..20, 3.0), (0..10, 5.0)],
        backward_end: 5.0,
        rest: 1.0,
    };
    let secs = |len: usize| 1.0 + 0.1 * len as f64;
    // One bucket: starts at 5, takes 4 → 9, + 1.
    let whole = [Range { start: 0, end: 30 }];
    assert!((t.predict(&whole, true, secs) - 10.0).abs() < 1e-12);
    // Three: 2→4, max(3,4)→6, max(5,6)→8; + 1.
    assert!((t.predict(&[20..30, 10..20, 0..10], true, secs) - 9.0).abs() < 1e-12);
    // Two: [10..30] ready at 3 → 3 + 3 = 6; [0..10] at max(5,6) → 8; + 1.
    assert!((t.predict(&[10..30, 0..10], true, secs) - 9.0).abs() < 1e-12);
    // In place, the calls hold up the pass: 5 + 2 + 2 + 2 + 1.
    assert!((t.predict(&[20..30, 10..20, 0..10], false, secs) - 12.0).abs() < 1e-12);
}

#[test]
fn the_fit_recovers_a_line_from_two_calls() {
    for (algorithm, p) in [
        (Algorithm::Ring, 4),
        (Algorithm::Butterfly, 3),
        (Algorithm::Naive, 5),
    ] {
        let truth = CostParams::line(30e-6, 8e-9, 0.0);
        let t = |n: usize| cost(algorithm, p, n, 4).predict(&truth, 4);
        let line = fit(algorithm, p, 256, t(256), 1 << 20, t(1 << 20));
        let (a, b) = (line.lines[0].alpha, line.lines[0].beta);
        assert!(
            (a - 30e-6).abs() < 1e-9 && (b - 8e-9).abs() < 1e-13,
            "{algorithm}: α {a} β {b}"
        );
    }
    // Noise that would make α negative leaves it at 0.
    let line = fit(Algorithm::Ring, 4, 256, 0.0, 1 << 20, 1e-3);
    assert_eq!(line.lines[0].alpha, 0.0);
    assert!(line.lines[0].beta > 0.0);
}

#[test]
fn only_the_ring_family_at_three_or_more_ranks_depends_on_the_cut() {
    for a in [
        Algorithm::Ring,
        Algorithm::Pipelined,
        Algorithm::Hierarchical,
        Algorithm::Auto,
    ] {
        assert!(position_free(a, 2) && !position_free(a, 3), "{a}");
    }
    for a in [
        Algorithm::Butterfly,
        Algorithm::Rabenseifner,
        Algorithm::Naive,
        Algorithm::Central,
    ] {
        assert!(position_free(a, 5), "{a}");
    }
}

/// Trains `p` thread ranks with `size` and returns rank 0's parameters and
/// the bucket choice.
fn train(p: usize, algorithm: Algorithm, size: BucketSize) -> (Vec<f32>, Option<BucketChoice>) {
    train_with(p, GradientAllReduce::new(algorithm).into(), size)
}

/// [`train`] with `strategy`, its buckets of `size`.
fn train_with(p: usize, mut strategy: AnyStrategy, size: BucketSize) -> (Vec<f32>, Option<BucketChoice>) {
    *strategy.bucket_size().expect("a strategy with buckets") = size;
    let set = data::synthetic(360, 6, 3, 7);
    let model = Mlp::new(vec![6, 16, 12, 3]).unwrap();
    let chosen = Arc::new(Mutex::new(None));
    let hook = chosen.clone();
    let sgd = SyncSgd::builder()
        .batch(30)
        .lr(0.3)
        .momentum(0.9)
        .epochs(2)
        .strategy(strategy)
        .build()
        .unwrap()
        .on_buckets(move |c| *hook.lock().unwrap() = Some(c.clone()));
    let out = Group::local(p, |g| {
        let mut params = sgd.init_params(&model);
        sgd.fit(&g, &model, &mut params, &set, None, |_| {}).unwrap();
        params
    });
    for other in &out[1..] {
        assert!(bits(other) == bits(&out[0]), "ranks differ");
    }
    let c = chosen.lock().unwrap().clone();
    (out[0].clone(), c)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn the_bucketed_trainer_equals_the_unbucketed_one_bit_for_bit() {
    let cases = [
        (2, Algorithm::Ring),
        (2, Algorithm::Rabenseifner),
        (3, Algorithm::Butterfly),
        (3, Algorithm::Naive),
        (5, Algorithm::Rabenseifner),
        (5, Algorithm::Central),
    ];
    for (p, algorithm) in cases {
        let (plain, none) = train(p, algorithm, BucketSize::Off);
        assert!(none.is_none());
        // 100 B: every layer its own bucket (4 of them: 3·12+3, 12·16+12, …).
        let (bucketed, choice) = train(p, algorithm, BucketSize::Bytes(100));
        let choice = choice.expect("the buckets were chosen");
        assert_eq!(choice.buckets, vec![39, 204, 112], "p {p} {algorithm}");
        assert!(
            bits(&plain) == bits(&bucketed),
            "p {p} {algorithm}: bucketed differs"
        );
    }
}

#[test]
fn the_ring_at_three_ranks_cuts_its_sum_differently_but_stays_close() {
    let (plain, _) = train(3, Algorithm::Ring, BucketSize::Off);
    let (bucketed, choice) = train(3, Algorithm::Ring, BucketSize::Bytes(100));
    assert_eq!(choice.unwrap().buckets.len(), 3);
    let worst = plain
        .iter()
        .zip(&bucketed)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "relative difference {worst}");
    // Why position_free exists: the bits do differ.
    assert!(bits(&plain) != bits(&bucketed));
}

#[test]
fn auto_without_a_communication_thread_keeps_one_all_reduce() {
    let (plain, _) = train(2, Algorithm::Ring, BucketSize::Off);
    let (auto, choice) = train(2, Algorithm::Ring, BucketSize::Auto);
    let c = choice.unwrap();
    assert!(
        !c.threaded && c.cap_bytes.is_none() && c.buckets == vec![plain.len()],
        "{c:?}"
    );
    assert_eq!(c.warmup_steps, WARMUP);
    assert!(bits(&plain) == bits(&auto));
}

#[test]
fn auto_leaves_the_ring_at_three_ranks_unbucketed_and_says_why() {
    let (plain, _) = train(3, Algorithm::Ring, BucketSize::Off);
    let (auto, choice) = train(3, Algorithm::Ring, BucketSize::Auto);
    let c = choice.unwrap();
    assert!(c.cap_bytes.is_none() && c.buckets.len() == 1, "{c:?}");
    let note = c.note.unwrap();
    assert!(
        note.contains("ring at 3 ranks sums each chunk starting from another rank"),
        "{note}"
    );
    assert!(bits(&plain) == bits(&auto));
}

/// Random-k (coordinates drawn for the whole gradient, each bucket sending
/// those inside it) and PowerSGD (each weight matrix in the bucket that
/// holds it) run on buckets — each layer its own — and train the same
/// bits as on the whole gradient: at 2 ranks with any algorithm, at 3
/// with the butterfly; with and without error feedback, and with a layer
/// whose matrix PowerSGD sends uncompressed (12×3 at rank 2).
#[test]
fn random_k_and_powersgd_on_buckets_equal_the_whole_gradient_bit_for_bit() {
    let cases = [
        (2, "sync:ring,compress=randomk:0.3"),
        (2, "sync:ring,compress=randomk:0.2,error-feedback=on"),
        (3, "sync:butterfly,compress=randomk:0.2,error-feedback=on"),
        (2, "sync:ring,compress=powersgd:rank=1"),
        (3, "sync:butterfly,compress=powersgd:rank=2"),
        (2, "sync:ring,compress=powersgd:rank=2,error-feedback=off"),
    ];
    for (p, spelling) in cases {
        let strategy: AnyStrategy = spelling.parse().unwrap();
        let (plain, _) = train_with(p, strategy.clone(), BucketSize::Off);
        let (bucketed, choice) = train_with(p, strategy, BucketSize::Bytes(100));
        let choice = choice.expect("the buckets were chosen");
        assert_eq!(choice.buckets, vec![39, 204, 112], "p {p} {spelling}");
        assert!(
            bits(&plain) == bits(&bucketed),
            "p {p} {spelling}: bucketed differs"
        );
    }
}
