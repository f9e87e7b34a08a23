//! What this machine offers CUDA programs: the GPUs and MIG instances `nvidia-smi -L` lists, and an
//! inherited `CUDA_VISIBLE_DEVICES` (Slurm, a container runtime, the user) that narrows them.
//!
//! Parsing is pure ([`parse_nvidia_smi`], [`parse_visible`], [`CudaGpu::resolve`]); [`Host::probe`] is the
//! one place that reads the environment and runs `nvidia-smi`, with a timeout so that a wedged driver
//! cannot hang `run` or `check`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long `nvidia-smi -L` may take (it can take seconds on a node without persistence mode).
pub const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(10);

/// Overrides [`NVIDIA_SMI_TIMEOUT`], e.g. `NIGHTSHIFT_NVIDIA_SMI_TIMEOUT=30s`.
pub const NVIDIA_SMI_TIMEOUT_ENV: &str = "NIGHTSHIFT_NVIDIA_SMI_TIMEOUT";

/// One physical GPU as `nvidia-smi -L` lists it, with its MIG instances when MIG is enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaGpu {
    /// nvidia-smi's index (PCI bus order).
    pub index: u32,
    /// Its model name, e.g. `NVIDIA H200`.
    pub name: String,
    /// `GPU-…`, when listed.
    pub uuid: Option<String>,
    /// With MIG enabled, CUDA sees these instances and not the GPU itself.
    pub mig: Vec<MigInstance>,
}

/// One MIG instance (`  MIG 1g.10gb Device  0: (UUID: MIG-…)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigInstance {
    /// The instance's number within its GPU ("Device N").
    pub device: u32,
    /// The profile, e.g. `1g.10gb`.
    pub profile: String,
    /// `MIG-…`: what `CUDA_VISIBLE_DEVICES` names it by.
    pub uuid: String,
}

/// One device a CUDA child can be given alone: what its `CUDA_VISIBLE_DEVICES` holds, and what we know
/// about it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CudaDevice {
    /// The `CUDA_VISIBLE_DEVICES` entry that shows the child this device alone: an index, a `GPU-…` or a
    /// `MIG-…` UUID, as the parent sees it.
    pub visible: String,
    /// nvidia-smi's index of the GPU (of the parent GPU for a MIG instance), when known.
    pub gpu_index: Option<u32>,
    /// The MIG instance's number within that GPU, when it is one.
    pub mig: Option<u32>,
}

impl CudaDevice {
    /// A GPU named by its nvidia-smi index, as when nothing more is known.
    pub fn index(i: u32) -> Self {
        Self { visible: i.to_string(), gpu_index: Some(i), mig: None }
    }

    /// The physical index for `{gpu_index}` and `NIGHTSHIFT_GPU_INDEX`: nvidia-smi's number, else the entry.
    pub fn physical(&self) -> String {
        self.gpu_index.map_or_else(|| self.visible.clone(), |i| i.to_string())
    }
}

impl std::fmt::Display for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.gpu_index, self.mig) {
            (Some(i), Some(m)) => write!(f, "cuda:{i}/mig{m}"),
            (Some(i), None) => write!(f, "cuda:{i}"),
            (None, _) => write!(f, "cuda:{}", self.visible),
        }
    }
}

/// Parses `nvidia-smi -L`: `GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-…)` lines, each followed by its
/// indented `MIG 1g.10gb Device 0: (UUID: MIG-…)` lines when MIG is enabled. Other lines are ignored.
pub fn parse_nvidia_smi(text: &str) -> Vec<CudaGpu> {
    let mut gpus: Vec<CudaGpu> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("GPU ") {
            let Some((index, rest)) = rest.split_once(':') else { continue };
            let Ok(index) = index.trim().parse() else { continue };
            let name = rest.split(" (UUID:").next().unwrap_or("").trim().to_string();
            gpus.push(CudaGpu { index, name, uuid: uuid_of(rest), mig: Vec::new() });
        } else if let Some(rest) = line.strip_prefix("MIG ") {
            // `MIG 1g.10gb     Device  0: (UUID: MIG-…)`; older drivers: `MIG 1g.5gb Device 0: (UUID: MIG-GPU-…/1/0)`.
            let (Some(gpu), Some((head, tail))) = (gpus.last_mut(), rest.split_once(':')) else { continue };
            let mut words = head.split_whitespace();
            let profile = words.next().unwrap_or("").to_string();
            let device = words.skip_while(|w| *w != "Device").nth(1).and_then(|d| d.parse().ok());
            if let (Some(device), Some(uuid)) = (device, uuid_of(tail)) {
                gpu.mig.push(MigInstance { device, profile, uuid });
            }
        }
    }
    gpus
}

fn uuid_of(text: &str) -> Option<String> {
    let after = text.split_once("UUID:")?.1;
    let uuid = after.trim().trim_end_matches(')').trim();
    (!uuid.is_empty()).then(|| uuid.to_string())
}

