//! The run workspace: every JSON artifact is validated against its schema in `schemas/`
//! when written, and every file appears atomically (temp file + rename in the same folder),
//! so a crash never leaves a half-written artifact that looks complete.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// Artifact name → schema text. One schema per artifact; the file is `<name>.json`.
const SCHEMAS: &[(&str, &str)] = &[
    ("setup-preflight", include_str!("../../schemas/setup-preflight.schema.json")),
    ("profile-baseline", include_str!("../../schemas/profile.schema.json")),
    ("profile-after", include_str!("../../schemas/profile.schema.json")),
    ("profile-pair", include_str!("../../schemas/profile-pair.schema.json")),
    ("stage-facts", include_str!("../../schemas/stage-facts.schema.json")),
    ("structure-assessment", include_str!("../../schemas/structure-assessment.schema.json")),
    ("dedupe-candidates", include_str!("../../schemas/dedupe-candidates.schema.json")),
    ("validation-report", include_str!("../../schemas/validation-report.schema.json")),
    ("source-guard", include_str!("../../schemas/source-guard.schema.json")),
    ("validation-report-after", include_str!("../../schemas/validation-report.schema.json")),
    ("validation-report-targets", include_str!("../../schemas/validation-report.schema.json")),
    ("validation-report-targets-after", include_str!("../../schemas/validation-report.schema.json")),
    ("validation-scope-note", include_str!("../../schemas/validation-scope-note.schema.json")),
    ("validation-scope-note-targets", include_str!("../../schemas/validation-scope-note.schema.json")),
    ("validation-scope-note-reverify", include_str!("../../schemas/validation-scope-note.schema.json")),
    ("geometry-classes", include_str!("../../schemas/geometry-classes.schema.json")),
    ("route-trials", include_str!("../../schemas/route-trials.schema.json")),
    ("restructure-decision", include_str!("../../schemas/restructure-decision.schema.json")),
    ("apply-restructure-manifest", include_str!("../../schemas/apply-restructure-manifest.schema.json")),
    ("ref-remap-manifest", include_str!("../../schemas/apply-restructure-manifest.schema.json")),
    ("instancing-readiness", include_str!("../../schemas/instancing-readiness.schema.json")),
    ("preservation-apply-restructure", include_str!("../../schemas/preservation.schema.json")),
    ("preservation-so-run-operations", include_str!("../../schemas/preservation.schema.json")),
    ("operation-plan", include_str!("../../schemas/operation-plan.schema.json")),
    ("operations-status", include_str!("../../schemas/operations-status.schema.json")),
    ("compare-profiles", include_str!("../../schemas/compare-profiles.schema.json")),
    ("optimization-report", include_str!("../../schemas/optimization-report.schema.json")),
    ("report-gate", include_str!("../../schemas/report-gate.schema.json")),
    ("iterations", include_str!("../../schemas/iterations.schema.json")),
    ("run", include_str!("../../schemas/run.schema.json")),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("artifact {name} does not match its schema: {errors}")]
    Invalid { name: String, errors: String },
    #[error("no schema for artifact {0}")]
    UnknownArtifact(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("artifact {name} is not what the daemon reads: {source}")]
    Shape { name: String, source: serde_json::Error },
}

fn validators() -> &'static HashMap<&'static str, jsonschema::Validator> {
    static VALIDATORS: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        SCHEMAS
            .iter()
            .map(|(name, text)| {
                let schema: Value =
                    serde_json::from_str(text).unwrap_or_else(|e| panic!("schema {name} is not JSON: {e}"));
                let validator =
                    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("schema {name} is invalid: {e}"));
                (*name, validator)
            })
            .collect()
    })
}

/// Validate `value` against the schema of artifact `name`.
pub fn validate(name: &str, value: &Value) -> Result<(), StoreError> {
    let validator = validators().get(name).ok_or_else(|| StoreError::UnknownArtifact(name.to_string()))?;
    let errors: Vec<String> =
        validator.iter_errors(value).take(5).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid { name: name.to_string(), errors: errors.join("; ") })
    }
}

