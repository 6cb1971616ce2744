//! Keeps `src/` in the one-way order of its layers (`docs/ARCHITECTURE.md`,
//! "Layers"), and the files of each folder free of circles.
//!
//! It reads every file under `src/` as text, drops comments, string literals
//! and `#[cfg(test)]` items (and files only tests declare), and resolves the
//! paths that remain (`crate::…`, `super::…`, `self::…`, and in a file with
//! children a path that starts with one of them) from the module the file
//! defines. Two graphs come out of them; a failure names each edge and the
//! files it is in.
//!
//! **Top-level modules.** Each file counts as its top-level module, and an
//! edge goes to the module a path names first. Every module has a layer, no
//! edge goes to a higher layer, no "never" edge is present, and there is no
//! cycle.
//!
//! **Files of one folder.** The children of a module are the files of its
//! folder: `src/a/b.rs` and `src/a/c.rs` are children of `a` (`src/a.rs`),
//! and a child with children of its own (`src/a/b.rs` beside `src/a/b/`)
//! counts with all of them as one. Among the children of one module no
//! circle is allowed: if `b` names `c`, nothing under `c` names `b`, directly
//! or through other children. A parent and its descendants are not edges:
//! the parent declares its children (`mod b;`, not an import), calls them
//! and re-exports what they define, and a child names what its parent
//! defines (`use super::Upstream`), the usual shape of a Rust module. A
//! path through the parent to a child's item is an edge to that child,
//! though: `super::Config`, where the parent has `pub use schema::Config`
//! (or a private `use`), names `schema`. So two siblings cannot meet through
//! their parent, and what they share gets a file of its own. The top-level
//! modules (the children of `lib.rs`) are the first graph's business.
//!
//! **Modules without I/O.** The HTTP/1 wire code (`src/h1/`) names no
//! runtime, socket, file or reader: its driver (`src/relay/`) does the I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module of `src/` and its layer. A module may use only
/// modules of its own layer or a lower one.
const LAYERS: &[(&str, u8)] = &[
    // 0 model: plain types and small primitives, no I/O, no config
    ("model", 0),
    ("reply", 0),
    ("alarm", 0),
    ("lifecycle", 0),
    ("conn_info", 0),
    ("loops", 0),
    ("real_ip", 0),
    ("proxy_protocol", 0),
    ("h1", 0),
    ("extended_connect", 0),
    // 1 config: YAML to typed, validated data
    ("config", 1),
    // 2 policy: fan-out, who may do what, counters
    ("hub", 2),
    ("auth", 2),
    ("limits", 2),
    ("rules", 2),
    ("metrics", 2),
    ("tls", 2),
    ("connections", 2),
    // 3 broker: ids, history, cross-node fan-in
    ("broker", 3),
    // 4 backend side: everything that talks to the application
    ("upstream", 4),
    ("proxy", 4),
    ("ingest", 4),
    ("session_auth", 4),
    ("pusher", 4),
    ("mercure", 4),
    // 5 state: the bag of handles; reload swaps policy
    ("state", 5),
    ("reload", 5),
    // 6 handlers: one request or connection at a time
    ("transport", 6),
    ("admin", 6),
    ("router", 6),
    ("relay", 6),
    // 7 server: listeners, engines, shutdown
    ("server", 7),
    // 8 entry: setup, CLI, tools
    ("lib", 8),
    ("main", 8),
    ("logging", 8),
    ("bench", 8),
    ("demo", 8),
    ("fuzzing", 8),
];

/// Edges ruled out whatever the layers say (`docs/ARCHITECTURE.md`).
const NEVER: &[(&str, &str, &str)] = &[
    ("hub", "broker", "the hub knows no broker"),
    ("hub", "transport", "the hub knows no transport"),
    ("broker", "transport", "a broker knows no transport"),
    ("ingest", "transport", "ingest never writes to clients"),
    (
        "transport",
        "proxy",
        "transports use upstream/, not the proxy",
    ),
];

/// Modules `state` may be imported by (besides itself): the handlers, the
/// server and the entry layer.
const STATE_USERS: u8 = 5;

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

#[test]
fn modules_keep_their_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = Crate::new(&read_sources(&src)).top_level_edges();
    let problems = check(&edges);
    assert!(
        problems.is_empty(),
        "src/ breaks its layers (docs/ARCHITECTURE.md \"Layers\"):\n{}",
        problems.join("\n")
    );
}

