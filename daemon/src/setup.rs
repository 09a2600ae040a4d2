//! `usdtune setup`: the executor's environment, a CPython 3.12 venv (usd-optimize is cp312
//! only) with the pinned requirements, the Python gRPC stubs generated from proto/, and a
//! .pth entry that puts kit-extension/usdtune.executor on its path. Idempotent: a stamp
//! records what was installed, and only a changed input triggers work.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::outcome::Outcome;

const PROTO: &str = include_str!("../../proto/usdtune/v1/usdtune.proto");
const REQUIREMENTS: &str = include_str!("../../kit-extension/requirements.txt");
const REQUIREMENTS_DEV: &str = include_str!("../../kit-extension/requirements-dev.txt");

/// The executor package, found next to this source tree unless USDTUNE_EXECUTOR_SRC says otherwise.
pub fn extension_dir() -> PathBuf {
    std::env::var_os("USDTUNE_EXECUTOR_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../kit-extension/usdtune.executor"))
}

/// usdtune's data directory: USDTUNE_HOME, else the platform's user data dir.
pub fn data_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("USDTUNE_HOME") {
        return PathBuf::from(home);
    }
    directories::ProjectDirs::from("dev", "usdtune", "usdtune")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".usdtune"))
}

#[derive(Clone, Debug)]
pub struct ExecutorEnv {
    pub root: PathBuf,
}

impl ExecutorEnv {
    /// USDTUNE_EXECUTOR_ENV, else `<data dir>/executor-env`.
    pub fn default_location() -> Self {
        let root = std::env::var_os("USDTUNE_EXECUTOR_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir().join("executor-env"));
        Self { root }
    }

    pub fn python(&self) -> PathBuf {
        self.root.join("bin/python")
    }

    /// The version of a package installed in the environment (from its `.dist-info` folder).
    pub fn package_version(&self, distribution: &str) -> Option<String> {
        let prefix = format!("{distribution}-");
        let lib = std::fs::read_dir(self.root.join("lib")).ok()?;
        lib.flatten().find_map(|python| {
            std::fs::read_dir(python.path().join("site-packages")).ok()?.flatten().find_map(|entry| {
                let name = entry.file_name().to_string_lossy().to_string();
                name.strip_prefix(&prefix)?.strip_suffix(".dist-info").map(String::from)
            })
        })
    }

    /// The Kit kernel (PyPI `omniverse-kit`) when installed here: what `--runtime kit` runs.
    pub fn kit_version(&self) -> Option<String> {
        self.package_version("omniverse_kit")
    }

    fn stamp_path(&self) -> PathBuf {
        self.root.join("usdtune-setup.stamp")
    }

    /// What the environment should hold; a different stamp means setup must run again.
    fn wanted_stamp(dev: bool) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (PROTO, REQUIREMENTS, if dev { REQUIREMENTS_DEV } else { "" }, extension_dir()).hash(&mut h);
        format!("{:016x} dev={dev}", h.finish())
    }

    pub fn is_ready(&self, dev: bool) -> bool {
        let stamp = std::fs::read_to_string(self.stamp_path()).unwrap_or_default();
        self.python().is_file() && (stamp == Self::wanted_stamp(dev) || (!dev && stamp == Self::wanted_stamp(true)))
    }
}

