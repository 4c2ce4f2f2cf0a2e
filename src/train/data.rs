//! Data sets: the IDX format of MNIST and Fashion-MNIST (gzipped or not), a
//! CSV loader (label column, then features) and a seeded synthetic generator.
//!
//! Every rank loads the whole set; the trainer gives each rank a disjoint
//! slice of every global batch.

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// A labelled data set in memory: `n` rows of `dim` features (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Features, `n × dim`, row-major.
    pub features: Vec<f32>,
    /// Labels in `0..classes`.
    pub labels: Vec<u32>,
    /// Features per example.
    pub dim: usize,
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first `n` examples and the rest, as two sets (train, test).
    pub fn split(mut self, n: usize) -> (Dataset, Dataset) {
        let n = n.min(self.len());
        let rest = Dataset {
            features: self.features.split_off(n * self.dim),
            labels: self.labels.split_off(n),
            dim: self.dim,
            classes: self.classes,
        };
        (self, rest)
    }

    /// A seeded, stratified split: `fraction` of each class's examples
    /// (rounded, chosen by a shuffle seeded with `seed`) form the second
    /// set; both keep the original order. The same on every rank.
    ///
    /// # Errors
    /// A fraction outside (0, 1), or one that leaves either set empty.
    pub fn stratified_split(self, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        let invalid = |reason: String| Error::InvalidArgument {
            what: "--val-split",
            reason,
        };
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(invalid(format!("{fraction} is not a fraction between 0 and 1")));
        }
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.classes];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_0000_5B11_7000);
        let mut held = vec![false; self.len()];
        for members in &mut by_class {
            let take = (members.len() as f64 * fraction).round() as usize;
            rand::seq::SliceRandom::shuffle(members.as_mut_slice(), &mut rng);
            for &i in &members[..take] {
                held[i] = true;
            }
        }
        let n_held = held.iter().filter(|&&h| h).count();
        if n_held == 0 || n_held == self.len() {
            return Err(invalid(format!(
                "a fraction {fraction} of {} examples leaves {} for validation and {} for training",
                self.len(),
                n_held,
                self.len() - n_held
            )));
        }
        let part = |keep: bool| {
            let idx: Vec<usize> = (0..self.len()).filter(|&i| held[i] == keep).collect();
            Dataset {
                features: idx.iter().flat_map(|&i| self.row(i).iter().copied()).collect(),
                labels: idx.iter().map(|&i| self.labels[i]).collect(),
                dim: self.dim,
                classes: self.classes,
            }
        };
        Ok((part(false), part(true)))
    }

    /// Features of example `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }
}

pub use crate::files::MAX_FILE_BYTES;
pub(crate) use crate::files::{data_error, open_data, open_maybe_gz};

/// Labels must be below this: a model has at most this many classes.
pub const MAX_CLASSES: usize = 1 << 16;

/// Reads an IDX file, gunzipping it when it starts with the gzip magic
/// (several concatenated gzip members too, as pigz and `cat a.gz b.gz`
/// write). The header is read first, and no more is decompressed than its
/// dimensions declare (plus one byte, to notice extra data).
fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let (reader, what) = open_maybe_gz(path)?;
    parse_idx_from(reader, path, what)
}

/// Parses an IDX file of unsigned bytes: returns its dimensions and data.
/// Checks the magic (0x0000 0x08 ndim) and that the data is exactly as long
/// as the dimensions say.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    parse_idx_from(bytes, path, "")
}

