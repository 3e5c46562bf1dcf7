//! The CPU backend: buffers are vectors, and each kernel runs its CPU reference
//! (`KernelDef::run_cpu` in its family's module under `src/kernels/`), generic over f32 and f64.
//!
//! These references are the ground truth the GPU kernels are tested against (in f32), and the
//! finite-difference gradient checks run them in f64. Large kernels split their rows over the
//! CPU's threads (`kernels::par`), with the same bits for any thread count.

use super::{BufId, Counters, Executor, Kernel, ProgramId, ReadFuture, ReadInner};
use crate::error::Result;
pub use crate::kernels::Real;

/// The CPU executor: buffers are plain vectors, programs are kernel lists run in order.
pub(crate) struct CpuExecutor<T: Real> {
    bufs: Vec<Vec<T>>,
    programs: Vec<Option<Vec<Kernel>>>,
    counters: Counters,
}

impl<T: Real> CpuExecutor<T> {
    pub fn new() -> Self {
        CpuExecutor {
            bufs: Vec::new(),
            programs: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Runs one kernel. The loops are portable Rust that the compiler vectorises; on x86-64
    /// with AVX2 + FMA the same code is also built for those (8 lanes instead of SSE2's 4).
    fn exec(&mut self, k: &Kernel) {
        crate::kernels::par::in_wide_build(
            #[inline(always)]
            || self.exec_body(k),
        )
    }

    fn run_programs(&mut self, programs: &[ProgramId]) {
        for &p in programs {
            let kernels = self.programs[p]
                .take()
                .expect("program ids handed out by compile stay valid until discard");
            for k in &kernels {
                self.exec(k);
            }
            self.programs[p] = Some(kernels);
        }
        self.counters.submissions += 1;
    }

    #[inline(always)]
    fn exec_body(&mut self, k: &Kernel) {
        k.run_cpu(&mut self.bufs);
        self.counters.dispatches += 1;
    }
}

impl<T: Real> Executor for CpuExecutor<T> {
    fn alloc(&mut self, len: usize, _what: &str) -> Result<BufId> {
        self.bufs.push(vec![T::zero(); len]);
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        self.counters.buffers_created += 1;
        self.counters.bytes_allocated += bytes;
        self.counters.live_buffers += 1;
        self.counters.live_bytes += bytes;
        Ok(self.bufs.len() - 1)
    }
    fn free(&mut self, buf: BufId) {
        let v = std::mem::take(&mut self.bufs[buf]);
        let bytes = (v.len() * std::mem::size_of::<T>()) as u64;
        self.counters.live_buffers -= 1;
        self.counters.live_bytes -= bytes;
    }
    fn write(&mut self, buf: BufId, data: &[f64]) -> Result<()> {
        for (d, &s) in self.bufs[buf].iter_mut().zip(data) {
            *d = T::from_f64(s);
        }
        Ok(())
    }
    fn write_f32(&mut self, buf: BufId, data: &[f32]) -> Result<()> {
        for (d, &s) in self.bufs[buf].iter_mut().zip(data) {
            *d = T::from_f64(s as f64);
        }
        Ok(())
    }
    fn read(&mut self, buf: BufId) -> Result<Vec<f64>> {
        Ok(self.bufs[buf].iter().map(|v| v.to_f64()).collect())
    }
    fn read_f32(&mut self, buf: BufId) -> Result<Vec<f32>> {
        Ok(self.bufs[buf].iter().map(|v| v.to_f64() as f32).collect())
    }
    fn compile(&mut self, kernels: Vec<Kernel>) -> Result<ProgramId> {
        self.programs.push(Some(kernels));
        Ok(self.programs.len() - 1)
    }
    fn run(&mut self, programs: &[ProgramId]) -> Result<()> {
        // With several threads the programs run on one of the pool's: a kernel's parallel loop
        // then hands its other runs to threads of the same pool that are still awake from the
        // kernel before, rather than waking them from a thread outside it every time.
        #[cfg(not(target_arch = "wasm32"))]
        if crate::kernels::par::threads() > 1 {
            let this = &mut *self;
            rayon::scope(|_| this.run_programs(programs));
            return Ok(());
        }
        self.run_programs(programs);
        Ok(())
    }
    fn discard(&mut self, program: ProgramId) {
        self.programs[program] = None;
    }
    fn counters(&self) -> Counters {
        self.counters
    }
    fn wait(&mut self) -> Result<()> {
        Ok(())
    }
    fn max_storage_buffers(&self) -> u32 {
        u32::MAX
    }
    fn fuses_matmul_bias_act(&self, _m: usize, _k: usize, _n: usize) -> bool {
        true
    }
    /// The CPU computes the window matrix once for the forward and the weight gradient; an
    /// implicit GEMM here would materialise it for each product.
    fn prefers_implicit_conv(&self) -> bool {
        false
    }
    fn read_async(&mut self, buf: BufId) -> Result<ReadFuture> {
        let v = self.read_f32(buf);
        Ok(ReadFuture {
            inner: ReadInner::Ready(Some(v)),
        })
    }
}
