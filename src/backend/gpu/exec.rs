//! The per-graph executor: buffers from the device pool, compiled programs (pipelines, one
//! parameter block, bind groups made once), one-submission runs and readback.

use super::readback::{copy_out, lock, Holder, PendingRead, Staging, StagingState};
use super::GpuDevice;
use crate::backend::{BufId, Counters, Executor, Kernel, ProgramId, ReadFuture, ReadInner};
use crate::error::{Error, Result};
use crate::kernels::Cx;
use std::sync::{Arc, Mutex};

/// Bytes of the uniform buffer reserved for each dispatch's parameters.
const PARAM_SLOT: u64 = 256;

struct Prepared {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

struct Program {
    steps: Vec<Prepared>,
    _params: Option<wgpu::Buffer>,
    params_bytes: u64,
}

struct Slot {
    buffer: wgpu::Buffer,
    class: u64,
    len: usize,
}

/// The per-graph GPU executor: its buffers (from the device pool) and compiled programs.
pub(crate) struct GpuExecutor {
    dev: Arc<GpuDevice>,
    bufs: Vec<Option<Slot>>,
    programs: Vec<Option<Program>>,
    /// Readback buffers; each is free, held by a read in progress, or abandoned by a dropped
    /// read until its mapping completes (then it is free again).
    staging: Vec<Staging>,
    counters: Counters,
}

impl GpuExecutor {
    pub fn new(dev: Arc<GpuDevice>) -> Self {
        GpuExecutor {
            dev,
            bufs: Vec::new(),
            programs: Vec::new(),
            staging: Vec::new(),
            counters: Counters::default(),
        }
    }

    fn slot(&self, id: BufId) -> &Slot {
        self.bufs[id]
            .as_ref()
            .expect("buffer ids handed out by alloc stay valid while the executor lives")
    }

