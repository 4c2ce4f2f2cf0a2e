//! The thread transport: p ranks as threads of one process.

use std::sync::mpsc::{channel, Receiver, Sender};

use super::{check_peer, Transport};
use crate::check::{CallChecks, CheckConfig};
use crate::cost::Tuning;
use crate::error::{Error, Result};

/// Creates groups of in-process ranks connected by channels.
///
/// Each ordered pair of ranks has its own unbounded channel, so sends never
/// block and messages between a pair arrive in order. If a rank's thread
/// ends (or panics) its peers' pending receives fail with
/// [`Error::Transport`] instead of hanging.
///
/// # Examples
/// ```
/// use ringreduce::{all_reduce_in_place, Algorithm, Local, ReduceOp, Transport};
/// let sums = Local::run(4, |t| {
///     let mut v = vec![t.rank() as f32 + 1.0; 10];
///     all_reduce_in_place(&t, &mut v, ReduceOp::Sum, Algorithm::Ring).unwrap();
///     v[0]
/// });
/// assert_eq!(sums, vec![10.0; 4]);
/// ```
pub struct Local;

impl Local {
    /// Creates the `size` endpoints of one group; endpoint `i` is rank `i`.
    /// `Auto` uses the built-in [`Tuning`] (the environment is not read).
    pub fn endpoints(size: usize) -> Vec<LocalEndpoint> {
        Local::endpoints_with(size, Tuning::default())
    }

    /// Like [`Local::endpoints`], with the given tuning on every rank.
    pub fn endpoints_with(size: usize, tuning: Tuning) -> Vec<LocalEndpoint> {
        Local::endpoints_configured(size, tuning, CheckConfig::default())
    }

    fn endpoints_configured(size: usize, tuning: Tuning, checks: CheckConfig) -> Vec<LocalEndpoint> {
        // senders[src][dst] and receivers[dst][src]
        let mut senders: Vec<Vec<Sender<Vec<u8>>>> = (0..size).map(|_| Vec::with_capacity(size)).collect();
        let mut receivers: Vec<Vec<Receiver<Vec<u8>>>> =
            (0..size).map(|_| Vec::with_capacity(size)).collect();
        for src_senders in senders.iter_mut() {
            for dst_receivers in receivers.iter_mut() {
                let (tx, rx) = channel();
                src_senders.push(tx);
                dst_receivers.push(rx);
            }
        }
        senders
            .into_iter()
            .zip(receivers)
            .enumerate()
            .map(|(rank, (to, from))| LocalEndpoint {
                rank,
                size,
                to,
                from,
                tuning,
                checks: CallChecks::new(checks),
            })
            .collect()
    }

    /// Runs `f` on `size` threads, one per rank, and returns their results
    /// in rank order.
    ///
    /// # Panics
    /// Re-raises a panic of any rank's thread.
    pub fn run<R, F>(size: usize, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(LocalEndpoint) -> R + Sync,
    {
        Local::run_with(size, Tuning::default(), f)
    }

    /// Like [`Local::run`], with the given tuning on every rank.
    pub fn run_with<R, F>(size: usize, tuning: Tuning, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(LocalEndpoint) -> R + Sync,
    {
        Local::spawn(Local::endpoints_with(size, tuning), f)
    }

    /// Like [`Local::run`], with the given call checks on every rank.
    pub fn run_checked<R, F>(size: usize, checks: CheckConfig, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(LocalEndpoint) -> R + Sync,
    {
        Local::spawn(Local::endpoints_configured(size, Tuning::default(), checks), f)
    }

    fn spawn<R, F>(endpoints: Vec<LocalEndpoint>, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(LocalEndpoint) -> R + Sync,
    {
        let f = &f;
        std::thread::scope(|s| {
            let handles: Vec<_> = endpoints.into_iter().map(|ep| s.spawn(move || f(ep))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }
}

/// One rank of a [`Local`] group. Move it to the thread that plays the rank.
pub struct LocalEndpoint {
    rank: usize,
    size: usize,
    to: Vec<Sender<Vec<u8>>>,
    from: Vec<Receiver<Vec<u8>>>,
    tuning: Tuning,
    checks: CallChecks,
}

impl LocalEndpoint {
    fn closed(&self, peer: usize) -> Error {
        Error::Transport {
            rank: self.rank,
            reason: format!("rank {peer} has left the group"),
        }
    }
}

impl Transport for LocalEndpoint {
    fn rank(&self) -> usize {
        self.rank
    }

    fn tuning(&self) -> Tuning {
        self.tuning
    }

    fn checks(&self) -> Option<&CallChecks> {
        Some(&self.checks)
    }

    fn size(&self) -> usize {
        self.size
    }

    fn send_bytes(&self, buf: &[u8], dest: usize) -> Result<()> {
        check_peer(dest, self.size)?;
        self.to[dest].send(buf.to_vec()).map_err(|_| self.closed(dest))
    }

    fn recv_bytes(&self, buf: &mut [u8], src: usize) -> Result<()> {
        let got = self.recv_bytes_upto(buf, src)?;
        if got != buf.len() {
            return Err(Error::MessageSize {
                rank: self.rank,
                from: src,
                expected: buf.len(),
                got,
            });
        }
        Ok(())
    }

    fn recv_bytes_upto(&self, buf: &mut [u8], src: usize) -> Result<usize> {
        check_peer(src, self.size)?;
        let msg = self.from[src].recv().map_err(|_| self.closed(src))?;
        if msg.len() > buf.len() {
            return Err(Error::MessageSize {
                rank: self.rank,
                from: src,
                expected: buf.len(),
                got: msg.len(),
            });
        }
        buf[..msg.len()].copy_from_slice(&msg);
        Ok(msg.len())
    }

    fn sendrecv_bytes_upto(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<usize> {
        self.send_bytes(send, dest)?;
        self.recv_bytes_upto(recv, src)
    }

    fn sendrecv_bytes(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<()> {
        // Sends never block here, so send-then-receive cannot deadlock.
        self.send_bytes(send, dest)?;
        self.recv_bytes(recv, src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_exchange_and_errors() {
        let out = Local::run(3, |t| {
            let right = (t.rank() + 1) % 3;
            let left = (t.rank() + 2) % 3;
            let mut got = [0i32; 2];
            t.sendrecv(&[t.rank() as i32; 2], right, &mut got, left).unwrap();
            let bad = t.send(&[1u8], 7).unwrap_err();
            assert_eq!(bad, Error::InvalidRank { rank: 7, size: 3 });
            got[0]
        });
        assert_eq!(out, vec![2, 0, 1]);
    }

    #[test]
    fn wrong_length_and_dead_peer_are_errors() {
        let out = Local::run(2, |t| {
            if t.rank() == 0 {
                t.send(&[1.0f32; 3], 1).unwrap();
                None
            } else {
                let mut buf = [0f32; 4];
                let e1 = t.recv(&mut buf, 0).unwrap_err();
                // rank 0 has returned and dropped its endpoint by now or soon:
                let e2 = t.recv(&mut buf, 0).unwrap_err();
                Some((e1, e2))
            }
        });
        let (e1, e2) = out[1].clone().unwrap();
        assert_eq!(
            e1,
            Error::MessageSize {
                rank: 1,
                from: 0,
                expected: 16,
                got: 12
            }
        );
        assert!(matches!(e2, Error::Transport { rank: 1, .. }), "{e2:?}");
    }
}
