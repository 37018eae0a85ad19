//! Shared helpers for capwise integration and interop tests: reference clients, trackers, temp swarms.
