//! A typed HTTP client for Spillway's /v1 API, used by the worker and the CLI.
