//! `ringreduce elastic`: runs `train` under a launcher (mpirun) on the
//! hosts of a host file, and when the job dies — a rank killed, a host
//! whose link dropped, a stall report — finds the lost hosts in what the
//! launcher and the stall report say, takes them out of the host file, and
//! launches again on the rest with `--resume` from the newest checkpoint,
//! as torchrun and Horovod Elastic do. Recovery inside one `mpirun` is not
//! open to us (MPI_ERRORS_ARE_FATAL; ULFM is not in every Open MPI), so a
//! supervisor that relaunches is the shape.
//!
//! The contract with `train` is two hidden options: `--elastic-progress
//! FILE` (rank 0 writes its global step there after every step, so the
//! supervisor knows how far a dead job got) and `--elastic-restart TEXT`
//! (the restart's number, the fault's time, the step reached and its
//! cause: the resumed run's rank 0 logs the restart's line and metrics row
//! once it is training again).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Arguments of `ringreduce elastic`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example, on the hosts of hosts.txt (one `NAME slots=N` a line):\n  \
    ringreduce elastic --hostfile hosts.txt --min-np 2 -- train --strategy sync:auto \\\n    \
    --checkpoint /shared/run.safetensors --checkpoint-every 100 --metrics /shared/run.csv"
)]
pub struct Args {
    /// The hosts, one a line: `NAME [slots=N]` (Open MPI's host file;
    /// `#` starts a comment). Read again before every launch: a lost host
    /// is commented out (`# lost …`); list it again and it rejoins at the
    /// next restart.
    #[arg(long)]
    hostfile: PathBuf,
    /// Fewest ranks to go on with: fewer left ends the job with one line.
    #[arg(long, default_value_t = 1)]
    min_np: usize,
    /// Most ranks to launch (default: every slot of the host file).
    #[arg(long)]
    max_np: Option<usize>,
    /// Restarts allowed; one more failure ends the job.
    #[arg(long, default_value_t = 3)]
    max_restarts: usize,
    /// The launcher, before the command: `{hostfile}` becomes the host
    /// file of the hosts left, `{np}` their rank count.
    #[arg(long, default_value = "mpirun --hostfile {hostfile} -n {np}")]
    launcher: String,
    /// Seconds the launcher has to end the job after a rank reported a
    /// stall (MPI_Abort), before the supervisor kills it: an abort can
    /// wait on a host that no longer answers.
    #[arg(long, default_value_t = 10.0)]
    grace: f64,
    /// A command that checks a host before each launch, `{host}` replaced
    /// (`ssh {host} true`): a host whose probe fails or takes over 10 s is
    /// left out of that launch (and not removed from the host file).
    #[arg(long)]
    probe: Option<String>,
    /// The job: `train` and its arguments, with --checkpoint (on storage
    /// every host shares) and --checkpoint-every STEPS (the most steps a
    /// restart loses).
    #[arg(last = true, required = true, value_name = "train ARGS")]
    command: Vec<String>,
}

/// A line of the host file.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    pub slots: usize,
}

/// The hosts `text` lists, in order (comments and blank lines skipped).
///
/// # Errors
/// A line whose `slots=` is not a positive number, naming the line.
pub fn parse_hosts(text: &str) -> Result<Vec<Host>, String> {
    let mut hosts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        let mut slots = 1;
        for w in words {
            if let Some(v) = w.strip_prefix("slots=") {
                slots = v
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("line {}: `{w}`: slots must be a positive number", i + 1))?;
            }
        }
        hosts.push(Host {
            name: name.to_string(),
            slots,
        });
    }
    Ok(hosts)
}

/// `text` with the lines of the `lost` hosts commented out, each with its
/// reason.
pub fn without_hosts(text: &str, lost: &BTreeSet<String>, why: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let name = line.split('#').next().unwrap_or("").split_whitespace().next();
        match name {
            Some(n) if lost.contains(n) => out += &format!("# {line}  # lost: {why}\n"),
            _ => out += &format!("{line}\n"),
        }
    }
    out
}

/// What the launcher's and the ranks' lines say of a failure.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Evidence {
    /// Hosts whose processes the launcher saw die.
    died: BTreeSet<String>,
    /// The first such death, in words.
    death: Option<String>,
    /// Each stall report: the hosts it blames and what it says.
    stalls: Vec<(BTreeSet<String>, String)>,
    /// A rank reported a stall and the job is aborting.
    pub stalled: bool,
}

