//! The `rust-version` of Cargo.toml is true for the locked dependencies:
//! no package in Cargo.lock asks for a newer Rust than we claim. (Our own
//! code is held to it by clippy's `incompatible_msrv` lint, which reads the
//! same field.) The dependencies' manifests are read from Cargo's registry
//! sources, where the build has just unpacked them.

use std::path::PathBuf;

/// `major.minor[.patch]` as a comparable triple.
fn version(v: &str) -> (u32, u32, u32) {
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// The `rust-version` of the `[package]` section of a manifest.
fn rust_version(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if let (true, Some(rest)) = (in_package, line.strip_prefix("rust-version")) {
            let value = rest.trim_start().strip_prefix('=')?.trim().trim_matches('"');
            return Some(value.to_string());
        }
    }
    None
}

#[test]
fn rust_version_covers_every_locked_dependency() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ours = rust_version(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap())
        .expect("Cargo.toml has a rust-version");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registries: Vec<PathBuf> = std::fs::read_dir(home.join("registry/src"))
        .expect("Cargo's registry sources")
        .map(|e| e.unwrap().path())
        .collect();
    let (mut found, mut missing, mut newest) = (0, Vec::new(), ("".to_string(), (0, 0, 0)));
    for entry in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            entry
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = ")))
                .map(|v| v.trim_matches('"').to_string())
        };
        let (Some(name), Some(ver)) = (field("name"), field("version")) else {
            continue;
        };
        if field("source").is_none() {
            continue; // this crate
        }
        let dir = format!("{name}-{ver}");
        let Some(manifest) = registries
            .iter()
            .map(|r| r.join(&dir).join("Cargo.toml"))
            .find(|p| p.is_file())
        else {
            missing.push(dir);
            continue;
        };
        found += 1;
        if let Some(rv) = rust_version(&std::fs::read_to_string(manifest).unwrap()) {
            if version(&rv) > newest.1 {
                newest = (format!("{dir} (rust-version {rv})"), version(&rv));
            }
        }
    }
    // Packages of other platforms (Windows, wasm) are locked but never
    // unpacked here; what this platform builds must all be found.
    assert!(
        found >= 100,
        "only {found} locked packages found under {}",
        home.display()
    );
    let elsewhere = |d: &String| {
        [
            "windows",
            "wasm",
            "web-",
            "js-sys",
            "hermit",
            "wasi",
            "r-efi",
            "winapi",
            "anstyle-wincon",
        ]
        .iter()
        .any(|p| d.starts_with(p))
    };
    let unbuilt: Vec<&String> = missing.iter().filter(|d| !elsewhere(d)).collect();
    eprintln!("not unpacked here (not built on this platform or with these features): {unbuilt:?}");
    assert!(
        version(&ours) >= newest.1,
        "Cargo.toml says rust-version {ours}, but {} needs newer",
        newest.0
    );
    eprintln!(
        "rust-version {ours}; the newest any locked dependency asks: {}",
        newest.0
    );
}

#[test]
fn manifests_are_read_as_cargo_writes_them() {
    assert_eq!(
        rust_version("[package]\nname = \"x\"\nrust-version = \"1.81\"\n[dependencies]\n"),
        Some("1.81".into())
    );
    assert_eq!(rust_version("[dependencies]\nrust-version = \"9.9\"\n"), None);
    assert!(version("1.88") > version("1.87.1"));
}
