//! The schedules of the group's other collectives, written against the
//! transport only: a binomial-tree broadcast and a ring all-gather of
//! blocks (equal or not). The group adds validation and call checks.

use crate::algorithms::ring_all_gather;
use crate::error::Result;
use crate::transport::Transport;

/// Broadcasts `buf` from `root` down a binomial tree (MPICH's): ⌈log2 p⌉
/// rounds, every rank receives once. Every rank passes a buffer of the same
/// length. Collective.
pub(crate) fn broadcast_bytes<C: Transport + ?Sized>(comm: &C, buf: &mut [u8], root: usize) -> Result<()> {
    let (p, r) = (comm.size(), comm.rank());
    // Ranks relative to the root, so the root is 0.
    let rel = (r + p - root) % p;
    let mut mask = 1;
    while mask < p {
        if rel & mask != 0 {
            // step log2(mask): take the data from the parent
            comm.recv_bytes(buf, (rel - mask + root) % p)?;
            break;
        }
        mask <<= 1;
    }
    mask >>= 1;
    while mask > 0 {
        if rel + mask < p {
            // hand it to the child of this level
            comm.send_bytes(buf, (rel + mask + root) % p)?;
        }
        mask >>= 1;
    }
    Ok(())
}

/// Ring all-gather: `out` holds p blocks, block i at
/// `offsets[i]..offsets[i + 1]`, this rank's own block already in place.
/// In step s every rank passes block (r − s) right and receives block
/// (r − s − 1) from the left: p − 1 rounds. Collective.
pub(crate) fn all_gather_blocks<C: Transport + ?Sized>(
    comm: &C,
    out: &mut [u8],
    offsets: &[usize],
) -> Result<()> {
    ring_all_gather(comm, out, &|i| offsets[i]..offsets[i + 1])
}
