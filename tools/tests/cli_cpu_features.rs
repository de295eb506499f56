//! `ferrumc run` and `ferrumc inspect` refuse an artifact whose code needs a CPU feature the
//! host lacks: exit status 1, one error naming the feature, nothing written.

use ferrumc_runtime::artifact::reader::host_has_cpu_feature;
use ferrumc_runtime::artifact::ArtifactBuilder;
use std::path::PathBuf;
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrumc-cpu-features-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A valid artifact for this host's architecture that requires `feature`.
fn artifact_requiring(feature: &str) -> Vec<u8> {
    let mut b = ArtifactBuilder::new(&format!("{}-unknown-linux-gnu", std::env::consts::ARCH));
    b.require_cpu_feature(feature);
    b.add_kernel("k", &[0xc3]);
    b.build().expect("build the artifact")
}

#[test]
fn missing_cpu_features_are_named_by_run_and_inspect() {
    // A made-up name, and a real feature this host lacks when there is one.
    let mut features = vec!["avx512made_up_feature".to_string()];
    let real = ["avx512fp16", "avx512bf16", "avxvnni", "avx512vbmi", "avx512bitalg", "avx512vnni", "avx512f"];
    if let Some(f) = real.iter().find(|f| !host_has_cpu_feature(f)) {
        features.push(f.to_string());
    }
    let dir = scratch("missing");
    for feature in &features {
        let path = dir.join(format!("{feature}.ferrumc"));
        std::fs::write(&path, artifact_requiring(feature)).expect("write the artifact");
        let out_dir = dir.join("out");
        let path_arg = path.to_string_lossy().into_owned();
        let out_arg = out_dir.to_string_lossy().into_owned();
        for args in
            [vec!["inspect", path_arg.as_str()], vec!["run", path_arg.as_str(), "--output-dir", out_arg.as_str()]]
        {
            let out = Command::new(env!("CARGO_BIN_EXE_ferrumc")).args(&args).output().expect("spawn ferrumc");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(stderr.contains(&format!("`{feature}`")), "{args:?}: the error names the feature: {stderr}");
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            assert!(!out_dir.exists(), "{args:?}: nothing is written");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn present_cpu_features_load() {
    let dir = scratch("present");
    let path = dir.join("sse2.ferrumc");
    let feature = if cfg!(target_arch = "x86_64") { "sse2" } else { "neon" };
    std::fs::write(&path, artifact_requiring(feature)).expect("write the artifact");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrumc")).arg("inspect").arg(&path).output().expect("spawn ferrumc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("cpu features: {feature}")), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
