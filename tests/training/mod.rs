//! The small training run the strategy and compression tests share: an MLP
//! 6-10-3 on 600 synthetic examples, batch 60 (10 steps per epoch).

use ringreduce::train::{data, AnyStrategy, EpochMetrics, LrSchedule, Mlp, SyncSgd, Trainer};
use ringreduce::Group;

/// A trainer of `strategy` (a spelling), constant learning rate 0.1.
pub fn trainer(strategy: &str, momentum: f32, epochs: usize) -> Trainer<AnyStrategy> {
    SyncSgd::builder()
        .strategy(strategy.parse::<AnyStrategy>().unwrap())
        .batch(60)
        .lr(0.1)
        .momentum(momentum)
        .schedule(LrSchedule::Constant)
        .epochs(epochs)
        .seed(3)
        .build()
        .unwrap()
}

/// Every rank's final parameters and epoch metrics.
pub type Run = (Vec<f32>, Vec<EpochMetrics>);

/// Trains on `p` thread ranks, scored on the training set.
pub fn train(p: usize, t: &Trainer<AnyStrategy>) -> Vec<Run> {
    let sets = data::synthetic(600, 6, 3, 11);
    let model = Mlp::new(vec![6, 10, 3]).unwrap();
    Group::local(p, |g| {
        let mut params = t.init_params(&model);
        let h = t
            .fit(&g, &model, &mut params, &sets, Some(&sets), |_| {})
            .unwrap();
        (params, h)
    })
}
