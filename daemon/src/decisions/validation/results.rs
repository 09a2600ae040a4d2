//! What the executor's `validate` task reports (kit-extension/.../tasks/validate.py and
//! validation_worker.py): openability and, per job, each rule's issues or why it has none.

use serde::{Deserialize, Serialize};

/// The executor's `validate` task result (kit-extension/.../tasks/validate.py).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ValidateResult {
    pub openability: Openability,
    #[serde(default)]
    pub jobs: Vec<JobResult>,
    pub runner: String,
    pub timeout_s: f64,
    pub seconds: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Openability {
    pub opens: bool,
    #[serde(default)]
    pub issues: Vec<OpenIssue>,
    /// Files and asset paths `UsdUtils.ComputeAllDependencies` found (absent when skipped).
    #[serde(default)]
    pub dependencies: Option<Dependencies>,
    /// Every file the stage composes: the layers and the resolved assets (the source guard's).
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub seconds: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dependencies {
    pub layers: u64,
    pub assets: u64,
    pub unresolved: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct OpenIssue {
    pub rule: String,
    pub site: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct JobResult {
    pub id: String,
    /// ok | timeout | blocked_runtime | crashed | engine_error
    pub status: String,
    #[serde(default)]
    pub rules: Vec<RuleResult>,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub started_s: Option<f64>,
    #[serde(default)]
    pub ended_s: Option<f64>,
    /// The plan's time budget stopped the job or kept it from starting (status timeout).
    #[serde(default)]
    pub over_budget: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RuleResult {
    pub concept: String,
    #[serde(default)]
    pub issues: Vec<Issue>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Issue {
    #[serde(default = "info")]
    pub severity: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub sites: Vec<String>,
}

fn info() -> String {
    "info".into()
}
