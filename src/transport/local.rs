//! The thread transport: p ranks as threads of one process.
//!
//! Each rank has one inbox (a channel) that every rank sends into, and a
//! small matching engine as MPI has: receives are *posted* in order, an
//! arriving message goes to the first posted receive it matches (source and
//! tag), and a message nobody waits for yet is kept as *unexpected* until a
//! receive takes it. Messages are copied once into the channel; sends
//! complete at once.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, Sender};

use super::shm::{Segment, Shape};
use super::{valid_rank, valid_tag, valid_target, AnySource, Done, Progress, Tag, Transport};
use crate::error::{Error, Result};

/// Creates groups of in-process ranks connected by channels.
///
/// Sends never block, and between one pair of ranks messages of one tag
/// arrive in order. If a rank's thread ends (or panics) its endpoint tells
/// the others, whose receives from it fail with [`Error::Transport`]
/// instead of hanging.
///
/// # Examples
/// ```
/// use ringreduce::{Local, Transport};
/// let got = Local::run(3, |t| {
///     let (right, left) = ((t.rank() + 1) % 3, (t.rank() + 2) % 3);
///     let mut from_left = [0u32; 2];
///     t.sendrecv(&[t.rank() as u32; 2], right, &mut from_left, left).unwrap();
///     from_left[0]
/// });
/// assert_eq!(got, vec![2, 0, 1]);
/// ```
pub struct Local;

impl Local {
    /// Creates the `size` endpoints of one group; endpoint `i` is rank `i`.
    /// They share a [`Segment`], like MPI ranks on one node.
    pub fn endpoints(size: usize) -> Vec<LocalEndpoint> {
        Local::endpoints_on(&vec![0; size])
    }

    /// Endpoints without a shared segment: ranks as if each were on its own
    /// node, where everything travels as messages.
    pub fn endpoints_apart(size: usize) -> Vec<LocalEndpoint> {
        Local::endpoints_on(&(0..size).collect::<Vec<_>>())
    }

    /// Endpoints of `nodes` × `per_node` ranks, as MPI places them by slot:
    /// ranks 0..per_node on the first node, and so on. The ranks of a node
    /// share a [`Segment`]; between nodes everything travels as messages.
    pub fn endpoints_nodes(nodes: usize, per_node: usize) -> Vec<LocalEndpoint> {
        let per = per_node.max(1);
        Local::endpoints_on(&(0..nodes * per).map(|r| r / per).collect::<Vec<_>>())
    }

    pub(crate) fn endpoints_on(node_of: &[usize]) -> Vec<LocalEndpoint> {
        Local::endpoints_shaped(node_of, Shape::DEFAULT)
    }

