//! The tidy test: the layering and the edges that ARCHITECTURE.md states, checked on the sources,
//! so a wrong import fails the build's tests instead of waiting for a reviewer.
//!
//! - A module imports only modules of lower layers:
//!   `domain` ← `clock`, `contract`, `machine` ← `runtime`, `store` ← `engine` ← `api` ← `worker`
//!   ← `node` ← `cli` (with `telemetry` beside `domain`), and `src/worker` uses only `domain`,
//!   `contract`, `runtime`, `clock`, `telemetry` and the API's client modules.
//! - `domain` and `machine` name no tokio, sqlx, tonic or prost, and read neither the clock nor
//!   randomness.
//! - No prost (generated protobuf) type is named outside `src/api` and `src/cli`, and no tonic
//!   type outside them and `src/node.rs`.
//! - No file in `src/` is over 500 lines unless its first lines say why (`//! Long because ...`).

use std::path::{Path, PathBuf};

/// The layer of each top-level module of the library; a module may use only lower layers.
const LAYERS: &[(&str, u32)] = &[
    ("domain", 0),
    ("telemetry", 0),
    ("clock", 1),
    ("contract", 1),
    ("machine", 1),
    ("runtime", 2),
    ("store", 2),
    ("engine", 3),
    ("api", 4),
    ("worker", 5),
    ("node", 6),
    ("cli", 7),
    // The web console only serves its embedded files; it uses no other module.
    ("console", 0),
];

/// What `src/worker` may use: the worker is a client of the server, linked to no part of it.
const WORKER_MAY_USE: &[&str] = &[
    "domain",
    "contract",
    "runtime",
    "clock",
    "telemetry",
    "api::client",
    "api::worker_client",
    "api::ConnectOptions",
    "api::ConnectError",
    "api::WorkerClient",
];

/// Crates the pure core never names.
const NOT_IN_THE_CORE: &[&str] = &["tokio", "sqlx", "tonic", "prost"];

/// What reading the clock or randomness looks like.
const CLOCK_OR_RANDOMNESS: &[&str] = &[
    "Utc::now",
    "SystemTime",
    "Instant::now",
    "rand::",
    "new_v4",
    "now_v7",
];

const MAX_LINES: usize = 500;

/// One broken rule: where, and what.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    rule: String,
}

/// The top-level module a file under `src/` belongs to (`src/engine/apply.rs` → `engine`,
/// `src/node.rs` → `node`); `None` for the crate roots.
fn module_of(relative: &str) -> Option<&str> {
    let first = relative.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then_some(name)
}

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The code of a line, without its `//` comment (docs and comments may name anything).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Every `crate::a::b` path a line names, as `a::b` (or `a`); a group `crate::a::{b, c::D}` gives
/// `a::b` and `a::c::D`.
fn crate_paths(line: &str) -> Vec<String> {
    let is_path = |c: &char| c.is_ascii_alphanumeric() || *c == '_' || *c == ':';
    let mut paths = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let path: String = after.chars().take_while(is_path).collect();
        let base = path.trim_end_matches(':').to_string();
        let group = after[path.len()..]
            .strip_prefix('{')
            .and_then(|g| g.split_once('}'))
            .map(|(inner, _)| inner);
        match group {
            Some(inner) => paths.extend(
                inner
                    .split(',')
                    .map(|item| item.trim().chars().take_while(is_path).collect::<String>())
                    .filter(|item| !item.is_empty())
                    .map(|item| format!("{base}::{item}")),
            ),
            None => paths.push(base),
        }
        rest = after;
    }
    paths
}

fn names_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + word.len()..].chars().next();
        let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        boundary(before) && boundary(after)
    })
}

