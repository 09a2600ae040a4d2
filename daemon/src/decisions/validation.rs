//! The validation plan (usd-validation-runner): which validator concepts run, where and at
//! what tier, decided from the structure assessment alone so two runs over the same
//! assessment select the same set; and the report that turns executor results into
//! normalized findings and a coverage ledger that gates advancing.
//!
//! Placement follows the contract: Phase 2c runs minimum openability plus the whole-stage
//! Tier 1 rows; the per-target rows (Tier 2 hygiene, Tier 3 flagged pairs and subtrees) run
//! in Phase 4 on the optimization target. Per-mesh concepts run once per distinct geometry:
//! on a stage masked to one representative of each geometry class, with every copy listed
//! as a site of its representative's findings.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::prims::PrimTable;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// usd-optimize rules (registered into usd-validation-nvidia).
    UsdOptimize,
    /// usd-validation-nvidia's own rules (the upstream registry's "oav").
    Nvidia,
}

/// One validator concept. Canonical names, tiers and backing ops follow the upstream
/// registry (validator-concepts.json); `module`/`class_name` name the class that implements
/// it in the runtime we ship (usd-optimize 1.3, usd-validation-nvidia 1.22).
#[derive(Debug)]
pub struct Concept {
    pub name: &'static str,
    pub tier: u8,
    pub provider: Provider,
    pub module: &'static str,
    pub class_name: &'static str,
    /// The usd-optimize operation family that addresses its findings ("" when none).
    pub op_family: &'static str,
    /// A per-mesh, geometry-intrinsic check: copies of one geometry get the same answer.
    pub per_geometry: bool,
}

const fn so(
    name: &'static str,
    tier: u8,
    module: &'static str,
    class_name: &'static str,
    op_family: &'static str,
    per_geometry: bool,
) -> Concept {
    Concept { name, tier, provider: Provider::UsdOptimize, module, class_name, op_family, per_geometry }
}

const fn nv(name: &'static str, module: &'static str, class_name: &'static str) -> Concept {
    Concept { name, tier: 1, provider: Provider::Nvidia, module, class_name, op_family: "", per_geometry: false }
}