    fn create_buffer(&mut self, size: u64, usage: wgpu::BufferUsages, what: &'static str) -> Result<wgpu::Buffer> {
        let dev = self.dev.clone();
        let buf = dev.scoped(what, || {
            dev.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage,
                mapped_at_creation: false,
            })
        })?;
        self.counters.buffers_created += 1;
        self.counters.bytes_allocated += size;
        Ok(buf)
    }

    /// A staging buffer of at least `bytes`, marked as held by a reader.
    ///
    /// A free one is reused; one abandoned by a dropped read is taken back once its mapping
    /// completes, waiting for that mapping (its copy was submitted earlier) rather than creating
    /// another buffer, so dropped reads never accumulate buffers. Only when no buffer fits is a
    /// new one created (and the free and abandoned ones, all too small, are released).
    fn staging_for(&mut self, bytes: u64) -> Result<Staging> {
        // Deliver map callbacks that are ready, without blocking.
        let _ = self.dev.device.poll(wgpu::PollType::Poll);
        let fits = |s: &Staging| s.buffer.size() >= bytes;
        let mut pick = self.staging.iter().position(|s| s.reclaim() && fits(s));
        if pick.is_none() {
            let abandoned = self
                .staging
                .iter()
                .position(|s| fits(s) && lock(&s.state).holder == Holder::Abandoned);
            // (Waiting for it is impossible in a browser: there a new buffer is made instead.)
            if let Some(i) = abandoned.filter(|_| !cfg!(target_arch = "wasm32")) {
                let submission = lock(&self.staging[i].state).submission.clone();
                let wait = match submission {
                    Some(index) => wgpu::PollType::Wait {
                        submission_index: Some(index),
                        timeout: Some(std::time::Duration::from_secs(300)),
                    },
                    None => wgpu::PollType::wait_indefinitely(),
                };
                self.dev.device.poll(wait).map_err(|e| Error::Gpu {
                    during: "readback",
                    detail: e.to_string(),
                })?;
                self.dev.check_alive()?;
                // Another thread polling the same device may be running the callback a moment
                // after our wait returns: give it that moment.
                let deadline = web_time::Instant::now() + std::time::Duration::from_secs(1);
                while !self.staging[i].reclaim() && web_time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_micros(100));
                    let _ = self.dev.device.poll(wgpu::PollType::Poll);
                }
                pick = self.staging[i].reclaim().then_some(i);
            }
        }
        let i = match pick {
            Some(i) => i,
            None => {
                // Powers of two (at least 256 bytes) so varied sizes share buffers; never more
                // than the device allows (the tensor itself is within that limit).
                let max = self.dev.device.limits().max_buffer_size;
                let size = bytes.next_power_of_two().max(256).min(max.max(bytes));
                let buffer = self.create_buffer(
                    size,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    "readback staging",
                )?;
                // Every free or abandoned buffer is too small: release them. Held ones stay
                // with their readers.
                let mut released = (0, 0);
                self.staging.retain(|s| {
                    let keep = lock(&s.state).holder == Holder::Reader;
                    if !keep {
                        released.0 += 1;
                        released.1 += s.buffer.size();
                    }
                    keep
                });
                self.counters.live_buffers -= released.0;
                self.counters.live_bytes -= released.1;
                self.counters.live_buffers += 1;
                self.counters.live_bytes += size;
                self.staging.push(Staging {
                    buffer,
                    state: Arc::new(Mutex::new(StagingState {
                        holder: Holder::Free,
                        mapped: None,
                        submission: None,
                        waker: None,
                    })),
                });
                self.staging.len() - 1
            }
        };
        let s = self.staging[i].clone();
        {
            let mut st = lock(&s.state);
            st.holder = Holder::Reader;
            st.mapped = None;
            st.submission = None;
            st.waker = None;
        }
        Ok(s)
    }

    /// Copies the floats of `id` into a staging buffer, submits, and starts mapping it; the
    /// map callback records its outcome in the buffer's shared state.
    fn submit_copy(&mut self, id: BufId) -> Result<(Staging, u64)> {
        let bytes = (self.slot(id).len * 4) as u64;
        let staging = self.staging_for(bytes)?;
        let dev = self.dev.clone();
        let src = self.slot(id).buffer.clone();
        let submitted = dev.scoped("readback", || {
            let mut enc = dev.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
            enc.copy_buffer_to_buffer(&src, 0, &staging.buffer, 0, bytes);
            dev.queue.submit([enc.finish()])
        });
        let index = match submitted {
            Ok(index) => index,
            Err(e) => {
                lock(&staging.state).holder = Holder::Free;
                return Err(e);
            }
        };
        lock(&staging.state).submission = Some(index);
        self.counters.submissions += 1;
        let state = staging.state.clone();
        staging.buffer.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            let waker = {
                let mut st = lock(&state);
                st.mapped = Some(r.map_err(|e| e.to_string()));
                st.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        });
        Ok((staging, bytes))
    }
}

/// Records `steps` as one compute pass and submits it; `empty`: every dispatch with zero
/// workgroups (runs nothing; drivers that compile on first use compile the pipelines). Returns
/// the number of dispatches.
fn submit<'a>(
    dev: &GpuDevice,
    during: &'static str,
    steps: impl Iterator<Item = &'a Prepared>,
    empty: bool,
) -> Result<u64> {
    dev.scoped(during, || {
        let mut n = 0;
        let mut enc = dev
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(during) });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            for s in steps {
                pass.set_pipeline(&s.pipeline);
                pass.set_bind_group(0, &s.bind_group, &[]);
                let g = if empty { [0, 1, 1] } else { s.groups };
                pass.dispatch_workgroups(g[0], g[1], g[2]);
                n += 1;
            }
        }
        dev.queue.submit([enc.finish()]);
        n
    })
}

