//! The preservation proof: is the composed world-space geometry of a stage the same after a
//! phase as before it? Compared over the executor's `geometry` signatures (every rendered
//! mesh, instance proxies included).
//!
//! Two strengths, one per kind of phase:
//! - [`Strength::PerMesh`] (restructure, instancing, reference remap: nothing may change):
//!   every rendered mesh is still there at its composed path, with identical local points
//!   and topology, the same bound material (by network) and world-space bounds
//!   within tolerance. The composed prim count with instance proxies must not change either
//!   (material networks copied into standalone prototypes are counted apart).
//! - [`Strength::Aggregate`] (lossless mesh operations, which may weld, re-index, drop
//!   zero-area or duplicate faces): the rendered mesh count, the surface triangles per bound
//!   material (zero-area triangles out, coincident ones once: what renders) and the world
//!   bounds of the whole. Raw triangle counts are recorded beside them.
//! - [`Strength::Bounded`] (a chain the user approved bounded-loss or destructive ops for):
//!   the loss is measured and recorded; the world bounds must stay within the approved band,
//!   and meshes may only disappear when a destructive op was approved.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// World-space tolerance: this fraction of the scene's bounding-box diagonal (at least 1 unit).
pub const RELATIVE_TOLERANCE: f64 = 1e-6;
/// Differences listed in the proof (the counts are always complete).
const LISTED: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strength {
    PerMesh,
    Aggregate,
    /// `band`: the approved deviation in stage units; `meshes_may_drop`: a destructive op
    /// (one that removes geometry) was approved.
    Bounded {
        band: f64,
        meshes_may_drop: bool,
    },
}

impl Strength {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerMesh => "per_mesh",
            Self::Aggregate => "aggregate",
            Self::Bounded { .. } => "bounded",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MeshSignature {
    pub points: String,
    pub topology: String,
    pub triangles: u64,
    /// Distinct non-degenerate triangles: the surface that renders.
    pub surface: u64,
    pub material: String,
    pub bounds: Vec<f64>,
}

/// The geometry task's result and its streamed `meshes` table.
#[derive(Clone, Debug, Default)]
pub struct Signature {
    pub prims_with_proxies: u64,
    pub material_closure_prims: u64,
    /// Rendered meshes whose material binding targets a missing prim.
    pub dangling_bindings: u64,
    pub authored_prim_specs: u64,
    pub file_bytes: u64,
    pub meshes: BTreeMap<String, MeshSignature>,
    pub composition: Composition,
}

#[derive(Deserialize)]
struct Chunk {
    path: Vec<String>,
    points: Vec<String>,
    topology: Vec<String>,
    triangles: Vec<u64>,
    surface: Vec<u64>,
    material: Vec<String>,
    bounds: Vec<Vec<f64>>,
}

/// The executor's `geometry` task result, beside its streamed `meshes` table.
#[derive(Clone, Debug, Deserialize)]
pub struct GeometryResult {
    pub prim_count_with_instance_proxies: u64,
    /// Material networks a restructure copied into standalone prototypes.
    pub material_closure_prims: u64,
    #[serde(default)]
    pub dangling_bindings: u64,
    pub authored_prim_specs: u64,
    pub file_bytes: u64,
    pub composition: Composition,
}

/// The stage's composition errors (Pcp: arc cycles, unresolved arcs, invalid asset paths):
/// how many of each kind at each prim (`"<kind> <prim>"`), and the first ones in full.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Composition {
    pub count: u64,
    pub keys: BTreeMap<String, u64>,
    pub errors: Vec<CompositionError>,
    /// Unresolved arcs by target (`<kind> @asset@<prim>`, the asset as USD anchored it).
    #[serde(default)]
    pub unresolved: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompositionError {
    #[serde(rename = "type")]
    pub kind: String,
    pub prim: String,
    #[serde(default)]
    pub layer: String,
    #[serde(default)]
    pub message: String,
}

impl CompositionError {
    fn key(&self) -> String {
        format!("{} {}", self.kind, self.prim)
    }

