//! Command-line behaviour that needs no MPI launch: bad input gets one line
//! on stderr and exit code 2.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn ringreduce_cmd(args: &[&str]) -> std::process::Output {
    let mut cmd = singleton();
    cmd.args(args);
    run_bounded(cmd, Duration::from_secs(60))
}

fn bad_input(args: &[&str], needle: &str) {
    let out = ringreduce_cmd(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?} printed more than one line:\n{err}"
    );
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_names_are_one_line_errors() {
    bad_input(&["verify", "--algo", "ring,tree"], "unknown algorithm `tree`");
    bad_input(&["verify", "--dtype", "f8"], "unknown dtype `f8`");
    bad_input(&["verify", "--op", "xor"], "unknown op `xor`");
}

#[test]
fn malformed_numbers_and_commands_are_one_line_errors() {
    bad_input(&["verify", "--max-count", "-5"], "-5");
    bad_input(&["verify", "--max-count", "1e99"], "--max-count");
    bad_input(&["verify", "--seed", "abc"], "--seed");
    bad_input(&["frobnicate"], "frobnicate");
}

#[test]
fn clap_tips_survive_the_one_line_error() {
    bad_input(
        &["train", "--epoch", "2"],
        "unexpected argument '--epoch' found (tip: a similar argument exists: '--epochs')",
    );
}

#[test]
fn an_unknown_algorithm_in_the_environment_names_the_variable() {
    let mut cmd = singleton();
    cmd.args(["verify", "--max-count", "4"])
        .env("RINGREDUCE_ALGO", "tree");
    let out = run_bounded(cmd, Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid RINGREDUCE_ALGO: unknown algorithm `tree`"),
        "{err}"
    );
}

#[test]
fn help_lists_the_subcommands() {
    let out = run_bounded(
        {
            let mut c = singleton();
            c.arg("--help");
            c
        },
        Duration::from_secs(60),
    );
    assert!(out.status.success());
    assert!(stdout(&out).contains("verify"));
}

