//! Checkpoints: parameters, optimizer state, strategy state and progress,
//! written by rank 0 atomically (a temporary file of its own beside the
//! target, fsync, rename, fsync of the directory) so a crash never leaves a
//! torn file where the last good one was.
//!
//! Format: [safetensors](https://github.com/huggingface/safetensors), so
//! that any safetensors reader opens it (`safetensors.numpy.load_file` in
//! Python). Tensors, all F32 and one-dimensional: `params`, then
//! `optimizer.0`, `optimizer.1`, … (the optimizer's buffers) and
//! `strategy.NAME` (the strategy's state). `__metadata__` holds
//! `format = ringreduce-checkpoint/4`, every [`Header`] field as text
//! (`epoch`, `step`, `seed`, `batch`, `params`, `optimizer`, `optimizer_steps`,
//! `strategy`, `settings`, `data`, and `sections`, a JSON list of the
//! section names in order), and `crc32`: the CRC-32 (8 hex digits) of the
//! other metadata (each key and value followed by a NUL, keys sorted) and
//! then every tensor's name and little-endian bytes in that order. A file
//! whose checksum does not match, or whose values are not all finite, is
//! refused, as are checkpoints of the older `RRCKPT03` layout.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::optim::OptimizerState;
use super::strategies::Section;
use crate::error::{Error, Result};

