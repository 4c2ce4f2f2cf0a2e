//! Single-process hot paths: the local reduce kernels and all-reduce over
//! the thread transport. Collectives under MPI are timed by a binary under
//! `mpirun`, not criterion (its per-process iteration counts would deadlock).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringreduce::half::{bf16, f16};
use ringreduce::{all_reduce_in_place, Algorithm, Element, Local, Order, ReduceOp};

const LEN: usize = 1 << 18;

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
    let mut group = c.benchmark_group("memcpy");
    group.throughput(Throughput::Bytes((LEN * 4) as u64));
    let src = vec![1.0f32; LEN];
    let mut dst = vec![0.0f32; LEN];
    group.bench_function("f32", |b| b.iter(|| dst.copy_from_slice(&src)));
    group.finish();
}

fn local_all_reduce(c: &mut Criterion) {
    let mut group = c.benchmark_group("local_all_reduce");
    group.sample_size(10);
    for p in [2usize, 4] {
        for algorithm in Algorithm::CONCRETE {
            group.bench_function(BenchmarkId::new(format!("{algorithm}/p{p}"), 1 << 16), |b| {
                b.iter(|| {
                    Local::run(p, |t| {
                        let mut v = vec![1.0f32; 1 << 16];
                        all_reduce_in_place(&t, &mut v, ReduceOp::Sum, algorithm).unwrap();
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, kernels, local_all_reduce);
criterion_main!(benches);
