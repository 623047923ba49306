//! docs/SECURITY.md names only tests that exist: every `path::test_name` in its tables points at
//! a test function in that file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;

#[test]
fn the_security_table_names_only_tests_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/SECURITY.md")).unwrap();
    let mut named = 0;
    for cell in doc.split('`') {
        let Some((file, test)) = cell.split_once("::") else {
            continue;
        };
        if !file.ends_with(".rs") {
            continue;
        }
        let source = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("docs/SECURITY.md names {file}: {e}"));
        // `fn name()`, or `fn name(args in strategies)` inside `proptest!`.
        let at = source.find(&format!("fn {test}(")).unwrap_or_else(|| {
            panic!("docs/SECURITY.md names {file}::{test}, which does not exist")
        });
        assert!(
            source[..at].trim_end().ends_with("#[test]"),
            "{file}::{test} is not a #[test]"
        );
        named += 1;
    }
    assert!(named >= 15, "only {named} tests named");
}
