//! Single-process hot paths: the local reduce kernels (reported as GB/s of
//! the accumulator), 16-bit ↔ f32 conversion, all-reduce over the thread
//! transport, and cost-model evaluation. Collectives under MPI are timed by
//! `ringreduce bench` under `mpirun`, not criterion (its per-process
//! iteration counts would deadlock a collective).
//!
//! ```sh
//! cargo bench --bench kernels
//! ```

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringreduce::cost::{self, CostParams};
use ringreduce::half::slice::HalfFloatSliceExt;
use ringreduce::half::{bf16, f16};
use ringreduce::{Algorithm, Element, Group, Order, ReduceOp};

/// 1 Mi elements: 4 MiB of f32, a gradient-sized buffer.
const LEN: usize = 1 << 20;

fn kernel<T: Element>(c: &mut Criterion, name: &str, one: T) {
    let mut group = c.benchmark_group("reduce_kernel");
    group.throughput(Throughput::Bytes((LEN * std::mem::size_of::<T>()) as u64));
    let src = vec![one; LEN];
    let mut acc = vec![one; LEN];
    for op in [ReduceOp::Sum, ReduceOp::Max] {
        group.bench_function(BenchmarkId::new(format!("{name}/{op}"), LEN), |b| {
            b.iter(|| T::reduce(op, &mut acc, &src, Order::AccFirst))
        });
    }
    group.finish();
}

fn kernels(c: &mut Criterion) {
    kernel(c, "f32", 1.0f32);
    kernel(c, "f64", 1.0f64);
    kernel(c, "f16", f16::ONE);
    kernel(c, "bf16", bf16::ONE);
    kernel(c, "i32", 1i32);
    kernel(c, "u8", 1u8);
    // The yardstick: a plain copy of the same bytes as the f32 kernel.
    let mut group = c.benchmark_group("memcpy");
    group.throughput(Throughput::Bytes((LEN * 4) as u64));
    let src = vec![1.0f32; LEN];
    let mut dst = vec![0.0f32; LEN];
    group.bench_function(BenchmarkId::new("f32", LEN), |b| {
        b.iter(|| dst.copy_from_slice(&src))
    });
    group.finish();
}

fn conversions(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert");
    group.throughput(Throughput::Elements(LEN as u64));
    let wide: Vec<f32> = (0..LEN).map(|i| i as f32 * 0.001).collect();
    let mut narrow16 = vec![f16::ZERO; LEN];
    let mut narrowb = vec![bf16::ZERO; LEN];
    let mut back = vec![0f32; LEN];
    group.bench_function("f32_to_f16", |b| {
        b.iter(|| narrow16.convert_from_f32_slice(&wide))
    });
    group.bench_function("f16_to_f32", |b| {
        b.iter(|| narrow16.convert_to_f32_slice(&mut back))
    });
    group.bench_function("f32_to_bf16", |b| {
        b.iter(|| narrowb.convert_from_f32_slice(&wide))
    });
    group.bench_function("bf16_to_f32", |b| {
        b.iter(|| narrowb.convert_to_f32_slice(&mut back))
    });
    group.finish();
}

fn local_all_reduce(c: &mut Criterion) {
    let mut group = c.benchmark_group("local_all_reduce");
    group.sample_size(10);
    let k = 1 << 16;
    group.throughput(Throughput::Bytes((k * 4) as u64));
    for p in [2usize, 4, 8] {
        for algorithm in Algorithm::CONCRETE {
            group.bench_function(BenchmarkId::new(format!("{algorithm}/p{p}"), k), |b| {
                b.iter(|| {
                    Group::local(p, |g| {
                        let mut v = vec![1.0f32; k];
                        g.all_reduce_in_place(&mut v, ReduceOp::Sum, algorithm).unwrap();
                    })
                })
            });
        }
    }
    group.finish();
}

fn cost_model(c: &mut Criterion) {
    let params = CostParams::default();
    c.bench_function("cost/select_p64_4M", |b| {
        b.iter(|| cost::select(black_box(64), black_box(1 << 20), 4, &params))
    });
    c.bench_function("cost/ring_p1000", |b| {
        b.iter(|| cost::cost(Algorithm::Ring, black_box(1000), black_box(12345), 4))
    });
}

criterion_group! {
    name = benches;
    // No HTML charts: this crate's plotters build draws text with fonts it
    // registers itself, which criterion's charts would not find.
    config = Criterion::default().without_plots();
    targets = kernels, conversions, local_all_reduce, cost_model
}
criterion_main!(benches);
