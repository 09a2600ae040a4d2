//! Phases 1b/2a/2b/2d: stage facts and the prim table → structure assessment
//! (classification, phase recommendation, hierarchy-dedupe signal, asset boundaries,
//! kind trust, validation scope, findings) and the dedupe-candidates report.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::containment;
use super::dedupe::{self, Group, KindTrust, Placement, Readiness};
use super::prims::{path_pattern, PrimTable};

/// The subset of `stage-facts.json` that decisions read (see schemas/stage-facts.schema.json).
#[derive(Clone, Debug, Deserialize)]
pub struct Facts {
    pub stage: StageFacts,
    pub counts: Counts,
    pub composition: Composition,
    pub geometry: Geometry,
    pub content_flags: ContentFlags,
    /// Opacity facts per material path, for the enclosure-opacity hint.
    #[serde(default)]
    pub materials: Map<String, Value>,
    #[serde(default)]
    pub composition_errors: Vec<String>,
    /// Reference, payload and sublayer cycles USD composed around.
    #[serde(default)]
    pub composition_cycles: Vec<String>,
    /// The files the stage references or payloads: a composed stage's Phase 4 targets.
    #[serde(default)]
    pub referenced_layers: crate::decisions::targets::ReferencedLayers,
    #[serde(default)]
    pub bound_errors: Vec<String>,
    /// Prims the stage brings in elsewhere through internal references or payloads: the
    /// definitions copies already share (never counted as copies themselves).
    #[serde(default)]
    pub internal_reference_targets: Vec<String>,
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
    #[serde(default)]
    pub metadata_warnings: Vec<String>,
    /// Bytes of the stage's layers (None when unknown).
    #[serde(default)]
    pub file_size_bytes: Option<u64>,
    /// Authoring metadata text (layer doc, customLayerData, the default prim's customData
    /// and assetInfo): where converters name themselves.
    #[serde(default)]
    pub authoring_hints: String,
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
    /// Distinct geometries among the meshes outside instance prototypes.
    pub distinct_mesh_geometries: u64,
    /// Meshes outside instance prototypes whose geometry repeats another's: what dedupe
    /// could still share (prototype meshes are shared already and not counted).
    pub duplicate_meshes: u64,
    pub meshes_missing_extent: u64,
    /// Meshes with invalid topology or points, and the first of them with their problem.
    #[serde(default)]
    pub invalid_mesh_count: u64,
    #[serde(default)]
    pub invalid_meshes: Vec<InvalidMesh>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct InvalidMesh {
    pub prim: String,
    pub problem: String,
}

/// Input no output may be written from: meshes whose topology or points are invalid (no op
/// can be trusted on them, no proof can certify them) and composition cycles (an output would
/// drop them without a trace). The outcome, and a message naming the first offender.
pub fn input_refusal(facts: &Facts) -> Option<(crate::outcome::Outcome, String)> {
    use crate::outcome::Outcome;
    let geometry = &facts.geometry;
    if let Some(first) = geometry.invalid_meshes.first() {
        let message = format!(
            "{} mesh(es) with invalid topology or points; first {}: {}",
            geometry.invalid_mesh_count, first.prim, first.problem
        );
        return Some((Outcome::InputGeometryInvalid, message));
    }
    facts.composition_cycles.first().map(|first| {
        let message = format!("{} composition cycle(s); first: {first}", facts.composition_cycles.len());
        (Outcome::InputCompositionCycle, message)
    })
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

/// The dedupe picture the classification reads: frontier savings and what kind of copies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reuse {
    /// Prims sharing would remove, over the selected frontier groups.
    pub prim_savings: u64,
    /// Selected groups whose copies come through references (not instanced).
    pub reference_groups: usize,
    pub selected_groups: usize,
}

impl Reuse {
    pub fn of(groups: &[Group], placements: &[Placement]) -> Self {
        let selected: Vec<&Group> = groups.iter().zip(placements).filter(|(_, p)| p.selected).map(|(g, _)| g).collect();
        Self {
            prim_savings: selected.iter().map(|g| g.prim_savings).sum(),
            reference_groups: selected.iter().filter(|g| g.source == dedupe::Source::Reference).count(),
            selected_groups: selected.len(),
        }
    }
}

pub fn classify(facts: &Facts, reuse: &Reuse) -> (Classification, Vec<String>, Vec<&'static str>) {
    let c = &facts.composition;
    let mut composed_by = Vec::new();
    for (count, arc) in [
        (c.references, "references"),
        (c.payloads, "payloads"),
        (c.sublayers, "sublayers"),
        (c.inherits, "inherits"),
        (c.specializes, "specializes"),
    ] {
        if count > 0 {
            composed_by.push(arc);
        }
    }
    let savings = reuse.prim_savings;
    let duplicate_meshes = facts.geometry.duplicate_meshes;
    let instanced = facts.counts.instance_count > 0 || facts.counts.point_instancer_count > 0;
    let mut reasons = Vec::new();

    if instanced && savings == 0 && duplicate_meshes == 0 && facts.geometry.meshes_missing_extent == 0 {
        reasons.push(format!(
            "{} instances of {} prototypes and {} point instancers; no repeated subtree or duplicate mesh left; extents authored",
            facts.counts.instance_count, facts.counts.prototype_count, facts.counts.point_instancer_count
        ));
        return (Classification::AlreadyOptimized, reasons, composed_by);
    }
    // Composed means content from more than one file; arcs inside one layer keep a stage monolithic.
    if facts.counts.layer_count > 1 {
        reasons.push(format!(
            "{} layers composed through {}",
            facts.counts.layer_count,
            if composed_by.is_empty() { "sublayers".to_string() } else { composed_by.join(", ") }
        ));
        if reuse.reference_groups > 0 {
            reasons.push(format!(
                "{} groups of repeated references are not instanced (sharing saves {savings} prims)",
                reuse.reference_groups
            ));
        }
        return (Classification::Composed, reasons, composed_by);
    }
    let threshold = (facts.counts.prim_count as f64 * MIN_SAVINGS_FRACTION).ceil() as u64;
    if savings > 0 && (savings >= threshold || savings >= MIN_PRIM_SAVINGS) {
        reasons.push(format!(
            "single layer; sharing {} groups of repeated subtrees would remove {savings} of {} prims",
            reuse.selected_groups, facts.counts.prim_count
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

/// Entries listed in `validation_scope` arrays (the counts are in `hierarchy_dedupe`).
pub const MAX_SCOPE_PATHS: usize = 1000;
/// A prim with more direct children holding geometry than this is a flat hierarchy.
pub const FLAT_HIERARCHY_CHILDREN: usize = 500;

/// The assessment and the dedupe report of one stage.
pub struct Assessment {
    pub structure: Value,
    pub candidates: Value,
    pub reuse: Reuse,
}

/// Prim paths listed per candidate level (the count is always complete).
pub const LEVEL_PATHS_LISTED: usize = 2000;

/// Candidate asset-boundary levels: per depth, the prims holding geometry and how many
/// selected groups cut there (hash-backed boundaries are promoted).
fn candidate_levels(table: &PrimTable, groups: &[Group], placements: &[Placement]) -> Vec<Value> {
    let mut by_depth: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, r) in table.rows.iter().enumerate() {
        if r.meshes > 0 && r.depth() <= 4 {
            by_depth.entry(r.depth()).or_default().push(i);
        }
    }
    let mut depths: Vec<usize> = by_depth.keys().copied().collect();
    depths.sort_unstable();
    depths
        .into_iter()
        .filter(|d| by_depth[d].len() >= 2)
        .map(|d| {
            let rows = &by_depth[&d];
            let matched: Vec<&Group> = groups.iter().zip(placements)
                .filter(|(g, p)| p.selected && table.rows[g.members[0]].depth() == d).map(|(g, _)| g).collect();
            let covered: usize = matched.iter().map(|g| g.copies()).sum();
            let promoted = !matched.is_empty();
            let mut level = json!({
                "level": format!("depth {d}: {}", path_pattern(rows.iter().map(|i| table.rows[*i].path.as_str()))),
                "child_count": rows.len(),
                "hash_matched_groups": matched.len(),
                "promoted": promoted,
                // What selective loading would cut into sub-assets at this level.
                "prim_paths": rows.iter().take(LEVEL_PATHS_LISTED).map(|i| table.rows[*i].path.as_str()).collect::<Vec<_>>(),
            });
            if promoted {
                level["reason"] = json!(format!("{} repeated groups cover {covered} of {} subtrees at this cut: immediate dedupe wins on extraction", matched.len(), rows.len()));
            }
            level
        })
        .collect()
}

/// The structure assessment (schemas/structure-assessment.schema.json) and the
/// dedupe-candidates report (schemas/dedupe-candidates.schema.json).
pub fn assess(facts: &Facts, table: &PrimTable) -> Assessment {
    let trust: KindTrust = dedupe::kind_trust(table);
    let definitions = dedupe::definition_rows(table, &facts.internal_reference_targets);
    let (groups, placements) = dedupe::frontier(table, dedupe::find_groups(table, &definitions));
    let reuse = Reuse::of(&groups, &placements);
    let (classification, reasons, composed_by) = classify(facts, &reuse);
    let selected: Vec<&Group> = groups.iter().zip(&placements).filter(|(_, p)| p.selected).map(|(g, _)| g).collect();
    let candidates = dedupe::candidates_artifact(table, &groups, &placements, &trust, &facts.stage.identifier);

    // Copies that sharing removes: validated through their kept representative.
    let kept: HashSet<usize> = selected.iter().flat_map(|g| g.representatives.iter().copied()).collect();
    let removed: Vec<usize> =
        selected.iter().flat_map(|g| g.members.iter().copied()).filter(|m| !kept.contains(m)).collect();
    let copies_of_row: HashMap<usize, usize> =
        selected.iter().flat_map(|g| g.representatives.iter().map(|r| (*r, g.copies()))).collect();
    let inside_removed: HashSet<usize> = removed.iter().flat_map(|m| table.subtree(*m)).collect();
    let copies_of = |row: usize| -> usize {
        std::iter::once(row).chain(table.ancestors(row)).find_map(|a| copies_of_row.get(&a).copied()).unwrap_or(1)
    };
    let pairs = containment::pairs(table, &facts.materials, &inside_removed, &copies_of);
    let (boundaries, cross_pairs) = containment::boundary_records(table, &pairs);

    let mut findings = Vec::new();
    for (id, severity, messages) in [
        ("stage_metadata_invalid", "warning", &facts.stage.metadata_warnings),
        ("composition_errors", "warning", &facts.composition_errors),
        ("unboundable_prims", "info", &facts.bound_errors),
    ] {
        if !messages.is_empty() {
            findings.push(json!({"id": id, "severity": severity, "message": messages.join("; ")}));
        }
    }
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
    let duplicates = facts.geometry.duplicate_meshes;
    if duplicates > 0 {
        findings.push(json!({"id": "duplicate_mesh_geometry", "severity": "info",
            "message": format!("{duplicates} meshes repeat the geometry of another ({} distinct geometries outside instance prototypes)", facts.geometry.distinct_mesh_geometries)}));
    }
    if trust.trusted == Some(false) {
        findings.push(json!({"id": "kind_untrusted", "severity": "info", "message": format!(
            "kind present but {:.0}% of {} kind-bearing prims hold at most one mesh: an unreliable boundary, the frontier falls back to structure",
            trust.single_mesh_fraction * 100.0, trust.sampled)}));
    }
    let flat: Vec<&str> = table
        .children
        .iter()
        .enumerate()
        .filter(|(_, kids)| kids.iter().filter(|k| table.rows[**k].meshes > 0).count() > FLAT_HIERARCHY_CHILDREN)
        .map(|(i, _)| table.rows[i].path.as_str())
        .collect();
    if !flat.is_empty() {
        findings.push(json!({"id": "flat_hierarchy", "severity": "info", "message": format!(
            "{} prims have more than {FLAT_HIERARCHY_CHILDREN} direct children with geometry: grouping into subassemblies may help", flat.len()),
            "paths": flat.iter().take(50).collect::<Vec<_>>()}));
    }
    for group in selected.iter().filter(|g| g.readiness != Readiness::Safe || !g.content_flags.is_empty()) {
        findings.push(json!({"id": "dedupe_group_needs_review", "severity": "info",
            "message": format!("{} copies of {}: readiness {:?}, flags [{}]; {}", group.copies(),
                path_pattern(group.members.iter().map(|m| table.rows[*m].path.as_str())), group.readiness,
                group.content_flags.join(", "), group.findings.join("; ")),
            "paths": group.members.iter().take(5).map(|m| table.rows[*m].path.as_str()).collect::<Vec<_>>()}));
    }

    let instances = facts.counts.instance_count;
    let hint = scale_hint(facts.stage.meters_per_unit);
    let recommended = classification == Classification::MonolithicNeedsRestructure
        || (classification == Classification::Composed && reuse.reference_groups > 0);
    let payloads = facts.composition.payloads;
    let levels = candidate_levels(table, &groups, &placements);
    let boundaries_clear = levels.iter().any(|l| l["child_count"].as_u64().unwrap_or(0) >= 2);
    let user_choice_required = payloads == 0 && boundaries_clear && classification != Classification::AlreadyOptimized;
    let mut kind_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in table.rows.iter().filter(|r| !r.kind.is_empty()) {
        *kind_counts.entry(r.kind.as_str()).or_default() += 1;
    }
    let structure = json!({
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
            "payload_count": payloads,
        },
        "composition": {
            "layers": facts.counts.layer_count, "references": facts.composition.references,
            "payloads": payloads, "inherits": facts.composition.inherits,
            "specializes": facts.composition.specializes, "variant_sets": facts.composition.variant_sets,
            "sublayers": facts.composition.sublayers, "counting_method": "authored_list_op_items",
        },
        "instancing": {
            "instances": instances, "prototypes": facts.counts.prototype_count,
            "candidates": selected.iter().map(|g| g.copies()).sum::<usize>(),
            "ratio": if facts.counts.prim_count_with_instance_proxies > 0 {
                instances as f64 / facts.counts.prim_count_with_instance_proxies as f64 } else { 0.0 },
            "point_instancers": facts.counts.point_instancer_count,
        },
        "hierarchy_dedupe": {
            "recommended": recommended,
            "reason": if selected.is_empty() { "no repeated subtree with geometry".to_string() } else {
                format!("{} groups of repeated subtrees at the frontier; sharing saves {} prims ({} clean)",
                        selected.len(), reuse.prim_savings, candidates["clean_prim_savings"]) },
            "top_candidates": selected.iter().take(20).map(|g| json!({
                "path_pattern": path_pattern(g.members.iter().map(|m| table.rows[*m].path.as_str())),
                "subtree_prims": g.subtree_prims, "copies": g.copies(),
                "estimated_prim_savings": g.prim_savings, "readiness": g.readiness, "source": g.source,
            })).collect::<Vec<_>>(),
            "max_depth_scanned": candidates["max_depth_scanned"],
            "groups_found_below_depth_2": candidates["groups_found_below_depth_2"],
            "report": "dedupe-candidates.json",
        },
        "asset_boundary_suggestions": {
            "candidate_levels": levels,
            "boundaries": boundaries,
            "user_choice_required": user_choice_required,
            "choice_reason": if user_choice_required {
                "payload_count is 0 and the hierarchy has clear boundaries: selective loading is the user's decision even when optimizing as-is"
            } else if payloads > 0 { "the stage already loads through payloads" } else { "no clear boundary level" },
            "consumed_by": "restructure-decision (Phase 2e)",
        },
        "kind_hierarchy": {
            "kind_counts": kind_counts,
            "trust": candidates["kind_trust"],
        },
        "prototype_library": {
            "scenegraph_prototypes": facts.counts.prototype_count,
            "shared_prototypes_after_dedupe": selected.iter().map(|g| g.representatives.len()).sum::<usize>(),
        },
        "validation_scope": {
            "per_asset": selected.iter().flat_map(|g| g.representatives.iter().map(|r| table.rows[*r].path.clone())).take(MAX_SCOPE_PATHS).collect::<Vec<_>>(),
            "cross_component_pairs": cross_pairs,
            "skip": removed.iter().take(MAX_SCOPE_PATHS).map(|m| table.rows[*m].path.clone()).collect::<Vec<_>>(),
        },
        "phase_recommendation": classification.phase_recommendation(),
        "classification": {"kind": classification.as_str(), "composed_by": composed_by, "reasons": reasons},
        "findings": findings,
    });
    Assessment { structure, candidates, reuse }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decisions::prims::tests::row;

    pub fn facts(prims: u64, meshes: u64, distinct: u64) -> Facts {
        serde_json::from_value(json!({
            "stage": {"identifier": "/s.usda", "rootLayer": "/s.usda", "defaultPrim": "/W", "metersPerUnit": 1.0, "upAxis": "Y"},
            "counts": {"prim_count": prims, "prim_count_with_instance_proxies": prims, "mesh_count": meshes,
                       "rendered_mesh_count": meshes, "material_count": 1, "point_instancer_count": 0,
                       "prototype_count": 0, "instance_count": 0, "layer_count": 1},
            "composition": {"references": 0, "payloads": 0, "inherits": 0, "specializes": 0, "variant_sets": 0, "sublayers": 0},
            "geometry": {"distinct_mesh_geometries": distinct, "duplicate_meshes": meshes.saturating_sub(distinct), "meshes_missing_extent": meshes},
            "content_flags": {"physics": {"count": 0, "paths": []}, "skeleton": {"count": 0, "paths": []}, "variants": {"count": 0, "paths": []}},
        }))
        .unwrap()
    }

    fn reuse(savings: u64) -> Reuse {
        Reuse { prim_savings: savings, reference_groups: 0, selected_groups: 1 }
    }

    #[test]
    fn invalid_meshes_and_cycles_refuse_the_input_naming_the_first() {
        let mut f = facts(10, 2, 2);
        assert_eq!(input_refusal(&f), None);
        f.composition_cycles = vec!["ArcCycle at /W/A: cycle".into()];
        let (outcome, message) = input_refusal(&f).unwrap();
        assert_eq!(outcome, crate::outcome::Outcome::InputCompositionCycle);
        assert!(message.contains("ArcCycle at /W/A"));
        f.geometry.invalid_mesh_count = 3;
        f.geometry.invalid_meshes = vec![InvalidMesh { prim: "/W/M".into(), problem: "a face has -1 vertices".into() }];
        let (outcome, message) = input_refusal(&f).unwrap();
        assert_eq!(outcome, crate::outcome::Outcome::InputGeometryInvalid, "geometry first");
        assert_eq!(message, "3 mesh(es) with invalid topology or points; first /W/M: a face has -1 vertices");
    }

    #[test]
    fn repeated_assemblies_in_one_layer_need_restructure() {
        assert_eq!(classify(&facts(600, 268, 5), &reuse(480)).0, Classification::MonolithicNeedsRestructure);
    }

    #[test]
    fn small_repetition_is_fine_as_is() {
        assert_eq!(classify(&facts(1000, 10, 9), &reuse(3)).0, Classification::MonolithicFineAsIs);
    }

    #[test]
    fn content_from_several_files_is_composed_and_internal_arcs_are_not() {
        let mut f = facts(100, 10, 10);
        f.composition.references = 35;
        assert_eq!(classify(&f, &reuse(0)).0, Classification::MonolithicFineAsIs, "one layer with internal references");
        f.counts.layer_count = 3;
        let (class, _, by) = classify(&f, &reuse(0));
        assert_eq!((class, by), (Classification::Composed, vec!["references"]));
    }

    #[test]
    fn instanced_stage_with_nothing_left_is_already_optimized() {
        let mut f = facts(100, 10, 10);
        f.counts.instance_count = 40;
        f.counts.prototype_count = 1;
        f.geometry.meshes_missing_extent = 0;
        assert_eq!(classify(&f, &reuse(0)).0, Classification::AlreadyOptimized);
    }

    fn repeated_factory_rows() -> Vec<crate::decisions::prims::PrimRow> {
        let mut rows = vec![row("/F", "root", 61, 20)];
        for m in 0..20 {
            rows.push(row(&format!("/F/Machine_{m:02}"), "M", 3, 1));
            rows.push(row(&format!("/F/Machine_{m:02}/Geom"), "G", 1, 1));
            rows.push(row(&format!("/F/Machine_{m:02}/Tip"), "T", 1, 0));
        }
        rows
    }

    #[test]
    fn the_same_facts_in_any_row_order_give_the_same_artifacts() {
        let rows = repeated_factory_rows();
        let mut shuffled = rows.clone();
        shuffled.reverse();
        shuffled.rotate_left(7);
        let (a, b) = (
            assess(&facts(61, 20, 1), &PrimTable::from_rows(rows)),
            assess(&facts(61, 20, 1), &PrimTable::from_rows(shuffled)),
        );
        assert_eq!(a.structure.to_string(), b.structure.to_string());
        assert_eq!(a.candidates.to_string(), b.candidates.to_string());
    }

    #[test]
    fn assessment_of_a_repeated_factory_routes_to_structuring() {
        let table = PrimTable::from_rows(repeated_factory_rows());
        let result = assess(&facts(61, 20, 1), &table);
        let s = &result.structure;
        assert_eq!(s["classification"]["kind"], "monolithic-needs-restructure");
        assert_eq!(s["phase_recommendation"], "structuring");
        assert_eq!(s["hierarchy_dedupe"]["recommended"], true);
        assert_eq!(s["hierarchy_dedupe"]["top_candidates"][0]["copies"], 20);
        assert_eq!(s["hierarchy_dedupe"]["top_candidates"][0]["path_pattern"], "/F/Machine_*");
        assert_eq!(s["validation_scope"]["per_asset"], json!(["/F/Machine_00"]));
        assert_eq!(s["validation_scope"]["skip"].as_array().unwrap().len(), 19);
        assert_eq!(result.candidates["total_prim_savings"], 57);
        assert_eq!(s["asset_boundary_suggestions"]["candidate_levels"][0]["promoted"], true);
        crate::store::validate("structure-assessment", s).unwrap();
        crate::store::validate("dedupe-candidates", &result.candidates).unwrap();
    }
}
