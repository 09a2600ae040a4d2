//! The plan: which concepts run where (the contract's selection table, top to bottom), as
//! executor jobs and the scope note that records the selection; and the narrower re-verify
//! plan of a Phase 4 output.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::decisions::costs;

use super::{
    concept, seconds_text, GeometryClasses, Provider, ValidationReport, JOB_TIMEOUT_S, LARGE_STAGE_BYTES,
    LARGE_STAGE_PRIMS, MESH_HYGIENE, PAIR_ROUTING, PRIMVAR_CLEANUP, SAFETY_GATE, SIMULATION_READY,
    STRUCTURE_BLIND_LOSSLESS_FIXES, WHOLE_STAGE_OPTIMIZATION,
};

/// A flagged cross-component pair, resolved to prim paths.
#[derive(Clone, Debug, PartialEq)]
pub struct FlaggedPair {
    pub enclosing: String,
    pub enclosed: String,
    pub enclosure_opaque: Option<bool>,
}

/// What the selection reads: the assessment, the geometry classes, the user's approval.
#[derive(Clone, Debug, Default)]
pub struct PlanInputs {
    pub phase_recommendation: String,
    pub prim_count: u64,
    pub mesh_count: u64,
    /// Bytes of the stage's layers; None when unknown.
    pub stage_bytes: Option<u64>,
    pub converted_cad: bool,
    pub simulation_ready: bool,
    pub hierarchy_dedupe_recommended: bool,
    pub pairs: Vec<FlaggedPair>,
    pub classes: GeometryClasses,
    pub full_sweep_approved: bool,
    /// Seconds the plan's jobs may take together (decisions::costs::validation_budget).
    pub budget_s: Option<f64>,
    /// Worker processes the executor runs the jobs on (0 reads as 1).
    pub workers: u32,
    /// The baseline profile's warm open of the stage, seconds (None before one is measured):
    /// a job's masked open of a many-file stage costs about as much (decisions::costs).
    pub warm_open_s: Option<f64>,
}

impl PlanInputs {
    /// Reasons the stage is large for validation planning (empty: small).
    pub fn large_because(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        match self.stage_bytes {
            None => reasons.push("stage size unknown".to_string()),
            Some(b) if b > LARGE_STAGE_BYTES => reasons.push(format!("{} MB of layers > 100 MB", b / (1024 * 1024))),
            _ => {}
        }
        if self.prim_count > LARGE_STAGE_PRIMS {
            reasons.push(format!("{} composed prims > {LARGE_STAGE_PRIMS}", self.prim_count));
        }
        if self.converted_cad {
            reasons.push("converted CAD/BIM content".into());
        }
        reasons
    }
}

/// Where a job validates.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    WholeStage,
    /// One representative per geometry class.
    Representatives,
    Pair(FlaggedPair),
}

/// One executor job: concepts run together in one engine over one scope.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: String,
    pub tier: u8,
    pub concepts: Vec<&'static str>,
    pub scope: Scope,
    /// The ledger target this job resolves.
    pub target: String,
}

/// A selected plan for one placement (2c or Phase 4): the scope note plus its jobs.
#[derive(Clone, Debug)]
pub struct Plan {
    pub note: Value,
    pub jobs: Vec<Job>,
    /// Minimum openability runs with the whole-stage plan (2c, 6b), not per target.
    pub openability: bool,
    /// Seconds the jobs may take together: a job not started within them is recorded as
    /// timed out, one running past them is stopped.
    pub budget_s: Option<f64>,
    /// The representatives the per-geometry jobs check when all of them would not fit the
    /// budget (None: every one).
    pub sample: Option<Sample>,
}

/// A sample of the geometry representatives: every `stride`-th mask path in path order, so it
/// spreads over the stage and two runs of one assessment take the same one.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub mask_paths: Vec<String>,
    pub stride: usize,
    pub representatives: u64,
    pub of: u64,
    /// Seconds the plan was expected to take with every representative, on its workers.
    pub expected_s: f64,
    pub budget_s: f64,
}

impl Sample {
    /// What the ledger and the scope note say about a job run on the sample.
    pub fn reason(&self) -> String {
        format!(
            "probed a sample: {} of {} geometry representatives (one masked subtree in every {}); all of them were expected to take {} s, over the {} s time budget",
            self.representatives,
            self.of,
            self.stride,
            seconds_text(self.expected_s),
            seconds_text(self.budget_s)
        )
    }
}

