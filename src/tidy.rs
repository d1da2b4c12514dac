//! Tidy checks (in the spirit of TigerBeetle's `tidy.zig`): the data plane stays free of
//! tokio, locks, `anyhow` and panicking shortcuts; the shard logic names no runtime (only
//! the runtime seam's two backend files do: `shard/rt/uring.rs` glommio, `shard/rt/epoll.rs`
//! tokio); and no two modules of the crate import each other. Test-only module.

use std::path::Path;

/// Directories holding data-plane or pure hot-path code.
const DATA_PLANE_DIRS: &[&str] = &["src/shard", "src/wire", "src/auth", "src/runtime"];
/// The only files allowed to name a runtime, and the runtime each may name.
const RUNTIME_BACKENDS: &[(&str, &str)] = &[("src/shard/rt/uring.rs", "glommio"), ("src/shard/rt/epoll.rs", "tokio")];
/// Runtimes the shard logic must reach only through the seam.
const RUNTIMES: &[&str] = &["glommio", "tokio"];
/// Words that must not appear in their non-test code (comments excluded).
const FORBIDDEN: &[&str] = &["Mutex", "RwLock", "anyhow", ".unwrap()", ".expect(", "async_nats"];

/// The code of a file before its `#[cfg(test)]` module, with `//` comments removed. A file
/// that is test-only as a whole (`#![cfg(test)]`) has none.
fn non_test_code(text: &str) -> String {
    if text.contains("#![cfg(test)]") {
        return String::new();
    }
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    code.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn data_plane_is_tidy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in DATA_PLANE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(!files.is_empty(), "no data-plane files found");
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let code = non_test_code(&text);
        let relative = file
            .strip_prefix(root)
            .unwrap_or(file)
            .to_string_lossy()
            .replace('\\', "/");
        problems.extend(violations(&relative, &code));
    }
    assert!(
        problems.is_empty(),
        "data plane code must not use these:\n{}",
        problems.join("\n")
    );
}

/// What `code` (the non-test code of the data-plane file at `relative`) must not contain.
fn violations(relative: &str, code: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for word in FORBIDDEN {
        if code.contains(word) {
            problems.push(format!("{relative}: uses `{word}`"));
        }
    }
    for runtime in RUNTIMES {
        let allowed = RUNTIME_BACKENDS.contains(&(relative, runtime));
        if !allowed && code.contains(runtime) {
            problems.push(format!(
                "{relative}: names `{runtime}` (only its backend file in shard/rt may)"
            ));
        }
    }
    problems
}

#[test]
fn only_the_backend_files_name_a_runtime() {
    let glommio = "use glommio::net::TcpStream;";
    assert!(violations("src/shard/rt/uring.rs", glommio).is_empty());
    assert_eq!(violations("src/shard/conn.rs", glommio).len(), 1);
    assert_eq!(violations("src/shard/rt/epoll.rs", glommio).len(), 1);
    let tokio = "tokio::task::spawn_local(f);";
    assert!(violations("src/shard/rt/epoll.rs", tokio).is_empty());
    assert_eq!(violations("src/shard/serve.rs", tokio).len(), 1);
    assert_eq!(violations("src/shard/rt/mod.rs", tokio).len(), 1);
}

#[test]
fn tidy_check_catches_a_violation() {
    let code = non_test_code("fn f() { x.unwrap(); } // tokio\n#[cfg(test)]\nmod tests { use tokio; }");
    assert!(code.contains(".unwrap()"));
    assert!(!code.contains("tokio"));
}

// ---------------------------------------------------------------------------------------------
// No two modules import each other (STYLE.md: no import cycles)
// ---------------------------------------------------------------------------------------------

/// Module path of a file under `src/` (`shard/rt/mod.rs` → `shard::rt`, `lib.rs` → ``).
fn module_of(relative: &str) -> String {
    let path = relative.trim_start_matches("src/").trim_end_matches(".rs");
    let mut parts: Vec<&str> = path.split('/').collect();
    if matches!(parts.last(), Some(&"mod") | Some(&"lib")) {
        parts.pop();
    }
    parts.join("::")
}

