//! The report rendered for people as text: Markdown (optimization-report.md) and a short
//! terminal summary (`usdtune show RUN --format pretty`), both from the typed report only.

use super::{OptimizationReport, RestructureBlock};
use crate::decisions::compare::fmt_num;

/// The human summary, optimization-report.md.
pub fn markdown(report: &OptimizationReport) -> String {
    let x = &report.structural_summary.x_usdtune;
    let mut md = String::new();
    md += &format!("# USD Performance Tuning Report: {}\n\n", report.asset_name);
    md += &format!(
        "- Input: `{}`\n- Output: {}\n- Workflow mode: **{}**\n- Verdict: **{}**\n- Stage Optimization Score: **{} / 10** ({})\n- Generated: {}\n\n",
        report.input_path,
        report.output_path.as_ref().map(|p| format!("`{p}`")).unwrap_or_else(|| "none (no optimized stage written)".into()),
        report.workflow_mode.as_str(),
        report.verdict.as_str(),
        serde_json::json!(report.optimization_score),
        report.score_label,
        report.timestamp
    );
    let rc = &report.runtime_context;
    md += &format!(
        "Runtime: usd-optimize {} · usd-validation-nvidia {}\n\n",
        rc.usd_optimize.version, rc.asset_validator.version
    );
    if let Some(gpu) = &x.gpu_memory {
        md += &format!("GPU memory (NVML, during the profiles): {}\n\n", gpu_line(gpu));
    }
    if !report.notes.is_empty() {
        md += &format!("> {}\n\n", report.notes);
    }
    md += &format!("## Summary\n\n{}\n\n## Reasoning\n\n{}\n\n", report.executive_summary, report.reasoning);
    let st = &x.structure;
    md += &format!(
        "## Structure\n\n**{}**: {}. {}; {} containment pairs scoped for the occlusion probe.\n\n",
        st.classification,
        st.reasons.join("; "),
        st.hierarchy_dedupe,
        st.containment_pairs
    );
    if !st.top_groups.is_empty() {
        md += "| repeated subtree | copies | prims each | prims saved | readiness | flags |\n|---|---:|---:|---:|---|---|\n";
        for g in &st.top_groups {
            md += &format!(
                "| `{}` | {} | {} | {} | {} | {} |\n",
                g.path_pattern,
                g.copies,
                g.subtree_prims,
                g.estimated_prim_savings,
                g.readiness,
                g.content_flags.join(", ")
            );
        }
        md += "\n";
    }
    if let Some(trials) = &x.route_trials {
        md += &format!(
            "Routes ({}, goal {}):\n\n| route | outcome | warm open | bytes | prims after | seconds |\n|---|---|---:|---:|---:|---:|\n",
            trials.basis,
            trials.goal.as_str()
        );
        let ratio = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.3}×"));
        for t in &trials.trials {
            md += &format!(
                "| {}{} | {}{} | {} | {} | {} | {} |\n",
                t.branch,
                if trials.recommended.as_deref() == Some(t.branch.as_str()) { " (recommended)" } else { "" },
                t.outcome,
                t.code.as_ref().map(|c| format!(" `{c}`")).unwrap_or_default(),
                ratio(t.open_ratio),
                ratio(t.bytes_ratio),
                t.prims_after.map_or("–".to_string(), |p| p.to_string()),
                t.seconds
            );
        }
        md += &format!("\n{}\n\n", trials.reason);
    }
    let ss = &report.structural_summary;
    md += &format!(
        "De-duplication descent: {}{}. {}\n\n",
        if ss.frontier_descent_converged { "converged" } else { "not converged" },
        ss.frontier_convergence_waiver_reason.as_ref().map(|r| format!(" (waived: {r})")).unwrap_or_default(),
        ss.notes
    );
    md += "## Phases\n\n| phase | status | seconds | note |\n|---|---|---:|---|\n";
    for p in &x.phases {
        md += &format!("| {} | {} | {:.2} | {} |\n", p.label, p.status, p.seconds, p.note.replace('|', "\\|"));
    }
    md += "\n## Metrics\n\n| metric | before | after | change | verdict |\n|---|---:|---:|---:|---|\n";
    for m in &report.metrics {
        md += &format!(
            "| {} | {} | {} | {:+.1}% | {}{} |\n",
            m.name,
            fmt_num(m.before),
            fmt_num(m.after),
            m.change_pct,
            m.verdict.as_str(),
            m.notes.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }
    if let Some(f) = &x.footprint {
        md += &format!(
            "\nFootprint: {} bytes as delivered, {} re-encoded ({:+.1}%: the free re-encode), {} optimized ({:+.1}% against the re-encoded source; {:+.1}% on disk).{}\n",
            fmt_num(f.raw_input_bytes as f64),
            fmt_num(f.repack_normalized_baseline_bytes as f64),
            f.repack_delta_pct,
            fmt_num(f.optimized_bytes as f64),
            f.structural_delta_pct,
            f.raw_delta_pct,
            if report.footprint.is_none() { " The saving is the re-encode's, not the optimization's." } else { "" }
        );
    }
    md += "\n## Operations\n\n";
    if x.chain.is_empty() {
        md += "No mesh operation ran.\n";
    }
    for (n, step) in x.chain.iter().enumerate() {
        md += &format!("{}. `{}` ({}, {}): {}\n", n + 1, step.operation, step.safety, step.authority, step.evidence);
    }
    for held in &x.held_back {
        md += &format!("- held back: `{}`: {}\n", held.operation, held.reason);
    }
    if !report.operations.is_empty() {
        md += &format!(
            "\n{} op runs over {} target(s).\n",
            report.operations.len(),
            report.target_coverage.entries.len()
        );
    }
    if let Some(p) = &x.proof {
        md += &format!(
            "\n## Geometry and composition proof\n\n**{}**: rendered meshes {} → {}, triangles {} → {}, bounds {}, {} new composition error(s).\n\n{}\n",
            if p.passed { "passed" } else { "FAILED" },
            p.rendered_meshes_before,
            p.rendered_meshes_after,
            fmt_num(p.triangles_before as f64),
            fmt_num(p.triangles_after as f64),
            if p.bounds_preserved { "preserved" } else { "moved" },
            p.new_composition_errors,
            p.steps.iter().map(|s| format!("- {s}")).collect::<Vec<_>>().join("\n")
        );
    }
    md += "\n## Validation\n\n| concept | severity | sites | targets | addressed by | sample |\n|---|---|---:|---:|---|---|\n";
    for c in &x.findings {
        md += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            c.concept,
            c.severity,
            c.sites,
            c.targets,
            if c.op_family.is_empty() { "no operation" } else { &c.op_family },
            c.sample_sites.first().map(|s| format!("`{s}`")).unwrap_or_default()
        );
    }
    md += "\n## Target coverage\n\n";
    md += &format!("Complete: **{}**\n\n", report.target_coverage.complete);
    for (e, d) in report.target_coverage.entries.iter().zip(&x.coverage) {
        md += &format!(
            "- `{}` ({}, {} meshes): {}{}{}\n",
            e.path,
            e.role,
            e.mesh_count,
            d.disposition,
            d.code.as_ref().map(|c| format!(" `{c}`")).unwrap_or_default(),
            if e.notes.is_empty() { String::new() } else { format!(": {}", e.notes) }
        );
    }
    md += "\n## Untapped options\n\n";
    for u in &x.untapped_options {
        md += &format!("- {u}\n");
    }
    md
}

