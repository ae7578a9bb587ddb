//! docs/operator.md's "CRD reference" is exactly what `operator crd --reference`
//! prints: the doc comments on the Rust types are the source, the README's
//! tables a copy that must not drift.

// Test support: a failure here is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

const BEGIN: &str = "<!-- crd-reference -->\n";
const END: &str = "<!-- /crd-reference -->\n";

/// The README's text between the marker lines.
fn readme_section() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operator.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = readme
        .find(BEGIN)
        .expect("docs/operator.md has no `<!-- crd-reference -->` line")
        + BEGIN.len();
    let end = start
        + readme[start..].find(END).expect(
            "docs/operator.md has no `<!-- /crd-reference -->` line after `<!-- crd-reference -->`",
        );
    readme[start..end].to_owned()
}

#[test]
fn the_readme_s_crd_reference_matches_the_rust_types() {
    let generated = operator::crd_reference::markdown().unwrap();
    // tests/setup/crd-reference.sh puts a blank line on either side.
    let expected = format!("\n{generated}\n");
    let checked_in = readme_section();
    let first_difference = expected
        .lines()
        .zip(checked_in.lines())
        .find(|(generated, readme)| generated != readme)
        .map(|(generated, readme)| format!("\n  README:    {readme}\n  generated: {generated}"))
        .unwrap_or_default();
    assert!(
        expected == checked_in,
        "docs/operator.md's CRD reference is stale: run `make crds` and commit the result{first_difference}"
    );
}

#[test]
fn operator_crd_reference_prints_it() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_operator"))
        .args(["crd", "--reference"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        operator::crd_reference::markdown().unwrap()
    );
}