#[test]
fn files_of_one_folder_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = sibling_cycles(&Crate::new(&read_sources(&src)).sibling_edges());
    assert!(
        problems.is_empty(),
        "files of one folder of src/ name each other in a circle: give what they share a home of its own\n{}",
        problems.join("\n")
    );
}

/// Top-level modules that do no I/O, and what they may not name: the
/// HTTP/1 wire code (`src/h1/`) is bytes in, a verdict out, so each of its
/// rules is a unit test and a fuzz target away, and the driver that moves
/// the bytes (`src/relay/`) is the one place its I/O lives.
const PURE: &[&str] = &["h1"];
/// Names of I/O, matched as whole identifiers wherever they stand (a path,
/// a grouped `use std::io::{self, Read}`, a bare `Read` bound).
const IO: &[&str] = &[
    "tokio",
    "hyper",
    "mio",
    "socket2",
    "AsyncRead",
    "AsyncWrite",
    "fs",
    "File",
    "OpenOptions",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "UnixStream",
    "UnixListener",
    "Read",
    "BufRead",
];

/// Whether `word` stands in `code` as a whole identifier.
fn names(code: &str, word: &str) -> bool {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    code.match_indices(word).any(|(at, _)| {
        !ident(code[..at].chars().next_back()) && !ident(code[at + word.len()..].chars().next())
    })
}

#[test]
fn the_http1_wire_code_does_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = io_in_pure_modules(&read_sources(&src));
    assert!(
        problems.is_empty(),
        "a module without I/O names I/O (the driver, relay/, is where it goes):\n{}",
        problems.join("\n")
    );
}

/// Each file of a [`PURE`] module that names one of [`IO`] in its code
/// (comments and strings are gone by now), with what it names.
fn io_in_pure_modules(sources: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, code) in sources {
        let top = file.iter().next().and_then(|c| c.to_str()).unwrap_or("");
        let module = top.strip_suffix(".rs").unwrap_or(top);
        if !PURE.contains(&module) {
            continue;
        }
        for word in IO.iter().filter(|w| names(code, w)) {
            problems.push(format!("src/{}: {word}", file.display()));
        }
    }
    problems
}

