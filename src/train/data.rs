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

    /// Features of example `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }
}

fn data_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Largest data file (or IDX payload) read: 16 GiB.
pub const MAX_FILE_BYTES: u64 = 16 << 30;

/// Labels must be below this: a model has at most this many classes.
pub const MAX_CLASSES: usize = 1 << 16;

/// Opens a data file: a regular file of at most [`MAX_FILE_BYTES`].
fn open_data(path: &Path) -> Result<std::fs::File> {
    crate::files::open_regular(path, MAX_FILE_BYTES).map_err(|e| data_error(path, e.to_string()))
}

/// Reads an IDX file, gunzipping it when it starts with the gzip magic
/// (several concatenated gzip members too, as pigz and `cat a.gz b.gz`
/// write). The header is read first, and no more is decompressed than its
/// dimensions declare (plus one byte, to notice extra data).
fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let mut file = std::io::BufReader::new(open_data(path)?);
    let gz = std::io::BufRead::fill_buf(&mut file)
        .map_err(|e| data_error(path, e.to_string()))?
        .starts_with(&[0x1f, 0x8b]);
    if gz {
        parse_idx_from(
            flate2::bufread::MultiGzDecoder::new(file),
            path,
            "corrupt gzip data: ",
        )
    } else {
        parse_idx_from(file, path, "")
    }
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
    let find = |stem: &str| -> Result<PathBuf> {
        [dir.join(format!("{stem}.gz")), dir.join(stem)]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                data_error(
                    &dir.join(stem),
                    "missing (install Debian's dataset-fashion-mnist, or run scripts/setup.sh)",
                )
            })
    };
    let train = load_idx(
        &find("train-images-idx3-ubyte")?,
        &find("train-labels-idx1-ubyte")?,
    )?;
    let test = load_idx(&find("t10k-images-idx3-ubyte")?, &find("t10k-labels-idx1-ubyte")?)?;
    Ok((train, test))
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
/// it serves as both.
///
/// # Errors
/// Those of the loaders.
pub fn named(spec: &str, seed: u64) -> Result<(Dataset, Dataset)> {
    match spec {
        "fashion-mnist" => fashion_mnist(Path::new(FASHION_MNIST_DIR)),
        "synthetic" => Ok(synthetic(7000, 20, 5, seed).split(6000)),
        dir if Path::new(dir).is_dir() => fashion_mnist(Path::new(dir)),
        path => load_csv(Path::new(path)).map(|d| (d.clone(), d)),
    }
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
    fn synthetic_is_reproducible() {
        assert_eq!(synthetic(50, 3, 4, 7), synthetic(50, 3, 4, 7));
        assert_ne!(synthetic(50, 3, 4, 7), synthetic(50, 3, 4, 8));
    }
}
