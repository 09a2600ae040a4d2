//! Phase 4 targets (apply-restructure-manifest `phase4_targets[]`, batch-mode.md): which
//! files the op chain runs on, in which dependency group, where each output goes, and what
//! became of each target. Plain functions over the restructure plan and what the executor
//! wrote; the workflow carries them out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::batch;
use super::restructure::RestructurePlan;
use crate::outcome::Outcome;

/// One file the restructure wrote (the executor's `restructure` task result, `outputs[]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WrittenOutput {
    pub path: String,
    /// prototype | shared_layer | loadable_subasset | new_root
    pub kind: String,
    pub provenance: String,
    pub size_bytes: u64,
    /// pass | fail: the file opens on its own without composition errors.
    pub validate_usd_minimum: String,
    #[serde(default)]
    pub notes: String,
    /// Meshes a default walk reaches with the file opened on its own, payloads unloaded.
    pub mesh_count: u64,
    /// Shared layers the root sublayers (targets of their own).
    #[serde(default)]
    pub mute_layers: Vec<String>,
    /// Internal mode: meshes in the root's abstract prototype namespace.
    #[serde(default)]
    pub prototype_namespace_meshes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightHints {
    pub size_bytes: u64,
    pub mesh_count: u64,
}

/// One Phase 4 target (upstream apply-restructure-manifest `phase4_targets[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase4Target {
    pub path: String,
    /// prototype | shared_layer | loadable_subasset | assembly_root | monolith (the stage itself)
    pub target_class: String,
    pub mesh_count: u64,
    /// shared_first | independent | dependent_after
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_disposition: Option<String>,
    /// What set the grain of a shared target: kind | naming | structural_fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_count: Option<usize>,
    /// An abstract class namespace holding prototypes: de-classed for the chain, restored after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declass_namespace: Option<String>,
    /// Meshes in that namespace: the chain reaches them de-classed, though `mesh_count` (the
    /// default-predicate count of the target opened on its own) does not see them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declassed_mesh_count: Option<u64>,
    /// false: optimized with payloads unloaded (they are targets of their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_payloads: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_layers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_hints: Option<WeightHints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl Phase4Target {
    /// Meshes the chain reaches: the target's own, plus its de-classed prototypes'.
    pub fn reachable_meshes(&self) -> u64 {
        self.mesh_count + self.declassed_mesh_count.unwrap_or(0)
    }

    /// The stage itself, when nothing was restructured (N=1).
    pub fn monolith(path: &str, mesh_count: u64) -> Self {
        Self::new(path, "monolith", mesh_count, None)
    }

    fn new(path: &str, class: &str, mesh_count: u64, group: Option<&str>) -> Self {
        Self {
            path: path.to_string(),
            target_class: class.to_string(),
            mesh_count,
            dependency_group: group.map(String::from),
            source: None,
            identity_disposition: None,
            identity_signal: None,
            copy_count: None,
            declass_namespace: None,
            declassed_mesh_count: None,
            load_payloads: None,
            mute_layers: None,
            weight_hints: None,
            notes: None,
        }
    }

    pub fn group_rank(&self) -> u8 {
        batch::group_rank(self.dependency_group.as_deref())
    }
}

