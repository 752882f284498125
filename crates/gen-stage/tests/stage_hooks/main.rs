//! A stage's hooks driven from outside: calls, casts and subscription requests
//! (`calls`), and the lifecycle, from `init`'s outcomes through failures in hooks to
//! how peers react to each other's exit (`lifecycle`). Both drive a request server
//! (`server`). The lifecycle's edge cases are in `stage_lifecycle_edges.rs`.

#[path = "../support/mod.rs"]
mod support;

mod calls;
mod lifecycle;
mod server;
