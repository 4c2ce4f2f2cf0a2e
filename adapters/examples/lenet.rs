//! A LeNet-style CNN (conv-pool-conv-pool-fc-fc) on Fashion-MNIST, with
//! candle's autodiff and optimizers, data-parallel through ringreduce: every
//! rank computes the gradient of its slice of each global batch, the
//! gradients are averaged (per bucket, as each is copied in), and every
//! rank applies the same update with candle's optimizer.
//!
//! ```sh
//! CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo build -p ringreduce-adapters --features candle --example lenet
//! mpirun -n 2 --bind-to core target/debug/examples/lenet            # 10 epochs, AdamW
//! mpirun -n 2 target/debug/examples/lenet --buckets 0.05            # 0.05 MiB buckets
//! ```
//!
//! Options: `--epochs N` (10), `--batch B` (global, 64), `--lr X` (0.001),
//! `--optimizer adamw|sgd`, `--buckets MiB` (off), `--train-limit N` and
//! `--test-limit N` (the first N examples), `--steps N` (stop after N steps),
//! `--data DIR` (Debian's Fashion-MNIST), `--seed S`, `--dump FILE` (the
//! final parameters, f32 little-endian, rank 0).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{conv2d, linear, AdamW, Conv2d, Linear, Optimizer, ParamsAdamW, VarBuilder, VarMap, SGD};
use ringreduce::train::{data, BucketSize, GradientAllReduce, Strategy};
use ringreduce::{Algorithm, Group, ReduceOp};
use ringreduce_adapters::candle::{error, CandleParams};

/// conv(1→6, 5×5) → pool → conv(6→16, 5×5) → pool → fc(256→128) → fc(128→10).
struct LeNet {
    c1: Conv2d,
    c2: Conv2d,
    f1: Linear,
    f2: Linear,
}

impl LeNet {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(LeNet {
            c1: conv2d(1, 6, 5, Default::default(), vb.pp("c1"))?,
            c2: conv2d(6, 16, 5, Default::default(), vb.pp("c2"))?,
            f1: linear(256, 128, vb.pp("f1"))?,
            f2: linear(128, 10, vb.pp("f2"))?,
        })
    }
}

impl Module for LeNet {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.c1.forward(x)?.relu()?.max_pool2d(2)?;
        let x = self.c2.forward(&x)?.relu()?.max_pool2d(2)?;
        let x = self.f1.forward(&x.flatten_from(1)?)?.relu()?;
        self.f2.forward(&x)
    }
}

/// The run's settings.
#[derive(Debug, Clone)]
pub struct Args {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub adamw: bool,
    pub buckets: Option<f64>,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub steps: Option<usize>,
    pub data: PathBuf,
    pub seed: u64,
    pub dump: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            epochs: 10,
            batch: 64,
            lr: 0.001,
            adamw: true,
            buckets: None,
            train_limit: None,
            test_limit: None,
            steps: None,
            data: PathBuf::from(data::FASHION_MNIST_DIR),
            seed: 1,
            dump: None,
        }
    }
}

impl Args {
    /// Parses `--name value` pairs.
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args::default();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let num = |v: &str| v.parse::<f64>().map_err(|_| format!("{flag} {v}: not a number"));
            match flag.as_str() {
                "--epochs" => a.epochs = num(&value)? as usize,
                "--batch" => a.batch = num(&value)? as usize,
                "--lr" => a.lr = num(&value)?,
                "--optimizer" => {
                    a.adamw = match value.as_str() {
                        "adamw" => true,
                        "sgd" => false,
                        other => return Err(format!("--optimizer {other}: adamw or sgd")),
                    }
                }
                "--buckets" => a.buckets = Some(num(&value)?).filter(|&m| m > 0.0),
                "--train-limit" => a.train_limit = Some(num(&value)? as usize),
                "--test-limit" => a.test_limit = Some(num(&value)? as usize),
                "--steps" => a.steps = Some(num(&value)? as usize),
                "--data" => a.data = PathBuf::from(value),
                "--seed" => a.seed = num(&value)? as u64,
                "--dump" => a.dump = Some(PathBuf::from(value)),
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(a)
    }
}

/// One epoch's figures (every rank's alike).
#[derive(Debug, Clone)]
pub struct Epoch {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub secs: f64,
    /// Of `secs`: the forward and backward passes (this rank).
    pub compute_secs: f64,
    /// Of `secs`: the copies into the buckets and the wait for the
    /// gradient exchange (this rank).
    pub exchange_secs: f64,
    /// The gradient buckets in use (elements each), once chosen.
    pub buckets: Option<Vec<usize>>,
}

