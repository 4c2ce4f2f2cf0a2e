//! Faults under a real `mpirun`: mismatched calls, a late rank, a stopped
//! rank, a killed rank during training (and the resume after it), bad
//! settings. Every job is bounded in time; the tests run one at a time so
//! that the time limits measure the library, not the other tests.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// The bound: a fault ends the job within 10 s.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Jobs that should succeed.
const LIMIT: Duration = Duration::from_secs(120);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lines of standard error that the library or the example printed.
fn ours(err: &str) -> Vec<&str> {
    err.lines()
        .filter(|l| l.starts_with("ringreduce:") || l.starts_with("faults:"))
        .collect()
}

#[test]
fn a_mismatched_count_stops_every_rank_with_one_line_naming_both_sides() {
    let _guard = serial();
    let start = Instant::now();
    let out = run_bounded(mpirun(4, &example("faults"), &["mismatch"]), STOP_LIMIT);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        ours(&err),
        vec!["faults: all_reduce #1: rank 3 passed 1000 f32 sum ring, ranks 0-2 passed 1024 f32 sum ring"],
        "{err}"
    );
    assert!(start.elapsed() < STOP_LIMIT);
}

#[test]
fn with_the_checks_off_a_mismatch_is_not_caught_by_the_agreement() {
    // The off switch really is off: the same mistake now reaches the
    // transfers. At 2 ranks each receives the other's half: rank 0 gets
    // 2000 bytes where it expected 2048 (a length check), rank 1 gets 2048
    // into room for 2000 — which MPI cuts off. That used to abort the job
    // with MPI_ERR_TRUNCATE and no line of ours; now it is an error each
    // rank returns (exit 2, rank 0's line), without the agreement's words.
    let _guard = serial();
    let mut cmd = mpirun(2, &example("faults"), &["mismatch"]);
    cmd.env("RINGREDUCE_CHECK", "0").env("RINGREDUCE_TIMEOUT", "2");
    let out = run_bounded(cmd, Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("passed 1000 f32"), "{err}");
    assert!(!err.contains("MPI_ERR_TRUNCATE"), "{err}");
    assert_eq!(
        ours(&err),
        vec!["faults: rank 0 expected 2048 bytes from rank 1 but received 2000"],
        "{err}"
    );
}

/// The truncation itself, on the rank that meets it: a receive of 8 bytes
/// that a 12-byte message reaches returns [`ringreduce::Error::Truncated`]
/// naming the sender, with the call checks off, through the MPI transport.
#[test]
fn an_over_long_message_is_an_error_naming_the_sender() {
    let _guard = serial();
    let out = run_bounded(
        mpirun(2, &example("faults"), &["truncate"]),
        Duration::from_secs(30),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("MPI_ERR_TRUNCATE"), "{err}");
    assert_eq!(
        ours(&err),
        vec!["faults: rank 0 received from rank 1 a message longer than its 8-byte buffer (the ranks passed different counts or types)"],
        "{err}"
    );
}

#[test]
fn a_rank_that_does_not_join_is_named_and_the_job_aborted() {
    let _guard = serial();
    let mut cmd = mpirun(3, &example("faults"), &["late", "60"]);
    cmd.env("RINGREDUCE_TIMEOUT", "1");
    let start = Instant::now();
    let out = run_bounded(cmd, STOP_LIMIT);
    let took = start.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(
        ours(&err),
        vec![format!(
            "ringreduce: rank 1 has not joined all_reduce #1 after 1 s; on host {}; aborting the job",
            host()
        )],
        "{err}"
    );
    assert!(took < STOP_LIMIT, "{took:?}");
}

#[test]
fn a_rank_that_joins_late_but_within_the_timeout_is_fine() {
    let _guard = serial();
    let mut cmd = mpirun(3, &example("faults"), &["late", "1"]);
    cmd.env("RINGREDUCE_TIMEOUT", "20");
    let out = run_bounded(cmd, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("every call succeeded"));
}