/// The Phase 4 targets of a restructure: every prototype, shared layer and sub-asset it
/// wrote, then the assembly root whenever it keeps meshes (residual ones, or in internal
/// mode the prototypes in its class namespace, which the chain reaches once de-classed).
pub fn from_restructure(plan: &RestructurePlan, outputs: &[WrittenOutput], source_stage: &str) -> Vec<Phase4Target> {
    let copies = |name: &str| plan.sites.iter().filter(|s| s.prototype == name).count();
    let weight = |o: &WrittenOutput| Some(WeightHints { size_bytes: o.size_bytes, mesh_count: o.mesh_count });
    let mut targets = Vec::new();
    for output in outputs {
        let target = match output.kind.as_str() {
            "prototype" => {
                let name = Path::new(&output.path).file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let proto = plan.prototypes.iter().find(|p| p.name == name);
                Phase4Target {
                    source: Some(proto.map_or(String::new(), |p| format!("{} ({})", p.source, p.group))),
                    identity_disposition: Some("externalize_shared".into()),
                    identity_signal: Some(
                        proto.map_or_else(|| "structural_fallback".into(), |p| p.identity_signal.clone()),
                    ),
                    copy_count: Some(copies(name).max(1)),
                    weight_hints: weight(output),
                    ..Phase4Target::new(&output.path, "prototype", output.mesh_count, Some("shared_first"))
                }
            }
            "shared_layer" => Phase4Target {
                source: Some(output.provenance.clone()),
                identity_disposition: Some("externalize_shared".into()),
                identity_signal: Some(common_signal(plan.prototypes.iter().filter(|p| p.in_place))),
                notes: Some(
                    "the scope holding prototypes the sites already referenced, with the materials it binds".into(),
                ),
                weight_hints: weight(output),
                ..Phase4Target::new(&output.path, "shared_layer", output.mesh_count, Some("shared_first"))
            },
            "loadable_subasset" => Phase4Target {
                source: Some(output.provenance.clone()),
                identity_disposition: Some("keep_local".into()),
                weight_hints: weight(output),
                ..Phase4Target::new(&output.path, "loadable_subasset", output.mesh_count, Some("independent"))
            },
            _ => continue,
        };
        targets.push(target);
    }
    let Some(root) = outputs.iter().find(|o| o.kind == "new_root") else { return targets };
    let residual = root.mesh_count;
    let namespace_meshes = root.prototype_namespace_meshes.unwrap_or(0);
    if residual + namespace_meshes > 0 {
        let mut target = Phase4Target {
            source: Some(source_stage.to_string()),
            load_payloads: Some(false),
            mute_layers: Some(root.mute_layers.clone()),
            weight_hints: Some(WeightHints { size_bytes: root.size_bytes, mesh_count: residual }),
            ..Phase4Target::new(&root.path, "assembly_root", residual, Some("dependent_after"))
        };
        if namespace_meshes > 0 {
            target.identity_disposition = Some("internal_share".into());
            target.identity_signal = Some(common_signal(plan.prototypes.iter().filter(|p| !p.in_place)));
            target.declass_namespace = Some(plan.namespace.to_string());
            target.declassed_mesh_count = Some(namespace_meshes);
            target.notes = Some(format!(
                "{residual} meshes outside the prototypes, {namespace_meshes} in the class namespace {}",
                plan.namespace
            ));
        }
        targets.push(target);
    }
    targets
}

/// The identity signal of a target holding several prototypes: the one most of them carry
/// (structural_fallback when they hold none).
fn common_signal<'a>(prototypes: impl Iterator<Item = &'a crate::decisions::restructure::PlannedPrototype>) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in prototypes {
        *counts.entry(p.identity_signal.as_str()).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map_or_else(|| "structural_fallback".into(), |(s, _)| s.to_string())
}

/// A file a composed stage references (stage facts `referenced_layers`).
#[derive(Clone, Debug, Deserialize)]
pub struct ReferencedLayer {
    pub path: String,
    /// It composes no file of its own.
    pub leaf: bool,
    /// Meshes a target sees in it, opened on its own (default predicate).
    pub mesh_count: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReferencedLayers {
    pub layers: Vec<ReferencedLayer>,
    /// Mesh prims the root layer stack defines itself.
    pub root_stack_mesh_specs: u64,
}

/// A composed stage's Phase 4 targets: each referenced file that defines meshes (batch-mode.md:
/// "composed stages with no restructure: referenced sub-assets"), optimized on its own, the
/// layers above it remapped to the outputs (Phase 5). Run on the root as one target instead,
/// every op's edit to a referenced mesh lands as an override in the root layer: measured on a
/// generated 300-object set, bytes 1.7× and open 1.8× slower.
///
/// Only where the targets hold every mesh: each is a leaf (composes no file of its own, so
/// optimizing it alone sees what the stage sees) and the root layer stack defines none; and,
/// for now, only on stages composed by references alone (payloads and variant selections stay
/// one target until they are tested on this route). Otherwise None: the stage is one target.
pub fn composed_targets(layers: &ReferencedLayers, payloads: u64, variant_sets: u64) -> Option<Vec<Phase4Target>> {
    let with_meshes: Vec<&ReferencedLayer> = layers.layers.iter().filter(|l| l.mesh_count > 0).collect();
    let covers_every_mesh = layers.root_stack_mesh_specs == 0 && with_meshes.iter().all(|l| l.leaf);
    if with_meshes.is_empty() || !covers_every_mesh || payloads > 0 || variant_sets > 0 {
        return None;
    }
    let target = |l: &&ReferencedLayer| Phase4Target::new(&l.path, "shared_layer", l.mesh_count, Some("shared_first"));
    Some(with_meshes.iter().map(target).collect())
}

/// Prototype-first: shared targets, then independent ones, then the assemblies above them.
pub fn in_dependency_order(mut targets: Vec<Phase4Target>) -> Vec<Phase4Target> {
    targets.sort_by_key(Phase4Target::group_rank);
    targets
}

/// `<outdir>/<stem>.optimized.<ext>`: never the source path (a usdz target is written as usdc).
pub fn optimized_output_path(stage: &str, output_dir: &Path) -> PathBuf {
    let source = Path::new(stage);
    let stem = source.file_stem().and_then(|s| s.to_str()).unwrap_or("stage");
    let ext = source.extension().and_then(|s| s.to_str()).filter(|e| *e != "usdz").unwrap_or("usdc");
    output_dir.join(format!("{stem}.optimized.{ext}"))
}

/// Each target's output in `dir`: `<stem>.optimized.<ext>`, and where two targets share a
/// file name (`Body.usd` in two folders), `<stem>.<path tag>.optimized.<ext>` for each of them.
pub fn output_paths<'a>(paths: impl Iterator<Item = &'a str> + Clone, dir: &Path) -> Vec<PathBuf> {
    let plain: Vec<PathBuf> = paths.clone().map(|p| optimized_output_path(p, dir)).collect();
    // Counted once: comparing every output with every other took 327 s over the 58,823
    // asset files of a 1M-prim composed set.
    let mut uses: HashMap<&PathBuf, usize> = HashMap::with_capacity(plain.len());
    for output in &plain {
        *uses.entry(output).or_default() += 1;
    }
    paths
        .zip(&plain)
        .map(|(path, output)| {
            if uses[output] == 1 {
                return output.clone();
            }
            let name = output.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let (stem, rest) = name.split_once(".optimized.").unwrap_or((name, "usdc"));
            output.with_file_name(format!("{stem}.{}.optimized.{rest}", batch::path_tag(path)))
        })
        .collect()
}

