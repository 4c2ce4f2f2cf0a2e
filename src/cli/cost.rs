//! `ringreduce cost`.

use std::path::PathBuf;
use std::process::ExitCode;

use ringreduce::cost::{self, Calibration, CostParams, Layout, Tuning, Why};
use ringreduce::train::{Model, Plan};
use ringreduce::units::human_size;
use ringreduce::{Algorithm, DType, Error};

use super::report::{print_cost, CostReport};
use super::{fail, list, one, size_arg, Format, List};

/// Settings of `ringreduce cost`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of ranks.
    #[arg(long, allow_hyphen_values = true)]
    ranks: usize,
    /// Nodes the ranks sit on (default: one rank per node). On 1 node
    /// `auto` runs `shm` at every size, as a job on one machine does;
    /// across nodes it weighs the message-based algorithms.
    #[arg(long, allow_hyphen_values = true)]
    nodes: Option<usize>,
    /// Message size per rank: bytes, or with a unit (4K, 16M, 1G).
    #[arg(long, value_parser = size_arg, allow_hyphen_values = true, required_unless_present = "layers")]
    bytes: Option<u64>,
    /// Element type.
    #[arg(long, default_value = "f32", value_parser = one::<DType>)]
    dtype: DType,
    /// Algorithms, comma-separated, or `all`.
    #[arg(long, default_value = "all", value_parser = list::<Algorithm>)]
    algo: List<Algorithm>,
    /// Latency α in seconds per message (default: built-in).
    #[arg(long, conflicts_with = "calibration", allow_hyphen_values = true)]
    alpha: Option<f64>,
    /// Inverse bandwidth β in seconds per byte.
    #[arg(long, conflicts_with = "calibration", allow_hyphen_values = true)]
    beta: Option<f64>,
    /// Reduction cost γ in seconds per byte.
    #[arg(long, conflicts_with = "calibration", allow_hyphen_values = true)]
    gamma: Option<f64>,
    /// Take α, β, γ from a file written by `ringreduce calibrate`.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// How `auto` decides: every candidate's predicted time (algorithm and
    /// call check apart), the choice, and why the others are not candidates.
    #[arg(long, conflicts_with = "strategy")]
    explain: bool,
    /// Training strategies (spellings of `train --strategy`, space-separated):
    /// what each sends per step for a model of --bytes of f32 parameters;
    /// `ps:async,servers=K` (or `ps:servers=K`) for the parameter server,
    /// whose busiest rank is a server.
    #[arg(long, num_args = 1.., value_name = "SPEC", value_parser = one::<Plan>)]
    strategy: Vec<Plan>,
    /// Steps of the run the strategies are costed over.
    #[arg(long, default_value_t = 1000, requires = "strategy")]
    steps: usize,
    /// Optimizer state buffers averaged with `,momentum` (1: SGD with momentum; 2: Adam).
    #[arg(long, default_value_t = 1, requires = "strategy")]
    buffers: usize,
    /// Gradient compressors (spellings of `train --compress`, space-separated):
    /// bytes and rounds per step, this machine's encode/decode time, and the
    /// link bandwidth below which each beats the uncompressed ring.
    #[arg(long, num_args = 1.., value_name = "C", conflicts_with_all = ["strategy", "explain"])]
    compress: Vec<String>,
    /// The model as an MLP's layer widths (784,128,10): its parameter count
    /// replaces --bytes, and its weight matrices are what PowerSGD factors.
    #[arg(long, value_name = "W,W,…", value_delimiter = ',')]
    layers: Vec<usize>,
}

impl Args {
    /// Bytes per rank: --bytes, or the f32 parameters of --layers.
    fn bytes(&self) -> ringreduce::Result<u64> {
        match (self.bytes, self.layers.is_empty()) {
            (Some(b), true) => Ok(b),
            (None, false) => Ok(4 * ringreduce::train::Mlp::new(self.layers.clone())?.num_params() as u64),
            (Some(_), false) => Err(Error::InvalidArgument {
                what: "--layers",
                reason: "give the model's size as --bytes or as --layers, not both".into(),
            }),
            (None, true) => Err(Error::InvalidArgument {
                what: "--bytes",
                reason: "give the model's size as --bytes or --layers".into(),
            }),
        }
    }
}