/// One step of a candle optimizer.
type StepFn = Box<dyn FnMut(&candle_core::backprop::GradStore) -> candle_core::Result<()>>;

/// Seeded initial parameters, the same for any rank count: uniform in
/// ±1/√fan-in per tensor (PyTorch's default for conv and linear layers).
fn initial(params: &CandleParams, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let mut out = Vec::with_capacity(params.len());
    let weights: Vec<(usize, usize)> = params
        .vars()
        .iter()
        .map(|v| (v.elem_count(), v.dims().iter().skip(1).product::<usize>().max(1)))
        .collect();
    for (i, v) in params.vars().iter().enumerate() {
        // A bias takes its layer's weight's fan-in (the weight is named alike, `.weight`).
        let fan_in = if v.rank() == 1 {
            let layer = params.names()[i].trim_end_matches(".bias");
            let w = params
                .names()
                .iter()
                .position(|n| n == &format!("{layer}.weight"));
            w.map_or(1, |w| weights[w].1)
        } else {
            weights[i].1
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        out.extend((0..v.elem_count()).map(|_| next() * bound));
    }
    out
}

/// `n` examples of `set` at `order[..]`, as images and labels.
fn batch(set: &data::Dataset, idx: &[usize], dev: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let mut x = Vec::with_capacity(idx.len() * set.dim);
    for &i in idx {
        x.extend_from_slice(set.row(i));
    }
    let y: Vec<u32> = idx.iter().map(|&i| set.labels[i]).collect();
    Ok((
        Tensor::from_vec(x, (idx.len(), 1, 28, 28), dev)?,
        Tensor::from_vec(y, idx.len(), dev)?,
    ))
}

/// A seeded shuffle of `0..n`, the same on every rank.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut s = seed.wrapping_add(0x2545_F491_4F6C_DD1D) | 1;
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        order.swap(i, (s % (i as u64 + 1)) as usize);
    }
    order
}

/// Trains and evaluates on `group`; every rank returns the epochs' figures.
pub fn run<C: ringreduce::Transport>(
    group: &Group<C>,
    args: &Args,
    mut on_epoch: impl FnMut(&Epoch),
) -> ringreduce::Result<Vec<Epoch>> {
    let (p, r) = (group.size(), group.rank());
    let invalid = |reason: String| ringreduce::Error::InvalidArgument {
        what: "lenet",
        reason,
    };
    group.agree(if args.batch.is_multiple_of(p) && args.batch > 0 {
        Ok(())
    } else {
        Err(invalid(format!(
            "global batch {} does not split over {p} ranks",
            args.batch
        )))
    })?;
    let (mut train, mut test) = group.agree(data::fashion_mnist(&args.data))?;
    if let Some(n) = args.train_limit {
        let n = n.min(train.len());
        train = train.split(n).0;
    }
    if let Some(n) = args.test_limit {
        let n = n.min(test.len());
        test = test.split(n).0;
    }
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = LeNet::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev)).map_err(error)?;
    let params = CandleParams::new(&varmap);
    let mut strategy = GradientAllReduce::new(Algorithm::Auto);
    if let (Some(mib), Some(size)) = (args.buckets, strategy.bucket_size()) {
        *size = BucketSize::Bytes((mib * 1048576.0) as u64);
    }
    let mut ddp = params.data_parallel(group, strategy)?;
    let mut flat = initial(&params, args.seed);
    ddp.broadcast_parameters(&mut flat, 0)?;
    params.load(&flat)?;
    let vars = params.vars().to_vec();
    let mut opt: StepFn = if args.adamw {
        let mut o = AdamW::new(
            vars,
            ParamsAdamW {
                lr: args.lr,
                ..Default::default()
            },
        )
        .map_err(error)?;
        Box::new(move |g| o.step(g))
    } else {
        let mut o = SGD::new(vars, args.lr).map_err(error)?;
        Box::new(move |g| o.step(g))
    };
    let local = args.batch / p;
    let steps_per_epoch = train.len() / args.batch;
    let mut history = Vec::new();
    let mut taken = 0;
    for epoch in 1..=args.epochs {
        let began = Instant::now();
        let order = shuffled(train.len(), args.seed ^ epoch as u64);
        let (mut compute, mut exchange, mut loss_sum) = (Duration::ZERO, Duration::ZERO, 0.0);
        for step in 0..steps_per_epoch {
            if args.steps.is_some_and(|s| taken >= s) {
                break;
            }
            let at = step * args.batch + r * local;
            let (x, y) = batch(&train, &order[at..at + local], &dev).map_err(error)?;
            let step_began = Instant::now();
            let (mut grads, mut pass) = (None, Duration::ZERO);
            let loss = ddp.step(&mut flat, |sync| {
                let logits = model.forward(&x).map_err(error)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &y).map_err(error)?;
                let g = loss.backward().map_err(error)?;
                pass = step_began.elapsed();
                params.mark_ready(sync, &g)?;
                grads = Some(g);
                loss.to_scalar::<f32>().map_err(error)
            })?;
            // The copies into the buckets and the wait for their all-reduces.
            compute += pass;
            exchange += step_began.elapsed() - pass;
            let mut grads = grads.expect("the step ran its pass");
            params.averaged(&ddp, &mut grads)?;
            opt(&grads).map_err(error)?;
            flat = params.flatten()?;
            loss_sum += f64::from(loss);
            taken += 1;
        }
        let accuracy = evaluate(group, &model, &test, &dev)?;
        let mut mean_loss = [loss_sum / steps_per_epoch.max(1) as f64];
        group.all_reduce_in_place(&mut mean_loss, ReduceOp::Avg, Algorithm::Auto)?;
        let e = Epoch {
            epoch,
            loss: mean_loss[0],
            accuracy,
            secs: began.elapsed().as_secs_f64(),
            compute_secs: compute.as_secs_f64(),
            exchange_secs: exchange.as_secs_f64(),
            buckets: ddp.buckets().map(|c| c.buckets.clone()),
        };
        on_epoch(&e);
        history.push(e);
        if args.steps.is_some_and(|s| taken >= s) {
            break;
        }
    }
    if let (0, Some(path)) = (r, &args.dump) {
        let bytes: Vec<u8> = params.flatten()?.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    }
    Ok(history)
}

