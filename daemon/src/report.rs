//! Artifact builders that are pure reshaping of executor results, and the final
//! optimization report with its Markdown rendering. The report is built only from the
//! run's stored artifacts, so it can be rebuilt from a workspace at any time.

use serde_json::{json, Value};

use crate::decisions::compare::fmt_num;
use crate::decisions::score::{self, MetricGroup};
use crate::run::{now_rfc3339, RunRecord};
use crate::store::{StoreError, Workspace};

// ------------------------------------------------------------------ Phase 0

/// setup-preflight.json from the executor's probe plus the daemon's host facts.
pub fn preflight(probe: &Value, host: Value) -> Value {
    let so_version = probe["usd_optimize_version"].as_str().filter(|v| !v.is_empty());
    let av_version = probe["usd_validation_nvidia_version"].as_str().filter(|v| !v.is_empty());
    let usd_optimize = so_version.map(|v| {
        json!({
            "extension": "usd-optimize", "version": v,
            "operationsAvailable": probe["operations_available"], "source": "standalone-package",
        })
    });
    let asset_validator =
        av_version.map(|v| json!({"package": "usd-validation-nvidia", "version": v, "source": "pip"}));
    let runtime = probe["runtime"].as_str().unwrap_or("standalone");
    let kit = probe.get("kit").cloned().unwrap_or(Value::Null);
    let cuda = host["gpus"].as_array().map(|g| !g.is_empty());
    json!({
        "schemaVersion": "1.0",
        "runtime_route": runtime,
        "kit": kit,
        "cuda_available": cuda,
        "usdOptimize": usd_optimize,
        "assetValidator": asset_validator,
        "runtime_context": {
            "kit": kit,
            "usdOptimize": so_version.map(|v| json!({"extension": "usd-optimize", "version": v})),
            "assetValidator": asset_validator,
            "cuda_available": cuda,
        },
        "probed_at": probe["probed_at"],
        "executor_id": probe.get("executor_id").cloned().unwrap_or_else(|| json!("")),
        "python": {"version": probe["python_version"], "executable": probe["python_executable"]},
        "usd": {"version": probe["usd_version"], "usd_exchange_version": probe["usd_exchange_version"]},
        "host": host,
    })
}

// ------------------------------------------------------------------ the report

fn read_opt(ws: &Workspace, name: &str) -> Result<Option<Value>, StoreError> {
    if ws.has_artifact(name) {
        ws.read_artifact(name).map(Some)
    } else {
        Ok(None)
    }
}

/// The report's preservation block (upstream shape) from the run's proofs: the restructure's
/// (per mesh) and the mesh operations' (aggregate). None when no phase wrote one.
pub fn preservation(proofs: &[Value]) -> Option<Value> {
    let last = proofs.last()?;
    let all = |key: &str| proofs.iter().all(|p| p[key] != false);
    Some(json!({
        "rendered_mesh_count": last["rendered_meshes"]["after"],
        "distinct_geometry_bytes_preserved": all("passed"),
        "bounds_preserved": all("world_bounds_preserved"),
        "dangling": 0,
        "triangles_before": proofs[0]["triangles"]["before"], "triangles_after": last["triangles"]["after"],
        "triangles_by_material_preserved": all("triangles_by_material_preserved"),
        "tolerance": last["tolerance"],
        "passed": all("passed"),
        "notes": proofs.iter().map(|p| format!("{}: {}", p["phase"].as_str().unwrap_or(""), crate::decisions::preservation::summary(p)))
            .collect::<Vec<_>>().join("; "),
    }))
}

/// What the assessment found, in the report's words: class, reasons, the frontier's top
/// groups and the containment pairs scoped for the occlusion probe.
fn structure_summary(assessment: &Value, candidates: Option<&Value>) -> Value {
    let groups: Vec<Value> = candidates
        .and_then(|c| c["groups"].as_array())
        .into_iter()
        .flatten()
        .filter(|g| g["selected"] == true)
        .take(10)
        .map(|g| json!({
            "path_pattern": g["path_pattern"], "copies": g["copies"], "subtree_prims": g["subtree_prims"],
            "estimated_prim_savings": g["estimated_prim_savings"], "readiness": g["readiness"], "content_flags": g["content_flags"],
        }))
        .collect();
    json!({
        "classification": assessment["classification"]["kind"],
        "reasons": assessment["classification"]["reasons"],
        "hierarchy_dedupe": assessment["hierarchy_dedupe"]["reason"],
        "total_prim_savings": candidates.map_or(Value::Null, |c| c["total_prim_savings"].clone()),
        "top_groups": groups,
        "containment_pairs": assessment["validation_scope"]["cross_component_pairs"].as_array().map_or(0, |p| p.len()),
        "kind_trusted": assessment["kind_hierarchy"]["trust"]["trusted"],
    })
}