impl Executor for GpuExecutor {
    fn alloc(&mut self, len: usize, what: &str) -> Result<BufId> {
        let limits = self.dev.device.limits();
        let bytes = (len as u64).saturating_mul(4);
        let cap = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        for (limit_name, limit) in [
            (
                "max_storage_buffer_binding_size",
                limits.max_storage_buffer_binding_size,
            ),
            ("max_buffer_size", limits.max_buffer_size),
        ] {
            if bytes > limit {
                let what = what.to_string();
                return Err(Error::LimitExceeded {
                    what,
                    size: bytes,
                    limit_name,
                    limit,
                });
            }
        }
        let class = GpuDevice::size_class(bytes, cap);
        let pooled = self
            .dev
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&class)
            .and_then(|v| v.pop());
        let buffer = match pooled {
            Some(b) => {
                // A recycled buffer holds old data; the contract is zero-filled.
                self.dev.queue.write_buffer(&b, 0, &vec![0u8; bytes as usize]);
                b
            }
            None => self.create_buffer(
                class,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                "tensor",
            )?,
        };
        self.counters.live_buffers += 1;
        self.counters.live_bytes += class;
        self.bufs.push(Some(Slot { buffer, class, len }));
        Ok(self.bufs.len() - 1)
    }

    fn free(&mut self, buf: BufId) {
        if let Some(s) = self.bufs[buf].take() {
            self.counters.live_buffers -= 1;
            self.counters.live_bytes -= s.class;
            self.dev
                .pool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(s.class)
                .or_default()
                .push(s.buffer);
        }
    }

    fn write(&mut self, buf: BufId, data: &[f64]) -> Result<()> {
        let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        self.write_f32(buf, &v)
    }

    fn write_f32(&mut self, buf: BufId, data: &[f32]) -> Result<()> {
        let dev = self.dev.clone();
        let b = &self.slot(buf).buffer;
        dev.scoped("write", || dev.queue.write_buffer(b, 0, bytemuck::cast_slice(data)))
    }

    fn read(&mut self, buf: BufId) -> Result<Vec<f64>> {
        Ok(self.read_f32(buf)?.into_iter().map(|x| x as f64).collect())
    }

    fn read_f32(&mut self, buf: BufId) -> Result<Vec<f32>> {
        if cfg!(target_arch = "wasm32") {
            return Err(Error::WouldBlock {
                what: "reading a value or gradient",
                instead: "Graph::value_async / grad_async",
            });
        }
        let (staging, bytes) = self.submit_copy(buf)?;
        // Another thread polling the same device may be the one that runs our callback, a
        // moment after our own poll returns: wait for the callback itself, not just the poll.
        // On any error the buffer is abandoned: the next read takes it back once mapped.
        let abandon = |e: Error| {
            let mut st = lock(&staging.state);
            match st.mapped.take() {
                Some(Ok(())) => {
                    staging.buffer.unmap();
                    st.holder = Holder::Free;
                }
                Some(Err(_)) => st.holder = Holder::Free,
                None => st.holder = Holder::Abandoned,
            }
            e
        };
        let deadline = web_time::Instant::now() + std::time::Duration::from_secs(300);
        let outcome = loop {
            self.dev
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu {
                    during: "readback",
                    detail: e.to_string(),
                })
                .map_err(abandon)?;
            self.dev.check_alive().map_err(abandon)?;
            if let Some(r) = lock(&staging.state).mapped.take() {
                break r;
            }
            if web_time::Instant::now() >= deadline {
                return Err(abandon(Error::Gpu {
                    during: "readback",
                    detail: "buffer mapping did not complete".into(),
                }));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        let data = match outcome {
            Ok(()) => copy_out(&staging.buffer, bytes),
            Err(e) => Err(Error::Gpu {
                during: "readback",
                detail: e,
            }),
        };
        lock(&staging.state).holder = Holder::Free;
        data
    }

    fn read_async(&mut self, buf: BufId) -> Result<ReadFuture> {
        let (staging, bytes) = self.submit_copy(buf)?;
        Ok(ReadFuture {
            inner: ReadInner::Gpu(PendingRead {
                dev: self.dev.clone(),
                staging,
                bytes,
                done: false,
            }),
        })
    }

    fn compile(&mut self, kernels: Vec<Kernel>) -> Result<ProgramId> {
        let dev = self.dev.clone();
        let max_dim = dev.device.limits().max_compute_workgroups_per_dimension;
        let mut launches = Vec::with_capacity(kernels.len());
        for k in &kernels {
            launches.extend(k.lower(&Cx {
                max_dim,
                mm: dev.matmul,
            })?);
        }
        let align = (dev.device.limits().min_uniform_buffer_offset_alignment as u64).max(PARAM_SLOT);
        let params_bytes = align * launches.len() as u64;
        let params = if launches.is_empty() {
            None
        } else {
            let buf = self.create_buffer(
                params_bytes,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                "kernel parameters",
            )?;
            let mut bytes = vec![0u8; params_bytes as usize];
            for (i, l) in launches.iter().enumerate() {
                let off = i * align as usize;
                let words: &[u8] = bytemuck::cast_slice(&l.params);
                bytes[off..off + words.len()].copy_from_slice(words);
            }
            dev.queue.write_buffer(&buf, 0, &bytes);
            self.counters.live_buffers += 1;
            self.counters.live_bytes += params_bytes;
            Some(buf)
        };
        // The pipelines not compiled yet, concurrently; the loop below finds them cached.
        let mut new = dev.precompile(&launches)?;
        self.counters.pipelines_compiled += new.len() as u64;
        let mut steps = Vec::with_capacity(launches.len());
        for (i, l) in launches.iter().enumerate() {
            let (pipeline, bgl) = dev.pipeline(l)?;
            let pbuf = params.as_ref().expect("a non-empty program has a parameter buffer");
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: pbuf,
                    offset: i as u64 * align,
                    size: wgpu::BufferSize::new(PARAM_SLOT),
                }),
            }];
            for &(binding, id, _) in &l.binds {
                entries.push(wgpu::BindGroupEntry {
                    binding,
                    resource: self.slot(id).buffer.as_entire_binding(),
                });
            }
            let bind_group = dev.scoped("bind group creation", || {
                dev.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(l.entry),
                    layout: &bgl,
                    entries: &entries,
                })
            })?;
            self.counters.bind_groups_created += 1;
            steps.push(Prepared {
                pipeline,
                bind_group,
                groups: l.groups,
            });
        }
        // Drivers that compile a pipeline at its first dispatch (Mesa's llvmpipe) do it now, on
        // an empty dispatch of each new pipeline: compiling stays in `compile`, where a caller
        // expects it (and can say so), and out of the first training steps. An empty dispatch
        // runs nothing, so no buffer changes.
        // The first step using each new pipeline (taking its name out of `new` keeps one each).
        let fresh: Vec<(&Prepared, String)> = launches
            .iter()
            .zip(&steps)
            .filter_map(|(l, s)| new.take(&super::pipeline_name(l)).map(|name| (s, name)))
            .collect();
        // (Not in a browser: its compilers compile at pipeline creation, and it warns of empty
        // dispatches.)
        if !fresh.is_empty() && !cfg!(target_arch = "wasm32") {
            // Timed one by one when the device records compile times, else all in one submission.
            let timed = dev.timing_first_dispatch();
            let groups: Vec<&[(&Prepared, String)]> = if timed {
                fresh.chunks(1).collect()
            } else {
                vec![&fresh[..]]
            };
            for group in groups {
                let t = web_time::Instant::now();
                submit(&dev, "compiling kernels", group.iter().map(|(s, _)| *s), true)?;
                dev.device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Gpu {
                        during: "compiling kernels",
                        detail: e.to_string(),
                    })?;
                if timed {
                    dev.record_first_dispatch(&group[0].1, t.elapsed().as_secs_f64());
                }
            }
        }
        self.programs.push(Some(Program {
            steps,
            _params: params,
            params_bytes,
        }));
        Ok(self.programs.len() - 1)
    }

    fn run(&mut self, programs: &[ProgramId]) -> Result<()> {
        let dev = self.dev.clone();
        let steps = programs.iter().flat_map(|&p| {
            self.programs[p]
                .as_ref()
                .expect("program ids handed out by compile stay valid until discard")
                .steps
                .iter()
        });
        let dispatches = submit(&dev, "running kernels", steps, false)?;
        self.counters.submissions += 1;
        self.counters.dispatches += dispatches;
        Ok(())
    }

    fn discard(&mut self, program: ProgramId) {
        if let Some(p) = self.programs[program].take() {
            if p._params.is_some() {
                self.counters.live_buffers -= 1;
                self.counters.live_bytes -= p.params_bytes;
            }
        }
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn max_storage_buffers(&self) -> u32 {
        self.dev.device.limits().max_storage_buffers_per_shader_stage
    }

    fn fuses_matmul_bias_act(&self, m: usize, k: usize, n: usize) -> bool {
        self.dev.has_layer_epilogue(m, k, n)
    }

    fn prefers_implicit_conv(&self) -> bool {
        self.dev.prefers_implicit_conv()
    }

    fn wait(&mut self) -> Result<()> {
        if cfg!(target_arch = "wasm32") {
            // A browser runs the queue on its own; awaiting a read is the way to wait there.
            return self.dev.check_alive();
        }
        self.dev
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                during: "synchronize",
                detail: e.to_string(),
            })?;
        self.dev.check_alive()
    }
}