#[test]
fn cost_rejects_bad_input_in_one_line() {
    bad_input(&["cost", "--ranks", "0", "--bytes", "4K"], "rank count");
    bad_input(&["cost", "--ranks", "-3", "--bytes", "4K"], "--ranks");
    bad_input(&["cost", "--ranks", "4", "--bytes", "4X"], "unknown unit");
    bad_input(&["cost", "--ranks", "4", "--bytes", "99999999999T"], "too large");
    bad_input(&["cost", "--ranks", "3000000000", "--bytes", "16G"], "overflows");
    bad_input(&["cost", "--ranks", "4", "--bytes", "6"], "whole number of f32");
    bad_input(
        &["cost", "--ranks", "4", "--bytes", "4K", "--algo", "tree"],
        "unknown algorithm",
    );
    bad_input(
        &["cost", "--ranks", "4", "--bytes", "4K", "--dtype", "f8"],
        "unknown dtype",
    );
    bad_input(
        &["cost", "--ranks", "4", "--bytes", "4K", "--alpha", "-1"],
        "alpha",
    );
    // Regression: an absurd constant printed inf and NaN with exit 0.
    bad_input(
        &["cost", "--ranks", "4", "--bytes", "4K", "--alpha", "1e308"],
        "alpha = 100000000",
    );
    let dir = std::env::temp_dir().join(format!("ringreduce-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"alpha\": ").unwrap();
    bad_input(
        &[
            "cost",
            "--ranks",
            "4",
            "--bytes",
            "4K",
            "--calibration",
            bad.to_str().unwrap(),
        ],
        "bad.json",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cost_table_csv_and_json_agree_with_the_model() {
    let run = |format: &str| {
        let mut cmd = singleton();
        cmd.args(["cost", "--ranks", "8", "--bytes", "16M", "--format", format]);
        let out = run_bounded(cmd, Duration::from_secs(60));
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let model = ringreduce::cost::cost(ringreduce::Algorithm::Ring, 8, 4 << 20, 4);
    let csv = run("csv");
    let ring = csv.lines().find(|l| l.starts_with("ring,")).expect("ring row");
    let fields: Vec<&str> = ring.split(',').collect();
    assert_eq!(fields[1].parse::<u64>().unwrap(), model.rounds);
    assert_eq!(fields[2].parse::<u64>().unwrap(), model.exchanges);
    assert_eq!(fields[4].parse::<u64>().unwrap(), model.bytes_sent);
    let json: serde_json::Value = serde_json::from_str(&run("json")).expect("valid JSON");
    assert_eq!(
        json["lower_bound_bytes"].as_f64().unwrap(),
        model.bytes_sent as f64
    );
    let table = run("table");
    assert!(table.contains("auto chooses: "), "{table}");
    assert!(table.lines().any(|l| l.starts_with("lower-bound")), "{table}");
}

/// The table marks what a run would do: across nodes the model's choice,
/// on one node (`--nodes 1`) `shm`, which a 2-rank job on one machine runs
/// at every size.
#[test]
fn cost_marks_what_a_run_on_its_nodes_would_choose() {
    let table = |extra: &[&str]| {
        let out = ringreduce_cmd(&[&["cost", "--ranks", "2", "--bytes", "4K"][..], extra].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let marked = |t: &str| {
        t.lines()
            .find(|l| l.ends_with("<- auto"))
            .and_then(|l| l.split_whitespace().next())
            .map(String::from)
    };
    // Apart, the model's choice among the message-based algorithms.
    let apart = table(&[]);
    let chosen = marked(&apart).unwrap();
    assert_ne!(chosen, "shm", "{apart}");
    let said = format!("auto chooses: {chosen} (ranks on different nodes; --nodes 1 for one machine)");
    assert!(apart.contains(&said), "{apart}");
    let one = table(&["--nodes", "1"]);
    assert_eq!(marked(&one).as_deref(), Some("shm"), "{one}");
    assert!(
        one.contains("auto chooses: shm (every rank on one node)"),
        "{one}"
    );
    assert_eq!(marked(&table(&["--nodes", "2"])), Some(chosen));
    let explained = table(&["--nodes", "1", "--explain"]);
    assert!(explained.contains("auto chooses: shm"), "{explained}");
    bad_input(
        &["cost", "--ranks", "2", "--bytes", "4K", "--nodes", "3"],
        "3 nodes for 2 ranks",
    );
    bad_input(
        &["cost", "--ranks", "2", "--bytes", "4K", "--nodes", "0"],
        "0 nodes for 2 ranks",
    );
}

#[test]
fn bench_rejects_bad_input_in_one_line() {
    bad_input(&["bench", "-m", "10:5"], "minimum is above maximum");
    bad_input(&["bench", "-m", "4K:x"], "expected a whole number of bytes");
    bad_input(&["bench", "-f", "1"], "does not grow the size");
    bad_input(&["bench", "-c", "2"], "expected 0 or 1");
    bad_input(&["bench", "-m", "4:8", "-b", "4"], "cannot be used with");
    bad_input(&["bench", "--algo", "ring,tree"], "unknown algorithm `tree`");
    bad_input(&["bench", "--osu"], "exactly one");
}

#[test]
fn train_rejects_bad_input_in_one_line() {
    bad_input(
        &["train", "--batch", "0", "--data", "synthetic"],
        "batch must be at least 1",
    );
    bad_input(
        &["train", "--model", "cnn", "--data", "synthetic"],
        "unknown model `cnn`",
    );
    bad_input(&["train", "--hidden", "12,x", "--data", "synthetic"], "--hidden");
    bad_input(&["train", "--lr", "-1", "--data", "synthetic"], "learning rate");
    bad_input(&["train", "--data", "/nonexistent/data.csv"], "No such file");
    bad_input(&["train", "--resume"], "--checkpoint");
    let dir = std::env::temp_dir().join(format!("ringreduce-train-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ragged = dir.join("ragged.csv");
    std::fs::write(&ragged, "1,0.5,2\n0,1\n").unwrap();
    bad_input(
        &["train", "--data", ragged.to_str().unwrap()],
        "line 2: 1 features",
    );
    let ckpt = dir.join("junk.ckpt");
    std::fs::write(&ckpt, "not a checkpoint").unwrap();
    bad_input(
        &[
            "train",
            "--data",
            "synthetic",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--resume",
        ],
        "not a ringreduce checkpoint",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn soak_verify_and_bench_refuse_impossible_work_in_one_line() {
    bad_input(&["soak", "--calls", "0"], "--calls");
    bad_input(&["soak", "--max-bytes", "4X"], "unknown unit");
    bad_input(&["soak", "--max-bytes", "1T"], "available");
    bad_input(&["verify", "--max-count", "100000000000000"], "available");
    bad_input(&["bench", "--iters", "0", "-m", "8:8"], "--iters");
    bad_input(&["bench", "--algo", "ring-nocheck,tree-nocheck"], "tree-nocheck");
    // refused before measuring, not after
    bad_input(
        &["calibrate", "--out", "/nonexistent/c.json"],
        "/nonexistent does not exist",
    );
}

#[test]
fn train_checks_outputs_and_idx_files_before_it_starts() {
    bad_input(&["train", "--data", "synthetic", "--epochs", "0"], "--epochs");
    bad_input(
        &["train", "--data", "synthetic", "--metrics", "/nonexistent/m.csv"],
        "/nonexistent does not exist",
    );
    bad_input(
        &["train", "--data", "synthetic", "--plot", "loss.gif"],
        ".png or .svg",
    );
    // An IDX directory with a truncated image file, then with a wrong magic number.
    let dir = std::env::temp_dir().join(format!("ringreduce-idx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let idx = |magic: u32, dims: &[u32], data: usize| {
        let mut b = magic.to_be_bytes().to_vec();
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(vec![0u8; data]);
        b
    };
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
    write("train-images-idx3-ubyte", idx(0x803, &[10, 2, 2], 39)); // one byte short
    write("train-labels-idx1-ubyte", idx(0x801, &[10], 10));
    write("t10k-images-idx3-ubyte", idx(0x803, &[4, 2, 2], 16));
    write("t10k-labels-idx1-ubyte", idx(0x801, &[4], 4));
    let d = dir.to_str().unwrap();
    bad_input(&["train", "--data", d], "need 40 bytes of data, file has 39");
    write("train-images-idx3-ubyte", idx(0x803, &[10, 2, 2], 40));
    write("t10k-labels-idx1-ubyte", idx(0x0bad, &[4], 4));
    bad_input(&["train", "--data", d], "not an IDX file");
    write("t10k-labels-idx1-ubyte", idx(0x801, &[4], 4));
    let out = ringreduce_cmd(&[
        "train", "--data", d, "--hidden", "4", "--epochs", "1", "--batch", "5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plot_rejects_missing_and_foreign_files_in_one_line() {
    bad_input(
        &["plot", "--csv", "/nonexistent.csv", "--out", "/tmp"],
        "No such file",
    );
    let dir = std::env::temp_dir().join(format!("ringreduce-plot-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("foreign.csv");
    std::fs::write(&csv, "a,b\n1,2\n").unwrap();
    bad_input(
        &[
            "plot",
            "--csv",
            csv.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
        "not a `ringreduce bench --format csv` file",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A CSV of two separable classes: label, then two features.
fn two_class_csv(path: &std::path::Path, n: usize) {
    let rows: String = (0..n)
        .map(|i| {
            let c = i % 2;
            let x = if c == 0 { -1.0 } else { 1.0 } + (i % 7) as f64 * 0.05;
            format!("{c},{x},{}\n", -x)
        })
        .collect();
    std::fs::write(path, rows).unwrap();
}

#[test]
fn a_csv_alone_reports_no_accuracy_and_a_held_out_set_is_named() {
    let dir = std::env::temp_dir().join(format!("ringreduce-heldout-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (data, test, metrics) = (dir.join("train.csv"), dir.join("test.csv"), dir.join("m.csv"));
    two_class_csv(&data, 200);
    two_class_csv(&test, 40);
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            data.to_str().unwrap(),
            "--model",
            "softmax",
            "--batch",
            "20",
        ];
        args.extend(["--epochs", "2", "--metrics", metrics.to_str().unwrap()]);
        args.extend(extra);
        let out = ringreduce_cmd(&args);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        (stdout(&out), std::fs::read_to_string(&metrics).unwrap())
    };
    // No held-out set: said in the header; no accuracy column anywhere.
    let (text, csv) = train(&[]);
    assert!(
        text.contains("200 train, no held-out set: accuracy not measured"),
        "{text}"
    );
    assert!(text.contains("# train: 1 rank, "), "{text}");
    assert!(
        !text.contains("_acc") && !csv.contains("accuracy"),
        "{text}\n{csv}"
    );
    // On one rank nothing is all-reduced: the last column is 0.
    let last = text.lines().rfind(|l| l.trim_start().starts_with("2 ")).unwrap();
    assert_eq!(last.split_whitespace().last(), Some("0.0"), "{text}");
    // A test file.
    let (text, csv) = train(&["--test", test.to_str().unwrap()]);
    assert!(
        text.contains("200 train / 40 test") && text.contains("test_acc"),
        "{text}"
    );
    assert!(csv.lines().next().unwrap().contains(",test_accuracy,"), "{csv}");
    // A validation split: seeded, stratified, its own column.
    let (text, csv) = train(&["--val-split", "0.25"]);
    assert!(
        text.contains("150 train / 50 validation (0.25 of the training set, stratified)"),
        "{text}"
    );
    assert!(
        text.contains("val_acc") && csv.contains(",val_accuracy,"),
        "{text}\n{csv}"
    );
    bad_input(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--test",
            test.to_str().unwrap(),
            "--val-split",
            "0.2",
        ],
        "cannot be used with",
    );
    bad_input(
        &["train", "--data", data.to_str().unwrap(), "--val-split", "1.5"],
        "between 0 and 1",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plot_and_summary_read_what_bench_and_train_write() {
    let dir = std::env::temp_dir().join(format!("ringreduce-summary-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Two runs of a one-rank sweep (no mpirun needed for one rank).
    let mut runs = Vec::new();
    for r in 0..2 {
        let out = ringreduce_cmd(&[
            "bench", "--algo", "ring,mpi", "-m", "4:64", "-n", "5", "-w", "1", "--format", "csv",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let path = dir.join(format!("run{r}.csv"));
        std::fs::write(&path, stdout(&out)).unwrap();
        runs.push(path);
    }
    let files: Vec<&str> = runs.iter().map(|p| p.to_str().unwrap()).collect();
    let mut args = vec!["summary", "--csv"];
    args.extend(&files);
    let out = ringreduce_cmd(&args);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("1 rank, f32 sum") && text.contains("median of 2 runs"),
        "{text}"
    );
    // 5 sizes × 2 subjects, then ring/vendor and best-fixed/vendor per size.
    assert_eq!(
        text.lines().filter(|l| l.contains(" B  ")).count(),
        5 * 2 + 5 * 2,
        "{text}"
    );
    let mut args = vec!["plot", "--out", dir.to_str().unwrap(), "--csv"];
    args.extend(&files);
    let out = ringreduce_cmd(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(dir.join("latency.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    // A training metrics file draws the training chart.
    let metrics = dir.join("m.csv");
    let out = ringreduce_cmd(&[
        "train",
        "--data",
        "synthetic",
        "--epochs",
        "2",
        "--batch",
        "60",
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ringreduce_cmd(&[
        "plot",
        "--csv",
        metrics.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(dir.join("training.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    bad_input(
        &[
            "plot",
            "--csv",
            metrics.to_str().unwrap(),
            runs[0].to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
        "one training metrics file",
    );
    std::fs::write(dir.join("junk.csv"), "a,b\n1,2\n").unwrap();
    bad_input(
        &["summary", "--csv", dir.join("junk.csv").to_str().unwrap()],
        "not a `ringreduce bench --format csv` file",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cost_explain_shows_each_candidate_and_the_call_checks_share() {
    let mut cmd = singleton();
    cmd.args(["cost", "--ranks", "3", "--bytes", "8", "--explain"]);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // The small butterfly carries the agreement; the naive ring pays its rounds.
    let row = |name: &str| -> Vec<f64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{text}"));
        line.split_whitespace()
            .skip(1)
            .take(3)
            .map(|x| x.parse().unwrap())
            .collect()
    };
    // Its share is the header's bytes on its own messages, no round.
    assert!(row("butterfly")[1] < 0.1, "{text}");
    assert!(row("naive")[1] > 1.0, "{text}");
    assert!(
        text.contains("auto chooses: butterfly (call checks on); naive with RINGREDUCE_CHECK=0"),
        "{text}"
    );
    assert!(text.contains("not a candidate of the model: shm"), "{text}");
}

#[test]
fn compress_settings_that_cannot_work_are_one_line_errors() {
    bad_input(&["train", "--compress", "fp8"], "unknown compression `fp8`");
    bad_input(
        &["train", "--compress", "fp16", "--no-error-feedback"],
        "error feedback applies to topk:F",
    );
    bad_input(
        &["train", "--strategy", "local:tau=4", "--compress", "fp16"],
        "compresses the gradient of sync strategies, not local:tau=4",
    );
    bad_input(
        &["train", "--algo", "butterfly", "--compress", "bf16"],
        "not butterfly",
    );
}

#[test]
fn parameter_server_settings_that_cannot_work_are_one_line_errors() {
    bad_input(&["train", "--strategy", "ps:sync"], "ps:async or ps:ssp=S");
    bad_input(&["train", "--strategy", "ps:ssp=-1"], "ps:async or ps:ssp=S");
    bad_input(
        &["train", "--servers", "2"],
        "is a setting of the parameter server",
    );
    bad_input(
        &["train", "--strategy", "local:tau=4", "--record", "x.log"],
        "is a setting of the parameter server",
    );
    bad_input(
        &["train", "--strategy", "ps:async", "--compress", "fp16"],
        "not available with the parameter server",
    );
    bad_input(
        &["train", "--strategy", "ps:async", "--straggler", "1"],
        "expected RANK:FACTOR",
    );
    bad_input(&["train", "--strategy", "ps:async,servers=0"], "K ≥ 1");
    bad_input(
        &[
            "cost",
            "--ranks",
            "3",
            "--bytes",
            "4000",
            "--strategy",
            "ps:servers=3",
        ],
        "leave no worker",
    );
}

/// PowerSGD is priced on the model's matrices: rank-4 factors of the
/// 784×128 and 128×10 weights, (784 + 128 + 128 + 10)·4 = 4 200 values,
/// and the 138 biases, all-reduced by the ring at 4 ranks (6 B a value
/// for the busiest rank): about 26 KB a step, not the whole 611 KB.
/// Without the matrices (--bytes) it is a one-line error.
#[test]
fn cost_prices_powersgd_on_the_models_matrices() {
    let out = ringreduce_cmd(&[
        "cost",
        "--ranks",
        "4",
        "--layers",
        "784,128,10",
        "--strategy",
        "sync:ring,compress=powersgd:rank=4",
        "sync:ring",
        "--format",
        "csv",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let per_step: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f = ringreduce::train::log::csv_fields(l);
            f[4].parse::<f64>().unwrap() / f[3].parse::<f64>().unwrap()
        })
        .collect();
    let expected = (4200.0 + 138.0) * 6.0;
    assert!((per_step[0] - expected).abs() < 0.01 * expected, "{text}");
    // The ring: 2(p − 1)/p of 407 080 B, up to its chunks' rounding.
    assert!((per_step[1] - 610_620.0).abs() < 1e-4 * 610_620.0, "{text}");
    bad_input(
        &[
            "cost",
            "--ranks",
            "4",
            "--bytes",
            "400K",
            "--strategy",
            "sync:ring,compress=powersgd:rank=4",
        ],
        "give the model as --layers",
    );
}

#[test]
fn cost_prices_the_parameter_servers_busiest_link() {
    let out = ringreduce_cmd(&[
        "cost",
        "--ranks",
        "5",
        "--bytes",
        "400000",
        "--alpha",
        "1e-5",
        "--beta",
        "1e-9",
        "--steps",
        "10",
        "--format",
        "csv",
        "--strategy",
        "ps:async",
        "ps:ssp=2,servers=2",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert!(text.contains("\"ps:async,servers=1\""), "{text}");
    // One server: 4 workers × (400000 + 32) bytes back per pull, 10 steps.
    assert!(text.contains(&format!(",{},", 10 * 4 * (400_000 + 32))), "{text}");
    let secs = |i: usize| -> f64 { rows[i].last().unwrap().parse().unwrap() };
    assert!(secs(1) < 0.5 * secs(0), "{text}");
}

#[test]
fn cost_compress_prints_every_compressor_against_the_ring() {
    let out = ringreduce_cmd(&[
        "cost",
        "--ranks",
        "4",
        "--layers",
        "784,128,10",
        "--compress",
        "none",
        "fp16",
        "powersgd:rank=2",
        "topk:0.01",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("101770 f32 parameters"), "{text}");
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {text}"))
            .to_string()
    };
    assert!(row("none ").ends_with("never"), "{text}");
    // The ring's bytes from the busiest rank at 4 ranks: (2k − 2⌊k/4⌋)·4 = 610 624; fp16 half.
    assert!(
        row("none ").contains("610624") && row("fp16 ").contains("305312"),
        "{text}"
    );
    assert!(
        row("powersgd:rank=2").contains("Gbit/s") && row("topk:0.01").contains("Gbit/s"),
        "{text}"
    );
    bad_input(
        &[
            "cost",
            "--ranks",
            "4",
            "--layers",
            "784,128,10",
            "--compress",
            "zip",
        ],
        "unknown compression `zip`",
    );
    bad_input(
        &[
            "cost",
            "--ranks",
            "4",
            "--bytes",
            "4K",
            "--layers",
            "784,10",
            "--compress",
            "fp16",
        ],
        "not both",
    );
}

#[test]
fn hogwild_rejects_bad_input_in_one_line() {
    let dir = std::env::temp_dir().join(format!("ringreduce-hogwild-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (bad, three, good) = (dir.join("bad.svm"), dir.join("three.svm"), dir.join("good.svm"));
    std::fs::write(&bad, "+1 1:1 2:0.5\n-1 4:1 3:1\n").unwrap();
    std::fs::write(&three, "1 1:1\n2 2:1\n3 1:1\n").unwrap();
    std::fs::write(&good, "+1 1:1\n-1 2:1\n").unwrap();
    let (bad, three, good) = (
        bad.to_str().unwrap(),
        three.to_str().unwrap(),
        good.to_str().unwrap(),
    );
    bad_input(&["hogwild", "--data", "/nonexistent.svm"], "No such file");
    bad_input(
        &["hogwild", "--data", bad],
        "bad.svm: line 2: index 3 follows 4; indices must ascend strictly",
    );
    bad_input(
        &["hogwild", "--data", good, "--test", bad],
        "bad.svm: line 2: index 3 follows 4",
    );
    bad_input(
        &["hogwild", "--data", three],
        "three.svm: labels 1, 2, 3: a binary classifier needs labels ±1 or 0/1",
    );
    bad_input(
        &["hogwild", "--model", "mc", "--data", good],
        "--model mc: runs on synthetic data",
    );
    bad_input(
        &["hogwild", "--schedule", "serial", "--threads", "2"],
        "the serial schedule runs 1 thread, not 2",
    );
    bad_input(&["hogwild", "--threads", "0"], "at least 1 thread");
    bad_input(&["hogwild", "--threads", "100000"], "at most 1024 per rank");
    bad_input(&["hogwild", "--schedule", "locks"], "unknown schedule `locks`");
    bad_input(
        &["hogwild", "--lr", "-1"],
        "step size: -1 is not a positive number",
    );
    bad_input(&["hogwild", "--decay", "1.5"], "decay: 1.5 is not in (0, 1]");
    bad_input(&["hogwild", "--flip", "2"], "--flip");
    bad_input(&["hogwild", "--plot", "/tmp/objective.txt"], "png");
    bad_input(&["hogwild", "--metrics", "/nonexistent/m.csv"], "does not exist");
    bad_input(&["hogwild", "--test", good], "--test");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hogwild_trains_a_libsvm_file_and_writes_metrics_plot_and_result() {
    let dir = std::env::temp_dir().join(format!("ringreduce-hogwild-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Two separable classes, 0/1 labels: features 1–3 mark class 1, 4–6
    // class 0, feature 7 is noise. The test file's highest index (9) is
    // above the training file's: the model widens to it.
    let rows = |n: usize, shift: usize| -> String {
        (0..n)
            .map(|i| {
                let c = (i + shift) % 2;
                let f = if c == 1 { 1 + i % 3 } else { 4 + i % 3 };
                format!("{c} {f}:1 7:0.5\n")
            })
            .collect()
    };
    let (train, test, metrics, plot) = (
        dir.join("train.svm"),
        dir.join("test.svm.gz"),
        dir.join("m.csv"),
        dir.join("objective.svg"),
    );
    std::fs::write(&train, rows(400, 0)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, (rows(60, 1) + "1 9:1\n").as_bytes()).unwrap();
    std::fs::write(&test, gz.finish().unwrap()).unwrap();
    let out = ringreduce_cmd(&[
        "hogwild",
        "--data",
        train.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
        "--epochs",
        "6",
        "--threads",
        "2",
        "--target-loss",
        "0.05",
        "--metrics",
        metrics.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("400 examples, 9 features, 2.0 nonzeros each; test 61 examples"),
        "{text}"
    );
    // Features 1–6 each in a sixth of the examples, 7 in all: Ω 2, Δ 1.
    assert!(
        text.contains("sparsity: 400 examples, 9 coordinates: Ω 2 (mean support 2.0), Δ 1.0000, ρ 1.0000"),
        "{text}"
    );
    let result = text
        .lines()
        .find(|l| l.starts_with("result: "))
        .expect("a result line");
    // Separable classes: the target is reached, and the run stops there.
    let secs: f64 = result
        .split(" target_secs ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no time to target: {result}"));
    let stopped_at = result
        .split("at epoch ")
        .nth(1)
        .and_then(|e| e.trim_end_matches(')').parse::<usize>().ok());
    let csv = std::fs::read_to_string(&metrics).unwrap();
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("epoch,wall_secs,epoch_secs,objective,train_accuracy,test_accuracy,"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(!rows.is_empty() && rows.len() <= 6, "{csv}");
    for (k, r) in rows.iter().enumerate() {
        assert_eq!(r[0], (k + 1).to_string());
        assert_eq!(r[8], "400", "every example once an epoch: {csv}");
        assert!(r[5].parse::<f64>().unwrap() > 0.9, "test accuracy: {csv}");
    }
    let last_objective: f64 = rows.last().unwrap()[3].parse().unwrap();
    assert!(last_objective <= 0.05, "{csv}");
    assert_eq!(stopped_at, Some(rows.len()), "{result}");
    let wall: f64 = rows.last().unwrap()[1].parse().unwrap();
    assert!((wall - secs).abs() < 1e-3, "{result}\n{csv}");
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));
    // `ringreduce plot` reads the metrics file.
    let out = ringreduce_cmd(&[
        "plot",
        "--csv",
        metrics.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.join("objective.png").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Flags that nccl-tests and OSU spell alike but mean differently are
/// refused with the alternatives named; `bench --list` prints the names
/// `--algo` takes, from the registry (what scripts read).
#[test]
fn ambiguous_benchmark_flags_are_refused_and_the_algorithms_listed() {
    bad_input(&["bench", "-i", "1M"], "-n/--iters N for iterations");
    bad_input(&["bench", "-i", "100"], "nccl-tests' the step in bytes");
    bad_input(
        &["bench", "--collective", "gather"],
        "expected reduce_scatter, reduce or all_gather",
    );
    bad_input(&["bench", "--collective", "reduce", "-c"], "leave --check out");
    bad_input(
        &["bench", "--collective", "all_gather", "--algo", "butterfly"],
        "runs the ring",
    );
    let out = ringreduce_cmd(&["bench", "--list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    for want in ["ring", "butterfly", "rabenseifner", "pipelined", "auto", "mpi"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
}

/// A straggler factor out of bounds is one line, on `train` and `compare`
/// alike (it once overflowed the sleep and panicked).
#[test]
fn straggler_factors_are_bounded() {
    for cmd in ["train", "compare"] {
        bad_input(
            &[cmd, "--straggler", "0:1e30"],
            "the factor must lie between 1 and 1000",
        );
        bad_input(
            &[cmd, "--straggler", "0:nan"],
            "the factor must lie between 1 and 1000",
        );
        bad_input(
            &[cmd, "--straggler", "0:0.5"],
            "the factor must lie between 1 and 1000",
        );
    }
}

/// An evaluation interval of 0 steps is one line, on `train` and `compare`.
#[test]
fn evaluating_every_zero_steps_is_refused() {
    let compare = ["compare", "--strategies", "sync:ring", "--out", "/tmp/x.csv"];
    for cmd in [&["train"][..], &compare] {
        bad_input(
            &[cmd, &["--eval-every", "0"]].concat(),
            "evaluating every 0 steps",
        );
        bad_input(&[cmd, &["--eval-every", "x"]].concat(), "--eval-every");
    }
}

/// A two-epoch run's checkpoint in a fresh directory, and the arguments
/// that train (`--epochs` appended by the caller) with it.
fn checkpointed_run(tag: &str) -> (std::path::PathBuf, std::path::PathBuf, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("ringreduce-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("run.ckpt");
    let args: Vec<String> = [
        "train",
        "--data",
        "synthetic",
        "--hidden",
        "8",
        "--batch",
        "60",
        "--log-every",
        "0",
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    (dir, ckpt, args)
}

fn train_with(args: &[String], more: &[&str]) -> std::process::Output {
    let all: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect();
    ringreduce_cmd(&all)
}

#[test]
fn forged_checkpoint_fields_with_a_recomputed_checksum_are_refused_naming_the_field() {
    use ringreduce::train::checkpoint::Checkpoint;
    let (dir, ckpt, args) = checkpointed_run("forged");
    let out = train_with(&args, &["--epochs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let good = Checkpoint::load(&ckpt).unwrap();
    assert_eq!(good.header.epoch, 2);
    assert!(good.header.optimizer_steps > 0);
    let resume: Vec<String> = args
        .iter()
        .cloned()
        .chain(["--epochs", "3", "--resume"].map(String::from))
        .collect();
    let all: Vec<&str> = resume.iter().map(String::as_str).collect();
    // Each forgery is saved through the library: its checksum is right.
    type Forge = fn(&mut Checkpoint);
    let forgeries: [(Forge, &str); 6] = [
        (|c| c.header.epoch = 0, "`epoch` and `step` are 0"),
        (
            |c| c.header.step = 9999,
            "`step` is 9999, and an epoch of this run has 100 steps",
        ),
        (|c| c.header.step = 5, "epoch(s) of 100 steps and 5 step(s) make"),
        (
            |c| {
                c.header.optimizer_steps = u64::MAX;
                c.optimizer.steps = u64::MAX;
            },
            "`optimizer_steps` is 18446744073709551615",
        ),
        (|c| c.header.epoch = 1, "but 1 epoch(s) of"),
        (
            |c| {
                let b = &mut c.optimizer.buffers[0];
                b.truncate(b.len() - 1);
                c.header.sections[0].len -= 1;
            },
            "`optimizer.0` holds",
        ),
    ];
    for (forge, needle) in forgeries {
        let mut c = good.clone();
        forge(&mut c);
        c.save(&ckpt).unwrap();
        bad_input(&all, needle);
    }
    // The same file unforged resumes.
    good.save(&ckpt).unwrap();
    let out = ringreduce_cmd(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_writers_temporary_file_is_removed_at_the_next_start_in_one_line() {
    let (dir, ckpt, args) = checkpointed_run("stale");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut child = Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    let stale = dir.join(format!("run.ckpt.tmp.{}.{gone}.9a", host.trim()));
    let foreign = dir.join(format!("run.ckpt.tmp.another-host.{gone}.9b"));
    for f in [&stale, &foreign] {
        std::fs::write(f, b"half a checkpoint").unwrap();
    }
    let out = train_with(&args, &["--epochs", "1"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("temporary file")).collect();
    assert_eq!(
        lines,
        [format!(
            "removed 1 temporary file(s) a killed run left beside the checkpoint: {}",
            stale.display()
        )],
        "{text}"
    );
    assert!(!stale.exists() && foreign.exists() && ckpt.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_spelling_per_concept_across_subcommands() {
    // A directory of charts is --plot-dir; --plot is a file elsewhere.
    bad_input(
        &["compare", "--plot", "charts"],
        "a similar argument exists: '--plot-dir'",
    );
    // The largest message in bytes is --max-bytes everywhere.
    for cmd in ["bench", "soak", "calibrate"] {
        bad_input(&[cmd, "--max-bytes", "4X"], "for '--max-bytes <");
    }
}

/// What an output flag is pointed at in
/// [`outputs_never_replace_devices_fifos_or_links`].
#[derive(Clone, Copy, Debug)]
enum Target {
    /// A private character device, the same as `/dev/null` (`mknod c 1 3`).
    Device,
    /// A FIFO that a thread of this test drains.
    Fifo,
    /// A symbolic link to an existing file.
    Link,
    /// A symbolic link to a file not yet there, in a directory that is.
    Dangling,
}

/// Makes `name` in `dir` a `target`; returns the check run afterwards.
fn make_target(dir: &std::path::Path, name: &str, target: Target) -> Box<dyn FnOnce()> {
    use std::os::unix::fs::FileTypeExt;
    let path = dir.join(name);
    let kind = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().file_type();
    match target {
        Target::Device => {
            let made = Command::new("mknod")
                .arg(&path)
                .args(["c", "1", "3"])
                .status()
                .unwrap();
            assert!(made.success(), "mknod {}", path.display());
            Box::new(move || assert!(kind(&path).is_char_device(), "{} was replaced", path.display()))
        }
        Target::Fifo => {
            let made = Command::new("mkfifo").arg(&path).status().unwrap();
            assert!(made.success(), "mkfifo {}", path.display());
            // A reader that never blocks: its end held open, the writes drained.
            let reader = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&path)
                    .unwrap()
            };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let drain = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut reader, mut got, mut buf) = (reader, 0usize, [0u8; 1 << 16]);
                    loop {
                        // Stopped: what the writer left in the pipe, then done.
                        let stopping = stop.load(std::sync::atomic::Ordering::Relaxed);
                        match std::io::Read::read(&mut reader, &mut buf) {
                            Ok(n) if n > 0 => got += n,
                            _ if stopping => return got,
                            _ => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
            };
            Box::new(move || {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let got = drain.join().unwrap();
                assert!(kind(&path).is_fifo(), "{} was replaced", path.display());
                assert!(got > 0, "nothing was written into {}", path.display());
            })
        }
        Target::Link | Target::Dangling => {
            let real = dir.join(format!("real-{name}"));
            if let Target::Link = target {
                std::fs::write(&real, b"old").unwrap();
            }
            // Relative, as `ln -s real-x x` makes it.
            std::os::unix::fs::symlink(real.file_name().unwrap(), &path).unwrap();
            Box::new(move || {
                assert!(kind(&path).is_symlink(), "{} was replaced", path.display());
                let text = std::fs::read(&real).unwrap_or_default();
                assert!(
                    !text.is_empty() && text != b"old",
                    "{} was not written through the link",
                    real.display()
                );
            })
        }
    }
}

#[test]
fn outputs_never_replace_devices_fifos_or_links() {
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("ringreduce-outputs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let train = ["train", "--data", "synthetic", "--epochs", "1", "--hidden", "8"];
    let compare = [
        "compare",
        "--data",
        "synthetic",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--strategies",
        "sync:ring",
    ];
    let ps = [
        "train",
        "--data",
        "synthetic",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--strategy",
        "ps:async",
    ];
    // Every output flag of every command; one run per command and target
    // (the parameter server at 2 ranks under mpirun). `calibrate --out`
    // through the writer it calls: a calibration run measures for a minute
    // on a loaded machine.
    let commands: [(usize, &[&str], &[&str]); 4] = [
        (1, &train, &["--checkpoint", "--metrics", "--timeline"]),
        (2, &ps, &["--record"]),
        (1, &compare, &["--out"]),
        (1, &["hogwild", "--epochs", "1"], &["--metrics"]),
    ];
    for target in [Target::Device, Target::Fifo, Target::Link, Target::Dangling] {
        if let (Target::Device, false) = (target, root) {
            eprintln!("SKIPPED: the character-device case needs root (mknod)");
            continue;
        }
        for (i, (ranks, command, flags)) in commands.iter().enumerate() {
            let mut args: Vec<String> = command.iter().map(|a| a.to_string()).collect();
            let mut checks = Vec::new();
            for flag in flags.iter() {
                let name = format!("{target:?}-{i}{flag}");
                checks.push(make_target(&dir, &name, target));
                args.extend([flag.to_string(), dir.join(&name).display().to_string()]);
            }
            let mut cmd = match ranks {
                1 => singleton(),
                _ => mpirun(*ranks, &ringreduce(), &[]),
            };
            cmd.args(&args).current_dir(&dir);
            let out = run_bounded(cmd, Duration::from_secs(120));
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            checks.into_iter().for_each(|check| check());
        }
        let check = make_target(&dir, &format!("{target:?}-calibration.json"), target);
        let calibration = ringreduce::cost::Calibration {
            params: ringreduce::cost::CostParams::default(),
            ranks: 2,
            host: String::new(),
            cpu: String::new(),
            mpi_version: String::new(),
            date: String::new(),
            rules: Default::default(),
        };
        calibration
            .save(&dir.join(format!("{target:?}-calibration.json")))
            .unwrap();
        check();
    }
    // A dangling link into a directory that does not exist: refused before
    // the run, on the resolved path.
    let link = dir.join("nowhere.csv");
    std::os::unix::fs::symlink("/nonexistent/dir/x.csv", &link).unwrap();
    bad_input(
        &[
            "train",
            "--data",
            "synthetic",
            "--metrics",
            link.to_str().unwrap(),
        ],
        "directory /nonexistent/dir does not exist",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn commands_without_mpi_end_quietly_when_the_reader_goes_away() {
    // A reader that went away before the first line (`| head -0`): the
    // pipe's read end is closed before the command starts, so its first
    // write meets a closed pipe, every time.
    for args in [
        &["cost", "--ranks", "4", "--bytes", "1M"][..],
        &["cost", "--ranks", "4", "--bytes", "1M", "--format", "csv"][..],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        // `cost` starts no MPI: no session directory to keep apart.
        let done = Command::new(ringreduce())
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&done.stderr);
        assert!(
            !err.contains("panicked"),
            "{args:?}: a closed pipe made it panic: {err}"
        );
        assert!(err.is_empty(), "{args:?}: a closed pipe printed errors: {err}");
        assert!(
            !done.status.success(),
            "{args:?}: its output was lost, yet it exited 0"
        );
    }
}
