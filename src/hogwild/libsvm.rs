//! Sparse examples: CSR rows, the libsvm text format and a seeded
//! generator shaped like the Hogwild! paper's sparse problems.
//!
//! The libsvm format (RCV1, news20, real-sim ship in it) is one example per
//! line: `label index:value index:value …` with 1-based, strictly ascending
//! indices; `#` starts a comment, a `qid:` token is skipped, blank lines are
//! ignored. A gzip file (one or several members) is read as its contents.
//!
//! ```
//! use ringreduce::hogwild::libsvm;
//! let set = libsvm::parse_libsvm(b"+1 1:0.5 4:2\n-1 2:1 # a comment\n", "mem".as_ref())?;
//! assert_eq!((set.len(), set.dim(), set.nnz()), (2, 4, 3));
//! assert_eq!(set.row(0), (&[0u32, 3][..], &[0.5f32, 2.0][..]));
//! let mut text = Vec::new();
//! libsvm::write_libsvm(&set, &mut text)?;
//! assert_eq!(libsvm::parse_libsvm(&text, "mem".as_ref())?, set);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{BufRead, Read, Write};
use std::path::Path;

use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::files::{data_error, open_maybe_gz, MAX_FILE_BYTES};

/// Largest feature count (index) accepted: 2²⁶ (67 million; KDD 2010's
/// 29 million fit). A model holds several arrays of this length, so one
/// stray huge index must not make it allocate gigabytes.
pub const MAX_FEATURES: usize = 1 << 26;

/// Most examples in a set: examples are numbered with `u32`.
pub const MAX_EXAMPLES: usize = u32::MAX as usize;

/// Examples as compressed sparse rows: example `i` has the features
/// `indices[indptr[i]..indptr[i+1]]` (0-based, strictly ascending, below
/// `dim`) with the values at the same positions, and the label `labels[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseSet {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
    labels: Vec<f32>,
    dim: usize,
}