/// Starts `cmd`, sends `sig` to MPI rank `rank` after `after`, and waits
/// (at most [`STOP_LIMIT`]) for the job; returns its output and how long
/// it took from the signal. The rank is killed afterwards in case a
/// stopped process outlived the job.
fn signal_rank_and_wait(
    cmd: std::process::Command,
    rank: usize,
    sig: &str,
    after: Duration,
) -> (std::process::Output, Duration) {
    let child = spawn(cmd);
    let pid = rank_pid(child.id(), rank, Duration::from_secs(30));
    std::thread::sleep(after);
    signal(pid, sig);
    let start = Instant::now();
    let out = wait_bounded(child, STOP_LIMIT);
    let took = start.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    (out, took)
}

#[test]
fn a_stopped_rank_mid_run_is_reported_and_the_job_aborted() {
    let _guard = serial();
    let mut cmd = mpirun(2, &example("faults"), &["loop", "100000000"]);
    cmd.env("RINGREDUCE_TIMEOUT", "1");
    // 500 ms: well into the loop.
    let (out, took) = signal_rank_and_wait(cmd, 1, "STOP", Duration::from_millis(500));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let lines = ours(&err);
    assert_eq!(lines.len(), 1, "{err}");
    // Rank 0 waits for rank 1's data, for rank 1 to take rank 0's data (a
    // message too large to go eagerly), or for rank 1 to join the next call.
    assert!(
        lines[0].contains("no message from rank 1 for 1 s; not responding: rank 1")
            || lines[0].contains("rank 1 has not accepted a message for 1 s; not responding: rank 1")
            || lines[0].contains("rank 1 has not joined all_reduce #"),
        "{err}"
    );
    assert!(took < STOP_LIMIT, "{took:?}");
}

#[test]
fn a_rank_stopped_after_its_work_is_named_at_the_last_agreement() {
    // Regression: a parameter-server rank stopped right at the end of a
    // short run was never reported: the others went on into the shared
    // window's free and MPI_Finalize, which wait with no timeout. The
    // stop is injected at a named phase (after the subcommand's work).
    let _guard = serial();
    let args = [
        "train",
        "--data",
        "synthetic",
        "--strategy",
        "ps:async",
        "--servers",
        "1",
        "--batch",
        "126",
        "--epochs",
        "2",
        "--log-every",
        "0",
    ];
    let mut cmd = mpirun(4, &ringreduce(), &args);
    cmd.env("RINGREDUCE_TIMEOUT", "1")
        .env("RINGREDUCE_STOP_AT", "1:work-done");
    let start = Instant::now();
    let out = run_bounded(cmd, STOP_LIMIT);
    let took = start.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    // The run itself finished: its last epoch is printed.
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("    2 ")),
        "{}",
        stdout(&out)
    );
    let lines = ours(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("rank 1 has not joined barrier #") && lines[0].contains("aborting the job"),
        "{err}"
    );
    assert!(took < STOP_LIMIT, "{took:?}");
}

#[test]
fn bad_check_settings_stop_every_rank_with_one_line() {
    let _guard = serial();
    for (var, value) in [
        ("RINGREDUCE_TIMEOUT", "soon"),
        ("RINGREDUCE_CHECK", "maybe"),
        ("RINGREDUCE_SEGMENTS", "0"),
    ] {
        let mut cmd = mpirun(2, &ringreduce(), &["verify", "--max-count", "10"]);
        cmd.env(var, value);
        let out = run_bounded(cmd, LIMIT);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let lines = ours(&err);
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(var) && lines[0].contains(value), "{err}");
    }
}