/// What became of a target for Phase 4 coverage (operations-status `targets[].coverage`; the
/// report maps it onto the upstream coverage enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Optimized,
    /// The chain ran and changed nothing: no output was written.
    Unchanged,
    SkippedZeroMeshes,
    SkippedUserDeclined,
    Blocked,
}

/// A target's disposition before anything runs, with the reason when it will not run: a
/// target without meshes has nothing for a chain of mesh-only ops; an empty chain runs on
/// nothing.
pub fn initial_disposition(target: &Phase4Target, operations: &[&str]) -> (Disposition, Option<&'static str>) {
    if target.reachable_meshes() == 0 && operations.iter().all(|op| super::op_chain::is_mesh_only(op)) {
        (Disposition::SkippedZeroMeshes, Some("no mesh reachable with the target opened standalone"))
    } else if operations.is_empty() {
        (Disposition::SkippedUserDeclined, Some("evidence selected no operation"))
    } else {
        (Disposition::Optimized, None)
    }
}

/// Failures of one target that are failures of the chain itself: every other target would
/// fail the same way, so the run stops instead of blocking targets one by one.
pub fn is_chain_failure(code: &str) -> bool {
    use Outcome::*;
    [BlockedMissingUsdOptimize, BlockedMissingUsdOptimizeOperation, UnknownOperationArgument]
        .iter()
        .any(|o| o.code() == code)
}

/// Why a target whose chain ran is blocked after all: its output composes with errors its
/// source did not have (each named with its prim and layer). None: it stays optimized.
pub fn blocked_by_reverify(new_composition_errors: u64, errors: &[String]) -> Option<(Outcome, String)> {
    (new_composition_errors > 0).then(|| {
        (
            Outcome::CompositionErrorIntroduced,
            format!("the output composes with {new_composition_errors} new error(s): {}", errors.join("; ")),
        )
    })
}

