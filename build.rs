// Rebuilds when a migration is added, and lets the integration tests mark the PostgreSQL, browser and OpenAPI-conformance suites as
// ignored, with the reason printed by `cargo test`, when the variables that enable them are not
// set.
fn main() {
    // The migrations are embedded (`embed_migrations!`): a new one must rebuild the crate.
    println!("cargo::rerun-if-changed=migrations");
    println!("cargo::rustc-check-cfg=cfg(herald_pg_tests)");
    println!("cargo::rustc-check-cfg=cfg(herald_browser_tests)");
    println!("cargo::rustc-check-cfg=cfg(herald_prism_tests)");
    println!("cargo::rustc-check-cfg=cfg(herald_openapi_tools)");
    println!("cargo::rerun-if-env-changed=HERALD_TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=HERALD_TEST_CHROMEDRIVER");
    println!("cargo::rerun-if-env-changed=HERALD_TEST_PRISM");
    println!("cargo::rerun-if-env-changed=HERALD_TEST_OPENAPI_VALIDATOR");
    println!("cargo::rerun-if-env-changed=HERALD_TEST_SCHEMATHESIS");
    if std::env::var_os("HERALD_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=herald_pg_tests");
    }
    if std::env::var_os("HERALD_TEST_CHROMEDRIVER").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=herald_browser_tests");
    }
    if std::env::var_os("HERALD_TEST_PRISM").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=herald_prism_tests");
    }
    // The OpenAPI document's checks by `openapi-spec-validator` and `schemathesis` (PyPI).
    let set = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
    if set("HERALD_TEST_OPENAPI_VALIDATOR") && set("HERALD_TEST_SCHEMATHESIS") {
        println!("cargo::rustc-cfg=herald_openapi_tools");
    }
}
