//! The Python toolchain of the SDK's tests, set up by the tests themselves: a virtual
//! environment under `target/` made with the machine's `python3` from the pinned
//! `sdk/python/requirements.lock` (reused while that file is unchanged: the directory is named
//! after its hash), and the SDK installed into it from `sdk/python` once per test process (its
//! client stubs generated from `proto/` by that build). A file lock makes parallel tests and
//! test processes share one environment instead of building it at once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's `python`, with the pinned requirements and this tree's SDK installed.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let lock_file = root().join("sdk/python/requirements.lock");
        let requirements = std::fs::read(&lock_file).expect("read sdk/python/requirements.lock");
        let target = root().join("target");
        std::fs::create_dir_all(&target).expect("create target/");
        let venv = target.join(format!("python-venv-{:016x}", fnv1a(&requirements)));
        let python = venv.join("bin/python");
        let lock = File::create(target.join("python-venv.lock")).expect("create the venv lock");
        lock.lock().expect("lock the venv");
        if !venv.join(".ready").exists() {
            let _ = std::fs::remove_dir_all(&venv);
            run(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "create the venv (Debian: apt-get install -y python3-venv)",
            );
            run(
                Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .arg("-r")
                    .arg(&lock_file),
                "install the pinned requirements",
            );
            std::fs::write(venv.join(".ready"), "").expect("mark the venv ready");
        }
        // This tree's SDK, whatever an earlier run installed.
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "--no-build-isolation",
                    "--force-reinstall",
                ])
                .arg(root().join("sdk/python")),
            "install the SDK from sdk/python",
        );
        lock.unlock().expect("unlock the venv");
        python
    })
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// FNV-1a: a stable hash of the requirements, to name the venv by.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}
