//! The Helm chart in `helm/dom-router`: rendered by Helm's own engine and checked by
//! `helm/dom-router/tests/render_check.py` (manifests valid against the Kubernetes API schemas,
//! the server.toml it writes against `config/server.toml`, mounts, probes, grace period, where
//! secrets go, and values that must fail), then the config directory it gives a pod is checked
//! by the `dom-router` binary itself.
//!
//! The script runs in the Python virtualenv that `ensure_chart_deps` in `scripts/setup.sh`
//! makes (`./scripts/test` calls it), found through `DOM_ROUTER_CHART_PYTHON` or at
//! `target/chart-venv`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dom-router");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/dom-router");

/// The virtualenv's python; a missing one fails the test with the way to make it.
fn python() -> PathBuf {
    let python = match std::env::var_os("DOM_ROUTER_CHART_PYTHON") {
        Some(path) => PathBuf::from(path),
        // the target directory: CARGO_TARGET_TMPDIR is its tmp/
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target directory")
            .join("chart-venv/bin/python"),
    };
    assert!(
        python.is_file(),
        "no Python for the chart test at {}: run ./scripts/test, or \
         `. scripts/setup.sh && ensure_chart_deps` from the repository root, which make the \
         virtualenv (and export DOM_ROUTER_CHART_PYTHON)",
        python.display()
    );
    python
}

fn render_check(args: &[&str]) -> Output {
    Command::new(python())
        .arg(Path::new(CHART).join("tests/render_check.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(args)
        .output()
        .expect("run render_check.py")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn chart_renders_valid_manifests_and_refuses_values_that_cannot_work() {
    let out = render_check(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("chart checks hold"), "{stdout}");
}

/// `check-config` on the directory a pod of the release would mount, for the default values
/// and for the Redis Cluster, tokens and TLS values of `ci/`.
#[test]
fn rendered_config_passes_the_servers_own_check() {
    for (label, values) in [
        ("default", None),
        ("ci", Some(format!("{CHART}/ci/redis-cluster-values.yaml"))),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let dir_arg = dir.path().to_str().unwrap();
        let mut args = vec!["write-config", dir_arg];
        if let Some(values) = &values {
            args.push(values);
        }
        let out = render_check(&args);
        assert!(out.status.success(), "{label}: {}", text(&out));
        for file in ["server.toml", "network.toml", "segments.toml"] {
            assert!(dir.path().join(file).is_file(), "{label}: no {file}");
        }

        let mut check = Command::new(BIN);
        check.arg("check-config").arg(dir.path());
        // only the rendered files speak: no override from the test's own environment
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DOM_ROUTER_") {
                check.env_remove(name);
            }
        }
        let out = check.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{label}: {}", text(&out));
        assert!(
            stdout.contains("listen: 0.0.0.0:50051"),
            "{label}: {stdout}"
        );
        assert!(stdout.contains("nodes: 31"), "{label}: {stdout}");
        assert!(stdout.trim_end().ends_with("ok"), "{label}: {stdout}");
    }
}
