//! The CRD checked in under `crds/` is exactly what `operator crd` prints:
//! the Rust types are the source, the YAML a copy that must not drift.

#[test]
fn the_checked_in_crd_matches_the_rust_types() {
    let generated = operator::crd::yaml().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/securevault.yaml");
    let checked_in = std::fs::read_to_string(path).unwrap();
    assert!(
        generated == checked_in,
        "crds/securevault.yaml is stale: run `make crds` and commit the result"
    );
}
