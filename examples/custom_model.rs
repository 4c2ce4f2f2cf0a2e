//! Bring your own model: implement `Model` over a flat parameter buffer and
//! hand it to the synchronous SGD trainer. Here: logistic regression on two
//! synthetic classes. Run with `mpirun -n 2 target/release/examples/custom_model`.
use rand::{Rng, SeedableRng};
use ringreduce::train::{data, Model, SyncSgd};
use ringreduce::Group;

/// p(y = 1 | x) = σ(w·x + b); parameters [w…, b].
struct Logistic(usize);

impl Model for Logistic {
    fn num_params(&self) -> usize {
        self.0 + 1
    }
    fn input_dim(&self) -> usize {
        self.0
    }
    fn init(&self, params: &mut [f32], seed: u64) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        params.iter_mut().for_each(|p| *p = rng.gen_range(-0.1..0.1));
    }
    fn loss_and_grad(&self, w: &[f32], x: &[f32], y: &[u32], grad: &mut [f32]) -> f32 {
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut loss = 0.0;
        for (row, &label) in x.chunks_exact(self.0).zip(y) {
            let z: f32 = row.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() + w[self.0];
            let p = 1.0 / (1.0 + (-z).exp());
            let t = label as f32;
            loss -= t * p.max(1e-7).ln() + (1.0 - t) * (1.0 - p).max(1e-7).ln();
            row.iter()
                .zip(grad.iter_mut())
                .for_each(|(a, g)| *g += (p - t) * a);
            grad[self.0] += p - t;
        }
        loss
    }
    fn predict(&self, w: &[f32], x: &[f32], out: &mut [u32]) {
        for (row, o) in x.chunks_exact(self.0).zip(out) {
            let z: f32 = row.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() + w[self.0];
            *o = u32::from(z > 0.0);
        }
    }
}

fn main() -> Result<(), ringreduce::Error> {
    ringreduce::transport::set_mpi_defaults(); // before MPI starts
    let universe = ringreduce::mpi::initialize().expect("MPI is already initialised");
    let group = Group::mpi(&universe.world())?;
    let (train, test) = (data::synthetic(2000, 6, 2, 1), data::synthetic(500, 6, 2, 2));
    let model = Logistic(6);
    let sgd = SyncSgd::builder().batch(100).lr(0.5).epochs(5).build()?;
    let mut params = sgd.init_params(&model);
    let history = sgd.fit(&group, &model, &mut params, &train, Some(&test), |m| {
        if group.rank() == 0 {
            println!(
                "epoch {}: loss {:.4}, test accuracy {:.3}",
                m.epoch,
                m.train_loss,
                m.test_accuracy.unwrap_or(f64::NAN)
            );
        }
    })?;
    assert!(
        history.last().and_then(|m| m.test_accuracy).unwrap_or(0.0) > 0.8,
        "did not learn"
    );
    Ok(())
}
