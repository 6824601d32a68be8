//! Checks the layering invariant in ARCHITECTURE.md: no cycles between top-level modules, nor between the
//! submodules of `model`.
//!
//! The test reads `src/` with nothing but the standard library and collects every path rooted at `crate::`,
//! `super::` or `self::` outside comments, string literals and `#[cfg(test)]` code (including whole files that
//! are declared as test-only modules). Run `cargo test --test module_graph -- --nocapture` to print the graph.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// For each module, the modules it uses and where each use is written.
type Graph = BTreeMap<String, BTreeMap<String, Vec<Site>>>;

/// A path segment and the line it is written on.
type Segment = (String, usize);

#[derive(Debug, Clone, PartialEq)]
struct Site {
    file: String,
    line: usize,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Word,
    Str,
    Punct,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    line: usize,
}

impl Token {
    /// Whether this is the word or punctuation `text` (never a string literal with that content).
    fn is(&self, text: &str) -> bool {
        self.kind != Kind::Str && self.text == text
    }
}

/// An outline module declaration (`mod name;`), with its `#[path = "..."]` if it has one.
#[derive(Debug, PartialEq)]
struct ModuleDecl {
    name: String,
    path_attribute: Option<String>,
}

/// A production source file: its path under `src/`, its module path and its tokens without test-only code.
struct SourceFile {
    relative: PathBuf,
    module: Vec<String>,
    tokens: Vec<Token>,
}

// ---------------------------------------------------------------------------------------------------------------
// Tokens: words, string literals and punctuation; comments, char literals and lifetimes are dropped.

fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let (token, end) = next_token(&chars, i);
        if let Some((kind, text)) = token {
            tokens.push(Token { kind, text, line });
        }
        line += chars[i..end].iter().filter(|&&c| c == '\n').count();
        i = end;
    }
    tokens
}

