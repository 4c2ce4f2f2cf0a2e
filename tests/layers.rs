//! The library's layers, and the rule that keeps them layers: arrows only
//! point down. Every module of `src/` stands on one layer (`LAYERS`, bottom
//! to top); the code of a module may name, by a `crate::` or `super::` path,
//! only modules of its own layer or of the layers below. Names re-exported
//! at the crate root (`crate::Group`, `crate::Error`) do not count as a
//! module of their own: the code below the root names its true path.
//!
//! Only code is read: comments (doc links included) and string contents are
//! not imports, and neither are test modules (`tests.rs`, `#[cfg(test)] mod`),
//! which may use the tools above to check what is below.

use std::fs;
use std::path::{Path, PathBuf};

/// The modules of the library, bottom to top (`lib.rs`, the crate root,
/// stands above them all). A module may name only those at or before it.
const LAYERS: &[&str] = &[
    // The ground: the error type, element types and kernels, and small helpers.
    "error",
    "element",
    "units",
    "wire",
    "files",
    "scratch",
    // The core: moving bytes, the schedules, their prices, codecs, the front door.
    "transport",
    "algorithms",
    "cost",
    "compress",
    "group",
    // Training: Hogwild!'s threads on one shared model, beside the
    // data-parallel trainer (neither names the other), then the tools
    // behind the binary's subcommands.
    "hogwild",
    "train",
    "vendor",
    "calibrate",
    "verify",
    "bench",
    "soak",
    "summary",
    "plot",
];

/// Entries of `src/` that are no module of the library: its root, and the
/// binary with its subcommands (which name the library as `ringreduce::`).
const NOT_LAYERS: &[&str] = &["lib.rs", "main.rs", "cli"];

/// External crates the root re-exports (`pub use half;`): no layer of ours.
const REEXPORTED_CRATES: &[&str] = &["half", "mpi"];

/// One upward (or unknown) name found in a file.
struct Violation {
    file: PathBuf,
    line: usize,
    path: String,
    why: String,
}

#[test]
fn every_module_names_only_its_own_layer_or_those_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut unplaced = Vec::new();
    let mut violations = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(&src)
        .expect("src/ is readable")
        .map(|e| e.expect("a src/ entry").path())
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if NOT_LAYERS.contains(&name.as_str()) || (entry.is_file() && !name.ends_with(".rs")) {
            continue;
        }
        let module = name.strip_suffix(".rs").unwrap_or(&name).to_string();
        let Some(layer) = LAYERS.iter().position(|&l| l == module) else {
            unplaced.push(format!("src/{name}"));
            continue;
        };
        for file in rust_files(&entry) {
            check_file(&src, &file, layer, &mut violations);
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules on no layer: {} — place each in LAYERS of {} (bottom to top)",
        unplaced.join(", "),
        file!()
    );
    if !violations.is_empty() {
        let list: Vec<String> = violations
            .iter()
            .map(|v| format!("  {}:{}: `{}`: {}", v.file.display(), v.line, v.path, v.why))
            .collect();
        panic!(
            "{} upward import(s); arrows only point down (layers, bottom to top: {}):\n{}",
            violations.len(),
            LAYERS.join(" → "),
            list.join("\n")
        );
    }
}

/// The `.rs` files of a module: the file itself, or every file under its
/// folder, but not its test files.
fn rust_files(entry: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if entry.is_dir() {
        let mut children: Vec<_> = fs::read_dir(entry)
            .expect("a module folder is readable")
            .map(|e| e.expect("a folder entry").path())
            .collect();
        children.sort();
        for child in children {
            out.extend(rust_files(&child));
        }
    } else if entry.extension().is_some_and(|e| e == "rs")
        && entry.file_name().is_some_and(|n| n != "tests.rs")
    {
        out.push(entry.to_path_buf());
    }
    out
}

/// The module path of a file under `src/`: `src/group/check.rs` is
/// `group::check`, `src/group/mod.rs` is `group`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    if last != "mod.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

fn check_file(src: &Path, file: &Path, layer: usize, out: &mut Vec<Violation>) {
    let text = fs::read_to_string(file).expect("a source file is readable");
    let shown = Path::new("src").join(file.strip_prefix(src).unwrap());
    let code = code_only(&text);
    let base = module_path(src, file);
    // Per line: the module path there (inline modules included), or `None`
    // inside a test module.
    let mut context: Vec<Option<Vec<String>>> = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut test_attr = false;
    let mut skip_until: Option<usize> = None;
    for line in code.lines() {
        let trimmed = line.trim();
        if skip_until.is_none() {
            if trimmed.starts_with("#[cfg(") && trimmed.contains("test") {
                test_attr = true;
            }
            if let Some(name) = inline_mod(trimmed) {
                if test_attr {
                    skip_until = Some(depth);
                } else {
                    inline.push((name, depth));
                }
                test_attr = false;
            } else if !trimmed.is_empty() && !trimmed.starts_with("#[") {
                test_attr = false;
            }
        }
        context.push(skip_until.is_none().then(|| {
            let mut here = base.clone();
            here.extend(inline.iter().map(|(m, _)| m.clone()));
            here
        }));
        for c in line.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if skip_until == Some(depth) {
                        skip_until = None;
                    }
                    while inline.last().is_some_and(|&(_, d)| d >= depth) {
                        inline.pop();
                    }
                }
                _ => {}
            }
        }
    }
    for (at, path, target) in upward_names(&code, &|at| {
        let line = code[..at].matches('\n').count();
        context.get(line).cloned().flatten()
    }) {
        if let Some(why) = judge(&target, layer) {
            out.push(Violation {
                file: shown.clone(),
                line: code[..at].matches('\n').count() + 1,
                path,
                why,
            });
        }
    }
}

