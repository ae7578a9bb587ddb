//! Finding executables and running short helper commands.
//!
//! Lookup order is always: an explicit environment override (so a developer
//! with PostgreSQL 16 from Homebrew can point the tests at it), then the
//! Debian default location the CI image uses, then `PATH`. An override that
//! points nowhere is an error rather than a silent fallback, because testing
//! against a different server than the one asked for would be confusing.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::{Error, Result};

/// Where Debian's `postgresql-15` package installs the server binaries.
const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Finds a PostgreSQL program (`initdb`, `postgres`, `psql`):
/// `$TESTKIT_PG_BIN/<name>`, then the Debian PostgreSQL 15 directory, then
/// `PATH`.
pub fn pg_binary(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TESTKIT_PG_BIN").filter(|d| !d.is_empty()) {
        return explicit(name, Path::new(&dir).join(name));
    }
    search(name, &[Path::new(DEFAULT_PG_BIN).join(name)])
}

/// Finds `redis-server`: `$TESTKIT_REDIS_SERVER`, then `/usr/bin`, then `PATH`.
pub fn redis_server() -> Result<PathBuf> {
    let name = "redis-server";
    if let Some(path) = std::env::var_os("TESTKIT_REDIS_SERVER").filter(|p| !p.is_empty()) {
        return explicit(name, PathBuf::from(path));
    }
    search(name, &[PathBuf::from("/usr/bin/redis-server")])
}

/// Finds a system binary `name`: `$<var>`, then `/usr/bin`, then `PATH`.
pub fn system_binary(name: &str, var: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return explicit(name, PathBuf::from(path));
    }
    search(name, &[PathBuf::from("/usr/bin").join(name)])
}

/// Finds a binary of this workspace built by cargo, for the tests of another
/// crate (e.g. the operator's tests need the `dataplane` binary).
///
/// Looks, in order, at:
/// 1. `$CARGO_BIN_EXE_<name>` (set by cargo for a crate's own binaries);
/// 2. `$CARGO_TARGET_DIR/debug/<name>`;
/// 3. the directory of the running test executable's profile (the test
///    binary lives in `<target>/<profile>/deps/`), which finds the binary
///    even when the target dir was configured in `.cargo/config.toml`;
/// 4. `<workspace>/target/debug/<name>`.
///
/// This does not build anything: cargo only builds another package's
/// binaries when asked, so run e.g. `cargo build -p dataplane` first.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return Err(Error::InvalidArgument(format!("binary name {name:?}")));
    }
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let workspace = workspace_root();

    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        candidates.push(PathBuf::from(path));
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        // A relative target dir is relative to where cargo ran, which for
        // this workspace is its root.
        candidates.push(workspace.join(dir).join("debug").join(&file));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join(&file));
    }
    candidates.push(workspace.join("target").join("debug").join(&file));

    candidates
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| Error::BinaryNotFound {
            name: name.to_owned(),
            tried: candidates.clone(),
        })
}

/// The effective user id of this process, via `id -u`.
pub(crate) fn current_uid() -> Result<u32> {
    static UID: OnceLock<Option<u32>> = OnceLock::new();
    UID.get_or_init(|| id_of(&["-u"]).ok())
        .ok_or_else(|| Error::InvalidArgument("could not determine the current uid".into()))
}

/// The uid and gid of a named user, via `id -u NAME` / `id -g NAME`.
pub(crate) fn user_ids(user: &str) -> Result<(u32, u32)> {
    Ok((id_of(&["-u", user])?, id_of(&["-g", user])?))
}

fn id_of(args: &[&str]) -> Result<u32> {
    let mut cmd = Command::new("id");
    cmd.args(args);
    let out = run(&mut cmd)?;
    out.trim()
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("`id {}` printed {out:?}", args.join(" "))))
}

/// Runs a short command to completion and returns its stdout; a non-zero
/// exit becomes [`Error::CommandFailed`] carrying both output streams.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    run_with_input(cmd, "")
}

/// [`run`], with `input` on the command's stdin (then closed).
pub(crate) fn run_with_input(cmd: &mut Command, input: &str) -> Result<String> {
    use std::io::Write;
    let line = command_line(cmd);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawn_error = |source| Error::Spawn {
        name: line.clone(),
        program: program.clone(),
        source,
    };
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that exits without reading is judged by its status.
        let _ = stdin.write_all(input.as_bytes());
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().map_err(spawn_error)?;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    if status.success() {
        return Ok(stdout);
    }
    Err(Error::CommandFailed {
        command: line,
        status: status.to_string(),
        output: format!("{stdout}{}", String::from_utf8_lossy(&stderr)),
    })
}

