//! Checkpoints are safetensors files a Python user can open: a real
//! training run's checkpoint loaded with `safetensors.numpy.load_file`.
//!
//! The interpreter is `$RINGREDUCE_PYTHON` (scripts/test.sh points it at a
//! virtual environment with safetensors and numpy when the system Python
//! lacks them), else `python3`. Without the modules the test fails, saying
//! how to install them; `RINGREDUCE_SKIP_PYTHON=1` skips it, loudly.

use std::process::Command;

use ringreduce::train::checkpoint::{Checkpoint, FORMAT};
use ringreduce::train::{data, Mlp, Model, SyncSgd};
use ringreduce::Group;

const SCRIPT: &str = r#"
import json, sys
from safetensors import safe_open
from safetensors.numpy import load_file
tensors = load_file(sys.argv[1])
with safe_open(sys.argv[1], framework="np") as f:
    meta = f.metadata()
print(json.dumps({
    "names": sorted(tensors),
    "dtypes": sorted({str(t.dtype) for t in tensors.values()}),
    "params": [float(v) for v in tensors["params"]],
    "momentum": [float(v) for v in tensors["optimizer.0"]],
    "meta": meta,
}))
"#;

fn python() -> Option<String> {
    let python = std::env::var("RINGREDUCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let works = Command::new(&python)
        .args(["-c", "import safetensors.numpy, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(python);
    }
    if std::env::var_os("RINGREDUCE_SKIP_PYTHON").is_some_and(|v| v == "1") {
        eprintln!("\n*** SKIPPED: the Python interoperability test ({python} lacks safetensors or numpy; RINGREDUCE_SKIP_PYTHON=1) ***\n");
        return None;
    }
    panic!(
        "{python} cannot `import safetensors.numpy, numpy`: run scripts/test.sh (it sets up target/pyenv), \
         or `pip install safetensors numpy` and set RINGREDUCE_PYTHON, or set RINGREDUCE_SKIP_PYTHON=1 to skip"
    );
}

#[test]
fn python_loads_a_training_checkpoint_with_safetensors_numpy() {
    let Some(python) = python() else { return };
    let dir = std::env::temp_dir().join(format!("ringreduce-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.safetensors");
    let train = data::synthetic(240, 4, 3, 1);
    let model = Mlp::new(vec![4, 8, 3]).unwrap();
    let sgd = SyncSgd::builder()
        .batch(24)
        .lr(0.1)
        .momentum(0.9)
        .epochs(2)
        .checkpoint(&path)
        .build()
        .unwrap();
    let params = Group::local(2, |g| {
        let mut params = sgd.init_params(&model);
        sgd.fit(&g, &model, &mut params, &train, None, |_| {}).unwrap();
        params
    });
    let out = Command::new(&python)
        .args(["-c", SCRIPT])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["names"], serde_json::json!(["optimizer.0", "params"]));
    assert_eq!(doc["dtypes"], serde_json::json!(["float32"]));
    // Python reads exactly the parameters training ended with.
    let from_python: Vec<f32> = doc["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(from_python, params[0]);
    let ours = Checkpoint::load(&path).unwrap();
    assert_eq!(ours.params, params[0]);
    let momentum: Vec<f32> = doc["momentum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(momentum, ours.optimizer.buffers[0]);
    let meta = &doc["meta"];
    assert_eq!(meta["format"], FORMAT);
    assert_eq!(meta["epoch"], "2");
    assert_eq!(meta["params"], model.num_params().to_string());
    assert_eq!(meta["strategy"], "sync:ring");
    assert!(meta["crc32"].as_str().is_some_and(|c| c.len() == 8));
    std::fs::remove_dir_all(&dir).unwrap();
}
