//! The safe face of the non-blocking primitives: a scope, like
//! `std::thread::scope`, in which sends and receives are started, tested
//! and waited for, and which completes whatever is left when it ends.
//!
//! Buffers lent to an operation must outlive the scope (`'scope`), so the
//! transport may write into them until the scope ends even if the handle
//! is dropped; a finished receive hands its buffer back through
//! [`Received`].

use std::cell::RefCell;
use std::marker::PhantomData;

use super::{AnySource, Done, Tag, Transport, DATA};
use crate::error::{Error, Result};

/// Operations started on a transport; see [`Transport::scope`].
pub struct Scope<'scope, 'env: 'scope, C: Transport + ?Sized> {
    transport: &'env C,
    slots: RefCell<Vec<Slot<C::Request>>>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

enum Slot<R> {
    Pending(R),
    /// Being waited for (taken out of the table meanwhile).
    Busy,
    Done(Done),
    Failed,
}

/// A started send; wait for it with [`Scope::wait_send`] (or let the scope end).
#[must_use = "a send is complete only after wait_send, test_send or the end of the scope"]
#[derive(Debug)]
pub struct SendHandle<'scope> {
    index: usize,
    _scope: PhantomData<&'scope ()>,
}

/// A started receive; [`Scope::wait_recv`] hands the buffer back.
#[must_use = "the received bytes are reachable only through wait_recv or test_recv"]
#[derive(Debug)]
pub struct RecvHandle<'scope> {
    index: usize,
    buf: *mut u8,
    len: usize,
    _scope: PhantomData<&'scope mut [u8]>,
}

/// A completed receive: what arrived, and the bytes.
#[derive(Debug)]
pub struct Received<'scope> {
    /// Sender, tag and length.
    pub done: Done,
    /// The received bytes (the front `done.len` bytes of the buffer).
    pub data: &'scope mut [u8],
}

