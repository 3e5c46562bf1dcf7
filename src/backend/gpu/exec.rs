//! The per-graph executor: buffers from the device pool, compiled programs (pipelines, one
//! parameter block, bind groups made once), one-submission runs and readback.

use super::lower::{lower_all, PARAM_SLOT};
use super::GpuDevice;
use crate::backend::{BufId, Counters, Executor, Kernel, ProgramId, ReadFuture, ReadInner};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Readback buffers; one is busy while a read (or an unawaited async read) holds it mapped.
    staging: Vec<(wgpu::Buffer, Arc<AtomicBool>)>,
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

    /// Copies `len` floats of `id` into a free staging buffer and submits; returns that buffer
    /// and its busy flag (set; the reader clears it once the buffer is unmapped).
    fn submit_copy(&mut self, id: BufId) -> Result<(wgpu::Buffer, u64, Arc<AtomicBool>)> {
        let bytes = (self.slot(id).len * 4) as u64;
        let free = self
            .staging
            .iter()
            .position(|(b, busy)| b.size() >= bytes && !busy.load(Ordering::Acquire));
        let (staging, busy) = match free {
            Some(i) => self.staging[i].clone(),
            None => {
                let size = bytes.next_power_of_two().max(256);
                let b = self.create_buffer(
                    size,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    "readback staging",
                )?;
                // A free buffer that was too small is replaced; busy ones stay with their readers.
                self.staging.retain(|(_, busy)| busy.load(Ordering::Acquire));
                self.staging.push((b, Arc::new(AtomicBool::new(false))));
                self.staging.last().expect("just pushed").clone()
            }
        };
        busy.store(true, Ordering::Release);
        let dev = self.dev.clone();
        let src = self.slot(id).buffer.clone();
        dev.scoped("readback", || {
            let mut enc = dev.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
            enc.copy_buffer_to_buffer(&src, 0, &staging, 0, bytes);
            dev.queue.submit([enc.finish()]);
        })
        .inspect_err(|_| busy.store(false, Ordering::Release))?;
        self.counters.submissions += 1;
        Ok((staging, bytes, busy))
    }
}

fn copy_out(staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>> {
    let view = staging.get_mapped_range(..bytes).map_err(|e| Error::Gpu {
        during: "readback",
        detail: e.to_string(),
    })?;
    let v = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
    drop(view);
    staging.unmap();
    Ok(v)
}

/// An in-flight asynchronous readback.
pub struct PendingRead {
    dev: Arc<GpuDevice>,
    staging: wgpu::Buffer,
    bytes: u64,
    state: Arc<Mutex<Option<std::result::Result<(), String>>>>,
    busy: Arc<AtomicBool>,
    done: bool,
}

impl Drop for PendingRead {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped unawaited: free the buffer if its mapping finished; a mapping still in flight
        // keeps the buffer busy (it is not reused).
        match self.state.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(Ok(())) => {
                self.staging.unmap();
                self.busy.store(false, Ordering::Release);
            }
            Some(Err(_)) => self.busy.store(false, Ordering::Release),
            None => {}
        }
    }
}

