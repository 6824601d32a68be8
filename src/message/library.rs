//! Layouts and partials: the files a template names in `{% extends %}`,
//! `{% include %}`, `{% import %}` and `{% from %}`.
//!
//! A name is a path relative to the campaigns folder (the folder of the
//! campaign files), as `html = "templates/welcome.html"` is: `{% extends
//! "templates/layout.html" %}`. No name may leave that folder: an absolute
//! path, a `..` that climbs out of it and a symbolic link that leads out of
//! it are refused, so a campaign cannot mail `/etc/passwd` to its customers.
//!
//! Every file a message needs is read when its campaign file is loaded
//! ([`Folder::gather`]) into the message's [`Library`]; the templates'
//! loader serves only from that library, so nothing is read from disk when
//! the message is sent, and an edit to a layout takes effect when the
//! campaigns are reloaded, like an edit to the campaign file itself. So the
//! names must be written as quoted strings: a name computed while rendering
//! could not have been read in advance.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::template::{Part, TemplateError};
use crate::segment::line_column;

/// Template files by name (a normalized path relative to the campaigns
/// folder), with their text as read at load.
pub type Files = BTreeMap<String, String>;

/// The files a message's templates reach, shared by its variants' copies.
pub type Library = Arc<Files>;

/// The deepest chain of layouts and partials below a message's template. Real
/// mail needs two or three (a layout, a footer it includes, a macro file).
pub const MAX_DEPTH: usize = 8;

/// The most files one message's library may hold, so that a campaign cannot
/// make every load read a tree of thousands of files.
pub const MAX_FILES: usize = 64;

/// A template that a tag names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `extends`, `include`, `import` or `from`.
    pub tag: &'static str,
    /// The name as written, or why the tag names no fixed template.
    pub name: Result<String, String>,
    /// The byte offset of the name (or of the expression in its place).
    pub offset: usize,
    /// `{% include ... ignore missing %}`: a file that does not exist is left out.
    pub optional: bool,
}

/// The templates `source` names, in order. This follows minijinja's lexer
/// (the default syntax): comments, `{% raw %}` blocks and the strings and
/// brackets inside tags are skipped as it skips them, so that a name in a
/// comment or a string is not taken for a tag. The loader serves nothing
/// but the library, so a name this missed could only fail to render, never
/// read a file.
pub fn references(source: &str) -> Vec<Reference> {
    let bytes = source.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(open) =
        (at..bytes.len().saturating_sub(1)).find(|&i| bytes[i] == b'{' && matches!(bytes[i + 1], b'{' | b'%' | b'#'))
    {
        let body = open + 2;
        at = match bytes[open + 1] {
            b'#' => source[body..].find("#}").map_or(source.len(), |i| body + i + 2),
            b'{' => end_of_tag(source, body, "}}"),
            _ => statement(source, body, &mut found),
        };
    }
    found
}

/// Reads the statement whose body starts at `at`, noting the templates it
/// names; returns where the statement (or the raw block it opens) ends.
fn statement(source: &str, at: usize, found: &mut Vec<Reference>) -> usize {
    let bytes = source.as_bytes();
    let mut i = at + usize::from(matches!(bytes.get(at), Some(b'-' | b'+')));
    i = skip_space(source, i);
    let word_end = i + source[i..].find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(source.len() - i);
    let end = end_of_tag(source, word_end, "%}");
    match &source[i..word_end] {
        "raw" => end_of_raw(source, end),
        "extends" => names(source, word_end, end, "extends", found),
        "include" => names(source, word_end, end, "include", found),
        "import" => names(source, word_end, end, "import", found),
        "from" => names(source, word_end, end, "from", found),
        _ => end,
    }
}

