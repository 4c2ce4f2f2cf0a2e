//! The shortest honest ringreduce program: all-reduce a gradient-sized buffer
//! with the ring and check the answer.
//!
//! ```sh
//! cargo build --release --example allreduce
//! mpirun -n 4 target/release/examples/allreduce
//! ```
use ringreduce::{Algorithm, Group, ReduceOp};

fn main() -> Result<(), ringreduce::Error> {
    // Open MPI settings the library runs best with, unless set (before MPI starts).
    ringreduce::transport::set_mpi_defaults();
    let universe = ringreduce::mpi::initialize().expect("MPI is already initialised");
    // A private duplicate of the world communicator, settings from the environment.
    let group = Group::mpi(&universe.world())?;
    let (rank, size) = (group.rank(), group.size());

    // A "gradient" of 1M floats (4 MiB); rank r contributes r + 1 everywhere.
    let mut grad = vec![(rank + 1) as f32; 1 << 20];
    let start = std::time::Instant::now();
    group.all_reduce_in_place(&mut grad, ReduceOp::Avg, Algorithm::Ring)?;
    let took = start.elapsed();

    // The mean of 1..=p is (p + 1) / 2 — exact in f32 for these sizes.
    let want = (size + 1) as f32 / 2.0;
    assert!(grad.iter().all(|&g| g == want), "rank {rank}: wrong average");
    if rank == 0 {
        println!(
            "ring all-reduce (avg) of {} f32 over {size} ranks: every element = {want} ({:.2} ms)",
            grad.len(),
            took.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
