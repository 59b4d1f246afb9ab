//! Spillway's object staging: job inputs and task results in object storage through object_store.