/// Notes the names of one tag: a quoted string, or for `include` a list of
/// them; anything else is an expression, refused.
fn names(source: &str, at: usize, end: usize, tag: &'static str, found: &mut Vec<Reference>) -> usize {
    let inner = source[..end].strip_suffix("%}").unwrap_or(&source[..end]).trim_end_matches(['-', '+']);
    let start = skip_space(source, at).min(inner.len());
    let literal = literal_names(inner, start, tag == "include");
    // After the names only the tag's own keywords may follow; an operator, a
    // filter or an `if` makes the name an expression.
    let after = inner[literal.as_ref().map_or(start, |(_, rest)| *rest)..].trim_start();
    let keywords: &[&str] = match tag {
        "include" => &["ignore", "with", "without"],
        "import" => &["as"],
        "from" => &["import"],
        _ => &[],
    };
    let first_word = after.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or_default();
    if let Some((names, _)) = literal.filter(|_| after.is_empty() || keywords.contains(&first_word)) {
        let words: Vec<&str> = after.split_whitespace().take(2).collect();
        let optional = tag == "include" && words == ["ignore", "missing"];
        for (name, offset) in names {
            found.push(Reference { tag, name, offset, optional });
        }
    } else {
        let name = Err(format!(
            "`{{% {tag} %}}` must name its template as a quoted string such as \"templates/layout.html\": \
             every layout and partial is read when the campaign is loaded, so a name computed while \
             rendering cannot be served"
        ));
        found.push(Reference { tag, name, offset: start, optional: false });
    }
    end
}

/// A name as written (or why it cannot be one) and its offset.
type Named = (Result<String, String>, usize);

/// The quoted name at `at`, or (with `list`) a list of them, each with its
/// offset, and where they end; `None` when something else is there.
fn literal_names(inner: &str, at: usize, list: bool) -> Option<(Vec<Named>, usize)> {
    match inner.as_bytes().get(at) {
        Some(b'"' | b'\'') => string(inner, at).map(|(name, after)| (vec![(name, at)], after)),
        Some(b'[') if list => {
            let mut names = Vec::new();
            let mut i = skip_space(inner, at + 1);
            loop {
                match inner.as_bytes().get(i) {
                    Some(b']') => return Some((names, i + 1)),
                    Some(b'"' | b'\'') => {
                        let (name, after) = string(inner, i)?;
                        names.push((name, i));
                        i = skip_space(inner, after);
                        if inner.as_bytes().get(i) == Some(&b',') {
                            i = skip_space(inner, i + 1);
                        }
                    }
                    _ => return None,
                }
            }
        }
        _ => None,
    }
}

/// A quoted string at `at`: its text and where it ends; `Err` in the text
/// for a name written with escapes.
fn string(source: &str, at: usize) -> Option<(Result<String, String>, usize)> {
    let end = string_end(source, at)?;
    let text = &source[at + 1..end - 1];
    let name =
        if text.contains('\\') { Err("write template names without backslashes".into()) } else { Ok(text.into()) };
    Some((name, end))
}

fn skip_space(source: &str, at: usize) -> usize {
    at + source[at..].find(|c: char| !c.is_whitespace()).unwrap_or(source.len() - at)
}