/// Renders a command roughly as a shell would take it, for error messages.
pub(crate) fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn explicit(name: &str, path: PathBuf) -> Result<PathBuf> {
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(Error::BinaryNotFound {
            name: name.to_owned(),
            tried: vec![path],
        })
    }
}

fn search(name: &str, defaults: &[PathBuf]) -> Result<PathBuf> {
    let mut tried: Vec<PathBuf> = defaults.to_vec();
    if let Some(path) = std::env::var_os("PATH") {
        tried.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
    }
    match tried.iter().find(|p| is_executable(p)) {
        Some(found) => Ok(found.clone()),
        None => Err(Error::BinaryNotFound {
            name: name.to_owned(),
            tried,
        }),
    }
}

/// A script of this repository, by its path from the workspace root (e.g.
/// `tests/cluster/cluster.sh`), found by walking up from this crate.
pub fn workspace_script(relative: &str) -> Result<PathBuf> {
    let root = workspace_root();
    let tried: Vec<PathBuf> = root.ancestors().map(|dir| dir.join(relative)).collect();
    tried
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| Error::BinaryNotFound {
            name: relative.to_owned(),
            tried: tried.clone(),
        })
}

/// Where a browser test leaves its screenshots: `$SCREENSHOT_DIR` (relative
/// to the workspace root, as `make` passes it), else `default` in cargo's
/// target directory, where they outlive the test without landing in the
/// work tree.
pub fn screenshot_dir(default: &str) -> PathBuf {
    let root = workspace_root();
    if let Some(dir) = std::env::var_os("SCREENSHOT_DIR").filter(|d| !d.is_empty()) {
        return root.join(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| root.join("target"), |d| root.join(d))
        .join(default)
}

/// Runs the workspace's setup script `relative` (e.g.
/// `tests/setup/browser.sh`) with `args`; the last line of its stdout is
/// the path of what it installed (a directory or a binary), which must
/// exist. Setup scripts install once and cache, so this is cheap after the
/// first time; a failure is an error carrying the script's output.
pub fn setup(relative: &str, args: &[&str]) -> Result<PathBuf> {
    let script = workspace_script(relative)?;
    let stdout = run(Command::new(&script).args(args))?;
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if path.as_os_str().is_empty() || !path.exists() {
        return Err(Error::CommandFailed {
            command: format!("{} {}", script.display(), args.join(" ")),
            status: "printed no installed path".to_owned(),
            output: stdout,
        });
    }
    Ok(path)
}

/// The root of the workspace the running test belongs to.
///
/// Cargo runs a test in its package's directory, so the nearest ancestor of
/// the current directory holding `testkit/Cargo.toml` is it. The path this
/// crate was compiled at is only the fallback: a build cache shared between
/// clones (CI's fresh clone and a working copy) keeps testkit compiled at
/// whichever path built it first, which may no longer exist.
pub fn workspace_root() -> PathBuf {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors()
                .find(|dir| dir.join("testkit/Cargo.toml").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| compiled.parent().unwrap_or(compiled).to_path_buf())
}

/// Runs the setup script `relative` (from the workspace root) with `args`;
/// the last line of its stdout is the path of an executable it built or
/// installed, which is returned.
pub fn built_by_script(relative: &str, args: &[&str]) -> Result<PathBuf> {
    let script = workspace_script(relative)?;
    let stdout = run(Command::new(&script).args(args))?;
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if path.is_absolute() && is_executable(&path) {
        return Ok(path);
    }
    Err(Error::BinaryNotFound {
        name: format!("the executable {} prints", script.display()),
        tried: vec![path],
    })
}

/// Whether `path` is a file anyone may execute.
pub(crate) fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_a_shell() {
        let mut cmd = Command::new("psql");
        cmd.args(["-c", "SELECT 'a'", "-p", "5432"]);
        assert_eq!(command_line(&cmd), r"psql -c 'SELECT '\''a'\''' -p 5432");
    }

    #[test]
    fn missing_binary_lists_what_was_tried() {
        let err = search("no-such-binary-testkit", &[PathBuf::from("/nope/x")]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no-such-binary-testkit"), "{msg}");
        assert!(msg.contains("/nope/x"), "{msg}");
    }
}