/// [`parse_idx`] over a reader, reading no more than the header declares;
/// read errors are prefixed with `what`.
fn parse_idx_from(mut r: impl Read, path: &Path, what: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let io = |e: std::io::Error| data_error(path, format!("{what}{e}"));
    // Reads up to `n` bytes; fewer only at the end of the stream.
    let mut read_upto = |n: u64| -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        r.by_ref().take(n).read_to_end(&mut buf).map_err(io)?;
        Ok(buf)
    };
    let magic = read_upto(4)?;
    if magic.len() < 4 {
        return Err(data_error(path, "truncated IDX header"));
    }
    if magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 {
        return Err(data_error(
            path,
            format!(
                "not an IDX file of unsigned bytes (magic {:02x}{:02x}{:02x}{:02x})",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    let ndim = magic[3] as usize;
    let header = read_upto(4 * ndim as u64)?;
    if ndim == 0 || header.len() < 4 * ndim {
        return Err(data_error(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = header
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize)
        .collect();
    let total = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&t| t as u64 <= MAX_FILE_BYTES)
        .ok_or_else(|| data_error(path, format!("IDX dimensions {dims:?} are too large")))?;
    // One byte more than declared tells a longer file from an exact one.
    let data = read_upto(total as u64 + 1)?;
    if data.len() != total {
        let has = if data.len() > total {
            "more".to_string()
        } else {
            data.len().to_string()
        };
        return Err(data_error(
            path,
            format!("IDX dimensions {dims:?} need {total} bytes of data, file has {has}"),
        ));
    }
    Ok((dims, data))
}

/// Loads an IDX image file and its label file: pixels scaled to [0, 1].
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset> {
    let (idims, pixels) = read_idx(images)?;
    let (ldims, labs) = read_idx(labels)?;
    if idims.len() < 2 {
        return Err(data_error(images, "an image file needs at least 2 dimensions"));
    }
    if ldims.len() != 1 {
        return Err(data_error(labels, "a label file has 1 dimension"));
    }
    if idims[0] != ldims[0] {
        return Err(data_error(
            labels,
            format!("{} labels for {} images", ldims[0], idims[0]),
        ));
    }
    let dim = idims[1..].iter().product();
    let classes = labs.iter().map(|&l| l as usize + 1).max().unwrap_or(0).max(2);
    Ok(Dataset {
        features: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: labs.iter().map(|&l| l as u32).collect(),
        dim,
        classes,
    })
}

/// Loads Fashion-MNIST (train, test) from a directory holding the four
/// `*-idx?-ubyte[.gz]` files, by default [`FASHION_MNIST_DIR`].
pub fn fashion_mnist(dir: &Path) -> Result<(Dataset, Dataset)> {
    Ok((
        fashion_mnist_part(dir, "train")?,
        fashion_mnist_part(dir, "t10k")?,
    ))
}

/// One part (`train` or `t10k`) of an MNIST-layout directory.
fn fashion_mnist_part(dir: &Path, part: &str) -> Result<Dataset> {
    let find = |stem: String| -> Result<PathBuf> {
        [dir.join(format!("{stem}.gz")), dir.join(&stem)]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                data_error(
                    &dir.join(&stem),
                    "missing (install Debian's dataset-fashion-mnist, or run scripts/setup.sh)",
                )
            })
    };
    load_idx(
        &find(format!("{part}-images-idx3-ubyte"))?,
        &find(format!("{part}-labels-idx1-ubyte"))?,
    )
}

/// Loads a CSV file: one example per line, the integer label first, then
/// the features. A first line none of whose fields is a number is a header
/// and skipped; a byte-order mark is ignored; labels are below
/// [`MAX_CLASSES`].
pub fn load_csv(path: &Path) -> Result<Dataset> {
    let mut text = String::new();
    open_data(path)?
        .read_to_string(&mut text)
        .map_err(|e| data_error(path, e.to_string()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut dim = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split(',').map(str::trim);
        if n == 0 && line.split(',').all(|f| f.trim().parse::<f64>().is_err()) {
            continue; // a header: names, not numbers
        }
        let first = fields.next().unwrap_or("");
        let label: u32 = match first.parse() {
            Ok(l) if (l as usize) < MAX_CLASSES => l,
            Ok(l) => {
                return Err(data_error(
                    path,
                    format!("line {}: label {l} is not below {MAX_CLASSES} classes", n + 1),
                ))
            }
            Err(_) => {
                return Err(data_error(
                    path,
                    format!("line {}: label `{first}` is not a whole number", n + 1),
                ))
            }
        };
        let row: Vec<f32> = fields
            .map(|f| {
                f.parse::<f32>()
                    .map_err(|_| data_error(path, format!("line {}: `{f}` is not a number", n + 1)))
            })
            .collect::<Result<_>>()?;
        match dim {
            None => dim = Some(row.len()),
            Some(d) if d != row.len() => {
                return Err(data_error(
                    path,
                    format!("line {}: {} features, earlier lines have {d}", n + 1, row.len()),
                ))
            }
            _ => {}
        }
        if row.iter().any(|v| !v.is_finite()) {
            return Err(data_error(path, format!("line {}: non-finite feature", n + 1)));
        }
        labels.push(label);
        features.extend(row);
    }
    let dim = dim
        .filter(|&d| d > 0)
        .ok_or_else(|| data_error(path, "no examples with features"))?;
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0).max(2);
    Ok(Dataset {
        features,
        labels,
        dim,
        classes,
    })
}

/// The data set a name or path on the command line means, as (train, test):
/// `fashion-mnist` (Debian's package), `synthetic` (one seeded draw of 7000
/// examples, 20 features, 5 classes, split 6000/1000 so both halves share the
/// class means), a directory of the four MNIST-layout IDX files (MNIST,
/// Fashion-MNIST, KMNIST), or a CSV file — which has no held-out part, so
/// its test set is `None`.
///
/// # Errors
/// Those of the loaders.
pub fn named(spec: &str, seed: u64) -> Result<(Dataset, Option<Dataset>)> {
    match spec {
        "fashion-mnist" => fashion_mnist(Path::new(FASHION_MNIST_DIR)).map(|(a, b)| (a, Some(b))),
        "synthetic" => {
            let (a, b) = synthetic(7000, 20, 5, seed).split(6000);
            Ok((a, Some(b)))
        }
        dir if Path::new(dir).is_dir() => fashion_mnist(Path::new(dir)).map(|(a, b)| (a, Some(b))),
        path => load_csv(Path::new(path)).map(|d| (d, None)),
    }
}

/// Where a run's held-out examples come from.
#[derive(Debug, Clone, PartialEq)]
pub enum HeldOut {
    /// The data set's own test part, or a `--test` file.
    Test,
    /// A seeded, stratified fraction of the training set.
    Validation(f64),
    /// None: no accuracy is measured.
    None,
}

impl HeldOut {
    /// The metrics' name of the accuracy on this set: `test_accuracy`,
    /// `val_accuracy`, or `None`.
    pub fn accuracy_column(&self) -> Option<&'static str> {
        match self {
            HeldOut::Test => Some("test_accuracy"),
            HeldOut::Validation(_) => Some("val_accuracy"),
            HeldOut::None => None,
        }
    }
}

/// The sets of a run: what trains and what measures.
#[derive(Debug, Clone)]
pub struct Sets {
    /// Training examples.
    pub train: Dataset,
    /// Held-out examples, when there are any.
    pub held_out: Option<Dataset>,
    /// Where the held-out examples come from.
    pub kind: HeldOut,
}

/// Loads `spec` as [`named`] does, then picks the held-out set: the file
/// or directory `test` (a directory's `t10k-*` files) when given, else a
/// seeded stratified `val_split` fraction of the training set when given,
/// else the data set's own test part — and a CSV without either has none.
///
/// # Errors
/// Those of the loaders; both `test` and `val_split`; a fraction outside
/// (0, 1); a split that leaves either side empty; a test set whose features
/// differ in number from the training set's.
pub fn load(spec: &str, test: Option<&Path>, val_split: Option<f64>, seed: u64) -> Result<Sets> {
    let invalid = |what: &'static str, reason: String| Error::InvalidArgument { what, reason };
    if test.is_some() && val_split.is_some() {
        return Err(invalid(
            "--val-split",
            "one held-out set per run: give --test or --val-split, not both".into(),
        ));
    }
    let (train, own_test) = named(spec, seed)?;
    if let Some(path) = test {
        let test = if path.is_dir() {
            fashion_mnist_part(path, "t10k")?
        } else {
            load_csv(path)?
        };
        if test.dim != train.dim {
            return Err(data_error(
                path,
                format!("{} features, the training set has {}", test.dim, train.dim),
            ));
        }
        return Ok(Sets {
            train,
            held_out: Some(test),
            kind: HeldOut::Test,
        });
    }
    if let Some(f) = val_split {
        let (train, val) = train.stratified_split(f, seed)?;
        return Ok(Sets {
            train,
            held_out: Some(val),
            kind: HeldOut::Validation(f),
        });
    }
    let kind = if own_test.is_some() {
        HeldOut::Test
    } else {
        HeldOut::None
    };
    Ok(Sets {
        train,
        held_out: own_test,
        kind,
    })
}

/// A seeded synthetic classification set: `classes` Gaussian blobs in `dim`
/// dimensions (unit variance around means drawn from [−2, 2]).
pub fn synthetic(n: usize, dim: usize, classes: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let means: Vec<f32> = (0..classes * dim).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let mut features = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.gen_range(0..classes);
        labels.push(c as u32);
        for j in 0..dim {
            // Sum of uniforms: a cheap, seeded, roughly normal deviate.
            let noise: f32 = (0..4).map(|_| rng.gen_range(-1.0f32..1.0)).sum::<f32>() * 0.87;
            features.push(means[c * dim + j] + noise);
        }
    }
    Dataset {
        features,
        labels,
        dim,
        classes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringreduce-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(data);
        v
    }

    #[test]
    fn idx_round_trip_plain_and_gzipped() {
        let img = tmp("img.idx");
        let lab = tmp("lab.idx.gz");
        std::fs::write(&img, idx(&[2, 2, 2], &[0, 255, 51, 102, 1, 2, 3, 4])).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &idx(&[2], &[3, 9])).unwrap();
        std::fs::write(&lab, gz.finish().unwrap()).unwrap();
        let d = load_idx(&img, &lab).unwrap();
        assert_eq!((d.len(), d.dim, d.classes), (2, 4, 10));
        assert_eq!(d.row(0), &[0.0, 1.0, 0.2, 0.4]);
        assert_eq!(d.labels, vec![3, 9]);
    }

    #[test]
    fn bad_idx_files_are_errors() {
        let p = tmp("bad.idx");
        for (bytes, needle) in [
            (vec![0u8, 0], "truncated"),
            (vec![0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1], "not an IDX"),
            (idx(&[3, 2], &[1, 2, 3]), "need 6 bytes"),
            (vec![0x1f, 0x8b, 1, 2, 3], "corrupt gzip"),
        ] {
            std::fs::write(&p, &bytes).unwrap();
            let err = read_idx(&p).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let img = tmp("i.idx");
        let lab = tmp("l.idx");
        std::fs::write(&img, idx(&[2, 1], &[1, 2])).unwrap();
        std::fs::write(&lab, idx(&[3], &[1, 2, 3])).unwrap();
        assert!(load_idx(&img, &lab)
            .unwrap_err()
            .to_string()
            .contains("3 labels for 2 images"));
        assert!(load_idx(&tmp("absent"), &lab).is_err());
    }

    #[test]
    fn reads_are_bounded_and_multi_member_gzip_loads() {
        // Regression: a small gzip expanding far beyond its declared
        // dimensions was decompressed whole before the size check.
        let bomb = tmp("bomb.idx.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &idx(&[10], &[1; 10])).unwrap();
        std::io::Write::write_all(&mut gz, &vec![0u8; 64 << 20]).unwrap();
        std::fs::write(&bomb, gz.finish().unwrap()).unwrap();
        let err = read_idx(&bomb).unwrap_err().to_string();
        assert!(err.contains("need 10 bytes of data, file has more"), "{err}");
        // Devices and directories are refused instead of read without end.
        for path in [Path::new("/dev/zero"), Path::new("/tmp")] {
            assert!(read_idx(path)
                .unwrap_err()
                .to_string()
                .contains("not a regular file"));
            assert!(load_csv(path)
                .unwrap_err()
                .to_string()
                .contains("not a regular file"));
        }
        // pigz and `cat a.gz b.gz` write several gzip members.
        let data = idx(&[6], &[1, 2, 3, 4, 5, 6]);
        let member = |part: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, part).unwrap();
            gz.finish().unwrap()
        };
        let multi = tmp("multi.idx.gz");
        std::fs::write(&multi, [member(&data[..7]), member(&data[7..])].concat()).unwrap();
        assert_eq!(read_idx(&multi).unwrap(), (vec![6], vec![1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn csv_labels_headers_and_byte_order_marks() {
        let p = tmp("labels.csv");
        // Regression: a label of 2^32 − 1 made a model of 2^32 classes.
        std::fs::write(&p, "4294967295,0.5\n0,1\n").unwrap();
        assert!(load_csv(&p)
            .unwrap_err()
            .to_string()
            .contains("not below 65536 classes"));
        // Regression: a first line with a bad label was dropped as a header.
        for bad in ["NaN,1,2\n1,0,0\n", "-1,1,2\n1,0,0\n"] {
            std::fs::write(&p, bad).unwrap();
            let e = load_csv(&p).unwrap_err().to_string();
            assert!(e.contains("line 1: label"), "{bad:?}: {e}");
        }
        std::fs::write(&p, "\u{feff}1,0.5\n0,1\n").unwrap();
        assert_eq!(load_csv(&p).unwrap().labels, vec![1, 0]);
        std::fs::write(&p, "\u{feff}label,x\n1,0.5\n").unwrap();
        assert_eq!(load_csv(&p).unwrap().labels, vec![1]);
    }

    #[test]
    fn csv_loads_and_rejects_ragged_rows() {
        let p = tmp("d.csv");
        std::fs::write(&p, "label,a,b\n1,0.5,2\n0,1,-1\n").unwrap();
        let d = load_csv(&p).unwrap();
        assert_eq!((d.len(), d.dim, d.labels.clone()), (2, 2, vec![1, 0]));
        std::fs::write(&p, "1,0.5,2\n0,1\n").unwrap();
        assert!(load_csv(&p)
            .unwrap_err()
            .to_string()
            .contains("line 2: 1 features"));
        std::fs::write(&p, "1,0.5,x\n").unwrap();
        assert!(load_csv(&p).unwrap_err().to_string().contains("not a number"));
        std::fs::write(&p, "").unwrap();
        assert!(load_csv(&p).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_parsers(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let p = Path::new("fuzz.idx");
            let _ = parse_idx(&bytes, p);
            // The same bytes behind a valid-looking IDX magic reach the dimension checks.
            let _ = parse_idx(&[&[0u8, 0, 8, (bytes.len() % 4) as u8][..], &bytes[..]].concat(), p);
            let csv = tmp("fuzz.csv");
            std::fs::write(&csv, &bytes).unwrap();
            let _ = load_csv(&csv);
        }
    }

    #[test]
    fn split_keeps_rows_whole() {
        let (a, b) = synthetic(10, 3, 2, 1).split(7);
        assert_eq!(
            (a.len(), b.len(), a.features.len(), b.features.len()),
            (7, 3, 21, 9)
        );
        assert_eq!(b.row(0), synthetic(10, 3, 2, 1).row(7));
    }

    #[test]
    fn stratified_split_keeps_class_shares_and_is_seeded() {
        // 90 of class 0, 10 of class 1: a plain 20 % cut could miss class 1.
        let labels: Vec<u32> = (0..100).map(|i| u32::from(i % 10 == 3)).collect();
        let d = Dataset {
            features: (0..100).map(|i| i as f32).collect(),
            labels: labels.clone(),
            dim: 1,
            classes: 2,
        };
        let (train, val) = d.clone().stratified_split(0.2, 7).unwrap();
        assert_eq!((train.len(), val.len()), (80, 20));
        let ones = |s: &Dataset| s.labels.iter().filter(|&&l| l == 1).count();
        assert_eq!((ones(&train), ones(&val)), (8, 2));
        // Every example lands in exactly one set, rows intact, order kept.
        let mut all: Vec<f32> = train.features.iter().chain(&val.features).copied().collect();
        assert!(train.features.windows(2).all(|w| w[0] < w[1]));
        all.sort_by(f32::total_cmp);
        assert_eq!(all, d.features);
        for (x, l) in val.features.iter().zip(&val.labels) {
            assert_eq!(labels[*x as usize], *l);
        }
        // The seed decides; the same seed gives the same split.
        assert_eq!(d.clone().stratified_split(0.2, 7).unwrap().1, val);
        assert_ne!(d.clone().stratified_split(0.2, 8).unwrap().1, val);
        for bad in [0.0, 1.0, -0.5, f64::NAN, 0.001] {
            assert!(d.clone().stratified_split(bad, 7).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_csv_alone_has_no_held_out_set_and_test_or_val_split_give_one() {
        let path = tmp("heldout.csv");
        let rows: String = (0..40).map(|i| format!("{},{},{}\n", i % 2, i, -i)).collect();
        std::fs::write(&path, rows).unwrap();
        let spec = path.to_str().unwrap();
        let alone = load(spec, None, None, 1).unwrap();
        assert_eq!(
            (alone.kind.clone(), alone.held_out.is_none(), alone.train.len()),
            (HeldOut::None, true, 40)
        );
        assert_eq!(alone.kind.accuracy_column(), None);
        let val = load(spec, None, Some(0.25), 1).unwrap();
        assert_eq!(val.kind.accuracy_column(), Some("val_accuracy"));
        assert_eq!((val.train.len(), val.held_out.as_ref().unwrap().len()), (30, 10));
        let test_path = tmp("heldout-test.csv");
        std::fs::write(&test_path, "1,5,6\n0,7,8\n").unwrap();
        let test = load(spec, Some(&test_path), None, 1).unwrap();
        assert_eq!(
            (test.kind.clone(), test.train.len(), test.held_out.unwrap().len()),
            (HeldOut::Test, 40, 2)
        );
        std::fs::write(&test_path, "1,5\n").unwrap();
        let narrow = load(spec, Some(&test_path), None, 1).unwrap_err().to_string();
        assert!(narrow.contains("1 features, the training set has 2"), "{narrow}");
        let both = load(spec, Some(&test_path), Some(0.5), 1)
            .unwrap_err()
            .to_string();
        assert!(both.contains("not both"), "{both}");
        assert_eq!(load("synthetic", None, None, 1).unwrap().kind, HeldOut::Test);
    }

    #[test]
    fn synthetic_is_reproducible() {
        assert_eq!(synthetic(50, 3, 4, 7), synthetic(50, 3, 4, 7));
        assert_ne!(synthetic(50, 3, 4, 7), synthetic(50, 3, 4, 8));
    }
}
