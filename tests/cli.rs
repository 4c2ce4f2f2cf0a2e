//! Command-line behaviour that needs no MPI launch: bad input gets one line
//! on stderr and exit code 2.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn ringreduce_cmd(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(ringreduce());
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
    let mut cmd = Command::new(ringreduce());
    cmd.args(["verify", "--max-count", "4"]).env("RINGREDUCE_ALGO", "tree");
    let out = run_bounded(cmd, Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid RINGREDUCE_ALGO: unknown algorithm `tree`"), "{err}");
}

#[test]
fn help_lists_the_subcommands() {
    let out = run_bounded(
        {
            let mut c = Command::new(ringreduce());
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
        let mut cmd = Command::new(ringreduce());
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

#[test]
fn bench_rejects_bad_input_in_one_line() {
    bad_input(&["bench", "-m", "10:5"], "minimum is above maximum");
    bad_input(&["bench", "-m", "10"], "MIN:MAX");
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
    bad_input(&["soak", "--max-size", "4X"], "unknown unit");
    bad_input(&["soak", "--max-size", "1T"], "available");
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
