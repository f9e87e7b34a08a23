//! The device pool: which slots exist, and which are free.
//!
//! A slot is one (device, k) pair, so a device never runs more than `trials_per_device` trials:
//! the bound holds by construction, not by bookkeeping.

use std::fmt;

use crate::gpus::{CudaDevice, Host};
use crate::spec::{DeviceSpec, GpuBackend};

/// Where a trial runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU (every CPU slot shares it).
    Cpu,
    /// One CUDA device: a whole GPU or a MIG instance, as the child will see it.
    Cuda(CudaDevice),
    /// The N-th discrete adapter in wgpu's (Vulkan's) order.
    Wgpu(u32),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(d) => d.fmt(f),
            Self::Wgpu(i) => write!(f, "wgpu:{i}"),
        }
    }
}

impl Device {
    /// What the child opens (`{device}`, `NIGHTSHIFT_DEVICE`): a CUDA child sees its one device as
    /// `cuda:0`, because `CUDA_VISIBLE_DEVICES` shows it that device alone.
    pub fn child_name(&self) -> String {
        match self {
            Self::Cpu => "cpu".into(),
            Self::Cuda(_) => "cuda:0".into(),
            Self::Wgpu(i) => format!("wgpu:{i}"),
        }
    }

    /// The physical index (`{gpu_index}`, `NIGHTSHIFT_GPU_INDEX`): nvidia-smi's number of a CUDA GPU (the
    /// parent's for a MIG instance; the inherited entry itself when nvidia-smi cannot say), the adapter
    /// number of a wgpu slot, nothing on a CPU slot.
    pub fn gpu_index(&self) -> Option<String> {
        match self {
            Self::Cpu => None,
            Self::Cuda(d) => Some(d.physical()),
            Self::Wgpu(i) => Some(i.to_string()),
        }
    }

    /// What the child's environment gets. CPU children get no GPU and a fair share of the cores for
    /// their thread pools; CUDA children their one device, numbered in PCI order as nvidia-smi numbers
    /// it (CUDA's default order is fastest first).
    pub fn env(&self, cpu_threads: usize) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![("NIGHTSHIFT_DEVICE".into(), self.child_name())];
        if let Some(i) = self.gpu_index() {
            env.push(("NIGHTSHIFT_GPU_INDEX".into(), i));
        }
        let mut set = |k: &str, v: String| env.push((k.to_string(), v));
        match self {
            Self::Cpu => {
                set("CUDA_VISIBLE_DEVICES", String::new());
                for var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"] {
                    if std::env::var_os(var).is_none() {
                        set(var, cpu_threads.max(1).to_string());
                    }
                }
            }
            Self::Cuda(d) => {
                set("CUDA_VISIBLE_DEVICES", d.visible.clone());
                set("CUDA_DEVICE_ORDER", "PCI_BUS_ID".into());
            }
            // The adapter is chosen by `NIGHTSHIFT_DEVICE=wgpu:N` (the built-in trainer) or `{device}`.
            Self::Wgpu(_) => {}
        }
        env
    }
}

/// One place a trial can run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Its position in the pool (0-based, unique).
    pub index: usize,
    /// The device its trials run on.
    pub device: Device,
}

/// What a trial program can run on: a `command:` brings its own CUDA; the built-in trainer only the
/// GPU backends this binary was built with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runs {
    /// A `command:`: it is given whatever device the spec names.
    AnyDevice,
    /// The built-in trainer: the CPU, and GPUs only through the backends this binary was built with.
    BuiltinTrainer {
        /// The GPU backends compiled in (none in a CPU-only build).
        gpu_backends: Vec<GpuBackend>,
    },
}

/// The slots a spec gives on a host, and why, when that is not obvious (`devices: auto` fell back to
/// CPU, nvidia-smi could not be asked).
#[derive(Clone, Debug, PartialEq)]
pub struct SlotPlan {
    /// The slots, numbered from 0.
    pub slots: Vec<Slot>,
    /// What the user should know about how they were chosen.
    pub notes: Vec<String>,
}

/// How to get a GPU build, for messages.
pub const GPU_BUILD_HINT: &str = "build with `cargo build --release --features wgpu` (Vulkan; builds offline) or `--features cuda` (needs network access at build time)";

