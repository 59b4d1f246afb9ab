//! Spillway on Google Compute Engine: a pool provider that resizes zonal and regional managed instance groups, with a fake Compute API for tests.