/// The sample of representatives that brings `jobs` inside the plan's budget, or None when
/// checking every representative fits (or nothing is known to size it by). Costs come from
/// decisions::costs: a base per job, and per representative and per MB for each per-geometry
/// rule; the budget spans the executor's workers. The executor's budget still stops whatever
/// the estimate gets wrong.
fn sample(inputs: &PlanInputs, jobs: &[Job]) -> Option<Sample> {
    let budget = inputs.budget_s?;
    let classes = &inputs.classes;
    let n = classes.mask_paths.len();
    if n < 2 || classes.mask_sizes.len() != n {
        return None;
    }
    let representatives: u64 = classes.mask_sizes.iter().map(|m| m.representatives).sum();
    let mb = classes.mask_sizes.iter().map(|m| m.bytes).sum::<u64>() as f64 / 1e6;
    let variable: f64 = jobs
        .iter()
        .filter(|j| j.scope == Scope::Representatives)
        .flat_map(|j| j.concepts.iter())
        .map(|c| {
            let (per_rep, per_mb) = costs::per_representative_seconds(c);
            per_rep * representatives as f64 + per_mb * mb
        })
        .sum();
    let workers = inputs.workers.max(1) as f64;
    let base = costs::validation_job_base_seconds(inputs.prim_count, inputs.warm_open_s) * jobs.len() as f64;
    let room = (budget - costs::VALIDATION_WORKER_START_S) * workers - base;
    if variable <= room {
        return None;
    }
    let stride = if room <= 0.0 { n } else { (variable / room).ceil() as usize }.clamp(2, n);
    let picked: Vec<usize> = (0..n).step_by(stride).collect();
    Some(Sample {
        mask_paths: picked.iter().map(|i| classes.mask_paths[*i].clone()).collect(),
        stride,
        representatives: picked.iter().map(|i| classes.mask_sizes[*i].representatives).sum(),
        of: representatives,
        expected_s: ((base + variable) / workers * 10.0).round() / 10.0,
        budget_s: budget,
    })
}

