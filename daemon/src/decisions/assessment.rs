//! Phases 1b/2a/2b/2d: stage facts → structure assessment (classification, phase
//! recommendation, hierarchy-dedupe signal, validation scope, findings).

use serde::Deserialize;
use serde_json::{json, Value};

/// The subset of `stage-facts.json` that decisions read (see schemas/stage-facts.schema.json).
#[derive(Clone, Debug, Deserialize)]
pub struct Facts {
    pub stage: StageFacts,
    pub counts: Counts,
    pub composition: Composition,
    pub geometry: Geometry,
    pub content_flags: ContentFlags,
    pub hierarchy_groups: Vec<HierarchyGroup>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct StageFacts {
    pub identifier: String,
    #[serde(rename = "rootLayer")]
    pub root_layer: String,
    #[serde(rename = "defaultPrim")]
    pub default_prim: String,
    #[serde(rename = "metersPerUnit")]
    pub meters_per_unit: f64,
    #[serde(rename = "upAxis")]
    pub up_axis: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Counts {
    pub prim_count: u64,
    pub prim_count_with_instance_proxies: u64,
    pub mesh_count: u64,
    pub rendered_mesh_count: u64,
    pub material_count: u64,
    pub point_instancer_count: u64,
    pub prototype_count: u64,
    pub instance_count: u64,
    pub layer_count: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Composition {
    pub references: u64,
    pub payloads: u64,
    pub inherits: u64,
    pub specializes: u64,
    pub variant_sets: u64,
    pub sublayers: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Geometry {
    pub distinct_mesh_geometries: u64,
    pub meshes_missing_extent: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Flag {
    pub count: u64,
    pub paths: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ContentFlags {
    pub physics: Flag,
    pub skeleton: Flag,
    pub variants: Flag,
}

#[derive(Clone, Debug, Deserialize)]
pub struct HierarchyGroup {
    pub copies: u64,
    pub prims_per_copy: u64,
    pub meshes_per_copy: u64,
    pub paths: Vec<String>,
}

impl HierarchyGroup {
    pub fn prim_savings(&self) -> u64 {
        (self.copies - 1) * self.prims_per_copy
    }
}

/// Hierarchy dedupe is worth a restructure when sharing would remove at least this share
/// of the authored prims, or at least [`MIN_PRIM_SAVINGS`] prims outright.
pub const MIN_SAVINGS_FRACTION: f64 = 0.10;
pub const MIN_PRIM_SAVINGS: u64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    MonolithicNeedsRestructure,
    MonolithicFineAsIs,
    Composed,
    AlreadyOptimized,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MonolithicNeedsRestructure => "monolithic-needs-restructure",
            Self::MonolithicFineAsIs => "monolithic-fine-as-is",
            Self::Composed => "composed",
            Self::AlreadyOptimized => "already-optimized",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::MonolithicNeedsRestructure, Self::MonolithicFineAsIs, Self::Composed, Self::AlreadyOptimized]
            .into_iter()
            .find(|c| c.as_str() == text)
    }

    pub fn phase_recommendation(self) -> &'static str {
        match self {
            Self::MonolithicNeedsRestructure => "structuring",
            Self::AlreadyOptimized => "already_optimized",
            Self::MonolithicFineAsIs | Self::Composed => "optimization",
        }
    }
}

/// The groups worth sharing, biggest subtrees first. Copies that sit inside a non-first
/// copy of an already selected group are shared through that group and are not counted
/// again; a group keeps only its remaining copies (and drops out below two).
/// Path lists are capped by the executor, so the remaining share is scaled to `copies`.
pub fn frontier(groups: &[HierarchyGroup]) -> Vec<HierarchyGroup> {
    let mut ordered: Vec<&HierarchyGroup> = groups.iter().collect();
    ordered.sort_by(|a, b| b.prims_per_copy.cmp(&a.prims_per_copy).then_with(|| b.copies.cmp(&a.copies)).then_with(|| a.paths.cmp(&b.paths)));
    let mut selected: Vec<HierarchyGroup> = Vec::new();
    for group in ordered {
        let shared_roots: Vec<&String> = selected.iter().flat_map(|s| s.paths.iter().skip(1)).collect();
        let remaining: Vec<String> = group
            .paths
            .iter()
            .filter(|path| !shared_roots.iter().any(|root| path.starts_with(&format!("{root}/"))))
            .cloned()
            .collect();
        let listed = group.paths.len().max(1) as u64;
        let copies = group.copies * remaining.len() as u64 / listed;
        if copies >= 2 {
            selected.push(HierarchyGroup { copies, paths: remaining, ..group.clone() });
        }
    }
    selected.sort_by(|a, b| b.prim_savings().cmp(&a.prim_savings()).then_with(|| a.paths.cmp(&b.paths)));
    selected
}

pub fn classify(facts: &Facts) -> (Classification, Vec<String>, Vec<&'static str>) {
    let c = &facts.composition;
    let mut composed_by = Vec::new();
    for (count, arc) in [(c.references, "references"), (c.payloads, "payloads"), (c.sublayers, "sublayers"),
                         (c.inherits, "inherits"), (c.specializes, "specializes")] {
        if count > 0 {
            composed_by.push(arc);
        }
    }
    let savings: u64 = frontier(&facts.hierarchy_groups).iter().map(|g| g.prim_savings()).sum();
    let duplicate_meshes = facts.counts.mesh_count.saturating_sub(facts.geometry.distinct_mesh_geometries);
    let instanced = facts.counts.instance_count > 0 || facts.counts.point_instancer_count > 0;
    let mut reasons = Vec::new();

    if instanced && savings == 0 && duplicate_meshes == 0 && facts.geometry.meshes_missing_extent == 0 {
        reasons.push(format!(
            "{} instances of {} prototypes and {} point instancers; no repeated subtree or duplicate mesh left; extents authored",
            facts.counts.instance_count, facts.counts.prototype_count, facts.counts.point_instancer_count
        ));
        return (Classification::AlreadyOptimized, reasons, composed_by);
    }
    if !composed_by.is_empty() {
        reasons.push(format!("stage is composed through {}", composed_by.join(", ")));
        return (Classification::Composed, reasons, composed_by);
    }
    let threshold = (facts.counts.prim_count as f64 * MIN_SAVINGS_FRACTION).ceil() as u64;
    if savings > 0 && (savings >= threshold || savings >= MIN_PRIM_SAVINGS) {
        reasons.push(format!(
            "single layer; sharing repeated subtrees would remove {savings} of {} authored prims",
            facts.counts.prim_count
        ));
        return (Classification::MonolithicNeedsRestructure, reasons, composed_by);
    }
    reasons.push(format!(
        "single layer; repeated subtrees would save {savings} prims (below {threshold} = {:.0}% of prims)",
        MIN_SAVINGS_FRACTION * 100.0
    ));
    (Classification::MonolithicFineAsIs, reasons, composed_by)
}

fn scale_hint(meters_per_unit: f64) -> &'static str {
    match meters_per_unit {
        m if (m - 1.0).abs() < 1e-9 => "meters",
        m if (m - 0.01).abs() < 1e-12 => "centimeters",
        m if (m - 0.001).abs() < 1e-12 => "millimeters",
        _ => "other",
    }
}

/// The structure-assessment artifact (schemas/structure-assessment.schema.json).
pub fn assess(facts: &Facts) -> Value {
    let (classification, reasons, composed_by) = classify(facts);
    let top = frontier(&facts.hierarchy_groups);
    let savings: u64 = top.iter().map(|g| g.prim_savings()).sum();
    let candidates: u64 = top.iter().map(|g| g.copies).sum();
    let recommended = classification == Classification::MonolithicNeedsRestructure;

    let mut findings = Vec::new();
    let flags = &facts.content_flags;
    if flags.physics.count > 0 || flags.skeleton.count > 0 {
        findings.push(json!({
            "id": "articulated_or_physics_content", "severity": "warning",
            "message": format!("{} physics and {} skeleton prims: do not merge or instance these blindly", flags.physics.count, flags.skeleton.count),
            "paths": flags.physics.paths.iter().chain(&flags.skeleton.paths).take(50).collect::<Vec<_>>(),
        }));
    }
    if flags.variants.count > 0 {
        findings.push(json!({"id": "variant_bearing_prims", "severity": "info",
            "message": format!("{} prims carry variant sets", flags.variants.count), "paths": flags.variants.paths}));
    }
    if facts.geometry.meshes_missing_extent > 0 {
        findings.push(json!({"id": "missing_extents", "severity": "warning",
            "message": format!("{} of {} meshes have no authored extent", facts.geometry.meshes_missing_extent, facts.counts.mesh_count)}));
    }
    let duplicates = facts.counts.mesh_count.saturating_sub(facts.geometry.distinct_mesh_geometries);
    if duplicates > 0 {
        findings.push(json!({"id": "duplicate_mesh_geometry", "severity": "info",
            "message": format!("{} meshes, {} distinct geometries", facts.counts.mesh_count, facts.geometry.distinct_mesh_geometries)}));
    }

    let instances = facts.counts.instance_count;
    let hint = scale_hint(facts.stage.meters_per_unit);
    json!({
        "schemaVersion": "1.0",
        "stage": {
            "identifier": facts.stage.identifier, "rootLayer": facts.stage.root_layer,
            "defaultPrim": facts.stage.default_prim, "upAxis": facts.stage.up_axis,
            "metersPerUnit": facts.stage.meters_per_unit, "scale_hint": hint,
        },
        "asset_physical_context": {
            "metersPerUnit": facts.stage.meters_per_unit, "upAxis": facts.stage.up_axis, "scale_hint": hint,
            "mesh_count": facts.counts.mesh_count,
            "articulated": flags.physics.count > 0 || flags.skeleton.count > 0,
            "physics_prim_count": flags.physics.count, "skeleton_prim_count": flags.skeleton.count,
        },
        "summary_counts": {
            "prim_count": facts.counts.prim_count, "mesh_count": facts.counts.mesh_count,
            "material_count": facts.counts.material_count, "prototype_count": facts.counts.prototype_count,
            "instance_count": instances, "reference_count": facts.composition.references,
            "payload_count": facts.composition.payloads,
        },
        "composition": {
            "layers": facts.counts.layer_count, "references": facts.composition.references,
            "payloads": facts.composition.payloads, "inherits": facts.composition.inherits,
            "specializes": facts.composition.specializes, "variant_sets": facts.composition.variant_sets,
            "sublayers": facts.composition.sublayers, "counting_method": "authored_list_op_items",
        },
        "instancing": {
            "instances": instances, "prototypes": facts.counts.prototype_count, "candidates": candidates,
            "ratio": if facts.counts.prim_count_with_instance_proxies > 0 {
                instances as f64 / facts.counts.prim_count_with_instance_proxies as f64 } else { 0.0 },
        },
        "hierarchy_dedupe": {
            "recommended": recommended,
            "reason": if top.is_empty() { "no repeated subtree with geometry".to_string() } else {
                format!("{} repeated subtree groups at the frontier; sharing saves {savings} prims", top.len()) },
            "top_candidates": top.iter().take(20).map(|g| json!({
                "path_pattern": g.paths.first().cloned().unwrap_or_default(),
                "subtree_prims": g.prims_per_copy, "copies": g.copies,
                "estimated_prim_savings": g.prim_savings(),
            })).collect::<Vec<_>>(),
        },
        "validation_scope": {"per_asset": [], "cross_component_pairs": [], "skip": []},
        "phase_recommendation": classification.phase_recommendation(),
        "classification": {"kind": classification.as_str(), "composed_by": composed_by, "reasons": reasons},
        "findings": findings,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn facts(prims: u64, meshes: u64, distinct: u64, groups: Vec<HierarchyGroup>) -> Facts {
        serde_json::from_value(json!({
            "stage": {"identifier": "/s.usda", "rootLayer": "/s.usda", "defaultPrim": "/W", "metersPerUnit": 1.0, "upAxis": "Y"},
            "counts": {"prim_count": prims, "prim_count_with_instance_proxies": prims, "mesh_count": meshes,
                       "rendered_mesh_count": meshes, "material_count": 1, "point_instancer_count": 0,
                       "prototype_count": 0, "instance_count": 0, "layer_count": 1},
            "composition": {"references": 0, "payloads": 0, "inherits": 0, "specializes": 0, "variant_sets": 0, "sublayers": 0},
            "geometry": {"distinct_mesh_geometries": distinct, "meshes_missing_extent": meshes},
            "content_flags": {"physics": {"count": 0, "paths": []}, "skeleton": {"count": 0, "paths": []}, "variants": {"count": 0, "paths": []}},
            "hierarchy_groups": [],
        }))
        .map(|mut f: Facts| {
            f.hierarchy_groups = groups;
            f
        })
        .unwrap()
    }

    pub fn group(copies: u64, prims: u64, roots: &[&str]) -> HierarchyGroup {
        HierarchyGroup { copies, prims_per_copy: prims, meshes_per_copy: 1, paths: roots.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn repeated_assemblies_in_one_layer_need_restructure() {
        let f = facts(600, 268, 5, vec![group(25, 20, &["/W/A", "/W/B"])]);
        assert_eq!(classify(&f).0, Classification::MonolithicNeedsRestructure);
        assert_eq!(assess(&f)["phase_recommendation"], "structuring");
        assert_eq!(assess(&f)["hierarchy_dedupe"]["recommended"], true);
    }

    #[test]
    fn small_repetition_is_fine_as_is() {
        let f = facts(1000, 10, 9, vec![group(2, 3, &["/W/A", "/W/B"])]);
        assert_eq!(classify(&f).0, Classification::MonolithicFineAsIs);
        assert_eq!(assess(&f)["phase_recommendation"], "optimization");
    }

    #[test]
    fn references_make_a_stage_composed() {
        let mut f = facts(100, 10, 10, vec![]);
        f.composition.references = 35;
        let (class, _, by) = classify(&f);
        assert_eq!((class, by), (Classification::Composed, vec!["references"]));
    }

    #[test]
    fn instanced_stage_with_nothing_left_is_already_optimized() {
        let mut f = facts(100, 10, 10, vec![]);
        f.counts.instance_count = 40;
        f.counts.prototype_count = 1;
        f.geometry.meshes_missing_extent = 0;
        assert_eq!(classify(&f).0, Classification::AlreadyOptimized);
        assert_eq!(assess(&f)["phase_recommendation"], "already_optimized");
    }

    #[test]
    fn nested_groups_are_not_double_counted() {
        let outer = group(2, 20, &["/W/M1", "/W/M2"]);
        let inner = group(2, 3, &["/W/M1/Bolt", "/W/M2/Bolt"]);
        let separate = group(2, 4, &["/W/X", "/W/Y"]);
        let picked = frontier(&[inner.clone(), outer.clone(), separate.clone()]);
        let roots: Vec<_> = picked.iter().map(|g| g.paths[0].as_str()).collect();
        assert_eq!(roots, ["/W/M1", "/W/X"]);
    }

    #[test]
    fn copies_inside_the_prototype_copy_still_count() {
        // Bolts: 2 in each of 3 machines. Sharing the machines leaves the 2 bolts of the first one.
        let machines = group(3, 5, &["/W/M1", "/W/M2", "/W/M3"]);
        let bolts = group(6, 2, &["/W/M1/B1", "/W/M1/B2", "/W/M2/B1", "/W/M2/B2", "/W/M3/B1", "/W/M3/B2"]);
        let picked = frontier(&[bolts, machines]);
        assert_eq!(picked.iter().map(|g| (g.copies, g.prim_savings())).collect::<Vec<_>>(), [(3, 10), (2, 2)]);
    }
}
