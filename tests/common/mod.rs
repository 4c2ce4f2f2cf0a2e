//! Launching binaries under a real `mpirun` from `cargo test`.
//!
//! A missing `mpirun` is a test failure with instructions, never a skip.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `ringreduce` binary cargo built for these tests.
pub fn ringreduce() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringreduce"))
}

/// An example binary built next to the main binary (`cargo test` builds examples).
pub fn example(name: &str) -> PathBuf {
    let bin = ringreduce();
    let path = bin.parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "example {} was not built at {}",
        name,
        path.display()
    );
    path
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A `mpirun -n ranks program args…` command with the environment these
/// machines need: root permission only when running as root, oversubscription
/// (more ranks than cores is a correctness setting here) and yielding when
/// idle so oversubscribed ranks do not starve each other.
pub fn mpirun(ranks: usize, program: &Path, args: &[&str]) -> Command {
    let mpirun = which("mpirun").unwrap_or_else(|| {
        panic!("mpirun not found on PATH: the MPI tests need OpenMPI (run scripts/setup.sh, or apt-get install openmpi-bin libopenmpi-dev)")
    });
    let mut cmd = Command::new(mpirun);
    if is_root() {
        cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    cmd.env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("OMPI_MCA_mpi_yield_when_idle", "1")
        .arg("-n")
        .arg(ranks.to_string())
        .arg(program)
        .args(args);
    cmd
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Runs `cmd` to completion, killing it (and failing) after `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {desc}: {e}"));
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait failed").is_some() {
            return child.wait_with_output().expect("collecting output failed");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collecting output failed");
            panic!(
                "{desc} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
