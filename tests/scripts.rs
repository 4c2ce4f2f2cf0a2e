//! Every script of scripts/ answers `-h` with its usage (its header comment)
//! at once, before it sets anything up, builds or launches.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn every_script_answers_dash_h() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().permissions().mode() & 0o111 != 0)
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 10, "only {} scripts found", scripts.len());
    for script in scripts {
        for flag in ["-h", "--help"] {
            let mut cmd = Command::new(&script);
            // From elsewhere: the scripts find the checkout themselves.
            cmd.arg(flag).current_dir(std::env::temp_dir());
            let out = run_bounded(cmd, Duration::from_secs(30));
            let text = stdout(&out);
            let name = script.file_name().unwrap().to_string_lossy().to_string();
            assert!(out.status.success(), "{name} {flag}: {}{}", text, stderr(&out));
            assert!(
                text.lines().count() >= 2 && !text.lines().next().unwrap().trim().is_empty(),
                "{name} {flag} printed no usage:\n{text}"
            );
        }
    }
}
