//! Command-line behaviour that needs no MPI launch: bad input gets one line
//! on stderr and exit code 2.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn bad_input(args: &[&str], needle: &str) {
    let mut cmd = Command::new(ringreduce());
    cmd.args(args);
    let out = run_bounded(cmd, Duration::from_secs(60));
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
