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

pub fn cpu_count() -> usize {
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

/// Free space on the filesystem holding `path` (its nearest existing ancestor), for an
/// unprivileged writer; None where it cannot be read.
pub fn free_disk_bytes(path: &std::path::Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    free_disk_bytes_at(existing)
}

#[cfg(unix)]
fn free_disk_bytes_at(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a zeroed struct statvfs fills.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(not(unix))]
fn free_disk_bytes_at(_: &std::path::Path) -> Option<u64> {
    None
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

/// GPU memory while a task runs: NVML sampled on a thread of its own, device by device, and
/// for the processes of the executors' process groups (an executor leads its group, so its
/// profile and validation workers count as its own) where the driver reports per-process use.
/// With no NVML (no driver, no GPU) the result says so instead of inventing zeros.
pub struct GpuWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<GpuMemory>>,
}

/// What [`GpuWatch`] saw: stored in the profile artifacts (`gpu_memory`), quoted by the report.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct GpuMemory {
    pub available: bool,
    /// Why there are no figures (NVML could not load), when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub interval_ms: u64,
    /// Used bytes per device at each sample, and the executors' own where reported (ms since start).
    pub samples: Vec<GpuSample>,
    pub device_total_bytes: Vec<u64>,
    pub peak_device_used_bytes: Option<u64>,
    /// Peak of the executors' processes; None where the driver reports no per-process use.
    pub peak_executor_bytes: Option<u64>,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct GpuSample {
    pub t_ms: u64,
    pub device_used_bytes: Vec<u64>,
    pub executor_bytes: Option<u64>,
}

/// Samples kept per watch: a long task keeps every n-th so the artifact stays small.
const GPU_SAMPLES_KEPT: usize = 600;
const GPU_INTERVAL_MS: u64 = 250;

impl GpuWatch {
    /// Start sampling; `groups` are the executors' pids (each its group's leader).
    pub fn start(groups: Vec<u32>) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("usdtune-gpu-watch".into())
            .spawn(move || sample_until(&flag, &groups))
            .ok();
        Self { stop, thread }
    }

    pub fn finish(mut self) -> GpuMemory {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_else(|| GpuMemory {
            reason: Some("the sampling thread could not run".into()),
            ..Default::default()
        })
    }
}

fn sample_until(stop: &std::sync::atomic::AtomicBool, groups: &[u32]) -> GpuMemory {
    let mut memory = GpuMemory { interval_ms: GPU_INTERVAL_MS, ..Default::default() };
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => {
            memory.reason = Some(format!("NVML cannot load ({e}): no NVIDIA driver or GPU on the daemon's host"));
            return memory;
        }
    };
    let devices: Vec<_> = (0..nvml.device_count().unwrap_or(0)).filter_map(|i| nvml.device_by_index(i).ok()).collect();
    if devices.is_empty() {
        memory.reason = Some("NVML loaded but reports no GPU".into());
        return memory;
    }
    memory.available = true;
    memory.device_total_bytes = devices.iter().map(|d| d.memory_info().map_or(0, |m| m.total)).collect();
    let in_groups = |pid: u32| {
        #[cfg(unix)]
        {
            // SAFETY: getpgid only reads the process table.
            let group = unsafe { libc::getpgid(pid as i32) };
            groups.iter().any(|g| *g == pid || i64::from(*g) == i64::from(group))
        }
        #[cfg(not(unix))]
        groups.contains(&pid)
    };
    let started = std::time::Instant::now();
    let mut stride = 1usize;
    let mut tick = 0usize;
    loop {
        let used: Vec<u64> = devices.iter().map(|d| d.memory_info().map_or(0, |m| m.used)).collect();
        let mut reported = false;
        let mut executor = 0u64;
        for device in &devices {
            let processes = device.running_compute_processes().unwrap_or_default().into_iter();
            for process in processes.chain(device.running_graphics_processes().unwrap_or_default()) {
                if let nvml_wrapper::enums::device::UsedGpuMemory::Used(bytes) = process.used_gpu_memory {
                    reported = true;
                    if in_groups(process.pid) {
                        executor += bytes;
                    }
                }
            }
        }
        let total_used = used.iter().sum::<u64>();
        memory.peak_device_used_bytes = Some(memory.peak_device_used_bytes.unwrap_or(0).max(total_used));
        if reported {
            memory.peak_executor_bytes = Some(memory.peak_executor_bytes.unwrap_or(0).max(executor));
        }
        if tick.is_multiple_of(stride) {
            let t_ms = started.elapsed().as_millis() as u64;
            memory.samples.push(GpuSample {
                t_ms,
                device_used_bytes: used,
                executor_bytes: reported.then_some(executor),
            });
            if memory.samples.len() >= GPU_SAMPLES_KEPT {
                // Keep every other sample and halve the rate from here on.
                memory.samples = memory.samples.into_iter().step_by(2).collect();
                stride *= 2;
            }
        }
        tick += 1;
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return memory;
        }
        std::thread::sleep(std::time::Duration::from_millis(GPU_INTERVAL_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_without_a_gpu_says_why_and_invents_nothing() {
        let memory = GpuWatch::start(vec![std::process::id()]).finish();
        if memory.available {
            // A machine with a GPU: figures, and at least one sample.
            assert!(!memory.samples.is_empty() && memory.peak_device_used_bytes.is_some());
        } else {
            assert!(memory.reason.as_deref().is_some_and(|r| r.contains("NVML") || r.contains("GPU")), "{memory:?}");
            assert!(memory.samples.is_empty() && memory.peak_device_used_bytes.is_none());
        }
    }

    #[test]
    fn free_disk_is_read_at_the_nearest_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let here = free_disk_bytes(dir.path()).expect("a temp dir's filesystem");
        assert!(here > 0);
        let deeper = free_disk_bytes(&dir.path().join("not/yet/made")).unwrap();
        // The same filesystem, read twice: equal up to what others wrote meanwhile.
        assert!(deeper.abs_diff(here) < 1 << 30, "{here} vs {deeper}");
    }
}
