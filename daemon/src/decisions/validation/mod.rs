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

mod classes;
mod plan;
mod report;
mod results;

pub use classes::{GeometryClasses, MaskSize, SharedClass};
pub use plan::{
    plan, reverify, select, FlaggedPair, Granularity, Job, Placement, Plan, PlanInputs, Row, Sample, Scope,
};
pub use report::{report, Finding, LedgerEntry, ValidationPhase, ValidationReport, ValidatorRow, MAX_SITES};
pub use results::{Dependencies, ValidateResult};

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
pub(crate) const SAFETY_GATE: &[&str] =
    &["composition_missing_ref", "material_path", "material_dangling_binding", "texture_bind", "texture_normalmap"];
/// The contract's whole-stage row plus authored-extent checks (the lossless chain's
/// computeExtents), which run once per geometry class like the per-mesh rows.
pub(crate) const WHOLE_STAGE_OPTIMIZATION: &[&str] = &[
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
pub(crate) const PRIMVAR_CLEANUP: &[&str] = &["primvar_indexability", "primvar_unused"];
/// The contract's hygiene trio plus duplicate faces: the lossless chain's meshCleanup
/// enables removeDuplicateFaces only on evidence, so that evidence must be gathered.
pub(crate) const MESH_HYGIENE: &[&str] =
    &["vertex_weld", "topology_zero_area_faces", "normals_winding", "topology_duplicate_faces"];
pub(crate) const SIMULATION_READY: &[&str] = &["topology_manifold", "normals_validity"];
pub(crate) const PAIR_ROUTING: &[&str] = &["spatial_overlapping", "spatial_coinciding"];

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

/// Seconds as the daemon's messages write a budget or a duration (the executor's `_seconds`
/// too): one decimal, two below a second, so a small one does not read as 0.0 s.
pub fn seconds_text(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{seconds:.2}")
    } else {
        format!("{seconds:.1}")
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::decisions::prims::tests::row;
    use crate::decisions::prims::PrimTable;

    pub fn mesh(path: &str, hash: &str) -> crate::decisions::prims::PrimRow {
        let mut r = row(path, hash, 1, 1);
        r.type_name = "Mesh".into();
        r
    }

    /// Two machines with the same bolt and body, a third machine with its own body.
    pub fn table() -> PrimTable {
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

    pub fn inputs(recommendation: &str) -> PlanInputs {
        PlanInputs {
            phase_recommendation: recommendation.into(),
            prim_count: 500,
            mesh_count: 6,
            stage_bytes: Some(10_000),
            classes: GeometryClasses::from_table(&table()),
            ..Default::default()
        }
    }

    /// An optimization posture over a thousand masked subtrees of ten representatives each, on
    /// two workers: checking them all costs ~5 s of rules beyond the jobs' bases.
    pub fn many_classes() -> PlanInputs {
        let mut i = inputs("optimization");
        i.classes.mask_paths = (0..1000).map(|k| format!("/Set/Prop{k:04}")).collect();
        i.classes.mask_sizes = vec![super::MaskSize { representatives: 10, bytes: 1000 }; 1000];
        i.workers = 2;
        i
    }
}