/// The closing summary of a finished run (what the CLI prints last, before the verdict word):
/// prims, open time, bytes, meshes, the route, the proof, where the output and the page are.
/// Every number is the report's own.
pub fn summary(report: &OptimizationReport) -> Vec<String> {
    let x = &report.structural_summary.x_usdtune;
    let metric = |name: &str| report.metrics.iter().find(|m| m.name == name);
    let mut lines = Vec::new();
    if let Some(m) = metric("prim_count") {
        lines.push(format!("prims    {} → {} ({:+.1}%)", fmt_num(m.before), fmt_num(m.after), m.change_pct));
    }
    if let Some(i) = x.intervals.iter().find(|i| i.name == "warm_open_ms") {
        lines.push(format!(
            "open     warm open {:.3}× ({:.0}% interval {:.3}–{:.3}, {} paired rounds)",
            i.ratio,
            i.confidence * 100.0,
            i.low,
            i.high,
            i.rounds
        ));
    }
    if let Some(f) = &x.footprint {
        lines.push(format!(
            "bytes    {} → {} ({:+.1}% against the source re-encoded; {} as delivered)",
            fmt_num(f.repack_normalized_baseline_bytes as f64),
            fmt_num(f.optimized_bytes as f64),
            f.structural_delta_pct,
            fmt_num(f.raw_input_bytes as f64)
        ));
    }
    let branch = match &x.restructure {
        RestructureBlock::Decided(d) => d.chosen.clone(),
        RestructureBlock::Skipped { .. } => "none".into(),
    };
    let measured = x
        .route_trials
        .as_ref()
        .map(|t| format!(" ({} of {} routes, goal {})", t.basis, t.trials.len(), t.goal.as_str()))
        .unwrap_or_default();
    let chain: Vec<&str> = x.chain.iter().map(|s| s.operation.as_str()).collect();
    lines.push(format!(
        "route    {branch}{measured}{}",
        if chain.is_empty() { String::new() } else { format!(" · {}", chain.join(" → ")) }
    ));
    if let Some(p) = &x.proof {
        lines.push(format!(
            "proof    {} rendered meshes → {}, {}, {} new composition error(s): {}",
            p.rendered_meshes_before,
            p.rendered_meshes_after,
            if p.bounds_preserved { "bounds kept" } else { "bounds moved" },
            p.new_composition_errors,
            if p.passed { "passed" } else { "FAILED, output set aside" }
        ));
    }
    lines.push(format!("output   {}", report.output_path.as_deref().unwrap_or("none (no optimized stage written)")));
    lines.push(format!("report   {}", report.artifacts.html));
    lines
}