/// The rules, applied to one file of `src/` given by its path relative to `src/`.
fn check(relative: &str, source: &str) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut broke = |line: usize, rule: String| {
        found.push(Violation {
            file: relative.to_string(),
            line,
            rule,
        })
    };
    let module = module_of(relative);
    let lines: Vec<&str> = source.lines().collect();
    for (i, raw) in lines.iter().enumerate() {
        let n = i + 1;
        let line = code(raw);
        if let Some(module) = module {
            let own = layer(module);
            for path in crate_paths(line) {
                let target = path.split("::").next().unwrap_or_default();
                if target == module {
                    continue;
                }
                match (own, layer(target)) {
                    (Some(own), Some(theirs)) if theirs >= own => broke(
                        n,
                        format!("`{module}` (layer {own}) uses `crate::{path}` (layer {theirs})"),
                    ),
                    _ => {}
                }
                if module == "worker" && !WORKER_MAY_USE.iter().any(|ok| path.starts_with(ok)) {
                    broke(
                        n,
                        format!(
                            "`worker` uses `crate::{path}`: a worker uses only domain, contract, runtime, clock, telemetry and the API client"
                        ),
                    );
                }
            }
            if matches!(module, "domain" | "machine") {
                for krate in NOT_IN_THE_CORE {
                    if names_word(line, krate) {
                        broke(n, format!("`{module}` names `{krate}`"));
                    }
                }
                for read in CLOCK_OR_RANDOMNESS {
                    if line.contains(read) {
                        broke(
                            n,
                            format!("`{module}` reads the clock or randomness (`{read}`)"),
                        );
                    }
                }
            }
            if !matches!(module, "api" | "cli") {
                for prost in ["pb::", "prost::", "prost_types"] {
                    if line.contains(prost) {
                        broke(
                            n,
                            format!("a prost type (`{prost}`) outside src/api and src/cli"),
                        );
                    }
                }
                if module != "node" && names_word(line, "tonic") {
                    broke(
                        n,
                        "tonic outside src/api, src/cli and src/node.rs".to_string(),
                    );
                }
            }
        }
    }
    let explained = lines
        .iter()
        .take(10)
        .any(|l| l.trim_start().starts_with("//! Long because"));
    if lines.len() > MAX_LINES && !explained {
        broke(
            1,
            format!(
                "{} lines (over {MAX_LINES}): split it by concern, or say at its top why not (`//! Long because ...`)",
                lines.len()
            ),
        );
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_sources_keep_the_layering() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found the sources");
    let mut violations = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(file).unwrap();
        violations.extend(check(&relative, &source));
    }
    let report: Vec<String> = violations
        .iter()
        .map(|v| format!("src/{}:{}: {}", v.file, v.line, v.rule))
        .collect();
    assert!(report.is_empty(), "layering broken:\n{}", report.join("\n"));
}

// The checker itself, on sources that break each rule on purpose.

fn rules(relative: &str, source: &str) -> Vec<String> {
    check(relative, source)
        .into_iter()
        .map(|v| v.rule)
        .collect()
}

#[test]
fn a_lower_layer_using_a_higher_one_is_caught() {
    assert_eq!(
        rules("domain/agent.rs", "use crate::engine::Engine;\n"),
        ["`domain` (layer 0) uses `crate::engine::Engine` (layer 3)"]
    );
    assert_eq!(
        rules("store/mod.rs", "fn f(x: crate::runtime::TurnIo) {}\n"),
        ["`store` (layer 2) uses `crate::runtime::TurnIo` (layer 2)"],
        "modules of one layer do not use each other"
    );
    assert!(
        rules(
            "engine/apply.rs",
            "use crate::store::Store;\nuse crate::machine::step;\n"
        )
        .is_empty()
    );
    assert!(
        rules("engine/apply.rs", "// crate::api::pb is what callers see\n").is_empty(),
        "comments may name anything"
    );
}

