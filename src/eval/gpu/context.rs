//! The wgpu device shared by GPU evaluators, with device errors turned into typed
//! errors: error scopes around every submission, an uncaptured-error handler that
//! records instead of panicking, and a device-lost flag.

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// A GPU device and queue.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Errors that reached no scope, and device loss.
    stray: Arc<Mutex<Vec<String>>>,
}

/// Error scopes pushed by [`GpuContext::scope`], popped by [`GpuContext::check`].
pub(crate) struct Scope(Vec<wgpu::ErrorScopeGuard>);

impl GpuContext {
    /// Opens the first high-performance adapter of any backend (`WGPU_BACKEND` and the
    /// other wgpu environment variables apply). An error says why none was found.
    pub fn new() -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| Error::Device {
            backend: "gpu".into(),
            message: format!("no GPU adapter: {e}"),
        })?;
        Self::open(&adapter)
    }

    /// Opens the adapter `index` (`None`: as [`GpuContext::new`]) of the list that
    /// [`GpuContext::adapters`] gives: hardware adapters by PCI bus id, then software
    /// ones. With one GPU per process under a scheduler (Ray's `num_gpus`), the index
    /// is the scheduler's GPU id, CUDA's order where that is by PCI bus id
    /// (`CUDA_DEVICE_ORDER=PCI_BUS_ID`, or identical GPUs).
    pub fn with_adapter(index: Option<usize>) -> Result<Self> {
        let Some(index) = index else {
            return Self::new();
        };
        let adapters = Self::adapters();
        let Some(adapter) = adapters.get(index) else {
            let names: Vec<String> = adapters
                .iter()
                .map(|a| format!("{} ({})", a.get_info().name, a.get_info().device_pci_bus_id))
                .collect();
            return Err(Error::Device {
                backend: "gpu".into(),
                message: format!("no adapter {index}: the adapters are {names:?}"),
            });
        };
        Self::open(adapter)
    }

    /// The adapters of the backends wgpu finds (`WGPU_BACKEND` applies): hardware
    /// ones by PCI bus id, then software ones (lavapipe).
    pub fn adapters() -> Vec<wgpu::Adapter> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
        adapters.sort_by_key(|a| {
            let info = a.get_info();
            (
                info.device_type == wgpu::DeviceType::Cpu,
                info.device_pci_bus_id,
                info.name,
            )
        });
        adapters
    }

    fn open(adapter: &wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("mmm-budget"),
            // Subgroup operations where the adapter has them (the sums over a
            // workgroup, sums_subgroup.wgsl).
            required_features: adapter.features() & wgpu::Features::SUBGROUP,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Device {
            backend: format!("gpu ({})", info.name),
            message: format!("cannot open the device: {e}"),
        })?;
        let stray = Arc::new(Mutex::new(Vec::new()));
        let sink = stray.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let sink = stray.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut v) = sink.lock() {
                v.push(format!("device lost ({reason:?}): {message}"));
            }
        });
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            stray,
        })
    }

    /// The adapter's name and backend, e.g. `NVIDIA H100 80GB HBM3 (Vulkan)`.
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// Whether the adapter is a software rasteriser on the CPU (lavapipe, llvmpipe).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The smallest subgroup (SIMD width) the device may run a workgroup's invocations
    /// in, where it has subgroup operations (wgpu's `SUBGROUP` feature); `None` where
    /// it has none.
    pub fn subgroup_min_size(&self) -> Option<u32> {
        self.device
            .features()
            .contains(wgpu::Features::SUBGROUP)
            .then_some(self.info.subgroup_min_size.max(1))
    }

    /// The device's limits (the adapter's, requested in full).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    pub(crate) fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub(crate) fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    pub(crate) fn error(&self, message: String) -> Error {
        Error::Device {
            backend: format!("gpu ({})", self.adapter_name()),
            message,
        }
    }

    /// Starts catching validation, out-of-memory and internal errors.
    pub(crate) fn scope(&self) -> Scope {
        Scope(vec![
            self.device.push_error_scope(wgpu::ErrorFilter::Validation),
            self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
            self.device.push_error_scope(wgpu::ErrorFilter::Internal),
        ])
    }

    /// Ends a scope: the first error caught, or one that reached no scope, or a lost
    /// device, as an [`Error::Device`].
    pub(crate) fn check(&self, scope: Scope) -> Result<()> {
        let mut first = None;
        for guard in scope.0.into_iter().rev() {
            if let Some(e) = pollster::block_on(guard.pop()) {
                first.get_or_insert(e.to_string());
            }
        }
        if first.is_none()
            && let Ok(mut v) = self.stray.lock()
            && !v.is_empty()
        {
            first = Some(v.join("; "));
            v.clear();
        }
        match first {
            Some(message) => Err(self.error(message)),
            None => Ok(()),
        }
    }

    /// Waits for the queue and reads `bytes` from a MAP_READ buffer.
    pub(crate) fn read<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<T>> {
        let slice = buffer.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| self.error(format!("waiting for the device: {e}")))?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.error(format!("mapping a result buffer: {e}"))),
            Err(_) => return Err(self.error("the device dropped a buffer mapping".into())),
        }
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| self.error(format!("reading a result buffer: {e}")))?;
            bytemuck::cast_slice::<u8, T>(&view).to_vec()
        };
        buffer.unmap();
        Ok(out)
    }
}
