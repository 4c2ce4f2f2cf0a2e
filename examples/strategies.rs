//! The training strategies' invariants, checked across real MPI ranks:
//!
//! - a gossip step (mix with the neighbours, then x −= η·g with each rank's
//!   own gradient) moves the ranks' average exactly as synchronous SGD
//!   moves it with the mean gradient, on every topology that fits p;
//! - on the complete graph one mix gives every rank the average;
//! - local SGD with τ = 1 (plain SGD) trains to synchronous SGD's parameters.
//!
//! ```sh
//! cargo build --release --example strategies
//! mpirun -n 4 target/release/examples/strategies
//! ```

use std::process::ExitCode;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringreduce::train::{data, AnyStrategy, Gossip, Mlp, SyncSgd, Topology};
use ringreduce::{Algorithm, Group, ReduceOp, Transport};

fn random(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn mean_of<C: Transport>(g: &Group<C>, x: &[f32]) -> ringreduce::Result<Vec<f64>> {
    let mut wide: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    g.all_reduce_in_place(&mut wide, ReduceOp::Avg, Algorithm::Ring)?;
    Ok(wide)
}

fn check<C: Transport>(g: &Group<C>) -> ringreduce::Result<Vec<String>> {
    let (p, r, n) = (g.size(), g.rank(), 1000);
    let mut failures = Vec::new();
    for name in ["ring", "torus", "expo", "expo1", "complete"] {
        let topology: Topology = name.parse()?;
        if topology.check(p).is_err() {
            continue;
        }
        let mut gossip = Gossip::new(topology);
        let mut x = random(r as u64, n);
        for step in 0..8 {
            let grad = random(1000 + (step * p + r) as u64, n);
            let (before, mean_grad) = (mean_of(g, &x)?, mean_of(g, &grad)?);
            gossip.mix(g, step, &mut x)?;
            x.iter_mut().zip(&grad).for_each(|(xi, gi)| *xi -= 0.1 * gi);
            let after = mean_of(g, &x)?;
            let worst = (0..n)
                .map(|i| (after[i] - (before[i] - 0.1 * mean_grad[i])).abs())
                .fold(0f64, f64::max);
            if worst > 1e-5 {
                failures.push(format!(
                    "gossip:{name} step {step}: the average moved {worst} off the synchronous step"
                ));
            }
        }
    }
    let mut x = random(50 + r as u64, n);
    let mut avg = x.clone();
    g.all_reduce_in_place(&mut avg, ReduceOp::Avg, Algorithm::Ring)?;
    Gossip::new(Topology::Complete).mix(g, 0, &mut x)?;
    let worst = x
        .iter()
        .zip(&avg)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    if worst > 1e-6 {
        failures.push(format!("gossip:complete: a mix is {worst} away from the average"));
    }

    let model = Mlp::new(vec![6, 10, 3])?;
    let fit = |spec: &str| -> ringreduce::Result<Vec<f32>> {
        let t = SyncSgd::builder()
            .strategy(spec.parse::<AnyStrategy>()?)
            .batch(60 * p)
            .lr(0.1)
            .momentum(0.0)
            .epochs(2)
            .build()?;
        let mut params = t.init_params(&model);
        let sets = data::synthetic(600 * p, 6, 3, 11);
        t.fit(g, &model, &mut params, &sets, None, |_| {})?;
        Ok(params)
    };
    let (sync, local) = (fit("sync:ring")?, fit("local:tau=1")?);
    let scale = sync.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = sync
        .iter()
        .zip(&local)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    if worst > 1e-5 * scale {
        failures.push(format!("local:tau=1 is {worst} off sync:ring (scale {scale})"));
    }
    Ok(failures)
}

fn main() -> ExitCode {
    ringreduce::transport::set_mpi_defaults(); // before MPI starts
    let Some(universe) = ringreduce::mpi::initialize() else {
        eprintln!("strategies: MPI is already initialised");
        return ExitCode::FAILURE;
    };
    let result = Group::mpi(&universe.world()).and_then(|g| {
        let failures = check(&g)?;
        Ok((g.rank(), g.size(), failures))
    });
    match result {
        Ok((rank, p, failures)) if failures.is_empty() => {
            if rank == 0 {
                println!("strategy invariants hold at {p} ranks");
            }
            ExitCode::SUCCESS
        }
        Ok((rank, _, failures)) => {
            for f in failures {
                eprintln!("rank {rank}: {f}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("strategies: {e}");
            ExitCode::FAILURE
        }
    }
}