#[test]
fn a_failed_checkpoint_write_stops_every_rank_at_once_and_keeps_the_last_one() {
    // Regression: when rank 0 could not save, it returned alone and the
    // other ranks waited for the whole stall timeout. Here a file-size limit
    // (`ulimit -f`) makes the write fail with EFBIG on rank 0.
    let _guard = serial();
    let dir = std::env::temp_dir().join(format!("ringreduce-fullckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("run.ckpt");
    let train = |epochs: &str, resume: bool| {
        let mut a: Vec<String> = [
            "train",
            "--data",
            "synthetic",
            "--hidden",
            "16",
            "--batch",
            "60",
            "--epochs",
        ]
        .map(String::from)
        .to_vec();
        a.extend([
            epochs.to_string(),
            "--checkpoint".into(),
            ckpt.to_str().unwrap().to_string(),
        ]);
        if resume {
            a.push("--resume".into());
        }
        a
    };
    let args = train("1", false);
    let out = run_bounded(
        mpirun(
            2,
            &ringreduce(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let before = std::fs::read(&ckpt).unwrap();
    // Each rank: ignore SIGXFSZ, limit files to 2 blocks, then train on.
    let script = format!(
        "trap '' XFSZ; ulimit -f 2; exec {} \"$@\"",
        ringreduce().display()
    );
    let mut sh_args = vec!["-c".to_string(), script, "sh".into()];
    sh_args.extend(train("3", true));
    let start = Instant::now();
    let out = run_bounded(
        mpirun(
            2,
            std::path::Path::new("/bin/sh"),
            &sh_args.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
        LIMIT,
    );
    let took = start.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines = ours(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("File too large"), "{err}");
    assert!(
        took < STOP_LIMIT,
        "took {took:?}: the other rank waited for the timeout"
    );
    assert!(
        std::fs::read(&ckpt).unwrap() == before,
        "the last good checkpoint changed"
    );
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "run.ckpt")
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn data_missing_on_one_rank_is_named_in_one_line() {
    // Regression: when only rank 1 lacked its data file, the job exited 2
    // without a word (only rank 0 prints, and rank 0 was fine).
    let _guard = serial();
    let dir = std::env::temp_dir().join(format!("ringreduce-onerank-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data-0.csv"), "1,0.5,2\n0,1,-1\n1,0,0\n0,2,2\n").unwrap();
    let script = format!(
        "exec {} train --data {}/data-$OMPI_COMM_WORLD_RANK.csv --batch 2 --epochs 1",
        ringreduce().display(),
        dir.display()
    );
    let out = run_bounded(
        mpirun(2, std::path::Path::new("/bin/sh"), &["-c", &script]),
        LIMIT,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines = ours(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("ringreduce: rank 1: ") && lines[0].contains("data-1.csv"),
        "{err}"
    );
}

/// Kills rank 1 with SIGKILL after the first checkpoint, checks the job
/// ends within 10 s, resumes, and compares the final checkpoint with an
/// uninterrupted run's: byte for byte.
#[test]
fn a_killed_rank_ends_training_and_resume_finishes_it_exactly() {
    let _guard = serial();
    let dir = std::env::temp_dir().join(format!("ringreduce-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (whole, broken) = (dir.join("whole.ckpt"), dir.join("broken.ckpt"));
    let args = |ckpt: &std::path::Path, resume: bool| {
        let mut a: Vec<String> = [
            "train",
            "--data",
            "synthetic",
            "--hidden",
            "256,256",
            "--batch",
            "60",
            "--lr",
            "0.05",
            "--epochs",
            "40",
            "--checkpoint",
        ]
        .map(String::from)
        .to_vec();
        a.push(ckpt.to_str().unwrap().to_string());
        if resume {
            a.push("--resume".into());
        }
        a
    };
    let job = |a: &[String]| {
        mpirun(
            2,
            &ringreduce(),
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };

    let out = run_bounded(job(&args(&whole, false)), LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));

    let child = spawn(job(&args(&broken, false)));
    let pid = rank_pid(child.id(), 1, Duration::from_secs(30));
    let start = Instant::now();
    while !broken.exists() {
        assert!(start.elapsed() < LIMIT, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(pid, "KILL");
    let killed = Instant::now();
    let out = wait_bounded(child, STOP_LIMIT);
    let took = killed.elapsed();
    let epochs_done = stdout(&out)
        .lines()
        .filter(|l| l.trim_start().starts_with(char::is_numeric))
        .count();
    assert!(!out.status.success(), "the job survived a killed rank");
    assert!(epochs_done < 40, "the kill came after the last epoch");
    eprintln!("killed rank 1 after epoch {epochs_done}; the job stopped {took:?} later");
    assert!(took < STOP_LIMIT, "{took:?}");

    let out = run_bounded(job(&args(&broken, true)), LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, b) = (std::fs::read(&whole).unwrap(), std::fs::read(&broken).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(a == b, "resumed parameters differ from the uninterrupted run's");
}

/// A parameter-server job whose worker (rank 3) or server (rank 0) stops
/// mid-run ends within 10 s, with one line naming the silent rank and
/// what the reporting rank was waiting for; a killed worker ends the job
/// through `mpirun`.
#[test]
fn a_stopped_or_killed_parameter_server_rank_ends_the_job_with_a_message() {
    let _guard = serial();
    for (strategy, victim, sig) in [
        ("ps:async", 3, "STOP"),
        ("ps:ssp=1", 3, "STOP"),
        ("ps:async", 0, "STOP"),
        ("ps:async", 3, "KILL"),
    ] {
        let args = [
            "train",
            "--data",
            "synthetic",
            "--strategy",
            strategy,
            "--epochs",
            "100000",
            "--batch",
            "60",
            "--lr",
            "0.1",
        ];
        let mut cmd = mpirun(4, &ringreduce(), &args);
        cmd.env("RINGREDUCE_TIMEOUT", "1");
        // 1.5 s: well into the run.
        let (out, took) = signal_rank_and_wait(cmd, victim, sig, Duration::from_millis(1500));
        let err = stderr(&out);
        let case = format!("{strategy}, rank {victim} {sig}");
        assert!(!out.status.success(), "{case}: {err}");
        assert!(took < STOP_LIMIT, "{case}: {took:?}");
        if sig == "KILL" {
            continue; // mpirun's own report
        }
        assert_eq!(out.status.code(), Some(3), "{case}: {err}");
        let lines = ours(&err);
        assert_eq!(lines.len(), 1, "{case}: {err}");
        // A silent worker is named by its server while the other workers
        // go on, or by the transport's stall report when the server waits
        // for it (a reply it does not take, or the SSP bound holds the
        // others); a silent server by the stall report.
        let named = lines[0].contains(&format!("not responding: rank {victim}"))
            || (victim != 0 && lines[0].contains(&format!("worker rank {victim} has sent nothing for 1 s")));
        assert!(lines[0].contains("parameter-server") && named, "{case}: {err}");
    }
}

/// Faults during a pending (non-blocking) all-reduce: the communication
/// thread's group checks its calls and reports stalls like any group — a
/// mismatched length is one line naming both sides on every rank (exit
/// 2), a rank that never starts its call is named and the job aborted
/// within 10 s (exit 3).
#[test]
fn a_mismatch_or_a_missing_rank_during_a_pending_all_reduce_is_reported() {
    let _guard = serial();
    let out = run_bounded(mpirun(4, &example("overlap"), &["mismatch"]), STOP_LIMIT);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("overlap:")).collect();
    assert_eq!(
        lines,
        vec!["overlap: all_reduce #1: rank 3 passed 1000 f32 sum ring, ranks 0-2 passed 1024 f32 sum ring"],
        "{err}"
    );
    let mut cmd = mpirun(3, &example("overlap"), &["late"]);
    cmd.env("RINGREDUCE_TIMEOUT", "1");
    let start = Instant::now();
    let out = run_bounded(cmd, STOP_LIMIT);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(
        ours(&err),
        vec![format!(
            "ringreduce: rank 1 has not joined all_reduce #1 after 1 s; on host {}; aborting the job",
            host()
        )],
        "{err}"
    );
    assert!(start.elapsed() < STOP_LIMIT);
}

/// This machine's name, which MPI reports as every local rank's host.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}
