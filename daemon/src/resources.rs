//! Host facts for setup-preflight and the scheduler's budget: CPU, RAM, and NVIDIA GPUs
//! through NVML (`null` when NVML cannot load: no driver, no GPU).

use serde_json::{json, Value};

pub fn host_facts() -> Value {
    let system = sysinfo::System::new().ok().map(|mut s| {
        s.refresh_memory();
        s.refresh_cpu_all();
        s
    });
    let brand =
        system.as_ref().and_then(|s| s.cpus().first().map(|c| c.brand().trim().to_string())).unwrap_or_default();
    json!({
        "cpu_count": cpu_count(),
        "cpu_brand": brand,
        "ram_total_bytes": system.as_ref().map_or(0, |s| s.total_memory()),
        "ram_available_bytes": system.as_ref().map_or(0, |s| s.available_memory()),
        "gpus": nvml_gpus(),
    })
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// CPU cores and memory available now (0 when unknown): the scheduler's budget, read before
/// every batch, without the rest of [`host_facts`].
pub fn cpu_and_available_memory() -> (usize, u64) {
    let available = sysinfo::System::new().ok().map_or(0, |mut s| {
        s.refresh_memory();
        s.available_memory()
    });
    (cpu_count(), available)
}

/// NVIDIA GPUs with their memory, or `Value::Null` when NVML is absent.
pub fn nvml_gpus() -> Value {
    let Ok(nvml) = nvml_wrapper::Nvml::init() else { return Value::Null };
    let count = nvml.device_count().unwrap_or(0);
    let gpus: Vec<Value> = (0..count)
        .filter_map(|i| nvml.device_by_index(i).ok())
        .map(|device| {
            let memory = device.memory_info().ok();
            json!({
                "name": device.name().unwrap_or_default(),
                "memory_total_bytes": memory.as_ref().map(|m| m.total).unwrap_or(0),
                "memory_free_bytes": memory.as_ref().map(|m| m.free).unwrap_or(0),
            })
        })
        .collect();
    Value::Array(gpus)
}

/// CPU seconds this process has used so far (all threads), through sysinfo.
pub fn own_cpu_seconds() -> Option<f64> {
    let pid = sysinfo::get_current_pid().ok()?;
    let mut system = sysinfo::System::new().ok()?;
    system.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::Some(&[pid]),
        false,
        sysinfo::ProcessRefreshKind::nothing().with_cpu(),
    );
    system.process(pid).map(|p| p.accumulated_cpu_time() as f64 / 1000.0)
}

/// Peak resident memory of this process since the last [`reset_own_peak_rss`] (Linux
/// `VmHWM`); None where /proc is not available.
pub fn own_peak_rss_kb() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Start a new peak-memory window (Linux: writing 5 to clear_refs resets VmHWM).
pub fn reset_own_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