/// Every concept the selection below can choose.
pub const CONCEPTS: &[Concept] = &[
    nv("composition_missing_ref", "usd_validation_nvidia.rules._basic", "MissingReferenceChecker"),
    nv("material_path", "usd_validation_nvidia.rules._materials", "MaterialPathChecker"),
    nv("material_dangling_binding", "usd_validation_nvidia.rules._materials", "UsdDanglingMaterialBinding"),
    nv("texture_bind", "usd_validation_nvidia.rules._basic", "TextureChecker"),
    nv("texture_normalmap", "usd_validation_nvidia.rules._basic", "NormalMapTextureChecker"),
    Concept {
        name: "extents_general",
        tier: 1,
        provider: Provider::Nvidia,
        module: "usd_validation_nvidia.rules._basic",
        class_name: "ExtentsChecker",
        op_family: "computeExtents",
        per_geometry: true,
    },
    so(
        "material_duplicates",
        1,
        "usd_optimize.validators.duplicate_materials_checker",
        "DuplicateMaterialsChecker",
        "optimizeMaterials",
        false,
    ),
    so(
        "structure_empty_leaf",
        1,
        "usd_optimize.validators.empty_leaf_checker",
        "EmptyLeafChecker",
        "pruneLeaves",
        false,
    ),
    so(
        "structure_invisible",
        1,
        "usd_optimize.validators.invisible_prims_checker",
        "InvisiblePrimsChecker",
        "removePrims",
        false,
    ),
    so(
        "structure_flat_hierarchy",
        1,
        "usd_optimize.validators.flat_hierarchies_checker",
        "FlatHierarchiesChecker",
        "flattenHierarchy",
        false,
    ),
    so(
        "extents_zero",
        1,
        "usd_optimize.validators.zero_extent_checker",
        "ZeroExtentChecker",
        "removeSmallGeometry",
        false,
    ),
    so(
        "perf_small_mesh",
        1,
        "usd_optimize.validators.small_mesh_checker",
        "SmallMeshChecker",
        "removeSmallGeometry",
        false,
    ),
    so(
        "perf_sparse_mesh",
        1,
        "usd_optimize.validators.sparse_mesh_checker",
        "SparseMeshChecker",
        "sparseMeshes",
        false,
    ),
    so(
        "perf_rtx_mesh_count",
        1,
        "usd_optimize.validators.rtx_mesh_count_checker",
        "RtxMeshCountChecker",
        "rtxMeshCount",
        false,
    ),
    so(
        "perf_redundant_timesamples",
        1,
        "usd_optimize.validators.redundant_timesamples_checker",
        "RedundantTimeSamplesChecker",
        "optimizeTimeSamples",
        false,
    ),
    so(
        "perf_high_vertex_count",
        1,
        "usd_optimize.validators.high_vertex_count_checker",
        "HighVertexCountChecker",
        "countVertices",
        false,
    ),
    so(
        "primitive_fit",
        2,
        "usd_optimize.validators.primitive_fit_checker",
        "PrimitiveFitChecker",
        "fitPrimitives",
        true,
    ),
    so(
        "primvar_indexability",
        2,
        "usd_optimize.validators.indexed_primvars_checker",
        "IndexedPrimvarChecker",
        "optimizePrimvars",
        true,
    ),
    so("primvar_unused", 2, "usd_optimize.validators.unused_uvs_checker", "UnusedUVsChecker", "removeUnusedUVs", true),
    so(
        "vertex_weld",
        2,
        "usd_optimize.validators.colocated_vertices_checker",
        "ColocatedVerticesChecker",
        "meshCleanup",
        true,
    ),
    so(
        "topology_zero_area_faces",
        2,
        "usd_optimize.validators.zero_area_faces_checker",
        "ZeroAreaFacesChecker",
        "meshCleanup",
        true,
    ),
    so(
        "topology_duplicate_faces",
        2,
        "usd_optimize.validators.duplicate_face_checker",
        "DuplicateFaceChecker",
        "meshCleanup",
        true,
    ),
    so("normals_winding", 2, "usd_optimize.validators.windings_checker", "WindingsChecker", "meshCleanup", true),
    so(
        "geom_duplicates",
        3,
        "usd_optimize.validators.duplicate_geometry_checker",
        "DuplicateGeometryChecker",
        "deduplicateGeometry",
        true,
    ),
    so(
        "topology_manifold",
        3,
        "usd_optimize.validators.nonmanifold_checker",
        "NonManifoldChecker",
        "meshCleanup",
        true,
    ),
    so("normals_validity", 3, "usd_optimize.validators.normals_checker", "NormalsChecker", "generateNormals", true),
    so(
        "spatial_occluded",
        3,
        "usd_optimize.validators.occluded_meshes_checker",
        "OccludedMeshesChecker",
        "findOccludedMeshes",
        false,
    ),
    so(
        "spatial_overlapping",
        3,
        "usd_optimize.validators.find_overlapping_meshes_checker",
        "FindOverlappingMeshesChecker",
        "findOverlappingMeshes",
        false,
    ),
    so(
        "spatial_coinciding",
        3,
        "usd_optimize.validators.coinciding_geometry_checker",
        "CoincidingGeometryChecker",
        "findCoincidingGeometry",
        false,
    ),
];

pub fn concept(name: &str) -> &'static Concept {
    CONCEPTS.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name} is not in CONCEPTS"))
}

/// The selection table's rows, in the contract's order.
const SAFETY_GATE: &[&str] =
    &["composition_missing_ref", "material_path", "material_dangling_binding", "texture_bind", "texture_normalmap"];
