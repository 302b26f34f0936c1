//! Misuse of `#[derive(Model)]` and of typed paths fails to compile with a message that says
//! what to write instead. Each case is a file in `tests/ui` with its expected `.stderr`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