    /// "<kind> at <prim> in <layer>", for run notes and errors.
    pub fn describe(&self) -> String {
        let at = if self.prim.is_empty() { "/" } else { &self.prim };
        if self.layer.is_empty() {
            format!("{} at {at}", self.kind)
        } else {
            format!("{} at {at} in {}", self.kind, self.layer)
        }
    }
}

impl Signature {
    pub fn from_task(result: &GeometryResult, chunks: &[String]) -> Result<Self, String> {
        let mut meshes = BTreeMap::new();
        for text in chunks {
            let chunk: Chunk = serde_json::from_str(text).map_err(|e| format!("geometry table chunk: {e}"))?;
            for (i, path) in chunk.path.into_iter().enumerate() {
                meshes.insert(
                    path,
                    MeshSignature {
                        points: chunk.points[i].clone(),
                        topology: chunk.topology[i].clone(),
                        triangles: chunk.triangles[i],
                        surface: chunk.surface[i],
                        material: chunk.material[i].clone(),
                        bounds: chunk.bounds[i].clone(),
                    },
                );
            }
        }
        Ok(Self {
            prims_with_proxies: result.prim_count_with_instance_proxies,
            material_closure_prims: result.material_closure_prims,
            dangling_bindings: result.dangling_bindings,
            authored_prim_specs: result.authored_prim_specs,
            file_bytes: result.file_bytes,
            meshes,
            composition: result.composition.clone(),
        })
    }

    /// Bounds of the meshes that have surface: a mesh of only zero-area faces renders nothing.
    fn world_bounds(&self) -> Option<[f64; 6]> {
        self.meshes.values().filter(|m| m.bounds.len() == 6 && m.surface > 0).fold(None, |acc, m| {
            let b = &m.bounds;
            Some(match acc {
                None => [b[0], b[1], b[2], b[3], b[4], b[5]],
                Some(a) => {
                    [a[0].min(b[0]), a[1].min(b[1]), a[2].min(b[2]), a[3].max(b[3]), a[4].max(b[4]), a[5].max(b[5])]
                }
            })
        })
    }

    fn meshes_with_surface(&self) -> usize {
        self.meshes.values().filter(|m| m.surface > 0).count()
    }

    fn surface_by_material(&self) -> BTreeMap<&str, u64> {
        let mut by = BTreeMap::new();
        for mesh in self.meshes.values() {
            *by.entry(mesh.material.as_str()).or_default() += mesh.surface;
        }
        by
    }
}

fn close(a: &[f64], b: &[f64], tolerance: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tolerance)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeforeAfter {
    pub before: u64,
    pub after: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimsWithProxies {
    pub before: u64,
    pub after: u64,
    pub material_closure_prims: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub path: String,
    pub difference: String,
}

/// The composition half of a proof: errors the after stage has that the before stage does
/// not (by kind and prim: the layers differ once content moved to new files).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompositionCheck {
    pub errors_before: u64,
    pub errors_after: u64,
    pub new_errors: u64,
    /// The first new ones, each with the layer its message names.
    pub new: Vec<CompositionError>,
    /// Distinct unresolved arc targets before and after: the prims holding them look empty,
    /// and an op that prunes them deletes content the source carries on purpose.
    #[serde(default)]
    pub unresolved_before: u64,
    #[serde(default)]
    pub unresolved_after: u64,
    /// Targets of the before stage the after stage no longer carries.
    #[serde(default)]
    pub unresolved_lost: Vec<String>,
    pub passed: bool,
}

/// Composition errors `after` has beyond `before`'s.
pub fn new_composition_errors(before: &Composition, after: &Composition) -> CompositionCheck {
    let mut new_errors = 0;
    let mut new_keys = Vec::new();
    for (key, count) in &after.keys {
        let extra = count.saturating_sub(before.keys.get(key).copied().unwrap_or(0));
        if extra > 0 {
            new_errors += extra;
            new_keys.push(key.as_str());
        }
    }
    let new: Vec<CompositionError> =
        after.errors.iter().filter(|e| new_keys.contains(&e.key().as_str())).take(LISTED).cloned().collect();
    // Compared as a set: deduplication may leave one copy of an arc that many prims held.
    let unresolved_lost: Vec<String> =
        before.unresolved.keys().filter(|k| !after.unresolved.contains_key(*k)).take(LISTED).cloned().collect();
    CompositionCheck {
        errors_before: before.count,
        errors_after: after.count,
        new_errors,
        new,
        unresolved_before: before.unresolved.len() as u64,
        unresolved_after: after.unresolved.len() as u64,
        passed: new_errors == 0 && unresolved_lost.is_empty(),
        unresolved_lost,
    }
}

impl CompositionCheck {
    pub fn summary(&self) -> String {
        if self.passed {
            return format!("composition: no new error ({} before, {} after)", self.errors_before, self.errors_after);
        }
        if let Some(lost) = self.unresolved_lost.first() {
            return format!(
                "composition: {} unresolved arc(s) of the source no longer carried (first: {lost}): content pruned",
                self.unresolved_lost.len()
            );
        }
        format!(
            "composition: {} new error(s){}",
            self.new_errors,
            self.new.first().map(|e| format!(" (first: {})", e.describe())).unwrap_or_default()
        )
    }
}

/// The proof record (schemas/preservation.schema.json).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proof {
    pub phase: String,
    /// per_mesh | aggregate | bounded
    pub strength: String,
    /// Geometry and composition both preserved.
    pub passed: bool,
    pub geometry_passed: bool,
    pub composition: CompositionCheck,
    pub tolerance: f64,
    pub tolerance_basis: String,
    /// The stages compared (set by the phase that measured them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    pub rendered_meshes: BeforeAfter,
    pub triangles: BeforeAfter,
    pub surface_triangles: BeforeAfter,
    pub triangles_by_material_preserved: bool,
    pub world_bounds_preserved: bool,
    pub prims_with_instance_proxies: PrimsWithProxies,
    pub authored_prim_specs: BeforeAfter,
    pub file_bytes: BeforeAfter,
    /// Rendered meshes whose material binding targets a missing prim.
    #[serde(default)]
    pub dangling_bindings: BeforeAfter,
    pub differing: usize,
    pub differences: Vec<Difference>,
}

