//! Writing files so that a crash or a full disk never leaves a torn file
//! where the last good one was.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a write to a path lands, as [`output`] resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A regular file, or none yet, at this path (symbolic links followed):
    /// replaced atomically, beside itself.
    File(PathBuf),
    /// A character device or a FIFO (`/dev/null`, `/dev/stdout`, a named
    /// pipe), or a path through `/proc` or `/dev/fd`: written through, never
    /// replaced.
    Stream(PathBuf),
}

/// Symbolic links followed before a chain is called a loop (Linux's limit).
const MAX_LINKS: usize = 40;

/// Resolves the output path `path` as `cp` and atomic-write crates do:
/// symbolic links are followed (a dangling one to where it points), so a
/// write replaces the link's target and keeps the link; a character device
/// or FIFO is written through; the directory of the resolved path must exist.
///
/// # Errors
/// `NotFound` naming the missing directory; `InvalidInput` for a directory,
/// a block device, a socket or a loop of links.
pub fn output(path: &Path) -> std::io::Result<Output> {
    use std::os::unix::fs::FileTypeExt;
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    let mut at = path.to_path_buf();
    // What the error says of the resolved path: nothing when it is `path`.
    let via = |at: &Path| match at == path {
        true => String::new(),
        false => format!("links to {}, which ", at.display()),
    };
    for _ in 0..MAX_LINKS {
        // Links into /proc and /dev/fd (`/dev/stdout`) name open files:
        // written through, whatever they point at.
        if at.starts_with("/proc") || at.starts_with("/dev/fd") {
            return Ok(Output::Stream(at));
        }
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = directory_of(&at);
                if !dir.is_dir() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("directory {} does not exist", dir.display()),
                    ));
                }
                return Ok(Output::File(at));
            }
            Err(e) => return Err(e),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = std::fs::read_link(&at)?;
            at = directory_of(&at).join(target);
        } else if kind.is_file() {
            return Ok(Output::File(at));
        } else if kind.is_char_device() || kind.is_fifo() {
            return Ok(Output::Stream(at));
        } else if kind.is_dir() {
            return Err(invalid(format!("{}is a directory", via(&at))));
        } else {
            let what = if kind.is_block_device() {
                "a block device"
            } else {
                "a socket"
            };
            return Err(invalid(format!(
                "{}is {what}: name a regular file, a character device or a FIFO",
                via(&at)
            )));
        }
    }
    Err(invalid(format!("more than {MAX_LINKS} symbolic links (a loop?)")))
}

/// The directory a path names a file in (`.` for a bare name).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` so that no reader ever sees a torn file: the
/// path is resolved by [`output`]; a regular file (or a new one) is
/// replaced atomically — a new temporary file beside it
/// (`<name>.tmp.<host>.<pid>.<n>`, created exclusively, so two writers never
/// share one) is fsynced, renamed over it and the directory fsynced, and on
/// any error the temporary file is removed and the file is as it was; a
/// character device or FIFO is written through (a FIFO with no reader is an
/// error, not a wait).
///
/// # Errors
/// [`output`]'s, then the first I/O error.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match output(path)? {
        Output::File(file) => replace(&file, bytes),
        Output::Stream(stream) => write_through(&stream, bytes),
    }
}

/// Writes `bytes` into an existing device or FIFO. A FIFO is opened
/// without blocking first, so one that nobody reads fails at once
/// (`ENXIO`) instead of waiting; the writes then block as usual.
fn write_through(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) => std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                format!("{}: a FIFO that nobody reads", path.display()),
            ),
            _ => e,
        })?;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is the open descriptor of `file`, alive for both calls;
    // F_GETFL and F_SETFL only read and set its status flags.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !cleared {
        return Err(std::io::Error::last_os_error());
    }
    file.write_all(bytes)?;
    file.flush()
}

/// Replaces the regular file (or none) at the resolved `path` atomically.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = directory_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            "{name}.tmp.{}.{}.{nanos:x}{n}",
            host(),
            std::process::id()
        ));
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The rename is durable once the directory is.
        return std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

