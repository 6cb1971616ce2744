//! Entry points shared by the fuzz targets (`fuzz/`, run with `cargo fuzz`)
//! and the corpus regression test (`tests/fuzz_corpus.rs`, run by CI on
//! stable): each feeds untrusted bytes to one parser and checks the
//! properties that must hold whatever the input.

use std::path::Path;
use std::sync::OnceLock;

use crate::config::{self, Config};
use crate::hub::Cursor;
use crate::ingest::template::{Body, Context, Input, Template};
use crate::state::Settings;

/// YAML config: a Config or errors naming the file; never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = config::parse(text, Path::new("fuzz.yaml")) {
        for e in errors.iter() {
            assert!(
                e.to_string().starts_with("fuzz.yaml"),
                "error without its file: {e}"
            );
        }
    }
}

/// First line: a template; the rest: a request body.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (tpl, body) = text.split_once('\n').unwrap_or((text, ""));
    for ctx in [Context::Webhook, Context::Tap] {
        let Ok(t) = Template::parse(tpl, ctx, &["p".to_string()]) else {
            continue;
        };
        let input = Input {
            body: Some(Body::new(body.as_bytes(), false)),
            response_body: Some(Body::new(body.as_bytes(), false)),
            response_status: Some(200),
            ..Default::default()
        };
        let _ = t.render_text(&input);
        if let Ok(v) = t.render_json(&input) {
            assert!(serde_json::to_string(&v).is_ok());
        }
    }
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| match Settings::new(Config::default()) {
        Ok(s) => s,
        Err(e) => panic!("default settings: {e}"),
    })
}

/// Admin publish bodies: valid ones yield messages within the limits.
pub fn publish(data: &[u8]) {
    let s = settings();
    if let Ok(batch) = crate::admin::publish::parse(data, s) {
        for p in batch {
            assert!(crate::hub::message::valid_channel(&p.channel));
            assert!(crate::hub::message::valid_event(&p.event));
            assert!(p.data.get().len() <= s.config.realtime.max_message);
            assert!(!p.data.get().contains('\n'), "data must be compact for SSE");
        }
    }
}

/// WebSocket op frames: parse or a coded error; echoed refs stay small.
pub fn ws_op(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::transport::ops::parse(text) {
        Ok((_, r)) => assert!(r.is_none_or(|r| r.len() <= 128)),
        Err(e) => {
            assert!(!e.code.is_empty());
            let frame = crate::transport::ops::error(e.reference.as_deref(), e.code, &e.message);
            assert!(serde_json::from_str::<serde_json::Value>(&frame).is_ok());
        }
    }
}

/// Cursors: whatever decodes re-encodes to something that decodes the same.
pub fn cursor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Cursor::decode(text) {
        let again = Cursor::decode(&c.encode());
        assert_eq!(again.as_ref(), Ok(&c));
    }
}
