//! TEMPORARY stub.
use crate::reply::{self, Body};
#[derive(Clone)]
pub struct Proxy;
impl Proxy {
    pub fn new(_b: &crate::config::Backend) -> Proxy { Proxy }
    pub async fn forward(&self, _req: http::Request<hyper::body::Incoming>) -> http::Response<Body> {
        reply::error(http::StatusCode::BAD_GATEWAY, "bad_gateway", "stub")
    }
}