/// Removes the temporary files that [`write_atomically`] left beside
/// `path` when its process was killed mid-write: those of this host whose
/// process is gone (a live process's file may be in use; another host's
/// cannot be told apart). Returns the files removed; a file that cannot be
/// removed is left and not listed.
pub fn remove_stale_temporaries(path: &Path) -> Vec<PathBuf> {
    // The temporaries sit beside the file a link points at.
    let path = match output(path) {
        Ok(Output::File(file)) => file,
        _ => return Vec::new(),
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.tmp.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let here = host();
    let mut removed: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let file = e.file_name();
            let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
                return false;
            };
            // <host>.<pid>.<nonce>, the host possibly dotted; files of
            // older versions have no host and were written here.
            let mut fields = rest.rsplitn(3, '.');
            let (_nonce, pid, host) = (fields.next(), fields.next(), fields.next().unwrap_or(&here));
            let gone = pid.and_then(|p| p.parse::<i32>().ok()).is_some_and(|p| !alive(p));
            host == here && gone && e.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|e| e.path())
        .filter(|p| std::fs::remove_file(p).is_ok())
        .collect();
    removed.sort();
    removed
}

/// This host's name, as `gethostname` gives it (`localhost` when it fails).
fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if ok && !h.is_empty() => h.replace('/', "_"),
        _ => "localhost".into(),
    }
}

/// Whether process `pid` of this host exists (`kill(pid, 0)`: only
/// `ESRCH` says it does not; no permission means it does).
fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return true; // not a process of ours: leave its file
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Opens `path` for reading if it is a regular file of at most `cap` bytes
/// — not a directory, a device such as `/dev/zero`, or a pipe, whose
/// reading would not end or not be bounded.
///
/// # Errors
/// The open's error, or `InvalidInput` saying which rule the file breaks.
pub(crate) fn open_regular(path: &Path, cap: u64) -> std::io::Result<std::fs::File> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let refuse = |why: String| Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
    if !meta.is_file() {
        return refuse("not a regular file".into());
    }
    if meta.len() > cap {
        return refuse(format!(
            "{} bytes, more than the {cap} read from such a file",
            meta.len()
        ));
    }
    Ok(file)
}

