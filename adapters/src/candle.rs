//! candle models, data-parallel through ringreduce.
//!
//! [`CandleParams`] registers a [`VarMap`]'s variables (in name order, so
//! every rank lays them out alike) with a [`DataParallel`]. Each step, the
//! gradients of candle's `backward()` are read where candle keeps them
//! (CPU tensors, no copy) and copied once into their buckets
//! ([`CandleParams::mark_ready`]); the averaged gradients go back into the
//! [`GradStore`] for candle's optimizers with one copy per tensor
//! ([`CandleParams::averaged`]).
//!
//! candle's backward pass computes every gradient before it returns, so
//! the buckets' all-reduces cannot overlap it; they overlap each other and
//! the copies (and a strategy's encoding) instead.

use candle_core::backprop::GradStore;
use candle_core::{Storage, Tensor, Var};
use candle_nn::VarMap;
use ringreduce::train::{DataParallel, GradientSync, Strategy};
use ringreduce::transport::Transport;
use ringreduce::{Error, Group, Result};

/// A candle error as ringreduce's (its text).
pub fn error(e: candle_core::Error) -> Error {
    Error::InvalidArgument {
        what: "candle",
        reason: e.to_string(),
    }
}

/// A [`VarMap`]'s variables in name order: the tensors a [`DataParallel`]
/// registers.
pub struct CandleParams {
    names: Vec<String>,
    vars: Vec<Var>,
}

impl CandleParams {
    /// The variables of `varmap`, in name order.
    pub fn new(varmap: &VarMap) -> Self {
        let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, vars) = all.into_iter().unzip();
        CandleParams { names, vars }
    }

    /// The variables' names, in registration order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The variables, in registration order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Elements in all.
    pub fn len(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// A [`DataParallel`] over these variables with `strategy`. Collective.
    ///
    /// # Errors
    /// Those of [`DataParallel::new`].
    pub fn data_parallel<'g, C: Transport, S: Strategy>(
        &self,
        group: &'g Group<C>,
        strategy: S,
    ) -> Result<DataParallel<'g, C, S>> {
        let shapes: Vec<Vec<usize>> = self.vars.iter().map(|v| v.dims().to_vec()).collect();
        let shapes: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        DataParallel::new(group, &shapes, strategy)
    }

    /// Every variable's values, one after another (a copy).
    ///
    /// # Errors
    /// A variable that is not f32 on the CPU.
    pub fn flatten(&self) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.len());
        for v in &self.vars {
            with_slice(v.as_tensor(), |s| out.extend_from_slice(s))?;
        }
        Ok(out)
    }

    /// Sets every variable from `flat` (laid out as [`CandleParams::flatten`]'s).
    ///
    /// # Errors
    /// `flat` of the wrong length, or candle's error.
    pub fn load(&self, flat: &[f32]) -> Result<()> {
        if flat.len() != self.len() {
            return Err(Error::InvalidArgument {
                what: "candle parameters",
                reason: format!("{} values for {} parameters", flat.len(), self.len()),
            });
        }
        let mut at = 0;
        for v in &self.vars {
            let n = v.elem_count();
            let t = Tensor::from_slice(&flat[at..at + n], v.shape(), v.device()).map_err(error)?;
            v.set(&t).map_err(error)?;
            at += n;
        }
        Ok(())
    }

    /// Reports every variable's gradient in `grads` to `sync`, last
    /// variable first, each read where candle keeps it and copied once
    /// (into its bucket, or the gradient buffer).
    ///
    /// # Errors
    /// A variable without a gradient, a gradient that is not f32 on the
    /// CPU, and those of [`GradientSync::mark_ready`].
    pub fn mark_ready<C: Transport>(
        &self,
        sync: &mut GradientSync<'_, '_, C>,
        grads: &GradStore,
    ) -> Result<()> {
        for (i, v) in self.vars.iter().enumerate().rev() {
            let g = grads.get(v.as_tensor()).ok_or_else(|| Error::InvalidArgument {
                what: "candle gradients",
                reason: format!("no gradient for `{}`", self.names[i]),
            })?;
            with_slice(g, |s| sync.mark_ready(i, s))??;
        }
        Ok(())
    }

    /// Puts the step's averaged gradients of `ddp` into `grads` (one copy
    /// per variable), for a candle optimizer's `step(&grads)`.
    ///
    /// # Errors
    /// candle's.
    pub fn averaged<C: Transport, S: Strategy>(
        &self,
        ddp: &DataParallel<'_, C, S>,
        grads: &mut GradStore,
    ) -> Result<()> {
        for (i, v) in self.vars.iter().enumerate() {
            let t = Tensor::from_slice(ddp.grad_of(i), v.shape(), v.device()).map_err(error)?;
            grads.insert(v.as_tensor(), t);
        }
        Ok(())
    }
}

/// Runs `f` on the f32 elements of `t` where candle keeps them (a
/// contiguous copy first only for a strided tensor).
///
/// # Errors
/// A tensor that is not f32 on the CPU.
pub fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous().map_err(error)?
    };
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(Error::InvalidArgument {
            what: "candle tensor",
            reason: "on a device other than the CPU".into(),
        });
    };
    let all = cpu.as_slice::<f32>().map_err(error)?;
    let (start, end) = layout
        .contiguous_offsets()
        .expect("a contiguous tensor has contiguous offsets");
    Ok(f(&all[start..end]))
}
