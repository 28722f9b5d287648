// editor_host.rs (the headless CLAP host with an X11 window) is not listed
// here: tests/editor.rs and benches/editor.rs include it with #[path], so the
// other tests that use this module don't compile it.
pub mod dfn_reference;
