//! Multi-rank tests: real OpenMPI, launched with `mpirun` on the binaries.

mod common;

use std::time::Duration;

use common::*;
use ringreduce::{Algorithm, DType, ReduceOp};

const LIMIT: Duration = Duration::from_secs(300);

/// `ringreduce verify` under `mpirun -n ranks`: every case passes.
fn verify_passes(ranks: usize) {
    let cmd = mpirun(
        ranks,
        &ringreduce(),
        &["verify", "--max-count", "65537", "--seed", "7"],
    );
    let out = run_bounded(cmd, LIMIT);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "verify failed at -n {ranks}:\n{text}\n{}",
        stderr(&out)
    );
    let last = text.lines().last().unwrap_or_default();
    let (algorithms, dtypes, ops) = (Algorithm::CONCRETE.len(), DType::ALL.len(), ReduceOp::ALL.len());
    let cases = algorithms * dtypes * ops * ringreduce::verify::counts(ranks, 65537).len();
    assert_eq!(
        last,
        format!("{cases} passed, 0 failed"),
        "at -n {ranks}:\n{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn verify_1_rank() {
    verify_passes(1);
}

#[test]
fn verify_2_ranks() {
    verify_passes(2);
}

#[test]
fn verify_3_ranks() {
    verify_passes(3);
}

#[test]
fn verify_4_ranks() {
    verify_passes(4);
}

#[test]
fn verify_5_ranks() {
    verify_passes(5);
}

#[test]
fn verify_8_ranks() {
    verify_passes(8);
}

#[test]
fn verify_runs_as_an_mpi_singleton_without_mpirun() {
    let mut cmd = singleton();
    cmd.args([
        "verify",
        "--max-count",
        "100",
        "--algo",
        "ring,naive",
        "--dtype",
        "f32",
    ]);
    let out = run_bounded(cmd, LIMIT);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("verify: 1 rank, "), "{text}");
    assert_eq!(text.lines().last(), Some("40 passed, 0 failed"), "{text}");
}

fn example_runs(ranks: usize) {
    let out = run_bounded(mpirun(ranks, &example("allreduce"), &[]), LIMIT);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "example at -n {ranks}:\n{text}\n{}",
        stderr(&out)
    );
    let want = format!("every element = {}", (ranks + 1) as f32 / 2.0);
    assert!(
        text.contains(&format!("over {ranks} ranks")) && text.contains(&want),
        "{text}"
    );
}

/// `examples/split.rs`: groups over the node's communicator and the
/// cross-node rail, a reduce-scatter, all-reduce and all-gather by hand
/// that must give every rank the sum over all ranks (the example checks).
#[test]
fn example_split_builds_a_two_level_sum_from_sub_communicators() {
    for ranks in [1, 3, 4] {
        let out = run_bounded(mpirun(ranks, &example("split"), &[]), LIMIT);
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "split at -n {ranks}:\n{text}\n{}",
            stderr(&out)
        );
        let want = format!(
            "{ranks} ranks: 1 nodes of {ranks} ranks; two-level sum of 1000 i64 is right on every rank"
        );
        assert!(text.contains(&want), "{text}");
    }
}

#[test]
fn example_allreduce_2_ranks() {
    example_runs(2);
}

#[test]
fn example_allreduce_3_ranks() {
    example_runs(3);
}

#[test]
fn bench_checks_every_algorithm_and_the_vendor_at_3_ranks() {
    let args = [
        "bench", "-m", "4:64K", "--iters", "3", "--warmup", "1", "--check", "--format", "csv",
    ];
    let out = run_bounded(mpirun(3, &ringreduce(), &args), LIMIT);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split(',').collect()).collect();
    // 15 sizes (4 B .. 64 KiB) × every algorithm, auto and mpi, every result checked and right.
    assert_eq!(rows.len(), 15 * (Algorithm::CONCRETE.len() + 2), "{text}");
    for r in &rows {
        assert_eq!(r[9], "0", "wrong elements: {r:?}");
        // The in-place call too, the vendor's MPI_IN_PLACE included.
        assert_eq!(r[16], "0", "wrong elements in place: {r:?}");
        assert!(r[4].parse::<f64>().unwrap() > 0.0, "{r:?}");
    }
    assert!(rows.iter().any(|r| r[3] == "mpi") && rows.iter().any(|r| r[3].starts_with("auto:")));
}

#[test]
fn bench_osu_layout_matches_osu_allreduce() {
    let args = [
        "bench", "--osu", "--algo", "ring", "-m", "4:16", "--iters", "5", "--warmup", "1",
    ];
    let out = run_bounded(mpirun(2, &ringreduce(), &args), LIMIT);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "");
    assert_eq!(lines[1], "# OSU MPI Allreduce Latency Test");
    assert_eq!(lines[2], "# Datatype: MPI_FLOAT.");
    assert_eq!(lines[3], "# Size       Avg Latency(us)");
    for (line, size) in lines[4..].iter().zip([4, 8, 16]) {
        assert_eq!(line.len(), 30, "{line:?}");
        assert_eq!(line[..10].trim_end(), size.to_string());
        assert!(line[10..].trim().parse::<f64>().is_ok(), "{line:?}");
    }
}

#[test]
fn ringreduce_algo_forces_auto_on_every_rank() {
    let args = [
        "bench", "--algo", "auto", "-m", "1M:1M", "--iters", "2", "--warmup", "0", "--format", "csv",
    ];
    for forced in ["central", "naive"] {
        let mut cmd = mpirun(3, &ringreduce(), &args);
        cmd.env("RINGREDUCE_ALGO", forced);
        let out = run_bounded(cmd, LIMIT);
        let text = stdout(&out);
        assert!(out.status.success(), "{text}\n{}", stderr(&out));
        assert!(text.contains(&format!(",auto:{forced},")), "{text}");
    }
}