/// Compare two signatures into the proof record.
pub fn prove(phase: &str, before: &Signature, after: &Signature, strength: Strength) -> Proof {
    let world = before.world_bounds();
    let diagonal =
        world.map_or(0.0, |b| ((b[3] - b[0]).powi(2) + (b[4] - b[1]).powi(2) + (b[5] - b[2]).powi(2)).sqrt());
    let tolerance = match strength {
        Strength::Bounded { band, .. } => band.max(RELATIVE_TOLERANCE * diagonal.max(1.0)),
        _ => RELATIVE_TOLERANCE * diagonal.max(1.0),
    };
    let mut differences: Vec<Difference> = Vec::new();
    let mut differing = 0usize;
    let mut note = |path: &str, what: String| {
        differing += 1;
        if differences.len() < LISTED {
            differences.push(Difference { path: path.to_string(), difference: what });
        }
    };
    let by_material_before = before.surface_by_material();
    let by_material_after = after.surface_by_material();
    let triangles_same = by_material_before == by_material_after;
    let bounds_same = match (world, after.world_bounds()) {
        (Some(a), Some(b)) => close(&a, &b, tolerance),
        (None, None) => true,
        _ => false,
    };
    let prims_after = after.prims_with_proxies - after.material_closure_prims;
    match strength {
        Strength::PerMesh => {
            for (path, was) in &before.meshes {
                match after.meshes.get(path) {
                    None => note(path, "missing after".into()),
                    Some(now) if now.points != was.points => note(path, "local points changed".into()),
                    Some(now) if now.topology != was.topology => note(path, "topology changed".into()),
                    Some(now) if now.material != was.material => {
                        note(path, format!("bound material {} → {}", was.material, now.material))
                    }
                    Some(now) if !close(&now.bounds, &was.bounds, tolerance) => {
                        note(path, "world-space bounds moved beyond tolerance".into())
                    }
                    Some(_) => {}
                }
            }
            for path in after.meshes.keys().filter(|p| !before.meshes.contains_key(*p)) {
                note(path, "new after".into());
            }
            if prims_after != before.prims_with_proxies {
                note(
                    "/",
                    format!("composed prims with instance proxies {} → {prims_after}", before.prims_with_proxies),
                );
            }
        }
        Strength::Bounded { meshes_may_drop, .. } => {
            if after.meshes.len() > before.meshes.len()
                || (!meshes_may_drop && after.meshes.len() < before.meshes.len())
            {
                note(
                    "/",
                    format!(
                        "rendered meshes {} → {} beyond what was approved",
                        before.meshes.len(),
                        after.meshes.len()
                    ),
                );
            }
            if !bounds_same {
                note("/", "world bounds moved beyond the approved band".into());
            }
        }
        Strength::Aggregate => {
            if before.meshes_with_surface() != after.meshes_with_surface() {
                note(
                    "/",
                    format!("meshes with surface {} → {}", before.meshes_with_surface(), after.meshes_with_surface()),
                );
            }
            if !triangles_same {
                note("/", "surface triangles per bound material changed".into());
            }
            if !bounds_same {
                note("/", "world bounds moved beyond tolerance".into());
            }
        }
    }
    let geometry_passed = differing == 0;
    let composition = new_composition_errors(&before.composition, &after.composition);
    let sum = |s: &Signature| s.meshes.values().map(|m| m.triangles).sum::<u64>();
    let surface = |s: &Signature| s.meshes.values().map(|m| m.surface).sum::<u64>();
    let pair = |before: u64, after: u64| BeforeAfter { before, after };
    Proof {
        phase: phase.to_string(),
        strength: strength.as_str().to_string(),
        passed: geometry_passed && composition.passed,
        geometry_passed,
        composition,
        tolerance,
        tolerance_basis: format!(
            "{RELATIVE_TOLERANCE:e} × scene bounds diagonal ({diagonal:.4} stage units), at least {RELATIVE_TOLERANCE:e}"
        ),
        before: None,
        after: None,
        rendered_meshes: pair(before.meshes.len() as u64, after.meshes.len() as u64),
        triangles: pair(sum(before), sum(after)),
        surface_triangles: pair(surface(before), surface(after)),
        triangles_by_material_preserved: triangles_same,
        world_bounds_preserved: bounds_same,
        prims_with_instance_proxies: PrimsWithProxies {
            before: before.prims_with_proxies,
            after: after.prims_with_proxies,
            material_closure_prims: after.material_closure_prims,
        },
        authored_prim_specs: pair(before.authored_prim_specs, after.authored_prim_specs),
        file_bytes: pair(before.file_bytes, after.file_bytes),
        dangling_bindings: pair(before.dangling_bindings, after.dangling_bindings),
        differing,
        differences,
    }
}

