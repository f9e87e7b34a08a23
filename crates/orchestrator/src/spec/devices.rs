//! Which devices trials run on: the spec's `devices:` section and the `--devices` flag.

use super::locate::{Locator, yaml_short};
use crate::error::Result;

/// Which devices trials run on.
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceSpec {
    /// The CUDA devices this machine gives (an inherited `CUDA_VISIBLE_DEVICES`, else `nvidia-smi -L`, MIG
    /// instances included), one trial each, when the program can use them; else one CPU slot per core.
    Auto,
    /// `devices: {cpu: N}`: N trials at once on the CPU.
    Cpu {
        /// How many.
        slots: usize,
    },
    /// `devices: {gpu: [0, 1], trials_per_device: K, backend: …}`.
    Gpu {
        /// The GPUs to use, by index.
        indices: Vec<u32>,
        /// Trials at once on each.
        trials_per_device: usize,
        /// How trials reach them.
        backend: GpuBackend,
    },
}

impl DeviceSpec {
    /// Whether planning its slots asks `nvidia-smi` (`auto`, and CUDA indices to check and resolve).
    pub fn lists_gpus(&self) -> bool {
        matches!(self, DeviceSpec::Auto | DeviceSpec::Gpu { backend: GpuBackend::Cuda, .. })
    }

    /// The command-line form (`--devices`): `auto`, `cpu[:N]`, `gpu:0,1` (CUDA) or `wgpu:0`, with
    /// `trials_per_device` (from `--trials-per-device`) for GPUs; `None` keeps one trial per GPU.
    pub fn from_flag(text: &str, trials_per_device: Option<usize>) -> std::result::Result<Self, String> {
        const VALID: &str = "valid: auto, cpu, cpu:N, gpu:0,1 (CUDA), wgpu:0";
        let (kind, rest) = text.split_once(':').map_or((text, None), |(k, r)| (k, Some(r)));
        let per = trials_per_device.unwrap_or(1);
        if per == 0 {
            return Err("--trials-per-device must be at least 1".into());
        }
        let positive = |r: &str| r.trim().parse::<usize>().ok().filter(|n| *n >= 1);
        match (kind.trim(), rest) {
            ("auto", None) if trials_per_device.is_none() => Ok(DeviceSpec::Auto),
            ("cpu", None) => Ok(DeviceSpec::Cpu { slots: per }),
            ("cpu", Some(n)) => positive(n)
                .and_then(|n| n.checked_mul(per))
                .filter(|slots| *slots <= MAX_SLOTS)
                .map(|slots| DeviceSpec::Cpu { slots })
                .ok_or_else(|| {
                    format!("'{text}': the number of CPU slots must be a positive integer, at most {MAX_SLOTS} in all ({VALID})")
                }),
            (kind @ ("gpu" | "cuda" | "wgpu"), Some(list)) => {
                let indices: Vec<u32> =
                    list.split(',')
                        .map(|i| i.trim().parse::<u32>())
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|_| format!("'{text}': expected a comma-separated list of GPU indices ({VALID})"))?;
                let mut sorted = indices.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.len() != indices.len() {
                    return Err(format!("'{text}': a GPU index is listed twice"));
                }
                let backend = if kind == "wgpu" { GpuBackend::Wgpu } else { GpuBackend::Cuda };
                Ok(DeviceSpec::Gpu { indices, trials_per_device: per, backend })
            }
            _ => Err(format!("unknown device list '{text}' ({VALID}; --trials-per-device needs an explicit list)")),
        }
    }
}

/// How a trial reaches a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuBackend {
    /// CUDA: the trial is given `CUDA_VISIBLE_DEVICES`.
    Cuda,
    /// wgpu (Vulkan): the trial is given the adapter's index.
    Wgpu,
}

/// The most trial slots a spec may ask for (`cpu` or `gpu` × `trials_per_device`): far more than any machine
/// runs at once, and it keeps a slip such as `cpu: 1e12` from overflowing or allocating a pool that size.
pub const MAX_SLOTS: usize = 1024;

