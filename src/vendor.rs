//! The vendor's own collectives, where the tools compare with them: the
//! MPI library's `MPI_Allreduce` and `MPI_Barrier`, and what it says about
//! itself. Implemented for the [`Mpi`] transport; the tools run without
//! one (on threads, say), using a serial reference instead.

use mpi::collective::SystemOperation;
use mpi::raw::AsRaw;
use mpi::traits::*;

use crate::element::{DType, Element, ReduceOp};
use crate::transport::Mpi;

/// A vendor library beside ours, measured and trusted by the tools.
pub trait Vendor {
    /// The vendor's all-reduce of `send` into `recv` (bytes of `dtype`
    /// elements; `avg` is its sum divided by the rank count). `false`, with
    /// nothing done, when the vendor has no such datatype. Collective.
    fn all_reduce(&self, dtype: DType, op: ReduceOp, send: &[u8], recv: &mut [u8]) -> bool;
    /// The vendor's in-place all-reduce of `buf` (`MPI_IN_PLACE`); `false`,
    /// with nothing done, as for [`Vendor::all_reduce`]. Collective.
    fn all_reduce_in_place(&self, dtype: DType, op: ReduceOp, buf: &mut [u8]) -> bool;
    /// The vendor's `MPI_Reduce_scatter_block` of `send` (p blocks of
    /// `recv.len()` bytes) into `recv`; `false`, with nothing done, as for
    /// [`Vendor::all_reduce`]. Collective.
    fn reduce_scatter_block(&self, _dtype: DType, _op: ReduceOp, _send: &[u8], _recv: &mut [u8]) -> bool {
        false
    }
    /// The vendor's `MPI_Reduce` of `send` into the root's `recv` (the
    /// others' `recv` is not touched); `false`, with nothing done, as for
    /// [`Vendor::all_reduce`]. Collective.
    fn reduce(&self, _dtype: DType, _op: ReduceOp, _send: &[u8], _recv: &mut [u8], _root: usize) -> bool {
        false
    }
    /// The vendor's `MPI_Allgather` of `send` into `recv` (p blocks of
    /// `send.len()` bytes); `false`, with nothing done, when it has none.
    /// Collective.
    fn all_gather(&self, _send: &[u8], _recv: &mut [u8]) -> bool {
        false
    }
    /// The vendor's barrier. Collective.
    fn barrier(&self);
    /// Whether the vendor reduces `dtype` under `op` as MPI defines it, so
    /// its result can serve as a reference. Collective (the answer may come
    /// from a probe), the same on every rank. By default: yes.
    fn trusted(&self, _dtype: DType, _op: ReduceOp) -> bool {
        true
    }
    /// What the vendor is known to get wrong here, one line each (probed
    /// now; collective).
    fn flaws(&self) -> Vec<String> {
        Vec::new()
    }
    /// The library's version line, e.g. `Open MPI v4.1.4, …`.
    fn library(&self) -> String;
    /// This process's host name as the library knows it.
    fn host(&self) -> String;
}

fn system_op(op: ReduceOp) -> SystemOperation {
    match op {
        ReduceOp::Sum | ReduceOp::Avg => SystemOperation::sum(),
        ReduceOp::Prod => SystemOperation::product(),
        ReduceOp::Min => SystemOperation::min(),
        ReduceOp::Max => SystemOperation::max(),
    }
}

fn typed<T: Element + Equivalence>(mpi: &Mpi, op: ReduceOp, send: &[u8], recv: &mut [u8]) {
    let (send, recv): (&[T], &mut [T]) = (bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv));
    if send.is_empty() {
        // Two empty Vecs share a dangling pointer, which MPI rejects as
        // sendbuf == recvbuf; there is nothing to reduce anyway.
        return;
    }
    mpi.communicator().all_reduce_into(send, recv, system_op(op));
    if op == ReduceOp::Avg {
        T::divide(recv, mpi.communicator().size() as usize);
    }
}

fn typed_scatter<T: Element + Equivalence>(mpi: &Mpi, op: ReduceOp, send: &[u8], recv: &mut [u8]) {
    let (send, recv): (&[T], &mut [T]) = (bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv));
    if recv.is_empty() {
        return;
    }
    mpi.communicator()
        .reduce_scatter_block_into(send, recv, system_op(op));
    if op == ReduceOp::Avg {
        T::divide(recv, mpi.communicator().size() as usize);
    }
}

fn typed_reduce<T: Element + Equivalence>(
    mpi: &Mpi,
    op: ReduceOp,
    send: &[u8],
    recv: &mut [u8],
    root: usize,
) {
    let (send, recv): (&[T], &mut [T]) = (bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv));
    if send.is_empty() {
        return;
    }
    let comm = mpi.communicator();
    let root_process = comm.process_at_rank(root as i32);
    if comm.rank() as usize == root {
        root_process.reduce_into_root(send, recv, system_op(op));
        if op == ReduceOp::Avg {
            T::divide(recv, comm.size() as usize);
        }
    } else {
        root_process.reduce_into(send, system_op(op));
    }
}

/// Calls `$f::<T>` for the element types MPI has (`false` for the others).
macro_rules! mpi_typed {
    ($dtype:expr, $f:ident($($arg:expr),*)) => {
        match $dtype {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
            DType::I32 => $f::<i32>($($arg),*),
            DType::I64 => $f::<i64>($($arg),*),
            DType::U8 => $f::<u8>($($arg),*),
            DType::F16 | DType::BF16 => return false,
        }
    };
}