/// Prints the model's figures for every algorithm asked for.
pub fn run(args: Args) -> ExitCode {
    match report(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The model's constants and the rules table of `--calibration` (empty
/// without one).
fn tuning(args: &Args) -> ringreduce::Result<Tuning> {
    Ok(match &args.calibration {
        Some(path) => Tuning::default().with_calibration(Calibration::load(path)?),
        None => Tuning {
            params: params(args),
            ..Tuning::default()
        },
    })
}

/// The constants of `--alpha`, `--beta`, `--gamma` (one line for all
/// sizes; unset ones from the built-in mid-size line), or the built-in ones.
fn params(args: &Args) -> CostParams {
    if args.alpha.is_none() && args.beta.is_none() && args.gamma.is_none() {
        return CostParams::default();
    }
    let d = CostParams::default();
    CostParams::line(
        args.alpha.unwrap_or(d.lines[1].alpha),
        args.beta.unwrap_or(d.lines[1].beta),
        args.gamma.unwrap_or(d.gamma),
    )
}

fn report(args: &Args) -> ringreduce::Result<()> {
    let tuning = tuning(args)?;
    let params = tuning.params;
    params.validate()?;
    if !args.compress.is_empty() {
        return compression(args, &params);
    }
    if !args.strategy.is_empty() {
        return strategies(args, &params);
    }
    let (ranks, bytes, dtype) = (args.ranks, args.bytes()?, args.dtype);
    let s = dtype.size();
    if bytes % s as u64 != 0 {
        return Err(Error::InvalidArgument {
            what: "size",
            reason: format!("--bytes {bytes} is not a whole number of {dtype} elements ({s} B each)"),
        });
    }
    let count = usize::try_from(bytes / s as u64).map_err(|_| Error::InvalidArgument {
        what: "size",
        reason: format!("{bytes} B does not fit this machine's address space"),
    })?;
    cost::check_range(ranks, count, s)?;
    let layout = args.layout()?;
    if args.explain {
        explain(ranks, count, dtype, &tuning, layout);
        return Ok(());
    }
    let rows: Vec<_> = args
        .algo
        .0
        .iter()
        .map(|&a| cost::cost(a, ranks, count, s))
        .collect();
    let line = params.line_for(cost::ring_message_bytes(ranks, count, s));
    print_cost(
        &CostReport {
            ranks,
            bytes,
            count,
            dtype,
            params: &params,
            rows: &rows,
            bound: cost::lower_bound_bytes(ranks, count, s),
            chosen: tuning.resolve_on(ranks, count, s, layout, true),
            ring_line: (line.alpha, line.beta),
            one_node: layout.shared,
        },
        args.format,
    );
    Ok(())
}

impl Args {
    /// How the ranks sit on `--nodes` (one per node by default), placed by
    /// slot as `mpirun` does; every rank on one node: shared.
    fn layout(&self) -> ringreduce::Result<Layout> {
        match self.nodes {
            None => Ok(Layout::nodes(self.ranks, self.ranks)),
            Some(n) if (1..=self.ranks).contains(&n) => Ok(Layout::nodes(self.ranks, n)),
            Some(n) => Err(Error::InvalidArgument {
                what: "--nodes",
                reason: format!("{n} nodes for {} ranks: give 1 to {0}", self.ranks),
            }),
        }
    }

    /// The model's bytes and its f32 parameter count, for `flag`, which
    /// needs f32 (`why`).
    fn f32_params(&self, flag: &'static str, why: &str) -> ringreduce::Result<(u64, usize)> {
        let bytes = self.bytes()?;
        if self.dtype != DType::F32 || bytes % 4 != 0 {
            return Err(Error::InvalidArgument {
                what: flag,
                reason: format!("{why}: give --bytes as a multiple of 4 and no other --dtype"),
            });
        }
        let n = usize::try_from(bytes / 4).unwrap_or(usize::MAX);
        cost::check_range(self.ranks, n, 4)?;
        Ok((bytes, n))
    }
}

/// Bytes, rounds and predicted time per step of each strategy.
fn strategies(args: &Args, params: &CostParams) -> ringreduce::Result<()> {
    let (bytes, n) = args.f32_params("--strategy", "strategies train f32 parameters")?;
    // PowerSGD factors the model's weight matrices: --layers names them.
    let matrices = match args.layers.is_empty() {
        true => Vec::new(),
        false => ringreduce::train::Mlp::new(args.layers.clone())?.matrices(),
    };
    let rows: Vec<_> = args
        .strategy
        .iter()
        .map(|plan| {
            plan.check(args.ranks)?;
            if matrices.is_empty() && plan.needs_matrices() {
                return Err(Error::InvalidArgument {
                    what: "--strategy",
                    reason: format!(
                        "{} factors the model's weight matrices: give the model as --layers (784,128,10), not --bytes",
                        plan.name()
                    ),
                });
            }
            Ok(plan.communication(args.ranks, n, &matrices, args.steps, args.buffers, params))
        })
        .collect::<ringreduce::Result<_>>()?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default()),
        Format::Csv => {
            println!("strategy,ranks,params_bytes,steps,bytes,rounds,predicted_secs");
            for r in &rows {
                println!(
                    "{},{},{},{},{},{},{}",
                    ringreduce::train::log::csv_field(&r.strategy),
                    args.ranks,
                    bytes,
                    r.steps,
                    r.bytes,
                    r.rounds,
                    r.predicted_secs
                );
            }
        }
        Format::Table => {
            println!(
                "# {}, {} of f32 parameters, {} steps; bytes sent by the busiest rank",
                super::ranks(args.ranks),
                human_size(bytes),
                args.steps
            );
            println!(
                "{:<32} {:>14} {:>12} {:>16} {:>11}",
                "strategy", "bytes/step", "rounds/step", "predicted_us/step", "total_MB"
            );
            for r in &rows {
                println!(
                    "{:<32} {:>14.0} {:>12.3} {:>16.2} {:>11.1}",
                    r.strategy,
                    r.bytes_per_step(),
                    r.rounds_per_step(),
                    1e6 * r.predicted_secs / r.steps.max(1) as f64,
                    r.bytes as f64 / 1e6
                );
            }
        }
    }
    Ok(())
}