/// The token starting at `i` (None for whitespace, comments and char literals) and the index just past it.
fn next_token(chars: &[char], i: usize) -> (Option<(Kind, String)>, usize) {
    match &chars[i..] {
        [c, ..] if c.is_whitespace() => (None, i + 1),
        ['/', '/', ..] => (None, find_from(chars, i, '\n')),
        ['/', '*', ..] => (None, block_comment_end(chars, i)),
        ['"', ..] => string_token(chars, i + 1, None),
        ['\'', ..] => char_or_lifetime(chars, i),
        [':', ':', ..] => (Some((Kind::Punct, "::".to_string())), i + 2),
        [c, ..] if is_word_char(*c) => word_token(chars, i),
        [c, ..] => (Some((Kind::Punct, c.to_string())), i + 1),
        [] => (None, i + 1),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The index of the first `wanted` at or after `i`, or the end.
fn find_from(chars: &[char], i: usize, wanted: char) -> usize {
    chars.iter().skip(i).position(|&c| c == wanted).map_or(chars.len(), |offset| i + offset)
}

/// The index just past the (possibly nested) block comment starting at `i`.
fn block_comment_end(chars: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < chars.len() {
        match &chars[i..] {
            ['/', '*', ..] => (depth, i) = (depth + 1, i + 2),
            ['*', '/', ..] if depth == 1 => return i + 2,
            ['*', '/', ..] => (depth, i) = (depth - 1, i + 2),
            _ => i += 1,
        }
    }
    i
}

/// A string literal whose body starts at `start`; `raw_hashes` is `Some(n)` for a raw string `r#.."..."#..`.
fn string_token(chars: &[char], start: usize, raw_hashes: Option<usize>) -> (Option<(Kind, String)>, usize) {
    let closes_raw = |i: usize, n: usize| chars[i + 1..].iter().take(n).filter(|&&c| c == '#').count() == n;
    let mut i = start;
    while i < chars.len() {
        match (chars[i], raw_hashes) {
            ('\\', None) => i += 2,
            ('"', None) => break,
            ('"', Some(n)) if closes_raw(i, n) => break,
            _ => i += 1,
        }
    }
    let end = i.min(chars.len());
    let text = chars[start..end].iter().collect();
    (Some((Kind::Str, text)), (end + 1 + raw_hashes.unwrap_or(0)).min(chars.len()))
}

/// Skips a char literal (`'a'`, `'"'`, `'\n'`, `'\u{2014}'`) or just the quote of a lifetime or label.
fn char_or_lifetime(chars: &[char], i: usize) -> (Option<(Kind, String)>, usize) {
    match &chars[i + 1..] {
        ['\\', ..] => (None, (find_from(chars, i + 3, '\'') + 1).min(chars.len())),
        [_, '\'', ..] => (None, i + 3),
        _ => (None, i + 1),
    }
}

/// A word, or a string or char literal with a prefix (`r"..."`, `br#"..."#`, `b"..."`, `c"..."`, `b'x'`).
fn word_token(chars: &[char], i: usize) -> (Option<(Kind, String)>, usize) {
    let end = i + chars[i..].iter().take_while(|&&c| is_word_char(c)).count();
    let word: String = chars[i..end].iter().collect();
    let hashes = chars[end..].iter().take_while(|&&c| c == '#').count();
    match (word.as_str(), chars.get(end + hashes)) {
        ("r" | "br" | "cr", Some('"')) => string_token(chars, end + hashes + 1, Some(hashes)),
        ("b" | "c", Some('"')) if hashes == 0 => string_token(chars, end + 1, None),
        ("b", Some('\'')) if hashes == 0 => char_or_lifetime(chars, end),
        _ => (Some((Kind::Word, word)), end),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Test-only code: every item after `#[cfg(test)]`, and the files such items declare.

const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];

/// The tokens without `#[cfg(test)]` items, and the outline modules those items declare.
fn strip_test_code(tokens: &[Token]) -> (Vec<Token>, Vec<ModuleDecl>) {
    let (mut kept, mut test_modules) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < tokens.len() {
        if is_cfg_test(&tokens[i..]) {
            let end = item_end(tokens, i + CFG_TEST.len());
            test_modules.extend(outline_module(&tokens[i..end]));
            i = end;
        } else {
            kept.push(tokens[i].clone());
            i += 1;
        }
    }
    (kept, test_modules)
}

fn is_cfg_test(tokens: &[Token]) -> bool {
    tokens.len() >= CFG_TEST.len() && CFG_TEST.iter().zip(tokens).all(|(text, token)| token.is(text))
}

/// The index just past the item starting at `start` (its `;`, `,` or closing brace), or of the enclosing
/// block's closing bracket if that comes first.
fn item_end(tokens: &[Token], start: usize) -> usize {
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(start).filter(|(_, token)| token.kind == Kind::Punct) {
        match token.text.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" if depth == 0 => return i,
            "}" if depth == 1 => return i + 1,
            ")" | "]" | "}" => depth -= 1,
            ";" | "," if depth == 0 => return i + 1,
            _ => {}
        }
    }
    tokens.len()
}

/// The `mod name;` declared by an item, if it is one.
fn outline_module(item: &[Token]) -> Option<ModuleDecl> {
    let declaration = item.windows(3).find(|w| w[0].is("mod") && w[1].kind == Kind::Word && w[2].is(";"))?;
    let path_attribute =
        item.windows(3).find(|w| w[0].is("path") && w[1].is("=") && w[2].kind == Kind::Str).map(|w| w[2].text.clone());
    Some(ModuleDecl { name: declaration[1].text.clone(), path_attribute })
}

/// The directory that holds the submodules of the module in `file` (`a/mod.rs` and `a.rs` both give `a`).
fn module_dir(file: &Path) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new(""));
    match file.file_stem().and_then(|stem| stem.to_str()) {
        Some("mod" | "lib" | "main") | None => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
    }
}

/// The files a module declaration in `declaring_file` may load.
fn declared_files(declaring_file: &Path, decl: &ModuleDecl) -> Vec<PathBuf> {
    match &decl.path_attribute {
        Some(path) => vec![declaring_file.parent().unwrap_or(Path::new("")).join(path)],
        None => {
            let dir = module_dir(declaring_file);
            vec![dir.join(format!("{}.rs", decl.name)), dir.join(&decl.name).join("mod.rs")]
        }
    }
}

/// Whether `file` is one of the test-only files or lies in the directory of one of their submodules.
fn is_test_only(file: &Path, test_files: &[PathBuf]) -> bool {
    test_files.iter().any(|test_file| file == test_file || file.starts_with(module_dir(test_file)))
}

// ---------------------------------------------------------------------------------------------------------------
// Paths: every path rooted at `crate::`, `super::` or `self::`, made absolute from the crate root.