pub(super) fn parse_devices(value: Option<&serde_yaml::Value>, loc: &Locator<'_>) -> Result<DeviceSpec> {
    const VALID: &str = "valid: auto, {cpu: N}, or {gpu: [0, 1], trials_per_device: K, backend: cuda|wgpu}";
    let Some(value) = value else { return Ok(DeviceSpec::Auto) };
    let map = match value {
        serde_yaml::Value::Null => return Ok(DeviceSpec::Auto),
        serde_yaml::Value::String(s) if s == "auto" => return Ok(DeviceSpec::Auto),
        serde_yaml::Value::String(s) if s == "cpu" => return Ok(DeviceSpec::Cpu { slots: 1 }),
        serde_yaml::Value::Mapping(m) => m,
        other => return Err(loc.err("devices", format!("unexpected {} ({VALID})", yaml_short(other)))),
    };
    let get_usize = |key: &str| -> Result<Option<usize>> {
        match map.get(key) {
            None => Ok(None),
            Some(serde_yaml::Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=MAX_SLOTS as u64).contains(&n)) => {
                Ok(n.as_u64().map(|n| n as usize))
            }
            Some(other) => Err(loc.err(
                &format!("devices.{key}"),
                format!("expected a positive integer up to {MAX_SLOTS}, found {}", yaml_short(other)),
            )),
        }
    };
    for key in map.keys() {
        let name = key.as_str().unwrap_or("");
        if !["cpu", "gpu", "trials_per_device", "backend"].contains(&name) {
            return Err(loc.err("devices", format!("unknown key {} ({VALID})", yaml_short(key))));
        }
    }
    match (map.get("cpu"), map.get("gpu")) {
        (Some(_), Some(_)) => Err(loc.err("devices", format!("give cpu or gpu, not both ({VALID})"))),
        (Some(_), None) => {
            if map.contains_key("backend") {
                return Err(loc.err("devices.backend", "only meaningful with gpu"));
            }
            let (cpu, per) = (get_usize("cpu")?.unwrap_or(1), get_usize("trials_per_device")?.unwrap_or(1));
            if cpu * per > MAX_SLOTS {
                return Err(loc.err("devices", format!("cpu × trials_per_device = {} slots, at most {MAX_SLOTS}", cpu * per)));
            }
            Ok(DeviceSpec::Cpu { slots: cpu * per })
        }
        (None, Some(gpu)) => {
            let indices: Vec<u32> = match gpu {
                serde_yaml::Value::Sequence(items) if !items.is_empty() => items
                    .iter()
                    .map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| loc.err("devices.gpu", "expected a list of GPU indices, e.g. [0, 1]"))?,
                // An index beyond u32 is an error, not truncated onto another GPU.
                serde_yaml::Value::Number(n) if n.as_u64().is_some_and(|i| u32::try_from(i).is_ok()) => {
                    vec![n.as_u64().unwrap() as u32]
                }
                other => {
                    return Err(loc.err(
                        "devices.gpu",
                        format!("expected a list of GPU indices such as [0, 1], found {}", yaml_short(other)),
                    ));
                }
            };
            let mut sorted = indices.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != indices.len() {
                return Err(loc.err("devices.gpu", "a GPU index is listed twice"));
            }
            let backend = match map.get("backend").map(|b| b.as_str()) {
                None | Some(Some("cuda")) => GpuBackend::Cuda,
                Some(Some("wgpu")) => GpuBackend::Wgpu,
                Some(_) => return Err(loc.err("devices.backend", "valid: cuda, wgpu")),
            };
            let per = get_usize("trials_per_device")?.unwrap_or(1);
            if indices.len() * per > MAX_SLOTS {
                let slots = indices.len() * per;
                return Err(loc.err("devices", format!("gpu × trials_per_device = {slots} slots, at most {MAX_SLOTS}")));
            }
            Ok(DeviceSpec::Gpu { indices, trials_per_device: per, backend })
        }
        (None, None) => Err(loc.err("devices", format!("missing cpu or gpu ({VALID})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_flags() {
        assert_eq!(DeviceSpec::from_flag("auto", None), Ok(DeviceSpec::Auto));
        assert_eq!(DeviceSpec::from_flag("cpu:3", None), Ok(DeviceSpec::Cpu { slots: 3 }));
        assert_eq!(DeviceSpec::from_flag("cpu:2", Some(2)), Ok(DeviceSpec::Cpu { slots: 4 }));
        assert!(DeviceSpec::from_flag("cpu:99999", None).unwrap_err().contains("at most 1024"));
        assert!(DeviceSpec::from_flag("cpu:600", Some(2)).is_err());
        assert_eq!(
            DeviceSpec::from_flag("gpu:0,2", Some(2)),
            Ok(DeviceSpec::Gpu { indices: vec![0, 2], trials_per_device: 2, backend: GpuBackend::Cuda })
        );
        assert_eq!(
            DeviceSpec::from_flag("wgpu:1", None),
            Ok(DeviceSpec::Gpu { indices: vec![1], trials_per_device: 1, backend: GpuBackend::Wgpu })
        );
        for bad in ["gpu", "gpu:a", "gpu:0,0", "cpu:0", "tpu:1", "", "auto:1"] {
            let err = DeviceSpec::from_flag(bad, None).unwrap_err();
            assert!(err.contains("valid") || err.contains("twice"), "{bad}: {err}");
        }
        assert!(DeviceSpec::from_flag("gpu:0", Some(0)).is_err());
    }
}
