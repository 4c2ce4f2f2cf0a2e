//! Non-blocking all-reduce: start several, compute meanwhile, wait — and
//! check each result against the blocking call bit for bit, for every
//! algorithm this group can run.
//!
//! ```sh
//! cargo build --release --example overlap
//! mpirun -n 4 target/release/examples/overlap
//! ```
use ringreduce::mpi::Threading;
use ringreduce::{Algorithm, Group, ReduceOp};

fn main() -> Result<(), ringreduce::Error> {
    // `--single`: initialise below MPI_THREAD_MULTIPLE (an error);
    // `mismatch`, `late`: a fault during a pending call.
    let single = std::env::args().any(|a| a == "--single");
    let level = if single {
        Threading::Single
    } else {
        Threading::Multiple
    };
    ringreduce::transport::set_mpi_defaults(); // before MPI starts
    let (universe, _) =
        ringreduce::mpi::initialize_with_threading(level).expect("MPI is already initialised");
    let group = Group::mpi(&universe.world())?;
    let overlap = match group.overlapped() {
        Ok(o) => o,
        Err(e) => {
            if group.rank() == 0 {
                eprintln!("overlap: {e}");
            }
            std::process::exit(2);
        }
    };
    let (rank, size) = (group.rank(), group.size());
    // Faults during a pending call: the thread's group checks its calls
    // and reports stalls as any group does.
    match std::env::args().nth(1).as_deref() {
        Some("mismatch") => {
            // The last rank gets the length wrong.
            let n = if rank + 1 == size { 1000 } else { 1024 };
            let pending = overlap.all_reduce_start(vec![1.0f32; n], ReduceOp::Sum, Algorithm::Ring);
            if let Err(e) = pending.wait() {
                if rank == 0 {
                    eprintln!("overlap: {e}");
                }
                drop(overlap);
                std::process::exit(2);
            }
            return Ok(());
        }
        Some("late") => {
            // Rank 1 starts its call long after the others.
            if rank == 1 {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
            overlap
                .all_reduce_start(vec![1.0f32; 1024], ReduceOp::Sum, Algorithm::Ring)
                .wait()?;
            return Ok(());
        }
        _ => {}
    }
    // Values whose sums depend on the order of the additions, so that a
    // different order would show in the bits.
    let data = |call: usize, n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i * 7919 + rank * 104_729 + call * 31) % 1000) as f32 * 1.37e-3 + 1.0 / (rank + 1) as f32
            })
            .collect()
    };
    let mut checked = 0;
    for algorithm in group.runnable(&Algorithm::CONCRETE) {
        // Three calls in flight at once, of different lengths and ops.
        let calls = [
            (1usize, ReduceOp::Sum),
            (1000, ReduceOp::Avg),
            (100_003, ReduceOp::Sum),
        ];
        let pending: Vec<_> = calls
            .iter()
            .enumerate()
            .map(|(c, &(n, op))| overlap.all_reduce_start(data(c, n), op, algorithm))
            .collect();
        // "Compute" while they run, asking now and then.
        let mut spins = 0u64;
        let mut first = pending.into_iter().collect::<Vec<_>>();
        while !first.iter_mut().all(|p| p.test()) {
            spins += 1;
            std::hint::black_box(spins);
            // Ranks may outnumber cores here: leave the core to the
            // communication threads between questions.
            std::thread::yield_now();
        }
        for (c, (p, &(n, op))) in first.into_iter().zip(&calls).enumerate() {
            let got = p.wait()?;
            let mut want = data(c, n);
            group.all_reduce_in_place(&mut want, op, algorithm)?;
            let (g, w): (&[u32], &[u32]) = (bytemuck::cast_slice(&got), bytemuck::cast_slice(&want));
            assert!(
                g == w,
                "rank {rank}: {algorithm} call {c}: the non-blocking result differs from the blocking one"
            );
            checked += 1;
        }
    }
    drop(overlap);
    if rank == 0 {
        println!(
            "overlap: {checked} non-blocking all-reduces at {size} ranks equal the blocking ones bit for bit"
        );
    }
    Ok(())
}