/// `CUDA_VISIBLE_DEVICES` as CUDA reads it: comma-separated indices or `GPU-`/`MIG-` UUIDs (or their
/// prefixes), up to the first entry that is neither (CUDA ignores that one and all after it, so `-1`,
/// `NoDevFiles` or an empty value hide every GPU).
pub fn parse_visible(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .take_while(|e| e.parse::<u32>().is_ok() || e.starts_with("GPU-") || e.starts_with("MIG-"))
        .map(str::to_string)
        .collect()
}

impl CudaGpu {
    /// The CUDA devices this GPU gives: its MIG instances when MIG is on, else the GPU itself.
    pub fn devices(&self) -> Vec<CudaDevice> {
        if self.mig.is_empty() {
            return vec![CudaDevice::index(self.index)];
        }
        self.mig
            .iter()
            .map(|m| CudaDevice { visible: m.uuid.clone(), gpu_index: Some(self.index), mig: Some(m.device) })
            .collect()
    }

    /// The device an inherited `CUDA_VISIBLE_DEVICES` entry names, completed from `gpus` when they list
    /// it (an index, a GPU UUID or a MIG UUID, or a prefix of one, as CUDA accepts). The entry is kept
    /// as written: it is what the child's `CUDA_VISIBLE_DEVICES` gets.
    pub fn resolve(entry: &str, gpus: &[CudaGpu]) -> CudaDevice {
        let named = |uuid: &Option<String>| uuid.as_deref().is_some_and(|u| u.starts_with(entry));
        let known = if let Ok(i) = entry.parse::<u32>() {
            gpus.iter().find(|g| g.index == i).map(|g| (g.index, None))
        } else {
            gpus.iter().find_map(|g| {
                if named(&g.uuid) {
                    return Some((g.index, None));
                }
                g.mig.iter().find(|m| m.uuid.starts_with(entry)).map(|m| (g.index, Some(m.device)))
            })
        };
        let (gpu_index, mig) = match known {
            Some((i, mig)) => (Some(i), mig),
            None => (entry.parse().ok(), None),
        };
        CudaDevice { visible: entry.to_string(), gpu_index, mig }
    }
}

/// What `nvidia-smi -L` said, or why it said nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum GpuListing {
    /// The GPUs it listed, in its order.
    Listed(Vec<CudaGpu>),
    /// Not consulted, missing, failed or timed out: the reason, for messages.
    Unavailable(String),
}

impl GpuListing {
    /// The GPUs listed; none when nvidia-smi was not asked or failed.
    pub fn gpus(&self) -> &[CudaGpu] {
        match self {
            GpuListing::Listed(gpus) => gpus,
            GpuListing::Unavailable(_) => &[],
        }
    }
}

/// The facts about this machine that decide the trial slots.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// CPU cores this process may use.
    pub cores: usize,
    /// `CUDA_VISIBLE_DEVICES` as inherited, when set.
    pub inherited: Option<String>,
    /// What `nvidia-smi -L` said (asked only when the spec can use GPUs).
    pub listing: GpuListing,
}

impl Host {
    /// Reads this machine; runs `nvidia-smi -L` only when `with_gpus` (a `cpu` spec needs no GPU).
    pub fn probe(with_gpus: bool) -> Self {
        let listing = if with_gpus { list_gpus(nvidia_smi_timeout()) } else { GpuListing::Unavailable("not consulted".into()) };
        Self { cores: available_cores(), inherited: std::env::var("CUDA_VISIBLE_DEVICES").ok(), listing }
    }

    /// The CUDA devices a program started here may use, in CUDA's order: the inherited
    /// `CUDA_VISIBLE_DEVICES` entries when it is set (never a GPU outside it), else every GPU nvidia-smi
    /// lists (its MIG instances when MIG is on).
    pub fn visible_cuda(&self) -> Vec<CudaDevice> {
        match &self.inherited {
            Some(text) => parse_visible(text).iter().map(|e| CudaGpu::resolve(e, self.listing.gpus())).collect(),
            None => self.listing.gpus().iter().flat_map(CudaGpu::devices).collect(),
        }
    }
}

/// The CPU cores this process may use (1 when the system will not say).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn nvidia_smi_timeout() -> Duration {
    std::env::var(NVIDIA_SMI_TIMEOUT_ENV).ok().and_then(|t| crate::spec::parse_duration(&t)).unwrap_or(NVIDIA_SMI_TIMEOUT)
}

