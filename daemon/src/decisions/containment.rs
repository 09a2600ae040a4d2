//! Phase 2b/2c handoff: containment candidates for occlusion nomination (SA §2.1).
//!
//! An enclosure is nominated by semantics (its name says housing, cabinet, shell ...);
//! a sibling part whose bounds lie inside the enclosure's bounds becomes its enclosed
//! partner. Bounds only confirm a nomination; occlusion itself is decided later by the
//! Tier-3 probe. In repeated assemblies only the kept copy is nominated: the pair
//! stands for every copy.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::prims::{name_base, PrimTable};

/// Name fragments that mark a shell around other parts.
pub const ENCLOSURE_WORDS: &[&str] =
    &["housing", "enclosure", "cabinet", "casing", "shell", "cover", "hood", "chassis", "shroud", "guard", "case"];
/// At most this many pairs are scoped for the probe (largest enclosures first).
pub const MAX_PAIRS: usize = 200;

#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub enclosing: usize,
    pub enclosed: usize,
    pub label: &'static str,
    pub opaque: Option<bool>,
    /// Copies of the assembly this pair stands for (1 when not repeated).
    pub copies: usize,
}

fn inside(inner: &[f64; 6], outer: &[f64; 6]) -> bool {
    let diagonal =
        ((outer[3] - outer[0]).powi(2) + (outer[4] - outer[1]).powi(2) + (outer[5] - outer[2]).powi(2)).sqrt();
    let slack = 1e-6 * diagonal.max(1e-9);
    (0..3).all(|k| inner[k] >= outer[k] - slack && inner[k + 3] <= outer[k + 3] + slack)
}

/// Opacity of an enclosure from its materials' facts (`stage-facts.materials`):
/// Some(true) only when every bound material is a UsdPreviewSurface with no opacity below 1
/// and no transmission; Some(false) when one is see-through; None when undeterminable.
pub fn enclosure_opaque(table: &PrimTable, enclosure: usize, materials: &Map<String, Value>) -> Option<bool> {
    let bound: HashSet<&str> =
        table.subtree(enclosure).iter().map(|i| table.rows[*i].material.as_str()).filter(|m| !m.is_empty()).collect();
    if bound.is_empty() {
        return None;
    }
    let mut all_opaque = true;
    for path in bound {
        let facts = materials.get(path)?;
        let see_through =
            facts["transmissive"].as_bool() == Some(true) || facts["opacity"].as_f64().is_some_and(|o| o < 1.0);
        if see_through {
            return Some(false);
        }
        let preview = facts["surfaces"].as_array().is_some_and(|s| s.iter().any(|id| id == "UsdPreviewSurface"));
        all_opaque &= preview;
    }
    all_opaque.then_some(true)
}

/// Enclosing/enclosed pairs. `skipped_copies` are rows inside copies that sharing removes
/// (their pairs are the kept copy's); `copies_of` says how many copies a row stands for.
pub fn pairs(
    table: &PrimTable,
    materials: &Map<String, Value>,
    skipped_copies: &HashSet<usize>,
    copies_of: &dyn Fn(usize) -> usize,
) -> Vec<Pair> {
    let mut found = Vec::new();
    for (e, row) in table.rows.iter().enumerate() {
        let Some(outer) = row.bounds else { continue };
        if row.meshes == 0 || row.instance || skipped_copies.contains(&e) {
            continue;
        }
        let name = name_base(row.name()).to_ascii_lowercase();
        let Some(label) = ENCLOSURE_WORDS.iter().find(|w| name.contains(*w)) else { continue };
        let Some(parent) = table.parent[e] else { continue };
        let opaque = enclosure_opaque(table, e, materials);
        for &s in &table.children[parent] {
            let sibling = &table.rows[s];
            if s == e || sibling.meshes == 0 {
                continue;
            }
            if sibling.bounds.is_some_and(|b| inside(&b, &outer)) {
                found.push(Pair { enclosing: e, enclosed: s, label, opaque, copies: copies_of(e) });
            }
        }
    }
    // Biggest shells first: they hide the most.
    found.sort_by(|a, b| {
        table.rows[b.enclosing]
            .prims
            .cmp(&table.rows[a.enclosing].prims)
            .then(a.enclosing.cmp(&b.enclosing))
            .then(a.enclosed.cmp(&b.enclosed))
    });
    found.truncate(MAX_PAIRS);
    found
}