/// A few lines for a terminal: what went in, what came out, the verdict and why.
pub fn pretty(report: &OptimizationReport) -> String {
    let x = &report.structural_summary.x_usdtune;
    let mut out = format!(
        "{}  {} · verdict {} · score {} / 10 ({})\n",
        report.asset_name,
        report.workflow_mode.as_str(),
        report.verdict.as_str(),
        serde_json::json!(report.optimization_score),
        report.score_label
    );
    out += &format!("  input   {}\n", report.input_path);
    out += &format!("  output  {}\n", report.output_path.as_deref().unwrap_or("none (no optimized stage written)"));
    if let RestructureBlock::Decided(d) = &x.restructure {
        out += &format!("  branch  {} (answered by {})\n", d.chosen, d.answered_by);
    }
    if !x.chain.is_empty() {
        let chain: Vec<&str> = x.chain.iter().map(|s| s.operation.as_str()).collect();
        out += &format!("  ops     {} on {} target(s)\n", chain.join(" → "), report.target_coverage.entries.len());
    }
    for m in report.metrics.iter().filter(|m| m.verdict != crate::record::Verdict::Neutral) {
        out += &format!(
            "  {:<24} {} → {} ({:+.1}%, {})\n",
            m.name,
            fmt_num(m.before),
            fmt_num(m.after),
            m.change_pct,
            m.verdict.as_str()
        );
    }
    if let Some(p) = &x.proof {
        out += &format!("  proof   {}\n", if p.passed { "geometry preserved" } else { "FAILED: output set aside" });
    }
    if !report.target_coverage.complete {
        out += "  coverage INCOMPLETE: a Phase 4 target was blocked\n";
    }
    if !report.notes.is_empty() {
        out += &format!("  note    {}\n", report.notes);
    }
    out += &format!("  report  {}\n", report.artifacts.html);
    out
}

/// Peak VRAM before and after, or why there is no figure.
fn gpu_line(gpu: &super::GpuPeaks) -> String {
    let peak = |p: &super::GpuPeak| match (p.available, p.peak_device_used_bytes) {
        (true, Some(bytes)) => format!(
            "device peak {:.0} MB{}",
            bytes as f64 / 1e6,
            p.peak_executor_bytes.map_or(String::new(), |e| format!(", executors {:.0} MB", e as f64 / 1e6))
        ),
        _ => format!("not measured ({})", p.reason.as_deref().unwrap_or("no GPU")),
    };
    match &gpu.after {
        Some(after) if gpu.before.available => format!("before {} · after {}", peak(&gpu.before), peak(after)),
        _ => peak(&gpu.before),
    }
}