/// The I/O check sees a runtime or a socket named in a pure module, and
/// leaves other modules and comments alone.
#[test]
fn the_io_checker_sees_io_in_a_pure_module() {
    let sources: BTreeMap<PathBuf, String> = [
        ("h1.rs", "mod a; use std::io::Write;"),
        (
            "h1/a.rs",
            "use tokio::io::AsyncReadExt; fn f(s: std::net::TcpStream) {}",
        ),
        (
            "h1/b.rs",
            "use std::io::{self, Read}; fn g(f: &mut std::fs::File) {} struct Reader; fn h(r: io::BufReader<u8>) {}",
        ),
        ("relay.rs", "use tokio::io::AsyncRead;"),
    ]
    .iter()
    .map(|(path, code)| (PathBuf::from(path), code.to_string()))
    .collect();
    let problems = io_in_pure_modules(&sources).join("\n");
    for expected in [
        "src/h1/a.rs: tokio",
        "src/h1/a.rs: TcpStream",
        "src/h1/b.rs: Read",
        "src/h1/b.rs: fs",
        "src/h1/b.rs: File",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
    assert!(
        !problems.contains("relay") && !problems.contains("src/h1.rs"),
        "{problems}"
    );
    assert!(
        !problems.contains("AsyncRead\n")
            && !problems.contains("Reader")
            && !problems.contains("BufReader"),
        "a longer name is not the word: {problems}"
    );
    let comment = [(PathBuf::from("h1.rs"), "//! no tokio here\n".to_string())];
    let stripped: BTreeMap<PathBuf, String> = comment
        .into_iter()
        .map(|(p, c)| (p, strip_comments_and_strings(&c)))
        .collect();
    assert!(io_in_pure_modules(&stripped).is_empty());
}

/// The checker itself fails on a graph that breaks each rule.
#[test]
fn the_checker_sees_each_kind_of_break() {
    let mut edges = Edges::new();
    let mut add = |from: &str, to: &str| {
        edges
            .entry((from.to_owned(), to.to_owned()))
            .or_default()
            .insert(format!("src/{from}.rs"));
    };
    add("config", "hub"); // upward
    add("hub", "broker"); // upward and never
    add("auth", "rules"); // same layer, one half of a cycle
    add("rules", "auth"); // the other half
    add("proxy", "state"); // state imported below the handlers
    add("widget", "reply"); // no layer
    let problems = check(&edges).join("\n");
    for expected in [
        "config -> hub",
        "hub -> broker",
        "the hub knows no broker",
        "cycle",
        "proxy -> state",
        "widget",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
    let mut clean = Edges::new();
    clean
        .entry(("transport".into(), "hub".into()))
        .or_default()
        .insert("src/transport.rs".into());
    assert!(check(&clean).is_empty());
}

/// The file check sees a circle between two children, also one that goes
/// through what the parent re-exports and one a grandchild closes, and
/// leaves a parent and its children free to name each other.
#[test]
fn the_file_checker_sees_a_circle_of_siblings() {
    let sources = |files: &[(&str, &str)]| -> BTreeMap<PathBuf, String> {
        files
            .iter()
            .map(|(path, code)| (PathBuf::from(path), code.to_string()))
            .collect()
    };
    let problems = |files: &[(&str, &str)]| {
        let problems = sibling_cycles(&Crate::new(&sources(files)).sibling_edges());
        problems.join("\n")
    };
    let lib = ("lib.rs", "mod a;");
    // The parent names its children and they name what it defines: no edge.
    let parent_and_children = [
        lib,
        (
            "a.rs",
            "mod b; mod c; pub(crate) use b::B; struct Own; fn f() { c::g(); }",
        ),
        ("a/b.rs", "use super::Own; pub struct B;"),
        ("a/c.rs", "use super::{B, Own}; pub fn g() {}"),
    ];
    assert_eq!(problems(&parent_and_children), "");
    // b -> c by name, c -> b through the parent's re-export.
    let through_parent = [
        lib,
        ("a.rs", "mod b; mod c; pub(crate) use b::B;"),
        ("a/b.rs", "use super::c::C; pub struct B;"),
        ("a/c.rs", "pub struct C; fn f(_: super::B) {}"),
    ];
    let found = problems(&through_parent);
    assert!(found.contains("{a::b, a::c}"), "{found}");
    assert!(found.contains("a::c -> a::b in src/a/c.rs"), "{found}");
    // A grandchild of c (`a/c/d.rs`) closes the circle for c.
    let by_grandchild = [
        lib,
        ("a.rs", "mod b; mod c;"),
        ("a/b.rs", "use crate::a::c::C;"),
        ("a/c.rs", "mod d; pub struct C;"),
        ("a/c/d.rs", "use super::super::b;"),
    ];
    let found = problems(&by_grandchild);
    assert!(found.contains("a::c -> a::b in src/a/c/d.rs"), "{found}");
}

/// (from, to) -> the files where `from` names `to`.
type Edges = BTreeMap<(String, String), BTreeSet<String>>;

fn check(edges: &Edges) -> Vec<String> {
    let mut problems = Vec::new();
    let where_ = |files: &BTreeSet<String>| files.iter().cloned().collect::<Vec<_>>().join(", ");
    let mut modules = BTreeSet::new();
    for (from, to) in edges.keys() {
        modules.insert(from.clone());
        modules.insert(to.clone());
    }
    for m in &modules {
        if layer(m).is_none() {
            problems.push(format!(
                "module `{m}` has no layer: add it to LAYERS in tests/layers.rs and to the table in docs/ARCHITECTURE.md"
            ));
        }
    }
    for ((from, to), files) in edges {
        let (Some(lf), Some(lt)) = (layer(from), layer(to)) else {
            continue;
        };
        if lt > lf {
            problems.push(format!(
                "upward edge {from} -> {to} (layer {lf} -> {lt}) in {}",
                where_(files)
            ));
        }
        if let Some((_, _, why)) = NEVER.iter().find(|(f, t, _)| f == from && t == to) {
            problems.push(format!(
                "never edge {from} -> {to} ({why}) in {}",
                where_(files)
            ));
        }
        if to == "state" && lf < STATE_USERS {
            problems.push(format!(
                "edge {from} -> state: state is imported only by handlers and the server, in {}",
                where_(files)
            ));
        }
    }
    for members in find_cycles(edges) {
        problems.push(format!(
            "cycle among top-level modules {{{}}}: each reaches every other",
            members.join(", ")
        ));
    }
    problems.sort();
    problems.dedup();
    problems
}

/// The sets of modules that reach each other (strongly connected, more
/// than one module), each written as a path through all of them.
fn find_cycles(edges: &Edges) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().insert(to);
    }
    let reach = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(m) = todo.pop() {
            for &n in next.get(m).into_iter().flatten() {
                if seen.insert(n) {
                    todo.push(n);
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<&str>> = next.keys().map(|&m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    for (&m, from_m) in &reached {
        if done.contains(m) || !from_m.contains(m) {
            continue;
        }
        let members: Vec<String> = from_m
            .iter()
            .filter(|&&n| reached.get(n).is_some_and(|r| r.contains(m)))
            .map(|n| n.to_string())
            .collect();
        done.extend(members.iter().cloned());
        cycles.push(members);
    }
    cycles
}

/// Every file under `src/` except those that exist only for tests, by path
/// relative to `src/`, as code without comments, strings and `#[cfg(test)]`
/// items.
fn read_sources(src: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let texts: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(src).unwrap_or(f).to_path_buf();
            let text = fs::read_to_string(f).unwrap_or_default();
            (rel, strip_comments_and_strings(&text))
        })
        .collect();
    // Files that only exist for tests: `#[cfg(test)] mod name;` declarations.
    let mut test_only: Vec<PathBuf> = Vec::new();
    for (file, code) in &texts {
        for name in cfg_test_mod_decls(code) {
            let dir = module_dir(file);
            test_only.push(dir.join(format!("{name}.rs")));
            test_only.push(dir.join(&name));
        }
    }
    texts
        .into_iter()
        .filter(|(file, _)| !test_only.iter().any(|t| file.starts_with(t)))
        .map(|(file, code)| (file, drop_cfg_test_items(&code)))
        .collect()
}

/// A module's path from the crate root: `config::validate` is
/// `["config", "validate"]`, the root is `[]`.
type ModPath = Vec<String>;

/// The code of each file, by the module it defines, with what resolving a
/// path needs to know about it.
struct Crate {
    files: BTreeMap<ModPath, (PathBuf, String)>,
    /// Each module's `use` declarations: the name they bring into scope and
    /// the absolute path it stands for. A parent's re-export of a child's
    /// item is followed through this.
    imports: BTreeMap<ModPath, BTreeMap<String, ModPath>>,
}

impl Crate {
    fn new(sources: &BTreeMap<PathBuf, String>) -> Crate {
        let files: BTreeMap<ModPath, (PathBuf, String)> = sources
            .iter()
            .map(|(rel, code)| (module_of(rel), (rel.clone(), code.clone())))
            .collect();
        let imports = files
            .iter()
            .map(|(module, (_, code))| {
                let children = child_decls(code);
                let named = use_trees(code)
                    .into_iter()
                    .filter_map(|(path, name)| Some((name?, resolve(&path, module, &children)?)))
                    .collect();
                (module.clone(), named)
            })
            .collect();
        Crate { files, imports }
    }

    /// Each absolute path `module`'s code names (`crate::…`, `super::…`,
    /// `self::…`, and a path starting with one of its declared children),
    /// as written.
    fn paths_named(&self, module: &ModPath) -> BTreeSet<ModPath> {
        let Some((_, code)) = self.files.get(module) else {
            return BTreeSet::new();
        };
        let children = child_decls(code);
        path_trees(code, &children)
            .into_iter()
            .filter_map(|(path, _)| resolve(&path, module, &children))
            .collect()
    }

    /// `path` with each step through a module's `use` replaced by what
    /// that `use` names: `super::Config`, where the parent has
    /// `pub use schema::Config`, is `config::schema::Config`.
    fn follow_imports(&self, mut path: ModPath) -> ModPath {
        // A re-export of a re-export is followed too; the bound keeps two
        // `use`s naming each other from looping.
        for _ in 0..8 {
            let file = self.file_module(&path);
            let Some(name) = path.get(file.len()) else {
                break;
            };
            let Some(target) = self.imports.get(&file).and_then(|i| i.get(name)) else {
                break;
            };
            let mut next = target.clone();
            next.extend(path[file.len() + 1..].iter().cloned());
            if next == path {
                break;
            }
            path = next;
        }
        path
    }

    /// The longest prefix of `path` that is a file of `src/`.
    fn file_module(&self, path: &[String]) -> ModPath {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| self.files.contains_key(m))
            .unwrap_or_default()
    }

    /// (parent::child, parent::sibling) -> the files where the subtree of
    /// `child` names something in the subtree of `sibling`.
    fn sibling_edges(&self) -> Edges {
        let mut edges = Edges::new();
        for (module, (rel, _)) in &self.files {
            for path in self.paths_named(module) {
                let target = self.file_module(&self.follow_imports(path));
                let common = module
                    .iter()
                    .zip(&target)
                    .take_while(|(a, b)| a == b)
                    .count();
                // The root's children are the top-level modules, whose graph
                // the layers check; a parent and its descendants may name
                // each other.
                if common == 0 || common == module.len() || common == target.len() {
                    continue;
                }
                edges
                    .entry((module[..=common].join("::"), target[..=common].join("::")))
                    .or_default()
                    .insert(format!("src/{}", rel.display()));
            }
        }
        edges
    }

    /// (top-level module, top-level module) -> the files where the first
    /// names the second.
    fn top_level_edges(&self) -> Edges {
        let mut edges = Edges::new();
        for (module, (rel, _)) in &self.files {
            let from = top_module(rel);
            for path in self.paths_named(module) {
                let Some(to) = path.first() else {
                    continue;
                };
                if *to != from {
                    edges
                        .entry((from.clone(), to.clone()))
                        .or_default()
                        .insert(format!("src/{}", rel.display()));
                }
            }
        }
        edges
    }
}

/// The files of one folder that reach each other, with the edges between
/// them and the files those are in.
fn sibling_cycles(edges: &Edges) -> Vec<String> {
    find_cycles(edges)
        .into_iter()
        .map(|members| {
            let inside = edges
                .iter()
                .filter(|((f, t), _)| members.contains(f) && members.contains(t))
                .map(|((f, t), files)| {
                    let files = files.iter().cloned().collect::<Vec<_>>().join(", ");
                    format!("  {f} -> {t} in {files}")
                })
                .collect::<Vec<_>>()
                .join("\n");
            format!(
                "cycle among the files of one folder {{{}}}:\n{inside}",
                members.join(", ")
            )
        })
        .collect()
}

/// The module a file defines: `config/validate.rs` is `config::validate`,
/// `config.rs` and `config/mod.rs` are `config`, `lib.rs` is the root.
fn module_of(rel: &Path) -> ModPath {
    let mut parts: ModPath = rel
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .map(|c| c.trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod") | Some("lib")) {
        parts.pop();
    }
    parts
}

/// `path` (as written in `module`) from the crate root, or `None` when it
/// names nothing of this crate.
fn resolve(path: &[String], module: &[String], children: &BTreeSet<String>) -> Option<ModPath> {
    let (first, rest) = path.split_first()?;
    let mut base: ModPath = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module[..module.len().checked_sub(1)?].to_vec(),
        child if children.contains(child) => [module, &[child.to_owned()][..]].concat(),
        _ => return None,
    };
    let mut rest = rest.iter().peekable();
    while rest.peek().is_some_and(|s| *s == "super") {
        base.pop()?;
        rest.next();
    }
    base.extend(rest.cloned());
    Some(base)
}