impl PendingRead {
    pub(crate) fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<Vec<f32>>> {
        // Native wgpu delivers map callbacks from Device::poll; drive it without blocking.
        if let Err(e) = self.dev.device.poll(wgpu::PollType::Poll) {
            return std::task::Poll::Ready(Err(Error::Gpu {
                during: "readback",
                detail: e.to_string(),
            }));
        }
        let outcome = self.state.lock().unwrap_or_else(|p| p.into_inner()).take();
        let ready = match outcome {
            // The buffer is free again only once unmapped (copy_out unmaps).
            Some(Ok(())) => copy_out(&self.staging, self.bytes),
            Some(Err(e)) => Err(Error::Gpu {
                during: "readback",
                detail: e,
            }),
            None => {
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
        };
        self.done = true;
        self.busy.store(false, Ordering::Release);
        std::task::Poll::Ready(ready)
    }
}

impl Executor for GpuExecutor {
    fn alloc(&mut self, len: usize, what: &str) -> Result<BufId> {
        let limits = self.dev.device.limits();
        let bytes = (len as u64).saturating_mul(4);
        let cap = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        if bytes > limits.max_storage_buffer_binding_size {
            return Err(Error::LimitExceeded {
                what: what.to_string(),
                size: bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit: limits.max_storage_buffer_binding_size,
            });
        }
        if bytes > limits.max_buffer_size {
            return Err(Error::LimitExceeded {
                what: what.to_string(),
                size: bytes,
                limit_name: "max_buffer_size",
                limit: limits.max_buffer_size,
            });
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
        let (staging, bytes, busy) = self.submit_copy(buf)?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
        // Another thread polling the same device may be the one that runs our callback, a
        // moment after our own poll returns: wait for the callback itself, not just the poll.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        let outcome = loop {
            self.dev
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu {
                    during: "readback",
                    detail: e.to_string(),
                })?;
            self.dev.check_alive()?;
            match rx.recv_timeout(std::time::Duration::from_millis(1)) {
                Ok(r) => break r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if std::time::Instant::now() < deadline => continue,
                // Still in flight: the buffer stays busy (it is not reused).
                Err(_) => {
                    return Err(Error::Gpu {
                        during: "readback",
                        detail: "buffer mapping did not complete".into(),
                    })
                }
            }
        };
        let data = match outcome {
            Ok(()) => copy_out(&staging, bytes),
            Err(e) => Err(Error::Gpu {
                during: "readback",
                detail: e,
            }),
        };
        busy.store(false, Ordering::Release);
        data
    }

    fn read_async(&mut self, buf: BufId) -> Result<ReadFuture> {
        let (staging, bytes, busy) = self.submit_copy(buf)?;
        let state = Arc::new(Mutex::new(None));
        let s2 = state.clone();
        staging.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            *s2.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.map_err(|e| e.to_string()));
        });
        Ok(ReadFuture {
            inner: ReadInner::Gpu(PendingRead {
                dev: self.dev.clone(),
                staging,
                bytes,
                state,
                busy,
                done: false,
            }),
        })
    }

    fn compile(&mut self, kernels: Vec<Kernel>) -> Result<ProgramId> {
        let dev = self.dev.clone();
        let max_dim = dev.device.limits().max_compute_workgroups_per_dimension;
        let mut launches = Vec::with_capacity(kernels.len());
        for k in &kernels {
            launches.extend(lower_all(k, max_dim, dev.matmul)?);
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
        let mut steps = Vec::with_capacity(launches.len());
        for (i, l) in launches.iter().enumerate() {
            let (pipeline, bgl, compiled) = dev.pipeline(l)?;
            self.counters.pipelines_compiled += compiled as u64;
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
        self.programs.push(Some(Program {
            steps,
            _params: params,
            params_bytes,
        }));
        Ok(self.programs.len() - 1)
    }

    fn run(&mut self, programs: &[ProgramId]) -> Result<()> {
        let dev = self.dev.clone();
        let mut dispatches = 0;
        {
            let progs: Vec<&Program> = programs
                .iter()
                .map(|&p| {
                    self.programs[p]
                        .as_ref()
                        .expect("program ids handed out by compile stay valid until discard")
                })
                .collect();
            dev.scoped("running kernels", || {
                let mut enc = dev.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("wgrad step"),
                });
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: None,
                    });
                    for prog in &progs {
                        for s in &prog.steps {
                            pass.set_pipeline(&s.pipeline);
                            pass.set_bind_group(0, &s.bind_group, &[]);
                            pass.dispatch_workgroups(s.groups[0], s.groups[1], s.groups[2]);
                            dispatches += 1;
                        }
                    }
                }
                dev.queue.submit([enc.finish()]);
            })?;
        }
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
        self.max_storage_buffers() >= 6 && self.dev.matmul.has_epilogue(m, k, n)
    }

    fn wait(&mut self) -> Result<()> {
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
        let r = ex.compile(vec![Kernel::Fill {
            out: b,
            len: 4,
            value: 1.0,
            acc: false,
        }]);
        assert!(r.is_err(), "after loss, calls fail instead of hanging");
    }
}