/// The contract's whole-stage row plus authored-extent checks (the lossless chain's
/// computeExtents), which run once per geometry class like the per-mesh rows.
const WHOLE_STAGE_OPTIMIZATION: &[&str] = &[
    "extents_general",
    "material_duplicates",
    "structure_empty_leaf",
    "structure_invisible",
    "structure_flat_hierarchy",
    "extents_zero",
    "perf_small_mesh",
    "perf_sparse_mesh",
    "perf_rtx_mesh_count",
    "perf_redundant_timesamples",
    "perf_high_vertex_count",
];
/// Whole-stage findings a lossless op fixes that the assessment's facts do not show: on a
/// stage assessed already_optimized, any of them still sends the run to Phase 4.
pub const STRUCTURE_BLIND_LOSSLESS_FIXES: &[&str] =
    &["perf_redundant_timesamples", "material_duplicates", "structure_empty_leaf"];
const PRIMVAR_CLEANUP: &[&str] = &["primvar_indexability", "primvar_unused"];
/// The contract's hygiene trio plus duplicate faces: the lossless chain's meshCleanup
/// enables removeDuplicateFaces only on evidence, so that evidence must be gathered.
const MESH_HYGIENE: &[&str] =
    &["vertex_weld", "topology_zero_area_faces", "normals_winding", "topology_duplicate_faces"];
const SIMULATION_READY: &[&str] = &["topology_manifold", "normals_validity"];
const PAIR_ROUTING: &[&str] = &["spatial_overlapping", "spatial_coinciding"];

/// Large for validation planning (contract thresholds).
pub const LARGE_STAGE_BYTES: u64 = 100 * 1024 * 1024;
pub const LARGE_STAGE_PRIMS: u64 = 10_000;
/// Default wall-clock limit of one validation job, in seconds.
pub const JOB_TIMEOUT_S: u64 = 300;

/// Words in a stage's authoring metadata that mark converted CAD/BIM/MEP content.
pub const CONVERTER_WORDS: &[&str] = &[
    "ifc",
    "revit",
    "hoops",
    "cad",
    "step",
    "catia",
    "solidworks",
    "navisworks",
    "inventor",
    "creo",
    "jt ",
    "bim",
    "rhino",
    "sketchup",
];

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

/// Meshes (and instances, keyed on their prototype) grouped by identical content, so a
/// per-mesh rule runs once per class. Built from the prim table's subtree hashes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GeometryClasses {
    pub mesh_count: u64,
    pub class_count: u64,
    /// The fewest subtree roots that hold every representative and no copy.
    pub mask_paths: Vec<String>,
    /// Classes with more than one member: the representative and its copies.
    pub shared: Vec<SharedClass>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedClass {
    pub representative: String,
    pub copies: Vec<String>,
}

impl GeometryClasses {
    pub fn from_table(table: &PrimTable) -> Self {
        let is_unit = |i: usize| table.rows[i].instance || table.rows[i].type_name == "Mesh";
        let mut members: BTreeMap<(bool, &str), Vec<usize>> = BTreeMap::new();
        for i in (0..table.rows.len()).filter(|i| is_unit(*i)) {
            members.entry((table.rows[i].instance, table.rows[i].hash.as_str())).or_default().push(i);
        }
        let mut representative = vec![false; table.rows.len()];
        let mut shared = Vec::new();
        for rows in members.values() {
            representative[rows[0]] = true;
            if rows.len() > 1 {
                shared.push(SharedClass {
                    representative: table.rows[rows[0]].path.clone(),
                    copies: rows[1..].iter().map(|i| table.rows[*i].path.clone()).collect(),
                });
            }
        }
        // Rows sort parents first, so walking backwards sees children before parents.
        let mut units = vec![0u64; table.rows.len()];
        let mut reps = vec![0u64; table.rows.len()];
        for i in (0..table.rows.len()).rev() {
            if is_unit(i) {
                units[i] += 1;
                reps[i] += representative[i] as u64;
            }
            if let Some(p) = table.parent[i] {
                units[p] += units[i];
                reps[p] += reps[i];
            }
        }
        let pure = |i: usize| units[i] > 0 && units[i] == reps[i];
        let mask_paths = (0..table.rows.len())
            .filter(|i| pure(*i) && !table.parent[*i].is_some_and(pure))
            .map(|i| table.rows[i].path.clone())
            .collect();
        Self {
            mesh_count: (0..table.rows.len()).filter(|i| table.rows[*i].type_name == "Mesh").count() as u64,
            class_count: members.len() as u64,
            mask_paths,
            shared,
        }
    }