/// The slots `spec` gives on `host` for a program that `runs` so. Errors say which index or backend is
/// refused and what would be valid; they never name a GPU outside an inherited `CUDA_VISIBLE_DEVICES`.
pub fn plan_slots(spec: &DeviceSpec, runs: &Runs, host: &Host) -> Result<SlotPlan, String> {
    let can = |backend: GpuBackend| match runs {
        Runs::AnyDevice => true,
        Runs::BuiltinTrainer { gpu_backends } => gpu_backends.contains(&backend),
    };
    let mut notes = Vec::new();
    let devices: Vec<Device> = match spec {
        DeviceSpec::Cpu { slots } => vec![Device::Cpu; *slots],
        DeviceSpec::Auto => {
            let cuda = host.visible_cuda();
            let cpu = host.cores.max(1);
            let mig = cuda.iter().any(|d| d.mig.is_some());
            let found = match (&host.inherited, cuda.len()) {
                (Some(v), _) => format!("CUDA_VISIBLE_DEVICES={v:?} shows {} CUDA device(s)", cuda.len()),
                (None, n) if n > 0 => format!("nvidia-smi lists {n} CUDA device(s)"),
                (None, _) => match &host.listing {
                    crate::gpus::GpuListing::Listed(_) => "nvidia-smi lists no GPU".to_string(),
                    crate::gpus::GpuListing::Unavailable(why) => format!("no GPU found ({why})"),
                },
            };
            if cuda.is_empty() {
                notes.push(format!("devices auto: {found}: {cpu} CPU slot(s), one per core"));
                vec![Device::Cpu; cpu]
            } else if can(GpuBackend::Cuda) {
                let names: Vec<String> = cuda.iter().map(ToString::to_string).collect();
                notes.push(format!("devices auto: {found}: {}", names.join(", ")));
                cuda.into_iter().map(Device::Cuda).collect()
            } else if can(GpuBackend::Wgpu) && !mig {
                notes.push(format!(
                    "devices auto: {found}; this build trains through wgpu (Vulkan): wgpu:0..{} in Vulkan's adapter order{}",
                    cuda.len() - 1,
                    if host.inherited.is_some() {
                        " (Vulkan ignores CUDA_VISIBLE_DEVICES: only device cgroups keep other GPUs out)"
                    } else {
                        ""
                    }
                ));
                (0..cuda.len() as u32).map(Device::Wgpu).collect()
            } else {
                let why =
                    if mig { "MIG instances need the `cuda` feature" } else { "this nightshift was built without GPU support" };
                notes.push(format!(
                    "devices auto: {found}, but {why}, so the built-in trainer runs on {cpu} CPU slot(s); to train on the GPUs, {GPU_BUILD_HINT}"
                ));
                vec![Device::Cpu; cpu]
            }
        }
        DeviceSpec::Gpu { indices, trials_per_device, backend } => {
            if !can(*backend) {
                let feature = match backend {
                    GpuBackend::Cuda => "cuda",
                    GpuBackend::Wgpu => "wgpu",
                };
                return Err(format!(
                    "this nightshift was built without the `{feature}` feature, so the built-in trainer cannot run on {feature} GPUs; {GPU_BUILD_HINT}, or use devices: {{cpu: N}}"
                ));
            }
            let per_index: Vec<Vec<Device>> = match backend {
                GpuBackend::Wgpu => {
                    if host.inherited.is_some() {
                        notes.push("wgpu slots count Vulkan adapters; Vulkan ignores CUDA_VISIBLE_DEVICES".into());
                    }
                    indices.iter().map(|i| vec![Device::Wgpu(*i)]).collect()
                }
                GpuBackend::Cuda => indices
                    .iter()
                    .map(|i| cuda_devices_at(*i, host, &mut notes).map(|d| d.into_iter().map(Device::Cuda).collect()))
                    .collect::<Result<_, _>>()?,
            };
            per_index.into_iter().flatten().flat_map(|d| std::iter::repeat_n(d, *trials_per_device)).collect()
        }
    };
    let slots = devices.into_iter().enumerate().map(|(index, device)| Slot { index, device }).collect();
    Ok(SlotPlan { slots, notes })
}

