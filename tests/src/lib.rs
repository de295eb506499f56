//! Shared helpers for the integration tests (filled in by the test work).
