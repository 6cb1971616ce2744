//! A stand-in application with its own cookie login, as a Django, Rails or
//! Laravel application has: `POST /login` (body: the user name) sets a
//! `sessionid` cookie, `POST /logout` ends that session, `GET /api/me`
//! answers the user as JSON or 401, `GET /api/orders/{id}` answers 200 only
//! to the order's owner (403 to anyone else logged in, 401 to nobody, 404
//! for no such order; order `of-{user}-{n}` is `user`'s, for any n). It counts the checks it answers, records their
//! headers, and can be made slow or broken, or to hold the checks of
//! cookies it does not know until released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::common::TestApp;

/// In every answer to `/api/me`: it must never reach a log.
pub(crate) const ANSWER_SECRET: &str = "answer-secret-XYZZY-6";

/// Who owns which order.
const ORDERS: &[(&str, &str)] = &[("7", "alice"), ("8", "bob")];

#[derive(Default)]
pub(crate) struct LoginApp {
    url: std::sync::OnceLock<String>,
    sessions: Mutex<HashMap<String, String>>,
    next: AtomicU64,
    /// `GET /api/me` answered.
    pub(crate) me_calls: AtomicUsize,
    /// `GET /api/orders/…` answered.
    pub(crate) order_calls: AtomicUsize,
    /// The headers of every check received, names lowercased.
    pub(crate) check_headers: Mutex<Vec<Vec<(String, String)>>>,
    /// Checks being answered right now, and the most at once.
    in_flight: AtomicUsize,
    pub(crate) most_in_flight: AtomicUsize,
    /// Answer checks with 500.
    pub(crate) broken: AtomicBool,
    /// Wait this long (ms) before answering a check.
    pub(crate) delay_ms: AtomicU64,
    /// Hold checks whose cookie is no session of ours until [`release`]d.
    pub(crate) hold_strangers: AtomicBool,
    released: tokio::sync::Notify,
}

impl LoginApp {
    /// The application on port 0: the common [`TestApp`] in HTTP mode,
    /// answering with [`LoginApp::answer`].
    pub(crate) async fn start() -> Arc<LoginApp> {
        let app = Arc::new(LoginApp::default());
        let a = app.clone();
        let server = TestApp::http(move |_, req| {
            let a = a.clone();
            async move { a.answer(req).await }
        })
        .start()
        .await;
        let _ = app.url.set(server.url.clone());
        app
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        self.url.get().map(String::as_str).unwrap_or("")
    }

    /// Log `user` in directly: the cookie header value a browser would send.
    pub(crate) fn login(&self, user: &str) -> String {
        let sid = format!(
            "s{}x{}",
            self.next.fetch_add(1, Ordering::SeqCst),
            user.len()
        );
        self.login_with(user, &sid)
    }

    /// [`login`](Self::login) with a session id of the caller's choosing.
    pub(crate) fn login_with(&self, user: &str, sid: &str) -> String {
        self.sessions
            .lock()
            .unwrap()
            .insert(sid.to_string(), user.to_string());
        format!("theme=dark; sessionid={sid}")
    }

    /// Answer the checks held by `hold_strangers`, and hold no more.
    pub(crate) fn release(&self) {
        self.hold_strangers.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    /// End the session of a cookie header value.
    pub(crate) fn logout(&self, cookie: &str) {
        if let Some(sid) = sid_of(cookie) {
            self.sessions.lock().unwrap().remove(&sid);
        }
    }

    fn user_of(&self, req: &Request<Incoming>) -> Option<String> {
        let cookie = req.headers().get("cookie")?.to_str().ok()?;
        let sid = sid_of(cookie)?;
        self.sessions.lock().unwrap().get(&sid).cloned()
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        if req.method() == hyper::Method::POST && path == "/login" {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let user = String::from_utf8_lossy(&body).trim().to_string();
            let cookie = self.login(&user);
            let sid = cookie.rsplit('=').next().unwrap().to_string();
            return Response::builder()
                .header("set-cookie", format!("sessionid={sid}; HttpOnly; Path=/"))
                .body(Full::new(Bytes::from("ok")))
                .unwrap();
        }
        if req.method() == hyper::Method::POST && path == "/logout" {
            if let Some(c) = req.headers().get("cookie").and_then(|c| c.to_str().ok()) {
                self.logout(c);
            }
            return status(200, "bye");
        }
        if !path.starts_with("/api/") {
            return status(404, "not found");
        }
        self.check_headers.lock().unwrap().push(
            req.headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
        );
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        // Counted until answered, or until the gateway gave up on it and
        // closed the connection (hyper then drops this future): what the
        // gateway has outstanding, not what the app still works on.
        struct Answering<'a>(&'a AtomicUsize);
        impl Drop for Answering<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _answering = Answering(&self.in_flight);
        if self.user_of(&req).is_none() {
            loop {
                let released = self.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if !self.hold_strangers.load(Ordering::SeqCst) {
                    break;
                }
                released.await;
            }
        }
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.check(&req, &path)
    }

    fn check(&self, req: &Request<Incoming>, path: &str) -> Response<Full<Bytes>> {
        if self.broken.load(Ordering::SeqCst) {
            return status(500, "database is down");
        }
        let user = self.user_of(req);
        if path == "/api/me" {
            self.me_calls.fetch_add(1, Ordering::SeqCst);
            return match user {
                Some(u) => {
                    let body = serde_json::json!({
                        "id": u,
                        "profile": { "team": "blue" },
                        "channels": [format!("team.blue.*")],
                        "csrf": ANSWER_SECRET,
                    });
                    Response::builder()
                        .header("content-type", "application/json")
                        .header("x-user-id", format!("h-{u}"))
                        .body(Full::new(Bytes::from(body.to_string())))
                        .unwrap()
                }
                None => status(401, "log in"),
            };
        }
        if let Some(id) = path.strip_prefix("/api/orders/") {
            self.order_calls.fetch_add(1, Ordering::SeqCst);
            let Some(user) = user else {
                return status(401, "log in");
            };
            let owner = ORDERS
                .iter()
                .find(|(o, _)| *o == id)
                .map(|(_, owner)| owner.to_string())
                .or_else(|| {
                    let (owner, _) = id.strip_prefix("of-")?.rsplit_once('-')?;
                    Some(owner.to_string())
                });
            return match owner {
                Some(owner) if owner == user => status(200, "{}"),
                Some(_) => status(403, "not yours"),
                None => status(404, "no such order"),
            };
        }
        status(404, "not found")
    }
}

fn sid_of(cookie: &str) -> Option<String> {
    cookie
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == "sessionid")
        .map(|(_, v)| v.to_string())
}

fn status(code: u16, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