impl SparseSet {
    /// A set from its CSR arrays.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the arrays disagree in length, the
    /// row pointers do not rise from 0 to `indices.len()`, a row's indices
    /// are not strictly ascending or not below `dim`, a value or label is not
    /// finite, or `dim` exceeds [`MAX_FEATURES`].
    pub fn new(
        indptr: Vec<usize>,
        indices: Vec<u32>,
        values: Vec<f32>,
        labels: Vec<f32>,
        dim: usize,
    ) -> Result<SparseSet> {
        let bad = |reason: String| Error::InvalidArgument {
            what: "sparse set",
            reason,
        };
        if dim > MAX_FEATURES {
            return Err(bad(format!("{dim} features exceed the limit of {MAX_FEATURES}")));
        }
        if labels.len() > MAX_EXAMPLES {
            return Err(bad(format!(
                "{} examples exceed the limit of {MAX_EXAMPLES}",
                labels.len()
            )));
        }
        if indptr.len() != labels.len() + 1 {
            return Err(bad(format!(
                "{} row pointers for {} labels (need one more than labels)",
                indptr.len(),
                labels.len()
            )));
        }
        if indices.len() != values.len() {
            return Err(bad(format!(
                "{} indices but {} values",
                indices.len(),
                values.len()
            )));
        }
        if indptr[0] != 0 || indptr[labels.len()] != indices.len() {
            return Err(bad(format!(
                "row pointers must run from 0 to {} (the number of entries)",
                indices.len()
            )));
        }
        if let Some(i) = indptr.windows(2).position(|p| p[0] > p[1]) {
            return Err(bad(format!("row pointers fall at example {i}")));
        }
        for (i, p) in indptr.windows(2).enumerate() {
            let row = &indices[p[0]..p[1]];
            if let Some(k) = row.windows(2).position(|w| w[0] >= w[1]) {
                return Err(bad(format!(
                    "example {i}: index {} follows {}; indices must ascend strictly",
                    row[k + 1],
                    row[k]
                )));
            }
            if let Some(&j) = row.last().filter(|&&j| j as usize >= dim) {
                return Err(bad(format!("example {i}: index {j} is not below {dim} features")));
            }
            if let Some(v) = values[p[0]..p[1]].iter().find(|v| !v.is_finite()) {
                return Err(bad(format!("example {i}: value {v} is not finite")));
            }
        }
        if let Some(i) = labels.iter().position(|y| !y.is_finite()) {
            return Err(bad(format!("example {i}: label {} is not finite", labels[i])));
        }
        Ok(SparseSet {
            indptr,
            indices,
            values,
            labels,
            dim,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of stored (nonzero) entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Number of features: every index is below it.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The labels, one per example.
    pub fn labels(&self) -> &[f32] {
        &self.labels
    }

    /// Example `i`'s features and values.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.indptr[i]..self.indptr[i + 1];
        (&self.indices[r.clone()], &self.values[r])
    }

    /// The same examples over `dim` features (a test file whose highest
    /// index is below the training file's, or the other way round).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `dim` is below this set's, or above
    /// [`MAX_FEATURES`].
    pub fn with_dim(mut self, dim: usize) -> Result<SparseSet> {
        if dim < self.dim || dim > MAX_FEATURES {
            return Err(Error::InvalidArgument {
                what: "feature count",
                reason: format!("{dim} is below the set's {} or above {MAX_FEATURES}", self.dim),
            });
        }
        self.dim = dim;
        Ok(self)
    }

    /// Splits off the examples from `at` on as a second set over the same
    /// features (a held-out part of a generated set).
    ///
    /// # Panics
    /// When `at` is above [`SparseSet::len`].
    pub fn split_off(&mut self, at: usize) -> SparseSet {
        assert!(at <= self.len(), "split_off at {at} of {}", self.len());
        let start = self.indptr[at];
        let indptr = self.indptr[at..].iter().map(|&p| p - start).collect();
        self.indptr.truncate(at + 1);
        SparseSet {
            indptr,
            indices: self.indices.split_off(start),
            values: self.values.split_off(start),
            labels: self.labels.split_off(at),
            dim: self.dim,
        }
    }

    /// How many examples contain each feature (`d_u` of the paper's
    /// regulariser).
    pub fn feature_counts(&self) -> Vec<u32> {
        let mut c = vec![0u32; self.dim];
        for &j in &self.indices {
            c[j as usize] += 1;
        }
        c
    }

    /// The set with labels ±1 for a binary classifier: ±1 labels are kept,
    /// 0/1 labels become −1/+1.
    ///
    /// # Errors
    /// [`Error::Data`] naming `source` (the file) and the labels found when
    /// they are neither a subset of {−1, +1} nor of {0, 1}.
    pub fn to_binary(mut self, source: &Path) -> Result<SparseSet> {
        let mut seen: Vec<f32> = Vec::new();
        for &y in &self.labels {
            if !seen.contains(&y) {
                seen.push(y);
                if seen.len() > 3 {
                    break;
                }
            }
        }
        let pm = seen.iter().all(|&y| y == 1.0 || y == -1.0);
        let zo = seen.iter().all(|&y| y == 0.0 || y == 1.0);
        if !pm && !zo {
            seen.sort_by(f32::total_cmp);
            let list: Vec<String> = seen.iter().take(3).map(|y| y.to_string()).collect();
            let more = if seen.len() > 3 { ", …" } else { "" };
            return Err(data_error(
                source,
                format!(
                    "labels {}{more}: a binary classifier needs labels ±1 or 0/1",
                    list.join(", ")
                ),
            ));
        }
        if !pm {
            for y in &mut self.labels {
                *y = if *y == 0.0 { -1.0 } else { 1.0 };
            }
        }
        Ok(self)
    }
}

/// Parses libsvm text. `path` names the source in errors.
///
/// # Errors
/// [`Error::Data`] with the 1-based line number: a line that is not UTF-8,
/// a label or value that is not a finite number, a token without `:`, an
/// index that is 0, not a number, above [`MAX_FEATURES`] or not above the
/// previous one; and a file with no examples.
pub fn parse_libsvm(bytes: &[u8], path: &Path) -> Result<SparseSet> {
    parse_lines(bytes, path)
}

fn parse_lines(mut r: impl BufRead, path: &Path) -> Result<SparseSet> {
    let mut indptr = vec![0usize];
    let (mut indices, mut values, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut dim = 0usize;
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| data_error(path, e.to_string()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let at = |reason: String| data_error(path, format!("line {line_no}: {reason}"));
        let line = std::str::from_utf8(&buf).map_err(|_| at("not UTF-8 text".into()))?;
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut tokens = line.split_ascii_whitespace();
        let label = tokens.next().unwrap_or("");
        let y: f32 = label
            .parse()
            .ok()
            .filter(|y: &f32| y.is_finite())
            .ok_or_else(|| at(format!("label `{}` is not a finite number", clip(label))))?;
        let mut prev = 0u64;
        for tok in tokens {
            if tok.starts_with("qid:") {
                continue;
            }
            let (i, v) = tok
                .split_once(':')
                .ok_or_else(|| at(format!("expected index:value, found `{}`", clip(tok))))?;
            let idx: u64 = i
                .parse()
                .map_err(|_| at(format!("index `{}` is not a whole number", clip(i))))?;
            if idx == 0 {
                return Err(at("index 0: libsvm indices start at 1".into()));
            }
            if idx > MAX_FEATURES as u64 {
                return Err(at(format!("index {idx} exceeds the limit of {MAX_FEATURES}")));
            }
            if idx <= prev {
                return Err(at(format!(
                    "index {idx} follows {prev}; indices must ascend strictly"
                )));
            }
            let x: f32 = v.parse().ok().filter(|x: &f32| x.is_finite()).ok_or_else(|| {
                at(format!(
                    "value `{}` of index {idx} is not a finite number",
                    clip(v)
                ))
            })?;
            prev = idx;
            indices.push((idx - 1) as u32);
            values.push(x);
        }
        dim = dim.max(prev as usize);
        if labels.len() == MAX_EXAMPLES {
            return Err(at(format!("more than {MAX_EXAMPLES} examples")));
        }
        labels.push(y);
        indptr.push(indices.len());
    }
    if labels.is_empty() {
        return Err(data_error(path, "no examples (an empty libsvm file)"));
    }
    Ok(SparseSet {
        indptr,
        indices,
        values,
        labels,
        dim,
    })
}

/// At most 40 characters of a token, for an error message.
fn clip(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((k, _)) => format!("{}…", &s[..k]),
        None => s.to_string(),
    }
}

/// Reads a libsvm file, gunzipping it when it starts with the gzip magic.
///
/// # Errors
/// [`Error::Data`] naming the file: it cannot be opened, is not a regular
/// file, is larger than [`MAX_FILE_BYTES`] (also once decompressed), is
/// corrupt gzip, or has a bad line (see [`parse_libsvm`]).
pub fn load_libsvm(path: &Path) -> Result<SparseSet> {
    let (reader, what) = open_maybe_gz(path)?;
    let mut text = Vec::new();
    reader
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| data_error(path, format!("{what}{e}")))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(data_error(
            path,
            format!("more than {MAX_FILE_BYTES} bytes once decompressed"),
        ));
    }
    parse_lines(&text[..], path)
}

