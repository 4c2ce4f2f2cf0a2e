//! What happens when ranks get a collective wrong: run a mistake on purpose
//! and watch the call checks (`ringreduce::check`) stop it.
//!
//! ```sh
//! cargo build --release --example faults
//! # the last rank passes 1000 elements, the others 1024: every rank gets
//! # "all_reduce #1: rank 3 passed 1000 f32 sum ring, ranks 0-2 passed 1024 f32 sum ring"
//! mpirun -n 4 target/release/examples/faults mismatch
//! # rank 1 passes 16128 f32 to a butterfly (the largest call that rides in
//! # the call check), the others 1: the same line, nothing written; the
//! # same with 262144 f32 and Rabenseifner
//! mpirun -n 4 target/release/examples/faults fused-mismatch [rabenseifner]
//! # rank 1 sends rank 0 12 bytes where it expects 8: an error naming rank 1
//! mpirun -n 2 target/release/examples/faults truncate
//! # rank 1 joins 10 s late; with a 2 s timeout the job is aborted with
//! # "rank 1 has not joined all_reduce #1 after 2 s"
//! RINGREDUCE_TIMEOUT=2 mpirun -n 2 target/release/examples/faults late 10
//! # 100000 all-reduces of 1 MiB: stop (kill -STOP) or kill a rank meanwhile
//! mpirun -n 2 target/release/examples/faults loop 100000
//! # two 1 GiB all-reduces with a 0.1 s timeout: progress, not a stall
//! RINGREDUCE_TIMEOUT=0.1 mpirun -n 2 target/release/examples/faults big 1024 2
//! ```
//! Exit status: 0 when every call succeeded, 2 when a call returned an
//! error (printed once, by rank 0); a stall aborts the job with status 3.
use std::process::ExitCode;
use std::time::Duration;

use ringreduce::mpi::traits::*;
use ringreduce::{Algorithm, Group, ReduceOp};

fn main() -> ExitCode {
    ringreduce::transport::set_mpi_defaults(); // before MPI starts
    let universe = ringreduce::mpi::initialize().expect("MPI is already initialised");
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);

    let result = Group::mpi(&world).and_then(|group| match args.first().map(String::as_str) {
        Some("mismatch") => {
            // The last rank gets the length wrong.
            let n = if rank + 1 == size { 1000 } else { 1024 };
            let mut grad = vec![1.0f32; n];
            group.all_reduce_in_place(&mut grad, ReduceOp::Sum, Algorithm::Ring)
        }
        Some("fused-mismatch") => {
            // Rank 1's call rides in the largest frame the call check has
            // (a butterfly's, or a whole Rabenseifner vector's), the others'
            // in the smallest; nobody's buffer is written.
            let (algorithm, most) = match args.get(1).map(String::as_str) {
                Some("rabenseifner") => (Algorithm::Rabenseifner, ringreduce::group::FUSE_MAX_RABENSEIFNER),
                _ => (Algorithm::Butterfly, ringreduce::group::FUSE_MAX),
            };
            let n = if rank == 1 { most / 4 } else { 1 };
            let mut grad = vec![rank as f32; n];
            let result = group.all_reduce_in_place(&mut grad, ReduceOp::Sum, algorithm);
            assert!(
                grad.iter().all(|&g| g == rank as f32),
                "rank {rank}: buffer written"
            );
            result
        }
        Some("truncate") => {
            // Rank 1 sends rank 0 12 bytes where it makes room for 8: the
            // transport's error, checks or not (they guard collectives).
            use ringreduce::Transport;
            let peer = 1 - rank.min(1);
            let send = vec![rank as u8; if rank == 1 { 12 } else { 8 }];
            let mut got = [0u8; 8];
            match rank {
                0 | 1 => group.transport().sendrecv_bytes(&send, peer, &mut got, peer),
                _ => Ok(()),
            }
        }
        Some("late") => {
            // Rank 1 is busy elsewhere before it joins.
            if rank == 1 {
                std::thread::sleep(Duration::from_secs(number(1, 10)));
            }
            let mut x = vec![rank as f64; 8];
            group.all_reduce_in_place(&mut x, ReduceOp::Sum, Algorithm::Butterfly)?;
            let want = (size * (size - 1) / 2) as f64;
            assert!(x.iter().all(|&v| v == want), "rank {rank}: wrong sum");
            Ok(())
        }
        Some("big") => {
            // CALLS butterfly all-reduces of MIB MiB: long transfers that
            // make progress all the time.
            let mut grad = vec![1.0f32; (number(1, 1024) as usize) << 18];
            for _ in 0..number(2, 2) {
                group.all_reduce_in_place(&mut grad, ReduceOp::Avg, Algorithm::Butterfly)?;
            }
            assert!(grad.iter().all(|&g| g == 1.0), "rank {rank}: wrong average");
            Ok(())
        }
        Some("loop") => {
            let mut grad = vec![1.0f32; 1 << 18];
            for _ in 0..number(1, 100_000) {
                group.all_reduce_in_place(&mut grad, ReduceOp::Avg, Algorithm::Ring)?;
            }
            Ok(())
        }
        _ => Err(ringreduce::Error::InvalidArgument {
            what: "mode",
            reason: "expected `mismatch`, `fused-mismatch [rabenseifner]`, `truncate`, `late SECS`, `big MIB CALLS` or `loop CALLS`"
                .into(),
        }),
    });
    match result {
        Ok(()) => {
            if rank == 0 {
                println!("faults: every call succeeded");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if rank == 0 {
                eprintln!("faults: {e}");
            }
            ExitCode::from(2)
        }
    }
}