/// Runs `f` in a new scope over `transport` and completes every operation
/// it left outstanding, also when `f` fails or panics.
pub(super) fn run<'env, C, R, F>(transport: &'env C, f: F) -> Result<R>
where
    C: Transport + ?Sized,
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env, C>) -> Result<R>,
{
    let scope = Scope {
        transport,
        slots: RefCell::new(Vec::new()),
        _scope: PhantomData,
        _env: PhantomData,
    };
    // Complete what is left also when `f` panics, before the lent buffers
    // are freed by the unwinding; after an error the transport no longer
    // touches them either.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&scope)));
    let rest = scope.wait_all();
    let value = match result {
        Ok(r) => r?,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    rest.map(|()| value)
}

impl<'scope, 'env, C: Transport + ?Sized> Scope<'scope, 'env, C> {
    /// The transport the scope runs on.
    pub fn transport(&self) -> &'env C {
        self.transport
    }

    fn push(&self, req: C::Request) -> usize {
        let mut slots = self.slots.borrow_mut();
        slots.push(Slot::Pending(req));
        slots.len() - 1
    }

    /// Starts sending `buf` to `dest`.
    ///
    /// # Errors
    /// An invalid rank; failures of the transfer appear when it completes.
    pub fn send(&'scope self, buf: &'scope [u8], dest: usize) -> Result<SendHandle<'scope>> {
        self.send_tagged(buf, dest, DATA)
    }

    /// Starts sending `buf` to `dest` with `tag`.
    ///
    /// # Errors
    /// An invalid rank or tag.
    pub fn send_tagged(&'scope self, buf: &'scope [u8], dest: usize, tag: Tag) -> Result<SendHandle<'scope>> {
        // SAFETY: `buf` is borrowed for 'scope, and the scope completes the
        // request before 'scope ends (in `wait_send`, `test_send` or at the end).
        let req = unsafe { self.transport.start_send(buf, dest, tag)? };
        Ok(SendHandle {
            index: self.push(req),
            _scope: PhantomData,
        })
    }

    /// Starts receiving a message of at most `buf.len()` bytes from `src`.
    ///
    /// # Errors
    /// An invalid rank.
    pub fn recv(&'scope self, buf: &'scope mut [u8], src: usize) -> Result<RecvHandle<'scope>> {
        self.recv_tagged(buf, src, DATA)
    }

    /// Starts receiving a message with `tag` from `src`.
    ///
    /// # Errors
    /// An invalid rank or tag.
    pub fn recv_tagged(
        &'scope self,
        buf: &'scope mut [u8],
        src: usize,
        tag: Tag,
    ) -> Result<RecvHandle<'scope>> {
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        // SAFETY: `buf` is mutably borrowed for 'scope (the handle stands in
        // for that borrow), and the request completes before 'scope ends.
        let req = unsafe { self.transport.start_recv(buf, src, tag)? };
        Ok(self.recv_handle(req, ptr, len))
    }

    fn recv_handle(&self, req: C::Request, buf: *mut u8, len: usize) -> RecvHandle<'scope> {
        RecvHandle {
            index: self.push(req),
            buf,
            len,
            _scope: PhantomData,
        }
    }

    /// Whether the send has completed (then the handle is spent).
    ///
    /// # Errors
    /// A failure of the transfer.
    pub fn test_send(
        &self,
        handle: SendHandle<'scope>,
    ) -> Result<std::result::Result<(), SendHandle<'scope>>> {
        match self.test(handle.index)? {
            Some(_) => Ok(Ok(())),
            None => Ok(Err(handle)),
        }
    }

    /// Waits until the send has completed.
    ///
    /// # Errors
    /// A failure of the transfer.
    pub fn wait_send(&self, handle: SendHandle<'scope>) -> Result<()> {
        self.wait(handle.index).map(drop)
    }

    /// The received message if the receive has completed, the handle otherwise.
    ///
    /// # Errors
    /// A message longer than the buffer, or a sender that left.
    #[allow(clippy::type_complexity)]
    pub fn test_recv(
        &self,
        handle: RecvHandle<'scope>,
    ) -> Result<std::result::Result<Received<'scope>, RecvHandle<'scope>>> {
        match self.test(handle.index)? {
            Some(done) => Ok(Ok(handle.into_received(done))),
            None => Ok(Err(handle)),
        }
    }

    /// Waits for the receive and hands back its bytes.
    ///
    /// # Errors
    /// A message longer than the buffer, or a sender that left.
    pub fn wait_recv(&self, handle: RecvHandle<'scope>) -> Result<Received<'scope>> {
        let done = self.wait(handle.index)?;
        Ok(handle.into_received(done))
    }

    /// Waits for every operation of the scope still outstanding.
    ///
    /// # Errors
    /// The first failure among them.
    pub fn wait_all(&self) -> Result<()> {
        let mut indices = Vec::new();
        let mut reqs = Vec::new();
        {
            let mut slots = self.slots.borrow_mut();
            for (i, slot) in slots.iter_mut().enumerate() {
                if matches!(slot, Slot::Pending(_)) {
                    if let Slot::Pending(r) = std::mem::replace(slot, Slot::Busy) {
                        indices.push(i);
                        reqs.push(r);
                    }
                }
            }
        }
        if reqs.is_empty() {
            return Ok(());
        }
        let mut done = vec![Done::default(); reqs.len()];
        let result = self.transport.wait_all(&mut reqs, &mut done);
        let mut slots = self.slots.borrow_mut();
        for (k, &i) in indices.iter().enumerate() {
            slots[i] = if result.is_ok() {
                Slot::Done(done[k])
            } else {
                Slot::Failed
            };
        }
        result
    }

    fn test(&self, index: usize) -> Result<Option<Done>> {
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[index];
        match slot {
            Slot::Pending(req) => match self.transport.test(req) {
                Ok(Some(done)) => {
                    *slot = Slot::Done(done);
                    Ok(Some(done))
                }
                Ok(None) => Ok(None),
                Err(e) => {
                    *slot = Slot::Failed;
                    Err(e)
                }
            },
            Slot::Done(done) => Ok(Some(*done)),
            Slot::Busy | Slot::Failed => Err(spent()),
        }
    }

    fn wait(&self, index: usize) -> Result<Done> {
        let taken = std::mem::replace(&mut self.slots.borrow_mut()[index], Slot::Busy);
        let mut req = match taken {
            Slot::Pending(req) => req,
            Slot::Done(done) => return Ok(done),
            Slot::Busy | Slot::Failed => return Err(spent()),
        };
        let mut done = [Done::default()];
        let result = self.transport.wait_all(std::slice::from_mut(&mut req), &mut done);
        self.slots.borrow_mut()[index] = match result {
            Ok(()) => Slot::Done(done[0]),
            Err(_) => Slot::Failed,
        };
        result.map(|()| done[0])
    }
}

impl<'scope, 'env, C: AnySource + ?Sized> Scope<'scope, 'env, C> {
    /// Starts receiving a message with `tag` from whichever rank sends
    /// first; [`Done::peer`] of the result names it.
    ///
    /// # Errors
    /// An invalid tag.
    pub fn recv_any(&'scope self, buf: &'scope mut [u8], tag: Tag) -> Result<RecvHandle<'scope>> {
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        // SAFETY: as in `recv_tagged`.
        let req = unsafe { self.transport.start_recv_any(buf, tag)? };
        Ok(self.recv_handle(req, ptr, len))
    }
}

impl<'scope> RecvHandle<'scope> {
    fn into_received(self, done: Done) -> Received<'scope> {
        // SAFETY: the handle stood for the unique borrow of these `len`
        // bytes for 'scope, the receive is complete (the transport no longer
        // touches them), and the handle is consumed here, so this is the
        // only reference to them.
        let all = unsafe { std::slice::from_raw_parts_mut(self.buf, self.len) };
        Received {
            done,
            data: &mut all[..done.len.min(self.len)],
        }
    }
}

fn spent() -> Error {
    Error::InvalidArgument {
        what: "request",
        reason: "the operation already failed".into(),
    }
}