/// `cost --compress`: each compressor's bytes, rounds, local work and
/// break-even bandwidth against the uncompressed ring.
fn compression(args: &Args, params: &CostParams) -> ringreduce::Result<()> {
    let (bytes, n) = args.f32_params("--compress", "compressors work on f32 gradients")?;
    if args.ranks < 2 {
        return Err(Error::InvalidArgument {
            what: "--ranks",
            reason: "compression saves bytes between ranks: give 2 or more".into(),
        });
    }
    let matrices = match args.layers.is_empty() {
        true => Vec::new(),
        false => ringreduce::train::Mlp::new(args.layers.clone())?.matrices(),
    };
    let rows = ringreduce::train::codec::compression_costs(&args.compress, args.ranks, n, &matrices, params)?;
    let gbit = |b: Option<f64>| match b {
        None => "never".to_string(),
        Some(b) if b.is_infinite() => "always".to_string(),
        Some(b) => format!("{:.3} Gbit/s", b * 8.0 / 1e9),
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default()),
        Format::Csv => {
            println!(
                "compressor,ranks,params,bytes_per_step,rounds_per_step,codec_us,comm_us,break_even_gbit_s,break_even_fp16_gbit_s"
            );
            for r in &rows {
                println!(
                    "{},{},{n},{},{},{:.3},{:.3},{},{}",
                    ringreduce::train::log::csv_field(&r.compressor),
                    args.ranks,
                    r.bytes_per_step,
                    r.rounds_per_step,
                    r.codec_secs * 1e6,
                    r.comm_secs * 1e6,
                    r.break_even
                        .map_or(String::new(), |b| format!("{}", b * 8.0 / 1e9)),
                    r.break_even_fp16
                        .map_or(String::new(), |b| format!("{}", b * 8.0 / 1e9))
                );
            }
        }
        Format::Table => {
            let model = match args.layers.is_empty() {
                true => format!(
                    "{} of f32 parameters (no weight matrices: give --layers for PowerSGD)",
                    human_size(bytes)
                ),
                false => format!(
                    "an MLP {} ({n} f32 parameters)",
                    args.layers
                        .iter()
                        .map(|w| w.to_string())
                        .collect::<Vec<_>>()
                        .join("-")
                ),
            };
            println!("# {}, {model}; per step, busiest rank", super::ranks(args.ranks));
            println!("# codec: local encode/decode work measured on this machine; comm: predicted by the cost model");
            println!(
                "{:<22} {:>12} {:>7} {:>12} {:>12}  {:>22}  {:>22}",
                "compressor",
                "bytes",
                "rounds",
                "codec_us",
                "comm_us",
                "beats the ring below",
                "beats fp16 below"
            );
            for r in &rows {
                println!(
                    "{:<22} {:>12} {:>7} {:>12.1} {:>12.1}  {:>22}  {:>22}",
                    r.compressor,
                    r.bytes_per_step,
                    r.rounds_per_step,
                    r.codec_secs * 1e6,
                    r.comm_secs * 1e6,
                    gbit(r.break_even),
                    gbit(r.break_even_fp16)
                );
            }
        }
    }
    Ok(())
}