/// Writes `set` as libsvm text (1-based indices; numbers in Rust's
/// shortest round-trip form, so [`parse_libsvm`] reads back the same bits).
///
/// # Errors
/// The writer's error.
pub fn write_libsvm(set: &SparseSet, mut w: impl Write) -> std::io::Result<()> {
    for i in 0..set.len() {
        write!(w, "{}", set.labels[i])?;
        let (idx, val) = set.row(i);
        for (j, x) in idx.iter().zip(val) {
            write!(w, " {}:{}", j + 1, x)?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// A seeded synthetic binary classification set shaped like the sparse
/// problems of the Hogwild! paper (RCV1: 781k examples, 47k features, ~77
/// nonzeros each).
///
/// Each of the `n` examples draws `nnz` distinct features (at most `dim`)
/// from a power law: the feature of popularity rank r is drawn with weight
/// (r+1)^−`exponent`, so a few features appear in many examples (raising
/// Δ and ρ) and most in few; ranks map to feature ids by a seeded
/// permutation. Values are positive and each row has unit norm; the label
/// is the sign of ⟨w*, x⟩ for a random w*, flipped for a `flip` fraction of
/// examples. The same arguments give the same set on every machine.
///
/// # Panics
/// When `dim` is 0 or above [`MAX_FEATURES`], `n` above [`MAX_EXAMPLES`],
/// or `flip` is not in [0, 1].
pub fn synthetic(n: usize, dim: usize, nnz: usize, exponent: f64, flip: f64, seed: u64) -> SparseSet {
    assert!(
        (1..=MAX_FEATURES).contains(&dim),
        "synthetic: dim {dim} out of range"
    );
    assert!(
        (0.0..=1.0).contains(&flip),
        "synthetic: flip {flip} not in [0, 1]"
    );
    assert!(n <= MAX_EXAMPLES, "synthetic: {n} examples out of range");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // Cumulative popularity of ranks 0..dim.
    let mut cdf = Vec::with_capacity(dim);
    let mut total = 0.0f64;
    for r in 0..dim {
        total += ((r + 1) as f64).powf(-exponent);
        cdf.push(total);
    }
    let mut ids: Vec<u32> = (0..dim as u32).collect();
    for i in (1..dim).rev() {
        ids.swap(i, rng.gen_range(0..=i));
    }
    let truth: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let nnz = nnz.min(dim);
    let mut indptr = Vec::with_capacity(n + 1);
    indptr.push(0);
    let mut indices = Vec::with_capacity(n * nnz);
    let mut values = Vec::with_capacity(n * nnz);
    let mut labels = Vec::with_capacity(n);
    let mut row: Vec<(u32, f32)> = Vec::with_capacity(nnz);
    for _ in 0..n {
        row.clear();
        // Distinct draws; a dense corner (nnz close to dim under a steep
        // law) stops after a bounded number of tries with fewer features.
        let mut tries = 0;
        while row.len() < nnz && tries < 64 * nnz + 64 {
            tries += 1;
            let u = rng.gen::<f64>() * total;
            let r = cdf.partition_point(|&c| c <= u).min(dim - 1);
            let j = ids[r];
            if !row.iter().any(|&(k, _)| k == j) {
                row.push((j, rng.gen_range(0.1f32..1.0)));
            }
        }
        row.sort_unstable_by_key(|&(j, _)| j);
        let norm = row.iter().map(|&(_, x)| x * x).sum::<f32>().sqrt();
        let mut dot = 0.0f32;
        for &(j, x) in &row {
            let x = x / norm;
            dot += truth[j as usize] * x;
            indices.push(j);
            values.push(x);
        }
        let mut y = if dot >= 0.0 { 1.0 } else { -1.0 };
        if rng.gen::<f64>() < flip {
            y = -y;
        }
        labels.push(y);
        indptr.push(indices.len());
    }
    SparseSet {
        indptr,
        indices,
        values,
        labels,
        dim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("t.svm")
    }

    fn err(text: &str) -> String {
        parse_libsvm(text.as_bytes(), p()).unwrap_err().to_string()
    }

    #[test]
    fn parses_hand_written_text() {
        let text = "# header comment\n+1 qid:3 1:0.5 3:-2e-1\r\n\n-1\n0 2:7 10:1 # tail\n";
        let s = parse_libsvm(text.as_bytes(), p()).unwrap();
        assert_eq!(s.labels(), &[1.0, -1.0, 0.0]);
        assert_eq!(s.dim(), 10);
        assert_eq!(s.row(0), (&[0u32, 2][..], &[0.5f32, -0.2][..]));
        assert_eq!(s.row(1), (&[][..], &[][..]));
        assert_eq!(s.row(2), (&[1u32, 9][..], &[7.0f32, 1.0][..]));
        assert_eq!(s.feature_counts(), vec![1, 1, 1, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        let cases = [
            (
                "+1 1:1\nx 2:1\n",
                "t.svm: line 2: label `x` is not a finite number",
            ),
            (
                "+1 1:1\n+1 2:1\n-1 3\n",
                "line 3: expected index:value, found `3`",
            ),
            ("+1 0:1\n", "line 1: index 0: libsvm indices start at 1"),
            ("+1 a:1\n", "line 1: index `a` is not a whole number"),
            ("+1 -2:1\n", "line 1: index `-2` is not a whole number"),
            (
                "\n+1 3:1 2:1\n",
                "line 2: index 2 follows 3; indices must ascend strictly",
            ),
            ("+1 3:1 3:1\n", "line 1: index 3 follows 3"),
            (
                "+1 3:nan\n",
                "line 1: value `nan` of index 3 is not a finite number",
            ),
            ("+1 3:\n", "line 1: value `` of index 3 is not a finite number"),
            ("inf 3:1\n", "line 1: label `inf` is not a finite number"),
            ("+1 4294967296:1\n", "line 1: index 4294967296 exceeds the limit"),
            (
                "+1 67108865:1\n",
                "line 1: index 67108865 exceeds the limit of 67108864",
            ),
            ("# only a comment\n\n", "t.svm: no examples"),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.contains(want), "{text:?}: {got}");
        }
        let got = parse_libsvm(b"+1 1:1\n-1 2:\xff\n", p()).unwrap_err().to_string();
        assert!(got.contains("line 2: not UTF-8"), "{got}");
    }

    #[test]
    fn write_then_parse_is_the_identity_plain_and_gzipped() {
        let set = synthetic(300, 50, 7, 1.0, 0.1, 3);
        let mut text = Vec::new();
        write_libsvm(&set, &mut text).unwrap();
        assert_eq!(parse_libsvm(&text, p()).unwrap(), set);
        let dir = std::env::temp_dir().join(format!("ringreduce-svm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("a.svm");
        std::fs::write(&plain, &text).unwrap();
        assert_eq!(load_libsvm(&plain).unwrap(), set);
        // Two gzip members, split mid-line, as `cat a.gz b.gz` makes.
        let mut gz = Vec::new();
        for part in [&text[..1000], &text[1000..]] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            gz.extend(e.finish().unwrap());
        }
        let zipped = dir.join("a.svm.gz");
        std::fs::write(&zipped, &gz).unwrap();
        assert_eq!(load_libsvm(&zipped).unwrap(), set);
        // A truncated gzip stream is an error, not a short set.
        std::fs::write(&zipped, &gz[..gz.len() - 9]).unwrap();
        let e = load_libsvm(&zipped).unwrap_err().to_string();
        assert!(e.contains("a.svm.gz") && e.contains("corrupt gzip"), "{e}");
        let e = load_libsvm(&dir.join("missing.svm")).unwrap_err().to_string();
        assert!(e.contains("missing.svm"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_rejects_inconsistent_arrays() {
        let ok =
            |p: Vec<usize>, i: Vec<u32>, d| SparseSet::new(p, i.clone(), vec![1.0; i.len()], vec![1.0; 2], d);
        assert!(ok(vec![0, 1, 2], vec![0, 1], 2).is_ok());
        for (ptr, idx, dim, want) in [
            (vec![0, 1], vec![0], 2, "row pointers for 2 labels"),
            (vec![1, 1, 2], vec![0, 1], 2, "from 0 to 2"),
            (vec![0, 3, 2], vec![0, 1], 2, "fall at example 1"),
            (vec![0, 2, 2], vec![1, 0], 2, "index 0 follows 1"),
            (vec![0, 1, 2], vec![0, 2], 2, "index 2 is not below 2"),
        ] {
            let e = ok(ptr, idx, dim).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let e = SparseSet::new(vec![0, 1], vec![0], vec![f32::NAN], vec![1.0], 1).unwrap_err();
        assert!(e.to_string().contains("not finite"), "{e}");
    }

    #[test]
    fn binary_labels_are_mapped_or_refused() {
        let set =
            |labels: Vec<f32>| SparseSet::new(vec![0; labels.len() + 1], vec![], vec![], labels, 1).unwrap();
        assert_eq!(
            set(vec![1.0, -1.0]).to_binary(p()).unwrap().labels(),
            &[1.0, -1.0]
        );
        assert_eq!(
            set(vec![0.0, 1.0, 0.0]).to_binary(p()).unwrap().labels(),
            &[-1.0, 1.0, -1.0]
        );
        assert_eq!(set(vec![1.0, 1.0]).to_binary(p()).unwrap().labels(), &[1.0, 1.0]);
        let e = set(vec![2.0, 1.0, 3.0]).to_binary(p()).unwrap_err().to_string();
        assert_eq!(
            e,
            "t.svm: labels 1, 2, 3: a binary classifier needs labels ±1 or 0/1"
        );
        let e = set(vec![-1.0, 0.0, 1.0]).to_binary(p()).unwrap_err().to_string();
        assert!(e.contains("labels -1, 0, 1"), "{e}");
        assert!(set(vec![1.0]).with_dim(0).is_err());
        let mut all = synthetic(10, 30, 4, 1.0, 0.0, 1);
        let (whole, tail) = (all.clone(), all.split_off(7));
        assert_eq!((all.len(), tail.len(), tail.dim()), (7, 3, 30));
        assert_eq!(all.row(6), whole.row(6));
        assert_eq!(tail.row(0), whole.row(7));
        assert_eq!(tail.labels(), &whole.labels()[7..]);
        assert_eq!(set(vec![1.0]).with_dim(5).unwrap().dim(), 5);
    }

    #[test]
    fn synthetic_is_reproducible_and_follows_a_power_law() {
        let a = synthetic(4000, 1000, 20, 1.0, 0.05, 11);
        assert_eq!(a, synthetic(4000, 1000, 20, 1.0, 0.05, 11));
        assert_ne!(a, synthetic(4000, 1000, 20, 1.0, 0.05, 12));
        assert_eq!((a.len(), a.nnz()), (4000, 4000 * 20));
        for i in 0..a.len() {
            let n: f32 = a.row(i).1.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
        let mut c = a.feature_counts();
        c.sort_unstable_by(|x, y| y.cmp(x));
        // Per draw rank r has probability 1/((r+1)·H(1000)), H ≈ 7.49; 20
        // draws: rank 1 is in ~94 % of examples, rank 100 in ~2.7 %.
        assert!(c[0] > 3600, "{:?}", &c[..5]);
        assert!(c[99] < c[0] / 15 && c[99] > c[0] / 100, "{} {}", c[0], c[99]);
        assert!(c[900] < c[99] / 4, "{} {}", c[99], c[900]);
        // Uniform popularity (exponent 0): every feature in about 80 examples.
        let u = synthetic(4000, 1000, 20, 0.0, 0.0, 11).feature_counts();
        assert!(u.iter().all(|&k| (40..130).contains(&k)), "{:?}", u.iter().max());
        // Labels are mostly learnable: both classes present.
        let pos = a.labels().iter().filter(|&&y| y > 0.0).count();
        assert!((1000..3000).contains(&pos), "{pos}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_libsvm(&bytes, p());
        }

        #[test]
        fn libsvm_like_text_never_panics(text in "([-+0-9.e:# qid\\n\\r]|nan|inf){0,200}") {
            if let Ok(s) = parse_libsvm(text.as_bytes(), p()) {
                // Whatever parses is a valid set.
                let again = SparseSet::new(s.indptr.clone(), s.indices.clone(), s.values.clone(), s.labels.clone(), s.dim);
                proptest::prop_assert_eq!(again.unwrap(), s);
            }
        }
    }
}
