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

/// `config/alertmanager/alertmanager.yml` is what `operator alertmanager`
/// renders for the complete sample: the builder is the source.
#[test]
fn the_checked_in_alertmanager_yml_matches_the_builder() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let sample = std::fs::read_to_string(format!("{root}/config/samples/complete.yaml")).unwrap();
    let generated = operator::build::alertmanager_config::alertmanager_yml_from_manifest(
        &sample,
        "/etc/alertmanager/secrets",
    )
    .unwrap();
    let path = format!("{root}/config/alertmanager/alertmanager.yml");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    // The file opens with comment lines saying what it is.
    let body: String = checked_in
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        generated == body,
        "{path} is stale: run `make alertmanager-config` and commit the result"
    );
}