/// The CUDA device(s) a spec's GPU index names: a position in the inherited `CUDA_VISIBLE_DEVICES` when
/// one is set, else nvidia-smi's index (a MIG GPU gives its instances); taken as given when nvidia-smi
/// cannot be asked.
fn cuda_devices_at(i: u32, host: &Host, notes: &mut Vec<String>) -> Result<Vec<CudaDevice>, String> {
    use crate::gpus::GpuListing;
    if let Some(text) = &host.inherited {
        let visible = host.visible_cuda();
        return match visible.get(i as usize) {
            Some(d) => Ok(vec![d.clone()]),
            None if visible.is_empty() => Err(format!(
                "GPU {i}: the inherited CUDA_VISIBLE_DEVICES={text:?} shows no GPU (GPU indices count positions in it)"
            )),
            None => Err(format!(
                "GPU {i}: the inherited CUDA_VISIBLE_DEVICES={text:?} shows {} GPU(s), so valid indices are 0..={}                  (GPU indices count positions in it; never a GPU outside it)",
                visible.len(),
                visible.len() - 1
            )),
        };
    }
    match &host.listing {
        GpuListing::Listed(gpus) => match gpus.iter().find(|g| g.index == i) {
            Some(gpu) => Ok(gpu.devices()),
            None => {
                let listed: Vec<String> = gpus.iter().map(|g| g.index.to_string()).collect();
                Err(format!(
                    "GPU {i}: nvidia-smi lists {} (valid indices: {})",
                    if gpus.is_empty() { "no GPU".to_string() } else { format!("{} GPU(s)", gpus.len()) },
                    if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
                ))
            }
        },
        GpuListing::Unavailable(why) => {
            let note = format!("GPU indices taken as given: {why}");
            if !notes.contains(&note) {
                notes.push(note);
            }
            Ok(vec![CudaDevice::index(i)])
        }
    }
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
    /// A pool over `slots`, all free.
    pub fn new(slots: Vec<Slot>) -> Self {
        let busy = vec![false; slots.len()];
        let alone = busy.clone();
        Self { slots, busy, alone }
    }

    /// Every slot, busy or free.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// How many slots are taken (a trial running alone takes its device's every slot).
    pub fn busy_count(&self) -> usize {
        self.busy.iter().filter(|b| **b).count()
    }

    /// Whether [`DevicePool::acquire`] would find a slot.
    pub fn has_free(&self) -> bool {
        self.busy.iter().any(|b| !*b)
    }

    /// Takes a free slot on the least-loaded device (spreads trials over GPUs before doubling up).
    pub fn acquire(&mut self) -> Option<Slot> {
        let load = |d: &Device| self.slots.iter().zip(&self.busy).filter(|(s, b)| **b && s.device == *d).count();
        let index = (0..self.slots.len()).filter(|i| !self.busy[*i]).min_by_key(|i| (load(&self.slots[*i].device), *i))?;
        self.busy[index] = true;
        Some(self.slots[index].clone())
    }

    /// Takes a slot on a device none of whose slots is busy, and holds the device's other slots
    /// until it is released: a trial that ran out of memory beside another runs again alone.
    pub fn acquire_alone(&mut self) -> Option<Slot> {
        let idle = |d: &Device| self.slots.iter().zip(&self.busy).all(|(s, b)| s.device != *d || !*b);
        let index = (0..self.slots.len()).find(|i| idle(&self.slots[*i].device))?;
        let device = self.slots[index].device.clone();
        for (slot, busy) in self.slots.iter().zip(self.busy.iter_mut()) {
            if slot.device == device {
                *busy = true;
            }
        }
        self.alone[index] = true;
        Some(self.slots[index].clone())
    }

    /// Gives `slot` back (with its device's other slots, when it was taken alone).
    pub fn release(&mut self, slot: &Slot) {
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
    use crate::gpus::{GpuListing, parse_nvidia_smi};

    const TWO: &str = "GPU 0: A (UUID: GPU-aaaa)\nGPU 1: B (UUID: GPU-bbbb)\n";

    fn host(inherited: Option<&str>, smi: Option<&str>) -> Host {
        let listing = match smi {
            Some(text) => GpuListing::Listed(parse_nvidia_smi(text)),
            None => GpuListing::Unavailable("nvidia-smi is not on PATH".into()),
        };
        Host { cores: 2, inherited: inherited.map(str::to_string), listing }
    }

    fn names(plan: &SlotPlan) -> Vec<String> {
        plan.slots.iter().map(|s| s.device.to_string()).collect()
    }

    const CPU_ONLY: Runs = Runs::BuiltinTrainer { gpu_backends: Vec::new() };

    fn gpu(indices: &[u32], per: usize, backend: GpuBackend) -> DeviceSpec {
        DeviceSpec::Gpu { indices: indices.to_vec(), trials_per_device: per, backend }
    }

    #[test]
    fn never_more_than_k_trials_per_device() {
        let plan = plan_slots(&gpu(&[0, 3], 2, GpuBackend::Cuda), &Runs::AnyDevice, &host(None, None)).unwrap();
        let mut pool = DevicePool::new(plan.slots);
        assert_eq!(pool.slots().len(), 4);
        let a = pool.acquire().unwrap();
        let b = pool.acquire().unwrap();
        assert_ne!(a.device, b.device, "spread before doubling up");
        let c = pool.acquire().unwrap();
        let d = pool.acquire().unwrap();
        assert!(pool.acquire().is_none());
        for dev in [Device::Cuda(CudaDevice::index(0)), Device::Cuda(CudaDevice::index(3))] {
            assert_eq!([&a, &b, &c, &d].iter().filter(|s| s.device == dev).count(), 2);
        }
        pool.release(&c);
        assert_eq!(pool.acquire().unwrap().device, c.device);
    }

    #[test]
    fn a_trial_alone_holds_its_whole_device() {
        let plan = plan_slots(&gpu(&[0, 1], 2, GpuBackend::Cuda), &Runs::AnyDevice, &host(None, None)).unwrap();
        let mut pool = DevicePool::new(plan.slots);
        let a = pool.acquire().unwrap();
        let alone = pool.acquire_alone().unwrap();
        assert_ne!(alone.device, a.device, "only a device with nothing running will do");
        assert_eq!(pool.busy_count(), 3, "its neighbour slot is held too");
        assert!(pool.acquire_alone().is_none());
        let b = pool.acquire().unwrap();
        assert_eq!(b.device, a.device);
        assert!(pool.acquire().is_none());
        pool.release(&alone);
        assert_eq!(pool.busy_count(), 2, "releasing it frees the whole device");
        pool.release(&a);
        pool.release(&b);
        assert!(pool.acquire_alone().is_some());
        assert!(Device::Cuda(CudaDevice::index(0)).is_gpu() && Device::Wgpu(1).is_gpu() && !Device::Cpu.is_gpu());
    }

    #[test]
    fn a_cuda_child_opens_cuda_0_and_keeps_the_physical_index() {
        let device = Device::Cuda(CudaDevice::index(3));
        assert_eq!((device.child_name(), device.gpu_index()), ("cuda:0".to_string(), Some("3".to_string())));
        let env = device.env(1);
        for (k, v) in [("CUDA_VISIBLE_DEVICES", "3"), ("NIGHTSHIFT_DEVICE", "cuda:0"), ("NIGHTSHIFT_GPU_INDEX", "3")] {
            assert!(env.contains(&(k.into(), v.into())), "{k}={v} in {env:?}");
        }
        assert!(env.contains(&("CUDA_DEVICE_ORDER".into(), "PCI_BUS_ID".into())));
        let mig = CudaDevice { visible: "MIG-c6d4".into(), gpu_index: Some(0), mig: Some(1) };
        let env = Device::Cuda(mig).env(1);
        assert!(env.contains(&("CUDA_VISIBLE_DEVICES".into(), "MIG-c6d4".into())), "{env:?}");
        assert!(env.contains(&("NIGHTSHIFT_GPU_INDEX".into(), "0".into())), "{env:?}");
        // wgpu: the adapter is in the device name; nothing sets a variable no one reads.
        let env = Device::Wgpu(1).env(1);
        assert_eq!(env, [("NIGHTSHIFT_DEVICE".into(), "wgpu:1".into()), ("NIGHTSHIFT_GPU_INDEX".into(), "1".into())]);
        assert_eq!(Device::Cpu.gpu_index(), None);
        assert!(Device::Cpu.env(2).contains(&("CUDA_VISIBLE_DEVICES".into(), String::new())));
    }

    #[test]
    fn auto_matches_the_program_and_the_build() {
        let two = host(None, Some(TWO));
        let any = plan_slots(&DeviceSpec::Auto, &Runs::AnyDevice, &two).unwrap();
        assert_eq!(names(&any), ["cuda:0", "cuda:1"]);
        let cuda = Runs::BuiltinTrainer { gpu_backends: vec![GpuBackend::Cuda, GpuBackend::Wgpu] };
        assert_eq!(names(&plan_slots(&DeviceSpec::Auto, &cuda, &two).unwrap()), ["cuda:0", "cuda:1"]);
        let wgpu = Runs::BuiltinTrainer { gpu_backends: vec![GpuBackend::Wgpu] };
        let plan = plan_slots(&DeviceSpec::Auto, &wgpu, &two).unwrap();
        assert_eq!(names(&plan), ["wgpu:0", "wgpu:1"]);
        // A CPU-only build: CPU slots, and one note that says why and how to build for the GPUs.
        let plan = plan_slots(&DeviceSpec::Auto, &CPU_ONLY, &two).unwrap();
        assert_eq!(names(&plan), ["cpu", "cpu"]);
        assert_eq!(plan.notes.len(), 1);
        assert!(plan.notes[0].contains("nvidia-smi lists 2 CUDA device(s)"), "{:?}", plan.notes);
        assert!(plan.notes[0].contains("built without GPU support") && plan.notes[0].contains("--features wgpu"));
        // No nvidia-smi: CPU slots, saying so.
        let plan = plan_slots(&DeviceSpec::Auto, &Runs::AnyDevice, &host(None, None)).unwrap();
        assert_eq!(names(&plan), ["cpu", "cpu"]);
        assert!(plan.notes[0].contains("nvidia-smi is not on PATH"), "{:?}", plan.notes);
    }

    #[test]
    fn an_inherited_allocation_is_never_left() {
        // Slurm gave GPUs 2 and 3 of four.
        let four = format!("{TWO}GPU 2: C (UUID: GPU-cccc)\nGPU 3: D (UUID: GPU-dddd)\n");
        let slurm = host(Some("2,3"), Some(&four));
        let auto = plan_slots(&DeviceSpec::Auto, &Runs::AnyDevice, &slurm).unwrap();
        assert_eq!(names(&auto), ["cuda:2", "cuda:3"]);
        // Spec indices are positions in that list.
        let plan = plan_slots(&gpu(&[1], 2, GpuBackend::Cuda), &Runs::AnyDevice, &slurm).unwrap();
        assert_eq!(names(&plan), ["cuda:3", "cuda:3"]);
        let Device::Cuda(d) = &plan.slots[0].device else { panic!("cuda") };
        assert_eq!(d.visible, "3");
        let err = plan_slots(&gpu(&[2], 1, GpuBackend::Cuda), &Runs::AnyDevice, &slurm).unwrap_err();
        assert!(err.contains("GPU 2") && err.contains("shows 2 GPU(s)") && err.contains("0..=1"), "{err}");
        // UUID entries stay UUIDs in the child's CUDA_VISIBLE_DEVICES.
        let uuids = plan_slots(&DeviceSpec::Auto, &Runs::AnyDevice, &host(Some("GPU-dddd"), Some(&four))).unwrap();
        let Device::Cuda(d) = &uuids.slots[0].device else { panic!("cuda") };
        assert_eq!((d.visible.as_str(), d.gpu_index), ("GPU-dddd", Some(3)));
        // An empty allocation has no GPU, whatever nvidia-smi lists.
        let none = plan_slots(&DeviceSpec::Auto, &Runs::AnyDevice, &host(Some(""), Some(&four))).unwrap();
        assert_eq!(names(&none), ["cpu", "cpu"]);
        assert!(plan_slots(&gpu(&[0], 1, GpuBackend::Cuda), &Runs::AnyDevice, &host(Some(""), None)).is_err());
    }

    #[test]
    fn explicit_gpus_are_checked_against_nvidia_smi_and_the_build() {
        let two = host(None, Some(TWO));
        let err = plan_slots(&gpu(&[5], 1, GpuBackend::Cuda), &Runs::AnyDevice, &two).unwrap_err();
        assert!(err.contains("GPU 5") && err.contains("valid indices: 0, 1"), "{err}");
        let err = plan_slots(&gpu(&[0], 1, GpuBackend::Cuda), &CPU_ONLY, &two).unwrap_err();
        assert!(err.contains("without the `cuda` feature") && err.contains("devices: {cpu: N}"), "{err}");
        let err = plan_slots(&gpu(&[0], 1, GpuBackend::Wgpu), &CPU_ONLY, &two).unwrap_err();
        assert!(err.contains("without the `wgpu` feature"), "{err}");
        // A command brings its own CUDA; without nvidia-smi the indices are taken as given, with a note.
        let plan = plan_slots(&gpu(&[0, 1], 1, GpuBackend::Cuda), &Runs::AnyDevice, &host(None, None)).unwrap();
        assert_eq!(names(&plan), ["cuda:0", "cuda:1"]);
        assert_eq!(plan.notes, ["GPU indices taken as given: nvidia-smi is not on PATH"]);
        // A MIG GPU gives one slot per instance (times trials_per_device).
        let mig = "GPU 0: A100 (UUID: GPU-a)\n  MIG 3g.20gb Device 0: (UUID: MIG-x)\n  MIG 3g.20gb Device 1: (UUID: MIG-y)\n";
        let plan = plan_slots(&gpu(&[0], 2, GpuBackend::Cuda), &Runs::AnyDevice, &host(None, Some(mig))).unwrap();
        assert_eq!(names(&plan), ["cuda:0/mig0", "cuda:0/mig0", "cuda:0/mig1", "cuda:0/mig1"]);
        assert_eq!(names(&plan_slots(&DeviceSpec::Cpu { slots: 3 }, &CPU_ONLY, &two).unwrap()), ["cpu", "cpu", "cpu"]);
    }
}
