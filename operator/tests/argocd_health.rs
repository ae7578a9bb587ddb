//! The Argo CD health check of a SecureVault
//! (`config/argocd/resource_customizations/securevault.io/SecureVault/`),
//! run on its own test cases by a real Lua 5.1 interpreter.
//!
//! Argo CD runs `health.lua` in gopher-lua, a Lua 5.1, with the object as the
//! global `obj`. Reading the script is no proof it parses or does what
//! `health_test.yaml` says, and Lua 5.3 or 5.4 would accept syntax Argo CD
//! rejects (`goto`, `//`), so every case of `health_test.yaml` is run here by
//! Debian's `lua5.1`: its `testdata/` object becomes a Lua table literal,
//! the script runs via `dofile`, and the status and message it returns must
//! be the expected ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize;
use serde_json::Value;

/// Where the health check, its test cases and their objects live.
const CHECK_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../config/argocd/resource_customizations/securevault.io/SecureVault"
);

/// `health_test.yaml`, in Argo CD's format.
#[derive(Deserialize)]
struct HealthTests {
    tests: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    health_status: HealthStatus,
    /// The object, relative to the check's directory.
    input_path: String,
}

#[derive(Deserialize, Debug, PartialEq, Eq)]
struct HealthStatus {
    status: String,
    message: String,
}

/// Debian's `lua5.1` (or `$TESTKIT_LUA`), or a failed test saying how to get it.
fn lua() -> PathBuf {
    testkit::bins::system_binary("lua5.1", "TESTKIT_LUA").unwrap_or_else(|e| {
        panic!(
            "{e}\nThe Argo CD health check is tested with a real Lua 5.1: install Debian's \
             lua5.1 (`apt-get install lua5.1`, or `make test-deps`), or point TESTKIT_LUA at one"
        )
    })
}

/// Runs the Lua `chunk` and returns what it wrote to stdout.
fn run_lua(chunk: &str) -> String {
    let lua = lua();
    let out = Command::new(&lua).arg("-e").arg(chunk).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}\nchunk:\n{chunk}",
        lua.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `value` as a Lua 5.1 expression: `null` becomes `nil`, an array `{..}`,
/// an object `{["key"]=value, ..}`.
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        // JSON numbers (`3`, `-1`, `1.5`, `1e+300`) are Lua numbers too.
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("[{}]={}", lua_string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// `s` as a double-quoted Lua string: `"` and `\` are escaped, and every
/// byte outside printable ASCII becomes a three-digit `\ddd` escape (three
/// digits, so a digit after it cannot be taken into it), like `%q` but on
/// one line.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &byte in s.as_bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
    out
}

/// Runs `health.lua` with `obj` set to `object`; what it returned.
fn health(object: &Value) -> HealthStatus {
    let script = Path::new(CHECK_DIR).join("health.lua");
    let chunk = format!(
        r#"obj = {object}
local hs = dofile({script})
assert(type(hs) == "table", "health.lua returned " .. type(hs) .. ", not a table")
io.write(tostring(hs.status), "\n", tostring(hs.message))"#,
        object = lua_literal(object),
        script = lua_string(&script.to_string_lossy()),
    );
    let out = run_lua(&chunk);
    let (status, message) = out
        .split_once('\n')
        .unwrap_or_else(|| panic!("expected a status and a message, got {out:?}"));
    HealthStatus {
        status: status.to_owned(),
        message: message.to_owned(),
    }
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_case_of_health_test_yaml_passes_in_lua_5_1() {
    let dir = Path::new(CHECK_DIR);
    let cases: HealthTests = read_yaml(&dir.join("health_test.yaml"));

    let mut failures = Vec::new();
    let mut used = BTreeSet::new();
    for case in &cases.tests {
        let object: Value = read_yaml(&dir.join(&case.input_path));
        let got = health(&object);
        if got != case.health_status {
            failures.push(format!(
                "{}:\n  expected {:?}\n  got      {:?}",
                case.input_path, case.health_status, got
            ));
        }
        used.insert(dir.join(&case.input_path).canonicalize().unwrap());
    }
    assert!(
        failures.is_empty(),
        "health.lua disagrees with health_test.yaml:\n{}",
        failures.join("\n")
    );
    assert!(
        cases.tests.len() > 5,
        "only {} cases ran: health_test.yaml should cover every state",
        cases.tests.len()
    );

    // An object in testdata/ that no case names is tested by nobody.
    let unused: Vec<PathBuf> = std::fs::read_dir(dir.join("testdata"))
        .unwrap()
        .map(|entry| entry.unwrap().path().canonicalize().unwrap())
        .filter(|path| !used.contains(path))
        .collect();
    assert!(
        unused.is_empty(),
        "no case of health_test.yaml uses {unused:?}"
    );
}

/// The converter itself: awkward strings, numbers, booleans and nesting
/// arrive in Lua unchanged.
#[test]
fn lua_literals_round_trip() {
    let tricky =
        "quote \" backslash \\ newline \n tab \t nul \0 digit after escape \u{1}7 é ✓ ]] [[";
    let value = serde_json::json!({
        "s": tricky,
        "n": [0, -3, 2.5, 1e300],
        "b": [true, false],
        "nested": {"list": [{"k": "v"}], "none": null},
    });
    let chunk = format!(
        r#"local v = {}
assert(v.n[1] == 0 and v.n[2] == -3 and v.n[3] == 2.5 and v.n[4] == 1e300)
assert(v.b[1] == true and v.b[2] == false)
assert(v.nested.list[1].k == "v" and v.nested.none == nil)
io.write(v.s)"#,
        lua_literal(&value)
    );
    assert_eq!(run_lua(&chunk), tricky);
}

#[test]
fn the_argocd_cm_snippet_holds_health_lua_verbatim() {
    let script = std::fs::read_to_string(Path::new(CHECK_DIR).join("health.lua")).unwrap();
    let cm = std::fs::read_to_string(Path::new(CHECK_DIR).join("../../../argocd-cm.yaml")).unwrap();
    let (_, embedded) = cm
        .split_once("resource.customizations.health.securevault.io_SecureVault: |\n")
        .expect("argocd-cm.yaml names the SecureVault health key");
    let embedded: String = embedded
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        embedded == script,
        "config/argocd/argocd-cm.yaml differs from health.lua: re-embed it (indent by four spaces)"
    );
}