/// The module path of a file under `src/`: `model/file/mod.rs` is `model::file`; `lib.rs` and `main.rs` are the root.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> =
        relative.with_extension("").iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// Every path rooted at `crate`, `super` or `self` in `tokens`, made absolute for a file in `module`; a grouped
/// `use` gives one path per leaf, and `self` inside a group names the group's prefix.
fn absolute_paths(tokens: &[Token], module: &[String]) -> Vec<Vec<Segment>> {
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some((base, after)) = path_base(tokens, i, module) else {
            i += 1;
            continue;
        };
        let (tails, end) = use_tree(tokens, after);
        for tail in tails {
            paths.push(base.iter().cloned().chain(tail.into_iter().filter(|(name, _)| name != "self")).collect());
        }
        i = end;
    }
    paths
}

/// If a path rooted at `crate`, `self` or `super` starts at `start`: the module it is rooted at, and the index
/// of the segment that follows the root.
fn path_base(tokens: &[Token], start: usize, module: &[String]) -> Option<(Vec<Segment>, usize)> {
    let followed_by_separator = |i: usize| tokens.get(i + 1).is_some_and(|token| token.is("::"));
    if !followed_by_separator(start) || (start > 0 && tokens[start - 1].is("::")) {
        return None;
    }
    let line = tokens[start].line;
    let mut base: Vec<Segment> = module.iter().map(|name| (name.clone(), line)).collect();
    let mut i = start;
    if tokens[i].is("crate") {
        base.clear();
        i += 2;
    } else if tokens[i].is("self") {
        i += 2;
    } else {
        while tokens.get(i).is_some_and(|token| token.is("super")) && followed_by_separator(i) {
            base.pop();
            i += 2;
        }
    }
    (i > start).then_some((base, i))
}

/// The paths of the use tree (or plain path) starting at `i`, and the index just past it:
/// `a::{b as c, d::{e, f}}` gives `a::b`, `a::d::e` and `a::d::f`.
fn use_tree(tokens: &[Token], i: usize) -> (Vec<Vec<Segment>>, usize) {
    match tokens.get(i) {
        Some(token) if token.is("{") => use_group(tokens, i + 1),
        Some(token) if token.kind == Kind::Word || token.is("*") => {
            let segment = (token.text.clone(), token.line);
            let next_is = |offset: usize, text: &str| tokens.get(i + offset).is_some_and(|token| token.is(text));
            if next_is(1, "::") {
                let (tails, end) = use_tree(tokens, i + 2);
                (tails.into_iter().map(|tail| [vec![segment.clone()], tail].concat()).collect(), end)
            } else {
                (vec![vec![segment]], if next_is(1, "as") { i + 3 } else { i + 1 })
            }
        }
        _ => (vec![vec![]], i),
    }
}