/// `asset_boundary_suggestions.boundaries[]` and `validation_scope.cross_component_pairs[]`.
pub fn boundary_records(table: &PrimTable, found: &[Pair]) -> (Vec<Value>, Vec<Value>) {
    let id = |i: usize| format!("b_{}", table.rows[i].path.trim_start_matches('/').replace(['/', ':', '.'], "_"));
    let mut boundaries = Vec::new();
    let mut seen = HashSet::new();
    for pair in found {
        if seen.insert(pair.enclosing) {
            let mut record = json!({
                "boundary_id": id(pair.enclosing), "prim_path": table.rows[pair.enclosing].path,
                "candidate_source": "semantics", "spatial_role": "enclosing", "semantic_label": pair.label,
            });
            if let Some(opaque) = pair.opaque {
                record["enclosure_opaque"] = json!(opaque);
            }
            boundaries.push(record);
        }
        if seen.insert(pair.enclosed) {
            boundaries.push(json!({
                "boundary_id": id(pair.enclosed), "prim_path": table.rows[pair.enclosed].path,
                "candidate_source": "semantics", "spatial_role": "enclosed",
                "semantic_label": name_base(table.rows[pair.enclosed].name()).trim_end_matches('_'),
            }));
        }
    }
    let pairs = found
        .iter()
        .map(|pair| {
            let mut record = json!({
                "enclosing_boundary_id": id(pair.enclosing), "enclosed_boundary_id": id(pair.enclosed),
                "probe": "spatial_occluded", "bbox_confirmed": true,
                "notes": if pair.copies > 1 {
                    format!("sibling inside the {}'s bounds; stands for {} copies of the assembly", pair.label, pair.copies)
                } else {
                    format!("sibling inside the {}'s bounds", pair.label)
                },
            });
            if let Some(opaque) = pair.opaque {
                record["enclosure_opaque"] = json!(opaque);
            }
            record
        })
        .collect();
    (boundaries, pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::prims::tests::row;
    use crate::decisions::prims::PrimRow;

    fn machine(bounds_of_motor: [f64; 6]) -> PrimTable {
        let with =
            |r: PrimRow, b: [f64; 6], material: &str| PrimRow { bounds: Some(b), material: material.into(), ..r };
        PrimTable::from_rows(vec![
            with(row("/M", "m", 4, 3), [-2.0, -2.0, -2.0, 2.0, 2.0, 2.0], ""),
            with(row("/M/Housing_0", "h", 1, 1), [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], "/Looks/Steel"),
            with(row("/M/Motor_1", "o", 1, 1), bounds_of_motor, "/Looks/Steel"),
            with(row("/M/Frame_2", "f", 1, 1), [-2.0, -2.0, -2.0, 2.0, -1.5, 2.0], "/Looks/Steel"),
        ])
    }

    fn materials(opacity: Value) -> Map<String, Value> {
        json!({"/Looks/Steel": {"surfaces": ["UsdPreviewSurface"], "opacity": opacity, "transmissive": false}})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn a_part_inside_a_housing_is_paired_and_one_outside_is_not() {
        let table = machine([-0.5, -0.5, -0.5, 0.5, 0.5, 0.5]);
        let found = pairs(&table, &materials(Value::Null), &HashSet::new(), &|_| 1);
        let named: Vec<_> =
            found.iter().map(|p| (table.rows[p.enclosing].name(), table.rows[p.enclosed].name(), p.opaque)).collect();
        assert_eq!(named, [("Housing_0", "Motor_1", Some(true))]);
        let (boundaries, pairs) = boundary_records(&table, &found);
        assert_eq!(boundaries.len(), 2);
        assert_eq!(pairs[0]["enclosing_boundary_id"], "b_M_Housing_0");
        assert_eq!(pairs[0]["enclosure_opaque"], true);
    }

    #[test]
    fn a_protruding_part_or_a_glass_shell_changes_the_answer() {
        let table = machine([-0.5, -0.5, -0.5, 1.5, 0.5, 0.5]);
        assert!(pairs(&table, &materials(Value::Null), &HashSet::new(), &|_| 1).is_empty());
        let table = machine([-0.5, -0.5, -0.5, 0.5, 0.5, 0.5]);
        assert_eq!(pairs(&table, &materials(json!(0.3)), &HashSet::new(), &|_| 1)[0].opaque, Some(false));
        assert_eq!(enclosure_opaque(&table, 1, &Map::new()), None, "unknown material: omit the hint");
    }
}
