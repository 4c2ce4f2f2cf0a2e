//! A group's settings and the environment variables that set them — the
//! only place the library reads `RINGREDUCE_*`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::algorithms::Algorithm;
use crate::cost::{Calibration, Tuning};
use crate::error::{Error, Result};
use crate::transport::{Shape, Writes};

/// Environment variable switching the mismatch check: `0`/`off` or `1`/`on`.
pub const ENV_CHECK: &str = "RINGREDUCE_CHECK";
/// Environment variable setting the stall timeout: seconds (`60`, `2.5`), a
/// duration (`500ms`, `2m`), or `0`/`off` for none.
pub const ENV_TIMEOUT: &str = "RINGREDUCE_TIMEOUT";
/// Environment variable naming a calibration JSON file for `Auto`.
pub const ENV_CALIBRATION: &str = "RINGREDUCE_CALIBRATION";
/// Environment variable forcing the algorithm `Auto` runs (`ring`, `naive`, …).
pub const ENV_ALGO: &str = "RINGREDUCE_ALGO";
/// Segments per chunk of the pipelined ring (1 to 1048576), in place of the model's count.
pub const ENV_SEGMENTS: &str = "RINGREDUCE_SEGMENTS";

/// Environment variable setting the shared-memory slot: the largest
/// all-reduce, in bytes, that `shm` moves in one step (64 to 1M; `K` and
/// `M` suffixes; default 4064). Read when the transport is made, from the
/// node's first rank.
pub const ENV_SHM_SLOT: &str = "RINGREDUCE_SHM_SLOT";
/// Environment variable setting the shared-memory piece: the bytes a large
/// `shm` all-reduce (and `hierarchical` on one node) moves per step (4K to
/// 64M; default 512K). Read when the transport is made, from the node's
/// first rank.
pub const ENV_SHM_PIECE: &str = "RINGREDUCE_SHM_PIECE";
/// Environment variable setting the piece of a `hierarchical` all-reduce
/// when the group spans nodes ([`Shape::rail_piece`]; 4K to 64M; default
/// 4M; halved, to no less than the shared-memory piece, where a node's
/// free shared memory is small). Read when the transport is made, from
/// rank 0 (the rails' rings cross nodes, so every node takes the same).
pub const ENV_HIER_PIECE: &str = "RINGREDUCE_HIER_PIECE";
/// Environment variable setting how the ranks write the shared-memory
/// pieces the others read ([`Writes`]): `cached` (the default), `auto`
/// (around the cache while writing through it is slow) or `streamed`.
/// Read when the transport is made, from the node's first rank.
pub const ENV_SHM_WRITES: &str = "RINGREDUCE_SHM_WRITES";

/// The shared-memory segment's shape: [`Shape::DEFAULT`] changed by
/// [`ENV_SHM_SLOT`], [`ENV_SHM_PIECE`], [`ENV_HIER_PIECE`] and [`ENV_SHM_WRITES`].
///
/// # Errors
/// A value that is not a size in the variable's range, naming the variable.
pub fn shape_from_env() -> Result<Shape> {
    shape_from(env_value)
}

/// [`shape_from_env`] with the variables read by `get`.
fn shape_from(get: impl Fn(&str) -> Option<String>) -> Result<Shape> {
    let mut shape = Shape::DEFAULT;
    for (name, field, range) in [
        (ENV_SHM_SLOT, &mut shape.slot, 64..=1 << 20),
        (ENV_SHM_PIECE, &mut shape.piece, 4 << 10..=64 << 20),
        (ENV_HIER_PIECE, &mut shape.rail_piece, 4 << 10..=64 << 20),
    ] {
        if let Some(v) = get(name) {
            let (digits, unit) = match v.to_ascii_uppercase().strip_suffix(['K', 'M']) {
                Some(d) => (
                    d.to_string(),
                    if v.to_ascii_uppercase().ends_with('K') {
                        1 << 10
                    } else {
                        1 << 20
                    },
                ),
                None => (v.clone(), 1),
            };
            let bytes = digits
                .trim()
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_mul(unit));
            *field = bytes
                .filter(|b| range.contains(b))
                .ok_or_else(|| Error::InvalidArgument {
                    what: name,
                    reason: format!(
                        "`{v}` is not a size from {} to {} bytes (K and M allowed)",
                        range.start(),
                        range.end()
                    ),
                })?;
        }
    }
    if let Some(v) = get(ENV_SHM_WRITES) {
        shape.writes = Writes::parse(v.trim()).ok_or_else(|| Error::InvalidArgument {
            what: ENV_SHM_WRITES,
            reason: format!("`{v}` is not one of {}", Writes::NAMES.join(", ")),
        })?;
    }
    Ok(shape)
}

