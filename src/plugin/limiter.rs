//! A plugin instance's resource limiter: wasmtime's [`StoreLimits`], plus a
//! record of whether it refused a memory grow. That record is how a call
//! that ran out of memory is told apart from other traps: the trap itself
//! only carries wasmtime's wording, which is no contract.

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

pub struct Limiter {
    limits: StoreLimits,
    memory_refused: bool,
}

impl Limiter {
    /// At most `memory` bytes of linear memory; going past it traps
    /// (rather than `memory.grow` answering -1, which guest runtimes turn
    /// into an abort with a less clear reason).
    pub fn new(memory: usize) -> Limiter {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory)
            .trap_on_grow_failure(true)
            .instances(16)
            .tables(64)
            .memories(16)
            .build();
        Limiter {
            limits,
            memory_refused: false,
        }
    }

    /// Whether a memory grow was refused (or failed) since the last
    /// [`Limiter::reset`]: the instance then trapped for want of memory.
    pub fn memory_refused(&self) -> bool {
        self.memory_refused
    }

    pub fn reset(&mut self) {
        self.memory_refused = false;
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_refused = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_a_refused_grow() {
        let mut l = Limiter::new(1 << 20);
        assert!(matches!(l.memory_growing(0, 1 << 16, None), Ok(true)));
        assert!(!l.memory_refused());
        assert!(l.memory_growing(1 << 16, 2 << 20, None).is_err());
        assert!(l.memory_refused());
        l.reset();
        assert!(!l.memory_refused());
    }
}
