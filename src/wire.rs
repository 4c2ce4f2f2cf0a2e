//! The one wire format for values the ranks exchange (settings, error
//! texts, reports): JSON through serde, floats round-tripping exactly.
//! Bulk data never goes through here; it travels as raw element bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// `value` as bytes.
///
/// # Errors
/// [`Error::InvalidArgument`] when serde cannot represent it (e.g. a map
/// with non-string keys).
pub(crate) fn encode<V: Serialize + ?Sized>(value: &V) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::InvalidArgument {
        what: "value to send",
        reason: e.to_string(),
    })
}

/// The value `bytes` hold.
///
/// # Errors
/// [`Error::Transport`]-like corruption is reported as
/// [`Error::InvalidArgument`] naming what did not parse.
pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V> {
    serde_json::from_slice(bytes).map_err(|e| Error::InvalidArgument {
        what: "value received",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_extremes_round_trip_exactly() {
        let v: (f64, f64, u64, Option<std::time::Duration>, String) = (
            0.1 + 0.2,
            1.0e-308 * 3.7,
            u64::MAX,
            Some(std::time::Duration::from_nanos(123_456_789_012)),
            "rank 3: \"quoted\"\n".into(),
        );
        let back: (f64, f64, u64, Option<std::time::Duration>, String) =
            decode(&encode(&v).unwrap()).unwrap();
        assert_eq!(back.0.to_bits(), v.0.to_bits());
        assert_eq!(back.1.to_bits(), v.1.to_bits());
        assert_eq!((back.2, back.3, &back.4), (v.2, v.3, &v.4));
        assert!(decode::<u64>(b"{").is_err());
    }
}
