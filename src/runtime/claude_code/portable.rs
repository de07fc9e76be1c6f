//! Portable sessions: the CLI keeps a session as a file under its config directory
//! (`projects/<directory named after the cwd>/<session id>.jsonl`), on the worker that ran the
//! turn. So that the next turn, or a retry, can resume the session on any worker, the runtime
//! copies that file into its checkpoint (`session_files`, keyed by the path under the config
//! directory) whenever it saves one, and writes it back into this worker's config directory
//! before `--resume`. The engine stores checkpoints as objects and patches (appended text is
//! stored once), so copying a growing file at every checkpoint costs what it grew by.
//!
//! A config directory shared by every worker keeps working: a local file that already holds at
//! least what the checkpoint captured (it is the same session, further on) is left as it is.

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use crate::runtime::RuntimeError;

/// The checkpoint key of the captured files.
pub(super) const FILES_KEY: &str = "session_files";

/// A session larger than this is not copied into checkpoints (they must fit in one report);
/// such a session resumes only where its file is (the same worker, or a shared config
/// directory), as before sessions were portable.
const MAX_CAPTURE_BYTES: usize = 2 << 20;

/// The CLI's config directory: `CLAUDE_CONFIG_DIR` as the CLI will see it, else `$HOME/.claude`.
pub(super) fn config_root(configured: Option<&str>) -> Option<PathBuf> {
    configured
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".claude")))
}

/// The files of session `session_id` under `root`, keyed by their path under it; `None` when
/// the session has no file yet, or is too large to carry.
pub(super) async fn capture(root: &Path, session_id: &str) -> Option<Map<String, Value>> {
    let file_name = format!("{session_id}.jsonl");
    let mut projects = tokio::fs::read_dir(root.join("projects")).await.ok()?;
    let mut files = Map::new();
    let mut bytes = 0;
    while let Ok(Some(project)) = projects.next_entry().await {
        let path = project.path().join(&file_name);
        let Ok(content) = tokio::fs::read_to_string(&path).await else {
            continue;
        };
        bytes += content.len();
        let key = format!(
            "projects/{}/{file_name}",
            project.file_name().to_string_lossy()
        );
        files.insert(key, Value::String(content));
    }
    if bytes > MAX_CAPTURE_BYTES {
        tracing::warn!(
            session_id,
            bytes,
            "the Claude Code session is too large to carry in checkpoints; it resumes only on a worker that has its file"
        );
        return None;
    }
    (!files.is_empty()).then_some(files)
}

/// Writes captured files back under `root`, unless the local copy already holds them.
pub(super) async fn restore(root: &Path, files: &Map<String, Value>) -> Result<(), RuntimeError> {
    for (key, content) in files {
        let relative = Path::new(key);
        let safe = relative.starts_with("projects")
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        let Some(content) = content.as_str().filter(|_| safe) else {
            return Err(RuntimeError::fatal(
                "invalid_checkpoint",
                format!(
                    "the checkpoint's session file `{key}` is not a session file path with text"
                ),
            ));
        };
        let path = root.join(relative);
        if let Ok(local) = tokio::fs::read_to_string(&path).await
            && local.starts_with(content)
        {
            continue;
        }
        let failed = |e: std::io::Error| {
            RuntimeError::retryable(
                "session_restore_failed",
                format!(
                    "cannot restore the Claude Code session file {}: {e}",
                    path.display()
                ),
            )
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(failed)?;
        }
        // Written aside and renamed, so a CLI never reads half a session.
        let partial = path.with_extension("jsonl.cairn-partial");
        tokio::fs::write(&partial, content).await.map_err(failed)?;
        tokio::fs::rename(&partial, &path).await.map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_captured_session_restores_elsewhere_and_never_over_a_newer_copy() {
        let here = tempfile::tempdir().unwrap();
        let project = here.path().join("projects/-tmp-work");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("s-1.jsonl"), "{\"a\":1}\n").unwrap();
        let files = capture(here.path(), "s-1")
            .await
            .expect("the session is captured");
        assert_eq!(files["projects/-tmp-work/s-1.jsonl"], "{\"a\":1}\n");
        assert!(capture(here.path(), "s-2").await.is_none());

        let there = tempfile::tempdir().unwrap();
        restore(there.path(), &files).await.unwrap();
        let restored = there.path().join("projects/-tmp-work/s-1.jsonl");
        assert_eq!(std::fs::read_to_string(&restored).unwrap(), "{\"a\":1}\n");
        // A copy that went on (a shared config directory) is not rolled back.
        std::fs::write(&restored, "{\"a\":1}\n{\"b\":2}\n").unwrap();
        restore(there.path(), &files).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&restored).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );

        let mut evil = Map::new();
        evil.insert("projects/../../etc/x".into(), Value::from("x"));
        assert!(restore(there.path(), &evil).await.is_err());
    }
}
