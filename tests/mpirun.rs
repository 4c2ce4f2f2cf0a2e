//! Multi-rank tests: real OpenMPI, launched with `mpirun` on the binaries.

mod common;

use std::time::Duration;

use common::*;

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
    let cases = 4 * 7 * 5 * ringreduce::verify::counts(ranks, 65537).len();
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
    let mut cmd = std::process::Command::new(ringreduce());
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
    assert!(text.contains("1 ranks"), "{text}");
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

#[test]
fn example_allreduce_2_ranks() {
    example_runs(2);
}

#[test]
fn example_allreduce_3_ranks() {
    example_runs(3);
}