/// `mod name {` (any visibility) opens an inline module: its name.
fn inline_mod(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("pub(crate) ")
        .or_else(|| line.strip_prefix("pub "))
        .unwrap_or(line);
    let rest = rest.strip_prefix("mod ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    rest[name.len()..].trim_start().starts_with('{').then_some(name)
}

/// Why naming top-level module `target` from `layer` breaks the rule, if it does.
fn judge(target: &str, layer: usize) -> Option<String> {
    if REEXPORTED_CRATES.contains(&target) {
        return None;
    }
    let own = LAYERS[layer];
    match LAYERS.iter().position(|&l| l == target) {
        Some(t) if t <= layer => None,
        Some(_) => Some(format!("{own} names {target}, a layer above it")),
        None if target.starts_with(char::is_uppercase) => Some(format!(
            "{own} names the crate root's re-export {target}: name its own module's path"
        )),
        None => Some(format!("{own} names {target}, which is on no layer below it")),
    }
}

/// The `crate::` and `super::` paths of some code that leave their own
/// top-level module, as (their offset, the path as written, the top-level
/// module named). `here(offset)` is the module path at an offset (`None`:
/// test code, passed over). Macros at the root (`crate::with_dtype!`) are
/// no module.
fn upward_names(code: &str, here: &dyn Fn(usize) -> Option<Vec<String>>) -> Vec<(usize, String, String)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < code.len() {
        let starts_word = i == 0 || !ident(bytes[i - 1]);
        let rest = &code[i..];
        if starts_word && rest.starts_with("crate::") {
            if here(i).is_some() {
                for first in first_segments(&rest["crate::".len()..]) {
                    found.push((i, format!("crate::{first}"), first));
                }
            }
            i += "crate::".len();
        } else if starts_word && rest.starts_with("super::") {
            let mut ups = 0;
            let mut after = rest;
            while let Some(r) = after.strip_prefix("super::") {
                ups += 1;
                after = r;
            }
            // Up to the root, the next segment is a top-level module.
            if here(i).is_some_and(|m| ups >= m.len()) {
                for first in first_segments(after) {
                    found.push((i, format!("{}{first}", "super::".repeat(ups)), first));
                }
            }
            i += "super::".len() * ups;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    found
}

/// The first path segments after `crate::`: one, or those of a `{…}` list.
/// A macro's name (followed by `!`) is none.
fn first_segments(after: &str) -> Vec<String> {
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    if let Some(list) = after.strip_prefix('{') {
        // Top-level items of the list: split on commas outside nested braces.
        let mut items = vec![String::new()];
        let mut nest = 0;
        for c in list.chars() {
            match c {
                '{' => nest += 1,
                '}' if nest == 0 => break,
                '}' => nest -= 1,
                ',' if nest == 0 => items.push(String::new()),
                _ => {}
            }
            if nest > 0 || c != ',' {
                items.last_mut().unwrap().push(c);
            }
        }
        return items
            .iter()
            .map(|s| word(s.trim_start().trim_start_matches('{').trim_start()))
            .filter(|w| !w.is_empty() && w != "self")
            .collect();
    }
    let w = word(after);
    match after[w.len()..].starts_with('!') || w.is_empty() {
        true => Vec::new(),
        false => vec![w],
    }
}

/// The text with comments and the contents of string and character
/// literals blanked out, lines kept where they were.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut nest = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    nest += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    nest -= 1;
                    i += 2;
                    if nest == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_ident(&chars, i) {
            // A raw string: r"…" or r#"…"#.
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('"');
            i += 2 + hashes;
            while i < chars.len() {
                if chars[i] == '"'
                    && chars[i + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes
                {
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
            out.push('"');
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            let close = if next == Some('\\') {
                chars[i + 3..]
                    .iter()
                    .take(10)
                    .position(|&q| q == '\'')
                    .map(|p| i + 3 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    out.push_str("' '");
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

#[test]
fn the_reader_sees_code_and_not_comments_or_strings() {
    let code = code_only(
        "use crate::cost::Tuning; // crate::group\n/// [`Group`](crate::group::Group)\n\
         let s = \"crate::train\"; let c = '{'; let q = '\\''; let r = r#\"crate::verify\"#;\n\
         use crate::{\n    element::Element,\n    group::Group,\n};\n",
    );
    let in_algorithms = |_| Some(vec!["algorithms".to_string()]);
    let names: Vec<String> = upward_names(&code, &in_algorithms)
        .into_iter()
        .map(|(_, _, t)| t)
        .collect();
    assert_eq!(names, ["cost", "element", "group"]);
    assert_eq!(
        first_segments("{cost::Tuning, group::{check, Group}, self};"),
        ["cost", "group"]
    );
    assert!(first_segments("with_dtype!(x)").is_empty());
    // From src/group/check.rs (`group::check`), `super::` is `group`; one
    // more is the root, where the next segment is a top-level module.
    let in_check = |_| Some(vec!["group".to_string(), "check".to_string()]);
    assert!(upward_names("use super::collectives::all_gather_blocks;", &in_check).is_empty());
    assert_eq!(
        upward_names("use super::super::train::x;", &in_check)[0].2,
        "train"
    );
    assert!(upward_names("use crate::train::x;", &|_| None).is_empty());
    let algorithms = LAYERS.iter().position(|&l| l == "algorithms").unwrap();
    assert!(judge("cost", algorithms).is_some());
    assert!(judge("transport", algorithms).is_none());
    assert!(judge("Group", algorithms).is_some());
    assert!(judge("half", algorithms).is_none());
}