/// Test accuracy: each rank classifies a slice, the counts are summed.
fn evaluate<C: ringreduce::Transport>(
    group: &Group<C>,
    model: &LeNet,
    test: &data::Dataset,
    dev: &Device,
) -> ringreduce::Result<f64> {
    let (p, r) = (group.size(), group.rank());
    let mine: Vec<usize> = (0..test.len()).filter(|i| i % p == r).collect();
    let mut counts = [0i64, mine.len() as i64];
    for chunk in mine.chunks(500) {
        let (x, y) = batch(test, chunk, dev).map_err(error)?;
        let pred = model.forward(&x).and_then(|l| l.argmax(1)).map_err(error)?;
        let right = pred
            .eq(&y)
            .and_then(|e| e.to_dtype(DType::F32))
            .and_then(|e| e.sum_all());
        counts[0] += right.and_then(|s| s.to_scalar::<f32>()).map_err(error)? as i64;
    }
    group.all_reduce_in_place(&mut counts, ReduceOp::Sum, Algorithm::Auto)?;
    Ok(counts[0] as f64 / counts[1].max(1) as f64)
}

#[allow(dead_code)] // the test includes this file for `run`
fn main() {
    // One thread per rank: the ranks are the parallelism.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lenet: {e}");
            std::process::exit(2);
        }
    };
    ringreduce::transport::set_mpi_defaults(); // before MPI starts
    let universe = ringreduce::mpi::initialize_with_threading(ringreduce::mpi::Threading::Multiple)
        .expect("MPI initialises once")
        .0;
    let group = match Group::mpi(&universe.world()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("lenet: {e}");
            std::process::exit(1);
        }
    };
    let report = |e: &Epoch| {
        println!(
            "epoch {:>2}: loss {:.4}  test accuracy {:.4}  {:.2} s (compute {:.2} s, exchange {:.2} s = {:.1} %){}",
            e.epoch,
            e.loss,
            e.accuracy,
            e.secs,
            e.compute_secs,
            e.exchange_secs,
            100.0 * e.exchange_secs / e.secs,
            e.buckets.as_ref().map_or(String::new(), |b| format!("  buckets {b:?}"))
        )
    };
    if group.rank() == 0 {
        println!(
            "# lenet: {} ranks, global batch {}, {}, buckets {}",
            group.size(),
            args.batch,
            if args.adamw { "adamw" } else { "sgd" },
            args.buckets.map_or("off".to_string(), |m| format!("{m} MiB"))
        );
    }
    let first = group.rank() == 0;
    if let Err(e) = run(&group, &args, |e| {
        if first {
            report(e);
        }
    }) {
        eprintln!("lenet: rank {}: {e}", group.rank());
        std::process::exit(1);
    }
}
