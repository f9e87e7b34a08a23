//! Turning a device assignment (`NIGHTSHIFT_DEVICE`, `--device`) into a burn [`Device`].

use burn::prelude::*;

use crate::error::{Error, Result};

/// Parses `cpu` (alias `flex`), `wgpu`, `wgpu:N` (N-th discrete GPU), `wgpu:integrated`, `wgpu:cpu`
/// (a software adapter such as lavapipe), `cuda` or `cuda:N`. GPU kinds need the crate's `wgpu` / `cuda`
/// features. Never `Device::default()`: it prefers any wgpu adapter, even a software one.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let (kind, index) = match spec.split_once(':') {
        Some((k, i)) => (k, Some(i)),
        None => (spec.as_str(), None),
    };
    let bad_index = |i: &str| Error::config("device", format!("bad device index {i:?} in {spec:?}"));
    match kind {
        "cpu" | "flex" if index.is_none() => Ok(Device::flex()),
        "wgpu" => wgpu_device(index.map(|i| i.to_string()), &spec),
        "cuda" => {
            let n = index.map(|i| i.parse::<usize>().map_err(|_| bad_index(i))).transpose()?.unwrap_or(0);
            cuda_device(n, &spec)
        }
        _ => Err(Error::config("device", format!("unknown device {spec:?} (cpu, wgpu, wgpu:N, wgpu:cpu, cuda:N)"))),
    }
}

/// The GPU backends this build has (the `wgpu` and `cuda` features), by name; empty for a CPU-only build.
pub fn gpu_backends() -> Vec<&'static str> {
    [("wgpu", cfg!(feature = "wgpu")), ("cuda", cfg!(feature = "cuda"))]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| n)
        .collect()
}

#[cfg(feature = "wgpu")]
fn wgpu_device(index: Option<String>, spec: &str) -> Result<Device> {
    use burn::tensor::DeviceKind;
    let kind = match index.as_deref() {
        None => DeviceKind::DefaultDevice,
        Some("cpu") => DeviceKind::Cpu,
        Some("integrated") => DeviceKind::IntegratedGpu(0),
        Some(i) => DeviceKind::DiscreteGpu(
            i.parse().map_err(|_| Error::config("device", format!("bad device index {i:?} in {spec:?}")))?,
        ),
    };
    Ok(Device::wgpu(kind))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_index: Option<String>, spec: &str) -> Result<Device> {
    Err(Error::config("device", format!("{spec:?} needs a build with the `wgpu` feature (cargo build --features wgpu)")))
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize, _spec: &str) -> Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize, spec: &str) -> Result<Device> {
    Err(Error::config("device", format!("{spec:?} needs a build with the `cuda` feature")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse_or_explain() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device(" FLEX ").is_ok());
        assert!(parse_device("tpu").unwrap_err().to_string().contains("unknown device"));
        assert!(parse_device("cuda:x").is_err());
        #[cfg(not(feature = "wgpu"))]
        assert!(parse_device("wgpu:0").unwrap_err().to_string().contains("`wgpu` feature"));
    }
}
