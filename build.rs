// Rebuilds when a migration is added, and lets the integration tests mark the PostgreSQL, browser and OpenAPI-conformance suites as
// ignored, with the reason printed by `cargo test`, when the variables that enable them are not
// set.
fn main() {
    // The migrations are embedded (`embed_migrations!`): a new one must rebuild the crate.
    println!("cargo::rerun-if-changed=migrations");
    println!("cargo::rustc-check-cfg=cfg(herald_pg_tests)");
    println!("cargo::rustc-check-cfg=cfg(herald_browser_tests)");
    println!("cargo::rustc-check-cfg=cfg(herald_prism_tests)");
    println!("cargo::rerun-if-env-changed=HERALD_TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=HERALD_TEST_CHROMEDRIVER");
    println!("cargo::rerun-if-env-changed=HERALD_TEST_PRISM");
    if std::env::var_os("HERALD_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=herald_pg_tests");
    }
    if std::env::var_os("HERALD_TEST_CHROMEDRIVER").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=herald_browser_tests");
    }
    if std::env::var_os("HERALD_TEST_PRISM").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=herald_prism_tests");
    }
}