#[test]
fn the_command_turns_open_mpis_tcp_put_off_unless_the_user_set_the_flags() {
    // Open MPI prints the MCA variables it read from the environment at
    // MPI_Init (`mpi_show_mca_params=enviro`): the ranks' own environment,
    // which `set_mpi_defaults` changes before MPI starts.
    let args = [
        "bench", "--algo", "ring", "-m", "8:8", "--iters", "1", "--warmup", "0",
    ];
    let flags = |user: Option<&str>| {
        let mut cmd = mpirun(2, &ringreduce(), &args);
        cmd.env("OMPI_MCA_mpi_show_mca_params", "enviro");
        match user {
            Some(v) => cmd.env("OMPI_MCA_btl_tcp_flags", v),
            None => cmd.env_remove("OMPI_MCA_btl_tcp_flags"),
        };
        let out = run_bounded(cmd, LIMIT);
        let err = stderr(&out);
        assert!(out.status.success(), "{}\n{err}", stdout(&out));
        let shown: Vec<String> = err
            .lines()
            .filter_map(|l| l.split_once("] btl_tcp_flags=").map(|(_, v)| v.to_string()))
            .collect();
        assert!(!shown.is_empty(), "Open MPI showed no btl_tcp_flags: {err}");
        shown
    };
    for v in flags(None) {
        assert_eq!(v, "send,inplace,need-ack,need-csum (environment)");
    }
    for v in flags(Some("send,put,inplace")) {
        assert_eq!(v, "send,put,inplace (environment)");
    }
}

