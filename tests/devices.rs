//! Device slots on a GPU machine, without a GPU: a fake `nvidia-smi` first on PATH (GPUs, MIG instances,
//! a hang) and a `command:` trial that records the environment and the `{device}`/`{gpu_index}` it was given.

mod common;

use common::{Sandbox, command_spec, smi_listing, study_trials};
use serde_json::Value;
use std::collections::BTreeSet;

/// Records its environment and arguments in `envs.jsonl`, then reports a result.
const ENV_TRIAL: &str = r#"import json, os, sys
keys = ["CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NIGHTSHIFT_DEVICE", "NIGHTSHIFT_GPU_INDEX", "WGPU_ADAPTER_INDEX"]
rec = {k: os.environ.get(k) for k in keys}
rec["device_arg"], rec["gpu_index_arg"] = sys.argv[1], sys.argv[2]
with open("envs.jsonl", "a") as f:
    f.write(json.dumps(rec) + "\n")
print(json.dumps({"result": {"value": 0.5}}), flush=True)
"#;

fn env_spec(sb: &Sandbox, study: &str, trials: u32, devices: &str) {
    sb.file("env_trial.py", ENV_TRIAL);
    let command = "[python3, env_trial.py, \"{device}\", \"{gpu_index}\"]";
    sb.file("s.yaml", &command_spec(study, &format!("{{trials: {trials}}}"), devices, command, ""));
}