impl Evidence {
    fn blame(&mut self, hosts: impl IntoIterator<Item = String>, cause: String) {
        self.died.extend(hosts);
        self.death.get_or_insert(cause);
    }

    /// The stall report to believe: the one blaming the fewest hosts. A
    /// host cut off from the others reports them all, as they report it;
    /// the larger side names the smaller (on a tie, the first report).
    fn believed(&self) -> Option<&(BTreeSet<String>, String)> {
        self.stalls.iter().min_by_key(|(hosts, _)| hosts.len())
    }

    /// The hosts found lost.
    pub fn lost(&self) -> BTreeSet<String> {
        let mut lost = self.died.clone();
        if let Some((hosts, _)) = self.believed() {
            lost.extend(hosts.iter().cloned());
        }
        lost
    }

    /// The cause, in words: a death the launcher saw, else the believed
    /// stall report.
    pub fn cause(&self) -> Option<String> {
        self.death
            .clone()
            .or_else(|| self.believed().map(|(_, what)| what.clone()))
    }

    /// Reads one line of the job's standard error.
    pub fn read(&mut self, line: &str) {
        let line = line.trim_end();
        // Our stall report: `ringreduce: …; on host rr-h3; aborting the job`.
        if let Some(report) = line
            .strip_prefix("ringreduce: ")
            .and_then(|l| l.strip_suffix("; aborting the job"))
        {
            self.stalled = true;
            let (what, hosts) = match report.rsplit_once("; on host") {
                Some((what, names)) => {
                    let names = names.trim_start_matches('s').trim();
                    (what, names.split(", ").map(str::to_string).collect())
                }
                None => (report, BTreeSet::new()),
            };
            let what = format!("stall: {what}");
            if !self.stalls.iter().any(|(_, w)| *w == what) {
                self.stalls.push((hosts, what));
            }
            return;
        }
        // Open MPI: `… process rank 2 with PID 123 on node rr-h3 exited on
        // signal 9 (Killed).`
        if let Some((before, after)) = line.split_once(" exited on signal ") {
            if let Some((rank_part, node)) = before.rsplit_once(" on node ") {
                let rank = rank_part
                    .split_once("process rank ")
                    .and_then(|(_, r)| r.split_whitespace().next())
                    .unwrap_or("?");
                let signal = after.trim_end_matches('.');
                let node = node.trim().to_string();
                self.blame(
                    [node.clone()],
                    format!("rank {rank} on {node} killed by signal {signal}"),
                );
            }
            return;
        }
        // Open MPI: a daemon lost (`Remote daemon: [[…],2] on node rr-h3`),
        // or one that failed (`… daemon … on node rr-h3 …`).
        if line.trim_start().starts_with("Remote daemon") {
            if let Some((_, node)) = line.rsplit_once(" on node ") {
                let node = node.trim().to_string();
                self.blame([node.clone()], format!("lost contact with the daemon on {node}"));
            }
        }
    }
}

/// The global step in a progress file (`None`: none yet).
fn reached(path: &Path) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether the run has a checkpoint to resume from: the file, or a
/// parameter server's shards beside it.
fn has_checkpoint(path: &Path) -> bool {
    if path.exists() {
        return true;
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.shard", name.to_string_lossy());
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        })
        .unwrap_or(false)
}

/// The value of `--NAME VALUE` or `--NAME=VALUE` in `args`.
fn option(args: &[String], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let eq = format!("--{name}=");
    args.iter().enumerate().find_map(|(i, a)| match a {
        a if *a == long => args.get(i + 1).cloned(),
        a => a.strip_prefix(&eq).map(str::to_string),
    })
}

/// Seconds since the Unix epoch (the clock a restart's fault time is on).
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The signal that asked the supervisor to stop (0: none).
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: i32) {
    STOP.store(sig, Ordering::SeqCst);
}

fn say(line: &str) {
    eprintln!("elastic: {line}");
}

fn refuse(line: &str) -> ExitCode {
    eprintln!("ringreduce: elastic: {line}");
    ExitCode::from(2)
}