/// The paths of the trees in a group whose `{` is just before `i`, and the index just past its `}`.
fn use_group(tokens: &[Token], mut i: usize) -> (Vec<Vec<Segment>>, usize) {
    let mut paths = Vec::new();
    loop {
        let (tree, end) = use_tree(tokens, i);
        paths.extend(tree.into_iter().filter(|path| !path.is_empty()));
        match tokens.get(end) {
            Some(token) if token.is(",") => i = end + 1,
            Some(token) if token.is("}") => return (paths, end + 1),
            _ => return (paths, end),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The source tree and its graphs.

fn load_source_tree(src: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    collect_rust_files(src, &mut files);
    files.sort();
    let parsed: Vec<(PathBuf, Vec<Token>, Vec<ModuleDecl>)> = files
        .into_iter()
        .map(|file| {
            let source = fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let (tokens, test_modules) = strip_test_code(&tokenize(&source));
            (file.strip_prefix(src).unwrap().to_path_buf(), tokens, test_modules)
        })
        .collect();
    let test_files: Vec<PathBuf> = parsed
        .iter()
        .flat_map(|(relative, _, test_modules)| test_modules.iter().flat_map(|decl| declared_files(relative, decl)))
        .collect();
    parsed
        .into_iter()
        .filter(|(relative, ..)| !is_test_only(relative, &test_files))
        .map(|(relative, tokens, _)| SourceFile { module: module_path(&relative), relative, tokens })
        .collect()
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for path in entries.map(|entry| entry.unwrap().path()) {
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// The submodule of `parent` that `path` lies in, if it lies inside `parent`.
fn child_of(parent: &[&str], path: &[String]) -> Option<String> {
    let inside = path.len() > parent.len() && path.iter().zip(parent).all(|(name, wanted)| name == wanted);
    inside.then(|| path[parent.len()].clone())
}

/// The uses between the submodules of `parent` (the empty path for the crate's top-level modules).
fn module_graph(files: &[SourceFile], parent: &[&str]) -> Graph {
    let mut graph: Graph =
        files.iter().filter_map(|file| child_of(parent, &file.module)).map(|name| (name, BTreeMap::new())).collect();
    for file in files {
        let Some(from) = child_of(parent, &file.module) else { continue };
        for path in absolute_paths(&file.tokens, &file.module) {
            let names: Vec<String> = path.iter().map(|(name, _)| name.clone()).collect();
            let Some(to) = child_of(parent, &names).filter(|to| *to != from && graph.contains_key(to)) else {
                continue;
            };
            let site = Site { file: format!("src/{}", file.relative.display()), line: path[parent.len()].1 };
            let sites = graph.get_mut(&from).unwrap().entry(to).or_default();
            if !sites.contains(&site) {
                sites.push(site);
            }
        }
    }
    graph
}

fn print_graph(title: &str, graph: &Graph) {
    println!("{title}:");
    for (module, uses) in graph {
        println!("  {module} -> {}", uses.keys().cloned().collect::<Vec<_>>().join(", "));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Cycles.

/// The modules reachable from `start` along one or more edges.
fn reachable(graph: &Graph, start: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![start.to_string()];
    while let Some(module) = stack.pop() {
        for next in graph.get(&module).into_iter().flat_map(|uses| uses.keys()) {
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    seen
}

/// The strongly connected components with more than one module: sets of modules that all reach each other.
fn tangles(graph: &Graph) -> Vec<BTreeSet<String>> {
    let reach: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|module| (module, reachable(graph, module))).collect();
    let mut components: Vec<BTreeSet<String>> = Vec::new();
    for module in graph.keys() {
        if components.iter().any(|component| component.contains(module)) {
            continue;
        }
        let component: BTreeSet<String> =
            reach[module].iter().filter(|other| reach[other].contains(module)).cloned().collect();
        if component.len() > 1 {
            components.push(component);
        }
    }
    components
}

/// A shortest cycle from `start` back to itself inside `component`, as `[start, .., start]`.
fn cycle_through(graph: &Graph, component: &BTreeSet<String>, start: &str) -> Vec<String> {
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::from([start.to_string()]);
    while let Some(module) = queue.pop_front() {
        for next in graph[&module].keys().filter(|next| component.contains(*next)) {
            if next == start {
                let mut path = vec![start.to_string(), module.clone()];
                while let Some(previous) = came_from.get(path.last().unwrap()) {
                    path.push(previous.clone());
                }
                path.reverse();
                return path;
            }
            if !came_from.contains_key(next) {
                came_from.insert(next.clone(), module.clone());
                queue.push_back(next.clone());
            }
        }
    }
    vec![start.to_string()]
}

/// One paragraph per tangle: its modules, a cycle through them, and every use between them (breaking enough of
/// those uses breaks the cycles) with where it is written.
fn describe_cycles(level: &str, graph: &Graph) -> Vec<String> {
    tangles(graph)
        .iter()
        .map(|component| {
            let cycle = cycle_through(graph, component, component.first().unwrap());
            let members = component.iter().cloned().collect::<Vec<_>>().join(", ");
            let mut text = format!("{level}: {{{members}}} reach each other, e.g. {}", cycle.join(" -> "));
            for from in component {
                for (to, sites) in graph[from].iter().filter(|(to, _)| component.contains(*to)) {
                    text += &format!("\n    {from} -> {to}: {}", describe_sites(sites));
                }
            }
            text
        })
        .collect()
}

/// The first few sites, and how many more there are.
fn describe_sites(sites: &[Site]) -> String {
    let shown: Vec<String> = sites.iter().take(3).map(Site::to_string).collect();
    let more = if sites.len() > 3 { format!(" and {} more", sites.len() - 3) } else { String::new() };
    shown.join(", ") + &more
}

// ---------------------------------------------------------------------------------------------------------------

#[test]
fn top_level_modules_and_model_submodules_have_no_cycles() {
    let files = load_source_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let top_level = module_graph(&files, &[]);
    let model = module_graph(&files, &["model"]);
    assert!(top_level.contains_key("model") && model.len() > 1, "src/ was not read as expected: {top_level:?}");
    print_graph("top-level modules", &top_level);
    print_graph("submodules of model", &model);
    let cycles = [describe_cycles("top level", &top_level), describe_cycles("model", &model)].concat();
    assert!(cycles.is_empty(), "module cycles break the layering invariant in ARCHITECTURE.md:\n{}", cycles.join("\n"));
}

fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut graph = Graph::new();
    for &(from, to) in edges {
        graph.entry(to.to_string()).or_default();
        graph.entry(from.to_string()).or_default().insert(to.to_string(), vec![Site { file: from.into(), line: 1 }]);
    }
    graph
}

#[test]
fn cycle_finder_reports_each_tangle_with_a_cycle_inside_it() {
    let layered = graph_of(&[("a", "b"), ("b", "c"), ("a", "c")]);
    assert!(tangles(&layered).is_empty());
    assert!(describe_cycles("layered", &layered).is_empty());

    let tangled = graph_of(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("x", "y"), ("y", "x")]);
    let components = tangles(&tangled);
    let set = |names: &[&str]| names.iter().map(|name| name.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(components, [set(&["a", "b", "c"]), set(&["x", "y"])]);
    assert_eq!(cycle_through(&tangled, &components[0], "a"), ["a", "b", "c", "a"]);
    let described = describe_cycles("example", &tangled);
    assert_eq!(described.len(), 2);
    assert!(described[0].starts_with("example: {a, b, c} reach each other, e.g. a -> b -> c -> a"), "{described:?}");
    assert!(described[1].contains("x -> y -> x"), "{described:?}");
}

#[test]
fn parser_expands_grouped_uses_and_skips_test_code_comments_and_strings() {
    let source = r##"
//! Mentions crate::report only in a comment.
use crate::{
    db::{self, begin_write},
    message::Template as T, // crate::http in a comment
    segment,
};
use super::train::Examples;

/* crate::http in a /* nested */ block comment */
fn run() -> &'static str {
    let quote = '"';
    let text = "crate::http in a string";
    let raw = r#"crate::http in a "raw" string"#;
    crate::status::show(text)
}

#[cfg(test)]
mod tests {
    use crate::report::{self, Summary};
    fn f() {
        crate::http::serve();
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod engine_tests;

fn after_tests() {
    crate::loyalty::recompute(
        1,
    );
}
"##;
    let (tokens, test_modules) = strip_test_code(&tokenize(source));
    let module = vec!["model".to_string(), "workflow".to_string()];
    let paths: BTreeSet<String> = absolute_paths(&tokens, &module)
        .iter()
        .map(|path| path.iter().map(|(name, line)| format!("{name}@{line}")).collect::<Vec<_>>().join("::"))
        .collect();
    let expected = [
        "db@4",
        "db@4::begin_write@4",
        "message@5::Template@5",
        "segment@6",
        "model@8::train@8::Examples@8",
        "status@15::show@15",
        "loyalty@31::recompute@31",
    ];
    assert_eq!(paths, expected.iter().map(|path| path.to_string()).collect::<BTreeSet<_>>());

    let declared = ModuleDecl { name: "engine_tests".into(), path_attribute: Some("engine_tests.rs".into()) };
    assert_eq!(test_modules, [declared]);
    let engine_tests = declared_files(Path::new("loyalty/engine.rs"), &test_modules[0]);
    assert_eq!(engine_tests, [PathBuf::from("loyalty/engine_tests.rs")]);
    let decl = ModuleDecl { name: "tests".into(), path_attribute: None };
    let spec_tests = declared_files(Path::new("campaign/spec.rs"), &decl);
    assert!(is_test_only(Path::new("campaign/spec/tests.rs"), &spec_tests));
    assert!(!is_test_only(Path::new("campaign/spec.rs"), &spec_tests));
    assert_eq!(module_path(Path::new("model/file/mod.rs")), ["model", "file"]);
    assert_eq!(module_path(Path::new("lib.rs")), Vec::<String>::new());
}
