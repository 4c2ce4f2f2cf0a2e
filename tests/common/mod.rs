//! Launching binaries under a real `mpirun` from `cargo test`.
//!
//! A missing `mpirun` is a test failure with instructions, never a skip.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `ringreduce` binary cargo built for these tests (with the `cli` feature).
pub fn ringreduce() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_ringreduce") {
        Some(path) => PathBuf::from(path),
        None => panic!("the ringreduce binary was not built: it needs the `cli` feature"),
    }
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

pub fn is_root() -> bool {
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
    // Open MPI 4.1 makes /tmp/ompi.<host>.<uid> when a job starts and
    // removes it when the last one ends; two mpiruns starting at once can
    // both try to make it, and the second fails in orte_init ("mkdir …
    // File exists"), which the parallel tests met. Each command gets a
    // session directory base of its own (removed by `run_bounded`).
    cmd.env("OMPI_MCA_orte_tmpdir_base", session_base())
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("OMPI_MCA_mpi_yield_when_idle", "1")
        .arg("-n")
        .arg(ranks.to_string())
        .arg(program)
        .args(args);
    cmd
}

/// The `ringreduce` command started without `mpirun`. A rank started so is
/// an MPI singleton: Open MPI starts a daemon of its own for it, which makes
/// the same /tmp/ompi.<host>.<uid> as `mpirun` does and loses the same race
/// to a job starting beside it ("mkdir … File exists", met in CI), so it
/// gets a session directory base of its own too (removed by `run_bounded`).
pub fn singleton() -> Command {
    let mut cmd = Command::new(ringreduce());
    cmd.env("OMPI_MCA_orte_tmpdir_base", session_base());
    cmd
}

/// A new, empty directory for one `mpirun`'s session files: short, under
/// the system's temporary directory (PMIx puts sockets there, whose paths
/// must stay under 108 bytes).
fn session_base() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rr-ompi-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Runs `cmd` to completion, killing it (and failing) after `limit`; an
/// `mpirun`'s session directory base goes with it.
pub fn run_bounded(cmd: Command, limit: Duration) -> Output {
    let base = session_of(&cmd);
    let out = wait_bounded(spawn(cmd), limit);
    if let Some(dir) = base {
        let _ = std::fs::remove_dir_all(dir);
    }
    out
}

/// The session directory base `mpirun` or `singleton` gave `cmd`, if any.
fn session_of(cmd: &Command) -> Option<PathBuf> {
    cmd.get_envs()
        .find(|(k, _)| *k == "OMPI_MCA_orte_tmpdir_base")
        .and_then(|(_, v)| v.map(PathBuf::from))
}

/// Starts `cmd` with its output captured.
pub fn spawn(mut cmd: Command) -> Child {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {desc}: {e}"))
}

/// Waits for `child`, killing it (and failing) after `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait failed").is_some() {
            return child.wait_with_output().expect("collecting output failed");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collecting output failed");
            panic!(
                "job did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process id of MPI rank `rank` started by the `mpirun` process
/// `launcher` (a child of it whose environment says so), once it exists.
pub fn rank_pid(launcher: u32, rank: usize, limit: Duration) -> u32 {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    let start = Instant::now();
    while start.elapsed() < limit {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid …: the parent is the second field after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid != Some(launcher) {
                continue;
            }
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no process of rank {rank} under mpirun {launcher} within {limit:?}");
}

/// Sends `signal` (e.g. "KILL", "STOP") to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Each epoch row of a metrics log as (epoch, ranks of the run that wrote it).
#[cfg(feature = "train")]
pub fn epoch_ranks(log: &ringreduce::train::MetricsLog) -> Vec<(usize, usize)> {
    log.lines
        .iter()
        .filter_map(|l| match &l.row {
            ringreduce::train::log::Row::Epoch(m) => Some((m.epoch, l.ranks)),
            _ => None,
        })
        .collect()
}