/// Kills the launcher's process group: SIGTERM, then SIGKILL after 5 s.
fn kill_group(child: &mut Child) {
    let pgid = child.id() as i32;
    // SAFETY: kill(2) on the process group the child leads (made with
    // process_group(0)); no memory is involved.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above; the group may be gone already (ESRCH, ignored).
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

/// The hosts to launch on: listed, answering the probe, within --max-np.
fn usable(a: &Args, listed: Vec<Host>) -> (Vec<Host>, Vec<String>) {
    let mut skipped = Vec::new();
    let mut hosts = Vec::new();
    let mut np = 0;
    for h in listed {
        if let Some(probe) = &a.probe {
            if !probe_ok(probe, &h.name) {
                skipped.push(h.name);
                continue;
            }
        }
        let slots = match a.max_np {
            Some(m) => h.slots.min(m.saturating_sub(np)),
            None => h.slots,
        };
        if slots == 0 {
            continue;
        }
        np += slots;
        hosts.push(Host { slots, ..h });
    }
    (hosts, skipped)
}

fn probe_ok(template: &str, host: &str) -> bool {
    let words: Vec<String> = template
        .split_whitespace()
        .map(|w| w.replace("{host}", host))
        .collect();
    let Some((cmd, args)) = words.split_first() else {
        return true;
    };
    let Ok(mut child) = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
    else {
        return false;
    };
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_group(&mut child);
    false
}

/// How one launch ended.
struct Ended {
    success: bool,
    code: Option<i32>,
    evidence: Evidence,
    /// When the first sign of the fault came (the launcher's exit, if no
    /// line came before it).
    fault_at: f64,
}

/// Runs one launch to its end, echoing its standard error and reading it,
/// and the stall reports the ranks append to `stall`.
fn supervise(mut cmd: Command, grace: Duration, stall: &Path) -> std::io::Result<Ended> {
    let mut child = cmd.stderr(Stdio::piped()).process_group(0).spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel::<(f64, String)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if tx.send((now_unix(), line)).is_err() {
                break;
            }
        }
    });
    let mut evidence = Evidence::default();
    let mut first_sign: Option<f64> = None;
    let mut deadline: Option<Instant> = None;
    let read = |evidence: &mut Evidence, first_sign: &mut Option<f64>, (at, line): (f64, String)| {
        evidence.read(&line);
        if evidence.cause().is_some() {
            first_sign.get_or_insert(at);
        }
    };
    let mut reports = 0;
    let status = loop {
        if let Ok(got) = rx.recv_timeout(Duration::from_millis(100)) {
            read(&mut evidence, &mut first_sign, got);
        }
        // Reports the launcher has not forwarded.
        if let Ok(text) = std::fs::read_to_string(stall) {
            for line in text
                .lines()
                .skip(reports)
                .filter(|l| l.ends_with("aborting the job"))
            {
                reports += 1;
                read(&mut evidence, &mut first_sign, (now_unix(), line.to_string()));
            }
        }
        if evidence.stalled && deadline.is_none() {
            deadline = Some(Instant::now() + grace);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let stop = STOP.load(Ordering::SeqCst);
        if stop != 0 || deadline.is_some_and(|d| Instant::now() > d) {
            if stop == 0 {
                say(&format!(
                    "the launcher has not ended {} s after the stall report; killing it",
                    grace.as_secs_f64()
                ));
            }
            kill_group(&mut child);
            break child.wait()?;
        }
    };
    let ended = now_unix();
    // The rest of its lines (the pipe closes with the launcher's group).
    let until = Instant::now() + Duration::from_secs(2);
    while let Ok(got) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        read(&mut evidence, &mut first_sign, got);
    }
    drop(rx);
    if reader.is_finished() {
        let _ = reader.join();
    }
    Ok(Ended {
        success: status.success(),
        code: status.code(),
        evidence,
        fault_at: first_sign.unwrap_or(ended),
    })
}