fn envs(sb: &Sandbox) -> Vec<Value> {
    let text = std::fs::read_to_string(sb.path().join("envs.jsonl")).expect("envs.jsonl: no trial ran");
    text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

fn set(records: &[Value], key: &str) -> BTreeSet<String> {
    records.iter().map(|r| r[key].as_str().unwrap_or("<unset>").to_string()).collect()
}

/// Four MIG-less GPUs; GPU i has the UUID `GPU-000i…`.
fn four_gpus(sb: &Sandbox) {
    sb.fake_nvidia_smi(&smi_listing(4));
}

#[test]
fn a_cuda_trial_opens_cuda_0_and_is_told_its_physical_gpu() {
    let sb = Sandbox::new();
    four_gpus(&sb);
    env_spec(&sb, "map", 4, "{gpu: [1, 3]}");
    let out = sb.ok(&["run", "s.yaml"]);
    assert!(out.contains("budget reached"), "{out}");
    let records = envs(&sb);
    assert_eq!(records.len(), 4);
    for r in &records {
        // The child sees one GPU, so it opens cuda:0; {gpu_index} names the physical one it was given.
        assert_eq!(r["device_arg"], "cuda:0", "{r}");
        assert_eq!(r["NIGHTSHIFT_DEVICE"], "cuda:0", "{r}");
        assert_eq!(r["gpu_index_arg"], r["CUDA_VISIBLE_DEVICES"], "{r}");
        assert_eq!(r["NIGHTSHIFT_GPU_INDEX"], r["CUDA_VISIBLE_DEVICES"], "{r}");
        assert_eq!(r["CUDA_DEVICE_ORDER"], "PCI_BUS_ID", "{r}");
        assert!(r["WGPU_ADAPTER_INDEX"].is_null(), "{r}");
    }
    assert_eq!(set(&records, "CUDA_VISIBLE_DEVICES"), BTreeSet::from(["1".to_string(), "3".to_string()]));
    let recorded: BTreeSet<String> =
        study_trials(&sb, "map").iter().map(|t| t["system_attrs"]["device"].as_str().unwrap().to_string()).collect();
    assert_eq!(recorded, BTreeSet::from(["cuda:1".to_string(), "cuda:3".to_string()]));

    // An index nvidia-smi does not list is refused before anything runs, by check and by run.
    env_spec(&sb, "map2", 1, "{gpu: [4]}");
    let err = sb.fails(&["check", "s.yaml"]);
    assert!(err.contains("s.yaml:5:") && err.contains("field `devices`") && err.contains("valid indices: 0, 1, 2, 3"), "{err}");
    let err = sb.fails(&["run", "s.yaml"]);
    assert!(err.contains("GPU 4: nvidia-smi lists 4 GPU(s)"), "{err}");
    let err = sb.fails(&["run", "s.yaml", "--devices", "gpu:7"]);
    assert!(err.contains("--devices: GPU 7"), "{err}");
}

#[test]
fn an_inherited_cuda_visible_devices_is_never_left() {
    let sb = Sandbox::new();
    four_gpus(&sb);
    // The scheduler gave GPU 2 by index and GPU 3 by UUID (prefix), on a node with four.
    let inherited = "2,GPU-0003aaaa";
    env_spec(&sb, "slurm", 4, "auto");
    let check = common::output_within(sb.cmd(&["check", "s.yaml"]).env("CUDA_VISIBLE_DEVICES", inherited), common::HUNG_AFTER);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{out}");
    assert!(out.contains("2 slot(s): cuda:2, cuda:3"), "{out}");
    let run = common::output_within(sb.cmd(&["run", "s.yaml"]).env("CUDA_VISIBLE_DEVICES", inherited), common::HUNG_AFTER);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let records = envs(&sb);
    assert_eq!(records.len(), 4);
    assert_eq!(set(&records, "CUDA_VISIBLE_DEVICES"), BTreeSet::from(["2".to_string(), "GPU-0003aaaa".to_string()]));
    assert_eq!(set(&records, "gpu_index_arg"), BTreeSet::from(["2".to_string(), "3".to_string()]));
    assert_eq!(set(&records, "device_arg"), BTreeSet::from(["cuda:0".to_string()]));

    // Spec indices are positions in the inherited list: 1 is the UUID entry, 2 does not exist.
    env_spec(&sb, "slurm2", 2, "{gpu: [1]}");
    let run = common::output_within(sb.cmd(&["run", "s.yaml"]).env("CUDA_VISIBLE_DEVICES", inherited), common::HUNG_AFTER);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(envs(&sb)[4..].iter().all(|r| r["CUDA_VISIBLE_DEVICES"] == "GPU-0003aaaa"));
    env_spec(&sb, "slurm3", 1, "{gpu: [2]}");
    let check = common::output_within(sb.cmd(&["check", "s.yaml"]).env("CUDA_VISIBLE_DEVICES", inherited), common::HUNG_AFTER);
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success() && err.contains("shows 2 GPU(s), so valid indices are 0..=1"), "{err}");
}

#[test]
fn mig_instances_become_slots() {
    let sb = Sandbox::new();
    sb.fake_nvidia_smi(
        "cat <<'EOF'\n\
         GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)\n  \
         MIG 3g.20gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)\n  \
         MIG 3g.20gb     Device  1: (UUID: MIG-cba663e8-9bed-5b7e-b8c7-0e6c9e5a3e4d)\n\
         GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-77777777-d33d-2b2c-524d-9e3d8d2b8a77)\n\
         EOF",
    );
    env_spec(&sb, "mig", 3, "auto");
    let out = sb.ok(&["check", "s.yaml"]);
    assert!(out.contains("3 slot(s): cuda:0/mig0, cuda:0/mig1, cuda:1"), "{out}");
    sb.ok(&["run", "s.yaml"]);
    let records = envs(&sb);
    let visible = set(&records, "CUDA_VISIBLE_DEVICES");
    let want = ["MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", "MIG-cba663e8-9bed-5b7e-b8c7-0e6c9e5a3e4d", "1"];
    assert_eq!(visible, want.iter().map(|s| s.to_string()).collect(), "three slots, one trial each: {records:?}");
    for r in records.iter().filter(|r| r["CUDA_VISIBLE_DEVICES"].as_str().unwrap().starts_with("MIG-")) {
        assert_eq!((&r["device_arg"], &r["gpu_index_arg"]), (&Value::from("cuda:0"), &Value::from("0")), "{r}");
    }
}