/// optimization-report.json, from the run's artifacts.
pub fn build(ws: &Workspace, run: &RunRecord) -> Result<Value, StoreError> {
    let preflight = read_opt(ws, "setup-preflight")?.unwrap_or(Value::Null);
    let baseline = read_opt(ws, "profile-baseline")?;
    let after = read_opt(ws, "profile-after")?;
    let comparison = read_opt(ws, "compare-profiles")?;
    let assessment = read_opt(ws, "structure-assessment")?.unwrap_or(Value::Null);
    let status = read_opt(ws, "operations-status")?;
    let plan = read_opt(ws, "operation-plan")?;
    let decision = read_opt(ws, "restructure-decision")?;
    let so_available = run.route.so_available != Some(false);
    let branch = run.route.restructure_branch.clone().unwrap_or_default();

    let workflow_mode = if !so_available {
        "structural_only"
    } else if run.route.phase_recommendation.as_deref() == Some("already_optimized") || branch == "exit" {
        "no_op"
    } else {
        "full"
    };
    let verdict = comparison.as_ref().and_then(|c| c["verdict"].as_str()).unwrap_or("neutral").to_string();

    // Metrics: the profile comparison rows, in report shape.
    let category = |name: &str| match name {
        "cold_open_ms" | "warm_open_ms" => "load_time",
        "total_size_bytes" => "storage_proxy",
        "prim_count" | "prim_count_authored" | "layer_count" => "composition",
        _ => "structure_proxy",
    };
    let metrics: Vec<Value> = comparison
        .as_ref()
        .and_then(|c| c["metrics"].as_array())
        .into_iter()
        .flatten()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default();
            let mut row = json!({
                "name": name, "category": category(name), "direction": "lower_is_better",
                "evidence_type": if category(name) == "load_time" { "direct" } else { "proxy" },
                "unit": if name.ends_with("_ms") { "ms" } else if name.ends_with("_bytes") { "bytes" } else { "count" },
                "before": m["before"], "after": m["after"], "change_pct": m["change_pct"], "verdict": m["verdict"],
            });
            if let Some(notes) = m["notes"].as_str() {
                row["notes"] = json!(notes);
            }
            row
        })
        .collect();
    let metric_change = |name: &str| metrics.iter().find(|m| m["name"] == name).and_then(|m| m["change_pct"].as_f64());
    let mut groups = Vec::new();
    for (id, display, metric, weight) in [
        ("load_time", "Load time", "warm_open_ms", 3.0),
        ("composition", "Composition", "prim_count_authored", 2.0),
        ("storage_proxy", "Storage", "total_size_bytes", 1.0),
    ] {
        let change = metric_change(metric);
        groups.push(MetricGroup {
            id,
            display_name: display,
            score: change.map(score::group_score),
            status: if change.is_some() { "measured" } else { "not_measured" },
            weight,
            summary: change.map(|c| format!("{metric} {c:+.1}%")).unwrap_or_else(|| "not measured in this run".into()),
        });
    }
    let optimization_score = score::overall(&groups);

    let mut operations = Vec::new();
    let mut coverage_entries = Vec::new();
    for target in status.as_ref().and_then(|s| s["targets"].as_array()).into_iter().flatten() {
        for op in target["operations"].as_array().into_iter().flatten() {
            operations.push(json!({
                "order": operations.len() + 1,
                "name": op["operation"],
                "method": format!("usd-optimize {} {}", op["operation"].as_str().unwrap_or(""), op["args"]),
                "result": if op["ok"] == true { format!("ok in {} s", op["seconds"]) } else { format!("failed: {}", op["error"].as_str().unwrap_or("")) },
            }));
        }
        coverage_entries.push(json!({
            "path": target["path"], "role": target["role"], "mesh_count": target["mesh_count"],
            "disposition": target["disposition"],
            "notes": target["reason"].as_str().unwrap_or(""),
        }));
    }
    let complete = coverage_entries.iter().all(|e| e["disposition"] != "blocked");

    // One line per validation report, then one per concept that found something.
    let mut validators = Vec::new();
    for name in
        ["validation-report", "validation-report-targets", "validation-report-targets-after", "validation-report-after"]
    {
        let Some(v) = read_opt(ws, name)? else { continue };
        let ledger = v["coverage_ledger"]["entries"].as_array().map_or(0, |e| e.len());
        validators.push(json!({
            "name": format!("{name} ({})", v["phase"].as_str().unwrap_or("")),
            "issues": v["findings"].as_array().map_or(0, |f| f.len()),
            "notes": format!("status {}, {ledger} (target, concept) pairs in the coverage ledger, complete {}, wall {} s",
                             v["summary"]["status"].as_str().unwrap_or(""), v["coverage_ledger"]["complete"], v["runtime_context"]["wall_seconds"]),
        }));
        for finding in v["findings"].as_array().into_iter().flatten() {
            validators.push(json!({
                "name": format!("{} ({name})", finding["concept"].as_str().unwrap_or("")),
                "issues": finding["site_count"],
                "notes": format!("{}; addressed by {}", finding["message"].as_str().unwrap_or(""),
                                 Some(finding["op_family"].as_str().unwrap_or("")).filter(|o| !o.is_empty()).unwrap_or("no operation")),
            }));
        }
    }

    let classification = assessment["classification"]["kind"].as_str().unwrap_or("unknown");
    let chain: Vec<String> = plan
        .as_ref()
        .and_then(|p| p["operations"].as_array())
        .into_iter()
        .flatten()
        .map(|o| format!("{} ({})", o["operation"].as_str().unwrap_or(""), o["evidence"].as_str().unwrap_or("")))
        .collect();
    let reasoning = format!(
        "The stage was assessed as {classification} (phase_recommendation {}). At the restructure gate the branch was '{}'{}. {}",
        assessment["phase_recommendation"].as_str().unwrap_or("unknown"),
        if branch.is_empty() { "none" } else { &branch },
        decision.as_ref().map(|d| format!(" (answered by {})", d["answered_by"].as_str().unwrap_or(""))).unwrap_or_default(),
        if chain.is_empty() { "No mesh operation ran.".to_string() } else { format!("Operations ({}): {}.",
            plan.as_ref().and_then(|p| p["pipeline"].as_str()).map_or("chosen from evidence".to_string(), |p| format!("named pipeline {p}")), chain.join("; ")) },
    );
    let mut notes = Vec::new();
    match workflow_mode {
        "structural_only" => notes.push("usd-optimize could not load in the executor runtime: Phases 4-5 (mesh operations) did not run; the verdict covers structural signals only.".to_string()),
        "no_op" if branch == "exit" => notes.push("exit chosen at the restructure gate: diagnosis-only report, nothing was written besides the artifacts.".to_string()),
        "no_op" => notes.push("the stage is already optimized: nothing was changed.".to_string()),
        _ => {}
    }
    if comparison.as_ref().and_then(|c| c["critical"].as_bool()) == Some(true) {
        notes.push("CRITICAL: a metric regressed by more than 20%: revert, do not publish without review.".into());
    }
    if verdict == "mixed" {
        notes.push("mixed verdict: some metrics improved and others regressed; this is not a plain success.".into());
    }
    let mut untapped =
        vec!["lossy operations (decimateMeshes, mergeVertices with tolerance) were not considered in this pass"
            .to_string()];
    if read_opt(ws, "validation-scope-note")?.is_some_and(|n| n["full_sweep"]["status"] == "skipped") {
        untapped.push("full-stage validation sweep (usdtune optimize --approve-full-validation)".into());
    }
    for held in plan
        .as_ref()
        .and_then(|p| p["skipped"].as_array())
        .into_iter()
        .flatten()
        .filter(|s| s["reason"].as_str().is_some_and(|r| r.contains("--approve")))
    {
        untapped.push(format!(
            "{}: {}",
            held["operation"].as_str().unwrap_or(""),
            held["reason"].as_str().unwrap_or("")
        ));
    }
    // The after-profile must confirm the instancing form the evidence chose.
    let dedupe = plan
        .as_ref()
        .and_then(|p| p["operations"].as_array())
        .into_iter()
        .flatten()
        .find(|o| o["operation"] == "deduplicateGeometry");
    let warm_open_change = comparison
        .as_ref()
        .and_then(|c| c["metrics"].as_array())
        .into_iter()
        .flatten()
        .find(|m| m["name"] == "warm_open_ms")
        .and_then(|m| m["change_pct"].as_f64());
    if let (Some(dedupe), Some(change)) = (dedupe, warm_open_change) {
        if change > 5.0 {
            let point_instancing = dedupe["args"]["duplicateMethod"] == 4;
            let form = if point_instancing { "point instancing" } else { "native instancing" };
            let alternative = if point_instancing {
                String::new()
            } else {
                format!("; point instancing opens single-mesh copies faster, and is chosen from {} copies and {} per geometry",
                        crate::decisions::op_chain::POINT_INSTANCER_MIN_COPIES, crate::decisions::op_chain::POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY)
            };
            untapped.push(format!("the after-profile does not confirm {form}: warm open {change:+.1}%{alternative}"));
        }
    }
    if branch == "optimize-as-is" && classification == "monolithic-needs-restructure" {
        untapped.push("restructure (hierarchy dedupe) declined at the gate".into());
    }

    let proofs: Vec<Value> = ["preservation-apply-restructure", "preservation-so-run-operations"]
        .into_iter()
        .filter_map(|name| read_opt(ws, name).transpose())
        .collect::<Result<_, _>>()?;
    let asset_name =
        std::path::Path::new(&run.stage_path).file_stem().and_then(|s| s.to_str()).unwrap_or("stage").to_string();
    let mut report = json!({
        "asset_name": asset_name,
        "input_path": run.stage_path,
        "output_path": if run.output_stage_path.is_empty() { Value::Null } else { json!(run.output_stage_path) },
        "timestamp": now_rfc3339(),
        "verdict": verdict,
        "workflow_mode": workflow_mode,
        "notes": notes.join(" "),
        "runtime_context": preflight.get("runtime_context").cloned().unwrap_or(json!({"usdOptimize": null, "assetValidator": null})),
        "optimization_score": optimization_score,
        "score_scope": "stage_optimization",
        "score_label": score::label(optimization_score),
        "executive_summary": comparison.as_ref().and_then(|c| c["summary"].as_str()).unwrap_or("no before/after comparison in this run"),
        "reasoning": reasoning,
        "measurement_context": {
            "profiling_mode": baseline.as_ref().and_then(|b| b["mode"].as_str()).unwrap_or("none"),
            "open_timing_context": baseline.as_ref().and_then(|b| b["open_timing_context"].as_str()).unwrap_or("none"),
            "warm_open_sample_count": baseline.as_ref().and_then(|b| b["warm_open_sample_count"].as_u64()),
            "runtime": preflight["runtime_route"].as_str().unwrap_or("unknown"),
            "stage_open_method": "Usd.Stage.Open, payloads loaded",
            "after_profiled": after.is_some(),
        },
        "metric_groups": groups,
        "metrics": metrics,
        "operations": operations,
        "validators": validators,
        "target_coverage": {"complete": complete, "entries": coverage_entries},
        "untapped_options": untapped,
        // No gate was asked when the assessment found nothing to restructure.
        "restructure": decision.unwrap_or_else(|| json!({"chosen": null, "reason": "restructure-decision skipped"})),
        "structure": structure_summary(&assessment, read_opt(ws, "dedupe-candidates")?.as_ref()),
        "artifacts": {},
    });
    if let Some(block) = preservation(&proofs) {
        report["preservation"] = block;
        if report["preservation"]["passed"] != true {
            let mut text = report["notes"].as_str().unwrap_or("").to_string();
            text.push_str(" PRESERVATION FAILED: the lossless chain changed the composed geometry; its output was discarded (see target_coverage).");
            report["notes"] = json!(text.trim());
        }
    }
    if workflow_mode == "structural_only" {
        report["next_profile_capture"] = json!("rerun with usd-optimize available in the executor runtime (usdtune setup), then a full-mode Kit profile for FPS/VRAM");
    }
    let artifacts: serde_json::Map<String, Value> = crate::store::artifact_names()
        .filter(|n| ws.has_artifact(n))
        .map(|n| (n.to_string(), json!(ws.path_of(n).display().to_string())))
        .collect();
    report["artifacts"] = Value::Object(artifacts);
    Ok(report)
}

