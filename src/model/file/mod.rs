//! Model files: `<models_dir>/<name>.json`, written atomically (a temporary
//! file, synced, then renamed) and refused on load when they do not fit the
//! running code (another schema version or another feature list).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{ModelFile, Node, Parameters, SCHEMA_VERSION};
use crate::features::MODEL_INPUTS;

#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("cannot read model file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write model file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("model file {path} is not a readable patron model: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "model file {path} has schema version {found}, but this patron reads version {SCHEMA_VERSION}; \
         train a new model with `patron train`"
    )]
    SchemaVersion { path: PathBuf, found: String },
    #[error(
        "model file {path} was trained on other features than this patron computes ({difference}); \
         train a new model with `patron train`"
    )]
    Features { path: PathBuf, difference: String },
}

impl ModelFileError {
    /// A failure to read or write, rather than a file patron refuses.
    pub fn is_io(&self) -> bool {
        matches!(self, ModelFileError::Read { .. } | ModelFileError::Write { .. })
    }
}

impl crate::failure::Failure for ModelFileError {
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::input_if(!self.is_io())
    }
}

/// Where the model called `name` lives.
pub fn path(models_dir: &Path, name: &str) -> PathBuf {
    models_dir.join(format!("{name}.json"))
}

/// Writes `model` into `models_dir`; a reader never sees half a file.
pub fn save(models_dir: &Path, model: &ModelFile) -> Result<PathBuf, ModelFileError> {
    let target = path(models_dir, &model.name);
    let temporary = models_dir.join(format!(".{}.json.tmp", model.name));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(models_dir)?;
        let mut file = std::fs::File::create(&temporary)?;
        serde_json::to_writer_pretty(&mut file, model)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temporary, &target)?;
        // The rename itself must reach the disk too.
        std::fs::File::open(models_dir)?.sync_all()
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        ModelFileError::Write { path: target.clone(), source }
    })?;
    Ok(target)
}

/// Reads a model file and checks that this patron can use it.
pub fn load(path: &Path) -> Result<ModelFile, ModelFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelFileError::Read { path: path.into(), source })?;
    let damaged = |reason: String| ModelFileError::Damaged { path: path.into(), reason };
    // The version first: a file from another version may not parse at all.
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
    if !raw.is_object() {
        return Err(damaged("expected a JSON object".into()));
    }
    let version = &raw["schema_version"];
    if version.as_u64() != Some(u64::from(SCHEMA_VERSION)) {
        return Err(ModelFileError::SchemaVersion { path: path.into(), found: version.to_string() });
    }
    let model: ModelFile = serde_json::from_value(raw).map_err(|e| damaged(e.to_string()))?;
    if let Some(difference) = feature_difference(&model.features) {
        return Err(ModelFileError::Features { path: path.into(), difference });
    }
    check_shapes(&model).map_err(damaged)?;
    Ok(model)
}

/// How `features` differs from what the running code computes, if it does.
fn feature_difference(features: &[String]) -> Option<String> {
    if features.iter().map(String::as_str).eq(MODEL_INPUTS.iter().copied()) {
        return None;
    }
    let missing: Vec<&str> = MODEL_INPUTS.iter().copied().filter(|f| !features.iter().any(|g| g == f)).collect();
    let unknown: Vec<&str> = features.iter().map(String::as_str).filter(|f| !MODEL_INPUTS.contains(f)).collect();
    Some(match (missing.is_empty(), unknown.is_empty()) {
        (true, true) => "the same features in another order".to_owned(),
        _ => format!("missing: [{}]; unknown: [{}]", missing.join(", "), unknown.join(", ")),
    })
}

/// Parameters that index past the inputs would panic when scoring.
fn check_shapes(model: &ModelFile) -> Result<(), String> {
    let inputs = model.features.len();
    if model.scaling.columns.len() != inputs {
        return Err(format!("{} scaling entries for {inputs} features", model.scaling.columns.len()));
    }
    let trees = match &model.parameters {
        Parameters::Logistic { coefficients, .. } if coefficients.len() != inputs => {
            return Err(format!("{} coefficients for {inputs} features", coefficients.len()));
        }
        Parameters::Logistic { .. } => return Ok(()),
        Parameters::Tree { tree } => std::slice::from_ref(tree),
        Parameters::Forest { trees } if trees.is_empty() => return Err("a forest without trees".into()),
        Parameters::Forest { trees } => trees.as_slice(),
    };
    for tree in trees {
        let nodes = tree.nodes.len();
        let bad = tree.nodes.is_empty()
            || tree.nodes.iter().enumerate().any(|(i, node)| match *node {
                // Children come after their parent, so walking always ends.
                Node::Split { feature, left, right, .. } => {
                    feature >= inputs || left <= i || right <= i || left >= nodes || right >= nodes
                }
                Node::Leaf { probability } => !(0.0..=1.0).contains(&probability),
            });
        if bad {
            return Err("a tree with a node that points outside it".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
