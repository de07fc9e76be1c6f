//! The modules of `src/cli` form a tree of uses, not a web: shared pieces (arguments, printing of
//! executions, following output, the spinner, the client) sit below the command modules, a
//! command module never reaches into another one (except `exec`, which dispatches its `replay`
//! and `retry` subcommands), and no module uses one that uses it back.
//!
//! The test reads the sources, so it fails as soon as someone writes a `use super::run::...` in
//! `retry.rs`, not when the cycle has grown too tangled to undo.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules that implement a `cairn` subcommand. Everything else in `src/cli` is shared.
const COMMANDS: &[&str] = &[
    "agent", "bench", "demo", "exec", "replay", "retry", "run", "serve", "stats", "team", "worker",
];

/// Command modules that may use another command module: a parent dispatching its subcommands.
const SUBCOMMANDS: &[(&str, &str)] = &[("exec", "replay"), ("exec", "retry")];

/// Which modules each module refers to. `mod.rs` is the node `mod`; a `super::Item` that names no
/// module file is an edge to `mod`, because that is where the item lives.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Builds the graph from `(module, source)` pairs.
fn graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeSet<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    let mut graph = Graph::new();
    for (name, source) in files {
        let edges = graph.entry(name.clone()).or_default();
        let code: String = source
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        if name == "mod" {
            // The root names its children by bare path (`serve::DevArgs`, `pub use client::X`).
            for target in &modules {
                let bare = format!("{target}::");
                let found = code.match_indices(&bare).any(|(at, _)| {
                    at == 0
                        || !code[..at]
                            .ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                });
                if *target != "mod" && found {
                    edges.insert(target.to_string());
                }
            }
            continue;
        }
        for prefix in ["super::", "crate::cli::"] {
            for (at, _) in code.match_indices(prefix) {
                let rest = &code[at + prefix.len()..];
                for first in leading_names(rest) {
                    let target = if modules.contains(first.as_str()) && first != "mod" {
                        first
                    } else {
                        "mod".to_string()
                    };
                    if target != *name {
                        edges.insert(target);
                    }
                }
            }
        }
    }
    graph
}

/// The first path segment after `super::`, or each one inside a `super::{a::X, b}` group.
fn leading_names(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let mut names = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                names.push(ident(&group[start..i]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(ident(&group[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// A cycle as the path `a -> b -> ... -> a`, if the graph has one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    // Depth-first search; `path` holds the grey nodes, `done` the black ones.
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// Every edge from one command module to another that is not a parent dispatching a subcommand.
fn command_to_command(graph: &Graph) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (from, targets) in graph {
        for to in targets {
            let both = COMMANDS.contains(&from.as_str()) && COMMANDS.contains(&to.as_str());
            if both && !SUBCOMMANDS.contains(&(from.as_str(), to.as_str())) {
                found.push((from.clone(), to.clone()));
            }
        }
    }
    found
}

fn sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src/cli is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            files.push((name, std::fs::read_to_string(&path).expect("a source file")));
        }
    }
    files
}

fn file(name: &str, source: &str) -> (String, String) {
    (name.to_string(), source.to_string())
}

#[test]
fn the_cli_modules_use_each_other_without_a_cycle() {
    let files = sources();
    assert!(
        files.len() > 10,
        "expected the cli modules, found {}",
        files.len()
    );
    let graph = graph(&files);
    // The graph is really read: the root reaches the commands, and they reach shared pieces.
    assert!(graph["mod"].contains("exec"), "{graph:?}");
    assert!(graph["run"].contains("follow"), "{graph:?}");
    assert_eq!(
        find_cycle(&graph),
        None,
        "src/cli modules import each other"
    );
}

#[test]
fn no_cli_command_module_uses_another() {
    let graph = graph(&sources());
    assert_eq!(
        command_to_command(&graph),
        vec![],
        "move what two commands share into a shared module (args, execution, follow, ...)"
    );
}

#[test]
fn a_cycle_through_shared_modules_is_caught() {
    let files = [
        file("mod", "mod run;\nmod follow;\nfn f() { run::run(); }\n"),
        file("run", "use super::follow::watch;\n"),
        file("follow", "use super::{output::cut, run::Spinner};\n"),
        file("output", "pub fn cut() {}\n"),
    ];
    let graph = graph(&files);
    let cycle = find_cycle(&graph).expect("run -> follow -> run is a cycle");
    assert!(
        cycle.windows(2).any(|w| w == ["follow", "run"]),
        "{cycle:?}"
    );
}

#[test]
fn an_item_borrowed_from_the_root_is_a_cycle_with_it() {
    // `ClientArgs` in mod.rs, used by a child the root declares: mod -> agent -> mod.
    let files = [
        file(
            "mod",
            "pub struct ClientArgs;\nenum C { A(agent::AgentCommand) }\n",
        ),
        file("agent", "use super::ClientArgs;\n"),
    ];
    let cycle = find_cycle(&graph(&files)).expect("agent uses an item of its parent");
    assert_eq!(cycle.first(), cycle.last());
}

#[test]
fn a_command_using_another_command_is_caught_but_a_subcommand_is_not() {
    let files = [
        file("mod", ""),
        file("retry", "use crate::cli::run::policy_with_attempts;\n"),
        file("run", ""),
        file("exec", "enum E { Retry(super::retry::RetryArgs) }\n"),
    ];
    let graph = graph(&files);
    assert_eq!(find_cycle(&graph), None);
    assert_eq!(
        command_to_command(&graph),
        vec![("retry".to_string(), "run".to_string())]
    );
}