#[test]
fn a_hanging_nvidia_smi_is_killed_and_auto_says_so() {
    let sb = Sandbox::new();
    // A child that outlives the script keeps the pipe open too: the whole group must go.
    sb.fake_nvidia_smi("sleep 600\necho 'GPU 0: never (UUID: GPU-x)'");
    env_spec(&sb, "hang", 1, "auto");
    let check =
        common::output_within(sb.cmd(&["check", "s.yaml"]).env("NIGHTSHIFT_NVIDIA_SMI_TIMEOUT", "1s"), common::HUNG_AFTER);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{out}{}", String::from_utf8_lossy(&check.stderr));
    assert!(out.contains("nvidia-smi -L did not answer within 1s"), "{out}");
    assert!(out.contains("CPU slot(s), one per core"), "{out}");

    // A failing nvidia-smi (no driver) is a reason too.
    sb.fake_nvidia_smi("echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9");
    let out = sb.ok(&["check", "s.yaml"]);
    assert!(out.contains("nvidia-smi -L failed") && out.contains("could not communicate"), "{out}");
}

/// The built-in trainer in a spec, on the bundled data.
fn builtin_spec(sb: &Sandbox, devices: &str, trial_extra: &str) {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion_mnist_100");
    sb.file(
        "b.yaml",
        &format!(
            "study: builtin\nobjective: {{metric: val_accuracy, direction: maximize}}\nbudget: {{trials: 2}}\n\
             devices: {devices}\ntrial: {{dataset: {data}, epochs: 1{trial_extra}}}\n\
             params:\n  learning_rate: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}\n"
        ),
    );
}

#[test]
fn auto_matches_the_build_of_the_builtin_trainer() {
    let sb = Sandbox::new();
    sb.fake_nvidia_smi(&smi_listing(2));
    builtin_spec(&sb, "auto", "");
    let out = sb.ok(&["check", "b.yaml"]);
    if cfg!(any(feature = "cuda", feature = "wgpu")) {
        assert!(!out.contains("built without GPU support"), "{out}");
        return;
    }
    // A CPU-only build: CPU slots, and why, and how to build for the GPUs.
    let line = out.lines().find(|l| l.starts_with("devices:")).unwrap_or_default();
    assert!(line.contains("slot(s): cpu") && !line.contains("cuda"), "{out}");
    assert!(out.contains("nvidia-smi lists 2 CUDA device(s), but this nightshift was built without GPU support"), "{out}");
    assert!(out.contains("--features wgpu"), "{out}");

    // Explicit GPUs are refused for the built-in trainer, by check and by run, before anything runs.
    builtin_spec(&sb, "{gpu: [0]}", "");
    let err = sb.fails(&["check", "b.yaml"]);
    assert!(err.contains("b.yaml:4:") && err.contains("without the `cuda` feature"), "{err}");
    let err = sb.fails(&["run", "b.yaml"]);
    assert!(err.contains("without the `cuda` feature"), "{err}");
    assert!(!sb.path().join("reports/builtin/study.db").exists(), "nothing ran");
    let err = sb.fails(&["run", "b.yaml", "--devices", "wgpu:0"]);
    assert!(err.contains("--devices") && err.contains("without the `wgpu` feature"), "{err}");
    // …while a command trial brings its own CUDA and may use them (the other tests run those).
}

#[test]
fn a_device_in_the_trial_section_is_refused() {
    let sb = Sandbox::new();
    builtin_spec(&sb, "{cpu: 1}", ", device: cuda:1");
    let err = sb.fails(&["check", "b.yaml"]);
    assert!(err.contains("b.yaml:5:") && err.contains("field `trial.device`"), "{err}");
    assert!(err.contains("every trial on one device") && err.contains("devices:"), "{err}");
}