/// The whole is assembled and proven only when every target that had work came through.
pub fn assemble(dispositions: &[Disposition]) -> bool {
    !dispositions.contains(&Disposition::Blocked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::restructure::{Mode, PlannedPrototype};

    #[test]
    fn same_named_targets_get_outputs_of_their_own() {
        let paths = ["/f/a/Body.usd", "/f/b/Body.usd", "/f/Frame.usdc"];
        let outputs = output_paths(paths.iter().copied(), Path::new("/out"));
        assert_eq!(outputs[2], PathBuf::from("/out/Frame.optimized.usdc"));
        assert_ne!(outputs[0], outputs[1]);
        let name = outputs[0].file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("Body.") && name.ends_with(".optimized.usd"), "{name}");
        assert_eq!(optimized_output_path("/a/b.usdz", Path::new("/o")), PathBuf::from("/o/b.optimized.usdc"));
    }

    fn output(path: &str, kind: &str, meshes: u64) -> WrittenOutput {
        WrittenOutput {
            path: path.into(),
            kind: kind.into(),
            provenance: "/W/A".into(),
            size_bytes: 10,
            validate_usd_minimum: "pass".into(),
            notes: String::new(),
            mesh_count: meshes,
            mute_layers: vec![],
            prototype_namespace_meshes: None,
        }
    }

    fn plan() -> RestructurePlan {
        RestructurePlan {
            mode: Mode::ExternalPrototype,
            namespace: "/__usdtune_prototypes",
            prototypes: vec![PlannedPrototype {
                name: "A_g001".into(),
                group: "g001".into(),
                source: "/W/A".into(),
                in_place: false,
                identity_signal: "kind".into(),
            }],
            sites: vec![],
            subassets: vec![],
            flips: vec![],
            readiness: vec![],
            skipped: vec![],
        }
    }

    #[test]
    fn prototypes_come_first_and_a_root_without_meshes_is_no_target() {
        let outputs = [output("/o/r.usdc", "new_root", 0), output("/o/prototypes/A_g001.usdc", "prototype", 4)];
        let targets = from_restructure(&plan(), &outputs, "/s.usda");
        assert_eq!(targets.len(), 1);
        assert_eq!((targets[0].target_class.as_str(), targets[0].copy_count), ("prototype", Some(1)));
        assert_eq!(targets[0].source.as_deref(), Some("/W/A (g001)"));
        let outputs = [output("/o/r.usdc", "new_root", 3), output("/o/prototypes/A_g001.usdc", "prototype", 4)];
        let targets = in_dependency_order(from_restructure(&plan(), &outputs, "/s.usda"));
        assert_eq!(targets.iter().map(|t| t.target_class.as_str()).collect::<Vec<_>>(), ["prototype", "assembly_root"]);
        assert_eq!(targets[1].load_payloads, Some(false));
    }

    #[test]
    fn dispositions_before_and_after_the_chain() {
        let empty = Phase4Target::monolith("/s.usda", 0);
        assert_eq!(initial_disposition(&empty, &["meshCleanup"]).0, Disposition::SkippedZeroMeshes);
        assert_eq!(initial_disposition(&empty, &["optimizeTimeSamples"]).0, Disposition::Optimized, "not mesh-only");
        let full = Phase4Target::monolith("/s.usda", 5);
        assert_eq!(initial_disposition(&full, &[]).0, Disposition::SkippedUserDeclined);
        assert!(blocked_by_reverify(0, &[]).is_none());
        let (code, why) = blocked_by_reverify(1, &["ArcCycle at /Lib/Door (layer /o/lib.usdc): Cycle".into()]).unwrap();
        assert_eq!(code, Outcome::CompositionErrorIntroduced);
        assert!(why.contains("1 new error(s)") && why.contains("/Lib/Door"), "{why}");
        assert!(is_chain_failure(Outcome::UnknownOperationArgument.code()));
        assert!(!is_chain_failure(Outcome::OperationFailed.code()));
        assert!(!assemble(&[Disposition::Optimized, Disposition::Blocked]));
    }

    #[test]
    fn a_composed_stage_is_optimized_file_by_file_only_when_its_files_hold_every_mesh() {
        let layer = |path: &str, leaf, mesh_count| ReferencedLayer { path: path.into(), leaf, mesh_count };
        let mut layers = ReferencedLayers {
            layers: vec![
                layer("/a/Chair.usda", true, 3),
                layer("/a/Look.usda", true, 0),
                layer("/a/Lamp.usda", true, 2),
            ],
            root_stack_mesh_specs: 0,
        };
        let targets = composed_targets(&layers, 0, 0).unwrap();
        let paths: Vec<_> = targets.iter().map(|t| (t.path.as_str(), t.target_class.as_str(), t.mesh_count)).collect();
        assert_eq!(paths, [("/a/Chair.usda", "shared_layer", 3), ("/a/Lamp.usda", "shared_layer", 2)]);
        assert!(composed_targets(&layers, 1, 0).is_none(), "payloads: one target for now");
        layers.root_stack_mesh_specs = 1;
        assert!(composed_targets(&layers, 0, 0).is_none(), "the root defines a mesh of its own");
        layers.root_stack_mesh_specs = 0;
        layers.layers[0].leaf = false;
        assert!(composed_targets(&layers, 0, 0).is_none(), "a file holding meshes composes another");
    }
}
