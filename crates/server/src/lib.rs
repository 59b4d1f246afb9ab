//! Spillway's HTTP server: the /v1 API, auth, metrics, OpenAPI and background services.