/// The text of the regular file at `path` (at most 1 GiB), errors as
/// [`Error::Data`](crate::error::Error::Data) naming the path.
#[cfg(feature = "train")]
pub(crate) fn read_text(path: &Path) -> crate::error::Result<String> {
    let mut text = String::new();
    open_regular(path, 1 << 30)
        .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text))
        .map_err(|e| crate::error::Error::Data {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    Ok(text)
}

/// A data file's error: [`crate::error::Error::Data`] naming the path.
#[cfg(feature = "train")]
pub(crate) fn data_error(path: &Path, reason: impl Into<String>) -> crate::error::Error {
    crate::error::Error::Data {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

#[cfg(feature = "train")]
/// Largest data file (or IDX payload) read: 16 GiB.
pub const MAX_FILE_BYTES: u64 = 16 << 30;

/// Opens a data file: a regular file of at most [`MAX_FILE_BYTES`].
#[cfg(feature = "train")]
pub(crate) fn open_data(path: &Path) -> crate::error::Result<std::fs::File> {
    open_regular(path, MAX_FILE_BYTES).map_err(|e| data_error(path, e.to_string()))
}

/// Opens a data file ([`open_data`]) as its contents: gunzipped when it
/// starts with the gzip magic (several concatenated members too, as pigz
/// and `cat a.gz b.gz` write). Also returns the prefix for read errors
/// ("corrupt gzip data: " or nothing).
#[cfg(feature = "train")]
pub(crate) fn open_maybe_gz(path: &Path) -> crate::error::Result<(Box<dyn std::io::Read>, &'static str)> {
    let mut file = std::io::BufReader::new(open_data(path)?);
    let gz = std::io::BufRead::fill_buf(&mut file)
        .map_err(|e| data_error(path, e.to_string()))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        (
            Box::new(flate2::bufread::MultiGzDecoder::new(file)),
            "corrupt gzip data: ",
        )
    } else {
        (Box::new(file), "")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_and_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("ringreduce-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Names that share a stem, or end in .tmp, no longer share a temporary file.
        for name in ["run.tmp", "run-lr0.01", "run-lr0.02"] {
            let path = dir.join(name);
            write_atomically(&path, name.as_bytes()).unwrap();
            write_atomically(&path, format!("{name}!").as_bytes()).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{name}!"));
        }
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // A target that cannot be replaced: an error, the temporary file gone.
        let blocked = dir.join("a-directory");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write_atomically(&blocked, b"x").is_err());
        assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp.")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_are_followed_and_fifos_without_a_reader_refused() {
        use std::os::unix::fs::{symlink, FileTypeExt};
        let dir = std::env::temp_dir().join(format!("ringreduce-output-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        // A chain of two links, the second relative to its own directory.
        symlink("sub/b", dir.join("a")).unwrap();
        symlink("c.json", dir.join("sub/b")).unwrap();
        write_atomically(&dir.join("a"), b"through").unwrap();
        assert_eq!(std::fs::read(dir.join("sub/c.json")).unwrap(), b"through");
        assert!(std::fs::symlink_metadata(dir.join("a"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            output(&dir.join("a")).unwrap(),
            Output::File(dir.join("sub/c.json"))
        );
        // The stale temporaries of the linked file are looked for beside it.
        assert!(remove_stale_temporaries(&dir.join("a")).is_empty());
        // A loop, and a directory at the end of a link: errors, nothing written.
        symlink("loop2", dir.join("loop1")).unwrap();
        symlink("loop1", dir.join("loop2")).unwrap();
        let e = write_atomically(&dir.join("loop1"), b"x").unwrap_err();
        assert!(e.to_string().contains("symbolic links (a loop?)"), "{e}");
        symlink("sub", dir.join("to-dir")).unwrap();
        let e = write_atomically(&dir.join("to-dir"), b"x").unwrap_err();
        assert!(e.to_string().contains("which is a directory"), "{e}");
        // A FIFO nobody reads: an error at once, the FIFO kept.
        let fifo = dir.join("pipe");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `name` is a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let e = write_atomically(&fifo, b"x").unwrap_err();
        assert!(e.to_string().contains("a FIFO that nobody reads"), "{e}");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        // With a reader, the bytes go through it.
        let reader = std::thread::spawn({
            let fifo = fifo.clone();
            move || std::fs::read(fifo).unwrap()
        });
        let mut tries = 0;
        while let Err(e) = write_atomically(&fifo, b"streamed") {
            tries += 1;
            assert!(tries < 1000, "{e}"); // the reader opens its end soon
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(reader.join().unwrap(), b"streamed");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_this_hosts_temporaries_of_gone_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("ringreduce-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.ckpt");
        std::fs::write(&path, b"good").unwrap();
        // A process that has ended: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let (here, me) = (host(), std::process::id());
        let name = |s: String| dir.join(format!("run.ckpt.tmp.{s}"));
        let stale = [name(format!("{here}.{gone}.5f1")), name(format!("{gone}.77"))];
        let kept = [
            name(format!("{here}.{me}.5f2")),              // alive: maybe in use
            name(format!("elsewhere.example.{gone}.5f3")), // another host's
            name("notes".into()),                          // not ours
            dir.join(format!("other.ckpt.tmp.{here}.{gone}.1")),
        ];
        for f in stale.iter().chain(&kept) {
            std::fs::write(f, b"partial").unwrap();
        }
        assert_eq!(remove_stale_temporaries(&path), {
            let mut s = stale.to_vec();
            s.sort();
            s
        });
        assert!(stale.iter().all(|f| !f.exists()));
        assert!(kept.iter().all(|f| f.exists()) && path.exists());
        // A file written by this process now is none of them.
        write_atomically(&path, b"newer").unwrap();
        assert!(remove_stale_temporaries(&path).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