/// CPython 3.12: USDTUNE_PYTHON, else pyenv's 3.12, else python3.12 on PATH.
pub fn find_python312() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("USDTUNE_PYTHON") {
        candidates.push(p.into());
    }
    if let Ok(out) = Command::new("pyenv").arg("root").output() {
        let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Ok(entries) = std::fs::read_dir(root.join("versions")) {
            let mut versions: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("3.12.")))
                .collect();
            versions.sort();
            candidates.extend(versions.into_iter().rev().map(|v| v.join("bin/python3")));
        }
    }
    candidates.push("python3.12".into());
    for candidate in &candidates {
        let ok = Command::new(candidate)
            .args(["-c", "import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(candidate.clone());
        }
    }
    bail!(
        "{}: usd-optimize needs CPython 3.12 and none was found (tried {}). \
         Install it (e.g. `pyenv install 3.12`) or set USDTUNE_PYTHON to a python3.12 executable.",
        Outcome::Python312NotFound,
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command.status().with_context(|| format!("{what}: cannot start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Install the pinned Kit kernel (`omniverse-kit`, the line of the dev requirements) into a
/// ready environment: `usdtune setup --kit`, for `--runtime kit`.
pub fn install_kit(env: &ExecutorEnv, log: &mut dyn FnMut(&str)) -> Result<()> {
    if let Some(version) = env.kit_version() {
        log(&format!("Kit kernel {version} is installed in {}", env.root.display()));
        return Ok(());
    }
    let pin = REQUIREMENTS_DEV
        .lines()
        .find(|l| l.trim_start().starts_with("omniverse-kit"))
        .ok_or_else(|| anyhow::anyhow!("no omniverse-kit pin in requirements-dev.txt"))?;
    log(&format!("installing the Kit kernel ({})", pin.trim()));
    run(
        Command::new(env.python()).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", pin.trim()]),
        "pip install omniverse-kit",
    )?;
    Ok(())
}

/// Create or refresh the executor environment. `dev` adds headless Kit and pytest.
pub fn setup(env: &ExecutorEnv, dev: bool, log: &mut dyn FnMut(&str)) -> Result<()> {
    if env.is_ready(dev) {
        log(&format!("executor environment is ready: {}", env.root.display()));
        return Ok(());
    }
    let extension = extension_dir();
    if !extension.join("usdtune_executor/__init__.py").is_file() {
        bail!(
            "{}: no usdtune_executor package under {} (set USDTUNE_EXECUTOR_SRC)",
            Outcome::ExecutorSourceMissing,
            extension.display()
        );
    }
    if !env.python().is_file() {
        let python = find_python312()?;
        log(&format!("creating venv {} with {}", env.root.display(), python.display()));
        run(Command::new(&python).arg("-m").arg("venv").arg(&env.root), "python -m venv")?;
    }
    let scratch = tempfile::tempdir()?;
    let mut requirements = vec![scratch.path().join("requirements.txt")];
    std::fs::write(&requirements[0], REQUIREMENTS)?;
    if dev {
        requirements.push(scratch.path().join("requirements-dev.txt"));
        std::fs::write(&requirements[1], REQUIREMENTS_DEV)?;
    }
    log("installing pinned executor requirements (usd-optimize, grpcio, ...)");
    let mut pip = Command::new(env.python());
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]);
    for r in &requirements {
        pip.arg("-r").arg(r);
    }
    run(&mut pip, "pip install")?;

    let site = String::from_utf8(
        Command::new(env.python())
            .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
            .output()?
            .stdout,
    )?;
    let site = PathBuf::from(site.trim());
    let proto_dir = scratch.path().join("proto");
    std::fs::create_dir_all(proto_dir.join("usdtune/v1"))?;
    std::fs::write(proto_dir.join("usdtune/v1/usdtune.proto"), PROTO)?;
    log("generating Python gRPC stubs from proto/usdtune/v1/usdtune.proto");
    run(
        Command::new(env.python())
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", proto_dir.display()))
            .arg(format!("--python_out={}", site.display()))
            .arg(format!("--grpc_python_out={}", site.display()))
            .arg(proto_dir.join("usdtune/v1/usdtune.proto")),
        "grpc_tools.protoc",
    )?;
    std::fs::write(site.join("usdtune_executor.pth"), format!("{}\n", std::fs::canonicalize(&extension)?.display()))?;
    run(
        Command::new(env.python()).args(["-c", "import usdtune_executor.connection, pxr, usd_optimize.core"]),
        "import check of the executor environment",
    )?;
    crate::store::write_atomic(&env.stamp_path(), ExecutorEnv::wanted_stamp(dev).as_bytes())?;
    log(&format!("executor environment ready: {}", env.root.display()));
    Ok(())
}