#[test]
fn the_worker_links_no_part_of_the_server() {
    assert_eq!(
        rules("worker/api.rs", "use crate::store::ClaimRequest;\n"),
        [
            "`worker` uses `crate::store::ClaimRequest`: a worker uses only domain, contract, runtime, clock, telemetry and the API client"
        ]
    );
    assert_eq!(
        rules("worker/grpc.rs", "use crate::engine::Engine;\n").len(),
        1
    );
    assert!(
        rules(
            "worker/grpc.rs",
            "use crate::api::worker_client::WorkerClient;\n"
        )
        .is_empty()
    );
    assert_eq!(
        rules(
            "worker/grpc.rs",
            "use crate::api::{client, convert::execution};\n"
        ),
        [
            "`worker` uses `crate::api::convert::execution`: a worker uses only domain, contract, runtime, clock, telemetry and the API client"
        ],
        "each item of a group is checked"
    );
}

#[test]
fn the_core_names_no_io_crate_and_reads_no_clock() {
    assert_eq!(
        rules("machine/agent.rs", "use tokio::sync::mpsc;\n"),
        ["`machine` names `tokio`"]
    );
    assert_eq!(
        rules("domain/retry.rs", "let now = chrono::Utc::now();\n"),
        ["`domain` reads the clock or randomness (`Utc::now`)"]
    );
    assert!(
        rules("domain/event.rs", "let tokio_like = 1;\n").is_empty(),
        "whole words only"
    );
}

#[test]
fn protobuf_and_tonic_stay_at_the_edge() {
    assert_eq!(
        rules("engine/view.rs", "fn f() -> pb::Execution {}\n"),
        ["a prost type (`pb::`) outside src/api and src/cli"]
    );
    assert_eq!(
        rules("worker/grpc.rs", "use tonic::Code;\n"),
        ["tonic outside src/api, src/cli and src/node.rs"]
    );
    assert!(rules("api/convert.rs", "fn f() -> pb::Execution {}\n").is_empty());
    assert!(rules("node.rs", "use tonic::transport::Server;\n").is_empty());
}

#[test]
fn a_long_file_says_why() {
    let long = "fn f() {}\n".repeat(MAX_LINES + 1);
    assert_eq!(rules("engine/big.rs", &long).len(), 1);
    let explained = format!("//! Long because one table must be read whole.\n{long}");
    assert!(rules("engine/big.rs", &explained).is_empty());
}

/// Where SQL binds a value SQLite's planner reads: a `LIMIT` or a `LIKE` pattern given as a bare
/// parameter. SQLite marks such a statement to be parsed and planned again every time the
/// parameter is bound, so a cached statement is re-prepared at every use (it was a fifth of the
/// server's CPU in `cairn bench`). `LIMIT CAST($n AS BIGINT)` and `instr`/`strpos` keep the plan.
fn planner_binds(source: &str) -> Vec<String> {
    let flat: String = source.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut found = Vec::new();
    for keyword in ["LIMIT", "LIKE"] {
        for (at, _) in flat.match_indices(&format!("{keyword} ")) {
            let rest = &flat[at + keyword.len() + 1..];
            if rest.starts_with('$') || rest.starts_with("\").push_bind") {
                found.push(rest.chars().take(40).collect());
            }
        }
    }
    found
}

#[test]
fn no_statement_binds_what_sqlites_planner_reads() {
    let backend = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/backend");
    let mut files = Vec::new();
    rust_files(&backend, &mut files);
    let mut violations = Vec::new();
    for path in files {
        let source = std::fs::read_to_string(&path).expect("read a source file");
        for found in planner_binds(&source) {
            violations.push(format!("{}: {found}", path.display()));
        }
    }
    assert!(
        violations.is_empty(),
        "bound LIMIT or LIKE: {violations:#?}"
    );
}

#[test]
fn a_bound_limit_or_like_is_caught() {
    assert_eq!(planner_binds("\"SELECT 1 LIMIT $3\"").len(), 1);
    assert_eq!(planner_binds("q.push(\" LIMIT \").push_bind(n)").len(), 1);
    assert_eq!(planner_binds("\"WHERE a NOT LIKE $2\"").len(), 1);
    assert!(planner_binds("\"SELECT 1 LIMIT CAST($3 AS BIGINT)\"").is_empty());
    assert!(planner_binds("\"SELECT 1 LIMIT 10\"").is_empty());
}