/// `MPI_IN_PLACE`, which rsmpi does not export: `(void *) 1` in Open MPI,
/// `(void *) -1` in MPICH and the MPIs derived from it (Intel MPI, Cray
/// MPICH, MVAPICH), told apart by the library's version string.
fn mpi_in_place() -> *mut std::ffi::c_void {
    static IN_PLACE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let v = *IN_PLACE.get_or_init(|| {
        let version = mpi::environment::library_version().unwrap_or_default();
        if version.contains("Open MPI") {
            1
        } else {
            usize::MAX
        }
    });
    v as *mut std::ffi::c_void
}

fn typed_in_place<T: Element + Equivalence>(mpi: &Mpi, op: ReduceOp, buf: &mut [u8]) {
    let buf: &mut [T] = bytemuck::cast_slice_mut(buf);
    if buf.is_empty() {
        return;
    }
    let comm = mpi.communicator();
    // SAFETY: MPI_IN_PLACE as the send buffer makes MPI read and write
    // `buf`, `buf.len()` elements of T's datatype, which it owns mutably
    // for the call; the datatype, op and communicator are live handles.
    unsafe {
        mpi::ffi::MPI_Allreduce(
            mpi_in_place().cast_const(),
            buf.as_mut_ptr().cast(),
            buf.len() as i32,
            T::equivalent_datatype().as_raw(),
            system_op(op).as_raw(),
            comm.as_raw(),
        );
    }
    if op == ReduceOp::Avg {
        T::divide(buf, comm.size() as usize);
    }
}

/// Whether `MPI_MIN` and `MPI_MAX` on `MPI_UINT8_T` compare as unsigned:
/// MPICH 4.0.2 (Debian 12's) compares them as signed, so that
/// min(60, 234) = 234 (pmodels/mpich#6083, fixed in pmodels/mpich#6085).
/// Rank 0 offers 60 and 234, the others 234 and 60. Collective.
fn unsigned_min_max_right(mpi: &Mpi) -> bool {
    let mine: [u8; 2] = if mpi.communicator().rank() == 0 {
        [60, 234]
    } else {
        [234, 60]
    };
    let (mut min, mut max) = ([0u8; 2], [0u8; 2]);
    typed::<u8>(mpi, ReduceOp::Min, &mine, &mut min);
    typed::<u8>(mpi, ReduceOp::Max, &mine, &mut max);
    if mpi.communicator().size() == 1 {
        return true;
    }
    min == [60, 60] && max == [234, 234]
}

impl Vendor for Mpi {
    fn trusted(&self, dtype: DType, op: ReduceOp) -> bool {
        !(dtype == DType::U8 && matches!(op, ReduceOp::Min | ReduceOp::Max)) || unsigned_min_max_right(self)
    }

    fn flaws(&self) -> Vec<String> {
        if unsigned_min_max_right(self) {
            return Vec::new();
        }
        vec![format!(
            "{}: MPI_MIN and MPI_MAX on MPI_UINT8_T compare as signed (min(60, 234) = 234; \
             pmodels/mpich#6083); u8 min and max are checked against the serial reference",
            self.library()
        )]
    }

    fn all_reduce_in_place(&self, dtype: DType, op: ReduceOp, buf: &mut [u8]) -> bool {
        match dtype {
            DType::F32 => typed_in_place::<f32>(self, op, buf),
            DType::F64 => typed_in_place::<f64>(self, op, buf),
            DType::I32 => typed_in_place::<i32>(self, op, buf),
            DType::I64 => typed_in_place::<i64>(self, op, buf),
            DType::U8 => typed_in_place::<u8>(self, op, buf),
            DType::F16 | DType::BF16 => return false,
        }
        true
    }

    fn all_reduce(&self, dtype: DType, op: ReduceOp, send: &[u8], recv: &mut [u8]) -> bool {
        match dtype {
            DType::F32 => typed::<f32>(self, op, send, recv),
            DType::F64 => typed::<f64>(self, op, send, recv),
            DType::I32 => typed::<i32>(self, op, send, recv),
            DType::I64 => typed::<i64>(self, op, send, recv),
            DType::U8 => typed::<u8>(self, op, send, recv),
            DType::F16 | DType::BF16 => return false,
        }
        true
    }

    fn reduce_scatter_block(&self, dtype: DType, op: ReduceOp, send: &[u8], recv: &mut [u8]) -> bool {
        mpi_typed!(dtype, typed_scatter(self, op, send, recv));
        true
    }

    fn reduce(&self, dtype: DType, op: ReduceOp, send: &[u8], recv: &mut [u8], root: usize) -> bool {
        mpi_typed!(dtype, typed_reduce(self, op, send, recv, root));
        true
    }

    fn all_gather(&self, send: &[u8], recv: &mut [u8]) -> bool {
        if !send.is_empty() {
            self.communicator().all_gather_into(send, recv);
        }
        true
    }

    fn barrier(&self) {
        self.communicator().barrier();
    }

    fn library(&self) -> String {
        mpi::environment::library_version()
            .unwrap_or_default()
            .trim_end_matches('\0')
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn host(&self) -> String {
        mpi::environment::processor_name().unwrap_or_default()
    }
}