    /// [`Local::endpoints_on`] with segments of `shape`.
    pub(crate) fn endpoints_shaped(node_of: &[usize], shape: Shape) -> Vec<LocalEndpoint> {
        let size = node_of.len();
        let (senders, inboxes): (Vec<_>, Vec<_>) = (0..size).map(|_| channel()).unzip();
        let segments = Segment::local(node_of, shape);
        let per_node = super::shm::Nodes {
            node_of: node_of.to_vec(),
            me: 0,
        }
        .per_node();
        inboxes
            .into_iter()
            .zip(segments)
            .enumerate()
            .map(|(rank, (inbox, segment))| LocalEndpoint {
                rank,
                size,
                to: senders.clone(),
                inbox,
                engine: RefCell::new(Engine {
                    left: vec![false; size],
                    ..Engine::default()
                }),
                progress: Progress::default(),
                segment,
                per_node,
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
        Local::run_on(Local::endpoints(size), f)
    }

    /// [`Local::run`] over [`Local::endpoints_nodes`]: `nodes` × `per_node` ranks.
    ///
    /// # Panics
    /// Re-raises a panic of any rank's thread.
    pub fn run_nodes<R, F>(nodes: usize, per_node: usize, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(LocalEndpoint) -> R + Sync,
    {
        Local::run_on(Local::endpoints_nodes(nodes, per_node), f)
    }

    /// [`Local::run`] over [`Local::endpoints_apart`]: no shared segment.
    ///
    /// # Panics
    /// Re-raises a panic of any rank's thread.
    pub fn run_apart<R, F>(size: usize, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(LocalEndpoint) -> R + Sync,
    {
        Local::run_on(Local::endpoints_apart(size), f)
    }

    pub(crate) fn run_on<R, F>(endpoints: Vec<LocalEndpoint>, f: F) -> Vec<R>
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

/// A message in a rank's inbox.
struct Envelope {
    src: usize,
    tag: Tag,
    body: Body,
}

enum Body {
    Data(Vec<u8>),
    /// The sender's endpoint was dropped: nothing more will come from it.
    Left,
}

/// The address of a posted receive's buffer.
struct RawBuf(*mut u8);

// SAFETY: the pointer is only written through by the endpoint that holds
// it, while the receive is outstanding; the caller of `start_recv` keeps the
// buffer valid and untouched until then, wherever the endpoint has moved
// (an endpoint is used by one thread at a time: it is not `Sync`).
unsafe impl Send for RawBuf {}

/// A receive waiting for its message.
struct Posted {
    id: u64,
    buf: RawBuf,
    len: usize,
    src: Option<usize>,
    tag: Tag,
}

#[derive(Default)]
struct Engine {
    unexpected: VecDeque<(usize, Tag, Vec<u8>)>,
    posted: Vec<Posted>,
    finished: Vec<(u64, Result<Done>)>,
    next_id: u64,
    left: Vec<bool>,
}

/// One rank of a [`Local`] group. Move it to the thread that plays the rank.
pub struct LocalEndpoint {
    rank: usize,
    size: usize,
    to: Vec<Sender<Envelope>>,
    inbox: Receiver<Envelope>,
    engine: RefCell<Engine>,
    progress: Progress,
    segment: Option<Segment>,
    /// Ranks on every node when the nodes hold as many, else 0.
    per_node: usize,
}

/// A started operation of a [`LocalEndpoint`].
#[derive(Debug)]
pub struct LocalRequest(State);

#[derive(Debug)]
enum State {
    /// Complete; the outcome until it is reported.
    Finished(Option<Result<Done>>),
    /// A posted receive.
    Posted(u64),
}

impl LocalEndpoint {
    fn closed(&self, peer: usize) -> Error {
        Error::Transport {
            rank: self.rank,
            reason: format!("rank {peer} has left the group"),
        }
    }

    fn matches(src: Option<usize>, tag: Tag, from: usize, with: Tag) -> bool {
        tag == with && src.is_none_or(|s| s == from)
    }

    /// Copies `msg` into a posted receive's buffer: its outcome.
    fn deliver(&self, p: &Posted, from: usize, tag: Tag, msg: &[u8]) -> Result<Done> {
        if msg.len() > p.len {
            return Err(Error::MessageSize {
                rank: self.rank,
                from,
                expected: p.len,
                got: msg.len(),
            });
        }
        // SAFETY: `p.buf` points to `p.len` ≥ msg.len() bytes that the
        // caller of `start_recv` keeps valid and untouched until the receive
        // completes, which is now; `msg` is a separate allocation.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), p.buf.0, msg.len()) };
        Ok(Done {
            peer: from,
            tag,
            len: msg.len(),
            received: true,
        })
    }

    /// Whether every other rank has left.
    fn alone(&self, e: &Engine) -> bool {
        (0..self.size).all(|r| r == self.rank || e.left[r])
    }

    /// Hands an arriving envelope to the first posted receive it matches,
    /// or keeps it as unexpected.
    fn arrive(&self, env: Envelope) {
        let mut e = self.engine.borrow_mut();
        match env.body {
            Body::Data(msg) => {
                match e
                    .posted
                    .iter()
                    .position(|p| Self::matches(p.src, p.tag, env.src, env.tag))
                {
                    Some(i) => {
                        let p = e.posted.remove(i);
                        let outcome = self.deliver(&p, env.src, env.tag, &msg);
                        e.finished.push((p.id, outcome));
                    }
                    None => e.unexpected.push_back((env.src, env.tag, msg)),
                }
            }
            Body::Left => {
                e.left[env.src] = true;
                // Receives that only this rank (or, for any-source ones, no
                // rank any more) could satisfy will never complete.
                let alone = self.alone(&e);
                let mut i = 0;
                while i < e.posted.len() {
                    let p = &e.posted[i];
                    let hopeless = match p.src {
                        Some(s) => s == env.src,
                        None => alone,
                    };
                    if hopeless {
                        let p = e.posted.remove(i);
                        let err = self.closed(p.src.unwrap_or(env.src));
                        e.finished.push((p.id, Err(err)));
                    } else {
                        i += 1;
                    }
                }
            }
        }
    }

    /// The stall report of a wait that made no progress for `t`.
    fn stalled(&self, t: std::time::Duration) -> Error {
        Error::Stalled {
            rank: self.rank,
            label: self.progress.label().to_string(),
            call: self.progress.call(),
            secs: super::mpi::format_secs(t),
        }
    }

    /// Takes every envelope already in the inbox, without blocking.
    fn pump(&self) {
        while let Ok(env) = self.inbox.try_recv() {
            self.arrive(env);
        }
    }

    fn start(&self, buf: &mut [u8], src: Option<usize>, tag: Tag) -> Result<LocalRequest> {
        if let Some(s) = src {
            valid_rank(s, self.size)?;
        }
        valid_tag(tag)?;
        self.pump();
        let mut e = self.engine.borrow_mut();
        let posted = Posted {
            id: e.next_id,
            buf: RawBuf(buf.as_mut_ptr()),
            len: buf.len(),
            src,
            tag,
        };
        e.next_id += 1;
        if let Some(i) = e
            .unexpected
            .iter()
            .position(|(from, with, _)| Self::matches(src, tag, *from, *with))
        {
            let (from, with, msg) = e.unexpected.remove(i).expect("found above");
            let outcome = self.deliver(&posted, from, with, &msg);
            return Ok(LocalRequest(State::Finished(Some(outcome))));
        }
        let hopeless = match src {
            Some(s) => e.left[s],
            None => self.alone(&e),
        };
        if hopeless {
            let err = self.closed(src.unwrap_or(self.rank));
            return Ok(LocalRequest(State::Finished(Some(Err(err)))));
        }
        let id = posted.id;
        e.posted.push(posted);
        Ok(LocalRequest(State::Posted(id)))
    }

    /// The outcome of `req` if it is known now (taking it out).
    fn outcome(&self, req: &mut LocalRequest) -> Option<Result<Done>> {
        match &mut req.0 {
            State::Finished(outcome) => Some(outcome.take().unwrap_or_else(|| Err(reported()))),
            State::Posted(id) => {
                let id = *id;
                let mut e = self.engine.borrow_mut();
                let i = e.finished.iter().position(|(f, _)| *f == id)?;
                let (_, outcome) = e.finished.swap_remove(i);
                req.0 = State::Finished(None);
                Some(outcome)
            }
        }
    }

    /// Withdraws a receive that will not be waited for any more.
    fn cancel(&self, req: &mut LocalRequest) {
        if let State::Posted(id) = req.0 {
            let mut e = self.engine.borrow_mut();
            e.posted.retain(|p| p.id != id);
            e.finished.retain(|(f, _)| *f != id);
            req.0 = State::Finished(None);
        }
    }
}

fn reported() -> Error {
    Error::InvalidArgument {
        what: "request",
        reason: "its completion was already reported".into(),
    }
}

impl Transport for LocalEndpoint {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    type Request = LocalRequest;

    fn progress(&self) -> Option<&Progress> {
        Some(&self.progress)
    }

    /// Yields; past the stall timeout, [`Error::Stalled`] (the shared
    /// segment's waits come here).
    fn idle(&self, waited: std::time::Duration) -> Result<bool> {
        std::thread::yield_now();
        match self.progress.timeout() {
            Some(t) if waited >= t => Err(self.stalled(t)),
            _ => Ok(false),
        }
    }

    fn segment(&self) -> Option<&Segment> {
        self.segment.as_ref()
    }

    fn ranks_per_node(&self) -> usize {
        self.per_node
    }

    unsafe fn start_send(&self, buf: &[u8], dest: usize, tag: Tag) -> Result<LocalRequest> {
        valid_target(dest, self.size, tag)?;
        let env = Envelope {
            src: self.rank,
            tag,
            body: Body::Data(buf.to_vec()),
        };
        // The bytes are copied: the send is complete at once.
        let outcome = match self.to[dest].send(env) {
            Ok(()) => Ok(Done {
                peer: dest,
                tag,
                len: buf.len(),
                received: false,
            }),
            Err(_) => Err(self.closed(dest)),
        };
        Ok(LocalRequest(State::Finished(Some(outcome))))
    }

    unsafe fn start_recv(&self, buf: &mut [u8], src: usize, tag: Tag) -> Result<LocalRequest> {
        self.start(buf, Some(src), tag)
    }

    fn test(&self, req: &mut LocalRequest) -> Result<Option<Done>> {
        self.pump();
        self.outcome(req).transpose()
    }

    fn wait_all(&self, reqs: &mut [LocalRequest], done: &mut [Done]) -> Result<()> {
        assert!(
            done.len() >= reqs.len(),
            "wait_all: `done` is shorter than `reqs`"
        );
        let mut complete = vec![false; reqs.len()];
        loop {
            self.pump();
            for (i, req) in reqs.iter_mut().enumerate() {
                if complete[i] {
                    continue;
                }
                match self.outcome(req) {
                    Some(Ok(d)) => {
                        done[i] = d;
                        complete[i] = true;
                    }
                    Some(Err(e)) => {
                        // Nothing waits for the others any more: withdraw them.
                        reqs.iter_mut().for_each(|r| self.cancel(r));
                        return Err(e);
                    }
                    None => {}
                }
            }
            if complete.iter().all(|&c| c) {
                return Ok(());
            }
            // Block until the next envelope (peers that leave send one
            // too), for at most the stall timeout: every arrival is progress.
            let next = match self.progress.timeout() {
                None => self.inbox.recv().map_err(|_| None),
                Some(t) => self.inbox.recv_timeout(t).map_err(|e| match e {
                    std::sync::mpsc::RecvTimeoutError::Timeout => Some(t),
                    std::sync::mpsc::RecvTimeoutError::Disconnected => None,
                }),
            };
            match next {
                Ok(env) => self.arrive(env),
                Err(Some(t)) => {
                    reqs.iter_mut().for_each(|r| self.cancel(r));
                    return Err(self.stalled(t));
                }
                Err(None) => unreachable!("an endpoint holds a sender to its own inbox"),
            }
        }
    }
}

impl AnySource for LocalEndpoint {
    unsafe fn start_recv_any(&self, buf: &mut [u8], tag: Tag) -> Result<LocalRequest> {
        self.start(buf, None, tag)
    }
}

impl Drop for LocalEndpoint {
    fn drop(&mut self) {
        if let Some(seg) = &self.segment {
            seg.leave();
        }
        for (dest, to) in self.to.iter().enumerate() {
            if dest != self.rank {
                let _ = to.send(Envelope {
                    src: self.rank,
                    tag: 0,
                    body: Body::Left,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::AnySource;

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

    #[test]
    fn tags_select_messages_and_keep_order_per_tag() {
        let out = Local::run(2, |t| {
            if t.rank() == 0 {
                for (tag, v) in [(5, 1u8), (7, 2), (5, 3)] {
                    t.send_tagged(&[v], 1, tag).unwrap();
                }
                vec![]
            } else {
                // Receive tag 7 first although it was sent second.
                let mut b = [0u8; 1];
                let mut order = Vec::new();
                for tag in [7, 5, 5] {
                    let d = t.recv_any(&mut b, tag).unwrap();
                    assert_eq!((d.peer, d.tag, d.len), (0, tag, 1));
                    order.push(b[0]);
                }
                order
            }
        });
        assert_eq!(out[1], vec![2, 1, 3]);
    }

    #[test]
    fn a_message_goes_to_the_first_posted_receive_that_matches() {
        let out = Local::run(2, |t| {
            if t.rank() == 0 {
                t.send(&[1u8], 1).unwrap();
                t.send(&[2u8], 1).unwrap();
                (0, 0)
            } else {
                let (mut a, mut b) = ([0u8; 1], [0u8; 1]);
                t.scope(|s| {
                    let first = s.recv(&mut a, 0)?;
                    let second = s.recv(&mut b, 0)?;
                    // Waiting for the second first must not let it take the first message.
                    let y = s.wait_recv(second)?.data[0];
                    let x = s.wait_recv(first)?.data[0];
                    Ok((x, y))
                })
                .unwrap()
            }
        });
        assert_eq!(out[1], (1, 2));
    }

    #[test]
    fn any_source_receives_fail_once_every_peer_has_left() {
        let out = Local::run(3, |t| {
            if t.rank() == 0 {
                let mut b = [0u8; 4];
                // Two messages, then both peers leave.
                let mut from = vec![
                    t.recv_any(&mut b, 0).unwrap().peer,
                    t.recv_any(&mut b, 0).unwrap().peer,
                ];
                from.sort_unstable();
                assert_eq!(from, vec![1, 2]);
                t.recv_any(&mut b, 0).is_err()
            } else {
                t.send(&[0u8; 4], 0).unwrap();
                true
            }
        });
        assert!(out[0]);
    }
}