/// The `format` entry of `__metadata__`.
pub const FORMAT: &str = "ringreduce-checkpoint/4";

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
    /// Steps completed of the next epoch: 0 for a checkpoint written at an
    /// epoch's end, more for one written within an epoch
    /// ([`TrainerBuilder::checkpoint_every`](super::TrainerBuilder::checkpoint_every)).
    #[serde(default)]
    pub step: usize,
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
const PARAMS: &str = "params";

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The metadata of `header` (without `crc32`).
fn metadata(h: &Header) -> HashMap<String, String> {
    let names: Vec<&str> = h.sections.iter().map(|s| s.name.as_str()).collect();
    [
        ("format", FORMAT.to_string()),
        ("epoch", h.epoch.to_string()),
        ("step", h.step.to_string()),
        ("seed", h.seed.to_string()),
        ("batch", h.batch.to_string()),
        ("params", h.params.to_string()),
        ("optimizer", h.optimizer.clone()),
        ("optimizer_steps", h.optimizer_steps.to_string()),
        ("strategy", h.strategy.clone()),
        ("settings", h.settings.clone()),
        ("data", h.data.clone()),
        (
            "sections",
            serde_json::to_string(&names).expect("JSON of strings"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The checksum of the metadata (but `crc32`) and the tensors, in order.
fn checksum<'a>(
    meta: &HashMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, &'a [f32])>,
) -> String {
    let mut h = crc32fast::Hasher::new();
    let mut keys: Vec<&String> = meta.keys().filter(|k| *k != "crc32").collect();
    keys.sort();
    for k in keys {
        for part in [k.as_bytes(), meta[k].as_bytes()] {
            h.update(part);
            h.update(&[0]);
        }
    }
    for (name, values) in tensors {
        h.update(name.as_bytes());
        h.update(&[0]);
        for v in values {
            h.update(&v.to_le_bytes());
        }
    }
    format!("{:08x}", h.finalize())
}

/// The same safetensors file with its JSON header's keys sorted, so that
/// one state always gives the same bytes (the writer lays out a hash map,
/// whose order changes from process to process).
fn canonical(bytes: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .filter(|&n| bytes.len() >= 8 + n)
        .ok_or("short safetensors buffer")?;
    // serde_json's map is ordered by key (no `preserve_order` here).
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| e.to_string())?;
    let mut text = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    // The data stays 8-byte aligned, as the format asks.
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
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

    /// The tensors in checkpoint order: `params`, then the sections.
    fn tensors(&self) -> Vec<(&str, &[f32])> {
        std::iter::once((PARAMS, self.params.as_slice()))
            .chain(
                self.header.sections.iter().map(|s| s.name.as_str()).zip(
                    self.optimizer
                        .buffers
                        .iter()
                        .map(Vec::as_slice)
                        .chain(self.strategy.iter().map(|s| s.values.as_slice())),
                ),
            )
            .collect()
    }

    /// Writes the checkpoint atomically.
    ///
    /// # Errors
    /// [`Error::Data`] naming the path when it cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors = self.tensors();
        let mut meta = metadata(&self.header);
        meta.insert("crc32".into(), checksum(&meta, tensors.iter().copied()));
        let views = tensors
            .iter()
            .map(|&(name, values)| {
                TensorView::new(Dtype::F32, vec![values.len()], bytemuck::cast_slice(values))
                    .map(|v| (name.to_string(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(path, format!("cannot write checkpoint: {e}")))?;
        let bytes = safetensors::serialize(views, &Some(meta))
            .map_err(|e| bad(path, format!("cannot write checkpoint: {e}")))?;
        let bytes = canonical(bytes).map_err(|e| bad(path, format!("cannot write checkpoint: {e}")))?;
        crate::files::write_atomically(path, &bytes)
            .map_err(|e| bad(path, format!("cannot write checkpoint: {e}")))
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    ///
    /// # Errors
    /// [`Error::Data`] for a missing, truncated, corrupt or foreign file, one
    /// of the older `RRCKPT03` layout, or one holding a value that is not
    /// finite.
    pub fn load(path: &Path) -> Result<Self> {
        let mut bytes = Vec::new();
        crate::files::open_regular(path, u64::MAX)
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
            .map_err(|e| bad(path, e.to_string()))?;
        if bytes.starts_with(b"RRCKPT") {
            // The layout's own magic (RRCKPT01 … RRCKPT03), as the file says it.
            let magic: String = bytes[..bytes.len().min(8)]
                .iter()
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                .collect();
            return Err(bad(
                path,
                format!(
                    "a checkpoint of the older {magic} layout; this version reads safetensors \
                     checkpoints only: train again without --resume"
                ),
            ));
        }
        // A length prefix, then a JSON object: a safetensors file, however damaged.
        let looks_right = bytes.get(8) == Some(&b'{');
        let unreadable = |e: safetensors::SafeTensorError| {
            if looks_right {
                bad(path, format!("truncated or corrupt checkpoint ({e:?})"))
            } else {
                bad(path, "not a ringreduce checkpoint (not a safetensors file)")
            }
        };
        let file = SafeTensors::deserialize(&bytes).map_err(unreadable)?;
        let (_, info) = SafeTensors::read_metadata(&bytes).map_err(unreadable)?;
        let meta = info.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(
                path,
                format!("not a ringreduce checkpoint (no `format = {FORMAT}` in its __metadata__)"),
            ));
        }
        let field = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(path, format!("bad checkpoint header: no `{k}`")))
        };
        let number = |k: &str| -> Result<u64> {
            field(k)?
                .parse()
                .map_err(|_| bad(path, format!("bad checkpoint header: `{k}` is not a number")))
        };
        let names: Vec<String> = serde_json::from_str(field("sections")?)
            .map_err(|e| bad(path, format!("bad checkpoint header: sections: {e}")))?;
        // Every tensor is the parameters or a listed section, so the
        // checksum covers the whole file.
        if let Some(extra) = file
            .names()
            .into_iter()
            .find(|n| n.as_str() != PARAMS && !names.iter().any(|s| s == *n))
        {
            return Err(bad(
                path,
                format!("bad checkpoint: tensor `{extra}` is in no section, so no checksum covers it"),
            ));
        }
        let values = |name: &str| f32_tensor(&file, path, name);
        let params = values(PARAMS)?;
        let sections: Vec<(String, Vec<f32>)> = names
            .iter()
            .map(|n| values(n).map(|v| (n.clone(), v)))
            .collect::<Result<_>>()?;
        let tensors = std::iter::once((PARAMS, params.as_slice()))
            .chain(sections.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        if field("crc32")? != &checksum(&meta, tensors) {
            return Err(bad(
                path,
                "checksum mismatch: the checkpoint is corrupt or truncated",
            ));
        }
        let header = Header {
            epoch: number("epoch")? as usize,
            // Absent from checkpoints written before steps were recorded.
            step: match meta.get("step") {
                Some(_) => number("step")? as usize,
                None => 0,
            },
            seed: number("seed")?,
            batch: number("batch")? as usize,
            params: number("params")? as usize,
            optimizer: field("optimizer")?.clone(),
            optimizer_steps: number("optimizer_steps")?,
            strategy: field("strategy")?.clone(),
            settings: field("settings")?.clone(),
            data: field("data")?.clone(),
            sections: sections
                .iter()
                .map(|(n, v)| SectionInfo {
                    name: n.clone(),
                    len: v.len(),
                })
                .collect(),
        };
        if header.epoch == 0 && header.step == 0 {
            return Err(bad(
                path,
                "bad checkpoint header: `epoch` and `step` are 0, and checkpoints are written after a step",
            ));
        }
        if header.params != params.len() {
            return Err(bad(
                path,
                format!(
                    "truncated checkpoint: {} parameters for a header of {}",
                    params.len(),
                    header.params
                ),
            ));
        }
        let all = std::iter::once(&params)
            .chain(sections.iter().map(|s| &s.1))
            .flatten();
        if let Some((i, v)) = all.enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(bad(
                path,
                format!("value {i} is {v}: not a usable training state"),
            ));
        }
        let (optimizer, strategy) = split_sections(path, sections, header.optimizer_steps)?;
        Ok(Checkpoint {
            header,
            params,
            optimizer,
            strategy,
        })
    }
}

/// The first optimizer buffer not `len` values long (every buffer holds
/// one value per parameter), said as a header fault.
pub(crate) fn misfit_buffer(buffers: &[Vec<f32>], len: usize) -> Option<String> {
    let (k, b) = buffers.iter().enumerate().find(|(_, b)| b.len() != len)?;
    Some(format!(
        "`{OPTIMIZER}{k}` holds {} values for {len} parameters",
        b.len()
    ))
}

/// The tensor `name` of `file` as f32 values: a 1-D F32 tensor.
fn f32_tensor(file: &SafeTensors<'_>, path: &Path, name: &str) -> Result<Vec<f32>> {
    let t = file
        .tensor(name)
        .map_err(|_| bad(path, format!("truncated checkpoint: no tensor `{name}`")))?;
    if t.dtype() != Dtype::F32 || t.shape().len() != 1 {
        return Err(bad(
            path,
            format!(
                "tensor `{name}` is {:?} {:?}, not a list of F32",
                t.dtype(),
                t.shape()
            ),
        ));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

/// The named sections as the optimizer's buffers (after `steps` steps)
/// and the strategy's sections.
fn split_sections(
    path: &Path,
    sections: Vec<(String, Vec<f32>)>,
    steps: u64,
) -> Result<(OptimizerState, Vec<Section>)> {
    let mut optimizer = OptimizerState {
        buffers: Vec::new(),
        steps,
    };
    let mut strategy = Vec::new();
    for (name, v) in sections {
        if let Some(name) = name.strip_prefix(STRATEGY) {
            strategy.push(Section {
                name: name.to_string(),
                values: v,
            });
        } else if name.starts_with(OPTIMIZER) {
            optimizer.buffers.push(v);
        } else {
            return Err(bad(path, format!("unknown checkpoint section `{name}`")));
        }
    }
    Ok((optimizer, strategy))
}

/// The mean of the copies `all` holds, of `mean.len()` values each, into
/// `mean`: what a checkpoint's per-rank state becomes on another rank count.
pub(crate) fn mean_of(all: &[f32], mean: &mut [f32]) {
    mean.fill(0.0);
    let copies = all.chunks_exact(mean.len().max(1));
    let k = copies.len().max(1) as f32;
    for copy in copies {
        for (m, v) in mean.iter_mut().zip(copy) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= k);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(epoch: usize) -> Header {
        Header {
            epoch,
            step: 0,
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
            // Raw bytes, and bytes behind a plausible safetensors length prefix.
            let prefix = (bytes.len() as u64 / 2).to_le_bytes();
            for head in [&b""[..], &prefix[..], &b"RRCKPT03"[..]] {
                std::fs::write(&path, [head, &bytes[..]].concat()).unwrap();
                let _ = Checkpoint::load(&path);
            }
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn the_older_layout_is_refused_with_a_clear_message() {
        let path = std::env::temp_dir().join(format!("ringreduce-ckpt-old-{}", std::process::id()));
        std::fs::write(&path, b"RRCKPT03\x02\0\0\0\0\0\0\0{}").unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("older RRCKPT03 layout") && e.contains("without --resume"),
            "{e}"
        );
        // Each older layout by its own name.
        std::fs::write(&path, b"RRCKPT02\x02\0\0\0").unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(e.contains("older RRCKPT02 layout"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_tensor_outside_the_sections_is_refused() {
        let path = std::env::temp_dir().join(format!("ringreduce-ckpt-extra-{}", std::process::id()));
        let mut h = header(1);
        h.params = 2;
        Checkpoint::new(h, vec![1.0, 2.0], OptimizerState::default(), Vec::new())
            .save(&path)
            .unwrap();
        assert!(Checkpoint::load(&path).is_ok());
        // The same file, metadata and checksum unchanged, plus one tensor.
        let bytes = std::fs::read(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let (_, info) = SafeTensors::read_metadata(&bytes).unwrap();
        let extra = [7.0f32; 3];
        let mut views: Vec<(String, TensorView<'_>)> = file.tensors();
        views.push((
            "smuggled".into(),
            TensorView::new(Dtype::F32, vec![3], bytemuck::cast_slice(&extra)).unwrap(),
        ));
        let forged = safetensors::serialize(views, &info.metadata().clone()).unwrap();
        std::fs::write(&path, forged).unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(e.contains("tensor `smuggled` is in no section"), "{e}");
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
            for i in 1..=200 {
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
        // One state, one byte sequence (the metadata's order is fixed).
        for _ in 0..5 {
            c.save(&path).unwrap();
            assert!(
                std::fs::read(&path).unwrap() == bytes,
                "the bytes of a checkpoint changed"
            );
        }
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(Checkpoint::load(&path)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        // One flipped bit in any value, or in a metadata value, is caught
        // by the checksum; anywhere else the file no longer parses.
        let epoch_at = bytes.windows(11).position(|w| w == b"\"epoch\":\"3\"").unwrap() + 9;
        for at in [epoch_at, bytes.len() - 40, bytes.len() - 5] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x01;
            std::fs::write(&path, &flipped).unwrap();
            let e = Checkpoint::load(&path).unwrap_err().to_string();
            assert!(e.contains("checksum mismatch"), "byte {at}: {e}");
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            std::fs::write(&path, &flipped).unwrap();
            assert!(
                Checkpoint::load(&path).is_err(),
                "byte {at} flipped went unnoticed"
            );
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
