//! The device pool: which slots exist, and which are free.
//!
//! A slot is one (device, k) pair, so a device never runs more than `trials_per_device` trials:
//! the bound holds by construction, not by bookkeeping.

use std::fmt;

use crate::spec::{DeviceSpec, GpuBackend};

/// Where a trial runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Cuda(u32),
    Wgpu(u32),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Wgpu(i) => write!(f, "wgpu:{i}"),
        }
    }
}

impl Device {
    /// What the child sees. `CUDA_VISIBLE_DEVICES` narrows a CUDA child to its one GPU, which it
    /// then calls `cuda:0` (`NIGHTSHIFT_DEVICE`); `NIGHTSHIFT_GPU_INDEX` keeps the physical index.
    /// CPU children get no GPU and a fair share of the cores for their thread pools.
    pub fn env(&self, cpu_threads: usize) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: String| env.push((k.to_string(), v));
        match *self {
            Self::Cpu => {
                set("NIGHTSHIFT_DEVICE", "cpu".into());
                set("CUDA_VISIBLE_DEVICES", String::new());
                for var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"] {
                    if std::env::var_os(var).is_none() {
                        set(var, cpu_threads.max(1).to_string());
                    }
                }
            }
            Self::Cuda(i) => {
                set("NIGHTSHIFT_DEVICE", "cuda:0".into());
                set("NIGHTSHIFT_GPU_INDEX", i.to_string());
                set("CUDA_VISIBLE_DEVICES", i.to_string());
            }
            Self::Wgpu(i) => {
                set("NIGHTSHIFT_DEVICE", format!("wgpu:{i}"));
                set("NIGHTSHIFT_GPU_INDEX", i.to_string());
                set("WGPU_ADAPTER_INDEX", i.to_string());
            }
        }
        env
    }
}

/// One place a trial can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub index: usize,
    pub device: Device,
}

/// The slots a device spec gives on this machine. `gpus` is what discovery found (`auto` only).
pub fn slots_for(spec: &DeviceSpec, cores: usize, gpus: &[u32]) -> Vec<Slot> {
    let devices: Vec<Device> = match spec {
        DeviceSpec::Auto if !gpus.is_empty() => gpus.iter().map(|i| Device::Cuda(*i)).collect(),
        // One trial per core: CPU training parallelises poorly at these sizes, and trials in separate
        // processes keep every core busy (2 slots on a 2-core machine).
        DeviceSpec::Auto => vec![Device::Cpu; cores.max(1)],
        DeviceSpec::Cpu { slots } => vec![Device::Cpu; *slots],
        DeviceSpec::Gpu { indices, trials_per_device, backend } => indices
            .iter()
            .flat_map(|i| {
                let device = match backend {
                    GpuBackend::Cuda => Device::Cuda(*i),
                    GpuBackend::Wgpu => Device::Wgpu(*i),
                };
                std::iter::repeat_n(device, *trials_per_device)
            })
            .collect(),
    };
    devices.into_iter().enumerate().map(|(index, device)| Slot { index, device }).collect()
}

