//! Checkpoints: parameters, optimizer state and progress, written by rank 0
//! atomically (temporary file, fsync, rename) so a crash never leaves a torn
//! file where the last good one was.
//!
//! Format: the 8 bytes `RRCKPT01`, a little-endian u64 header length, a
//! JSON header, then the parameters and the momentum buffer as
//! little-endian f32.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"RRCKPT01";

/// What a checkpoint holds besides the two buffers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Epochs completed.
    pub epoch: usize,
    /// Seed of initialisation and shuffling (each epoch's order derives from it).
    pub seed: u64,
    /// Global batch size.
    pub batch: usize,
    /// Parameter count (the model's shape check).
    pub params: usize,
}

/// A training state.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Progress and settings.
    pub header: Header,
    /// Model parameters.
    pub params: Vec<f32>,
    /// Momentum buffer.
    pub velocity: Vec<f32>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

impl Checkpoint {
    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = serde_json::to_vec(&self.header).map_err(|e| bad(path, e.to_string()))?;
        let mut bytes = Vec::with_capacity(16 + header.len() + 8 * self.params.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        for v in self.params.iter().chain(&self.velocity) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| bad(path, format!("cannot write checkpoint: {e}")))
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    ///
    /// # Errors
    /// [`Error::Data`] for a missing, truncated or foreign file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad(path, "not a ringreduce checkpoint"));
        }
        let hlen = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let body = bytes
            .get(16..)
            .filter(|b| b.len() >= hlen)
            .ok_or_else(|| bad(path, "truncated checkpoint"))?;
        let header: Header = serde_json::from_slice(&body[..hlen])
            .map_err(|e| bad(path, format!("bad checkpoint header: {e}")))?;
        let floats = &body[hlen..];
        if header.params.checked_mul(8) != Some(floats.len()) {
            return Err(bad(
                path,
                format!(
                    "truncated checkpoint: {} bytes of state for {} parameters",
                    floats.len(),
                    header.params
                ),
            ));
        }
        let all: Vec<f32> = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let (params, velocity) = all.split_at(header.params);
        Ok(Checkpoint {
            header,
            params: params.to_vec(),
            velocity: velocity.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let path = std::env::temp_dir().join(format!("ringreduce-ckpt-fuzz-{}", std::process::id()));
            for prefix in [&b""[..], &MAGIC[..]] {
                std::fs::write(&path, [prefix, &bytes[..]].concat()).unwrap();
                let _ = Checkpoint::load(&path);
            }
        }
    }

    #[test]
    fn a_huge_parameter_count_is_an_error_not_an_overflow() {
        let path = std::env::temp_dir().join(format!("ringreduce-ckpt-huge-{}", std::process::id()));
        let header = format!(r#"{{"epoch":1,"seed":1,"batch":1,"params":{}}}"#, usize::MAX / 2);
        let mut bytes = MAGIC.to_vec();
        bytes.extend((header.len() as u64).to_le_bytes());
        bytes.extend(header.as_bytes());
        std::fs::write(&path, bytes).unwrap();
        assert!(Checkpoint::load(&path)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("ringreduce-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.ckpt");
        let c = Checkpoint {
            header: Header {
                epoch: 3,
                seed: 9,
                batch: 12,
                params: 3,
            },
            params: vec![1.0, -0.0, f32::MAX],
            velocity: vec![0.5, 0.25, -1.0],
        };
        c.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), c);
        assert!(!path.with_extension("tmp").exists());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(Checkpoint::load(&path)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        std::fs::write(&path, b"hello world, not a checkpoint").unwrap();
        assert!(Checkpoint::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not a ringreduce checkpoint"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
