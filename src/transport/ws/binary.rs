//! Binary frames from the client: `publish` and `send` whose data are
//! bytes. A frame is the op's JSON head (no `data`), a `\n`, then the
//! bytes (`ops::parse_binary`), as the server's own binary frames are. A
//! publish is judged as a JSON one and its message carries the bytes (JSON
//! clients get them in base64); a send reaches the application as
//! `application/octet-stream`. Answers are the same JSON acks and errors.

use base64::Engine;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::WsSession;
use crate::transport::ops::{self, BinaryOp};
use crate::transport::send::Payload;

impl WsSession {
    pub(super) async fn on_binary(&mut self, frame: bytes::Bytes) -> Result<(), WsError> {
        let (op, reference, bytes) = match ops::parse_binary(&frame) {
            Ok(parsed) => parsed,
            Err(e) => {
                let frame = ops::error(e.reference.as_deref(), e.code, &e.message);
                return self.send_text(frame).await;
            }
        };
        let r = reference.as_deref();
        if bytes.len() > self.settings.config.realtime.max_message {
            let error = ops::error(r, "too_large", "data exceeds realtime.max_message");
            return self.send_text(error).await;
        }
        match op {
            BinaryOp::Publish { channel, event } => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                match serde_json::value::to_raw_value(&b64) {
                    Ok(data) => self.on_publish(r, channel, event, data, true).await,
                    Err(e) => {
                        self.send_text(ops::error(r, "bad_request", &e.to_string()))
                            .await
                    }
                }
            }
            BinaryOp::Send => {
                let payload = Payload::Bytes(frame.slice_ref(bytes));
                self.on_send(r, payload).await
            }
        }
    }
}
