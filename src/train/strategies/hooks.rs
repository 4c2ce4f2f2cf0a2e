//! Hooks shared by the strategies whose gradient exchange is a
//! [`BucketCodec`](crate::train::buckets::BucketCodec).

/// The hooks of a strategy that implements
/// [`BucketCodec`](crate::train::buckets::BucketCodec) and has the fields
/// `buckets: BucketSize` and `algorithm: Algorithm`: it runs on gradient
/// buckets of that size, each round's buffer averaged by `algorithm`, and
/// without buckets runs its codec on the whole gradient
/// ([`Step::exchange`](super::Step::exchange)).
macro_rules! codec_hooks {
    () => {
        fn buckets(&self) -> Option<crate::train::BucketHook> {
            Some(crate::train::BucketHook {
                size: self.buckets,
                algorithm: self.algorithm,
                wire: None,
            })
        }

        fn bucket_codec(&mut self) -> Option<&mut dyn crate::train::buckets::BucketCodec> {
            Some(self)
        }

        fn bucket_size(&mut self) -> Option<&mut crate::train::BucketSize> {
            Some(&mut self.buckets)
        }

        fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()> {
            if ctx.group.size() <= 1 {
                return Ok(());
            }
            let algorithm = self.algorithm;
            ctx.exchange(self, grad, algorithm)
        }
    };
}
pub(crate) use codec_hooks;
