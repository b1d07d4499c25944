//! Demix model runtime.