/// Runs `ringreduce elastic`.
pub fn run(a: Args) -> ExitCode {
    if a.command.first().map(String::as_str) != Some("train") {
        return refuse("the job must be `train ARGS…` (after --)");
    }
    let Some(checkpoint) = option(&a.command, "checkpoint").map(PathBuf::from) else {
        return refuse("the job needs --checkpoint FILE to resume from after a fault");
    };
    if a.min_np == 0 || a.max_np == Some(0) {
        return refuse("--min-np and --max-np must be at least 1");
    }
    if !(a.grace.is_finite() && a.grace >= 0.0) {
        return refuse("--grace must be a number of seconds, 0 or more");
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return refuse(&format!("cannot find this program: {e}")),
    };
    let state = PathBuf::from(format!("{}.elastic", checkpoint.display()));
    if let Err(e) = std::fs::create_dir_all(&state) {
        return refuse(&format!("{}: {e}", state.display()));
    }
    let progress = state.join("progress");
    let _ = std::fs::remove_file(&progress);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let user_resumes = a.command.iter().any(|w| w == "--resume");
    let mut restart: Option<String> = None;
    let mut restarts = 0;
    for launch in 1.. {
        let text = match std::fs::read_to_string(&a.hostfile) {
            Ok(t) => t,
            Err(e) => return refuse(&format!("{}: {e}", a.hostfile.display())),
        };
        let listed = match parse_hosts(&text) {
            Ok(h) => h,
            Err(e) => return refuse(&format!("{}: {e}", a.hostfile.display())),
        };
        let (hosts, skipped) = usable(&a, listed);
        if !skipped.is_empty() {
            say(&format!(
                "left out of this launch (probe failed): {}",
                skipped.join(", ")
            ));
        }
        let np: usize = hosts.iter().map(|h| h.slots).sum();
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        if np < a.min_np {
            return refuse(&format!(
                "{np} rank(s) left ({}), fewer than --min-np {}; the last checkpoint is {}",
                if names.is_empty() {
                    "no host".to_string()
                } else {
                    names.join(", ")
                },
                a.min_np,
                checkpoint.display()
            ));
        }
        let file = state.join(format!("hosts.{launch}"));
        let lines: String = hosts
            .iter()
            .map(|h| format!("{} slots={}\n", h.name, h.slots))
            .collect();
        if let Err(e) = std::fs::write(&file, lines) {
            return refuse(&format!("{}: {e}", file.display()));
        }
        let words: Vec<String> = a
            .launcher
            .split_whitespace()
            .map(|w| {
                w.replace("{hostfile}", &file.display().to_string())
                    .replace("{np}", &np.to_string())
            })
            .collect();
        let Some((program, launcher_args)) = words.split_first() else {
            return refuse("--launcher is empty");
        };
        let mut cmd = Command::new(program);
        cmd.args(launcher_args).arg(&exe).args(&a.command);
        let stall = state.join("stall");
        let _ = std::fs::remove_file(&stall);
        let resume = !user_resumes && has_checkpoint(&checkpoint) && launch > 1;
        if resume {
            cmd.arg("--resume");
        }
        cmd.arg("--elastic-progress").arg(&progress);
        cmd.arg("--elastic-stall").arg(&stall);
        if let Some(r) = &restart {
            cmd.arg("--elastic-restart").arg(r);
        }
        say(&format!(
            "launch {launch}: {np} rank(s) on {}{}",
            names.join(", "),
            if resume {
                ", resuming from the checkpoint"
            } else {
                ""
            }
        ));
        let ended = match supervise(cmd, Duration::from_secs_f64(a.grace), &stall) {
            Ok(e) => e,
            Err(e) => return refuse(&format!("cannot start the launcher `{program}`: {e}")),
        };
        if let s @ 1.. = STOP.load(Ordering::SeqCst) {
            say(&format!(
                "stopped by signal {s}; the last checkpoint is {}",
                checkpoint.display()
            ));
            return ExitCode::from(130);
        }
        if ended.success {
            say(&format!("finished after {restarts} restart(s)"));
            return ExitCode::SUCCESS;
        }
        let (lost, cause) = (ended.evidence.lost(), ended.evidence.cause());
        // An error of the job's own (one line, exit 2) is not a lost host:
        // launching again would meet it again.
        if lost.is_empty() && ended.code == Some(2) {
            return refuse("the job ended with the error above; not restarting");
        }
        let cause = cause.unwrap_or_else(|| match ended.code {
            Some(c) => format!("the launcher exited with code {c}"),
            None => "the launcher was killed".to_string(),
        });
        if restarts == a.max_restarts {
            return refuse(&format!(
                "{cause}; giving up after {restarts} restart(s) (--max-restarts); the last checkpoint is {}",
                checkpoint.display()
            ));
        }
        restarts += 1;
        if !lost.is_empty() {
            let why = format!("{cause} (restart {restarts})");
            // As it is now: a host listed again while the job ran stays.
            let text = std::fs::read_to_string(&a.hostfile).unwrap_or(text);
            let rewritten = without_hosts(&text, &lost, &why);
            if let Err(e) = ringreduce::files::write_atomically(&a.hostfile, rewritten.as_bytes()) {
                return refuse(&format!("{}: {e}", a.hostfile.display()));
            }
        }
        let at = reached(&progress).unwrap_or(0);
        // The next launch writes it anew from its first step.
        let _ = std::fs::remove_file(&progress);
        say(&format!(
            "restart {restarts}: {cause}; {} at step {at}",
            match lost.len() {
                0 => "no host named, launching on the same hosts".to_string(),
                _ => format!(
                    "removed {} from {}",
                    lost.iter().cloned().collect::<Vec<_>>().join(", "),
                    a.hostfile.display()
                ),
            }
        ));
        restart = Some(format!("{restarts}\t{:.3}\t{at}\t{cause}", ended.fault_at));
    }
    unreachable!("the launches end by returning")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_files_are_read_and_lost_hosts_commented_out() {
        let text = "# cluster\nrr-h1 slots=2\nrr-h2\n\nrr-h3 slots=1 # spare\n";
        let hosts = parse_hosts(text).unwrap();
        let names: Vec<(&str, usize)> = hosts.iter().map(|h| (h.name.as_str(), h.slots)).collect();
        assert_eq!(names, [("rr-h1", 2), ("rr-h2", 1), ("rr-h3", 1)]);
        let lost = BTreeSet::from(["rr-h2".to_string()]);
        let out = without_hosts(text, &lost, "killed");
        assert!(out.contains("# rr-h2  # lost: killed\n"), "{out}");
        let left: Vec<String> = parse_hosts(&out).unwrap().into_iter().map(|h| h.name).collect();
        assert_eq!(left, ["rr-h1", "rr-h3"]);
        let e = parse_hosts("a slots=0\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("slots=0"), "{e}");
    }

    #[test]
    fn evidence_names_the_lost_hosts() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let mut e = Evidence::default();
        e.read("ringreduce: all_reduce #812: no message from rank 2 for 5 s; not responding: rank 2; on host rr-h3; aborting the job");
        assert!(e.stalled);
        assert_eq!(e.lost(), set(&["rr-h3"]));
        assert_eq!(
            e.cause().as_deref(),
            Some("stall: all_reduce #812: no message from rank 2 for 5 s; not responding: rank 2")
        );
        let mut e = Evidence::default();
        e.read("ringreduce: ranks 1, 2 have not joined barrier #3 after 5 s; on hosts rr-h2, rr-h3; aborting the job");
        assert_eq!(e.lost(), set(&["rr-h2", "rr-h3"]));
        // A host cut off reports the others, as they report it: the report
        // naming fewer hosts is believed, whichever came first.
        let mut e = Evidence::default();
        e.read("ringreduce: ranks 0, 1, 3 have not joined barrier #3 after 5 s; on hosts rr-h1, rr-h2, rr-h4; aborting the job");
        e.read("ringreduce: rank 2 has not joined barrier #3 after 5 s; on host rr-h3; aborting the job");
        assert_eq!(e.lost(), set(&["rr-h3"]));
        assert_eq!(
            e.cause().as_deref(),
            Some("stall: rank 2 has not joined barrier #3 after 5 s")
        );
        let mut e = Evidence::default();
        e.read("mpirun noticed that process rank 1 with PID 4242 on node rr-h2 exited on signal 9 (Killed).");
        assert_eq!(e.lost(), set(&["rr-h2"]));
        assert_eq!(
            e.cause().as_deref(),
            Some("rank 1 on rr-h2 killed by signal 9 (Killed)")
        );
        assert!(!e.stalled);
        let mut e = Evidence::default();
        e.read("  Remote daemon: [[1234,0],3] on node rr-h4");
        assert_eq!(e.lost(), set(&["rr-h4"]));
        // The job's own error names no host.
        let mut e = Evidence::default();
        e.read("ringreduce: non-finite gradient at epoch 2, step 5 (first on rank 1)");
        assert_eq!(e, Evidence::default());
    }

    #[test]
    fn options_are_found_in_both_spellings() {
        let args: Vec<String> = ["train", "--checkpoint", "a.ckpt", "--metrics=m.csv"]
            .map(String::from)
            .to_vec();
        assert_eq!(option(&args, "checkpoint").as_deref(), Some("a.ckpt"));
        assert_eq!(option(&args, "metrics").as_deref(), Some("m.csv"));
        assert_eq!(option(&args, "resume"), None);
    }
}