/// Names in `mod name;` declarations: the file's children.
fn child_decls(code: &str) -> BTreeSet<String> {
    starts_of(code, "mod ")
        .filter_map(|at| {
            let decl = code[at + "mod ".len()..].trim_start();
            let name = ident_at(decl);
            let declared = decl[name.len()..].trim_start().starts_with(';');
            (declared && !name.is_empty()).then_some(name)
        })
        .collect()
}

/// Every path in `code` that starts with `crate`, `super`, `self` or one of
/// `children`, expanded (`crate::a::{b, c::d}` is `crate::a::b` and
/// `crate::a::c::d`), with the name each brings into scope when it is in a
/// `use`.
fn path_trees(code: &str, children: &BTreeSet<String>) -> Vec<(ModPath, Option<String>)> {
    let heads = ["crate", "super", "self"]
        .into_iter()
        .chain(children.iter().map(String::as_str));
    let mut trees = Vec::new();
    for head in heads {
        for at in starts_of(code, &format!("{head}::")) {
            if code[..at].ends_with(':') {
                continue;
            }
            expand_tree(&code[at..], &mut 0, Vec::new(), &mut trees);
        }
    }
    trees
}

/// Every `use` tree in `code`, expanded, with the name each path brings
/// into scope (its last segment or its `as` name; none for a glob).
fn use_trees(code: &str) -> Vec<(ModPath, Option<String>)> {
    let mut trees = Vec::new();
    for at in starts_of(code, "use ") {
        expand_tree(&code[at + "use ".len()..], &mut 0, Vec::new(), &mut trees);
    }
    trees
}