impl Drop for GpuExecutor {
    fn drop(&mut self) {
        // Return tensor buffers to the device pool so the next graph reuses them.
        let mut pool = self.dev.pool.lock().unwrap_or_else(|p| p.into_inner());
        for s in self.bufs.drain(..).flatten() {
            pool.entry(s.class).or_default().push(s.buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gpu::GpuOptions;

    fn device() -> Option<Arc<GpuDevice>> {
        match GpuDevice::open(&GpuOptions::default()) {
            Ok(d) => Some(d),
            Err(e) if std::env::var("WGRAD_REQUIRE_GPU").as_deref() == Ok("1") => panic!("no GPU adapter: {e}"),
            Err(e) => {
                eprintln!("SKIPPED (no GPU adapter): {e}");
                None
            }
        }
    }

    #[test]
    fn validation_errors_become_err_values() {
        let Some(dev) = device() else { return };
        // MAP_READ may only be combined with COPY_DST: wgpu reports a validation error.
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE;
        let r = dev.scoped("test", || {
            dev.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 64,
                usage,
                mapped_at_creation: false,
            })
        });
        assert!(matches!(r, Err(Error::Gpu { during: "test", .. })), "{r:?}");
        // The device is still usable.
        let mut ex = GpuExecutor::new(dev.clone());
        let b = ex.alloc(4, "t").unwrap();
        ex.write_f32(b, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(ex.read_f32(b).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn absurd_allocation_is_an_error_not_an_abort() {
        let Some(dev) = device() else { return };
        let mut ex = GpuExecutor::new(dev.clone());
        let r = ex.alloc(usize::MAX / 8, "absurd");
        assert!(matches!(r, Err(Error::LimitExceeded { .. })), "{r:?}");
        // Past wgrad's own check, wgpu's error scopes catch what the driver refuses.
        let r = dev.scoped("raw", || {
            dev.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: u64::MAX / 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        });
        assert!(
            matches!(r, Err(Error::Gpu { .. }) | Err(Error::OutOfMemory { .. })),
            "{r:?}"
        );
    }

    #[test]
    fn lost_device_is_reported_on_the_next_call() {
        let Some(dev) = device() else { return };
        let mut ex = GpuExecutor::new(dev.clone());
        let b = ex.alloc(4, "t").unwrap();
        dev.device.destroy();
        let _ = dev.device.poll(wgpu::PollType::Poll);
        let r = ex.read_f32(b);
        assert!(matches!(r, Err(Error::DeviceLost(_)) | Err(Error::Gpu { .. })), "{r:?}");
        let r = ex.compile(vec![Kernel::Fill(crate::kernels::Fill {
            out: b,
            len: 4,
            value: 1.0,
            acc: false,
        })]);
        assert!(r.is_err(), "after loss, calls fail instead of hanging");
    }
}
