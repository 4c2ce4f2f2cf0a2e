//! The transport's non-blocking primitives and the group's collectives on
//! real MPI. Each test launches this test binary itself under `mpirun`,
//! running only that test on every rank (a rank knows it is one by the
//! launcher's environment).

mod common;

use std::time::Duration;

use common::*;
use ringreduce::transport::{AnySource, Transport};
use ringreduce::{Error, Group, Mpi};

/// Whether this process is a rank started by mpirun.
fn rank_of_a_job() -> bool {
    std::env::var_os("OMPI_COMM_WORLD_SIZE").is_some()
}

/// Where the ranks of a launched test leave a file each when their part passed.
const DONE_DIR: &str = "RINGREDUCE_TEST_DONE_DIR";

/// Runs test `name` of this binary on `ranks` ranks; fails with the ranks'
/// output if any rank fails or any rank did not get to the end of the test.
fn launch(name: &str, ranks: usize) {
    let me = std::env::current_exe().expect("test binary path");
    let dir = std::env::temp_dir().join(format!("ringreduce-{name}-{ranks}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let args = ["--exact", name, "--nocapture", "--test-threads", "1"];
    let mut cmd = mpirun(ranks, &me, &args);
    cmd.env(DONE_DIR, &dir);
    let out = run_bounded(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{name} at -n {ranks}:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let done = std::fs::read_dir(&dir).unwrap().count();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        done,
        ranks,
        "{name} at -n {ranks}: only {done} ranks finished:\n{}",
        stdout(&out)
    );
}

/// Records that this rank got to the end of its test.
fn finished(rank: usize) {
    let dir = std::env::var_os(DONE_DIR).expect("launched by `launch`");
    std::fs::write(std::path::Path::new(&dir).join(rank.to_string()), b"ok").unwrap();
}

#[test]
fn nonblocking_primitives_and_any_source_on_mpi() {
    if !rank_of_a_job() {
        return launch("nonblocking_primitives_and_any_source_on_mpi", 4);
    }
    let universe = ringreduce::mpi::initialize().expect("MPI initialises once");
    let t = Mpi::new(&universe.world());
    let (p, r) = (t.size(), t.rank());
    assert_eq!(p, 4);
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);

    // Both neighbours at once, local work while the bytes travel.
    let to_right = vec![r as u8; 100_000];
    let to_left = vec![100 + r as u8; 3];
    let (mut from_left, mut from_right) = (vec![0u8; 100_000], vec![0u8; 3]);
    let (sum, got_left, got_right) = t
        .scope(|s| {
            let a = s.recv(&mut from_left, left)?;
            let b = s.recv(&mut from_right, right)?;
            let _ = s.send(&to_right, right)?; // completed when the scope ends
            let c = s.send(&to_left, left)?;
            let sum: u64 = (0..100_000u64).sum(); // overlapped computation
                                                  // Poll one receive with test until it completes.
            let mut pending = b;
            let right_msg = loop {
                match s.test_recv(pending)? {
                    Ok(done) => break (done.done.peer, done.data.to_vec()),
                    Err(again) => pending = again,
                }
            };
            let left_msg = s.wait_recv(a)?;
            s.wait_send(c)?;
            Ok((
                sum,
                (left_msg.done.peer, left_msg.data.len(), left_msg.data[0]),
                right_msg,
            ))
        })
        .unwrap();
    assert_eq!(sum, 4_999_950_000);
    assert_eq!(got_left, (left, 100_000, left as u8));
    assert_eq!(got_right, (right, vec![100 + right as u8; 3]));

    // Any source with tags: every other rank sends tag 5 then tag 7; rank 0
    // takes the tag-7 messages first, from whoever sends first, then tag 5.
    if r == 0 {
        let mut buf = [0u8; 8];
        let mut from = Vec::new();
        for _ in 1..p {
            let d = t.recv_any(&mut buf, 7).unwrap();
            assert_eq!((d.tag, d.len, buf[0]), (7, 2, 70 + d.peer as u8));
            from.push(d.peer);
        }
        from.sort_unstable();
        assert_eq!(from, vec![1, 2, 3]);
        for q in 1..p {
            let mut one = [0u8; 8];
            let n = t
                .scope(|s| {
                    let h = s.recv_tagged(&mut one, q, 5)?;
                    Ok(s.wait_recv(h)?.done.len)
                })
                .unwrap();
            assert_eq!((n, one[0]), (1, 50 + q as u8));
        }
    } else {
        t.send_tagged(&[50 + r as u8], 0, 5).unwrap();
        t.send_tagged(&[70 + r as u8, 0], 0, 7).unwrap();
    }
    // Bad arguments are errors before anything starts.
    assert!(matches!(
        t.send_bytes(&[1], 9),
        Err(Error::InvalidRank { rank: 9, size: 4 })
    ));
    assert!(t.send_tagged(&[1], 0, 40_000).is_err());
    finished(r);
}

#[test]
fn group_collectives_on_mpi_at_1_2_3_5_8_ranks() {
    if !rank_of_a_job() {
        for ranks in [1, 2, 3, 5, 8] {
            launch("group_collectives_on_mpi_at_1_2_3_5_8_ranks", ranks);
        }
        return;
    }
    let universe = ringreduce::mpi::initialize().expect("MPI initialises once");
    let g = Group::mpi(&universe.world()).unwrap();
    let (p, r) = (g.size(), g.rank());
    for root in 0..p {
        let mut v: Vec<u64> = (0..5)
            .map(|i| if r == root { (root * 10 + i) as u64 } else { 0 })
            .collect();
        g.broadcast(&mut v, root).unwrap();
        assert_eq!(v, (0..5).map(|i| (root * 10 + i) as u64).collect::<Vec<_>>());
    }
    let mut all = vec![0f64; 2 * p];
    g.all_gather(&[r as f64, -(r as f64)], &mut all).unwrap();
    assert_eq!(
        all,
        (0..p).flat_map(|q| [q as f64, -(q as f64)]).collect::<Vec<_>>()
    );
    let varying = g.all_gather_varying(&vec![r as u32; r]).unwrap();
    assert_eq!(varying, (0..p).map(|q| vec![q as u32; q]).collect::<Vec<_>>());
    let text = g
        .broadcast_value(0, (r == 0).then_some(&"from rank 0".to_string()))
        .unwrap();
    assert_eq!(text, "from rank 0");
    g.barrier().unwrap();
    assert_eq!(g.agree(Ok(r)).unwrap(), r);
    let last = r + 1 == p;
    let verdict = g.agree(if last {
        Err(Error::InvalidArgument {
            what: "input",
            reason: "missing".into(),
        })
    } else {
        Ok(())
    });
    match verdict {
        Err(Error::InvalidArgument { .. }) if last => {}
        Err(Error::Remote { rank, reason }) if !last => {
            assert_eq!((rank, reason.as_str()), (p - 1, "invalid input: missing"));
        }
        other => panic!("rank {r}: {other:?}"),
    }
    // An argument error on one rank reaches every rank, and the next call
    // pairs with the next call everywhere (issue: it used to desynchronise).
    if p > 1 {
        let mut recv = vec![0.0f32; if r == 1 { 3 } else { 4 }];
        match g.all_reduce(
            &[1.0f32; 4],
            &mut recv,
            ringreduce::ReduceOp::Sum,
            ringreduce::Algorithm::Ring,
        ) {
            Err(Error::LengthMismatch { send: 4, recv: 3 }) if r == 1 => {}
            Err(Error::Remote { rank: 1, .. }) if r != 1 => {}
            other => panic!("rank {r}: {other:?}"),
        }
        let mut w = [1i32; 3];
        g.all_reduce_in_place(&mut w, ringreduce::ReduceOp::Sum, ringreduce::Algorithm::Ring)
            .unwrap();
        assert_eq!(w, [p as i32; 3]);
    }
    finished(r);
}

#[cfg(feature = "tools")]
/// Small integers, exact in every type and in any order of summation, so
/// ours and the vendor's must agree bit for bit.
fn small<T: Small>(rank: usize, i: usize) -> T {
    T::of(((rank * 7 + i * 3) % 5) as u8 + 1) // 1..=5
}

#[cfg(feature = "tools")]
/// The element types MPI has, made from a small integer.
trait Small: ringreduce::Element {
    fn of(v: u8) -> Self;
}

#[cfg(feature = "tools")]
macro_rules! small_from {
    ($($t:ty),*) => { $( impl Small for $t { fn of(v: u8) -> Self { v as $t } } )* };
}
#[cfg(feature = "tools")]
small_from!(f32, f64, i32, i64, u8);

#[cfg(feature = "tools")]
/// Ours against the vendor's `MPI_Reduce_scatter_block`, `MPI_Reduce` and
/// `MPI_Allgather` for every type and op MPI has.
fn against_the_vendor<T: Small>(g: &Group<Mpi>, vendor: &Mpi, n: usize) {
    use ringreduce::vendor::Vendor;
    use ringreduce::ReduceOp;
    let (p, r) = (g.size(), g.rank());
    let bytes = |v: &[T]| bytemuck::cast_slice::<T, u8>(v).to_vec();
    for op in ReduceOp::ALL {
        if !vendor.trusted(T::DTYPE, op) || (op == ReduceOp::Avg && T::EPSILON == 0.0) {
            continue; // integer means: ours is exact, the vendor's sum/p is not defined alike
        }
        let what = format!("{} {op} p={p} n={n}", T::DTYPE);
        let send: Vec<T> = (0..p * n).map(|i| small(r, i)).collect();
        let (mut ours, mut theirs) = (vec![T::zeroed(); n], vec![T::zeroed(); n]);
        g.reduce_scatter(&send, &mut ours, op).unwrap();
        assert!(vendor.reduce_scatter_block(
            T::DTYPE,
            op,
            bytemuck::cast_slice(&send),
            bytemuck::cast_slice_mut(&mut theirs)
        ));
        assert_eq!(
            bytes(&ours),
            bytes(&theirs),
            "{what}: reduce_scatter vs MPI_Reduce_scatter_block"
        );
        let root = n % p;
        let mine: Vec<T> = (0..n).map(|i| small(r, i)).collect();
        let mut ours = mine.clone();
        g.reduce(&mut ours, op, root).unwrap();
        let mut theirs = vec![T::zeroed(); n];
        assert!(vendor.reduce(
            T::DTYPE,
            op,
            bytemuck::cast_slice(&mine),
            bytemuck::cast_slice_mut(&mut theirs),
            root
        ));
        if r == root {
            assert_eq!(
                bytes(&ours),
                bytes(&theirs),
                "{what}: reduce vs MPI_Reduce to {root}"
            );
        } else {
            assert_eq!(
                bytes(&ours),
                bytes(&mine),
                "{what}: reduce changed a non-root's buffer"
            );
        }
    }
    // The flat all-gather: every rank's shard, against MPI_Allgather of blocks.
    let mut flat = vec![T::zeroed(); p * n];
    let mine = g.shard(flat.len());
    for i in mine.clone() {
        flat[i] = small(r, i);
    }
    g.all_gather_in_place(&mut flat).unwrap();
    for q in 0..p {
        for i in g.shard_of(q, flat.len()) {
            assert_eq!(
                bytes(&flat[i..i + 1]),
                bytes(&[small::<T>(q, i)]),
                "all_gather_in_place"
            );
        }
    }
    let block: Vec<T> = (0..n).map(|i| small(r, i)).collect();
    let (mut ours, mut theirs) = (vec![T::zeroed(); p * n], vec![T::zeroed(); p * n]);
    g.all_gather(&block, &mut ours).unwrap();
    assert!(vendor.all_gather(
        bytemuck::cast_slice(&block),
        bytemuck::cast_slice_mut(&mut theirs)
    ));
    assert_eq!(bytes(&ours), bytes(&theirs), "all_gather vs MPI_Allgather");
}

#[cfg(feature = "tools")]
#[test]
fn reduce_scatter_reduce_and_all_gather_match_the_vendor_at_1_2_3_5_8_ranks() {
    if !rank_of_a_job() {
        for ranks in [1, 2, 3, 5, 8] {
            launch(
                "reduce_scatter_reduce_and_all_gather_match_the_vendor_at_1_2_3_5_8_ranks",
                ranks,
            );
        }
        return;
    }
    let universe = ringreduce::mpi::initialize().expect("MPI initialises once");
    let world = universe.world();
    let g = Group::mpi(&world).unwrap();
    let vendor = Mpi::new(&world);
    let (p, r) = (g.size(), g.rank());
    // One node: every rank is local, the node is the world.
    assert_eq!((g.local_rank(), g.node_size()), (r, p));
    for n in [0, 1, 3, 1000] {
        against_the_vendor::<f32>(&g, &vendor, n);
        against_the_vendor::<f64>(&g, &vendor, n);
        against_the_vendor::<i32>(&g, &vendor, n);
        against_the_vendor::<i64>(&g, &vendor, n);
        against_the_vendor::<u8>(&g, &vendor, n);
    }
    // A sub-communicator: even and odd ranks, each its own group.
    use ringreduce::mpi::topology::{Color, Communicator};
    let half = world
        .split_by_color(Color::with_value((r % 2) as i32))
        .expect("a colour");
    let sub = Group::mpi(&half).unwrap();
    let members = (p + 1 - r % 2) / 2;
    assert_eq!((sub.size(), sub.rank()), (members, r / 2));
    let mut v = vec![r as i64; 6];
    let mine = sub
        .reduce_scatter_in_place(&mut v, ringreduce::ReduceOp::Sum)
        .unwrap();
    let want: i64 = (0..p).filter(|q| q % 2 == r % 2).map(|q| q as i64).sum();
    assert!(v[mine].iter().all(|&x| x == want));
    finished(r);
}