#[test]
fn a_malformed_calibration_in_the_environment_stops_every_rank_with_one_line() {
    let dir = std::env::temp_dir().join(format!("ringreduce-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("broken.json");
    std::fs::write(&bad, "[1, 2").unwrap();
    let mut cmd = mpirun(2, &ringreduce(), &["verify", "--max-count", "10"]);
    cmd.env("RINGREDUCE_CALIBRATION", &bad);
    let out = run_bounded(cmd, LIMIT);
    std::fs::remove_dir_all(&dir).unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("ringreduce:")).collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(ours[0].contains("broken.json"), "{err}");
}

#[test]
fn calibrate_writes_a_calibration_that_cost_and_auto_accept() {
    let dir = std::env::temp_dir().join(format!("ringreduce-cal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cal.json");
    let args = ["calibrate", "--max-bytes", "64K", "--out", file.to_str().unwrap()];
    let out = run_bounded(mpirun(2, &ringreduce(), &args), LIMIT);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("residual") && text.contains("gamma"), "{text}");
    let cal = ringreduce::cost::Calibration::load(&file).expect("calibration loads");
    assert_eq!(cal.ranks, 2);
    assert!(cal.params.lines.iter().all(|l| l.alpha >= 0.0 && l.beta >= 0.0) && cal.params.gamma > 0.0);
    let mut cmd = singleton();
    cmd.args([
        "cost",
        "--ranks",
        "4",
        "--bytes",
        "1M",
        "--calibration",
        file.to_str().unwrap(),
    ]);
    let cost = run_bounded(cmd, LIMIT);
    assert!(cost.status.success(), "{}", stderr(&cost));
    let mut cmd = mpirun(
        2,
        &ringreduce(),
        &["verify", "--max-count", "100", "--algo", "auto"],
    );
    cmd.env("RINGREDUCE_CALIBRATION", &file);
    let verify = run_bounded(cmd, LIMIT);
    assert!(verify.status.success(), "{}", stdout(&verify));
    std::fs::remove_dir_all(&dir).unwrap();
    let single = run_bounded(
        {
            let mut c = singleton();
            c.args(["calibrate", "--out", "/dev/null"]);
            c
        },
        LIMIT,
    );
    assert_eq!(single.status.code(), Some(2), "calibrate on one rank must refuse");
    assert!(stderr(&single).contains("at least 2 ranks"));
}

#[test]
fn calibrate_rules_times_every_algorithm_and_auto_takes_the_rules() {
    let dir = std::env::temp_dir().join(format!("ringreduce-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cal.json");
    let path = file.to_str().unwrap();
    // A rule of another placement already in --out is kept.
    let mut old: serde_json::Value = serde_json::json!({
        "lines": [{"up_to": 18446744073709551615u64, "alpha": 1e-6, "beta": 1e-10}],
        "gamma": 1e-10, "ranks": 4,
        "rules": [{"ranks": 4, "per_node": 1, "algorithm": "ring"}]
    });
    std::fs::write(&file, old.to_string()).unwrap();
    let args = [
        "calibrate",
        "--max-bytes",
        "1K",
        "--rules",
        "--reps",
        "1",
        "--out",
        path,
    ];
    let out = run_bounded(mpirun(2, &ringreduce(), &args), LIMIT);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    // Every algorithm was timed at every size from 8 B to 1 KiB.
    let sweep: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().ends_with('*') || l.contains(" B  "))
        .collect();
    assert_eq!(sweep.len(), 8, "{text}");
    for line in &sweep {
        for a in ringreduce::Algorithm::CONCRETE {
            assert!(line.contains(&format!("{a}=")), "{a} missing from {line}");
        }
    }
    let cal = ringreduce::cost::Calibration::load(&file).unwrap();
    let rules = cal.rules.as_slice();
    assert_eq!(
        (rules[0].ranks, rules[0].per_node, rules[0].up_to),
        (4, 1, None),
        "{rules:?}"
    );
    let mine: Vec<_> = rules.iter().filter(|r| r.ranks == 2).collect();
    assert!(
        !mine.is_empty() && mine.iter().all(|r| r.per_node == 2),
        "{rules:?}"
    );
    assert_eq!(
        mine.last().unwrap().up_to,
        None,
        "the last size's rule covers every larger one"
    );

    // --algo narrows the sweep to its candidates; `auto` among them is refused.
    let narrow = dir.join("narrow.json");
    let args = [
        "calibrate",
        "--max-bytes",
        "64",
        "--rules",
        "--reps",
        "1",
        "--algo",
        "ring,butterfly,ring",
        "--out",
        narrow.to_str().unwrap(),
    ];
    let out = run_bounded(mpirun(2, &ringreduce(), &args), LIMIT);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let sweep: Vec<&str> = text.lines().filter(|l| l.contains(" B  ")).collect();
    assert_eq!(sweep.len(), 4, "{text}");
    for line in &sweep {
        let cells: Vec<&str> = line.split_whitespace().skip(2).collect();
        assert_eq!(cells.len(), 2, "ring and butterfly once each: {line}");
        assert!(
            cells
                .iter()
                .all(|c| c.starts_with("ring=") || c.starts_with("butterfly=")),
            "{line}"
        );
    }
    let args = [
        "calibrate",
        "--max-bytes",
        "64",
        "--rules",
        "--algo",
        "auto",
        "--out",
        narrow.to_str().unwrap(),
    ];
    let out = run_bounded(mpirun(2, &ringreduce(), &args), LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("ringreduce:")).collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(ours[0].contains("`auto` is what the rules decide"), "{err}");

    // Rules written by hand decide `auto` in a job on this placement.
    old = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    old["rules"] = serde_json::json!([
        {"ranks": 2, "per_node": 2, "up_to": 64, "algorithm": "central"},
        {"ranks": 2, "per_node": 2, "algorithm": "naive"}
    ]);
    std::fs::write(&file, old.to_string()).unwrap();
    let bench = [
        "bench",
        "--algo",
        "auto",
        "-m",
        "16:256",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--no-in-place",
        "--check",
        "--format",
        "csv",
        "--calibration",
        path,
    ];
    let out = run_bounded(mpirun(2, &ringreduce(), &bench), LIMIT);
    let csv = stdout(&out);
    assert!(out.status.success(), "{csv}\n{}", stderr(&out));
    let picked: Vec<(u64, String)> = ringreduce::bench::parse_csv(&csv)
        .unwrap()
        .into_iter()
        .map(|r| (r.bytes, r.algo))
        .collect();
    let want: Vec<(u64, String)> = [
        (16, "central"),
        (32, "central"),
        (64, "central"),
        (128, "naive"),
        (256, "naive"),
    ]
    .iter()
    .map(|&(b, a)| (b, format!("auto:{a}")))
    .collect();
    assert_eq!(picked, want, "{csv}");
    let mut explain = singleton();
    explain.args([
        "cost",
        "--ranks",
        "2",
        "--nodes",
        "1",
        "--bytes",
        "32",
        "--explain",
        "--calibration",
        path,
    ]);
    let out = run_bounded(explain, LIMIT);
    assert!(
        stdout(&out).contains("auto chooses: central (rule 1 of the calibration's table"),
        "{}",
        stdout(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shared_memory_shapes_from_the_environment_run_and_bad_ones_are_one_line() {
    // Tiny pieces and slots: every path of `shm` and `hierarchical` cut
    // many times, still bitwise the vendor's result.
    let bench = [
        "bench",
        "--algo",
        "shm,hierarchical",
        "-m",
        "8:1M",
        "-f",
        "8",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--check",
    ];
    // Pieces written around the cache (`streamed`, non-temporal stores on
    // x86-64), and `auto` on pieces large enough for its probes (16 KiB).
    for (writes, piece) in [("streamed", "4K"), ("auto", "16K")] {
        let mut cmd = mpirun(2, &ringreduce(), &bench);
        cmd.env("RINGREDUCE_SHM_PIECE", piece)
            .env("RINGREDUCE_SHM_SLOT", "64")
            .env("RINGREDUCE_SHM_WRITES", writes);
        let out = run_bounded(cmd, LIMIT);
        let text = stdout(&out);
        assert!(out.status.success(), "{writes}: {text}\n{}", stderr(&out));
        assert!(text.contains("Out of bounds values : 0 OK"), "{writes}: {text}");
    }
    for (var, bad) in [("RINGREDUCE_SHM_PIECE", "3x"), ("RINGREDUCE_SHM_WRITES", "nt")] {
        let mut cmd = mpirun(2, &ringreduce(), &bench);
        cmd.env(var, bad);
        let out = run_bounded(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("ringreduce:")).collect();
        assert_eq!(ours.len(), 1, "{err}");
        assert!(
            ours[0].contains(var) && ours[0].contains(&format!("`{bad}`")),
            "{err}"
        );
    }
}

#[test]
fn train_writes_metrics_plot_and_checkpoint_and_resumes() {
    let dir = std::env::temp_dir().join(format!("ringreduce-train-mpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ckpt, metrics, plot) = (dir.join("m.ckpt"), dir.join("m.csv"), dir.join("loss.png"));
    let base = [
        "train",
        "--data",
        "synthetic",
        "--model",
        "mlp",
        "--hidden",
        "16",
        "--batch",
        "60",
    ];
    let with = |epochs: &str, extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["--epochs", epochs, "--checkpoint", ckpt.to_str().unwrap()]);
        args.extend(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |ranks: usize, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_bounded(mpirun(ranks, &ringreduce(), &args), LIMIT)
    };
    let whole = run(
        2,
        with(
            "2",
            &[
                "--metrics",
                metrics.to_str().unwrap(),
                "--plot",
                plot.to_str().unwrap(),
            ],
        ),
    );
    assert!(whole.status.success(), "{}{}", stdout(&whole), stderr(&whole));
    let log = ringreduce::train::MetricsLog::load(&metrics).unwrap();
    let epochs: Vec<_> = log.epochs().cloned().collect();
    assert_eq!(epochs.len(), 2, "{}", log.to_csv());
    // 100 steps per epoch, a step row every 50 (the default --log-every).
    assert_eq!(log.steps().map(|s| s.0).collect::<Vec<_>>(), [50, 100, 150, 200]);
    assert!(log
        .lines
        .iter()
        .all(|l| l.ranks == 2 && l.strategy == "sync:ring"));
    // The synthetic blobs are well separated: a held-out accuracy near 1.
    let accuracy = epochs[1].test_accuracy.unwrap();
    assert!(accuracy > 0.9, "test accuracy {accuracy}:\n{}", log.to_csv());
    assert!(epochs[1].samples_per_sec > 0.0 && epochs[1].step == 200);
    assert!(std::fs::read(&plot).unwrap().starts_with(b"\x89PNG"));
    // Progress on stderr (not a terminal under mpirun): plain lines, rank 0's only.
    let progress: Vec<&str> = std::str::from_utf8(&whole.stderr)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("epoch "))
        .collect();
    assert_eq!(progress.len(), 4, "{progress:?}");
    assert!(
        progress[3].starts_with("epoch 2/2  step 200/200  loss "),
        "{progress:?}"
    );
    assert!(
        progress[3].contains(" samples/s  elapsed ") && progress[3].contains("  ETA "),
        "{progress:?}"
    );
    let final_line = |text: &str| {
        text.lines()
            .rfind(|l| l.trim_start().starts_with('2'))
            .map(str::to_string)
    };
    let uninterrupted =
        final_line(&stdout(&whole)).unwrap_or_else(|| panic!("no epoch 2 line:\n{}", stdout(&whole)));

    // One epoch, then resume on 3 ranks to epoch 2: same loss and accuracy
    // to the printed digits, and the metrics file keeps epoch 1's rows.
    let part = dir.join("part.csv");
    let part_arg = ["--metrics", part.to_str().unwrap()];
    assert!(run(2, with("1", &part_arg)).status.success());
    let resumed = run(3, with("2", &[&part_arg[..], &["--resume"]].concat()));
    let text = stdout(&resumed);
    assert!(resumed.status.success(), "{text}{}", stderr(&resumed));
    assert!(
        text.contains(&format!(
            "resumed from epoch 1 of 2 (checkpoint {})",
            ckpt.display()
        )),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("1 ")),
        "epoch 1 ran again:\n{text}"
    );
    let cols = |l: &str| {
        l.split_whitespace()
            .take(3)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(cols(&final_line(&text).unwrap()), cols(&uninterrupted));
    let log = ringreduce::train::MetricsLog::load(&part).unwrap();
    let ranks = epoch_ranks(&log);
    assert_eq!(ranks, [(1, 2), (2, 3)], "{}", log.to_csv());
    assert_eq!(log.steps().count(), 4, "{}", log.to_csv());

    // A batch that leaves a rank without an example: one line, non-zero
    // exit (a batch the rank count does not divide is fine: uneven shares).
    let bad = run(
        4,
        vec![
            "train".into(),
            "--data".into(),
            "synthetic".into(),
            "--batch".into(),
            "3".into(),
        ],
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("leaves some of the 4 ranks without an example"),
        "{}",
        stderr(&bad)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn example_custom_model_trains_at_2_ranks() {
    let out = run_bounded(mpirun(2, &example("custom_model"), &[]), LIMIT);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert_eq!(
        text.lines().filter(|l| l.starts_with("epoch ")).count(),
        5,
        "{text}"
    );
}

#[test]
fn a_short_soak_passes_at_3_ranks() {
    let args = [
        "soak",
        "--calls",
        "300",
        "--max-bytes",
        "64K",
        "--check",
        "--warmup",
        "50",
    ];
    let out = run_bounded(mpirun(3, &ringreduce(), &args), LIMIT);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let last = text.lines().last().unwrap_or_default();
    assert!(last.starts_with("soak: 300 calls, 0 failures;"), "{text}");
    assert!(last.contains("resident memory"), "{text}");
}

/// The strategies' invariants (gossip keeps the synchronous average, the
/// complete graph averages in one mix, local SGD with τ = 1 is synchronous
/// SGD) across real MPI ranks.
#[test]
fn strategy_invariants_hold_under_mpirun_at_2_to_5_ranks() {
    for ranks in 2..=5 {
        let out = run_bounded(mpirun(ranks, &example("strategies"), &[]), LIMIT);
        assert!(
            out.status.success(),
            "-n {ranks}:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains(&format!("strategy invariants hold at {ranks} ranks")),
            "{}",
            stdout(&out)
        );
    }
}

/// The default batch (128) on rank counts that do not divide it, as a new
/// user would try: synchronous SGD at 3 ranks and the parameter server
/// with 3 workers (`-n 4 --servers 1`) train to the end.
#[test]
fn train_with_the_default_batch_runs_where_the_ranks_do_not_divide_it() {
    for (ranks, strategy) in [(3, "sync"), (4, "ps:async")] {
        let out = run_bounded(
            mpirun(
                ranks,
                &ringreduce(),
                &[
                    "train",
                    "--data",
                    "synthetic",
                    "--epochs",
                    "2",
                    "--strategy",
                    strategy,
                ],
            ),
            LIMIT,
        );
        assert!(
            out.status.success(),
            "-n {ranks} {strategy}:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("batch 128"),
            "-n {ranks} {strategy}: {}",
            stdout(&out)
        );
    }
}

/// `train --strategy` for gossip and local SGD: the consensus column, the
/// strategy in the metrics, an exact resume on the same rank count and one
/// from the replicas' average on another.
#[test]
fn train_with_gossip_and_local_sgd_resumes_exactly() {
    let dir = std::env::temp_dir().join(format!("ringreduce-strategy-mpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, strategy) in ["gossip:expo", "local:tau=4,momentum"].into_iter().enumerate() {
        let (ckpt, metrics) = (dir.join(format!("{i}.safetensors")), dir.join(format!("{i}.csv")));
        let args = |stop_after: Option<&'static str>, resume: bool| {
            let mut a = vec![
                "train".to_string(),
                "--data".into(),
                "synthetic".into(),
                "--hidden".into(),
                "16".into(),
                "--batch".into(),
                "60".into(),
                "--strategy".into(),
                strategy.into(),
                "--epochs".into(),
                "2".into(),
                "--checkpoint".into(),
                ckpt.display().to_string(),
                "--metrics".into(),
                metrics.display().to_string(),
            ];
            if resume {
                a.push("--resume".into());
            }
            if let Some(e) = stop_after {
                a.extend(["--stop-after".into(), e.into()]);
            }
            a
        };
        let run = |ranks: usize, a: Vec<String>| {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            run_bounded(mpirun(ranks, &ringreduce(), &a), LIMIT)
        };
        let whole = run(3, args(None, false));
        let text = stdout(&whole);
        assert!(whole.status.success(), "{strategy}: {text}{}", stderr(&whole));
        assert!(
            text.contains(&format!(", {strategy}")) && text.contains("consensus"),
            "{text}"
        );
        let log = ringreduce::train::MetricsLog::load(&metrics).unwrap();
        assert!(
            log.lines.iter().all(|l| l.strategy == strategy),
            "{}",
            log.to_csv()
        );
        let full: Vec<_> = log.epochs().cloned().collect();
        assert!(
            full.iter().all(|m| m.consensus_distance.is_some()),
            "{}",
            log.to_csv()
        );

        // Stopped after epoch 1 of 2 (as a killed job), then resumed.
        assert!(run(3, args(Some("1"), false)).status.success());
        let resumed = run(3, args(None, true));
        assert!(resumed.status.success(), "{}", stderr(&resumed));
        let log = ringreduce::train::MetricsLog::load(&metrics).unwrap();
        let again: Vec<_> = log.epochs().cloned().collect();
        assert_eq!(again.len(), 2);
        assert_eq!(again[1].train_loss, full[1].train_loss, "{strategy}");
        assert_eq!(again[1].test_accuracy, full[1].test_accuracy, "{strategy}");
        assert_eq!(
            again[1].consensus_distance, full[1].consensus_distance,
            "{strategy}"
        );

        // On 2 ranks: every rank starts from the 3 replicas' average and
        // the run ends close to the 3-rank one.
        assert!(run(3, args(Some("1"), false)).status.success());
        let other = run(2, args(None, true));
        assert!(other.status.success(), "{strategy}: {}", stderr(&other));
        let log = ringreduce::train::MetricsLog::load(&metrics).unwrap();
        let ranks: Vec<usize> = epoch_ranks(&log).into_iter().map(|(_, r)| r).collect();
        assert_eq!(ranks, [3, 2], "{strategy}: {}", log.to_csv());
        let two = log.epochs().nth(1).unwrap();
        let (a, b) = (two.test_accuracy.unwrap(), full[1].test_accuracy.unwrap());
        assert!(
            (a - b).abs() < 0.05,
            "{strategy}: {a} on 2 ranks after 3, {b} on 3"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The epoch rows' (train_loss, accuracy) of a `--metrics` file.
fn losses_and_accuracies(path: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[4].is_empty())
        .map(|f| (f[5].to_string(), f[6].to_string()))
        .collect()
}

#[test]
fn a_recorded_parameter_server_run_replays_exactly_under_mpirun() {
    let dir = std::env::temp_dir().join(format!("ringreduce-ps-mpirun-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for servers in ["1", "2"] {
        let log = dir.join(format!("record{servers}.log"));
        let run = |extra: &[&str], metrics: &std::path::Path| {
            let mut args = vec![
                "train",
                "--data",
                "synthetic",
                "--strategy",
                "ps:async",
                "--servers",
                servers,
                "--epochs",
                "3",
                "--batch",
                "60",
                "--lr",
                "0.1",
                "--metrics",
            ];
            args.push(metrics.to_str().unwrap());
            // Each server writes its shard (parameters and momentum) at
            // every epoch's end: the last ones are the final state.
            let ckpt = metrics.with_extension("ckpt");
            args.extend_from_slice(&["--checkpoint", ckpt.to_str().unwrap()]);
            args.extend_from_slice(extra);
            let out = run_bounded(mpirun(4, &ringreduce(), &args), LIMIT);
            assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
            let text = stdout(&out);
            assert!(text.contains("staleness 0:"), "{text}");
            let shards: Vec<Vec<u8>> = (0..servers.parse::<usize>().unwrap())
                .map(|k| std::fs::read(format!("{}.shard{k}of{servers}", ckpt.display())).unwrap())
                .collect();
            (losses_and_accuracies(metrics), shards)
        };
        let recorded = run(&["--record", log.to_str().unwrap()], &dir.join("m0.csv"));
        assert_eq!(recorded.0.len(), 3);
        for i in 1..=2 {
            let replayed = run(
                &["--replay", log.to_str().unwrap()],
                &dir.join(format!("m{i}.csv")),
            );
            // Every epoch's loss and accuracy, and the final shards and
            // optimizer state byte for byte.
            assert_eq!(replayed, recorded, "{servers} servers, replay {i}");
        }
    }
    // Bad settings: one line, every rank stops.
    for (args, says) in [
        (vec!["--servers", "4"], "leave no worker"),
        (vec!["--n-push", "0"], "n_push and n_fetch"),
        (vec!["--straggler", "0:2"], "is not a worker"),
    ] {
        let mut all = vec![
            "train",
            "--data",
            "synthetic",
            "--strategy",
            "ps:ssp=1",
            "--epochs",
            "1",
            "--batch",
            "60",
        ];
        all.extend(args);
        let out = run_bounded(mpirun(4, &ringreduce(), &all), LIMIT);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(says), "{all:?}: {err}");
    }
}

/// `compare` with parameter-server strategies writes their staleness
/// histograms (CSV beside `--out`, chart in `--plot`). Bulk-synchronous
/// rounds are applied in worker order, so worker i's update of a round
/// has staleness i: per epoch, `steps` updates at each of 0, 1, 2.
#[test]
fn compare_writes_and_plots_the_parameter_servers_staleness() {
    let dir = std::env::temp_dir().join(format!("ringreduce-compare-ps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("c.csv");
    let args = [
        "compare",
        "--data",
        "synthetic",
        "--epochs",
        "2",
        "--batch",
        "60",
        "--lr",
        "0.1",
        "--momentum",
        "0",
        "--strategies",
        "sync:ring",
        "ps:ssp=0",
        "ps:async",
        "--eval-every",
        "40",
        "--out",
        out.to_str().unwrap(),
        "--plot-dir",
        dir.to_str().unwrap(),
    ];
    let run = run_bounded(mpirun(4, &ringreduce(), &args), LIMIT);
    assert!(run.status.success(), "{}\n{}", stdout(&run), stderr(&run));
    // Every strategy scored at steps 40, 80, 120 and 160 besides the
    // epochs' ends (100 steps each); the bytes of a step are the same at
    // every step, so 40 steps into an epoch are 40 % of its bytes.
    let text = std::fs::read_to_string(&out).unwrap();
    for name in ["sync:ring", "ps:ssp=0", "ps:async"] {
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|r| r[0] == name)
            .collect();
        let steps: Vec<&str> = rows.iter().map(|r| r[9]).collect();
        assert_eq!(steps, ["40", "80", "100", "120", "160", "200"], "{text}");
        let bytes = |i: usize| rows[i][4].parse::<u64>().unwrap();
        assert!(rows[0][6].is_empty() && !rows[2][6].is_empty(), "{text}");
        assert_eq!(
            (bytes(0) * 5, bytes(3) - bytes(2)),
            (bytes(2) * 2, bytes(0) / 2),
            "{text}"
        );
    }
    let text = std::fs::read_to_string(dir.join("c-staleness.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("strategy,epoch,staleness,updates"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // synthetic: 6000 training examples, batch 60 → 100 steps; 3 workers.
    for epoch in ["1", "2"] {
        let bsp: Vec<(&str, &str)> = rows
            .iter()
            .filter(|r| r[0] == "ps:ssp=0" && r[1] == epoch)
            .map(|r| (r[2], r[3]))
            .collect();
        assert_eq!(bsp, [("0", "100"), ("1", "100"), ("2", "100")], "{text}");
        let async_total: u64 = rows
            .iter()
            .filter(|r| r[0] == "ps:async" && r[1] == epoch)
            .map(|r| r[3].parse::<u64>().unwrap())
            .sum();
        assert_eq!(async_total, 300, "{text}");
    }
    assert!(!rows.iter().any(|r| r[0] == "sync:ring"), "{text}");
    for ext in ["png", "svg"] {
        let chart = dir.join(format!("staleness.{ext}"));
        assert!(
            std::fs::metadata(&chart).map(|m| m.len() > 1000).unwrap_or(false),
            "{}",
            chart.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bulk-synchronous parameter-server run (2 servers) sliced by
/// `--stop-after` and `--resume` ends with the uninterrupted run's
/// metrics, every epoch's loss and accuracy bit for bit, in one file
/// the resumed run appended to.
#[test]
fn a_resumed_parameter_server_run_appends_to_its_metrics_and_matches_the_whole_run() {
    let dir = std::env::temp_dir().join(format!("ringreduce-ps-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The run over `epochs` epochs, with `extra` arguments.
    let launch = |epochs: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            "synthetic",
            "--strategy",
            "ps:ssp=0",
            "--servers",
            "2",
            "--epochs",
            epochs,
            "--batch",
            "60",
            "--lr",
            "0.1",
        ];
        args.extend_from_slice(extra);
        run_bounded(mpirun(4, &ringreduce(), &args), LIMIT)
    };
    let run = |extra: &[&str], metrics: &std::path::Path| {
        let extra = [&["--metrics", metrics.to_str().unwrap()], extra].concat();
        let out = launch("3", &extra);
        assert!(
            out.status.success(),
            "{extra:?}\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
    };
    let (whole, sliced) = (dir.join("whole.csv"), dir.join("sliced.csv"));
    let ckpt = dir.join("ps.ckpt");
    run(&[], &whole);
    run(
        &["--checkpoint", ckpt.to_str().unwrap(), "--stop-after", "1"],
        &sliced,
    );
    assert_eq!(losses_and_accuracies(&sliced).len(), 1);
    run(&["--checkpoint", ckpt.to_str().unwrap(), "--resume"], &sliced);
    let expected = losses_and_accuracies(&whole);
    assert_eq!(expected.len(), 3);
    assert_eq!(losses_and_accuracies(&sliced), expected);
    // The shards are at epoch 3 now. Resuming the 3-epoch run again is
    // refused (it returned with nothing done, rc 0), and so is a shard
    // whose optimizer_steps was forged with its checksum recomputed.
    let resume = |epochs: &str| {
        let out = launch(epochs, &["--checkpoint", ckpt.to_str().unwrap(), "--resume"]);
        assert_eq!(out.status.code(), Some(2), "{}{}", stdout(&out), stderr(&out));
        stderr(&out)
    };
    let err = resume("3");
    assert!(
        err.contains("shard is at epoch 3 and this run trains 3: nothing left to do"),
        "{err}"
    );
    let shard = dir.join("ps.ckpt.shard0of2");
    let mut c = ringreduce::train::checkpoint::Checkpoint::load(&shard).unwrap();
    (c.header.optimizer_steps, c.optimizer.steps) = (u64::MAX, u64::MAX);
    c.save(&shard).unwrap();
    let err = resume("4");
    assert!(
        err.contains("`optimizer_steps` is 18446744073709551615, outside"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Dynamic shares under `mpirun`: with worker rank 3 twenty times slower,
/// the fast workers apply more updates than it (fixed shares: equal
/// counts), every epoch still holds one epoch's worth of batches
/// (steps × workers = 300 one-batch updates at one server).
#[test]
fn with_dynamic_shares_a_straggler_contributes_fewer_updates() {
    let updates = |spec: &str| -> (Vec<Vec<u64>>, Vec<f64>) {
        let args = [
            "train",
            "--data",
            "synthetic",
            "--strategy",
            spec,
            "--epochs",
            "3",
            "--batch",
            "60",
            "--lr",
            "0.1",
            "--momentum",
            "0",
            "--straggler",
            "3:20",
        ];
        let out = run_bounded(mpirun(4, &ringreduce(), &args), LIMIT);
        let text = stdout(&out);
        assert!(out.status.success(), "{text}\n{}", stderr(&out));
        // `       updates   rank 1: 120, rank 2: 120, rank 3: 60`
        let counts = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("updates"))
            .map(|l| {
                l.split(',')
                    .map(|part| part.rsplit(':').next().unwrap().trim().parse().unwrap())
                    .collect()
            })
            .collect();
        // Epoch rows: the last column is the MB the busiest worker sent.
        let mb = text
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.parse::<usize>().is_ok())
            })
            .map(|l| l.split_whitespace().last().unwrap().parse().unwrap())
            .collect();
        (counts, mb)
    };
    let (fixed, fixed_mb) = updates("ps:async");
    let (dynamic, dynamic_mb) = updates("ps:async,dynamic");
    // The fastest worker sent more in an epoch than its fixed share.
    assert_eq!(fixed_mb.len(), 3);
    for (d, f) in dynamic_mb.iter().zip(&fixed_mb) {
        assert!(d > f, "{dynamic_mb:?} vs {fixed_mb:?}");
    }
    assert_eq!(fixed, vec![vec![100, 100, 100]; 3]);
    assert_eq!(dynamic.len(), 3);
    // The straggler (rank 3, 20× slower) applies fewer updates than the
    // fastest worker in every epoch, and fewer than each fast worker over
    // the run. (Per epoch and per worker it can lose: 4 ranks share 2
    // cores with the other tests' ranks, and a fast worker starved for a
    // whole epoch was seen: [23, 250, 27].) Fixed shares fail all of it.
    for epoch in &dynamic {
        assert_eq!(epoch.iter().sum::<u64>(), 300, "{dynamic:?}");
        assert!(epoch[2] < epoch[0].max(epoch[1]), "{dynamic:?}");
    }
    let total = |w: usize| dynamic.iter().map(|e| e[w]).sum::<u64>();
    assert!(total(2) < total(0) && total(2) < total(1), "{dynamic:?}");
}

/// Non-blocking all-reduce on the communication thread: three calls in
/// flight per algorithm (1, 1000 and 100 003 elements, sum and average),
/// each equal to the blocking call bit for bit, at 2, 3 and 5 ranks; and
/// MPI initialised below `MPI_THREAD_MULTIPLE` is one clear line.
#[test]
fn non_blocking_all_reduces_equal_the_blocking_ones_bitwise() {
    for ranks in [2, 3, 5] {
        let out = run_bounded(mpirun(ranks, &example("overlap"), &[]), LIMIT);
        let text = stdout(&out);
        assert!(out.status.success(), "{ranks} ranks: {text}\n{}", stderr(&out));
        let count: usize = text
            .split("overlap: ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(count >= 3 * 6, "{ranks} ranks: {text}");
        assert!(
            text.contains(&format!("at {ranks} ranks equal the blocking ones bit for bit")),
            "{text}"
        );
    }
    let out = run_bounded(mpirun(2, &example("overlap"), &["--single"]), LIMIT);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("overlap: invalid MPI thread level: MPI was initialised at thread level Single; a communication thread needs MPI_THREAD_MULTIPLE"), "{err}");
}

/// Gradient buckets under mpirun, with the communication thread: the
/// bucketed trainer's checkpoint (parameters and momentum) equals the
/// unbucketed one's byte for byte where the algorithm's sum does not
/// depend on the cut (any algorithm at 2 ranks; the butterfly and
/// Rabenseifner at 3), the choice and the measured steps are printed, and
/// buckets asked of a strategy without them are a one-line error; the
/// fp16 wire, random-k and PowerSGD run on buckets too.
#[test]
fn the_bucketed_trainer_equals_the_unbucketed_one_bitwise_under_mpirun() {
    let dir = std::env::temp_dir().join(format!("ringreduce-buckets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // `--algo ALGO` (or `--compress fp16` when `algo` is that).
    let run = |ranks: usize, algo: &str, bucket: &str| {
        let ckpt = dir.join(format!("{ranks}-{algo}-{bucket}.ckpt"));
        let compressed = algo == "fp16" || algo.contains(':');
        let flag = if compressed { "--compress" } else { "--algo" };
        let args = [
            "train",
            "--data",
            "synthetic",
            "--hidden",
            "64,32",
            "--epochs",
            "2",
            "--batch",
            "60",
            flag,
            algo,
            "--bucket-mb",
            bucket,
            "--checkpoint",
            ckpt.to_str().unwrap(),
        ];
        let out = run_bounded(mpirun(ranks, &ringreduce(), &args), LIMIT);
        let text = stdout(&out);
        assert!(out.status.success(), "{args:?}\n{text}\n{}", stderr(&out));
        (std::fs::read(&ckpt).unwrap(), text)
    };
    for (ranks, algo) in [(2, "ring"), (3, "butterfly"), (3, "rabenseifner")] {
        let (plain, text) = run(ranks, algo, "0");
        assert!(!text.contains("buckets:"), "{text}");
        assert!(text.contains("steps: median"), "{text}");
        // 0.0001 MiB (105 B): every layer of the 3-layer MLP its own bucket.
        let (bucketed, text) = run(ranks, algo, "0.0001");
        assert!(text.contains("buckets: --bucket-mb 0.0001 → 3 buckets"), "{text}");
        assert!(text.contains("overlap"), "{text}");
        assert!(
            plain == bucketed,
            "{ranks} ranks {algo}: the bucketed checkpoint differs"
        );
        let (auto, text) = run(ranks, algo, "auto");
        assert!(text.contains("buckets: --bucket-mb auto → "), "{text}");
        assert!(text.contains("predicted per cap: 0 "), "{text}");
        assert!(
            plain == auto,
            "{ranks} ranks {algo}: the auto-bucketed checkpoint differs"
        );
    }
    // Auto tries what it predicts best (it says how the trial went), and
    // leaves the ring at 3 ranks alone, saying why.
    let (_, text) = run(3, "butterfly", "auto");
    assert!(
        text.contains(", with buckets ")
            || text.contains("→ off (one all-reduce after the backward pass); predicted"),
        "{text}"
    );
    let (plain, _) = run(3, "ring", "0");
    let (auto, text) = run(3, "ring", "auto");
    assert!(
        text.contains("auto buckets only where the cut leaves every sum's bits alone: ring at 3 ranks"),
        "{text}"
    );
    assert!(plain == auto);
    // The fp16 wire runs on buckets of a given size on the communication
    // thread (its own bits: the wire rounds where each chunk's sum begins),
    // repeatably; auto leaves it alone, saying why.
    let wire = |bucket: &str| run(3, "fp16", bucket);
    let (first, text) = wire("0.0001");
    assert!(text.contains("buckets: --bucket-mb 0.0001 → 3 buckets"), "{text}");
    assert!(first == wire("0.0001").0, "fp16 on buckets repeats bit for bit");
    let (plain, _) = wire("0");
    let (auto, text) = wire("auto");
    assert!(text.contains("the fp16 wire rounds each chunk"), "{text}");
    assert!(plain == auto);
    // Random-k and PowerSGD run on buckets on the communication thread
    // and train the whole gradient's bits (2 ranks: any cut sums alike).
    for compress in ["randomk:0.3", "powersgd:rank=1"] {
        let (plain, _) = run(2, compress, "0");
        let (bucketed, text) = run(2, compress, "0.0001");
        assert!(text.contains("buckets: --bucket-mb 0.0001 → 3 buckets"), "{text}");
        assert!(text.contains("overlap"), "{text}");
        assert!(plain == bucketed, "{compress}: the bucketed checkpoint differs");
    }
    let out = run_bounded(
        mpirun(
            2,
            &ringreduce(),
            &[
                "train",
                "--data",
                "synthetic",
                "--strategy",
                "local:tau=4",
                "--bucket-mb",
                "4",
            ],
        ),
        LIMIT,
    );
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("--bucket-mb") && err.contains("not local:tau=4"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `hogwild` under mpirun: each rank's threads take a share of every
/// epoch, the ranks combine their parameters `--rounds` times an epoch and
/// count the bytes; with one thread per rank the run repeats bit for bit.
#[test]
fn hogwild_hybrid_splits_epochs_counts_bytes_and_repeats_under_mpirun() {
    let dir = std::env::temp_dir().join(format!("ringreduce-hogwild-mpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |name: &str, extra: &[&str]| {
        let metrics = dir.join(name);
        let mut args = vec![
            "hogwild",
            "--examples",
            "3000",
            "--test-examples",
            "300",
            "--features",
            "500",
            "--nnz",
            "10",
            "--epochs",
            "4",
            "--rounds",
            "2",
            "--lr",
            "0.2",
            "--metrics",
            metrics.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = run_bounded(mpirun(2, &ringreduce(), &args), LIMIT);
        let text = stdout(&out);
        assert!(out.status.success(), "{text}{}", stderr(&out));
        assert!(text.contains("# hogwild: 2 ranks × "), "{text}");
        assert_eq!(text.matches("result: ").count(), 1, "rank 0 reports: {text}");
        std::fs::read_to_string(&metrics)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let per_call = Algorithm::Ring.exact_cost(2, 500, 4).unwrap().bytes_sent;
    let hybrid = run("threads.csv", &["--threads", "2", "--combine", "sum"]);
    assert_eq!(hybrid.len(), 4);
    for (k, r) in hybrid.iter().enumerate() {
        assert_eq!(r[8], "3000", "the ranks split each epoch");
        assert_eq!(
            r[13],
            ((k as u64 + 1) * 2 * per_call).to_string(),
            "averaging bytes"
        );
        assert!(r[5].parse::<f64>().unwrap() > 0.6, "test accuracy {r:?}");
    }
    let a = run("a.csv", &["--schedule", "serial"]);
    let b = run("b.csv", &["--schedule", "serial"]);
    // Columns other than times and rates of updates repeat exactly.
    let keep = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| {
                [0, 3, 4, 5, 8, 10, 12, 13]
                    .iter()
                    .map(|&i| r[i].clone())
                    .collect()
            })
            .collect()
    };
    assert_eq!(keep(&a), keep(&b));
    assert!(a.last().unwrap()[3].parse::<f64>().unwrap() < a[0][3].parse::<f64>().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Only rank 0 writes `--metrics` and `--plot`: a directory that exists on
/// rank 0's side only (its working directory here; its node on a cluster)
/// is enough, and rank 0's answer reaches every rank.
#[test]
fn hogwild_outputs_need_their_directory_on_rank_0_only() {
    let base = std::env::temp_dir().join(format!("ringreduce-hogwild-wdir-{}", std::process::id()));
    let (zero, one) = (base.join("rank0"), base.join("rank1"));
    std::fs::create_dir_all(zero.join("out")).unwrap();
    std::fs::create_dir_all(&one).unwrap();
    let program = ringreduce();
    let args = [
        "hogwild",
        "--examples",
        "1000",
        "--features",
        "100",
        "--epochs",
        "2",
        "--metrics",
        "out/m.csv",
    ];
    // Two application contexts: rank 0 in `zero` (mpirun's directory), rank 1 in `one`.
    let mut cmd = mpirun(1, &program, &args);
    cmd.current_dir(&zero)
        .args([":", "-n", "1", "--wdir", one.to_str().unwrap()])
        .arg(&program)
        .args(args);
    let out = run_bounded(cmd, LIMIT);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("# hogwild: 2 ranks"), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_to_string(zero.join("out/m.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    // Missing on rank 0: one line, every rank stops.
    let mut cmd = mpirun(1, &program, &args);
    cmd.current_dir(&one)
        .args([":", "-n", "1", "--wdir", zero.to_str().unwrap()])
        .arg(&program)
        .args(args);
    let out = run_bounded(cmd, LIMIT);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("ringreduce: ").count(), 1, "{err}");
    assert!(
        err.contains("invalid --metrics: out/m.csv: directory out does not exist"),
        "{err}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}

/// `train --timeline` under mpirun with gradient buckets on the
/// communication thread: one Chrome trace with both ranks' main and
/// communication threads, every bucket's all-reduce on the communication
/// thread starting after the backward pass finished the bucket's layers.
#[test]
fn train_writes_a_timeline_whose_buckets_start_after_their_gradients() {
    let dir = std::env::temp_dir().join(format!("ringreduce-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.json");
    let args = [
        "train",
        "--data",
        "synthetic",
        "--hidden",
        "64,32",
        "--epochs",
        "1",
        "--batch",
        "60",
        "--bucket-mb",
        "0.0001",
        "--log-every",
        "0",
        "--timeline",
        path.to_str().unwrap(),
    ];
    let out = run_bounded(mpirun(2, &ringreduce(), &args), LIMIT);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("timeline: "), "{}", stdout(&out));
    let text = std::fs::read_to_string(&path).unwrap();
    let events = ringreduce::train::trace::read_chrome(&text).unwrap();
    // Read back from the file as a viewer reads it, every thread's spans nest.
    assert_eq!(ringreduce::train::trace::misnested(&events), None);
    let reduces: Vec<_> = events.iter().filter(|e| e.name == "all-reduce").collect();
    assert!(!reduces.is_empty(), "no bucket all-reduce in the trace");
    for r in &reduces {
        assert_eq!(r.tid, ringreduce::train::trace::COMM, "{r:?}");
        let ready = ringreduce::train::trace::layers_of(&events, r);
        assert!(!ready.is_empty(), "{r:?}");
        assert!(
            ready.iter().all(|g| g.ts <= r.ts),
            "{r:?} began before its gradient"
        );
    }
    for rank in 0..2 {
        assert!(events
            .iter()
            .any(|e| e.pid == rank && e.name == "forward+backward"));
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn resume_refuses_a_checkpoint_of_another_strategy() {
    let dir = std::env::temp_dir().join(format!("ringreduce-resume-strategy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // (checkpoint written with, resumed with): extra arguments of each run.
    let pairs: [(&[&str], &[&str]); 4] = [
        (&["--strategy", "local:tau=4"], &[]),
        (&[], &["--strategy", "gossip:ring"]),
        (&["--strategy", "gossip:ring"], &["--strategy", "local:tau=4"]),
        (&[], &["--compress", "fp16"]),
    ];
    for (i, (made, resumed)) in pairs.iter().enumerate() {
        let ckpt = dir.join(format!("{i}.safetensors"));
        let run = |extra: &[&str]| {
            let mut args = vec![
                "train",
                "--data",
                "synthetic",
                "--hidden",
                "8",
                "--batch",
                "60",
                "--epochs",
                "3",
            ];
            args.extend(["--checkpoint", ckpt.to_str().unwrap()]);
            args.extend(extra);
            run_bounded(mpirun(2, &ringreduce(), &args), LIMIT)
        };
        let first = run(&[made, &["--stop-after", "1"][..]].concat());
        assert!(first.status.success(), "{made:?}: {}", stderr(&first));
        let before = std::fs::read(&ckpt).unwrap();
        let out = run(&[resumed, &["--resume"][..]].concat());
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{made:?} → {resumed:?}: {}{err}",
            stdout(&out)
        );
        let ours = err.lines().filter(|l| l.starts_with("ringreduce:")).count();
        assert_eq!(ours, 1, "one line of ours (mpirun adds its own):\n{err}");
        let saved = ringreduce::train::checkpoint::Checkpoint::load(&ckpt)
            .unwrap()
            .header
            .strategy;
        assert!(
            err.contains(&format!(
                "checkpoint was made with strategy {saved}; this run's is "
            )),
            "{made:?} → {resumed:?}: {err}"
        );
        assert_eq!(
            std::fs::read(&ckpt).unwrap(),
            before,
            "the refused resume changed the checkpoint"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
