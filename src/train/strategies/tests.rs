//! The registry's tests: spellings, and the counted bytes of every strategy
//! against its predicted communication.

use super::*;
use crate::group::{CheckConfig, Group, Settings};
use crate::transport::{Counting, Local};

#[test]
fn spellings_round_trip_and_bad_ones_say_why() {
    for s in [
        "sync:ring",
        "sync:butterfly",
        "local:tau=8",
        "local:tau=1,momentum",
        "postlocal:warmup=200,tau=8",
        "oneshot",
        "gossip:ring",
        "gossip:expo1",
        "gossip:edges=0-1/1-2",
    ] {
        assert_eq!(s.parse::<AnyStrategy>().unwrap().name(), s);
    }
    assert_eq!("sync".parse::<AnyStrategy>().unwrap().name(), "sync:ring");
    for (bad, says) in [
        ("local:tau=0", "tau must be at least 1"),
        ("local", "needs tau=T"),
        ("local:tau=x", "takes a whole number"),
        ("local:tau=4,speed=2", "unknown setting `speed=2`"),
        ("postlocal:tau=8", "needs warmup=W and tau=T"),
        ("gossip:star", "unknown topology `star`"),
        ("gossip", "names no topology"),
        ("async", "unknown strategy `async`"),
        ("sync:fast", "fast"),
    ] {
        let e = bad.parse::<AnyStrategy>().unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

/// The bytes each strategy's hooks put on the wire over a run, counted
/// by the `Counting` transport under the real hooks (call checks off, so
/// the count is the strategy's alone): the busiest rank's count is
/// exactly [`AnyStrategy::communication`]'s.
#[test]
fn counted_wire_bytes_equal_the_prediction() {
    let (n, steps_per_epoch, epochs) = (301, 7, 3);
    for spec in [
        "sync:ring",
        "sync:naive",
        "local:tau=3",
        "local:tau=2,momentum",
        "postlocal:warmup=5,tau=4",
        "oneshot",
        "gossip:ring",
        "gossip:expo",
        "gossip:expo1",
        "gossip:complete",
        "diloco:h=3",
        "diloco:h=4,outer-lr=0.5,outer-momentum=0.5",
    ] {
        for p in [2, 3, 4, 5] {
            let strategy: AnyStrategy = spec.parse().unwrap();
            let sent = Local::run(p, |t| {
                let settings = Settings {
                    checks: CheckConfig::OFF,
                    ..Settings::default()
                };
                let g = Group::with_settings(Counting::new(t), settings);
                let mut s = strategy.clone();
                let mut params = vec![0.5f32; n];
                let mut grad = vec![0.25f32; n];
                let mut opt = OptimizerState {
                    buffers: vec![vec![0.0; n]],
                    steps: 0,
                };
                for epoch in 1..=epochs {
                    for step in 0..steps_per_epoch {
                        let mut ctx = Step::new(&g, epoch, step, steps_per_epoch, epochs);
                        s.before_step(&mut ctx, &mut params).unwrap();
                        s.after_backward(&mut ctx, &mut grad).unwrap();
                        s.before_update(&mut ctx, &mut params, &grad).unwrap();
                        s.after_step(&mut ctx, &mut params, &mut opt).unwrap();
                    }
                }
                g.transport().stats().bytes_sent
            });
            let busiest = sent.iter().copied().max().unwrap();
            let predicted = strategy.communication(p, n, steps_per_epoch * epochs, 1, &CostParams::default());
            assert_eq!(busiest, predicted.bytes, "{spec} p={p}: counted {sent:?}");
        }
    }
}
