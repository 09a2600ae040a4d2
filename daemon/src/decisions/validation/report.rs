//! The validation report (upstream validation-report contract) from the executor's result:
//! findings normalized per concept, copies of a representative listed as sites of its
//! findings, and the coverage ledger whose completeness gates advancing.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::results::{Dependencies, Issue, JobResult, ValidateResult};
use super::{concept, Concept, GeometryClasses, Job, Plan, Scope, SharedClass, STRUCTURE_BLIND_LOSSLESS_FIXES};

/// Findings listed per concept before they are counted only (every site is counted).
pub const MAX_SITES: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidationPhase {
    Baseline,
    After,
}

/// validation-report.json (schemas/validation-report.schema.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidationReport {
    #[serde(rename = "schemaVersion")]
    pub schema_version: String,
    /// baseline | after
    pub phase: String,
    pub stage: StageRef,
    pub validators: Vec<ValidatorRow>,
    pub summary: Summary,
    pub coverage_ledger: Ledger,
    pub findings: Vec<Finding>,
    pub artifacts: ReportArtifacts,
    pub runtime_context: ValidationRuntime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRef {
    pub identifier: String,
    #[serde(rename = "rootLayer")]
    pub root_layer: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidatorRow {
    pub name: String,
    /// openability | rule
    pub kind: String,
    /// PASS | FAIL | TIMEOUT | BLOCKED
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    pub issues: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// PASS | FAIL | BLOCKED
    pub status: String,
    #[serde(rename = "errorCount")]
    pub error_count: usize,
    #[serde(rename = "warningCount")]
    pub warning_count: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ledger {
    pub complete: bool,
    pub entries: Vec<LedgerEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub target: String,
    pub concept: String,
    pub tier: u8,
    /// probed_with_findings | probed_clean | timeout_recorded | blocked_validation_runtime
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub concept: String,
    pub tier: u8,
    pub severity: String,
    pub message: String,
    pub sites: Vec<String>,
    /// Every site, also those beyond [`MAX_SITES`].
    pub site_count: u64,
    /// The usd-optimize operation family that addresses it ("" when none): the concept's.
    pub op_family: String,
    pub target: String,
    /// A representative's finding, listed for every copy of its geometry class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_result: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReportArtifacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_note: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidationRuntime {
    pub runner: String,
    pub job_timeout_s: f64,
    pub wall_seconds: f64,
    pub openability_seconds: Option<f64>,
    pub tier_wall_seconds: BTreeMap<String, f64>,
    pub jobs: usize,
    /// What all jobs together could take, and the jobs it stopped or kept from starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs_over_budget: Vec<String>,
    /// The per-geometry jobs' sample, "U of V representatives" (absent: every one checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
    pub unresolved: Vec<String>,
    /// What minimum openability's dependency scan counted (absent when it did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Dependencies>,
}

impl ValidationReport {
    /// The completion gate: advancing is refused while a flagged target is unresolved.
    pub fn ledger_gate(&self) -> Result<(), String> {
        if self.coverage_ledger.complete {
            return Ok(());
        }
        let unresolved = &self.runtime_context.unresolved;
        Err(format!("{} flagged validation target(s) unresolved: {}", unresolved.len(), unresolved.join(", ")))
    }

    /// Sites of a concept's findings (on one target, or all), counted over every copy.
    pub fn site_count(&self, concept: &str, target: Option<&str>) -> u64 {
        self.findings
            .iter()
            .filter(|f| f.concept == concept && target.is_none_or(|t| f.target == t))
            .map(|f| f.site_count)
            .sum()
    }

    /// Findings of a concept (one per group for grouping rules such as geom_duplicates).
    pub fn finding_count(&self, concept: &str) -> u64 {
        self.findings.iter().filter(|f| f.concept == concept).count() as u64
    }

    /// Asset paths in every layer, as minimum openability counted them (None when it did not):
    /// zero lets the restructure and the Phase 4 workers skip re-anchoring what they write.
    pub fn asset_path_count(&self) -> Option<u64> {
        self.runtime_context.dependencies.as_ref().map(|d| d.layers + d.assets + d.unresolved)
    }

    /// Whole-stage findings a lossless op fixes that the structure assessment cannot see: on
    /// a stage assessed already_optimized, any of them still sends the run to Phase 4.
    pub fn lossless_fixes_the_structure_misses(&self) -> Vec<&'static str> {
        STRUCTURE_BLIND_LOSSLESS_FIXES.iter().copied().filter(|c| self.site_count(c, None) > 0).collect()
    }

    /// The roots of the enclosure pairs ("enclosing + enclosed") where the Tier 3 occlusion
    /// probe found something, each once.
    pub fn occlusion_roots(&self) -> Vec<String> {
        let mut roots: Vec<String> = self
            .findings
            .iter()
            .filter(|f| f.concept == "spatial_occluded" && f.site_count > 0)
            .flat_map(|f| f.target.split(" + ").map(String::from).collect::<Vec<_>>())
            .collect();
        roots.sort();
        roots.dedup();
        roots
    }

    /// One line for the run's phase note.
    pub fn note(&self) -> String {
        let mut note = format!(
            "{}: {} findings, {} ledger entries; wall {}s",
            self.summary.status,
            self.findings.len(),
            self.coverage_ledger.entries.len(),
            self.runtime_context.wall_seconds,
        );
        let tiers = &self.runtime_context.tier_wall_seconds;
        if !tiers.is_empty() {
            let walls: Vec<String> = tiers.iter().map(|(k, v)| format!("{k} {v}s")).collect();
            note.push_str(&format!(" (jobs: {})", walls.join(", ")));
        }
        if let Some(sample) = &self.runtime_context.sample {
            note.push_str(&format!("; per-geometry rules on a sample of {sample}"));
        }
        let cut = &self.runtime_context.jobs_over_budget;
        if !cut.is_empty() {
            let budget = self.runtime_context.budget_s.unwrap_or_default();
            let budget = super::seconds_text(budget);
            note.push_str(&format!("; {} job(s) cut by the {budget} s time budget (timeout_recorded)", cut.len()));
        }
        note
    }
}

/// The validation report from the executor's result.
pub fn report(
    phase: ValidationPhase,
    stage: &str,
    plan: &Plan,
    result: &ValidateResult,
    classes: &GeometryClasses,
) -> ValidationReport {
    let index = classes.index();
    let results: HashMap<&str, &JobResult> = result.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let mut validators = Vec::new();
    let mut findings = Vec::new();
    let mut entries = Vec::new();
    let mut unresolved = Vec::new();

    let openability = &result.openability;
    for issue in &openability.issues {
        findings.push(Finding {
            rule: issue.rule.clone(),
            concept: "minimum_openability".into(),
            tier: 1,
            severity: "error".into(),
            message: issue.message.clone(),
            sites: vec![issue.site.clone()],
            site_count: 1,
            op_family: String::new(),
            target: "/".into(),
            shared_result: None,
        });
    }
    if plan.openability {
        validators.push(ValidatorRow {
            name: "minimum_openability".into(),
            kind: "openability".into(),
            status: if openability.issues.is_empty() { "PASS" } else { "FAIL" }.into(),
            canonical_name: None,
            module: None,
            class_name: None,
            issues: openability.issues.len() as u64,
            notes: None,
        });
    }

    for job in &plan.jobs {
        let Some(outcome) = results.get(job.id.as_str()) else {
            unresolved.extend(job.concepts.iter().map(|c| format!("{} on {}", c, job.target)));
            continue;
        };
        let status = outcome.status.as_str();
        for name in &job.concepts {
            let c = concept(name);
            let rule = outcome.rules.iter().find(|r| r.concept == *name);
            let (ledger, validator_status, reason, sites) = match (status, rule) {
                ("ok", Some(rule)) => {
                    let mut normalized = normalize(c, job, &rule.issues, classes, &index);
                    if c.name == "geom_duplicates" && job.scope == Scope::Representatives {
                        // The validator saw one mesh per class; the classes themselves are the exact duplicates.
                        normalized.extend(exact_copies(c, job, classes));
                    }
                    let errors = normalized.iter().any(|f| f.severity == "error");
                    let sites: u64 = normalized.iter().map(|f| f.site_count).sum();
                    let found = !normalized.is_empty();
                    findings.extend(normalized);
                    let sampled = plan.sample.as_ref().filter(|_| job.scope == Scope::Representatives);
                    (
                        if found { "probed_with_findings" } else { "probed_clean" },
                        if errors { "FAIL" } else { "PASS" },
                        sampled.map(|s| s.reason()).unwrap_or_default(),
                        sites,
                    )
                }
                ("timeout", _) => ("timeout_recorded", "TIMEOUT", outcome.error.clone(), 0),
                ("blocked_runtime", _) => ("blocked_validation_runtime", "BLOCKED", outcome.error.clone(), 0),
                // A crash or an engine failure: the runtime could not validate this target.
                _ => (
                    "blocked_validation_runtime",
                    "BLOCKED",
                    format!(
                        "{status}: {}",
                        Some(outcome.error.as_str()).filter(|e| !e.is_empty()).unwrap_or("no result for the rule")
                    ),
                    0,
                ),
            };
            let reason = Some(reason).filter(|r| !r.is_empty());
            validators.push(ValidatorRow {
                name: format!("{} ({})", c.name, job.target),
                kind: "rule".into(),
                status: validator_status.into(),
                canonical_name: Some(c.name.into()),
                module: Some(c.module.into()),
                class_name: Some(c.class_name.into()),
                issues: sites,
                notes: reason.clone(),
            });
            entries.push(LedgerEntry {
                target: job.target.clone(),
                concept: c.name.into(),
                tier: job.tier,
                status: ledger.into(),
                reason,
            });
        }
    }
    let complete = unresolved.is_empty();
    let errors = findings.iter().filter(|f| f.severity == "error").count();
    let warnings = findings.iter().filter(|f| f.severity == "warning").count();
    let status = if !complete {
        "BLOCKED"
    } else if errors > 0 || !openability.opens {
        "FAIL"
    } else {
        "PASS"
    };
    // Per tier: the span from its first job's start to its last job's end (jobs overlap).
    let mut spans: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for job in &plan.jobs {
        let Some(r) = results.get(job.id.as_str()) else { continue };
        let (Some(start), Some(end)) = (r.started_s, r.ended_s) else { continue };
        let span = spans.entry(format!("tier{}", job.tier)).or_insert((start, end));
        *span = (span.0.min(start), span.1.max(end));
    }
    let tier_wall_seconds: BTreeMap<String, f64> =
        spans.into_iter().map(|(k, (a, b))| (k, ((b - a) * 1000.0).round() / 1000.0)).collect();
    ValidationReport {
        schema_version: "1.0".into(),
        phase: match phase {
            ValidationPhase::Baseline => "baseline",
            ValidationPhase::After => "after",
        }
        .into(),
        stage: StageRef { identifier: stage.into(), root_layer: stage.into() },
        validators,
        summary: Summary { status: status.into(), error_count: errors, warning_count: warnings },
        coverage_ledger: Ledger { complete, entries },
        findings,
        artifacts: ReportArtifacts::default(),
        runtime_context: ValidationRuntime {
            runner: result.runner.clone(),
            job_timeout_s: result.timeout_s,
            wall_seconds: result.seconds,
            openability_seconds: openability.seconds,
            tier_wall_seconds,
            jobs: plan.jobs.len(),
            budget_s: plan.budget_s,
            jobs_over_budget: result.jobs.iter().filter(|j| j.over_budget).map(|j| j.id.clone()).collect(),
            sample: plan
                .sample
                .as_ref()
                .filter(|_| plan.jobs.iter().any(|j| j.scope == Scope::Representatives))
                .map(|s| format!("{} of {} representatives", s.representatives, s.of)),
            unresolved,
            dependencies: if plan.openability { openability.dependencies.clone() } else { None },
        },
        generated_at: None,
    }
}

/// Findings of one rule on one job: grouped by message, sites expanded to every copy.
/// usd-optimize rules add a stage-level summary issue at "/" beside the per-prim ones;
/// the summary is kept only when a rule names no prim.
fn normalize(
    c: &Concept,
    job: &Job,
    issues: &[Issue],
    classes: &GeometryClasses,
    index: &HashMap<&str, &SharedClass>,
) -> Vec<Finding> {
    let sites_of = |issue: &Issue| -> Vec<String> { issue.sites.iter().filter(|s| !s.is_empty()).cloned().collect() };
    let names_a_prim = |issue: &Issue| sites_of(issue).iter().any(|s| s != "/");
    let per_prim = issues.iter().any(names_a_prim);
    let mut grouped: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for issue in issues {
        if per_prim && !names_a_prim(issue) {
            continue;
        }
        let sites = grouped.entry((issue.severity.clone(), issue.message.clone())).or_default();
        for site in sites_of(issue) {
            if job.scope == Scope::Representatives {
                sites.extend(classes.expand(&site, index));
            } else {
                sites.push(site);
            }
        }
    }
    grouped
        .into_iter()
        .map(|((severity, message), mut sites)| {
            sites.sort();
            sites.dedup();
            // A stage-level issue that names no prim still counts once.
            let count = sites.len().max(1) as u64;
            sites.truncate(MAX_SITES);
            Finding {
                rule: format!("{}.{}", c.module, c.class_name),
                concept: c.name.into(),
                tier: job.tier,
                severity,
                message,
                sites,
                site_count: count,
                op_family: c.op_family.into(),
                target: job.target.clone(),
                shared_result: Some(job.scope == Scope::Representatives),
            }
        })
        .collect()
}

/// One finding per geometry class with copies: meshes whose whole content hashes equal.
fn exact_copies(c: &Concept, job: &Job, classes: &GeometryClasses) -> Vec<Finding> {
    classes
        .shared
        .iter()
        .map(|class| {
            let mut sites: Vec<String> =
                std::iter::once(class.representative.clone()).chain(class.copies.iter().cloned()).collect();
            let count = sites.len() as u64;
            sites.truncate(MAX_SITES);
            Finding {
                rule: "usdtune.geometry_classes (identical content hash)".into(),
                concept: c.name.into(),
                tier: job.tier,
                severity: "warning".into(),
                message: format!("{} has {} exact duplicate(s)", class.representative, class.copies.len()),
                sites,
                site_count: count,
                op_family: c.op_family.into(),
                target: job.target.clone(),
                shared_result: Some(false),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::validation::testing::{inputs, many_classes};
    use crate::decisions::validation::{plan, reverify, FlaggedPair, Placement};
    use serde_json::{json, Value};

    fn result(jobs: Value) -> ValidateResult {
        serde_json::from_value(json!({"openability": {"opens": true, "issues": [], "seconds": 0.1}, "jobs": jobs, "runner": "subprocess", "timeout_s": 300, "seconds": 1.0})).unwrap()
    }

    /// The report as JSON, validated against its schema.
    fn stored(report: &ValidationReport) -> Value {
        let value = serde_json::to_value(report).unwrap();
        crate::store::validate("validation-report", &value).unwrap();
        value
    }

    #[test]
    fn report_shares_a_representative_result_with_every_copy_and_resolves_the_ledger() {
        let i = inputs("optimization");
        let p = plan(&i, Placement::Target);
        let mut jobs: Vec<Value> = p
            .jobs
            .iter()
            .map(|j| {
                json!({"id": j.id, "status": "ok", "seconds": 0.5,
            "rules": j.concepts.iter().map(|c| json!({"concept": c, "issues": []})).collect::<Vec<_>>()})
            })
            .collect();
        let weld = jobs.iter_mut().find(|j| j["id"] == "t2-vertex_weld").unwrap();
        weld["rules"][0]["issues"] = json!([
            {"severity": "warning", "message": "Found 1 mesh with mergeable vertices to fix", "sites": ["/"]},
            {"severity": "warning", "message": "Mesh with mergeable vertices found", "sites": ["/F/M1/Bolt"]},
        ]);
        let dup = jobs.iter_mut().find(|j| j["id"] == "t3-geom_duplicates").unwrap();
        *dup = json!({"id": "t3-geom_duplicates", "status": "timeout", "error": "no result within 300 s", "rules": []});
        let typed = report(ValidationPhase::Baseline, "/s.usda", &p, &result(json!(jobs)), &i.classes);
        let r = stored(&typed);
        let weld = r["findings"].as_array().unwrap().iter().find(|f| f["concept"] == "vertex_weld").unwrap();
        assert_eq!(weld["sites"], json!(["/F/M1/Bolt", "/F/M2/Bolt", "/F/M3/Bolt"]));
        assert_eq!(weld["op_family"], "meshCleanup");
        assert_eq!(typed.site_count("vertex_weld", None), 3);
        let status = |c: &str| {
            r["coverage_ledger"]["entries"].as_array().unwrap().iter().find(|e| e["concept"] == c).unwrap()["status"]
                .clone()
        };
        assert_eq!(status("vertex_weld"), "probed_with_findings");
        assert_eq!(status("primvar_unused"), "probed_clean");
        assert_eq!(status("geom_duplicates"), "timeout_recorded");
        assert_eq!(r["coverage_ledger"]["complete"], true);
        assert_eq!(r["summary"]["status"], "PASS");
        assert!(typed.ledger_gate().is_ok());

        // Re-verify subtracts the clean and timed-out concepts.
        let again = reverify(&p, &typed);
        assert_eq!(again.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["t2-vertex_weld"]);
        crate::store::validate("validation-scope-note", &again.note).unwrap();
    }

    #[test]
    fn the_ledger_gate_blocks_when_a_flagged_target_has_no_disposition() {
        let mut i = inputs("optimization");
        i.pairs = vec![FlaggedPair {
            enclosing: "/F/M1/Housing".into(),
            enclosed: "/F/M1/Motor".into(),
            enclosure_opaque: Some(true),
        }];
        let p = plan(&i, Placement::Target);
        // The executor answered every job but the occlusion probe of the flagged pair.
        let jobs: Vec<Value> = p.jobs.iter().filter(|j| !j.concepts.contains(&"spatial_occluded"))
            .map(|j| json!({"id": j.id, "status": "ok", "rules": j.concepts.iter().map(|c| json!({"concept": c, "issues": []})).collect::<Vec<_>>()}))
            .collect();
        let typed = report(ValidationPhase::Baseline, "/s.usda", &p, &result(json!(jobs)), &i.classes);
        let r = stored(&typed);
        assert_eq!(r["coverage_ledger"]["complete"], false);
        assert_eq!(r["summary"]["status"], "BLOCKED");
        let refusal = typed.ledger_gate().unwrap_err();
        assert!(refusal.contains("spatial_occluded on /F/M1/Housing + /F/M1/Motor"), "{refusal}");
    }

    #[test]
    fn a_crashed_or_unloadable_rule_is_recorded_not_passed() {
        let i = inputs("structuring");
        let p = plan(&i, Placement::WholeStage);
        let r = stored(&report(
            ValidationPhase::Baseline,
            "/s.usda",
            &p,
            &result(json!([
                {"id": "tier1-usd-validation-nvidia", "status": "crashed", "error": "validator process exited with code -11", "rules": []}
            ])),
            &i.classes,
        ));
        let entry = &r["coverage_ledger"]["entries"][0];
        assert_eq!(entry["status"], "blocked_validation_runtime");
        assert!(entry["reason"].as_str().unwrap().contains("code -11"));
        assert_eq!(r["validators"][0]["name"], "minimum_openability");
        assert_eq!(r["validators"][1]["status"], "BLOCKED");
    }

    #[test]
    fn a_sampled_job_resolves_its_ledger_entries_and_says_what_it_checked() {
        let mut i = many_classes();
        i.budget_s = Some(2.5);
        let p = plan(&i, Placement::Target);
        let jobs: Vec<Value> = p.jobs.iter()
            .map(|j| json!({"id": j.id, "status": "ok", "rules": j.concepts.iter().map(|c| json!({"concept": c, "issues": []})).collect::<Vec<_>>()}))
            .collect();
        let typed = report(ValidationPhase::Baseline, "/s.usda", &p, &result(json!(jobs)), &i.classes);
        let r = stored(&typed);
        let weld =
            r["coverage_ledger"]["entries"].as_array().unwrap().iter().find(|e| e["concept"] == "vertex_weld").unwrap();
        assert_eq!(weld["status"], "probed_clean");
        assert!(weld["reason"].as_str().unwrap().starts_with("probed a sample: 5000 of 10000"), "{weld}");
        assert_eq!(r["runtime_context"]["sample"], "5000 of 10000 representatives");
        assert!(
            typed.note().contains("per-geometry rules on a sample of 5000 of 10000 representatives"),
            "{}",
            typed.note()
        );
        assert_eq!(r["coverage_ledger"]["complete"], true);
    }
}
