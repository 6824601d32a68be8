//! The set of campaigns in `campaigns/`, reloaded on demand. A file that
//! stops validating keeps its last good version running, so a typo in one
//! campaign never stops the others or the daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::spec::{self, Campaign, Diagnostic};

#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// By file, so that a file's last good version can stand in for it.
    by_file: BTreeMap<PathBuf, Campaign>,
}

/// What a (re)load found wrong, and which campaigns run on an older version because of it.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub diagnostics: Vec<Diagnostic>,
    /// Names of campaigns kept at their last good version.
    pub kept: Vec<String>,
}

impl Catalog {
    /// Loads every `*.toml` file directly in `folder`.
    pub fn load(folder: &Path, topics: &[String]) -> (Catalog, LoadReport) {
        let mut catalog = Catalog::default();
        let report = catalog.reload(folder, topics);
        (catalog, report)
    }

    /// Re-reads `folder`: new and changed files that validate replace what was
    /// there, removed files drop out, failing files keep their last good version.
    pub fn reload(&mut self, folder: &Path, topics: &[String]) -> LoadReport {
        let mut report = LoadReport::default();
        let files = match campaign_files(folder) {
            Ok(files) => files,
            Err(diagnostic) => {
                report.diagnostics.push(diagnostic);
                report.kept = self.by_file.values().map(|c| c.name.clone()).collect();
                return report;
            }
        };
        let mut next = BTreeMap::new();
        for file in files {
            match spec::load_file(&file, topics) {
                Ok(campaign) => {
                    next.insert(file, campaign);
                }
                Err(diagnostics) => {
                    report.diagnostics.extend(diagnostics);
                    if let Some(previous) = self.by_file.remove(&file) {
                        report.kept.push(previous.name.clone());
                        next.insert(file, previous);
                    }
                }
            }
        }
        report.diagnostics.extend(drop_duplicate_names(&mut next));
        self.by_file = next;
        report
    }

    pub fn campaigns(&self) -> impl Iterator<Item = &Campaign> {
        self.by_file.values()
    }

    pub fn get(&self, name: &str) -> Option<&Campaign> {
        self.by_file.values().find(|c| c.name == name)
    }

    pub fn len(&self) -> usize {
        self.by_file.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_file.is_empty()
    }
}

/// The campaign files of a folder, sorted.
pub fn campaign_files(folder: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let entries = std::fs::read_dir(folder).map_err(|e| Diagnostic {
        file: folder.to_owned(),
        line: 1,
        column: 1,
        message: format!("cannot read the campaigns folder: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// A name used by two files: the later file (by name) is reported and left out.
fn drop_duplicate_names(campaigns: &mut BTreeMap<PathBuf, Campaign>) -> Vec<Diagnostic> {
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for (file, campaign) in campaigns.iter() {
        match seen.get(&campaign.name) {
            Some(first) => duplicates.push(Diagnostic {
                file: file.clone(),
                line: 1,
                column: 1,
                message: format!("campaign name `{}` is already used by {}", campaign.name, first.display()),
            }),
            None => {
                seen.insert(campaign.name.clone(), file.clone());
            }
        }
    }
    campaigns.retain(|file, _| !duplicates.iter().any(|d| &d.file == file));
    duplicates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Vec<String> {
        vec!["offers".into(), "loyalty".into()]
    }

    fn file(subject: &str) -> String {
        format!(
            "[audience]\nwhere = \"frequency >= 2\"\n\n[message]\nfrom = \"shop@example.com\"\nsubject = \"{subject}\"\ntext = \"Hello {{{{ unsubscribe_url }}}}\"\n"
        )
    }

    fn subject(catalog: &Catalog, name: &str) -> String {
        catalog.get(name).unwrap().message.parts[0].1.clone()
    }

    #[test]
    fn a_failing_file_keeps_its_last_good_version_and_the_others_reload() {
        let folder = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(folder.path().join(name), text).unwrap();
        write("a.toml", &file("A1"));
        write("b.toml", &file("B1"));
        write("c.toml", &file("C1"));
        write("notes.txt", "not a campaign");
        let (mut catalog, report) = Catalog::load(folder.path(), &topics());
        assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
        assert_eq!(catalog.len(), 3);

        write("a.toml", &file("A2"));
        write("b.toml", "[audience]\nwhere = \"frequncy >= 2\"\n");
        std::fs::remove_file(folder.path().join("c.toml")).unwrap();
        write("d.toml", "name = \"d\"\nbroken = true\n");
        let report = catalog.reload(folder.path(), &topics());

        assert_eq!(subject(&catalog, "a"), "A2");
        assert_eq!(subject(&catalog, "b"), "B1");
        assert!(catalog.get("c").is_none());
        assert!(catalog.get("d").is_none());
        assert_eq!(report.kept, ["b"]);
        let problems: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].ends_with("b.toml:1:1: missing field `message`"), "{problems:?}");
        assert!(problems[1].ends_with("d.toml:2:1: unknown field `broken`, expected one of `name`, `description`, `enabled`, `kind`, `topic`, `priority`, `schedule`, `timezone`, `send_window`, `send_window_zone`, `expires_after`, `audience`, `message`, `variant`, `winner`"), "{problems:?}");

        write("b.toml", &file("B2"));
        std::fs::remove_file(folder.path().join("d.toml")).unwrap();
        let report = catalog.reload(folder.path(), &topics());
        assert!(report.diagnostics.is_empty() && report.kept.is_empty());
        assert_eq!(subject(&catalog, "b"), "B2");
    }

    #[test]
    fn two_files_with_one_name_keep_the_first() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("a.toml"), format!("name = \"same\"\n{}", file("A"))).unwrap();
        std::fs::write(folder.path().join("b.toml"), format!("name = \"same\"\n{}", file("B"))).unwrap();
        let (catalog, report) = Catalog::load(folder.path(), &topics());
        assert_eq!(catalog.len(), 1);
        assert_eq!(subject(&catalog, "same"), "A");
        assert!(report.diagnostics[0].message.contains("is already used by"));
    }
}
