//! The namespace cluster: real network namespaces on a bridge, MPI over TCP
//! between them, launched by `scripts/cluster.sh`. Needs root; without it the
//! test fails unless RINGREDUCE_SKIP_CLUSTER_TESTS=1 says to skip it.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh")
}

/// A cluster.sh command on this test's own prefix and subnet.
fn cluster(args: &[&str]) -> Command {
    let mut c = Command::new("bash");
    c.arg(script())
        .args(args)
        .env("RINGREDUCE_CLUSTER_PREFIX", "rrtest")
        .env("RINGREDUCE_CLUSTER_SUBNET", "10.79.0");
    c
}

fn namespaces() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_hosts_run_verify_over_tcp_and_leave_nothing_behind() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root {
        assert!(
            std::env::var("RINGREDUCE_SKIP_CLUSTER_TESTS").as_deref() == Ok("1"),
            "the cluster test needs root (ip netns); run as root or set RINGREDUCE_SKIP_CLUSTER_TESTS=1 to skip it"
        );
        return;
    }
    let limit = Duration::from_secs(300);
    // Clear anything a crashed earlier run left, then bring three hosts up.
    run_bounded(cluster(&["down"]), limit);
    let up = run_bounded(cluster(&["up", "3", "--rate", "1gbit"]), limit);
    assert!(up.status.success(), "{}{}", stdout(&up), stderr(&up));
    assert_eq!(namespaces().matches("rrtest-h").count(), 3, "{}", namespaces());

    // A second `up` is refused in one line and changes nothing.
    let again = run_bounded(cluster(&["up", "2"]), limit);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("already up"), "{}", stderr(&again));

    let names = run_bounded(cluster(&["run", "--", "/usr/bin/hostname"]), limit);
    let mut seen: Vec<String> = stdout(&names).lines().map(str::to_string).collect();
    seen.sort();
    let verify = run_bounded(
        cluster(&[
            "run",
            "--",
            ringreduce().to_str().unwrap(),
            "verify",
            "--max-count",
            "1000",
            "--dtype",
            "f32,i32",
        ]),
        limit,
    );
    let down = run_bounded(cluster(&["down"]), limit);

    assert_eq!(
        seen,
        ["rrtest-h1", "rrtest-h2", "rrtest-h3"],
        "{}",
        stderr(&names)
    );
    let text = stdout(&verify);
    assert!(verify.status.success(), "{text}\n{}", stderr(&verify));
    assert!(text.contains("3 ranks") && text.ends_with("0 failed\n"), "{text}");
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        !namespaces().contains("rrtest-"),
        "namespaces left behind: {}",
        namespaces()
    );
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("rrtest-"),
        "links left behind"
    );
}
