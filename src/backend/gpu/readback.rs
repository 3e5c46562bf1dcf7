//! Readback: staging buffers shared between the executor, its readers and the map callbacks,
//! and the future an asynchronous read returns.

use super::GpuDevice;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex, MutexGuard};

/// Who holds a readback (staging) buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Holder {
    /// Nobody: it may be used for the next read.
    Free,
    /// A read in progress (blocking, or an async read not yet resolved or dropped).
    Reader,
    /// Its reader was dropped (or gave up) while the mapping was in flight: the executor takes
    /// it back once the mapping has completed.
    Abandoned,
}

/// A staging buffer's state, shared by the executor, its reader and the map callback.
pub(super) struct StagingState {
    pub holder: Holder,
    /// The outcome of `map_async`, set by its callback; `None` while it is in flight.
    pub mapped: Option<std::result::Result<(), String>>,
    /// The submission that copies into the buffer, to wait for when taking it back.
    pub submission: Option<wgpu::SubmissionIndex>,
    /// The task awaiting the mapping: the map callback wakes it (in a browser nothing else
    /// would: the callback comes from the event loop, not from polling).
    pub waker: Option<std::task::Waker>,
}

pub(super) type SharedState = Arc<Mutex<StagingState>>;

pub(super) fn lock(state: &SharedState) -> MutexGuard<'_, StagingState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A readback buffer of the executor and its shared state.
#[derive(Clone)]
pub(super) struct Staging {
    pub buffer: wgpu::Buffer,
    pub state: SharedState,
}

impl Staging {
    /// Frees the buffer if its reader abandoned it and its mapping has completed (unmapping
    /// it where the mapping succeeded). Returns whether it is free.
    pub fn reclaim(&self) -> bool {
        let mut st = lock(&self.state);
        if st.holder == Holder::Abandoned {
            match st.mapped.take() {
                Some(Ok(())) => self.buffer.unmap(),
                Some(Err(_)) => {}
                None => return false,
            }
            st.holder = Holder::Free;
        }
        st.holder == Holder::Free
    }
}

/// The first `bytes` of a mapped staging buffer as floats; unmaps it in every case.
pub(super) fn copy_out(staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>> {
    let v = staging
        .get_mapped_range(..bytes)
        .map(|view| bytemuck::cast_slice::<u8, f32>(&view).to_vec())
        .map_err(|e| Error::Gpu {
            during: "readback",
            detail: e.to_string(),
        });
    staging.unmap();
    v
}

/// An in-flight asynchronous readback. Dropping it before it resolves hands its staging buffer
/// back to the executor, which reuses it once the mapping completes.
pub struct PendingRead {
    pub(super) dev: Arc<GpuDevice>,
    pub(super) staging: Staging,
    pub(super) bytes: u64,
    pub(super) done: bool,
}

impl Drop for PendingRead {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = lock(&self.staging.state);
        match st.mapped.take() {
            // The mapping finished: unmap and free the buffer now.
            Some(Ok(())) => {
                self.staging.buffer.unmap();
                st.holder = Holder::Free;
            }
            Some(Err(_)) => st.holder = Holder::Free,
            // Still in flight: the executor takes the buffer back once it is mapped.
            None => st.holder = Holder::Abandoned,
        }
    }
}

impl PendingRead {
    pub(crate) fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<Vec<f32>>> {
        if self.done {
            return std::task::Poll::Ready(Err(Error::Gpu {
                during: "readback",
                detail: "the read was already resolved".into(),
            }));
        }
        // Native wgpu delivers map callbacks from Device::poll; drive it without blocking.
        if let Err(e) = self.dev.device.poll(wgpu::PollType::Poll) {
            return std::task::Poll::Ready(Err(Error::Gpu {
                during: "readback",
                detail: e.to_string(),
            }));
        }
        let mut st = lock(&self.staging.state);
        let ready = match st.mapped.take() {
            Some(Ok(())) => copy_out(&self.staging.buffer, self.bytes),
            Some(Err(e)) => Err(Error::Gpu {
                during: "readback",
                detail: e,
            }),
            None => {
                st.waker = Some(cx.waker().clone());
                drop(st);
                // Natively the callback only comes from polling the device: ask to be polled
                // again. A browser delivers it by itself and the callback wakes the task.
                if !cfg!(target_arch = "wasm32") {
                    cx.waker().wake_by_ref();
                }
                return std::task::Poll::Pending;
            }
        };
        // copy_out unmapped the buffer (or the mapping failed): it is free again.
        st.holder = Holder::Free;
        self.done = true;
        std::task::Poll::Ready(ready)
    }
}