/// Offsets of `word` in `code` where it starts an identifier.
fn starts_of<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    code.match_indices(word)
        .map(|(at, _)| at)
        .filter(move |&at| {
            at == 0
                || !matches!(code.as_bytes()[at - 1], b'$') && !is_ident(code.as_bytes()[at - 1])
        })
}

/// Reads one use tree (or one path) at `s[*i..]` after `path`, pushing
/// each path it spells and the name it binds.
fn expand_tree(
    s: &str,
    i: &mut usize,
    mut path: ModPath,
    out: &mut Vec<(ModPath, Option<String>)>,
) {
    let rest = |i: &usize| s.get(*i..).unwrap_or("");
    let skip_ws = |i: &mut usize| *i += rest(i).len() - rest(i).trim_start().len();
    loop {
        skip_ws(i);
        if rest(i).starts_with('{') {
            *i += 1;
            loop {
                skip_ws(i);
                if rest(i).is_empty() || rest(i).starts_with('}') {
                    *i += 1;
                    return;
                }
                expand_tree(s, i, path.clone(), out);
                skip_ws(i);
                if !rest(i).starts_with(',') {
                    *i += usize::from(rest(i).starts_with('}'));
                    return;
                }
                *i += 1;
            }
        }
        if rest(i).starts_with('*') {
            *i += 1;
            out.push((path, None));
            return;
        }
        let name = ident_at(rest(i));
        *i += name.len();
        if name.is_empty() {
            out.push((path, None));
            return;
        }
        if name != "self" || path.is_empty() {
            path.push(name);
        }
        skip_ws(i);
        if rest(i).starts_with("::") {
            *i += 2;
            continue;
        }
        let mut bound = path.last().cloned();
        if let Some(after) = rest(i).strip_prefix("as ") {
            let alias = ident_at(after.trim_start());
            *i += "as ".len() + after.len() - after.trim_start().len() + alias.len();
            bound = Some(alias);
        }
        out.push((path, bound));
        return;
    }
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The directory a file's child modules live in: `src/a.rs` -> `src/a/`,
/// `src/a/mod.rs` -> `src/a/`, `src/lib.rs` -> `src/`.
fn module_dir(file: &Path) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new(""));
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod") | Some("lib") | Some("main") => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
        None => parent.to_path_buf(),
    }
}