impl Plan {
    /// The executor's task parameters for this plan on `stage`. The representatives' mask is
    /// sent once, named, however many jobs use it: on a 1M-prim composed set it lists 58,823
    /// subtrees, and seven copies of it made a task larger than an executor took.
    pub fn task_params(&self, stage: &str, classes: &GeometryClasses) -> Value {
        let representatives = self.sample.as_ref().map_or(&classes.mask_paths, |s| &s.mask_paths);
        let jobs: Vec<Value> = self
            .jobs
            .iter()
            .map(|job| {
                let mask = match &job.scope {
                    Scope::WholeStage => Value::Null,
                    Scope::Representatives if representatives.is_empty() => Value::Null,
                    Scope::Representatives => json!(REPRESENTATIVES),
                    Scope::Pair(p) => json!([p.enclosing, p.enclosed]),
                };
                json!({
                    "id": job.id, "mask_paths": mask,
                    "rules": job.concepts.iter().map(|c| {
                        let c = concept(c);
                        json!({"concept": c.name, "module": c.module, "class_name": c.class_name})
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"stage_path": stage, "jobs": jobs, "masks": {REPRESENTATIVES: representatives},
               "timeout_s": JOB_TIMEOUT_S, "openability": self.openability, "budget_s": self.budget_s})
    }
}

/// The name the task parameters give the representatives' mask.
const REPRESENTATIVES: &str = "representatives";

/// Where in the workflow a plan runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Phase 2c (and its 6b re-run): openability plus whole-stage Tier 1.
    WholeStage,
    /// Phase 4: the per-target rows on the optimization target (N=1: the stage itself).
    Target,
}

/// Where a selection row's concepts apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// The whole stage: runs at Phase 2c (and 6b).
    WholeStage,
    /// Each optimization target: runs in Phase 4.
    Target,
    /// Each flagged cross-component pair: runs in Phase 4.
    Pair,
}

/// One row of the selection table that fired, and why.
#[derive(Clone, Debug)]
pub struct Row {
    pub why: &'static str,
    pub granularity: Granularity,
    pub concepts: &'static [&'static str],
}

/// The selection table, top to bottom: the rows that fire for these inputs.
pub fn select(inputs: &PlanInputs) -> Vec<Row> {
    use Granularity::*;
    let row = |why, granularity, concepts| Row { why, granularity, concepts };
    let posture = inputs.phase_recommendation.as_str();
    let mut rows = Vec::new();
    match posture {
        "optimization" | "already_optimized" => {
            rows.push(row("always: whole-stage safety gate", WholeStage, SAFETY_GATE))
        }
        // Do not validate geometry about to be restructured: structural blockers only.
        _ => rows.push(row("structuring: structural blockers only", WholeStage, &["composition_missing_ref"])),
    }
    if posture == "optimization" {
        rows.push(row("phase_recommendation optimization: whole-stage probes", WholeStage, WHOLE_STAGE_OPTIMIZATION));
    }
    if posture == "already_optimized" {
        rows.push(row(
            "already_optimized: Tier 1 findings the structure facts cannot see",
            WholeStage,
            STRUCTURE_BLIND_LOSSLESS_FIXES,
        ));
    }
    // The per-target rows run in Phase 4, on whatever target the restructure produced.
    if inputs.converted_cad {
        rows.push(row("converted CAD/BIM content: primitive fitting", Target, &["primitive_fit"]));
    }
    rows.push(row("any optimization target: lossless primvar cleanup", Target, PRIMVAR_CLEANUP));
    rows.push(row("any optimization target: geometry-intrinsic mesh hygiene", Target, MESH_HYGIENE));
    if inputs.hierarchy_dedupe_recommended || !inputs.classes.shared.is_empty() {
        rows.push(row("hierarchy_dedupe.recommended or duplicate geometry", Target, &["geom_duplicates"]));
    }
    if inputs.pairs.iter().any(|p| p.enclosure_opaque != Some(false)) {
        rows.push(row("cross-component pairs not explicitly transparent", Pair, &["spatial_occluded"]));
    }
    if !inputs.pairs.is_empty() {
        rows.push(row("cross-component pairs: routing and overlap", Pair, PAIR_ROUTING));
    }
    if inputs.simulation_ready {
        rows.push(row("simulation-ready content (physics)", Target, SIMULATION_READY));
    }
    rows
}

/// A scope-note target entry: the representatives' mask, or the whole stage.
fn note_target(name: &str, scope: &Scope, classes: &GeometryClasses) -> Value {
    match scope {
        Scope::Representatives if !classes.mask_paths.is_empty() => {
            json!({"concept": name, "mask_paths": classes.mask_paths})
        }
        _ => json!({"concept": name, "paths": ["/"]}),
    }
}

fn pair_target(p: &FlaggedPair) -> String {
    format!("{} + {}", p.enclosing, p.enclosed)
}

/// The plan for one placement: the contract's scope note and the jobs that carry it out.
pub fn plan(inputs: &PlanInputs, placement: Placement) -> Plan {
    let rows = select(inputs);
    let large = inputs.large_because();
    let full = inputs.full_sweep_approved;
    let mut jobs = Vec::new();
    let mut targets = Vec::new();
    let mut reasons = Vec::new();
    let mut concepts: Vec<&'static str> = Vec::new();
    let mut per_pair: Vec<&'static str> = Vec::new();
    for row in &rows {
        let whole = row.granularity == Granularity::WholeStage;
        if whole != (placement == Placement::WholeStage) {
            continue;
        }
        reasons.push(format!("{}: {}", row.why, row.concepts.join(", ")));
        concepts.extend(row.concepts.iter().copied());
        if row.granularity == Granularity::Pair {
            per_pair.extend(row.concepts.iter().copied());
        }
    }
    match placement {
        Placement::WholeStage => {
            // Tier 1 batches, one engine per provider so the two halves run side by side;
            // per-geometry concepts get their own batch over the representatives.
            let scope_of =
                |c: &str| if concept(c).per_geometry && !full { Scope::Representatives } else { Scope::WholeStage };
            for (provider, scope, id) in [
                (Provider::Nvidia, Scope::WholeStage, "tier1-usd-validation-nvidia"),
                (Provider::UsdOptimize, Scope::WholeStage, "tier1-usd-optimize"),
                (Provider::Nvidia, Scope::Representatives, "tier1-per-geometry"),
            ] {
                let batch: Vec<_> = concepts
                    .iter()
                    .copied()
                    .filter(|c| concept(c).provider == provider && scope_of(c) == scope)
                    .collect();
                if !batch.is_empty() {
                    jobs.push(Job { id: id.into(), tier: 1, concepts: batch, scope, target: "/".into() });
                }
            }
            targets.extend(concepts.iter().map(|c| note_target(c, &scope_of(c), &inputs.classes)));
        }
        Placement::Target => {
            // Tier 2/3: one concept per engine and job, so one slow rule cannot hold the others.
            for name in &concepts {
                let c = concept(name);
                if per_pair.contains(name) {
                    // Occlusion is not probed behind an enclosure known to be see-through.
                    let probed = inputs
                        .pairs
                        .iter()
                        .filter(|p| c.name != "spatial_occluded" || p.enclosure_opaque != Some(false));
                    if full {
                        jobs.push(Job {
                            id: format!("t3-{}-stage", c.name),
                            tier: 3,
                            concepts: vec![c.name],
                            scope: Scope::WholeStage,
                            target: "/".into(),
                        });
                        targets.push(json!({"concept": c.name, "paths": ["/"]}));
                        continue;
                    }
                    let mut pairs = Vec::new();
                    for (k, p) in probed.enumerate() {
                        jobs.push(Job {
                            id: format!("t3-{}-{k}", c.name),
                            tier: 3,
                            concepts: vec![c.name],
                            scope: Scope::Pair(p.clone()),
                            target: pair_target(p),
                        });
                        pairs.push(json!([p.enclosing, p.enclosed]));
                    }
                    targets.push(json!({"concept": c.name, "pairs": pairs}));
                } else {
                    let scope = if full || !c.per_geometry { Scope::WholeStage } else { Scope::Representatives };
                    targets.push(note_target(c.name, &scope, &inputs.classes));
                    jobs.push(Job {
                        id: format!("t{}-{}", c.tier, c.name),
                        tier: c.tier,
                        concepts: vec![c.name],
                        scope,
                        target: "/".into(),
                    });
                }
            }
        }
    }
    let full_sweep = if full {
        json!({"status": "approved", "reason": "approved by the user: Tier 2/3 concepts run unscoped over the whole stage", "approved_by_user": true})
    } else if large.is_empty() {
        json!({"status": "skipped", "reason": "performance tuning runs the selected plan only; a full sweep is never a default", "approved_by_user": false})
    } else {
        json!({"status": "skipped", "reason": format!("large for validation planning ({}): no full sweep without approval", large.join("; ")), "approved_by_user": false})
    };
    let representatives = jobs.iter().any(|j| j.scope == Scope::Representatives);
    if representatives {
        reasons.push(format!(
            "per-mesh concepts run once per distinct geometry: {} classes over {} meshes, copies share the representative's result",
            inputs.classes.class_count, inputs.classes.mesh_count
        ));
    }
    let scope = if full {
        "approved_full_sweep"
    } else if concepts.is_empty() {
        "minimum_openability"
    } else {
        "targeted"
    };
    let tier_assignments: BTreeMap<&str, u8> = concepts.iter().map(|c| (*c, concept(c).tier)).collect();
    let estimated_time = match jobs.len() {
        0..=4 if large.is_empty() => "fast",
        _ if inputs.prim_count > 1_000_000 => "long",
        _ => "minutes",
    };
    if let Some(budget) = inputs.budget_s.filter(|_| !jobs.is_empty()) {
        reasons.push(format!(
            "time budget: the jobs may take {} s together (a job not started within it is recorded timeout_recorded)",
            seconds_text(budget)
        ));
    }
    let sample = if full { None } else { sample(inputs, &jobs) };
    if let Some(sample) = &sample {
        reasons.push(format!("per-geometry rules {}", sample.reason()));
        for target in targets.iter_mut().filter(|t| t.get("mask_paths").is_some()) {
            target["mask_paths"] = json!(sample.mask_paths);
        }
    }
    let note = json!({
        "scope": scope,
        "concepts": concepts,
        "targets": targets,
        "tier_assignments": tier_assignments,
        "selection_reason": if reasons.is_empty() { "minimum openability only: no selection row applies here".to_string() } else { reasons.join("; ") },
        "full_sweep": full_sweep,
        "estimated_time": estimated_time,
        "artifact_paths": [],
    });
    Plan { note, jobs, openability: placement == Placement::WholeStage, budget_s: inputs.budget_s, sample }
}

pub fn reverify(plan: &Plan, baseline: &ValidationReport) -> Plan {
    let with_findings: Vec<(&str, &str)> = baseline
        .coverage_ledger
        .entries
        .iter()
        .filter(|e| e.status == "probed_with_findings")
        .map(|e| (e.target.as_str(), e.concept.as_str()))
        .collect();
    let jobs: Vec<Job> = plan
        .jobs
        .iter()
        .filter(|j| j.concepts.iter().any(|c| with_findings.contains(&(j.target.as_str(), *c))))
        .cloned()
        .collect();
    let mut note = plan.note.clone();
    let kept: Vec<&str> = jobs.iter().flat_map(|j| j.concepts.iter().copied()).collect();
    note["concepts"] = json!(kept);
    note["targets"] = json!(note["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| kept.iter().any(|c| t["concept"] == *c))
        .cloned()
        .collect::<Vec<_>>());
    note["tier_assignments"] = json!(kept.iter().map(|c| (c.to_string(), concept(c).tier)).collect::<BTreeMap<_, _>>());
    note["selection_reason"] = json!(format!(
        "re-verify of the Phase 4 output: only the {} (target, concept) pair(s) with baseline findings",
        jobs.len()
    ));
    Plan { note, jobs, openability: false, budget_s: plan.budget_s, sample: plan.sample.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::validation::testing::{inputs, many_classes};

    #[test]
    fn selection_follows_the_phase_recommendation() {
        let concepts = |i: &PlanInputs, p| {
            plan(i, p).note["concepts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let structuring = inputs("structuring");
        assert_eq!(concepts(&structuring, Placement::WholeStage), ["composition_missing_ref"]);
        let optimization = inputs("optimization");
        let whole = concepts(&optimization, Placement::WholeStage);
        assert_eq!(whole.len(), 16);
        assert!(whole.iter().all(|c| concept(c).tier == 1));
        let target = concepts(&optimization, Placement::Target);
        // Shared geometry is a duplicate-geometry signal; no pairs, no physics, not CAD.
        assert_eq!(
            target,
            [
                "primvar_indexability",
                "primvar_unused",
                "vertex_weld",
                "topology_zero_area_faces",
                "normals_winding",
                "topology_duplicate_faces",
                "geom_duplicates"
            ]
        );
        // Same assessment, same selection.
        assert_eq!(target, concepts(&optimization, Placement::Target));
    }

    #[test]
    fn whole_stage_plan_batches_tier1_by_provider_and_records_the_skipped_sweep() {
        let mut i = inputs("optimization");
        i.prim_count = 100_000;
        let p = plan(&i, Placement::WholeStage);
        assert_eq!(
            p.jobs.iter().map(|j| (j.id.as_str(), j.concepts.len())).collect::<Vec<_>>(),
            [("tier1-usd-validation-nvidia", 5), ("tier1-usd-optimize", 10), ("tier1-per-geometry", 1)]
        );
        assert_eq!(p.note["full_sweep"]["status"], "skipped");
        assert!(p.note["full_sweep"]["reason"].as_str().unwrap().contains("100000 composed prims"));
        crate::store::validate("validation-scope-note", &p.note).unwrap();
    }

    #[test]
    fn target_plan_scopes_per_mesh_rules_to_representatives_and_probes_every_flagged_pair() {
        let mut i = inputs("optimization");
        i.pairs = vec![
            FlaggedPair { enclosing: "/F/M1/Housing".into(), enclosed: "/F/M1/Motor".into(), enclosure_opaque: None },
            FlaggedPair { enclosing: "/F/M3/Hood".into(), enclosed: "/F/M3/Fan".into(), enclosure_opaque: Some(false) },
        ];
        let p = plan(&i, Placement::Target);
        let weld = p.jobs.iter().find(|j| j.concepts == ["vertex_weld"]).unwrap();
        assert_eq!(weld.scope, Scope::Representatives);
        let params = p.task_params("/s.usda", &i.classes);
        let job = params["jobs"].as_array().unwrap().iter().find(|j| j["id"] == "t2-vertex_weld").unwrap();
        assert_eq!(job["mask_paths"], "representatives", "named, the list sent once");
        assert_eq!(params["masks"]["representatives"], json!(["/F/M1", "/F/M3/Body"]));
        // The transparent hood is not probed for occlusion, but both pairs for overlap.
        let pair_jobs = |c: &str| p.jobs.iter().filter(|j| j.concepts == [c]).count();
        assert_eq!(
            (pair_jobs("spatial_occluded"), pair_jobs("spatial_overlapping"), pair_jobs("spatial_coinciding")),
            (1, 2, 2)
        );
        crate::store::validate("validation-scope-note", &p.note).unwrap();
        // Approval lifts the scoping: the same concepts over the whole stage.
        i.full_sweep_approved = true;
        let full = plan(&i, Placement::Target);
        assert_eq!(full.note["scope"], "approved_full_sweep");
        assert!(full.jobs.iter().all(|j| j.scope == Scope::WholeStage));
    }

    #[test]
    fn representatives_that_would_not_fit_the_budget_are_sampled_and_the_note_says_so() {
        let mut i = many_classes();
        i.budget_s = Some(100.0);
        assert_eq!(plan(&i, Placement::Target).sample, None, "a generous budget checks every representative");

        // Two workers started (0.8 s each) have 3.4 s of the 2.5 s budget; 7 jobs' bases
        // (0.79 s) leave 2.6 s of it for 5.0 s of rules: every 2nd subtree.
        i.budget_s = Some(2.5);
        let p = plan(&i, Placement::Target);
        let sample = p.sample.clone().expect("a sample");
        assert_eq!((sample.stride, sample.mask_paths.len(), sample.representatives, sample.of), (2, 500, 5000, 10_000));
        assert_eq!(sample.mask_paths[..2], ["/Set/Prop0000", "/Set/Prop0002"]);
        let params = p.task_params("/s.usda", &i.classes);
        assert_eq!(params["masks"]["representatives"].as_array().unwrap().len(), 500);
        let target = p.note["targets"].as_array().unwrap().iter().find(|t| t["concept"] == "vertex_weld").unwrap();
        assert_eq!(target["mask_paths"].as_array().unwrap().len(), 500);
        let why = p.note["selection_reason"].as_str().unwrap();
        assert!(
            why.contains("probed a sample: 5000 of 10000 geometry representatives (one masked subtree in every 2)"),
            "{why}"
        );
        crate::store::validate("validation-scope-note", &p.note).unwrap();

        // The same assessment samples the same representatives; approval lifts the sample.
        assert_eq!(plan(&i, Placement::Target).sample, Some(sample));
        i.full_sweep_approved = true;
        assert_eq!(plan(&i, Placement::Target).sample, None);
    }

    #[test]
    fn a_measured_warm_open_is_each_jobs_base() {
        // At 500 prims the fit puts a job's base at 0.11 s: 100 s checks every representative.
        let mut i = many_classes();
        i.budget_s = Some(100.0);
        assert_eq!(plan(&i, Placement::Target).sample, None);
        // The same stage measured to open warm in 28 s: 7 masked opens of 28.1 s leave 1.7 s
        // of the two workers' 198.4 s for ~5 s of rules.
        i.warm_open_s = Some(28.0);
        let sample = plan(&i, Placement::Target).sample.expect("a sample");
        assert_eq!((sample.stride, sample.mask_paths.len()), (3, 334));
        assert!(sample.expected_s > 100.0, "{}", sample.expected_s);
        // A small stage's warm open of milliseconds leaves the fit's base (the --budget 5 test
        // on the fixture); so does a profile without one (structural-only).
        i.warm_open_s = Some(0.004);
        assert_eq!(plan(&i, Placement::Target).sample, None);
        i.budget_s = Some(2.5);
        assert_eq!(plan(&i, Placement::Target).sample.map(|s| s.stride), Some(2), "as with the fit alone");
    }

    #[test]
    fn a_budget_the_start_and_bases_alone_exceed_samples_one_subtree_and_unknown_sizes_sample_nothing() {
        let mut i = many_classes();
        i.budget_s = Some(0.3);
        let sample = plan(&i, Placement::Target).sample.unwrap();
        assert_eq!((sample.stride, sample.mask_paths.len()), (1000, 1));
        i.classes.mask_sizes.clear();
        assert_eq!(plan(&i, Placement::Target).sample, None, "an assessment from before the sizes");
    }
}