/// CUDA GPUs listed by `nvidia-smi -L` (empty when it is missing or fails).
pub fn discover_cuda_gpus() -> Vec<u32> {
    let Ok(out) = std::process::Command::new("nvidia-smi").arg("-L").output() else { return Vec::new() };
    if !out.status.success() {
        return Vec::new();
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `GPU 0: NVIDIA H100 (UUID: …)` lines.
pub fn parse_nvidia_smi(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.strip_prefix("GPU ")?.split(':').next()?.trim().parse().ok()).collect()
}

pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Device {
    /// A GPU, whose memory the trials on it share (CPU trials share host memory, where the
    /// kernel's OOM killer acts instead).
    pub fn is_gpu(&self) -> bool {
        matches!(self, Self::Cuda(_) | Self::Wgpu(_))
    }
}

/// Free/busy state of the slots.
#[derive(Debug)]
pub struct DevicePool {
    slots: Vec<Slot>,
    busy: Vec<bool>,
    /// Per slot: taken by [`DevicePool::acquire_alone`], holding its whole device.
    alone: Vec<bool>,
}

impl DevicePool {
    pub fn new(slots: Vec<Slot>) -> Self {
        let busy = vec![false; slots.len()];
        let alone = busy.clone();
        Self { slots, busy, alone }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn busy_count(&self) -> usize {
        self.busy.iter().filter(|b| **b).count()
    }

    pub fn has_free(&self) -> bool {
        self.busy.iter().any(|b| !*b)
    }

    /// Takes a free slot on the least-loaded device (spreads trials over GPUs before doubling up).
    pub fn acquire(&mut self) -> Option<Slot> {
        let load = |d: Device| self.slots.iter().zip(&self.busy).filter(|(s, b)| **b && s.device == d).count();
        let index = (0..self.slots.len()).filter(|i| !self.busy[*i]).min_by_key(|i| (load(self.slots[*i].device), *i))?;
        self.busy[index] = true;
        Some(self.slots[index])
    }

    /// Takes a slot on a device none of whose slots is busy, and holds the device's other slots
    /// until it is released: a trial that ran out of memory beside another runs again alone.
    pub fn acquire_alone(&mut self) -> Option<Slot> {
        let idle = |d: Device| self.slots.iter().zip(&self.busy).all(|(s, b)| s.device != d || !*b);
        let index = (0..self.slots.len()).find(|i| idle(self.slots[*i].device))?;
        let device = self.slots[index].device;
        for (slot, busy) in self.slots.iter().zip(self.busy.iter_mut()) {
            if slot.device == device {
                *busy = true;
            }
        }
        self.alone[index] = true;
        Some(self.slots[index])
    }

    pub fn release(&mut self, slot: Slot) {
        if std::mem::take(&mut self.alone[slot.index]) {
            for (s, busy) in self.slots.iter().zip(self.busy.iter_mut()) {
                if s.device == slot.device {
                    *busy = false;
                }
            }
        }
        self.busy[slot.index] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_k_trials_per_device() {
        let spec = DeviceSpec::Gpu { indices: vec![0, 3], trials_per_device: 2, backend: GpuBackend::Cuda };
        let mut pool = DevicePool::new(slots_for(&spec, 2, &[]));
        assert_eq!(pool.slots().len(), 4);
        let a = pool.acquire().unwrap();
        let b = pool.acquire().unwrap();
        assert_ne!(a.device, b.device, "spread before doubling up");
        let c = pool.acquire().unwrap();
        let d = pool.acquire().unwrap();
        assert!(pool.acquire().is_none());
        for dev in [Device::Cuda(0), Device::Cuda(3)] {
            assert_eq!([a, b, c, d].iter().filter(|s| s.device == dev).count(), 2);
        }
        pool.release(c);
        assert_eq!(pool.acquire().unwrap().device, c.device);
    }

    #[test]
    fn a_trial_alone_holds_its_whole_device() {
        let spec = DeviceSpec::Gpu { indices: vec![0, 1], trials_per_device: 2, backend: GpuBackend::Cuda };
        let mut pool = DevicePool::new(slots_for(&spec, 2, &[]));
        let a = pool.acquire().unwrap();
        let alone = pool.acquire_alone().unwrap();
        assert_ne!(alone.device, a.device, "only a device with nothing running will do");
        assert_eq!(pool.busy_count(), 3, "its neighbour slot is held too");
        assert!(pool.acquire_alone().is_none());
        let b = pool.acquire().unwrap();
        assert_eq!(b.device, a.device);
        assert!(pool.acquire().is_none());
        pool.release(alone);
        assert_eq!(pool.busy_count(), 2, "releasing it frees the whole device");
        pool.release(a);
        pool.release(b);
        assert!(pool.acquire_alone().is_some());
        assert!(Device::Cuda(0).is_gpu() && Device::Wgpu(1).is_gpu() && !Device::Cpu.is_gpu());
    }

    #[test]
    fn auto_uses_gpus_else_cores() {
        assert_eq!(slots_for(&DeviceSpec::Auto, 2, &[]).len(), 2);
        assert!(slots_for(&DeviceSpec::Auto, 8, &[]).iter().all(|s| s.device == Device::Cpu));
        let gpu = slots_for(&DeviceSpec::Auto, 8, &[0, 1]);
        assert_eq!(gpu.iter().map(|s| s.device).collect::<Vec<_>>(), [Device::Cuda(0), Device::Cuda(1)]);
        assert_eq!(parse_nvidia_smi("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\nGPU 1: X (UUID: GPU-2)\n"), [0, 1]);
        let env = Device::Cuda(3).env(1);
        assert!(env.contains(&("CUDA_VISIBLE_DEVICES".into(), "3".into())));
        assert!(env.contains(&("NIGHTSHIFT_DEVICE".into(), "cuda:0".into())));
    }
}
