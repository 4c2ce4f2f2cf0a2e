//! The Hogwild! store's price in one thread: a pass of serial SGD with
//! the parameters in relaxed `AtomicU32`s (the lock-free store every
//! schedule shares) against the same pass on plain `f32`s (`Cell<f32>`,
//! the single-threaded baseline), on the sparse SVM (RCV1's shape, scaled)
//! and on matrix completion. Both passes run the same generic code and
//! produce the same bits (tested in the library); only the store differs.
//!
//! ```sh
//! cargo bench --bench hogwild
//! ```

use std::cell::Cell;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringreduce::hogwild::{self, libsvm, Completion, Loss, Problem, Ratings, SparseLinear, Store};

fn pass<P: Problem>(c: &mut Criterion, name: &str, p: &P) {
    let mut group = c.benchmark_group("hogwild_serial_pass");
    let examples: Vec<u32> = (0..p.examples() as u32).collect();
    group.throughput(Throughput::Elements(examples.len() as u64));
    let init = p.init(1);
    let step = 1e-3;
    group.bench_function(BenchmarkId::new(name, "atomic_relaxed"), |b| {
        let w = Store::from_slice(&init);
        b.iter(|| hogwild::serial_pass(p, &w, &examples, step))
    });
    group.bench_function(BenchmarkId::new(name, "plain_f32"), |b| {
        let w: Vec<Cell<f32>> = init.iter().copied().map(Cell::new).collect();
        b.iter(|| hogwild::serial_pass(p, &w[..], &examples, step))
    });
    group.finish();
}

fn passes(c: &mut Criterion) {
    // 20k examples of RCV1's 47k features × 80 nonzeros, power law 0.65.
    let svm = SparseLinear::new(
        libsvm::synthetic(20_000, 47_000, 80, 0.65, 0.02, 7),
        Loss::Hinge,
        1e-4,
    )
    .expect("±1 labels");
    pass(c, "svm_20k_x_47k_nnz80", &svm);
    let (train, _) = Ratings::synthetic(2_000, 2_000, 5, 100_000, 1, 0.01, 7).expect("valid sizes");
    let mc = Completion::new(train, 5, 1e-3).expect("valid rank");
    pass(c, "mc_2k_x_2k_rank5", &mc);
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = passes
}
criterion_main!(benches);