/// Environment variable naming the TrueType font of the charts (`ringreduce plot`).
pub const ENV_FONT: &str = "RINGREDUCE_FONT";

/// The chart font [`ENV_FONT`] names, if set. (Read here, with every other
/// `RINGREDUCE_*` variable.)
pub fn font_from_env() -> Option<std::path::PathBuf> {
    env_value(ENV_FONT).map(std::path::PathBuf::from)
}

/// The stall timeout unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the call checks do; identical on every rank of a group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckConfig {
    /// Agree on every call's signature before moving data (default on).
    pub mismatch: bool,
    /// Abort the job when a rank waits this long for another (default 60 s;
    /// `None` waits forever). Only transports that can wait with a deadline
    /// use it (the MPI transport does).
    pub timeout: Option<Duration>,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            mismatch: true,
            timeout: Some(DEFAULT_TIMEOUT),
        }
    }
}

impl CheckConfig {
    /// No agreement and no timeout: calls cost exactly their algorithm.
    pub const OFF: CheckConfig = CheckConfig {
        mismatch: false,
        timeout: None,
    };
}

/// Everything a [`Group`](crate::Group) is configured with. Every rank of
/// a group must hold the same settings; [`Group::from_env`](crate::Group::from_env)
/// makes sure of it by taking rank 0's.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Settings {
    /// How `Algorithm::Auto` chooses.
    pub tuning: Tuning,
    /// The call checks.
    pub checks: CheckConfig,
}

