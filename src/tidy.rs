//! Tidy checks (in the spirit of TigerBeetle's `tidy.zig`): the data plane stays free of
//! tokio, locks, `anyhow` and panicking shortcuts, and the shard logic names no runtime: only
//! the runtime seam's two backend files do (`shard/rt/uring.rs` glommio, `shard/rt/epoll.rs`
//! tokio). Test-only module.

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
