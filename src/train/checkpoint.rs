//! Checkpoints: parameters, optimizer state, strategy state and progress,
//! written by rank 0 atomically (a temporary file of its own beside the
//! target, fsync, rename, fsync of the directory) so a crash never leaves a
//! torn file where the last good one was.
//!
//! Format: the 8 bytes `RRCKPT03`, a little-endian u64 header length, a
//! JSON [`Header`] (which lists the sections), then the parameters and
//! every section's values as little-endian f32, in the header's order, and
//! last the CRC-32 of everything before it (little-endian u32). A file whose
//! checksum does not match, or whose values are not all finite, is refused.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::optim::OptimizerState;
use super::strategy::Section;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"RRCKPT03";

/// Name and length of one section of values after the parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionInfo {
    /// `optimizer.0`, … for the optimizer's buffers, `strategy.NAME` for the strategy's.
    pub name: String,
    /// Number of f32 values.
    pub len: usize,
}

/// What a checkpoint holds besides the values.
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
    /// The optimizer's name.
    pub optimizer: String,
    /// Steps the optimizer has taken.
    pub optimizer_steps: u64,
    /// The strategy's name.
    pub strategy: String,
    /// Learning rate, schedule and optimizer settings, as text.
    pub settings: String,
    /// The training data's size, shape and checksum, as text.
    pub data: String,
    /// The sections after the parameters, in order.
    pub sections: Vec<SectionInfo>,
}

/// A training state.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Progress and settings.
    pub header: Header,
    /// Model parameters.
    pub params: Vec<f32>,
    /// The optimizer's buffers and step count.
    pub optimizer: OptimizerState,
    /// The strategy's state.
    pub strategy: Vec<Section>,
}

const OPTIMIZER: &str = "optimizer.";
const STRATEGY: &str = "strategy.";

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