// ------------------------------------------------------------------ Markdown

/// The human summary, rendered from the report JSON only.
pub fn markdown(report: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut md = String::new();
    md += &format!("# USD Performance Tuning Report: {}\n\n", s(&report["asset_name"]));
    md += &format!("- Input: `{}`\n- Output: {}\n- Workflow mode: **{}**\n- Verdict: **{}**\n- Stage Optimization Score: **{} / 10** ({})\n- Generated: {}\n\n",
        s(&report["input_path"]),
        report["output_path"].as_str().map(|p| format!("`{p}`")).unwrap_or_else(|| "none (no optimized stage written)".into()),
        s(&report["workflow_mode"]), s(&report["verdict"]), report["optimization_score"], s(&report["score_label"]), s(&report["timestamp"]));
    let rc = &report["runtime_context"];
    md += &format!(
        "Runtime: usd-optimize {} · usd-validation-nvidia {}\n\n",
        rc["usdOptimize"]["version"].as_str().unwrap_or("absent"),
        rc["assetValidator"]["version"].as_str().unwrap_or("absent")
    );
    if !s(&report["notes"]).is_empty() {
        md += &format!("> {}\n\n", s(&report["notes"]));
    }
    md += &format!(
        "## Summary\n\n{}\n\n## Reasoning\n\n{}\n\n",
        s(&report["executive_summary"]),
        s(&report["reasoning"])
    );
    let st = &report["structure"];
    if st["classification"].is_string() {
        let reasons: Vec<String> = st["reasons"].as_array().into_iter().flatten().map(s).collect();
        md += &format!(
            "## Structure\n\n**{}**: {}. {}; {} containment pairs scoped for the occlusion probe.\n\n",
            s(&st["classification"]),
            reasons.join("; "),
            s(&st["hierarchy_dedupe"]),
            st["containment_pairs"]
        );
        let groups = st["top_groups"].as_array().cloned().unwrap_or_default();
        if !groups.is_empty() {
            md += "| repeated subtree | copies | prims each | prims saved | readiness | flags |\n|---|---:|---:|---:|---|---|\n";
            for g in groups {
                let flags: Vec<String> = g["content_flags"].as_array().into_iter().flatten().map(s).collect();
                md += &format!(
                    "| `{}` | {} | {} | {} | {} | {} |\n",
                    s(&g["path_pattern"]),
                    g["copies"],
                    g["subtree_prims"],
                    g["estimated_prim_savings"],
                    s(&g["readiness"]),
                    flags.join(", ")
                );
            }
            md += "\n";
        }
    }
    md += "## Metrics\n\n| metric | before | after | change | verdict |\n|---|---:|---:|---:|---|\n";
    for m in report["metrics"].as_array().into_iter().flatten() {
        md += &format!(
            "| {} | {} | {} | {:+.1}% | {}{} |\n",
            s(&m["name"]),
            fmt_num(m["before"].as_f64().unwrap_or(0.0)),
            fmt_num(m["after"].as_f64().unwrap_or(0.0)),
            m["change_pct"].as_f64().unwrap_or(0.0),
            s(&m["verdict"]),
            m["notes"].as_str().map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }
    md += "\n## Operations\n\n";
    let ops = report["operations"].as_array().cloned().unwrap_or_default();
    if ops.is_empty() {
        md += "No operation ran.\n";
    }
    for op in ops {
        md += &format!("{}. `{}`: {} ({})\n", op["order"], s(&op["name"]), s(&op["result"]), s(&op["method"]));
    }
    if let Some(p) = report.get("preservation") {
        md += &format!(
            "\n## Geometry preservation\n\n**{}**: {}\n",
            if p["passed"] == true { "passed" } else { "FAILED" },
            s(&p["notes"])
        );
    }
    md += "\n## Validation\n\n| check | issues | notes |\n|---|---:|---|\n";
    for v in report["validators"].as_array().into_iter().flatten() {
        md += &format!("| {} | {} | {} |\n", s(&v["name"]), v["issues"], s(&v["notes"]));
    }
    md += "\n## Target coverage\n\n";
    let tc = &report["target_coverage"];
    md += &format!("Complete: **{}**\n\n", tc["complete"]);
    for e in tc["entries"].as_array().into_iter().flatten() {
        md += &format!(
            "- `{}` ({}, {} meshes): {}\n",
            s(&e["path"]),
            s(&e["role"]),
            e["mesh_count"],
            s(&e["disposition"])
        );
    }
    md += "\n## Untapped options\n\n";
    for u in report["untapped_options"].as_array().into_iter().flatten() {
        md += &format!("- {}\n", s(u));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preservation_block_fails_when_any_proof_failed() {
        let proof = |passed: bool| {
            json!({"phase": "p", "strength": "per_mesh", "passed": passed, "world_bounds_preserved": true,
            "triangles_by_material_preserved": passed, "rendered_meshes": {"before": 2, "after": 2},
            "triangles": {"before": 10, "after": 10}, "tolerance": 1e-6, "differing": 0, "differences": []})
        };
        assert!(preservation(&[]).is_none());
        assert_eq!(preservation(&[proof(true), proof(true)]).unwrap()["passed"], true);
        let block = preservation(&[proof(true), proof(false)]).unwrap();
        assert_eq!(block["passed"], false);
        assert_eq!(block["triangles_by_material_preserved"], false);
    }
}