pub fn artifact_names() -> impl Iterator<Item = &'static str> {
    SCHEMAS.iter().map(|(name, _)| *name)
}

/// Write `bytes` to `path` atomically: a temp file in the same folder, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    temp.write_all(bytes).map_err(io)?;
    temp.as_file().sync_all().map_err(io)?;
    temp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// What a run writes in its workspace besides `<artifact>.json`: the report's other forms and
/// the folders of written stages. A new run of the same stage clears exactly these first, so
/// nothing of an earlier run is ever read as part of it.
pub const RUN_ENTRIES: &[&str] = &[
    "optimization-report.md",
    "optimization-report.html",
    "optimized",
    "restructured",
    "instancing",
    "trials",
    "passes",
    "logs",
];

/// Why a folder cannot be a new run's workspace.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// It holds files that are not a usdtune run's.
    Foreign(PathBuf),
    /// It holds a usdtune run of another stage (that stage).
    OtherStage(String),
}

/// Make `dir` the workspace of a new run of `stage`: empty, or a previous run of the same
/// stage (its entries are removed), or anything with `force` (our entries removed, other
/// files left alone and never read).
pub fn claim_workspace(dir: &Path, stage: &str, force: bool) -> Result<Result<(), Claim>, std::io::Error> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Ok(())) };
    let names: Vec<String> =
        entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    if names.is_empty() {
        return Ok(Ok(()));
    }
    let ours = |name: &str| {
        RUN_ENTRIES.contains(&name) || name.strip_suffix(".json").is_some_and(|n| artifact_names().any(|a| a == n))
    };
    if !force {
        let previous: Option<Value> =
            std::fs::read(dir.join("run.json")).ok().and_then(|t| serde_json::from_slice(&t).ok());
        match previous.as_ref().and_then(|r| r["stage_path"].as_str()) {
            None => return Ok(Err(Claim::Foreign(dir.to_path_buf()))),
            Some(other) if other != stage => return Ok(Err(Claim::OtherStage(other.to_string()))),
            Some(_) => {}
        }
    }
    for name in names.iter().filter(|n| ours(n)) {
        let path = dir.join(name);
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(Ok(()))
}