    /// Every path a finding at `site` stands for: the site, and the same path under each copy
    /// when the site is (or lies under) a representative.
    pub fn expand(&self, site: &str, index: &HashMap<&str, &SharedClass>) -> Vec<String> {
        let mut head = site;
        loop {
            if let Some(class) = index.get(head) {
                let tail = &site[head.len()..];
                return std::iter::once(site.to_string())
                    .chain(class.copies.iter().map(|c| format!("{c}{tail}")))
                    .collect();
            }
            match head.rsplit_once('/') {
                Some((parent, _)) if !parent.is_empty() => head = parent,
                _ => return vec![site.to_string()],
            }
        }
    }

    pub fn index(&self) -> HashMap<&str, &SharedClass> {
        self.shared.iter().map(|c| (c.representative.as_str(), c)).collect()
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
}

impl Plan {
    /// The executor's task parameters for this plan on `stage`.
    pub fn task_params(&self, stage: &str, classes: &GeometryClasses) -> Value {
        let jobs: Vec<Value> = self
            .jobs
            .iter()
            .map(|job| {
                let mask = match &job.scope {
                    Scope::WholeStage => Value::Null,
                    Scope::Representatives if classes.mask_paths.is_empty() => Value::Null,
                    Scope::Representatives => json!(classes.mask_paths),
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
        json!({"stage_path": stage, "jobs": jobs, "timeout_s": JOB_TIMEOUT_S, "openability": self.openability})
    }
}

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
    Plan { note, jobs, openability: placement == Placement::WholeStage }
}

// ------------------------------------------------------------------ report

/// Findings listed per concept before they are counted only (every site is counted).
pub const MAX_SITES: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidationPhase {
    Baseline,
    After,
}

/// The validation report (upstream validation-report contract) from the executor's result.
pub fn report(phase: ValidationPhase, stage: &str, plan: &Plan, result: &Value, classes: &GeometryClasses) -> Value {
    let index = classes.index();
    let results: HashMap<&str, &Value> =
        result["jobs"].as_array().into_iter().flatten().filter_map(|j| Some((j["id"].as_str()?, j))).collect();
    let mut validators = Vec::new();
    let mut findings = Vec::new();
    let mut entries = Vec::new();
    let mut unresolved = Vec::new();

    let openability = &result["openability"];
    let open_issues = openability["issues"].as_array().cloned().unwrap_or_default();
    for issue in &open_issues {
        findings.push(json!({
            "rule": issue["rule"], "concept": "minimum_openability", "tier": 1, "severity": "error",
            "message": issue["message"], "sites": [issue["site"]], "site_count": 1, "op_family": "", "target": "/",
        }));
    }
    if plan.openability {
        let mut validator = json!({
            "name": "minimum_openability", "kind": "openability",
            "status": if open_issues.is_empty() { "PASS" } else { "FAIL" }, "issues": open_issues.len(),
        });
        if openability["dependencies"].is_object() {
            validator["dependencies"] = openability["dependencies"].clone();
        }
        validators.push(validator);
    }

    for job in &plan.jobs {
        let Some(outcome) = results.get(job.id.as_str()) else {
            unresolved.extend(job.concepts.iter().map(|c| format!("{} on {}", c, job.target)));
            continue;
        };
        let status = outcome["status"].as_str().unwrap_or("");
        for name in &job.concepts {
            let c = concept(name);
            let rule = outcome["rules"].as_array().into_iter().flatten().find(|r| r["concept"] == *name);
            let (ledger, validator_status, reason, sites) = match (status, rule) {
                ("ok", Some(rule)) => {
                    let issues = rule["issues"].as_array().cloned().unwrap_or_default();
                    let mut normalized = normalize(c, job, &issues, classes, &index);
                    if c.name == "geom_duplicates" && job.scope == Scope::Representatives {
                        // The validator saw one mesh per class; the classes themselves are the exact duplicates.
                        normalized.extend(exact_copies(c, job, classes));
                    }
                    let errors = normalized.iter().any(|f| f["severity"] == "error");
                    let sites: u64 = normalized.iter().map(|f| f["site_count"].as_u64().unwrap_or(0)).sum();
                    let found = !normalized.is_empty();
                    findings.extend(normalized);
                    (
                        if found { "probed_with_findings" } else { "probed_clean" },
                        if errors { "FAIL" } else { "PASS" },
                        String::new(),
                        sites,
                    )
                }
                ("timeout", _) => {
                    ("timeout_recorded", "TIMEOUT", outcome["error"].as_str().unwrap_or("").to_string(), 0)
                }
                ("blocked_runtime", _) => {
                    ("blocked_validation_runtime", "BLOCKED", outcome["error"].as_str().unwrap_or("").to_string(), 0)
                }
                // A crash or an engine failure: the runtime could not validate this target.
                _ => (
                    "blocked_validation_runtime",
                    "BLOCKED",
                    format!("{status}: {}", outcome["error"].as_str().unwrap_or("no result for the rule")),
                    0,
                ),
            };
            let mut validator = json!({
                "name": format!("{} ({})", c.name, job.target), "kind": "rule", "status": validator_status,
                "canonical_name": c.name, "module": c.module, "class_name": c.class_name, "issues": sites,
            });
            let mut entry = json!({"target": job.target, "concept": c.name, "tier": job.tier, "status": ledger});
            if !reason.is_empty() {
                validator["notes"] = json!(reason);
                entry["reason"] = json!(reason);
            }
            validators.push(validator);
            entries.push(entry);
        }
    }
    let complete = unresolved.is_empty();
    let errors = findings.iter().filter(|f| f["severity"] == "error").count();
    let warnings = findings.iter().filter(|f| f["severity"] == "warning").count();
    let status = if !complete {
        "BLOCKED"
    } else if errors > 0 || openability["opens"] == false {
        "FAIL"
    } else {
        "PASS"
    };
    // Per tier: the span from its first job's start to its last job's end (jobs overlap).
    let mut spans: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for job in &plan.jobs {
        let Some(r) = results.get(job.id.as_str()) else { continue };
        let (Some(start), Some(end)) = (r["started_s"].as_f64(), r["ended_s"].as_f64()) else { continue };
        let span = spans.entry(format!("tier{}", job.tier)).or_insert((start, end));
        *span = (span.0.min(start), span.1.max(end));
    }
    let tier_seconds: BTreeMap<String, f64> =
        spans.into_iter().map(|(k, (a, b))| (k, ((b - a) * 1000.0).round() / 1000.0)).collect();
    json!({
        "schemaVersion": "1.0",
        "phase": match phase { ValidationPhase::Baseline => "baseline", ValidationPhase::After => "after" },
        "stage": {"identifier": stage, "rootLayer": stage},
        "validators": validators,
        "summary": {"status": status, "errorCount": errors, "warningCount": warnings},
        "coverage_ledger": {"complete": complete, "entries": entries},
        "findings": findings,
        "artifacts": {},
        "runtime_context": {
            "runner": result["runner"], "job_timeout_s": result["timeout_s"], "wall_seconds": result["seconds"],
            "openability_seconds": openability["seconds"], "tier_wall_seconds": tier_seconds,
            "jobs": plan.jobs.len(), "unresolved": unresolved,
        },
    })
}

/// Findings of one rule on one job: grouped by message, sites expanded to every copy.
/// usd-optimize rules add a stage-level summary issue at "/" beside the per-prim ones;
/// the summary is kept only when a rule names no prim.
fn normalize(
    c: &Concept,
    job: &Job,
    issues: &[Value],
    classes: &GeometryClasses,
    index: &HashMap<&str, &SharedClass>,
) -> Vec<Value> {
    let sites_of = |issue: &Value| -> Vec<String> {
        issue["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let names_a_prim = |issue: &Value| sites_of(issue).iter().any(|s| s != "/");
    let per_prim = issues.iter().any(names_a_prim);
    let mut grouped: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for issue in issues {
        if per_prim && !names_a_prim(issue) {
            continue;
        }
        let key = (
            issue["severity"].as_str().unwrap_or("info").to_string(),
            issue["message"].as_str().unwrap_or("").to_string(),
        );
        let sites = grouped.entry(key).or_default();
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
            let count = sites.len().max(1);
            sites.truncate(MAX_SITES);
            json!({
                "rule": format!("{}.{}", c.module, c.class_name), "concept": c.name, "tier": job.tier,
                "severity": severity, "message": message, "sites": sites, "site_count": count,
                "op_family": c.op_family, "target": job.target,
                "shared_result": job.scope == Scope::Representatives,
            })
        })
        .collect()
}

/// One finding per geometry class with copies: meshes whose whole content hashes equal.
fn exact_copies(c: &Concept, job: &Job, classes: &GeometryClasses) -> Vec<Value> {
    classes.shared.iter().map(|class| {
        let mut sites: Vec<String> = std::iter::once(class.representative.clone()).chain(class.copies.iter().cloned()).collect();
        let count = sites.len();
        sites.truncate(MAX_SITES);
        json!({
            "rule": "usdtune.geometry_classes (identical content hash)", "concept": c.name, "tier": job.tier, "severity": "warning",
            "message": format!("{} has {} exact duplicate(s)", class.representative, class.copies.len()),
            "sites": sites, "site_count": count, "op_family": c.op_family, "target": job.target, "shared_result": false,
        })
    }).collect()
}

/// The completion gate: advancing is refused while a flagged target is unresolved.
pub fn ledger_gate(report: &Value) -> Result<(), String> {
    if report["coverage_ledger"]["complete"] == json!(true) {
        return Ok(());
    }
    let unresolved: Vec<&str> =
        report["runtime_context"]["unresolved"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    Err(format!("{} flagged validation target(s) unresolved: {}", unresolved.len(), unresolved.join(", ")))
}

/// Sites of a concept's findings in a report (on one target, or all), counted over every copy.
pub fn site_count(report: &Value, concept: &str, target: Option<&str>) -> u64 {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["concept"] == concept && target.is_none_or(|t| f["target"] == t))
        .map(|f| f["site_count"].as_u64().unwrap_or(0))
        .sum()
}

/// The narrower re-verify plan for Phase 4 outputs: only (target, concept) pairs that had
/// findings (clean ones are subtracted, as iterations subtract them).
pub fn reverify(plan: &Plan, baseline: &Value) -> Plan {
    let with_findings: Vec<(String, String)> = baseline["coverage_ledger"]["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["status"] == "probed_with_findings")
        .map(|e| (e["target"].as_str().unwrap_or("").to_string(), e["concept"].as_str().unwrap_or("").to_string()))
        .collect();
    let jobs: Vec<Job> = plan
        .jobs
        .iter()
        .filter(|j| j.concepts.iter().any(|c| with_findings.contains(&(j.target.clone(), c.to_string()))))
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
    Plan { note, jobs, openability: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::prims::tests::row;

    fn mesh(path: &str, hash: &str) -> crate::decisions::prims::PrimRow {
        let mut r = row(path, hash, 1, 1);
        r.type_name = "Mesh".into();
        r
    }

    /// Two machines with the same bolt and body, a third machine with its own body.
    fn table() -> PrimTable {
        PrimTable::from_rows(vec![
            row("/F", "f", 9, 6),
            row("/F/M1", "m", 3, 2),
            mesh("/F/M1/Body", "body"),
            mesh("/F/M1/Bolt", "bolt"),
            row("/F/M2", "m", 3, 2),
            mesh("/F/M2/Body", "body"),
            mesh("/F/M2/Bolt", "bolt"),
            row("/F/M3", "m3", 3, 2),
            mesh("/F/M3/Body", "body3"),
            mesh("/F/M3/Bolt", "bolt"),
            row("/F/Looks", "l", 1, 0),
        ])
    }

    fn inputs(recommendation: &str) -> PlanInputs {
        PlanInputs {
            phase_recommendation: recommendation.into(),
            prim_count: 500,
            mesh_count: 6,
            stage_bytes: Some(10_000),
            classes: GeometryClasses::from_table(&table()),
            ..Default::default()
        }
    }

    #[test]
    fn geometry_classes_keep_one_representative_per_class_and_expand_copies() {
        let classes = GeometryClasses::from_table(&table());
        assert_eq!((classes.mesh_count, classes.class_count), (6, 3));
        // M1 holds only representatives; M3's body is one too, its bolt a copy.
        assert_eq!(classes.mask_paths, ["/F/M1", "/F/M3/Body"]);
        let index = classes.index();
        assert_eq!(classes.expand("/F/M1/Bolt", &index), ["/F/M1/Bolt", "/F/M2/Bolt", "/F/M3/Bolt"]);
        assert_eq!(classes.expand("/F/M1/Body/Subset", &index), ["/F/M1/Body/Subset", "/F/M2/Body/Subset"]);
        assert_eq!(classes.expand("/F/M3/Body", &index), ["/F/M3/Body"]);
    }

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
        assert_eq!(job["mask_paths"], json!(["/F/M1", "/F/M3/Body"]));
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

    fn result(jobs: Value) -> Value {
        json!({"openability": {"opens": true, "issues": [], "seconds": 0.1}, "jobs": jobs, "runner": "subprocess", "timeout_s": 300, "seconds": 1.0})
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
        let r = report(ValidationPhase::Baseline, "/s.usda", &p, &result(json!(jobs)), &i.classes);
        crate::store::validate("validation-report", &r).unwrap();
        let weld = r["findings"].as_array().unwrap().iter().find(|f| f["concept"] == "vertex_weld").unwrap();
        assert_eq!(weld["sites"], json!(["/F/M1/Bolt", "/F/M2/Bolt", "/F/M3/Bolt"]));
        assert_eq!(weld["op_family"], "meshCleanup");
        assert_eq!(site_count(&r, "vertex_weld", None), 3);
        let status = |c: &str| {
            r["coverage_ledger"]["entries"].as_array().unwrap().iter().find(|e| e["concept"] == c).unwrap()["status"]
                .clone()
        };
        assert_eq!(status("vertex_weld"), "probed_with_findings");
        assert_eq!(status("primvar_unused"), "probed_clean");
        assert_eq!(status("geom_duplicates"), "timeout_recorded");
        assert_eq!(r["coverage_ledger"]["complete"], true);
        assert_eq!(r["summary"]["status"], "PASS");
        assert!(ledger_gate(&r).is_ok());

        // Re-verify subtracts the clean and timed-out concepts.
        let again = reverify(&p, &r);
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
        let r = report(ValidationPhase::Baseline, "/s.usda", &p, &result(json!(jobs)), &i.classes);
        crate::store::validate("validation-report", &r).unwrap();
        assert_eq!(r["coverage_ledger"]["complete"], false);
        assert_eq!(r["summary"]["status"], "BLOCKED");
        let refusal = ledger_gate(&r).unwrap_err();
        assert!(refusal.contains("spatial_occluded on /F/M1/Housing + /F/M1/Motor"), "{refusal}");
    }

    #[test]
    fn a_crashed_or_unloadable_rule_is_recorded_not_passed() {
        let i = inputs("structuring");
        let p = plan(&i, Placement::WholeStage);
        let r = report(
            ValidationPhase::Baseline,
            "/s.usda",
            &p,
            &result(json!([
                {"id": "tier1-usd-validation-nvidia", "status": "crashed", "error": "validator process exited with code -11", "rules": []}
            ])),
            &i.classes,
        );
        let entry = &r["coverage_ledger"]["entries"][0];
        assert_eq!(entry["status"], "blocked_validation_runtime");
        assert!(entry["reason"].as_str().unwrap().contains("code -11"));
        assert_eq!(r["validators"][0]["name"], "minimum_openability");
        assert_eq!(r["validators"][1]["status"], "BLOCKED");
    }
}