/// Where a string opening at `at` ends (after its closing quote), if it does.
fn string_end(source: &str, at: usize) -> Option<usize> {
    let bytes = source.as_bytes();
    let quote = bytes[at];
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Where a tag whose body starts at `at` ends (after `close`): strings and
/// brackets are skipped, as minijinja's lexer only ends a tag outside them.
fn end_of_tag(source: &str, at: usize, close: &str) -> usize {
    let bytes = source.as_bytes();
    let mut depth = 0_i32;
    let mut i = at;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => {
                i = string_end(source, i).unwrap_or(bytes.len());
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' => depth -= 1,
            b'}' if depth > 0 => depth -= 1,
            _ if depth <= 0 && bytes[i..].starts_with(close.as_bytes()) => return i + close.len(),
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// Where the raw block whose opening tag ends at `at` ends: after the first
/// `{% endraw %}` (with any whitespace control).
fn end_of_raw(source: &str, at: usize) -> usize {
    let mut from = at;
    while let Some(found) = source[from..].find("{%") {
        let open = from + found;
        let mut i = open + 2;
        i += usize::from(matches!(source.as_bytes().get(i), Some(b'-' | b'+')));
        i = skip_space(source, i);
        if let Some(rest) = source[i..].strip_prefix("endraw") {
            let rest = rest.trim_start().trim_start_matches(['-', '+']);
            if let Some(after) = rest.strip_prefix("%}") {
                return source.len() - after.len();
            }
        }
        from = open + 2;
    }
    source.len()
}

/// A template name as the library holds it: relative to the campaigns
/// folder, without `.` or empty segments, and never leaving the folder.
pub fn normalize(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("an empty template name".into());
    }
    if name.contains(['\\', '\0']) {
        return Err(format!("`{}`: write template paths with `/`, without backslashes", name.escape_debug()));
    }
    if name.starts_with('/') {
        return Err(format!(
            "`{name}` is an absolute path, outside the campaigns folder: template paths are relative to that \
             folder, such as \"templates/layout.html\""
        ));
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in name.split('/') {
        match segment {
            "" | "." => {}
            ".." if segments.pop().is_none() => {
                return Err(format!(
                    "`{name}` escapes the campaigns folder: template paths are relative to that folder and may not \
                     leave it"
                ));
            }
            ".." => {}
            _ => segments.push(segment),
        }
    }
    if segments.is_empty() {
        return Err(format!("`{name}` names the campaigns folder itself, not a template file"));
    }
    Ok(segments.join("/"))
}

/// Why a file could not be read.
#[derive(Debug, Clone)]
enum ReadError {
    Missing(String),
    Refused(String),
}

impl ReadError {
    fn message(&self) -> &str {
        match self {
            ReadError::Missing(message) | ReadError::Refused(message) => message,
        }
    }
}

/// The campaigns folder while one campaign file is checked: each template
/// file is read at most once, however many parts and variants use it.
#[derive(Debug)]
pub struct Folder {
    root: PathBuf,
    files: BTreeMap<String, Result<String, ReadError>>,
}

impl Folder {
    /// The folder of the campaign file `file`.
    pub fn of(file: &Path) -> Folder {
        let root = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Folder { root: root.to_owned(), files: BTreeMap::new() }
    }

    /// Where the file of a (normalized) name is.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The text of the file of a (normalized) name.
    pub fn read(&mut self, name: &str) -> Result<String, String> {
        self.read_file(name).map_err(|e| e.message().to_owned())
    }

    fn read_file(&mut self, name: &str) -> Result<String, ReadError> {
        if let Some(read) = self.files.get(name) {
            return read.clone();
        }
        let path = self.path(name);
        let read = match (self.root.canonicalize(), path.canonicalize()) {
            (Ok(root), Ok(real)) if !real.starts_with(&root) => Err(ReadError::Refused(format!(
                "{} leads outside the campaigns folder (through a symbolic link), to {}",
                path.display(),
                real.display()
            ))),
            _ => std::fs::read_to_string(&path).map_err(|e| {
                let message = format!("cannot read template file {}: {e}", path.display());
                if e.kind() == std::io::ErrorKind::NotFound {
                    ReadError::Missing(message)
                } else {
                    ReadError::Refused(message)
                }
            }),
        };
        self.files.insert(name.to_owned(), read.clone());
        read
    }

    /// Reads into `library` every file that `source` (the template of `part`,
    /// itself the file `own` or inline) names, and the files those name in
    /// turn. Returns the problems, each in the file that names the template:
    /// a dynamic, escaping or unreadable name, a cycle, a chain deeper than
    /// [`MAX_DEPTH`] or a library over [`MAX_FILES`].
    pub fn gather(&mut self, part: Part, source: &str, own: Option<&str>, library: &mut Files) -> Vec<TemplateError> {
        let chain: Vec<String> = own.into_iter().map(str::to_owned).collect();
        let mut walk = Walk { folder: self, part, library, own: chain.len(), chain };
        let mut errors = Vec::new();
        walk.visit(own, source, &mut errors);
        errors
    }
}

struct Walk<'a> {
    folder: &'a mut Folder,
    part: Part,
    library: &'a mut Files,
    /// The files from the part's own down to the one being read.
    chain: Vec<String>,
    /// 1 when the chain starts with the part's own file, 0 for an inline template.
    own: usize,
}

impl Walk<'_> {
    fn visit(&mut self, file: Option<&str>, source: &str, errors: &mut Vec<TemplateError>) {
        for reference in references(source) {
            let mut problem = |message: String| {
                let (line, column) = line_column(source, reference.offset);
                let file = file.map(str::to_owned);
                errors.push(TemplateError { part: self.part, file, offset: reference.offset, line, column, message });
            };
            let name = match reference.name.as_deref().map_err(String::clone).and_then(normalize) {
                Ok(name) => name,
                Err(message) => {
                    problem(format!("{{% {} %}}: {message}", reference.tag));
                    continue;
                }
            };
            if let Some(at) = self.chain.iter().position(|n| *n == name) {
                let mut cycle = self.chain[at..].to_vec();
                cycle.push(name);
                problem(format!("a cycle of templates: {}", cycle.join(" → ")));
                continue;
            }
            if self.library.contains_key(&name) {
                continue;
            }
            // The part's own file, when it is one, is not a level of nesting.
            if self.chain.len() - self.own >= MAX_DEPTH {
                problem(format!("`{name}` is nested more than {MAX_DEPTH} templates deep"));
                continue;
            }
            if self.library.len() >= MAX_FILES {
                problem(format!("`{name}` would make the message use more than {MAX_FILES} template files"));
                continue;
            }
            match self.folder.read_file(&name) {
                Ok(text) => {
                    self.library.insert(name.clone(), text.clone());
                    self.chain.push(name.clone());
                    self.visit(Some(&name), &text, errors);
                    self.chain.pop();
                }
                Err(ReadError::Missing(_)) if reference.optional => {}
                Err(error) => problem(format!("{{% {} \"{name}\" %}}: {}", reference.tag, error.message())),
            }
        }
    }
}

/// The library files `source` reaches, directly or through other files, in
/// the order first named.
pub fn reached(source: &str, library: &Files) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    let mut pending = vec![source];
    while let Some(text) = pending.pop() {
        for reference in references(text) {
            let Ok(name) = reference.name.as_deref().map_err(String::clone).and_then(normalize) else { continue };
            if let Some((name, text)) = library.get_key_value(&name)
                && seen.insert(name.clone())
            {
                order.push(name.clone());
                pending.push(text);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(source: &str) -> Vec<(&'static str, Result<String, String>, usize, bool)> {
        references(source).into_iter().map(|r| (r.tag, r.name, r.offset, r.optional)).collect()
    }

    #[test]
    fn each_kind_of_tag_is_found_with_the_offset_of_its_name() {
        let source = "{% extends \"templates/layout.html\" %}\n{%- include 'footer.html' -%}\n\
                      {% import \"m.html\" as m %}{% from 'n.html' import row, cell %}\
                      {%+ include ['a.html', \"b.html\"] ignore missing with context %}";
        let at = |quoted: &str| source.find(quoted).unwrap();
        assert_eq!(
            names(source),
            [
                ("extends", Ok("templates/layout.html".into()), at("\"templates/"), false),
                ("include", Ok("footer.html".into()), at("'footer"), false),
                ("import", Ok("m.html".into()), at("\"m.html"), false),
                ("from", Ok("n.html".into()), at("'n.html"), false),
                ("include", Ok("a.html".into()), at("'a.html"), true),
                ("include", Ok("b.html".into()), at("\"b.html"), true),
            ]
        );
    }

    #[test]
    fn names_in_comments_strings_output_and_raw_blocks_are_not_tags() {
        let source = "{# {% include 'a.html' %} #}{{ \"{% include 'b.html' %}\" }}{{ {'k': '}}'} }}\
                      {% raw %}{% include 'c.html' %}{% endraw %}{% set x = '%}' %}{% include 'd.html' %}\
                      {% raw -%}{% extends 'e.html' %}{%- endraw %}<p>{% extends 'f.html' %}</p>";
        let found: Vec<String> = references(source).into_iter().map(|r| r.name.unwrap()).collect();
        assert_eq!(found, ["d.html", "f.html"]);
    }

    #[test]
    fn a_name_that_is_an_expression_is_refused_where_it_is() {
        for source in [
            "{% include name %}",
            "{% include 'a' ~ '.html' %}",
            "{% extends 'layout.html' if x else 'other.html' %}",
            "{% include ['a.html', name] %}",
            "{% import 'm.html' | upper as m %}",
        ] {
            let found = references(source);
            assert_eq!(found.len(), 1, "{source}");
            let error = found[0].name.as_ref().unwrap_err();
            assert!(error.contains("must name its template as a quoted string"), "{error}");
            assert_eq!(found[0].offset, source.find(' ').unwrap() + 1 + found[0].tag.len() + 1, "{source}");
        }
        assert!(references("{% include 'a\\'b.html' %}")[0].name.as_ref().unwrap_err().contains("backslashes"));
    }

    #[test]
    fn broken_and_unterminated_tags_never_panic() {
        for source in ["{% include", "{% include 'a.html", "{% include [", "{{ 'é", "{% include 'é' %", "{%", "{"] {
            let _ = references(source);
        }
    }

    #[test]
    fn names_are_relative_to_the_campaigns_folder_and_may_not_leave_it() {
        assert_eq!(normalize("templates/layout.html"), Ok("templates/layout.html".into()));
        assert_eq!(normalize("./templates//x/../layout.html"), Ok("templates/layout.html".into()));
        let escapes = normalize("../../etc/passwd").unwrap_err();
        assert_eq!(
            escapes,
            "`../../etc/passwd` escapes the campaigns folder: template paths are relative to that folder and may not \
             leave it"
        );
        assert!(normalize("templates/../../x.html").unwrap_err().contains("escapes the campaigns folder"));
        assert!(normalize("/etc/passwd").unwrap_err().starts_with("`/etc/passwd` is an absolute path"));
        assert!(normalize("..\\x.html").unwrap_err().contains("without backslashes"));
        assert!(normalize("templates/..").unwrap_err().contains("names the campaigns folder itself"));
        assert!(normalize("").is_err());
    }

    /// A campaigns folder with these files.
    fn campaigns(files: &[(&str, &str)]) -> (tempfile::TempDir, Folder) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let folder = Folder::of(&dir.path().join("campaign.toml"));
        (dir, folder)
    }

    fn gather(folder: &mut Folder, source: &str) -> (Vec<String>, Vec<String>) {
        let mut library = BTreeMap::new();
        let errors = folder.gather(Part::Html, source, None, &mut library);
        let errors = errors
            .iter()
            .map(|e| format!("{}:{}:{}: {}", e.file.as_deref().unwrap_or("-"), e.line, e.column, e.message))
            .collect();
        (library.into_keys().collect(), errors)
    }

    #[test]
    fn gathering_reads_what_the_templates_name_and_what_those_name_in_turn() {
        let (_dir, mut folder) = campaigns(&[
            ("templates/layout.html", "{% include 'templates/footer.html' %}{% import 'templates/m.html' as m %}"),
            ("templates/footer.html", "{% include \"templates/address.html\" %}"),
            ("templates/address.html", "1 Main Street"),
            ("templates/m.html", "{% include 'templates/address.html' %}"),
            ("templates/unused.html", "never read"),
        ]);
        let (library, errors) = gather(&mut folder, "{% extends 'templates/layout.html' %}");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            library,
            ["templates/address.html", "templates/footer.html", "templates/layout.html", "templates/m.html"]
        );
        // Read once: a later change on disk is not seen within one load.
        std::fs::write(_dir.path().join("templates/address.html"), "changed").unwrap();
        assert_eq!(folder.read("templates/address.html").unwrap(), "1 Main Street");
    }

    #[test]
    fn escaping_absolute_missing_and_cyclic_names_are_refused_where_they_are_named() {
        let (dir, mut folder) = campaigns(&[
            ("templates/layout.html", "<p>\n  {% include \"../../etc/passwd\" %}{% include '/etc/passwd' %}</p>"),
            ("templates/a.html", "{% include 'templates/b.html' %}"),
            ("templates/b.html", "x\n{% include 'templates/a.html' %}"),
        ]);
        let (library, errors) = gather(
            &mut folder,
            "{% extends 'templates/layout.html' %}\n{% include 'templates/missing.html' %}\
             {% include 'templates/gone.html' ignore missing %}{% include 'templates/a.html' %}",
        );
        assert_eq!(library, ["templates/a.html", "templates/b.html", "templates/layout.html"]);
        let missing = dir.path().join("templates/missing.html");
        assert_eq!(
            errors,
            [
                "templates/layout.html:2:14: {% include %}: `../../etc/passwd` escapes the campaigns folder: template \
                 paths are relative to that folder and may not leave it"
                    .to_owned(),
                "templates/layout.html:2:46: {% include %}: `/etc/passwd` is an absolute path, outside the campaigns \
                 folder: template paths are relative to that folder, such as \"templates/layout.html\""
                    .to_owned(),
                format!(
                    "-:2:12: {{% include \"templates/missing.html\" %}}: cannot read template file {}: No such file or \
                     directory (os error 2)",
                    missing.display()
                ),
                "templates/b.html:2:12: a cycle of templates: templates/a.html → templates/b.html → templates/a.html"
                    .to_owned(),
            ]
        );
    }

    #[test]
    fn a_chain_too_deep_and_a_library_too_large_are_refused() {
        let deep: Vec<(String, String)> =
            (0..=MAX_DEPTH).map(|i| (format!("t{i}.html"), format!("{{% include 't{}.html' %}}", i + 1))).collect();
        let mut files: Vec<(&str, &str)> = deep.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        files.push(("t9.html", "end"));
        let (_dir, mut folder) = campaigns(&files);
        let (library, errors) = gather(&mut folder, "{% include 't0.html' %}");
        assert_eq!(library.len(), MAX_DEPTH);
        assert_eq!(errors, ["t7.html:1:12: `t8.html` is nested more than 8 templates deep"]);

        let wide: Vec<(String, String)> = (0..=MAX_FILES).map(|i| (format!("w{i}.html"), String::new())).collect();
        let files: Vec<(&str, &str)> = wide.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        let (_dir, mut folder) = campaigns(&files);
        let source: String = (0..=MAX_FILES).map(|i| format!("{{% include 'w{i}.html' %}}")).collect();
        let (library, errors) = gather(&mut folder, &source);
        assert_eq!(library.len(), MAX_FILES);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].ends_with("`w64.html` would make the message use more than 64 template files"), "{errors:?}");
    }

    #[test]
    fn a_symbolic_link_out_of_the_folder_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let (dir, mut folder) = campaigns(&[("templates/ok.html", "fine")]);
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("templates/secret.html"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path().join("templates/ok.html"), dir.path().join("inside.html")).unwrap();
        let (library, errors) = gather(&mut folder, "{% include 'templates/secret.html' %}{% include 'inside.html' %}");
        assert_eq!(library, ["inside.html"]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("leads outside the campaigns folder (through a symbolic link)"), "{errors:?}");
    }

    #[test]
    fn reached_follows_the_library_only() {
        let library: BTreeMap<String, String> = [
            ("layout.html", "{% include 'footer.html' %}"),
            ("footer.html", "{% include './layout.html' %}"),
            ("other.html", ""),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect();
        assert_eq!(
            reached("{% extends 'layout.html' %}{% include 'nowhere.html' %}", &library),
            ["layout.html", "footer.html"]
        );
    }
}