impl Settings {
    /// The defaults, changed by the environment: [`ENV_CALIBRATION`] and
    /// [`ENV_ALGO`] and [`ENV_SEGMENTS`] for the tuning, [`ENV_CHECK`] and [`ENV_TIMEOUT`] for
    /// the checks. Unset or empty variables leave the defaults.
    ///
    /// # Errors
    /// An unreadable or malformed calibration file, an unknown algorithm
    /// name, a check value that is not understood, or a shared-memory shape
    /// out of range ([`shape_from_env`]) — each naming the variable.
    pub fn from_env() -> Result<Self> {
        let mut s = Settings::default();
        if let Some(path) = env_value(ENV_CALIBRATION) {
            s.tuning = s.tuning.with_calibration(Calibration::load(Path::new(&path))?);
        }
        if let Some(name) = env_value(ENV_ALGO) {
            let a: Algorithm = name.parse().map_err(|e: Error| Error::InvalidArgument {
                what: ENV_ALGO,
                reason: e.to_string(),
            })?;
            s.tuning.force = (a != Algorithm::Auto).then_some(a);
        }
        if let Some(v) = env_value(ENV_SEGMENTS) {
            let m = v.parse::<u32>().ok().filter(|m| (1..=1 << 20).contains(m));
            s.tuning.segments = Some(m.ok_or_else(|| Error::InvalidArgument {
                what: ENV_SEGMENTS,
                reason: format!("`{v}` is not a segment count from 1 to 1048576"),
            })?);
        }
        if let Some(v) = env_value(ENV_CHECK) {
            s.checks.mismatch = parse_switch(&v).ok_or_else(|| Error::InvalidArgument {
                what: ENV_CHECK,
                reason: format!("`{v}` is neither 1/on/true/yes nor 0/off/false/no"),
            })?;
        }
        if let Some(v) = env_value(ENV_TIMEOUT) {
            s.checks.timeout = parse_timeout(&v)?;
        }
        // The segment's shape is read when the transport is made (which
        // cannot fail and falls back to the default); a bad value is
        // reported here, by the group.
        shape_from_env()?;
        Ok(s)
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse_switch(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Parses a stall timeout: plain seconds (`60`, `0.5`), a duration with a
/// unit (`500ms`, `2m`, `1h`), or `0`/`off`/`none` for no timeout. Other
/// timeouts must lie between 1 ms and 10^9 s.
///
/// # Errors
/// [`Error::InvalidArgument`] for anything else: negative, non-finite, or
/// outside that range (a tiny value once rounded to zero, silently off).
pub fn parse_timeout(v: &str) -> Result<Option<Duration>> {
    let bad = |reason: String| Error::InvalidArgument {
        what: ENV_TIMEOUT,
        reason,
    };
    let v = v.trim();
    if matches!(v.to_ascii_lowercase().as_str(), "off" | "none") {
        return Ok(None);
    }
    let d = match v.parse::<f64>() {
        Ok(0.0) => return Ok(None),
        Ok(s) if s.is_finite() && (1e-3..=1e9).contains(&s) => Duration::from_secs_f64(s),
        Ok(_) => {
            return Err(bad(format!(
                "`{v}` is not 0 or a number of seconds from 0.001 to 1e9"
            )))
        }
        Err(_) => humantime::parse_duration(v)
            .map_err(|e| bad(format!("`{v}`: {e} (use seconds, e.g. 60, or 500ms, 2m, off)")))?,
    };
    if d.is_zero() {
        return Ok(None);
    }
    if d < Duration::from_millis(1) || d > Duration::from_secs(1_000_000_000) {
        return Err(bad(format!("`{v}` is outside 1 ms to 1e9 s")));
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("60").unwrap(), Some(Duration::from_secs(60)));
        assert_eq!(parse_timeout("0.25").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("500ms").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m").unwrap(), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("0").unwrap(), None);
        assert_eq!(parse_timeout("off").unwrap(), None);
        // Regression: 1e-10 rounded to zero and meant no timeout; a huge
        // duration with a unit overflowed on the way to the other ranks.
        for bad in [
            "-1",
            "abc",
            "nan",
            "inf",
            "1e99",
            "",
            "1e-10",
            "18446744073709551615s",
            "10ns",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_memory_shapes_parse_in_range_or_name_the_variable() {
        let with = |slot: Option<&str>, piece: Option<&str>| {
            shape_from(|name| match name {
                ENV_SHM_SLOT => slot.map(String::from),
                ENV_SHM_PIECE => piece.map(String::from),
                _ => None,
            })
        };
        assert_eq!(with(None, None).unwrap(), Shape::DEFAULT);
        let s = with(Some("8K"), Some("1m")).unwrap();
        assert_eq!((s.slot, s.piece), (8 << 10, 1 << 20));
        // Across nodes, hierarchical's piece is set apart from shm's.
        let rail = |v: &str| shape_from(|name| (name == ENV_HIER_PIECE).then(|| v.to_string()));
        let s = rail("2M").unwrap();
        assert_eq!((s.piece, s.rail_piece), (Shape::DEFAULT.piece, 2 << 20));
        for bad in ["2K", "65M", "4q"] {
            let e = rail(bad).unwrap_err().to_string();
            assert!(e.contains(ENV_HIER_PIECE) && e.contains(bad), "{bad}: {e}");
        }
        assert_eq!(with(Some("2000"), None).unwrap().slot, 2000);
        for (slot, piece, var) in [
            (Some("63"), None, ENV_SHM_SLOT),
            (Some("2M"), None, ENV_SHM_SLOT),
            (Some("4x"), None, ENV_SHM_SLOT),
            (None, Some("1K"), ENV_SHM_PIECE),
            (None, Some("65M"), ENV_SHM_PIECE),
            (None, Some("K"), ENV_SHM_PIECE),
            (None, Some("-4K"), ENV_SHM_PIECE),
        ] {
            let e = with(slot, piece).unwrap_err().to_string();
            assert!(e.contains(var), "{slot:?} {piece:?}: {e}");
        }
    }

    #[test]
    fn the_way_pieces_are_written_parses_or_names_the_variable() {
        let with = |v: &str| {
            let v = v.to_string();
            shape_from(move |name| (name == ENV_SHM_WRITES).then(|| v.clone()))
        };
        assert_eq!(Shape::DEFAULT.writes, Writes::Cached);
        assert_eq!(with("Streamed").unwrap().writes, Writes::Streamed);
        assert_eq!(with("AUTO").unwrap().writes, Writes::Auto);
        assert_eq!(with(" cached").unwrap(), Shape::DEFAULT);
        let e = with("nt").unwrap_err().to_string();
        assert!(
            e.contains(ENV_SHM_WRITES) && e.contains("`nt`") && e.contains("streamed"),
            "{e}"
        );
        // It travels to the node's other ranks with the sizes.
        for writes in [Writes::Auto, Writes::Cached, Writes::Streamed] {
            let shape = Shape {
                writes,
                rail_piece: 3 << 20,
                ..Shape::DEFAULT
            };
            assert_eq!(Shape::from_words(shape.to_words()), shape);
        }
    }

    #[test]
    fn settings_survive_the_wire() {
        for checks in [CheckConfig::default(), CheckConfig::OFF] {
            let s = Settings {
                tuning: Tuning {
                    params: crate::cost::CostParams::line(1e-6, 2e-10, 3e-11),
                    force: Some(Algorithm::Central),
                    segments: Some(9),
                    rules: crate::cost::Rules::new(&[crate::cost::Rule {
                        ranks: 4,
                        per_node: 2,
                        up_to: Some(4096),
                        algorithm: Algorithm::Butterfly,
                    }])
                    .unwrap(),
                },
                checks,
            };
            let back: Settings = crate::wire::decode(&crate::wire::encode(&s).unwrap()).unwrap();
            assert_eq!(back, s);
        }
    }
}
