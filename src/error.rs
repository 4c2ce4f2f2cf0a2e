//! The one error type of the library.

use thiserror::Error;

/// Everything that can go wrong in a `ringreduce` call.
///
/// Library code never panics on user input: every public entry point returns
/// `Result<_, Error>`. Failures *inside* MPI itself are not reported here:
/// under rsmpi's default error handler (`MPI_ERRORS_ARE_FATAL`) they abort
/// the whole job with MPI's own message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The send and receive buffers of an out-of-place all-reduce differ in length.
    #[error("send buffer has {send} elements but receive buffer has {recv}")]
    LengthMismatch {
        /// Elements in the send buffer.
        send: usize,
        /// Elements in the receive buffer.
        recv: usize,
    },
    /// A peer sent a message whose size differs from what this rank expected:
    /// the ranks called the collective with different counts or types.
    #[error("rank {rank} expected {expected} bytes from rank {from} but received {got}")]
    MessageSize {
        /// The receiving rank.
        rank: usize,
        /// The sending rank.
        from: usize,
        /// Bytes this rank expected.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// A message longer than the receive buffer reached `rank` from
    /// `from`: the ranks called the collective with different counts or
    /// types, with the call checks off (the MPI transport cannot tell how
    /// long the message was: MPI cuts it off).
    #[error("rank {rank} received from rank {from} a message longer than its {capacity}-byte buffer (the ranks passed different counts or types)")]
    Truncated {
        /// The receiving rank.
        rank: usize,
        /// The sending rank.
        from: usize,
        /// Bytes the receive had room for.
        capacity: usize,
    },
    /// A wait made no progress for the stall timeout: the in-process
    /// [`Local`](crate::Local) transport's report (the MPI transport
    /// instead names the ranks behind and aborts the job). The wait's
    /// requests are withdrawn.
    #[error(
        "{label} #{call}: rank {rank} received nothing for {secs} s (a rank has not joined, or stalled)"
    )]
    Stalled {
        /// The waiting rank.
        rank: usize,
        /// The call it waited in (`all_reduce`).
        label: String,
        /// That call's number.
        call: u64,
        /// The timeout, in seconds.
        secs: String,
    },
    /// Ranks made different collective calls: another collective, or an
    /// all-reduce with another count, element type, op or algorithm, or at
    /// another call number. Found by the call check before any data moved;
    /// every rank returns the same error.
    #[error("{what} #{call}: {detail}")]
    Mismatch {
        /// The collective rank 0 called (`all_reduce`, `broadcast`, …).
        what: &'static str,
        /// The call number on rank 0 (calls are numbered from 1).
        call: u64,
        /// Which ranks passed what.
        detail: String,
    },
    /// A rank number outside `0..size` was passed to a transport.
    #[error("rank {rank} is out of range for a communicator of size {size}")]
    InvalidRank {
        /// The offending rank.
        rank: usize,
        /// The communicator size.
        size: usize,
    },
    /// The transport failed, e.g. a thread of the `Local` transport died.
    #[error("transport failure on rank {rank}: {reason}")]
    Transport {
        /// The rank that observed the failure.
        rank: usize,
        /// What happened.
        reason: String,
    },
    /// Another rank failed a step every rank had to pass (its error, as text).
    #[error("rank {rank}: {reason}")]
    Remote {
        /// The first rank that failed.
        rank: usize,
        /// Its error message.
        reason: String,
    },
    /// A name that does not parse as an algorithm, element type or reduce op.
    #[error("unknown {kind} `{name}` (expected one of: {expected})")]
    UnknownName {
        /// "algorithm", "dtype" or "op".
        kind: &'static str,
        /// The name that was given.
        name: String,
        /// The accepted names, comma-separated.
        expected: String,
    },
    /// A data file that cannot be read or is not in the expected format.
    #[error("{path}: {reason}")]
    Data {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Training diverged: a loss or gradient that is not finite.
    #[error("non-finite {what} at epoch {epoch}, step {step}{}", rank.map(|r| format!(" (first on rank {r})")).unwrap_or_default())]
    NonFinite {
        /// "loss" or "gradient".
        what: &'static str,
        /// Epoch (1-based).
        epoch: usize,
        /// Step within the epoch (1-based).
        step: usize,
        /// The first rank that saw it, when known.
        rank: Option<usize>,
    },
    /// A value outside its valid range (sizes, counts, rank counts, …).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// `Result` with [`Error`](enum@Error) as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// "rank 3", "ranks 0-2, 5": a sorted rank list with runs collapsed.
pub(crate) fn rank_list(ranks: &[usize]) -> String {
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ranks.len() {
        let mut j = i;
        while j + 1 < ranks.len() && ranks[j + 1] == ranks[j] + 1 {
            j += 1;
        }
        runs.push(if j > i + 1 {
            format!("{}-{}", ranks[i], ranks[j])
        } else if j == i + 1 {
            format!("{}, {}", ranks[i], ranks[j])
        } else {
            ranks[i].to_string()
        });
        i = j + 1;
    }
    let noun = if ranks.len() == 1 { "rank" } else { "ranks" };
    format!("{noun} {}", runs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_lists() {
        assert_eq!(rank_list(&[3]), "rank 3");
        assert_eq!(rank_list(&[0, 1]), "ranks 0, 1");
        assert_eq!(rank_list(&[0, 1, 2, 5, 7, 8, 9]), "ranks 0-2, 5, 7-9");
    }
}