/// How strictly Phase 4d holds a chain's output: a lossless chain may weld or re-index, so
/// it is held to the aggregate proof; a chain with approved lossy ops to the approved band
/// (the largest `maxMeanError` approved), with meshes allowed to drop only when a
/// destructive op was approved.
pub fn strength_for_chain(ops: &[(&str, Option<f64>)]) -> Strength {
    // (safety class as the plan writes it, the op's maxMeanError argument)
    if ops.iter().all(|(safety, _)| *safety == "lossless") {
        return Strength::Aggregate;
    }
    Strength::Bounded {
        band: ops.iter().filter_map(|(_, band)| *band).fold(0.0, f64::max),
        meshes_may_drop: ops.iter().any(|(safety, _)| *safety == "destructive"),
    }
}

impl Proof {
    /// One line for run notes and errors.
    pub fn summary(&self) -> String {
        let first: Vec<String> =
            self.differences.iter().take(3).map(|d| format!("{} ({})", d.path, d.difference)).collect();
        format!(
            "{} proof {}: {} rendered meshes, {} differences{}; {}",
            self.strength,
            if self.passed { "passed" } else { "FAILED" },
            self.rendered_meshes.after,
            self.differing,
            if first.is_empty() { String::new() } else { format!(" (first: {})", first.join("; ")) },
            self.composition.summary(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(meshes: &[(&str, &str, f64)]) -> Signature {
        Signature {
            prims_with_proxies: 10,
            dangling_bindings: 0,
            meshes: meshes
                .iter()
                .map(|(path, points, x)| {
                    (
                        path.to_string(),
                        MeshSignature {
                            points: points.to_string(),
                            topology: "t".into(),
                            triangles: 12,
                            surface: 12,
                            material: "M#1".into(),
                            bounds: vec![*x, 0.0, 0.0, x + 1.0, 1.0, 1.0],
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn identical_geometry_passes_both_strengths() {
        let a = signature(&[("/W/A/m", "p1", 0.0), ("/W/B/m", "p1", 5.0)]);
        for strength in [Strength::PerMesh, Strength::Aggregate] {
            assert!(prove("x", &a, &a.clone(), strength).passed);
        }
    }

    #[test]
    fn a_moved_copy_fails_per_mesh_but_not_aggregate_when_bounds_hold() {
        let before = signature(&[("/W/A/m", "p1", 0.0), ("/W/B/m", "p1", 5.0), ("/W/C/m", "p1", 2.0)]);
        let after = signature(&[("/W/A/m", "p1", 0.0), ("/W/B/m", "p1", 5.0), ("/W/C/m", "p1", 3.0)]);
        let proof = prove("apply-restructure", &before, &after, Strength::PerMesh);
        assert!(!proof.passed);
        assert_eq!(proof.differences[0].path, "/W/C/m");
        assert!(proof.summary().contains("FAILED"));
        assert!(prove("x", &before, &after, Strength::Aggregate).passed);
    }

    #[test]
    fn an_approved_loss_is_measured_and_bounded() {
        let before = signature(&[("/W/A/m", "p1", 0.0), ("/W/B/m", "p1", 5.0)]);
        let mut after = before.clone();
        after.meshes.values_mut().for_each(|m| {
            m.triangles = 6;
            m.surface = 6;
            m.points = "decimated".into();
        });
        let bounded = Strength::Bounded { band: 0.01, meshes_may_drop: false };
        let proof = prove("so-run-operations", &before, &after, bounded);
        assert!(proof.passed);
        assert_eq!(proof.triangles, BeforeAfter { before: 24, after: 12 });
        after.meshes.remove("/W/B/m");
        assert!(!prove("x", &before, &after, bounded).passed);
        assert!(
            !prove("x", &before, &after, Strength::Bounded { band: 0.01, meshes_may_drop: true }).passed,
            "dropping a mesh moved the world bounds beyond the band"
        );
    }

    #[test]
    fn dropping_degenerate_or_duplicate_faces_keeps_the_surface() {
        let before = signature(&[("/W/A/m", "p1", 0.0)]);
        let mut after = before.clone();
        after.meshes.values_mut().for_each(|m| {
            m.triangles = 10;
            m.topology = "cleaned".into();
        });
        let proof = prove("so-run-operations", &before, &after, Strength::Aggregate);
        assert!(proof.passed, "raw triangles 12 → 10, surface 12 → 12");
        // A mesh of only zero-area faces renders nothing: cleaning it away loses no surface.
        let mut with_empty = before.clone();
        with_empty.meshes.insert(
            "/W/Empty/m".into(),
            MeshSignature { surface: 0, triangles: 4, bounds: vec![50.0; 6], ..before.meshes["/W/A/m"].clone() },
        );
        assert!(prove("x", &with_empty, &after, Strength::Aggregate).passed);
        after.meshes.values_mut().for_each(|m| m.surface = 10);
        assert!(!prove("x", &before, &after, Strength::Aggregate).passed);
    }

    #[test]
    fn lost_meshes_or_prims_fail() {
        let before = signature(&[("/W/A/m", "p1", 0.0), ("/W/B/m", "p1", 5.0)]);
        let mut after = signature(&[("/W/A/m", "p1", 0.0)]);
        assert!(!prove("x", &before, &after, Strength::Aggregate).passed);
        after = before.clone();
        after.prims_with_proxies = 12;
        assert!(!prove("x", &before, &after, Strength::PerMesh).passed);
        after.material_closure_prims = 2; // copied material networks are counted apart
        assert!(prove("x", &before, &after, Strength::PerMesh).passed);
    }

    #[test]
    fn a_new_composition_error_fails_the_proof_and_an_old_one_does_not() {
        let error = |kind: &str, prim: &str| CompositionError {
            kind: kind.into(),
            prim: prim.into(),
            layer: "/out/library.usdc".into(),
            message: String::new(),
        };
        let composed = |errors: Vec<CompositionError>| Composition {
            count: errors.len() as u64,
            keys: errors.iter().fold(BTreeMap::new(), |mut keys, e| {
                *keys.entry(e.key()).or_default() += 1;
                keys
            }),
            errors,
            unresolved: BTreeMap::new(),
        };
        let mut before = signature(&[("/W/A/m", "p1", 0.0)]);
        before.composition = composed(vec![error("InvalidAssetPath", "/W/Missing")]);
        let mut after = before.clone();
        assert!(prove("x", &before, &after, Strength::PerMesh).passed, "the source's own error is not new");
        after.composition = composed(vec![error("InvalidAssetPath", "/W/Missing"), error("ArcCycle", "/Lib/Door")]);
        let proof = prove("x", &before, &after, Strength::PerMesh);
        assert!(proof.geometry_passed && !proof.passed);
        assert_eq!(proof.composition.new_errors, 1);
        assert!(proof.summary().contains("ArcCycle at /Lib/Door in /out/library.usdc"), "{}", proof.summary());
    }

    #[test]
    fn an_unresolved_arc_the_output_no_longer_carries_fails_the_proof() {
        let mut before = signature(&[("/W/A/m", "p1", 0.0)]);
        let target = "InvalidAssetPath @/src/missing.usda@".to_string();
        before.composition.unresolved = BTreeMap::from([(target.clone(), 3)]);
        let mut after = before.clone();
        after.composition.unresolved.insert(target.clone(), 1);
        assert!(prove("x", &before, &after, Strength::PerMesh).passed, "deduplicated copies keep the arc once");
        after.composition.unresolved.clear();
        let proof = prove("x", &before, &after, Strength::PerMesh);
        assert!(proof.geometry_passed && !proof.passed);
        assert_eq!(proof.composition.unresolved_lost, [target]);
        assert!(proof.summary().contains("unresolved arc(s) of the source no longer carried"), "{}", proof.summary());
    }
}