fn top_module(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or("");
    first.trim_end_matches(".rs").to_owned()
}

/// Replaces comments with spaces and empties string and char literals, so
/// that `crate::` in a doc comment or a message is not read as a path.
fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            // raw string r"…" or r#"…"#
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // a char literal ('x', '\n', '\u{..}') or a lifetime ('a)
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                // a multi-byte char literal or a lifetime
                let rest = &text[i + 1..];
                let mut chars = rest.char_indices();
                if let (Some((_, ch)), Some((n, '\''))) = (chars.next(), chars.next()) {
                    if !ch.is_ascii() {
                        i += 1 + n + 1;
                        out.push_str("' '");
                        continue;
                    }
                }
                out.push('\'');
                i += 1;
            }
        } else {
            let len = utf8_len(c);
            out.push_str(&text[i..i + len]);
            i += len;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Names in `#[cfg(test)] mod name;` (a test-only child file).
fn cfg_test_mod_decls(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        let after = after
            .strip_prefix("pub(crate)")
            .unwrap_or(after)
            .trim_start();
        if let Some(decl) = after.strip_prefix("mod ") {
            let name: String = decl
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let tail = decl.trim_start()[name.len()..].trim_start();
            if tail.starts_with(';') {
                names.push(name);
            }
        }
        rest = &rest[at + 1..];
    }
    names
}

/// Removes each item that follows `#[cfg(test)]`: up to its `;`, or through
/// its braced body, whichever comes first.
fn drop_cfg_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let b = item.as_bytes();
        let mut i = 0;
        let mut depth = 0usize;
        while i < b.len() {
            match b[i] {
                b';' if depth == 0 => {
                    i += 1;
                    break;
                }
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        rest = &item[i.min(item.len())..];
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}
