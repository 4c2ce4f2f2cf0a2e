//! Groups over split communicators: the ranks of each node, and the ranks
//! with the same local index across nodes (the two levels of a
//! hierarchical all-reduce, built by hand). The shards of a reduce-scatter
//! within each node are then all-reduced across the nodes, and gathered
//! back within the node: every rank ends with the sum over all ranks
//! (nodes of equal size: a rank index of one node must exist on all).
//!
//! ```sh
//! cargo build --release --example split
//! mpirun -n 4 target/release/examples/split
//! ```
use ringreduce::mpi::topology::{Color, Communicator};
use ringreduce::{Algorithm, Group, ReduceOp};

fn main() -> Result<(), ringreduce::Error> {
    ringreduce::transport::set_mpi_defaults(); // before MPI starts
    let universe = ringreduce::mpi::initialize().expect("MPI is already initialised");
    let world = universe.world();
    let all = Group::mpi(&world)?;
    let (rank, size) = (all.rank(), all.size());
    // The node's ranks (MPI's shared-memory split), and one rank of each node per index.
    let node = Group::mpi(&world.split_shared(rank as i32))?;
    let rail_comm = world
        .split_by_color(Color::with_value(all.local_rank() as i32))
        .expect("every rank has a colour");
    let rail = Group::mpi(&rail_comm)?;

    let mut v: Vec<i64> = (0..1000).map(|i| (rank * 1000 + i) as i64).collect();
    let mine = node.reduce_scatter_in_place(&mut v, ReduceOp::Sum)?; // within the node
    rail.all_reduce_in_place(&mut v[mine], ReduceOp::Sum, Algorithm::default())?; // across nodes
    node.all_gather_in_place(&mut v)?; // within the node again

    let p = size as i64;
    let want = |i: usize| 1000 * p * (p - 1) / 2 + p * i as i64;
    assert!(
        v.iter().enumerate().all(|(i, &x)| x == want(i)),
        "rank {rank}: wrong sum"
    );
    if rank == 0 {
        println!(
            "{size} ranks: {} nodes of {} ranks; two-level sum of {} i64 is right on every rank",
            rail.size(),
            node.size(),
            v.len()
        );
    }
    Ok(())
}