/// Runs `nvidia-smi -L` in its own process group and kills the group if it outlives `timeout`.
pub fn list_gpus(timeout: Duration) -> GpuListing {
    use std::os::unix::process::CommandExt;
    let child = Command::new("nvidia-smi")
        .arg("-L")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return GpuListing::Unavailable("nvidia-smi is not on PATH".into());
        }
        Err(e) => return GpuListing::Unavailable(format!("nvidia-smi could not start: {e}")),
    };
    let pid = child.id();
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let (tx, rx) = std::sync::mpsc::channel();
    // The reader owns the child: it reads both pipes to EOF, then reaps it.
    std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let err_reader = stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        });
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(h) = err_reader {
            err = h.join().unwrap_or_default();
        }
        let _ = tx.send((child.wait(), out, err));
    });
    match rx.recv_timeout(timeout) {
        Ok((Ok(status), out, _)) if status.success() => GpuListing::Listed(parse_nvidia_smi(&out)),
        Ok((Ok(status), out, err)) => {
            let said = if err.trim().is_empty() { out } else { err };
            let said = said.lines().next().unwrap_or("").trim().to_string();
            GpuListing::Unavailable(format!("nvidia-smi -L failed ({status}): {said}"))
        }
        Ok((Err(e), _, _)) => GpuListing::Unavailable(format!("nvidia-smi -L: {e}")),
        Err(_) => {
            // SAFETY: kill(2) on the process group we created (its leader is not reaped yet: the reader
            // thread still holds it); that thread then reaps it.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            GpuListing::Unavailable(format!(
                "nvidia-smi -L did not answer within {}s (killed; {NVIDIA_SMI_TIMEOUT_ENV} sets the limit)",
                timeout.as_secs_f64()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa1111-0000-0000-0000-000000000000)\n\
                       GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbb2222-0000-0000-0000-000000000000)\n";

    const MIG: &str = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)\n  \
                       MIG 3g.20gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)\n  \
                       MIG 1g.5gb      Device  1: (UUID: MIG-cba663e8-9bed-5b7e-b8c7-0e6c9e5a3e4d)\n\
                       GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-77777777-d33d-2b2c-524d-9e3d8d2b8a77)\n";

    #[test]
    fn nvidia_smi_lines_parse_with_uuids_and_mig_instances() {
        let gpus = parse_nvidia_smi(TWO);
        assert_eq!(gpus.iter().map(|g| g.index).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(gpus[1].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpus[1].uuid.as_deref(), Some("GPU-bbbb2222-0000-0000-0000-000000000000"));
        let gpus = parse_nvidia_smi(MIG);
        assert_eq!(gpus.len(), 2);
        assert_eq!(
            gpus[0].mig,
            [
                MigInstance { device: 0, profile: "3g.20gb".into(), uuid: "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f".into() },
                MigInstance { device: 1, profile: "1g.5gb".into(), uuid: "MIG-cba663e8-9bed-5b7e-b8c7-0e6c9e5a3e4d".into() },
            ]
        );
        assert!(gpus[1].mig.is_empty());
        // The older MIG form and noise lines.
        let old = parse_nvidia_smi("GPU 0: A100 (UUID: GPU-x)\n  MIG 1g.5gb Device 0: (UUID: MIG-GPU-x/1/0)\nNo devices found\n");
        assert_eq!(old[0].mig[0].uuid, "MIG-GPU-x/1/0");
        assert!(parse_nvidia_smi("No devices were found\n").is_empty());
    }

    #[test]
    fn a_mig_gpu_gives_its_instances_and_a_plain_gpu_itself() {
        let gpus = parse_nvidia_smi(MIG);
        let host = Host { cores: 4, inherited: None, listing: GpuListing::Listed(gpus) };
        let shown: Vec<String> = host.visible_cuda().iter().map(|d| format!("{d}={}", d.visible)).collect();
        assert_eq!(
            shown,
            [
                "cuda:0/mig0=MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f",
                "cuda:0/mig1=MIG-cba663e8-9bed-5b7e-b8c7-0e6c9e5a3e4d",
                "cuda:1=1"
            ]
        );
    }

    #[test]
    fn cuda_visible_devices_is_read_as_cuda_reads_it() {
        assert_eq!(parse_visible("2,3"), ["2", "3"]);
        assert_eq!(parse_visible(" 1 , GPU-abc,MIG-def"), ["1", "GPU-abc", "MIG-def"]);
        // CUDA stops at the first invalid entry.
        assert_eq!(parse_visible("0,-1,2"), ["0"]);
        assert!(parse_visible("").is_empty());
        assert!(parse_visible("NoDevFiles").is_empty());
    }

    #[test]
    fn inherited_entries_are_resolved_but_kept_as_written() {
        let gpus = parse_nvidia_smi(TWO);
        let host = |v: &str| Host { cores: 1, inherited: Some(v.into()), listing: GpuListing::Listed(gpus.clone()) };
        let devices = host("1,GPU-aaaa").visible_cuda();
        assert_eq!(
            devices,
            [
                CudaDevice { visible: "1".into(), gpu_index: Some(1), mig: None },
                CudaDevice { visible: "GPU-aaaa".into(), gpu_index: Some(0), mig: None },
            ]
        );
        // A UUID nvidia-smi does not list keeps its name; an index outside the listing keeps its number.
        let unknown = host("GPU-ffff,7").visible_cuda();
        assert_eq!(unknown[0].to_string(), "cuda:GPU-ffff");
        assert_eq!(unknown[0].physical(), "GPU-ffff");
        assert_eq!(unknown[1].physical(), "7");
        // A MIG UUID names its parent GPU.
        let mig = Host { cores: 1, inherited: Some("MIG-cba6".into()), listing: GpuListing::Listed(parse_nvidia_smi(MIG)) };
        assert_eq!(mig.visible_cuda()[0].to_string(), "cuda:0/mig1");
        // Set but empty: no GPU at all, whatever nvidia-smi lists.
        assert!(host("").visible_cuda().is_empty());
    }
}
