//! Spillway's Pub/Sub bridge: pull messages from a subscription into tasks, acknowledging only what is stored, and publish outcomes.
