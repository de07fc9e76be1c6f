//! `deploy/check`, which CI runs, passes on the shipped deployment files and fails, naming the
//! problem, on each kind of broken file it is there to catch.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `deploy/check` on `dir`; returns whether it passed and what it printed.
fn check(dir: &Path) -> (bool, String) {
    let out = Command::new(repo().join("deploy/check"))
        .arg(dir)
        .output()
        .expect("run deploy/check (needs bash and python3)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A copy of `deploy/` (and the CLI's lock file, which the image check reads) with `file`
/// edited by replacing `from` with `to`.
fn broken(file: &str, from: &str, to: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("deploy"), &tmp.path().join("deploy"));
    std::fs::create_dir_all(tmp.path().join("tests/npm")).unwrap();
    std::fs::copy(
        repo().join("tests/npm/package-lock.json"),
        tmp.path().join("tests/npm/package-lock.json"),
    )
    .unwrap();
    let path = tmp.path().join("deploy").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} no longer contains {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn assert_refused(file: &str, from: &str, to: &str, expected: &str) {
    let tmp = broken(file, from, to);
    let (ok, text) = check(&tmp.path().join("deploy"));
    assert!(!ok, "deploy/check passed {file} with {to:?}:\n{text}");
    assert!(
        text.contains(expected) && text.contains(file.rsplit('/').next().unwrap()),
        "deploy/check should name {file} and say {expected:?}:\n{text}"
    );
}

#[test]
fn the_shipped_deployment_files_are_valid() {
    let (ok, text) = check(&repo().join("deploy"));
    assert!(ok, "deploy/check failed on deploy/:\n{text}");
}

#[test]
fn a_compose_file_that_repeats_a_key_is_refused() {
    // The bug compose.yaml once had: a block pasted twice, which YAML parsers keep silently.
    assert_refused(
        "compose.yaml",
        "  server-b:\n",
        "  server-a:\n",
        "duplicate key 'server-a'",
    );
}

#[test]
fn a_compose_file_that_uses_an_undefined_service_is_refused() {
    assert_refused(
        "compose.yaml",
        "  litellm:\n",
        "  llm-proxy:\n",
        "'litellm', which is not defined",
    );
    assert_refused(
        "compose.yaml",
        "CAIRN_OPENAI_BASE_URL: http://litellm:4000/v1",
        "CAIRN_OPENAI_BASE_URL: http://models:4000/v1",
        "refers to host 'models'",
    );
}

#[test]
fn a_compose_file_outside_the_specification_is_refused() {
    assert_refused(
        "compose.yaml",
        "stop_grace_period: 30s",
        "stop_grace_period: [30s]",
        "is not a valid Compose file",
    );
}

#[test]
fn a_kubernetes_manifest_outside_the_schema_is_refused() {
    assert_refused(
        "kubernetes/cairn.yaml",
        "replicas: 2",
        "replicas: two",
        "spec/replicas",
    );
    // Strict: a misspelt field is an error, not ignored.
    assert_refused(
        "kubernetes/cairn.yaml",
        "terminationGracePeriodSeconds: 60",
        "terminationGracePeriod: 60",
        "terminationGracePeriod",
    );
}

#[test]
fn a_privileged_or_unprobed_worker_is_refused() {
    assert_refused(
        "kubernetes/cairn.yaml",
        "readOnlyRootFilesystem: true\n            capabilities: { drop: [\"ALL\"] }\n          resources:\n            requests: { cpu: 500m",
        "readOnlyRootFilesystem: false\n            capabilities: { drop: [\"ALL\"] }\n          resources:\n            requests: { cpu: 500m",
        "container cairn has a writable root filesystem",
    );
    assert_refused(
        "kubernetes/cairn.yaml",
        "          livenessProbe:\n            httpGet",
        "          readinessProbe:\n            httpGet",
        "Deployment cairn-worker, container cairn has no livenessProbe",
    );
    assert_refused(
        "kubernetes/cairn.yaml",
        "maxUnavailable: 1\n  selector: { matchLabels: { app: cairn-worker } }",
        "maxUnavailable: 1\n  selector: { matchLabels: { app: cairn-workers } }",
        "Deployment cairn-worker has no PodDisruptionBudget",
    );
}

#[test]
fn a_worker_image_with_too_old_a_node_is_refused() {
    assert_refused(
        "Dockerfile",
        "FROM node:22-bookworm-slim AS worker",
        "FROM node:18-bookworm-slim AS worker",
        "has Node.js 18, the pinned Claude Code CLI needs >=",
    );
}