/// One run's workspace folder.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.json"))
    }

    /// A JSON document named relative to the workspace (a report's `source_manifests`).
    pub fn read_json_file(&self, relative: &str) -> Result<Value, StoreError> {
        let path = self.root.join(relative);
        let text = std::fs::read(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
        serde_json::from_slice(&text).map_err(|source| StoreError::Json { path, source })
    }

    /// Validate, then write `<name>.json` atomically. Returns its path.
    pub fn write_artifact(&self, name: &str, value: &Value) -> Result<PathBuf, StoreError> {
        validate(name, value)?;
        let path = self.path_of(name);
        let mut text = serde_json::to_vec_pretty(value).expect("serde_json::Value always serializes");
        text.push(b'\n');
        write_atomic(&path, &text)?;
        Ok(path)
    }

    pub fn read_artifact(&self, name: &str) -> Result<Value, StoreError> {
        let path = self.path_of(name);
        let text = std::fs::read(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
        serde_json::from_slice(&text).map_err(|source| StoreError::Json { path, source })
    }

    /// Read an artifact into its type: a missing or misnamed field is an error, not a default.
    pub fn read<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        serde_json::from_value(self.read_artifact(name)?)
            .map_err(|source| StoreError::Shape { name: name.into(), source })
    }

    /// [`Self::read`] of an artifact an earlier phase may not have written.
    pub fn read_opt<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        if self.has_artifact(name) {
            self.read(name).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn has_artifact(&self, name: &str) -> bool {
        self.path_of(name).is_file()
    }

    pub fn write_text(&self, file_name: &str, text: &str) -> Result<PathBuf, StoreError> {
        let path = self.root.join(file_name);
        write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }

    /// Remove the partial layers attempts left in the written stages' folders ([`RUN_ENTRIES`]):
    /// an executor exports each layer as `<stem>.partial-<attempt><ext>` and renames it into
    /// place, so one killed mid-export leaves its partial behind. Returns how many went.
    pub fn sweep_partials(&self) -> usize {
        let mut folders: Vec<PathBuf> = RUN_ENTRIES.iter().map(|e| self.root.join(e)).filter(|p| p.is_dir()).collect();
        let mut removed = 0;
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    folders.push(path);
                } else if is_partial_layer(&entry.file_name().to_string_lossy()) && std::fs::remove_file(&path).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// `<stem>.partial-<attempt>.<usd extension>` (or `<stem>.partial.<ext>` from a direct call).
fn is_partial_layer(name: &str) -> bool {
    let Some((stem, extension)) = name.rsplit_once('.') else { return false };
    let usd = ["usd", "usda", "usdc"].contains(&extension);
    usd && stem.rsplit_once('.').is_some_and(|(_, tag)| tag == "partial" || tag.starts_with("partial-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partial_layers_in_written_stage_folders_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("restructured").join("protos");
        std::fs::create_dir_all(&nested).unwrap();
        let files = [
            dir.path().join("optimized").join("root.partial-3f2a9c1b7d0e.usdc"),
            nested.join("proto_0.partial-3f2a9c1b7d0e.usd"),
            nested.join("proto_1.partial.usda"),
        ];
        let kept = [
            nested.join("proto_0.usd"),
            nested.join("partial.usd"),
            nested.join("notes.partial-x.txt"),
            dir.path().join("elsewhere.partial-3f2a9c1b7d0e.usd"),
        ];
        for path in files.iter().chain(&kept) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "#usda 1.0\n").unwrap();
        }
        assert_eq!(Workspace::new(dir.path()).sweep_partials(), 3);
        assert!(files.iter().all(|p| !p.exists()));
        assert!(kept.iter().all(|p| p.exists()), "layers, other files and files outside the stage folders stay");
    }

    #[test]
    fn a_workspace_belongs_to_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        assert_eq!(claim_workspace(&ws.join("new"), "/s.usda", false).unwrap(), Ok(()), "not there yet");
        assert_eq!(claim_workspace(ws, "/s.usda", false).unwrap(), Ok(()), "empty");
        std::fs::write(ws.join("notes.txt"), "mine").unwrap();
        assert_eq!(claim_workspace(ws, "/s.usda", false).unwrap(), Err(Claim::Foreign(ws.to_path_buf())));
        // A previous run of the same stage: its entries go, other files stay.
        std::fs::write(ws.join("run.json"), r#"{"stage_path": "/s.usda"}"#).unwrap();
        std::fs::write(ws.join("apply-restructure-manifest.json"), "{}").unwrap();
        std::fs::create_dir(ws.join("optimized")).unwrap();
        std::fs::write(ws.join("optimized/s.optimized.usda"), "#usda 1.0").unwrap();
        assert_eq!(claim_workspace(ws, "/other.usda", false).unwrap(), Err(Claim::OtherStage("/s.usda".into())));
        assert_eq!(claim_workspace(ws, "/s.usda", false).unwrap(), Ok(()));
        let left: Vec<_> = std::fs::read_dir(ws).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["notes.txt"]);
        assert_eq!(claim_workspace(ws, "/s.usda", true).unwrap(), Ok(()), "forced");
    }

    #[test]
    fn every_schema_compiles() {
        assert_eq!(validators().len(), SCHEMAS.len());
    }

    #[test]
    fn invalid_artifact_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path());
        let err = ws.write_artifact("compare-profiles", &serde_json::json!({"verdict": "great"})).unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert!(!ws.has_artifact("compare-profiles"));
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"first version, longer").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp files left behind");
    }
}