/// `cost --explain`: auto's decision for the ranks placed as `layout`:
/// the rule of the calibration's table that covers the call, if any; on
/// one node, `shm`; else the model's candidates with the call checks on
/// and off.
fn explain(ranks: usize, count: usize, dtype: DType, tuning: &Tuning, layout: Layout) {
    let s = dtype.size();
    let bytes = count as u64 * s as u64;
    let placed = match (layout.shared, layout.per_node) {
        (true, _) => "every rank on one node".to_string(),
        (false, 1) => "ranks on different nodes".to_string(),
        (false, 0) => "nodes of different sizes".to_string(),
        (false, n) => format!("{n} ranks per node"),
    };
    println!(
        "# auto at {}, {} per rank ({count} {dtype}), {placed}",
        super::ranks(ranks),
        human_size(bytes)
    );
    let (chosen, why) = tuning.decide(ranks, count, s, layout, true);
    if let Why::Rule(i) = why {
        let r = tuning.rules.as_slice()[i];
        let upto = r
            .up_to
            .map_or("any size".to_string(), |u| format!("up to {}", human_size(u)));
        println!(
            "auto chooses: {chosen} (rule {} of the calibration's table: {} ranks, {} per node, {upto}; measured by `calibrate --rules`, taken before the model)",
            i + 1,
            r.ranks,
            r.per_node
        );
        return;
    }
    if tuning.rules.as_slice().iter().any(|r| r.ranks == ranks) {
        println!("no rule of the calibration's table covers this placement and size: the model decides");
    }
    if layout.shared {
        println!("auto chooses: shm (every rank maps one shared segment: shm at every size, checked or not)");
        return;
    }
    let params = &tuning.params;
    println!(
        "{:<12} {:>14} {:>14} {:>14}",
        "candidate", "algorithm_us", "check_us", "total_us"
    );
    let unchecked = cost::select_on(ranks, count, s, params, false, layout);
    for a in Algorithm::CONCRETE.into_iter().filter(|a| a.in_auto()) {
        let own = cost::predict_on(a, ranks, count, s, params, false, layout) * 1e6;
        let total = cost::predict_on(a, ranks, count, s, params, true, layout) * 1e6;
        let mark = if a == chosen { "  <- auto" } else { "" };
        println!(
            "{:<12} {own:>14.2} {:>14.2} {total:>14.2}{mark}",
            a.name(),
            total - own
        );
    }
    println!("auto chooses: {chosen} (call checks on); {unchecked} with RINGREDUCE_CHECK=0");
    if cost::two_level(ranks, layout) {
        println!(
            "butterfly and rabenseifner priced by level: their steps inside a node as copies, across nodes with the {} ranks of a node sharing its link",
            layout.per_node
        );
    }
    for a in Algorithm::CONCRETE.into_iter().filter(|a| !a.in_auto()) {
        let why = match a {
            Algorithm::Shm => "needs every rank on one node — and there auto runs it at every size",
            Algorithm::Hierarchical => "priced as shared memory plus a ring of the nodes it mispicked at 512 KiB–2 MiB on 2 hosts × 2 ranks; `calibrate --rules` measures it on your placement",
            _ => "its predicted time is not yet checked against measurements",
        };
        println!("not a candidate of the model: {a} ({why})");
    }
}