/// The module `path` (`crate::…` or `super::…`, written in module `from`) names: the longest
/// prefix that is a module of the crate.
fn resolve_path(from: &str, path: &str, modules: &std::collections::BTreeSet<String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = Vec::new();
    match segments.first() {
        Some(&"crate") => {
            segments.remove(0);
        }
        Some(&"super") => {
            base = from.split("::").filter(|s| !s.is_empty()).collect();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
        }
        _ => return None,
    }
    (0..=segments.len()).rev().find_map(|take| {
        let candidate = base
            .iter()
            .chain(&segments[..take])
            .copied()
            .collect::<Vec<_>>()
            .join("::");
        modules.contains(&candidate).then_some(candidate)
    })
}

/// Every module `code` (of module `from`) names through `crate::` or `super::` paths,
/// including the items of `use …::{a, b}` groups; its own ancestors and descendants excluded.
fn module_imports(from: &str, code: &str, modules: &std::collections::BTreeSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '{' || c == '}' || c == ','))
        .filter(|w| w.starts_with("crate::") || w.starts_with("super::"))
        .collect();
    for word in words {
        let (head, group) = match word.split_once("::{") {
            Some((head, rest)) => (head, Some(rest)),
            None => (word.trim_end_matches([',', '{', '}']), None),
        };
        let mut paths = vec![head.to_string()];
        if let Some(group) = group {
            paths.extend(
                group
                    .split(',')
                    .map(|item| format!("{head}::{}", item.trim_matches(['{', '}']))),
            );
        }
        for path in paths {
            if let Some(module) = resolve_path(from, &path, modules) {
                let related = module == from
                    || from.starts_with(&format!("{module}::"))
                    || module.starts_with(&format!("{from}::"))
                    || module.is_empty();
                if !related {
                    found.push(module);
                }
            }
        }
    }
    found
}

#[test]
fn no_two_modules_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let relative = |f: &std::path::PathBuf| f.strip_prefix(root).unwrap_or(f).to_string_lossy().replace('\\', "/");
    let modules: std::collections::BTreeSet<String> = files.iter().map(|f| module_of(&relative(f))).collect();
    let mut imports = std::collections::BTreeMap::new();
    for file in &files {
        let module = module_of(&relative(file));
        let code = non_test_code(&std::fs::read_to_string(file).unwrap());
        imports.insert(module.clone(), module_imports(&module, &code, &modules));
    }
    let mut cycles = Vec::new();
    for (a, deps) in &imports {
        for b in deps {
            if a < b && imports.get(b).is_some_and(|back| back.contains(a)) {
                cycles.push(format!("{a} <-> {b}"));
            }
        }
    }
    cycles.dedup();
    assert!(cycles.is_empty(), "modules that import each other: {cycles:?}");
    assert!(
        imports
            .get("shard::serve")
            .is_some_and(|d| d.contains(&"shard::core".to_string())),
        "the import scan sees `use super::core::ShardCore` in shard/serve.rs"
    );
}

#[test]
fn the_import_scan_resolves_groups_and_super() {
    let modules: std::collections::BTreeSet<String> = [
        "",
        "config",
        "plane",
        "shard",
        "shard::core",
        "shard::rt",
        "wire",
        "wire::trace",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let code =
        "use crate::config::{Config, X};\nuse super::rt::{self, spawn};\nlet x = crate::wire::trace::CallTrace::new();";
    let mut found = module_imports("shard::core", code, &modules);
    found.sort();
    found.dedup();
    // `super::rt` from shard::core is its sibling shard::rt; `self` items and ancestors drop out.
    assert_eq!(found, ["config", "shard::rt", "wire::trace"]);
    // Before this stop's moves, config and plane named each other; the scan sees such a pair.
    let config = module_imports("config", "use crate::plane::{resolve_shard_io, ShardIo};", &modules);
    let plane = module_imports("plane", "use crate::config::NatsAuth;", &modules);
    assert!(config.contains(&"plane".to_string()) && plane.contains(&"config".to_string()));
}
