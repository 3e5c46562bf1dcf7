//! Size checks: shapes a kernel can index, buffers the device can hold, and host memory within
//! the caller's limit and what the operating system reports available, all checked before
//! anything is allocated.

use super::Graph;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::{numel, MAX_RANK};

impl Graph {
    pub(super) fn check_shape(op: &'static str, shape: &[usize]) -> Result<()> {
        if shape.len() > MAX_RANK {
            return Err(Error::invalid_shape(
                op,
                shape,
                format!("rank {} exceeds the maximum of {MAX_RANK}", shape.len()),
            ));
        }
        if shape.contains(&0) {
            return Err(Error::invalid_shape(
                op,
                shape,
                "zero-sized dimensions are not supported",
            ));
        }
        if shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_none_or(|n| n > u32::MAX as usize / 2)
        {
            return Err(Error::invalid_shape(
                op,
                shape,
                "more elements than a kernel can index (2^31)",
            ));
        }
        Ok(())
    }

    /// Bytes of one element in this graph's buffers (8 on the f64 CPU backend, else 4).
    pub(super) fn elem_bytes(&self) -> u64 {
        match self.device {
            Device::CpuF64 => 8,
            _ => 4,
        }
    }

    /// Bounds every later request of this graph for host memory (buffers of the CPU backend,
    /// initial weights sampled by [`crate::nn`], values read back): a request for more than
    /// `bytes` is refused with [`Error::LimitExceeded`] before anything is allocated. `None`
    /// (the default) leaves only the operating system's bound: a request for more memory than
    /// it reports available (Linux: `MemAvailable`) is refused, checked for requests above 64 MiB.
    pub fn set_host_memory_limit(&mut self, bytes: Option<u64>) {
        self.host_limit = bytes;
    }

    /// The limit set by [`Graph::set_host_memory_limit`].
    pub fn host_memory_limit(&self) -> Option<u64> {
        self.host_limit
    }

    /// Refuses a request for `bytes` of host memory beyond the caller's limit or what the
    /// operating system reports available.
    pub(super) fn check_host(&self, what: &str, bytes: u64) -> Result<()> {
        if let Some(limit) = self.host_limit {
            if bytes > limit {
                return Err(Error::LimitExceeded {
                    what: what.to_string(),
                    size: bytes,
                    limit_name: "host memory limit (Graph::set_host_memory_limit)",
                    limit,
                });
            }
        }
        check_host_available(what, bytes)
    }

    /// Refuses one buffer of `bytes` that the device cannot hold: beyond the GPU's
    /// `max_storage_buffer_binding_size` or `max_buffer_size`, or, on the CPU backend (whose
    /// buffers are host memory), beyond the host bound.
    pub(super) fn check_buffer(&self, what: &str, bytes: u64) -> Result<()> {
        match &self.device {
            Device::Gpu(g) => {
                let l = g.limits();
                for (limit_name, limit) in [
                    ("max_storage_buffer_binding_size", l.max_storage_buffer_binding_size),
                    ("max_buffer_size", l.max_buffer_size),
                ] {
                    if bytes > limit {
                        return Err(Error::LimitExceeded {
                            what: what.to_string(),
                            size: bytes,
                            limit_name,
                            limit,
                        });
                    }
                }
                Ok(())
            }
            Device::Cpu | Device::CpuF64 => self.check_host(what, bytes),
        }
    }

    /// Checks, allocating nothing, that the parameters `tensors` ((name, shape) pairs) can be
    /// created together on this graph: every shape valid, every value and gradient buffer
    /// within the device's limits, and the host memory they need within the host bound (see
    /// [`Graph::set_host_memory_limit`]): the initial values of the largest, and on the CPU
    /// backend every value and gradient buffer too. Sizes are computed in u64; errors name `op`,
    /// the tensor, its shape and the limit. Layers call this before sampling initial weights.
    pub fn check_new_parameters(&self, op: &'static str, tensors: &[(&str, &[usize])]) -> Result<()> {
        let eb = self.elem_bytes();
        let (mut device_total, mut largest) = (0u64, 0u64);
        for &(name, shape) in tensors {
            Self::check_shape(op, shape).map_err(|e| match e {
                Error::InvalidShape { op, shape, reason } => Error::InvalidShape {
                    op,
                    shape,
                    reason: format!("parameter '{name}': {reason}"),
                },
                e => e,
            })?;
            // check_shape bounds the element count by 2^31, so these products fit in u64.
            let n = numel(shape) as u64;
            self.check_buffer(&format!("{op}: value of {name} {shape:?}"), n * eb)?;
            device_total = device_total.saturating_add(2 * n * eb);
            largest = largest.max(n * 4);
        }
        let host = match self.device {
            // The initial values and the copy queued for the upload.
            Device::Gpu(_) => 2 * largest,
            Device::Cpu | Device::CpuF64 => device_total.saturating_add(largest),
        };
        self.check_host(
            &format!("{op}: host memory for {} parameter tensors", tensors.len()),
            host,
        )
    }
}

/// Host requests up to this size are not checked against the memory the operating system
/// reports available (reading it costs a system call).
const HOST_CHECK_FLOOR: u64 = 64 << 20;

/// Bytes of host memory the operating system reports available (Linux: `MemAvailable` in
/// `/proc/meminfo`); `None` where unknown.
pub(crate) fn host_memory_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let kib: u64 = parts.next()?.parse().ok()?;
    (parts.next() == Some("kB")).then_some(kib.saturating_mul(1024))
}

/// Refuses a host request for more than the operating system reports available.
pub(crate) fn check_host_available(what: &str, bytes: u64) -> Result<()> {
    if bytes <= HOST_CHECK_FLOOR {
        return Ok(());
    }
    match host_memory_available() {
        Some(limit) if bytes > limit => Err(Error::LimitExceeded {
            what: what.to_string(),
            size: bytes,
            limit_name: "host memory available (MemAvailable)",
            limit,
        }),
        _ => Ok(()),
    }
}
