//! Replays the fuzz corpus (`fuzz/corpus/<target>/*`) through the same entry
//! points as the fuzz targets, on stable, so CI keeps every past finding fixed.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{} panicked", path.display());
        n += 1;
    }
    assert!(n > 0, "empty corpus for {target}");
}

#[test]
fn config_corpus() {
    replay("config", pushgate::fuzzing::config);
}

#[test]
fn template_corpus() {
    replay("template", pushgate::fuzzing::template);
}

#[test]
fn publish_corpus() {
    replay("publish", pushgate::fuzzing::publish);
}

#[test]
fn ws_op_corpus() {
    replay("ws_op", pushgate::fuzzing::ws_op);
}

#[test]
fn ws_inflate_corpus() {
    replay("ws_inflate", pushgate::fuzzing::ws_inflate);
}

#[test]
fn cursor_corpus() {
    replay("cursor", pushgate::fuzzing::cursor);
}

#[test]
fn relay_corpus() {
    replay("relay", pushgate::fuzzing::relay);
}

#[test]
fn proxy_header_corpus() {
    replay("proxy_header", pushgate::fuzzing::proxy_header);
}
