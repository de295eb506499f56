//! The `ferrumc` CLI (filled in by the CLI work).
fn main() {}
