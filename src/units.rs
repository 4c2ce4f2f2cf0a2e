//! Byte sizes as people write them on command lines (`4K`, `16M`, `1GiB`).

use crate::error::{Error, Result};

/// Refuses work whose buffers — `copies` times `bytes` per rank — would not
/// fit in the memory available now (`MemAvailable`), instead of letting the
/// allocation abort the process.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `what` when they would not fit.
pub fn check_memory(bytes: u64, copies: u64, what: &'static str) -> Result<()> {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
        line.split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    });
    let need = bytes.saturating_mul(copies);
    match available {
        Some(avail) if need > avail => Err(Error::InvalidArgument {
            what,
            reason: format!(
                "{} B messages need about {} MiB per rank but only {} MiB is available",
                bytes,
                need >> 20,
                avail >> 20
            ),
        }),
        _ => Ok(()),
    }
}

/// Parses a size in bytes: a whole number with an optional binary suffix
/// `K`, `M`, `G`, `T` (also `KB`/`KiB`…, any case), as OSU and nccl-tests read them.
///
/// # Errors
/// [`Error::InvalidArgument`] for anything else, including sizes that do not
/// fit in 64 bits.
///
/// ```
/// assert_eq!(ringreduce::units::parse_size("16M").unwrap(), 16 << 20);
/// assert!(ringreduce::units::parse_size("-4K").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = |reason: &str| Error::InvalidArgument {
        what: "size",
        reason: format!("`{text}`: {reason}"),
    };
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(bad("expected a whole number of bytes such as 4096, 4K or 16M"));
    }
    let number: u64 = t[..digits].parse().map_err(|_| bad("too large"))?;
    let shift = match t[digits..].to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad("unknown unit (use K, M, G or T)")),
    };
    number.checked_mul(1u64 << shift).ok_or_else(|| bad("too large"))
}

/// Bytes as people write them: `16 MiB`, `4 KiB`, `1000 B` (a binary unit
/// only when it is exact).
pub fn human_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

/// Formats bytes with a binary suffix when it is exact (`4096` → `4K`),
/// as the command line takes them.
pub fn format_size(bytes: u64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("12B").unwrap(), 12);
        for bad in [
            "",
            "K",
            "1.5M",
            "4X",
            "-1",
            "99999999999999999999",
            "17179869184T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(16 << 20), "16M");
        assert_eq!(human_size(16 << 20), "16 MiB");
        assert_eq!(human_size(407080), "407080 B");
        assert_eq!(format_size(1000), "1000");
    }
}