impl Checkpoint {
    /// A checkpoint of this state; the header's section table is filled in.
    pub fn new(
        mut header: Header,
        params: Vec<f32>,
        optimizer: OptimizerState,
        strategy: Vec<Section>,
    ) -> Self {
        header.params = params.len();
        header.optimizer_steps = optimizer.steps;
        header.sections = optimizer
            .buffers
            .iter()
            .enumerate()
            .map(|(i, b)| SectionInfo {
                name: format!("{OPTIMIZER}{i}"),
                len: b.len(),
            })
            .chain(strategy.iter().map(|s| SectionInfo {
                name: format!("{STRATEGY}{}", s.name),
                len: s.values.len(),
            }))
            .collect();
        Checkpoint {
            header,
            params,
            optimizer,
            strategy,
        }
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = serde_json::to_vec(&self.header).map_err(|e| bad(path, e.to_string()))?;
        let floats = self.params.len()
            + self.optimizer.buffers.iter().map(Vec::len).sum::<usize>()
            + self.strategy.iter().map(|s| s.values.len()).sum::<usize>();
        let mut bytes = Vec::with_capacity(16 + header.len() + 4 * floats);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        let values = self
            .params
            .iter()
            .chain(self.optimizer.buffers.iter().flatten())
            .chain(self.strategy.iter().flat_map(|s| &s.values));
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        crate::files::write_atomically(path, &bytes)
            .map_err(|e| bad(path, format!("cannot write checkpoint: {e}")))
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    ///
    /// # Errors
    /// [`Error::Data`] for a missing, truncated, corrupt or foreign file, or
    /// one holding a value that is not finite.
    pub fn load(path: &Path) -> Result<Self> {
        let mut bytes = Vec::new();
        crate::files::open_regular(path, u64::MAX)
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
            .map_err(|e| bad(path, e.to_string()))?;
        if bytes.len() < 20 || &bytes[..8] != MAGIC {
            return Err(bad(path, "not a ringreduce checkpoint"));
        }
        let (bytes, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(bytes).to_le_bytes() != crc {
            return Err(bad(
                path,
                "checksum mismatch: the checkpoint is corrupt or truncated",
            ));
        }
        let hlen = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let body = bytes
            .get(16..)
            .filter(|b| b.len() >= hlen)
            .ok_or_else(|| bad(path, "truncated checkpoint"))?;
        let header: Header = serde_json::from_slice(&body[..hlen])
            .map_err(|e| bad(path, format!("bad checkpoint header: {e}")))?;
        let floats = &body[hlen..];
        let total = header
            .sections
            .iter()
            .try_fold(header.params, |t, s| t.checked_add(s.len));
        if total.and_then(|t| t.checked_mul(4)) != Some(floats.len()) {
            return Err(bad(
                path,
                format!(
                    "truncated checkpoint: {} bytes of values for {} parameters and {} sections",
                    floats.len(),
                    header.params,
                    header.sections.len()
                ),
            ));
        }
        let all: Vec<f32> = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        if let Some(i) = all.iter().position(|v| !v.is_finite()) {
            return Err(bad(
                path,
                format!("value {i} is {}: not a usable training state", all[i]),
            ));
        }
        let mut values = all.into_iter();
        let mut take = |n: usize| values.by_ref().take(n).collect::<Vec<f32>>();
        let params = take(header.params);
        let mut optimizer = OptimizerState {
            buffers: Vec::new(),
            steps: header.optimizer_steps,
        };
        let mut strategy = Vec::new();
        for s in &header.sections {
            let v = take(s.len);
            if let Some(name) = s.name.strip_prefix(STRATEGY) {
                strategy.push(Section {
                    name: name.to_string(),
                    values: v,
                });
            } else if s.name.starts_with(OPTIMIZER) {
                optimizer.buffers.push(v);
            } else {
                return Err(bad(path, format!("unknown checkpoint section `{}`", s.name)));
            }
        }
        Ok(Checkpoint {
            header,
            params,
            optimizer,
            strategy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(epoch: usize) -> Header {
        Header {
            epoch,
            seed: 9,
            batch: 12,
            params: 0,
            optimizer: "sgd".into(),
            optimizer_steps: 0,
            strategy: "sync:ring".into(),
            settings: "lr 0.1".into(),
            data: "12 examples".into(),
            sections: Vec::new(),
        }
    }

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
        let mut h = header(1);
        h.params = usize::MAX / 2;
        h.sections = vec![SectionInfo {
            name: "optimizer.0".into(),
            len: usize::MAX / 2,
        }];
        let text = serde_json::to_vec(&h).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend((text.len() as u64).to_le_bytes());
        bytes.extend(text);
        // A valid checksum, so the size arithmetic is what refuses it.
        let crc = crc32fast::hash(&bytes);
        bytes.extend(crc.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        assert!(Checkpoint::load(&path)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn jobs_whose_paths_differ_only_in_extension_keep_their_own_checkpoints() {
        // Regression: `run-lr0.01` and `run-lr0.02` shared the temporary file
        // `run-lr0.tmp`, and one job's checkpoint could hold the other's state.
        let dir = std::env::temp_dir().join(format!("ringreduce-ckpt-pair-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let save = |name: &str, value: f32| {
            let path = dir.join(name);
            for i in 0..200 {
                let c = Checkpoint::new(
                    header(i),
                    vec![value; 64],
                    OptimizerState {
                        buffers: vec![vec![value; 64]],
                        steps: i as u64,
                    },
                    Vec::new(),
                );
                c.save(&path).unwrap();
                assert_eq!(
                    Checkpoint::load(&path).unwrap().params[0],
                    value,
                    "{name} holds another job's state"
                );
            }
        };
        std::thread::scope(|s| {
            s.spawn(|| save("run-lr0.01", 1.0));
            s.spawn(|| save("run-lr0.02", 2.0));
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("ringreduce-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.ckpt");
        let c = Checkpoint::new(
            header(3),
            vec![1.0, -0.0, f32::MAX],
            OptimizerState {
                buffers: vec![vec![0.5, 0.25, -1.0], vec![1.0, 2.0, 3.0]],
                steps: 17,
            },
            vec![Section {
                name: "residual".into(),
                values: vec![4.0, 5.0],
            }],
        );
        assert_eq!(c.header.sections.len(), 3);
        c.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), c);
        assert!(!path.with_extension("tmp").exists());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(Checkpoint::load(&path)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        // One flipped bit anywhere is caught by the checksum.
        for at in [12, bytes.len() / 2, bytes.len() - 5] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            std::fs::write(&path, &flipped).unwrap();
            let e = Checkpoint::load(&path).unwrap_err().to_string();
            assert!(e.contains("checksum mismatch"), "byte {at}: {e}");
        }
        // A state with a NaN weight is refused, however it got written.
        let mut nan = c.clone();
        nan.params[1] = f32::NAN;
        nan.save(&path).unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(e.contains("value 1 is NaN"), "{e}");
        std::fs::write(&path, b"hello world, not a checkpoint").unwrap();
        assert!(Checkpoint::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not a ringreduce checkpoint"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
